"""Import recorded Minecraft play (VPT contractor data, MineRL v0.4 datasets) into an EpisodeStore.

Both formats become episodes with the MineRL Dict action space (`minerl_action_space()`), frames
at 20 Hz resized to (H, W). Readers: `read_vpt` (envs.minecraft_vpt), `read_minerl_v04`
(envs.minecraft_minerl); `import_minecraft` finds every recording under a folder and appends it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np

from envs.minecraft_minerl import (
    BUTTONS,
    DEFAULT_SIZE,
    FPS,
    RecordingError,
    decode_video,
    minerl_action_space,
    read_minerl_v04,
)
from envs.minecraft_vpt import CAMERA_SCALER, KEYBOARD_BUTTON_MAPPING, read_vpt, vpt_actions
from worldsim.data import Episode, EpisodeStore

__all__ = [
    "BUTTONS",
    "CAMERA_SCALER",
    "FORMATS",
    "KEYBOARD_BUTTON_MAPPING",
    "RecordingError",
    "decode_video",
    "find_recordings",
    "import_minecraft",
    "minerl_action_space",
    "read_minerl_v04",
    "read_vpt",
    "vpt_actions",
]

FORMATS = ("vpt", "minerl")


def find_recordings(src: str | Path, format: str) -> list[Path]:
    """Recordings under `src`, sorted: `.mp4` files (VPT) or demonstration folders (MineRL v0.4).

    A VPT `.mp4` without its `.jsonl` is skipped with a warning. `src` may also be one
    recording (an `.mp4` file, or a folder holding `rendered.npz`).

    Raises:
        RecordingError: `src` does not exist or `format` is unknown.
    """
    src = Path(src)
    if format not in FORMATS:
        raise RecordingError(
            f"unknown Minecraft format {format!r}: choose one of {', '.join(FORMATS)}"
        )
    if not src.exists():
        raise RecordingError(f"{src} does not exist: pass a folder of {format} recordings")
    if format == "minerl":
        if (src / "rendered.npz").is_file():
            return [src]
        return sorted(p.parent for p in src.rglob("rendered.npz"))
    videos = [src] if src.is_file() else sorted(src.rglob("*.mp4"))
    found = []
    for video in videos:
        if video.with_suffix(".jsonl").is_file():
            found.append(video)
        else:
            warnings.warn(
                f"skipping {video}: no {video.with_suffix('.jsonl').name} beside it", stacklevel=2
            )
    return found


def read_recording(path: str | Path, format: str, size: tuple[int, int] = DEFAULT_SIZE) -> Episode:
    """Read one recording found by `find_recordings`."""
    return read_vpt(path, size=size) if format == "vpt" else read_minerl_v04(path, size=size)


def import_minecraft(
    src: str | Path,
    out: str,
    format: str = "vpt",
    size: tuple[int, int] = DEFAULT_SIZE,
    game: str = "minecraft",
) -> int:
    """Append every Minecraft recording under `src` to the episode store `out`.

    The store is created if missing (MineRL Dict action space, RGB frames of `size`, 20 fps);
    an existing store must hold the same game, action space and frame size, or the store
    raises StoreError. A recording that cannot be read (corrupt video, bad jsonl line,
    missing file) is skipped with a warning naming it; the others are still imported.

    Args:
        src: a folder searched recursively (or a single recording).
        out: the store path (local folder or fsspec URL).
        format: "vpt" (`NAME.mp4` + `NAME.jsonl`) or "minerl" (v0.4 folders with
            `recording.mp4` + `rendered.npz`).
        size: (H, W) frames are resized to.
        game: the store's game name.

    Returns:
        The number of episodes added.

    Raises:
        RecordingError: no readable recording was found.
        StoreError: `out` is a store of another game, action space or frame size.

    Example:
        >>> import_minecraft("data/vpt/6.13", "data/minecraft", format="vpt", size=(64, 64))
        12
    """
    recordings = find_recordings(src, format)
    if not recordings:
        pattern = (
            "NAME.mp4 + NAME.jsonl"
            if format == "vpt"
            else "folders with recording.mp4 + rendered.npz"
        )
        raise RecordingError(f"no {format} recordings ({pattern}) under {src}")
    H, W = size
    spec = {
        "game": game,
        "action_space": minerl_action_space(),
        "observation_space": gym.spaces.Box(0, 255, (H, W, 3), np.uint8),
        "fps": FPS,
        "metadata": {"source_format": format, "source": str(src)},
    }
    # An existing store is checked before any video is decoded; a new one is made only once
    # there is an episode to put in it.
    store = EpisodeStore.create(out, **spec, exist_ok=True) if EpisodeStore.exists(out) else None
    added = 0
    for path in recordings:
        try:
            episode = read_recording(path, format, size)
        except RecordingError as e:
            warnings.warn(f"skipping {path}: {e}", stacklevel=2)
            continue
        if store is None:
            store = EpisodeStore.create(out, **spec, exist_ok=True)
        store.append(
            episode.frames,
            episode.actions,
            episode.rewards,
            episode.terminated,
            episode.truncated,
            info=episode.info,
        )
        added += 1
    if added == 0:
        raise RecordingError(
            f"none of the {len(recordings)} {format} recordings under {src} could be read"
        )
    return added
