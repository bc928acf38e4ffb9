"""Benchmark inputs from an episode store: held-out clips, episodes in a memory budget, and hashes."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from worldsim.checkpoint import sha256_file
from worldsim.errors import StoreError
from worldsim.spaces import tree_stack

__all__ = [
    "Clips",
    "checkpoint_fingerprint",
    "load_episodes",
    "merge_leading",
    "select_clips",
    "sha256_file",
    "split_indices",
    "store_fingerprint",
]


def merge_leading(actions: Any) -> Any:
    """Merge the first two axes of actions [N, T, ...] (or of each array of a dict) into [N*T, ...]."""
    if isinstance(actions, dict):
        return {k: v.reshape(-1, *v.shape[2:]) for k, v in actions.items()}
    return np.asarray(actions).reshape(-1, *np.shape(actions)[2:])


def split_indices(store: Any, split: str) -> list[int]:
    """Episode indices of a split: "train", "val", "test", or "all" (a store held out as a whole)."""
    return list(range(len(store))) if split == "all" else store.split(split)


@dataclass
class Clips:
    """N real clips of L frames: frames uint8 [N, L, H, W, 3], actions/rewards/terminated [N, L-1]."""

    frames: np.ndarray
    actions: Any
    rewards: np.ndarray
    terminated: np.ndarray
    refs: list[dict[str, int | str]] = field(default_factory=list)  # episode, key, start
    # per-frame labels {name: [N, L, ...]}, only those every clip has ({} for most games)
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    unlabelled: int = 0  # clips whose episode has no labels


def select_clips(
    store: Any,
    split: str,
    *,
    length: int,
    episodes: int | None = None,
    clips_per_episode: int = 1,
    seed: int = 0,
) -> Clips:
    """Clips of `length` frames from held-out episodes of `store`.

    Episodes (of `split`, "all" for every episode; long enough) are drawn at random with `seed`, at most `episodes` of
    them; each gives `clips_per_episode` clips with starts spread evenly over the episode
    (one random start per equal stretch), so clips of one episode do not pile up.

    Raises:
        StoreError: the split has no episode of at least `length` frames.
    """
    rng = np.random.default_rng(seed)
    indices = split_indices(store, split)
    if not indices:
        raise StoreError(
            f"the store at {store.path} has no {split!r} episodes ({len(store)} in all): "
            "use --split val or another store"
        )
    long_enough = [i for i in indices if int(store.lengths[i]) + 1 >= length]
    if not long_enough:
        raise StoreError(
            f"no {split!r} episode of {store.path} has {length} frames (context + horizon; the "
            f"longest has {int(store.lengths[indices].max()) + 1}): lower --context or --horizon"
        )
    if episodes is not None and episodes < len(long_enough):
        long_enough = sorted(rng.choice(long_enough, size=episodes, replace=False).tolist())
    clips = []
    for i in long_enough:
        span = int(store.lengths[i]) + 1 - length + 1  # valid starts: 0 .. span-1
        n = min(clips_per_episode, span)
        for c in range(n):
            lo, hi = c * span // n, (c + 1) * span // n
            start = int(rng.integers(lo, max(hi, lo + 1)))
            clips.append((i, start, store.clip(i, start, length)))
    names = set.intersection(*(set(c.labels) for _, _, c in clips))
    return Clips(
        labels={k: np.stack([c.labels[k] for _, _, c in clips]) for k in sorted(names)},
        unlabelled=sum(1 for _, _, c in clips if not c.labels),
        frames=np.stack([c.frames for _, _, c in clips]),
        actions=tree_stack([c.actions for _, _, c in clips]),
        rewards=np.stack([c.rewards for _, _, c in clips]).astype(np.float32),
        terminated=np.stack([c.terminated for _, _, c in clips]).astype(bool),
        refs=[{"episode": i, "key": store.keys[i], "start": s} for i, s, _ in clips],
    )


def load_episodes(
    store: Any, indices: list[int], *, max_bytes: float = 1e9, seed: int = 0
) -> list[tuple[int, np.ndarray, Any]]:
    """(index, frames, actions) of episodes `indices`, in random order, until `max_bytes` of frames."""
    order = np.random.default_rng(seed).permutation(len(indices))
    out, total = [], 0
    for j in order:
        episode = store.episode(indices[j])
        out.append((int(indices[j]), episode.frames, episode.actions))
        total += episode.frames.nbytes
        if total >= max_bytes:
            break
    return out


def checkpoint_fingerprint(path: str | Path) -> dict[str, Any]:
    """sha256 of a checkpoint file, or of every file in a release folder (and of them all)."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    hashes = {str(p.relative_to(path) if path.is_dir() else p.name): sha256_file(p) for p in files}
    combined = hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()
    return {"path": str(path), "files": hashes, "sha256": combined}


def store_fingerprint(store: Any, refs: list[dict[str, Any]]) -> dict[str, Any]:
    """sha256 of the store's metadata file, of its episode list (keys, lengths) and of the clips used."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(str(store.path))
    try:
        meta = fs.cat_file(f"{root.rstrip('/')}/zarr.json")
    except FileNotFoundError:
        meta = json.dumps(store.metadata, sort_keys=True).encode()
    episodes = json.dumps({"keys": list(store.keys), "lengths": store.lengths.tolist()})
    return {
        "path": str(store.path),
        "game": store.game,
        "episodes": len(store),
        "metadata_sha256": hashlib.sha256(meta).hexdigest(),
        "episodes_sha256": hashlib.sha256(episodes.encode()).hexdigest(),
        "clips_sha256": hashlib.sha256(json.dumps(refs).encode()).hexdigest(),
        "collected_with": store.metadata,
    }
