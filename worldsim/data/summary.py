"""What `worldsim data info` prints: size, compression and the action distribution of a store."""

from __future__ import annotations

from typing import Any

import fsspec
import gymnasium as gym
import numpy as np

from worldsim.data.store import EpisodeStore


def disk_bytes(path: str) -> int:
    """Bytes the store takes on its filesystem."""
    fs, root = fsspec.core.url_to_fs(path)
    return int(fs.du(root))


def action_histogram(store: EpisodeStore) -> dict[str, Any]:
    """Counts per action (Discrete), per value of each component, or mean/std (Box), over all episodes."""
    space = store.action_space
    acts = [store.episode_actions(i) for i in range(len(store))]
    return _histogram(space, acts, store.metadata.get("action_names"))


def _histogram(space: gym.Space, acts: list, names: list[str] | None = None) -> dict[str, Any]:
    if isinstance(space, gym.spaces.Dict):
        return {k: _histogram(sub, [a[k] for a in acts]) for k, sub in space.spaces.items()}
    flat = np.concatenate([np.asarray(a) for a in acts]) if acts else np.zeros((0, *space.shape))
    if isinstance(space, gym.spaces.Discrete):
        counts = np.bincount(flat.astype(np.int64) - space.start, minlength=space.n)
        labels = names or [str(space.start + j) for j in range(space.n)]
        return {labels[j]: int(c) for j, c in enumerate(counts)}
    if isinstance(space, gym.spaces.MultiBinary):
        return {
            "fraction_pressed": np.round(flat.reshape(len(flat), -1).mean(0), 3).tolist()
            if len(flat)
            else []
        }
    if isinstance(space, gym.spaces.MultiDiscrete):
        f = flat.reshape(len(flat), -1)
        return {
            f"[{j}]": np.bincount(f[:, j], minlength=int(n)).tolist()
            for j, n in enumerate(space.nvec.reshape(-1))
        }
    f = flat.reshape(len(flat), -1).astype(np.float64)
    return (
        {"mean": np.round(f.mean(0), 3).tolist(), "std": np.round(f.std(0), 3).tolist()}
        if len(f)
        else {}
    )


def summarize(store: EpisodeStore) -> dict[str, Any]:
    """Every figure `worldsim data info` shows, as a dict."""
    nbytes = disk_bytes(store.path)
    frames = store.num_frames
    returns = [float(store.info(i).get("return", np.nan)) for i in range(len(store))]
    return {
        "path": store.path,
        "game": store.game,
        "episodes": len(store),
        "incomplete_episodes": len(store.incomplete),
        "frames": frames,
        "transitions": int(store.lengths.sum()),
        "frame_shape": list(store.frame_shape),
        "fps": store.fps,
        "episode_length": {
            "min": int(store.lengths.min()) if len(store) else 0,
            "mean": float(store.lengths.mean()) if len(store) else 0.0,
            "max": int(store.lengths.max()) if len(store) else 0,
        },
        "mean_return": float(np.nanmean(returns))
        if returns and not np.all(np.isnan(returns))
        else None,
        "splits": {s: len(store.split(s)) for s in ("train", "val", "test")},
        "disk_bytes": nbytes,
        "bytes_per_frame": nbytes / frames if frames else 0.0,
        "raw_bytes_per_frame": int(np.prod(store.frame_shape)),
        "action_space": str(store.action_space),
        "action_histogram": action_histogram(store),
        "metadata": store.metadata,
        "labels": label_summary(store),
    }


def label_summary(store: EpisodeStore) -> dict[str, Any]:
    """Which per-frame labels the store holds, in how many episodes, and what lacks them."""
    names = list(store.label_spec.get("arrays", []))
    labelled = sum(1 for i in range(len(store)) if store.labels(i))
    out: dict[str, Any] = {"arrays": names, "episodes_labelled": labelled}
    if labelled < len(store):
        missing = len(store) - labelled
        out["missing"] = (
            f"{missing} of {len(store)} episodes have no per-frame labels, so the semantic "
            "fidelity metrics (tile accuracy, scroll agreement) cannot use them"
            + (
                ": re-record them with `worldsim collect`, which writes Crafter's tile labels"
                if store.game == "crafter"
                else " (this game records none)"
            )
        )
    return out
