"""One episode of the store: the `Episode` record, its checks before writing, its zarr arrays.

`EpisodeStore` (worldsim.data.store) keeps the index and the opening; this module holds what
concerns a single episode group: validating the arrays of `append`, writing them (the
`complete` flag last), reading its small arrays back, and listing the groups of a store.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import zarr
from zarr.codecs import BloscCodec

from worldsim.errors import DamagedEpisodeError, StoreError
from worldsim.spaces import check_actions, stack_actions

FRAME_CHUNK = 16  # frames per chunk: a 16-frame clip touches at most two chunks
COMPRESSOR = BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")  # ~2.1 kB/frame on Crafter


@dataclass
class Episode:
    """One episode (or a window of one): `frames` has one more entry than the transitions."""

    frames: np.ndarray  # uint8 [T+1, H, W, 3]
    actions: np.ndarray | dict[str, np.ndarray]  # [T, ...] or {key: [T, ...]}
    rewards: np.ndarray  # float32 [T]
    terminated: np.ndarray  # bool [T]
    truncated: np.ndarray  # bool [T]
    info: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # name -> [T+1, ...], may be {}

    def __len__(self) -> int:
        return len(self.rewards)


def jsonable(x: Any) -> Any:
    """`json.dumps` default: numpy scalars and arrays as Python values, anything else as text."""
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def validate_episode(
    frames: Any,
    actions: Any,
    rewards: Any,
    terminated: Any,
    truncated: Any,
    *,
    frame_shape: tuple[int, ...],
    action_space: gym.Space,
    game: str,
) -> Episode:
    """The arrays of one episode, checked against the store's frames and actions and converted
    (frames uint8 [T+1, H, W, 3], rewards float32 [T], ends bool [T], actions [T, ...]).

    Raises:
        StoreError: a wrong dtype, shape or length, naming the array and the fix.
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise StoreError(
            f"frames must be uint8, got {frames.dtype}: convert with frames.astype(np.uint8) from 0..255 values"
        )
    if frames.ndim != 4 or tuple(frames.shape[1:]) != frame_shape:
        raise StoreError(
            f"frames have shape {frames.shape}, expected [T+1, {', '.join(map(str, frame_shape))}] "
            f"for this store ({game})"
        )
    T = len(frames) - 1
    if T < 1:
        raise StoreError("an episode needs at least one transition (two frames)")
    rewards = np.asarray(rewards, dtype=np.float32)
    ends = {"terminated": np.asarray(terminated), "truncated": np.asarray(truncated)}
    for name, v in (("rewards", rewards), *ends.items()):
        if v.shape != (T,):
            raise StoreError(
                f"{name} has shape {v.shape}, expected ({T},): one per transition, len(frames) - 1"
            )
    for name, v in ends.items():
        if v.dtype != np.bool_:
            if not np.isin(v, (0, 1)).all():
                raise StoreError(f"{name} must be booleans, got values {np.unique(v)[:5]}")
            ends[name] = v.astype(bool)
    actions = stack_actions(action_space, actions, StoreError)
    check_actions(action_space, actions, T, error=StoreError)
    return Episode(frames, actions, rewards, ends["terminated"], ends["truncated"])


def validate_labels(
    labels: Mapping[str, np.ndarray] | None, n_frames: int, label_spec: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    """Per-frame labels (name -> [T+1, ...]) checked: one entry per frame, a store label_spec."""
    out = {}
    for name, value in (labels or {}).items():
        v = np.asarray(value)
        if v.ndim < 1 or len(v) != n_frames or v.dtype == object:
            raise StoreError(
                f"labels[{name!r}] has shape {v.shape}, expected [{n_frames}, ...]: one "
                "entry per frame, len(frames)"
            )
        out[str(name)] = v
    if out and not label_spec:
        raise StoreError(
            f"episode labels {sorted(out)} need the store's label_spec: create the store "
            "with EpisodeStore.create(..., label_spec=env.unwrapped.label_spec)"
        )
    return out


def write_episode(episodes: zarr.Group, key: str, episode: Episode) -> None:
    """Write `episode` (validated) as the group `key` of `episodes`; `complete` is set last,
    so a crash while writing leaves an incomplete group that readers skip."""
    info = json.loads(json.dumps(dict(episode.info), default=jsonable))
    g = episodes.create_group(key, overwrite=True)
    # all_chunks: every frame chunk is stored (black ones too), so a missing chunk is
    # known to be lost, not read as black frames.
    g.attrs.update({"length": len(episode), "info": info, "complete": False, "all_chunks": True})
    frames = episode.frames
    arr = g.create_array(
        "frames",
        shape=frames.shape,
        dtype="uint8",
        chunks=(FRAME_CHUNK, *frames.shape[1:]),
        compressors=COMPRESSOR,
        config={"write_empty_chunks": True},
    )
    arr[:] = frames
    if isinstance(episode.actions, dict):
        ag = g.create_group("actions")
        for k, v in episode.actions.items():
            ag.create_array(k, data=v, chunks=v.shape or None, compressors=COMPRESSOR)
    else:
        a = episode.actions
        g.create_array("actions", data=a, chunks=a.shape, compressors=COMPRESSOR)
    for name in ("rewards", "terminated", "truncated"):
        values = getattr(episode, name)
        g.create_array(name, data=values, chunks=values.shape, compressors=COMPRESSOR)
    if episode.labels:
        lg = g.create_group("labels")
        for k, v in episode.labels.items():
            lg.create_array(k, data=v, chunks=v.shape, compressors=COMPRESSOR)
    g.attrs["complete"] = True  # last: the episode exists from here on


def list_episodes(fs: Any, root: str) -> tuple[list[str], list[int], list[str]]:
    """(complete keys, their lengths, incomplete keys) of the episode groups under `root`.

    Reads each episode's zarr.json directly: one small read per episode, and a torn file
    left by a crash marks that episode incomplete instead of failing the whole listing.
    """
    keys, lengths, incomplete = [], [], []
    names = sorted(
        p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(f"{root}/episodes", detail=False)
    )
    for key in names:
        if not key.isdigit():
            continue
        try:
            attrs = json.loads(fs.cat_file(f"{root}/episodes/{key}/zarr.json"))["attributes"]
            complete = bool(attrs.get("complete"))
        except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError):
            complete = False
        if complete:
            keys.append(key)
            lengths.append(int(attrs["length"]))
        else:
            incomplete.append(key)
    return keys, lengths, incomplete


def read_small_arrays(
    g: zarr.Group, path: str, key: str
) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict, dict[str, np.ndarray], bool]:
    """Actions, rewards, terminated, truncated, info and labels of the episode group `g`, and
    whether every frame chunk was written (episodes since the store checks for lost chunks).

    Raises:
        DamagedEpisodeError: an array is missing or damaged (`path`, `key` name the episode).
    """
    try:
        actions = g["actions"]
        if isinstance(actions, zarr.Group):
            actions = {k: actions[k][:] for k in sorted(actions.array_keys())}
        else:
            actions = actions[:]
        attrs = g.attrs.asdict()
        labels = g.get("labels")
        labels = {k: labels[k][:] for k in sorted(labels.array_keys())} if labels else {}
        arrays = [g[k][:] for k in ("rewards", "terminated", "truncated")]
    except Exception as e:  # zarr raises KeyError / codec errors of its own
        raise DamagedEpisodeError(path, key, repr(e)) from None
    info = dict(attrs.get("info", {}))
    return (actions, *arrays, info, labels, bool(attrs.get("all_chunks", False)))
