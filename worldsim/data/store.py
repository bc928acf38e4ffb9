"""The episode store: recorded play as chunked, compressed zarr arrays, one group per episode.

Layout (Gymnasium/Minari conventions, one zarr v3 hierarchy on disk or any fsspec URL)::

    STORE/zarr.json                      attrs: format, game, action/observation spaces, fps, metadata
    STORE/episodes/000000/zarr.json      attrs: length, info, complete (written last)
    STORE/episodes/000000/frames         uint8 [T+1, H, W, 3], frame 0 is the reset observation
    STORE/episodes/000000/actions        [T, ...]; a group of arrays (one per key) for Dict spaces
    STORE/episodes/000000/rewards        float32 [T]
    STORE/episodes/000000/terminated     bool [T]
    STORE/episodes/000000/truncated      bool [T]
    STORE/episodes/000000/labels/NAME    optional per-frame labels [T+1, ...] (Crafter: `semantic`,
                                         the class of each map tile, and `view_pos`); the store's
                                         attrs["labels"] says how they map onto the frames

An episode counts only once its `complete` flag is written, after all its arrays, so a crash or
Ctrl-C while writing loses at most that episode and leaves everything else readable.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import zarr

from worldsim.data.clips import ChunkReader
from worldsim.data.episodes import (
    COMPRESSOR,
    FRAME_CHUNK,
    Episode,
    jsonable,
    list_episodes,
    read_small_arrays,
    validate_episode,
    validate_labels,
    write_episode,
)
from worldsim.errors import StoreError
from worldsim.spaces import check_compatible, deserialize_space, serialize_space

__all__ = ["COMPRESSOR", "FORMAT", "FRAME_CHUNK", "SPLITS", "Episode", "EpisodeStore", "jsonable"]

FORMAT = "worldsim-episodes/1"
SPLITS = ("train", "val", "test")


def _open_zarr_store(path: str, read_only: bool) -> zarr.abc.store.Store:
    if "://" in str(path) and not str(path).startswith("file://"):
        return zarr.storage.FsspecStore.from_url(str(path), read_only=read_only)
    local = str(path).removeprefix("file://")
    return zarr.storage.LocalStore(local, read_only=read_only)


class EpisodeStore:
    """Episodes of one game, appended one at a time and read as whole episodes or clips.

    Create with `EpisodeStore.create(...)`, open with `EpisodeStore.open(path)` (read) or
    `EpisodeStore.open(path, mode="a")` (append). Paths are local directories or fsspec URLs
    (`s3://bucket/crafter`, `memory://x`).

    Example:
        >>> store = EpisodeStore.create("data/crafter", game="crafter",
        ...     action_space=gym.spaces.Discrete(17),
        ...     observation_space=gym.spaces.Box(0, 255, (64, 64, 3), np.uint8), fps=10)
        >>> i = store.append(frames, actions, rewards, terminated, truncated)
        >>> clip = store.clip(i, start=0, length=16)  # clip.frames: [16, 64, 64, 3]
    """

    def __init__(self, path: str, root: zarr.Group, writable: bool) -> None:
        self.path = str(path)
        self._root = root
        self._writable = writable
        attrs = root.attrs.asdict()
        self.game: str = attrs["game"]
        self.fps: float = float(attrs["fps"])
        self.metadata: dict[str, Any] = dict(attrs.get("metadata", {}))
        # How per-frame labels map onto frames ({} for games without labels).
        self.label_spec: dict[str, Any] = dict(attrs.get("labels") or {})
        self.action_space: gym.Space = deserialize_space(attrs["action_space"])
        self.observation_space: gym.Space = deserialize_space(attrs["observation_space"])
        self._reader = ChunkReader(self.path)
        self.refresh()

    # ----------------------------------------------------------------- opening
    @classmethod
    def create(
        cls,
        path: str,
        *,
        game: str,
        action_space: gym.Space,
        observation_space: gym.Space,
        fps: float,
        metadata: Mapping[str, Any] | None = None,
        label_spec: Mapping[str, Any] | None = None,
        exist_ok: bool = False,
    ) -> EpisodeStore:
        """Create an empty store; with `exist_ok`, open an existing one of the same game and spaces.

        `label_spec` describes the per-frame labels its episodes carry (the env's
        `label_spec`); an existing store without one gets it.
        """
        shape = getattr(observation_space, "shape", None)
        if not (
            isinstance(observation_space, gym.spaces.Box)
            and observation_space.dtype == np.uint8
            and len(shape) == 3
            and shape[2] == 3
        ):
            raise StoreError(
                f"observation space {observation_space} is not an RGB image Box(0, 255, (H, W, 3), "
                "uint8): wrap the env so it returns pixels (envs.pixel_env.PixelEnv does)"
            )
        if cls.exists(path):
            if not exist_ok:
                raise StoreError(
                    f"an episode store already exists at {path}: open it with "
                    "EpisodeStore.open(path, mode='a') to add episodes, or choose another path"
                )
            store = cls.open(path, mode="a")
            store.check_compatible(game, action_space, observation_space)
            if label_spec:
                store.set_label_spec(label_spec)
            return store
        attributes = {
            "format": FORMAT,
            "game": game,
            "fps": float(fps),
            "action_space": serialize_space(action_space),
            "observation_space": serialize_space(observation_space),
            "metadata": dict(metadata or {}),
            "labels": dict(label_spec or {}),
        }
        # The root's zarr.json with every attribute in one write: another process sees either
        # no store or a whole one, never one without attributes (an `episodes` group may lag).
        root = zarr.create_group(
            store=_open_zarr_store(path, read_only=False), attributes=attributes
        )
        root.require_group("episodes")
        return cls(path, root, writable=True)

    @staticmethod
    def exists(path: str) -> bool:
        """Whether `path` holds a zarr group (an episode store or something else)."""
        try:
            zarr.open_group(store=_open_zarr_store(path, read_only=True), mode="r")
        except (
            FileNotFoundError,
            zarr.errors.GroupNotFoundError,
            zarr.errors.NodeTypeValidationError,
        ):
            return False
        return True

    @classmethod
    def open(cls, path: str, mode: str = "r") -> EpisodeStore:
        """Open an existing store, `mode` "r" (read) or "a" (read and append)."""
        if mode not in ("r", "a"):
            raise ValueError(f"mode must be 'r' or 'a', not {mode!r}")
        try:
            root = zarr.open_group(
                store=_open_zarr_store(path, read_only=mode == "r"),
                mode="r+" if mode == "a" else "r",
            )
        except (
            FileNotFoundError,
            zarr.errors.GroupNotFoundError,
            zarr.errors.NodeTypeValidationError,
        ):
            raise StoreError(
                f"no episode store at {path}: record one with `worldsim collect --out {path}` "
                "or create it with EpisodeStore.create(...)"
            ) from None
        except (json.JSONDecodeError, ValueError, KeyError) as e:
            raise StoreError(
                f"the episode store at {path} is corrupt ({e}): its zarr.json cannot be read"
            ) from None
        attrs = root.attrs.asdict()
        if attrs.get("format") != FORMAT:
            raise StoreError(
                f"{path} is not a worldsim episode store (format {attrs.get('format')!r}, expected "
                f"{FORMAT!r}); import other data with `worldsim data import`"
            )
        missing = [
            k for k in ("game", "fps", "action_space", "observation_space") if k not in attrs
        ]
        if missing or "episodes" not in root:
            raise StoreError(
                f"the episode store at {path} is corrupt: missing {missing or ['episodes']}"
            )
        return cls(path, root, writable=mode == "a")

    def check_compatible(
        self, game: str, action_space: gym.Space, observation_space: gym.Space
    ) -> None:
        """Raise StoreError if episodes of `game` with these spaces may not be added here."""
        if game != self.game:
            raise StoreError(
                f"the store at {self.path} holds {self.game!r} episodes, not {game!r}: "
                "write to another --out directory"
            )
        for name, mine, theirs in (
            ("action", self.action_space, action_space),
            ("observation", self.observation_space, observation_space),
        ):
            check_compatible(mine, theirs, f"the {name} space of these episodes", error=StoreError,
                             fix=f"the store at {self.path} holds other episodes; write these "
                             "to another directory")  # fmt: skip

    def set_label_spec(self, spec: Mapping[str, Any]) -> None:
        """Record how per-frame labels map onto frames (once; a different one is an error)."""
        spec = json.loads(json.dumps(dict(spec), default=jsonable))
        if self.label_spec == spec:
            return
        if self.label_spec:
            differ = sorted(
                k for k in {*self.label_spec, *spec} if self.label_spec.get(k) != spec.get(k)
            )
            raise StoreError(
                f"the store at {self.path} holds labels of another layout (they differ in "
                f"{differ}): write these episodes to another --out directory, or copy the store "
                "with today's labels first (`worldsim data relabel`, Crafter)"
            )
        if not self._writable:
            raise StoreError(f"the store at {self.path} is open read-only: open it with mode='a'")
        self._root.attrs["labels"] = spec
        self.label_spec = spec

    # ----------------------------------------------------------------- index
    def refresh(self) -> None:
        """Re-read the episode index (episodes appended by other processes become visible).

        A torn episode zarr.json left by a crash marks that episode incomplete
        (`worldsim.data.episodes.list_episodes`) instead of failing the whole listing.
        """
        keys, lengths, incomplete = list_episodes(self._reader.fs, self._reader.root)
        self.keys: list[str] = keys
        self.lengths: np.ndarray = np.asarray(lengths, dtype=np.int64)
        self.incomplete: list[str] = incomplete
        self._actions_cache: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def num_frames(self) -> int:
        """Frames stored in complete episodes (T+1 per episode)."""
        return int(self.lengths.sum() + len(self.lengths))

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return tuple(self.observation_space.shape)

    def split(self, name: str, *, val: float = 0.05, test: float = 0.05) -> list[int]:
        """Episode indices of split `name` ("train", "val", "test"), fixed by each episode's key.

        An episode's split depends only on its key (a hash), never on how many episodes the
        store holds, so appending episodes never moves one from train into test.
        """
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, not {name!r}")
        out = []
        for i, key in enumerate(self.keys):
            u = (zlib.crc32(f"{self.game}/{key}".encode()) % 10_000) / 10_000
            which = "test" if u < test else "val" if u < test + val else "train"
            if which == name:
                out.append(i)
        return out

    # ----------------------------------------------------------------- reading
    def _check_index(self, i: int) -> str:
        if not -len(self.keys) <= i < len(self.keys):
            raise IndexError(
                f"episode {i} out of range: the store at {self.path} has {len(self.keys)}"
            )
        return self.keys[i]

    def _group(self, i: int) -> zarr.Group:
        return self._root["episodes"][self._check_index(i)]

    def _small_arrays(self, i: int) -> tuple[Any, ...]:
        """`read_small_arrays` of episode i, cached (they are tiny); DamagedEpisodeError."""
        if i not in self._actions_cache:
            self._actions_cache[i] = read_small_arrays(self._group(i), self.path, self.keys[i])
        return self._actions_cache[i]

    def episode_actions(self, i: int) -> np.ndarray | dict[str, np.ndarray]:
        """All actions of episode i ([T, ...] or a dict of such), without reading its frames."""
        return self._small_arrays(i)[0]

    def info(self, i: int) -> dict[str, Any]:
        """The info dict stored with episode i (policy, seeds, return, ...)."""
        return self._small_arrays(i)[4]

    def labels(self, i: int) -> dict[str, np.ndarray]:
        """Per-frame labels of episode i (name -> [T+1, ...]); {} if it was recorded without."""
        return self._small_arrays(i)[5]

    def episode(self, i: int) -> Episode:
        """The whole episode i."""
        self._check_index(i)
        return self.clip(i, 0, int(self.lengths[i]) + 1)

    def clip(self, i: int, start: int, length: int) -> Episode:
        """Frames start..start+length-1 of episode i and the length-1 transitions between them.

        Reads only the chunks the window touches (a 16-frame clip: at most two).
        """
        key = self._check_index(i)
        n_frames = int(self.lengths[i]) + 1
        if length < 1 or start < 0 or start + length > n_frames:
            raise IndexError(
                f"clip [{start}, {start + length}) is outside episode {i}, which has {n_frames} frames"
            )
        actions, rewards, terminated, truncated, info, labels, all_chunks = self._small_arrays(i)
        frames = self._reader.read(
            f"episodes/{key}/frames",
            start,
            start + length,
            lambda: self._group(i)["frames"],
            all_written=all_chunks,
            episode=key,
        )
        window = slice(start, start + length - 1)
        if isinstance(actions, dict):
            clip_actions = {k: v[window] for k, v in actions.items()}
        else:
            clip_actions = actions[window]
        frame_window = slice(start, start + length)
        return Episode(
            frames,
            clip_actions,
            rewards[window],
            terminated[window],
            truncated[window],
            info,
            {k: v[frame_window] for k, v in labels.items()},
        )

    # ----------------------------------------------------------------- writing
    def next_index(self) -> int:
        """The index after every episode group present, complete or not."""
        present = [int(k) for k in [*self.keys, *self.incomplete]]
        return max(present, default=-1) + 1

    def remove_incomplete(self) -> list[str]:
        """Delete episodes whose writing never finished (a crash); returns their keys.

        Only safe while no other process is writing to this store.
        """
        if not self._writable:
            raise StoreError(f"the store at {self.path} is open read-only: open it with mode='a'")
        removed = list(self.incomplete)
        for key in removed:
            self._reader.fs.rm(f"{self._reader.root}/episodes/{key}", recursive=True)
        self.refresh()
        return removed

    def append(
        self,
        frames: np.ndarray,
        actions: np.ndarray | Mapping[str, np.ndarray] | list,
        rewards: np.ndarray | list,
        terminated: np.ndarray | list,
        truncated: np.ndarray | list,
        *,
        info: Mapping[str, Any] | None = None,
        labels: Mapping[str, np.ndarray] | None = None,
        index: int | None = None,
    ) -> int:
        """Validate and write one episode; returns its index among complete episodes' keys.

        Everything is checked before anything is written, so bad input leaves the store as it was.
        `index` names the episode key (the collector uses it so a resumed run refills the same
        slots); an incomplete episode at that key is overwritten, a complete one is an error.
        `labels` are optional per-frame arrays (name -> [T+1, ...]), described by `label_spec`.
        """
        if not self._writable:
            raise StoreError(f"the store at {self.path} is open read-only: open it with mode='a'")
        episode = validate_episode(
            frames, actions, rewards, terminated, truncated,
            frame_shape=self.frame_shape, action_space=self.action_space, game=self.game,
        )  # fmt: skip
        episode.info = dict(info or {})
        episode.labels = validate_labels(labels, len(episode.frames), self.label_spec)
        index = self.next_index() if index is None else int(index)
        key = f"{index:06d}"
        if key in self.keys:
            raise StoreError(f"episode {key} already exists in {self.path}; append without index=")
        write_episode(self._root.require_group("episodes"), key, episode)
        self.refresh()
        return self.keys.index(key)
