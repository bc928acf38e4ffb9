"""What the generative tools take and give: checked clips, pictures and action files in; a
`Generation` (frames as arrays, which of them the model made) and mp4 videos out."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from worldsim.errors import ActionError, WorldsimError
from worldsim.spaces import check_actions, stack_actions, tree_index

__all__ = [
    "GenerateError",
    "Generation",
    "check_clip",
    "check_picture",
    "read_actions",
    "read_picture",
    "read_video",
    "side_by_side",
    "write_mp4",
]


class GenerateError(WorldsimError, ValueError):
    """A generative tool was given something it cannot use (names the thing and the fix)."""


@dataclass
class Generation:
    """A clip made by a generative tool: the frames the model was given, held exactly, and the
    frames it made, in time order.

    frames: uint8 [T, H, W, C]. generated: bool [T], True where the model made the frame (False:
    held clean, bit-exact as given). actions: [T-1, ...] the actions between the frames.
    rewards: float32 [T-1], the predicted reward of each transition into a generated frame (NaN
    into a held one). reference: uint8 [T, H, W, C] what was recorded over the same steps, where
    there is a recording (the left pane of a side-by-side video); None otherwise.
    """

    tool: str
    frames: np.ndarray
    generated: np.ndarray
    actions: Any
    rewards: np.ndarray
    reference: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frames)


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def check_picture(image: Any, shape: tuple[int, int, int]) -> np.ndarray:
    """A picture as uint8 [H, W, C] of the model's frame `shape`, or GenerateError naming what
    is wrong with it (kind, dtype, size) and how to fix it."""
    if isinstance(image, str | Path):
        raise GenerateError(
            f"the picture is a path ({image}); read it first with read_picture(path, shape) or "
            "pass --image to `worldsim generate animate`"
        )
    try:
        array = np.asarray(image)
    except Exception as e:  # an object numpy cannot read
        raise GenerateError(f"the picture is a {type(image).__name__}, not an image array") from e
    if array.dtype != np.uint8:
        raise GenerateError(
            f"the picture has dtype {array.dtype}; pass uint8 pixels in [0, 255] "
            "(e.g. (image * 255).round().astype(np.uint8) for floats in [0, 1])"
        )
    if array.ndim != 3 or array.shape != tuple(shape):
        H, W, C = shape
        raise GenerateError(
            f"the picture has shape {array.shape}; this model needs {H}x{W}x{C} "
            f"(resize it to {W}x{H}, e.g. read_picture(path, shape, resize=True))"
        )
    return np.array(array)  # a writable copy (torch wants one; PIL gives read-only arrays)


def read_picture(path: str | Path, shape: tuple[int, int, int], resize: bool = True) -> np.ndarray:
    """An image file (PNG, JPEG, ...) as uint8 [H, W, C], resized to the frame size if `resize`."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if resize and image.size != (shape[1], shape[0]):
                image = image.resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
            array = np.asarray(image, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise GenerateError(f"cannot read the picture {path}: {e}; pass a PNG or JPEG file") from e
    return check_picture(array, shape)


def check_clip(
    frames: Any, actions: Any, shape: tuple[int, int, int], space: gym.Space
) -> tuple[np.ndarray, Any]:
    """A recorded clip checked: frames uint8 [T>=1, H, W, C] and actions [T-1, ...] of `space`."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or len(frames) == 0:
        raise GenerateError(
            f"the clip has shape {frames.shape}: pass frames [T>=1, H, W, C] (an empty clip has "
            "nothing to extend, edit or hold)"
        )
    if frames.dtype != np.uint8 or frames.shape[1:] != tuple(shape):
        raise GenerateError(
            f"the clip's frames are {frames.dtype} {frames.shape[1:]}; this model needs uint8 "
            f"{_shape_text(shape)} frames (a clip of another game or size?)"
        )
    actions = stack_actions(space, [] if actions is None and len(frames) == 1 else actions)
    check_actions(space, actions, len(frames) - 1, "the clip's actions", GenerateError)
    return frames, actions


def read_actions(path: str | Path, space: gym.Space, n: int, names: list[str] | None = None) -> Any:
    """n actions of `space` from a file: .npy (an array, [n, ...]), .json (a list, or a dict of
    lists for Dict spaces) or text (one action per line: an integer or, for Discrete spaces
    with `names`, an action name such as move_left)."""
    path = Path(path)
    if not path.is_file():
        raise GenerateError(f"no action file at {path}")
    if path.suffix == ".npy":
        data: Any = np.load(path, allow_pickle=False)
    elif path.suffix == ".json":
        data = json.loads(path.read_text())
    else:
        lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
        data = []
        for ln in lines:
            if ln.lstrip("-").isdigit():
                data.append(int(ln))
            elif names is not None and ln in names:
                data.append(names.index(ln))
            else:
                known = f" or one of {', '.join(names)}" if names else ""
                raise GenerateError(f"{path}: action {ln!r} is not an integer{known}")
    actions = stack_actions(space, data, GenerateError)
    first = next(iter(actions.values())) if isinstance(actions, dict) else actions
    if len(first) != n:
        raise GenerateError(
            f"the action file {path} holds {len(first)} actions; this needs {n} "
            "(one per generated frame)"
        )
    check_actions(space, actions, n, f"the actions in {path}", GenerateError)
    return actions


def read_video(path: str | Path, shape: tuple[int, int, int], resize: bool = False) -> np.ndarray:
    """The frames of a video file (mp4, ...) as uint8 [T, H, W, C] (PyAV)."""
    import av

    out = []
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                if resize:
                    frame = frame.reformat(width=shape[1], height=shape[0])
                out.append(frame.to_ndarray(format="rgb24"))
    except (OSError, av.error.FFmpegError) as e:
        raise GenerateError(f"cannot read the video {path}: {e}") from e
    if not out:
        raise GenerateError(f"the video {path} has no frames: an empty clip")
    frames = np.stack(out)
    if frames.shape[1:] != tuple(shape):
        raise GenerateError(
            f"the video {path} is {frames.shape[2]}x{frames.shape[1]}; this model needs "
            f"{shape[1]}x{shape[0]} frames (pass --resize to scale it)"
        )
    return frames


def _bar(frames: np.ndarray, flags: np.ndarray, scale: int) -> np.ndarray:
    """Frames scaled up `scale` times, with a bar on top: green held, red generated."""
    big = frames.repeat(scale, 1).repeat(scale, 2)
    bar = np.zeros((len(frames), max(2, scale), big.shape[2], 3), np.uint8)
    bar[flags] = (220, 40, 40)
    bar[~flags] = (40, 180, 60)
    return np.concatenate([bar, big], 1)


def side_by_side(gen: Generation, scale: int = 4, recorded: bool = True) -> np.ndarray:
    """The video frames [T, h, w, 3]: recorded | generated (when there is a recording and
    `recorded`), each scaled `scale` times with a bar on top (green: held, red: generated)."""
    right = _bar(gen.frames, gen.generated, scale)
    if not recorded or gen.reference is None:
        return right
    ref = gen.reference
    have = min(len(ref), len(gen.frames))
    left = np.zeros_like(gen.frames)
    left[:have] = ref[:have]
    left = _bar(left, np.zeros(len(left), bool), scale)
    gap = np.full((len(right), right.shape[1], scale, 3), 255, np.uint8)
    return np.concatenate([left, gap, right], 2)


def write_mp4(
    path: str | Path, gen: Generation, fps: float = 10.0, scale: int = 4, recorded: bool = True
) -> Path:
    """Write a Generation as an H.264 mp4 (recorded | generated side by side where a recording
    exists and `recorded`). Returns the path."""
    from worldsim.bench.gallery import write_video

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    video = side_by_side(gen, scale, recorded)
    h, w = video.shape[1:3]
    video = video[:, : h - h % 2, : w - w % 2]  # yuv420p needs even sizes
    write_video(path, np.ascontiguousarray(video), fps)
    return path


def slice_actions(actions: Any, start: int, stop: int | None = None) -> Any:
    """actions[start:stop] on every leaf."""
    return tree_index(actions, slice(start, stop))


def concat_actions(parts: list[Any]) -> Any:
    """Actions concatenated along time, leaf by leaf."""
    if isinstance(parts[0], dict):
        return {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}
    return np.concatenate([np.asarray(p) for p in parts])


def n_actions(actions: Any) -> int:
    first = next(iter(actions.values())) if isinstance(actions, dict) else actions
    return len(np.asarray(first))


def check_future(space: gym.Space, actions: Any, what: str = "the future actions") -> Any:
    """Actions [N>=1, ...] of `space`, checked."""
    try:
        actions = stack_actions(space, actions, GenerateError)
    except ActionError as e:
        raise GenerateError(f"{what}: {e}") from e
    n = n_actions(actions)
    if n == 0:
        raise GenerateError(f"{what} are empty: pass at least one action (one per new frame)")
    check_actions(space, actions, n, what, GenerateError)
    return actions
