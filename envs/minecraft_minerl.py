"""The MineRL action space, mp4 decoding at 20 Hz, and the MineRL v0.4 dataset reader."""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
from PIL import Image

from worldsim.data import Episode
from worldsim.errors import WorldsimError

FPS = 20.0  # Minecraft ticks 20 times a second; MineRL and VPT record one frame per tick
DEFAULT_SIZE = (64, 64)  # (H, W): the frame size of the MineRL v0.4 datasets

# The MineRL 1.0 / VPT action dict, named exactly as in VPT's `NOOP_ACTION`: every button is
# Discrete(2), `camera` is [pitch, yaw] in degrees per tick.
BUTTONS: tuple[str, ...] = (
    "forward", "back", "left", "right", "jump", "sneak", "sprint",
    "attack", "use", "pickItem", "drop", "inventory", "ESC", "swapHands",
    *(f"hotbar.{i}" for i in range(1, 10)),
)  # fmt: skip
CAMERA_LIMIT = 180.0  # degrees: MineRL's camera Box(-180, 180)

# MineRL v0.4 enum actions (Obtain* tasks) with no button of their own. `place` is a right
# click with the named item, so it becomes `use`; the others are listed in the episode info.
_PLACE_KEY = "action$place"


class RecordingError(WorldsimError, ValueError):
    """A Minecraft recording that is missing, unreadable or inconsistent."""


def minerl_action_space() -> gym.spaces.Dict:
    """The MineRL Dict action space: 23 buttons Discrete(2) and camera Box(-180, 180, (2,)).

    Example:
        >>> space = minerl_action_space()
        >>> space["camera"].shape, int(space["hotbar.1"].n)
        ((2,), 2)
    """
    spaces: dict[str, gym.Space] = {k: gym.spaces.Discrete(2) for k in BUTTONS}
    spaces["camera"] = gym.spaces.Box(-CAMERA_LIMIT, CAMERA_LIMIT, (2,), np.float32)
    return gym.spaces.Dict(spaces)


def noop_actions(T: int) -> dict[str, np.ndarray]:
    """T no-op actions as a dict of arrays: buttons int64 [T], camera float32 [T, 2]."""
    actions = {k: np.zeros(T, np.int64) for k in BUTTONS}
    actions["camera"] = np.zeros((T, 2), np.float32)
    return actions


