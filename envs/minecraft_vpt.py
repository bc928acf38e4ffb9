"""OpenAI VPT contractor recordings (`.mp4` at 20 Hz + `.jsonl` per tick) as MineRL-action episodes."""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from envs.minecraft_minerl import (
    CAMERA_LIMIT,
    DEFAULT_SIZE,
    RecordingError,
    decode_video,
    noop_actions,
)
from worldsim.data import Episode

# From VPT's run_inverse_dynamics_model.py: recorder key names -> MineRL action names.
KEYBOARD_BUTTON_MAPPING: dict[str, str] = {
    "key.keyboard.escape": "ESC",
    "key.keyboard.s": "back",
    "key.keyboard.q": "drop",
    "key.keyboard.w": "forward",
    **{f"key.keyboard.{i}": f"hotbar.{i}" for i in range(1, 10)},
    "key.keyboard.e": "inventory",
    "key.keyboard.space": "jump",
    "key.keyboard.a": "left",
    "key.keyboard.d": "right",
    "key.keyboard.left.shift": "sneak",
    "key.keyboard.left.control": "sprint",
    "key.keyboard.f": "swapHands",
}
MOUSE_BUTTON_MAPPING: dict[int, str] = {0: "attack", 1: "use", 2: "pickItem"}
# Mouse counts -> degrees, "a number in the MineRL Java code regarding sensitivity" (VPT).
CAMERA_SCALER = 360.0 / 2400.0


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The ticks of a VPT `.jsonl` file, one JSON object per non-empty line.

    Raises:
        RecordingError: the file is missing or a line is not a JSON object.
    """
    steps = []
    try:
        with open(path, encoding="utf-8") as f:
            lines = list(f)
    except (OSError, UnicodeDecodeError) as e:
        raise RecordingError(f"cannot read {path}: {e}") from e
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            step = json.loads(line)
        except ValueError as e:
            raise RecordingError(f"{path} line {n} is not JSON: {e}") from e
        if not isinstance(step, dict):
            raise RecordingError(
                f"{path} line {n} is a {type(step).__name__}, not a VPT tick object"
            )
        steps.append(step)
    return steps


def vpt_actions(steps: Sequence[dict[str, Any]], source: str = "jsonl") -> dict[str, np.ndarray]:
    """Convert VPT ticks into MineRL actions, as VPT's own data loader does.

    Per tick: keys in `keyboard.keys` through KEYBOARD_BUTTON_MAPPING; `mouse.buttons` 0/1/2 ->
    attack/use/pickItem; camera = [mouse.dy, mouse.dx] * 360/2400 degrees ([pitch, yaw],
    clipped to +-180). Two fixes from VPT's `data_loader.py`: an attack button already held
    in the first tick is stuck (ignored until pressed anew), and a change of the `hotbar`
    field (scroll wheel, which the recorder misses) presses that slot's `hotbar.N` key.
    Null actions are kept (VPT drops them for behaviour cloning; a world model needs every tick).

    Args:
        steps: parsed `.jsonl` lines.
        source: name for error messages.

    Returns:
        {button: int64 [N] in {0, 1}, "camera": float32 [N, 2]}.

    Example:
        >>> a = vpt_actions([{"mouse": {"dx": 10.0, "dy": 0.0, "buttons": [0]},
        ...                   "keyboard": {"keys": ["key.keyboard.w"]}, "hotbar": 0}])
        >>> int(a["forward"][0]), int(a["attack"][0]), float(a["camera"][0, 1])
        (1, 1, 1.5)
    """
    actions = noop_actions(len(steps))
    attack_stuck = False
    last_hotbar = 0
    for t, step in enumerate(steps):
        try:
            mouse, keys = step["mouse"], step["keyboard"]["keys"]
            buttons = list(mouse.get("buttons") or [])
            new_buttons = list(mouse.get("newButtons") or [])
            if t == 0:
                attack_stuck = new_buttons == [0]
            elif attack_stuck and 0 in new_buttons:
                attack_stuck = False
            if attack_stuck:
                buttons = [b for b in buttons if b != 0]
            for key in keys:
                if key in KEYBOARD_BUTTON_MAPPING:  # other keys (chat, F3, ...) are not actions
                    actions[KEYBOARD_BUTTON_MAPPING[key]][t] = 1
            for button, name in MOUSE_BUTTON_MAPPING.items():
                if button in buttons:
                    actions[name][t] = 1
            actions["camera"][t] = (
                float(mouse["dy"]) * CAMERA_SCALER,
                float(mouse["dx"]) * CAMERA_SCALER,
            )
            hotbar = int(step.get("hotbar", last_hotbar))
        except (KeyError, TypeError, ValueError) as e:
            raise RecordingError(
                f"{source} tick {t} lacks a VPT field or has a bad value: {e!r}"
            ) from e
        if not 0 <= hotbar <= 8:
            raise RecordingError(f"{source} tick {t} has hotbar {hotbar}, expected 0..8")
        if hotbar != last_hotbar:
            actions[f"hotbar.{hotbar + 1}"][t] = 1
        last_hotbar = hotbar
    np.clip(actions["camera"], -CAMERA_LIMIT, CAMERA_LIMIT, out=actions["camera"])
    return actions


def read_vpt(
    mp4_path: str | Path, jsonl_path: str | Path | None = None, size: tuple[int, int] = DEFAULT_SIZE
) -> Episode:
    """Read one VPT contractor recording as an episode with MineRL Dict actions.

    Alignment follows VPT (`data_loader.py`, `run_inverse_dynamics_model.py`): video frame i and
    jsonl line i are the same tick, and the agent took action i while seeing frame i. So
    `actions[i]` leads from frame i to frame i+1: N ticks give N frames and N-1 transitions
    (the last line's action has no following frame and is dropped). If the video and the
    jsonl disagree in length, both are cut to the shorter with a warning. There is no reward
    (zeros), nothing terminates, and the last step is `truncated` (a recording just stops).
    VPT draws a mouse cursor into frames while a GUI is open; we keep the frames as recorded.

    Args:
        mp4_path: the video (20 Hz).
        jsonl_path: its ticks; default: the same name with `.jsonl`.
        size: (H, W) of the returned frames.

    Returns:
        An Episode: frames uint8 [N, H, W, 3], actions {key: [N-1] or camera [N-1, 2]},
        rewards float32 [N-1] (zeros), terminated/truncated bool [N-1].

    Example:
        >>> ep = read_vpt("cheeky-cornflower-setter-02e496ce4abb-20220421-092639.mp4", size=(64, 64))
        >>> ep.actions["forward"].shape[0] == len(ep.frames) - 1
        True
    """
    mp4_path = Path(mp4_path)
    jsonl_path = mp4_path.with_suffix(".jsonl") if jsonl_path is None else Path(jsonl_path)
    steps = read_jsonl(jsonl_path)
    frames = decode_video(mp4_path, size)
    n = min(len(frames), len(steps))
    if len(frames) != len(steps):
        warnings.warn(
            f"{mp4_path} has {len(frames)} frames but {jsonl_path} has {len(steps)} ticks: using the first {n}",
            stacklevel=2,
        )
    if n < 2:
        raise RecordingError(
            f"{mp4_path} with {jsonl_path} holds {n} ticks; an episode needs at least 2"
        )
    actions = vpt_actions(steps[: n - 1], source=str(jsonl_path))
    T = n - 1
    truncated = np.zeros(T, bool)
    truncated[-1] = True
    info = {
        "format": "vpt",
        "source": str(mp4_path),
        "video_frames": len(frames),
        "jsonl_ticks": len(steps),
        "gui_open_ticks": sum(bool(s.get("isGuiOpen", False)) for s in steps[:n]),
    }
    return Episode(frames[:n], actions, np.zeros(T, np.float32), np.zeros(T, bool), truncated, info)