def decode_video(
    path: str | Path, size: tuple[int, int] = DEFAULT_SIZE, fps: float = FPS
) -> np.ndarray:
    """Decode an mp4 with PyAV into one RGB frame per tick, resized with PIL.

    Frames are placed by their timestamps on a `fps` grid: a 20 Hz recording gives every
    frame; from a faster one each tick takes the frame nearest its time (the earlier on a
    tie); a slower one repeats frames to fill the ticks between.

    Args:
        path: the video file.
        size: (H, W) of the returned frames.
        fps: the tick rate to sample at.

    Returns:
        uint8 [N, H, W, 3].

    Raises:
        RecordingError: the file is missing, not a video, or has no decodable frames.
    """
    import av  # PyAV; imported here so the action space needs no video library

    H, W = size
    frames: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise RecordingError(f"{path} has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            t0 = None
            for i, frame in enumerate(container.decode(stream)):
                if frame.time is None:
                    tick = i
                else:
                    t0 = frame.time if t0 is None else t0
                    # the nearest tick; a frame halfway between two goes to the earlier one
                    tick = math.floor((frame.time - t0) * fps + 0.5 - 1e-6)
                if tick < len(frames):  # a second frame within one tick: keep the first
                    continue
                image = frame.to_image()
                if image.size != (W, H):
                    image = image.resize((W, H), Image.Resampling.BILINEAR)
                array = np.asarray(image, dtype=np.uint8)
                while len(frames) < tick:  # a gap: hold the last frame
                    frames.append(frames[-1])
                frames.append(array)
    except (OSError, av.FFmpegError) as e:
        raise RecordingError(f"cannot decode the video {path}: {e}") from e
    if not frames:
        raise RecordingError(f"the video {path} has no frames")
    return np.stack(frames)  # [N, H, W, 3]


def read_minerl_v04(directory: str | Path, size: tuple[int, int] = DEFAULT_SIZE) -> Episode:
    """Read one MineRL v0.4 demonstration: `recording.mp4` + `rendered.npz` (+ `metadata.json`).

    Alignment follows MineRL's own loader (`minerl.data.DataPipeline`): `rendered.npz` holds
    T actions and rewards (`reward` [T], `action$forward` [T], `action$camera` [T, 2], ...), the
    episode has T+1 states, and the last video frame is the last state. So the last T+1 video
    frames are the observations (leading extra frames are skipped) and `action$x[t]` leads from
    frame t to frame t+1. Buttons absent from the recording (v0.4 has no hotbar keys) are 0;
    `action$place` other than "none" becomes `use`; the other enum actions (craft, equip,
    nearbyCraft, nearbySmelt) have no button and are named in `info["unmapped_actions"]`.
    The last step is `terminated` when `metadata.json` says `success`, else `truncated`.
    Unlike MineRL's loader, the true last frame is kept (it copies the one before over it).

    Args:
        directory: a folder holding `recording.mp4` and `rendered.npz`.
        size: (H, W) of the returned frames.

    Returns:
        An Episode: frames uint8 [T+1, H, W, 3], actions {key: [T] or camera [T, 2]},
        rewards float32 [T], terminated/truncated bool [T].

    Example:
        >>> ep = read_minerl_v04("MineRLTreechop-v0/v3_absolute_grape_changeling-7_14600-16079")
        >>> len(ep.frames) == len(ep.rewards) + 1
        True
    """
    directory = Path(directory)
    video, npz = directory / "recording.mp4", directory / "rendered.npz"
    for path in (video, npz):
        if not path.is_file():
            raise RecordingError(
                f"{path} is missing: a MineRL v0.4 demonstration has recording.mp4 and rendered.npz"
            )
    try:
        # allow_pickle=False: object arrays (never needed here) cannot run code on load
        with np.load(npz, allow_pickle=False) as data:
            keys = set(data.files)
            if "reward" not in keys:
                raise RecordingError(f"{npz} has no 'reward' array (keys: {sorted(keys)[:8]}...)")
            rewards = np.asarray(data["reward"], np.float32).reshape(-1)
            T = len(rewards)
            actions = noop_actions(T)
            for key in BUTTONS:
                if f"action${key}" in keys:
                    actions[key] = (np.asarray(data[f"action${key}"]).reshape(T) != 0).astype(
                        np.int64
                    )
            if "action$camera" in keys:
                camera = np.asarray(data["action$camera"], np.float32).reshape(T, 2)
                actions["camera"] = np.clip(camera, -CAMERA_LIMIT, CAMERA_LIMIT)
            unmapped = sorted(
                k.removeprefix("action$")
                for k in keys
                if k.startswith("action$")
                and k.removeprefix("action$") not in actions
                and k != _PLACE_KEY
            )
            if _PLACE_KEY in keys and "action$use" not in keys:
                place = np.asarray(data[_PLACE_KEY]).reshape(T)
                if place.dtype.kind in "US":  # enum names; "none" is no placement
                    actions["use"] = (~np.isin(place.astype(str), ("none", ""))).astype(np.int64)
                else:  # enum indices; 0 is "none"
                    actions["use"] = (place != 0).astype(np.int64)
    except RecordingError:
        raise
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
        raise RecordingError(f"cannot read {npz}: {e}") from e
    if T < 1:
        raise RecordingError(f"{npz} holds no steps")
    frames = decode_video(video, size)
    if len(frames) < T + 1:
        raise RecordingError(
            f"{video} has {len(frames)} frames at {FPS:g} Hz but {npz} has {T} steps, which need {T + 1}"
        )
    skipped = len(frames) - (T + 1)
    frames = frames[skipped:]
    success = _read_success(directory / "metadata.json")
    terminated = np.zeros(T, bool)
    truncated = np.zeros(T, bool)
    (terminated if success else truncated)[-1] = True
    info = {
        "format": "minerl-v0.4",
        "source": str(directory),
        "skipped_leading_frames": skipped,
        "unmapped_actions": unmapped,
    }
    return Episode(frames, actions, rewards, terminated, truncated, info)


def _read_success(path: Path) -> bool:
    """`success` from a MineRL metadata.json; False when the file is absent or unreadable."""
    try:
        return bool(json.loads(path.read_text()).get("success", False))
    except (OSError, ValueError, AttributeError):
        return False
