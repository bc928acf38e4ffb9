"""ViZDoom scenarios and Freedoom maps as Gymnasium 1.x environments, headless."""

from __future__ import annotations

import os
import re
import tempfile
import weakref
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import vizdoom as vzd
from gymnasium import spaces

from envs.games import UnknownGameError
from envs.pixel_env import FrameEnv, frame_size, image_space, resize_frame

DOOM_TICRATE = 35  # Doom runs at 35 tics per second

# Named actions: each is the set of buttons held down for the step.
MOVE_ACTIONS: dict[str, tuple[str, ...]] = {
    "noop": (),
    "forward": ("MOVE_FORWARD",),
    "turn_left": ("TURN_LEFT",),
    "turn_right": ("TURN_RIGHT",),
    "forward+turn_left": ("MOVE_FORWARD", "TURN_LEFT"),
    "forward+turn_right": ("MOVE_FORWARD", "TURN_RIGHT"),
}
FULL_ACTIONS: dict[str, tuple[str, ...]] = {
    "noop": (),
    "forward": ("MOVE_FORWARD",),
    "backward": ("MOVE_BACKWARD",),
    "turn_left": ("TURN_LEFT",),
    "turn_right": ("TURN_RIGHT",),
    "strafe_left": ("MOVE_LEFT",),
    "strafe_right": ("MOVE_RIGHT",),
    "attack": ("ATTACK",),
    "use": ("USE",),
    "forward+turn_left": ("MOVE_FORWARD", "TURN_LEFT"),
    "forward+turn_right": ("MOVE_FORWARD", "TURN_RIGHT"),
    "forward+attack": ("MOVE_FORWARD", "ATTACK"),
}
ACTION_SETS = {"move": MOVE_ACTIONS, "full": FULL_ACTIONS}

# A starting engine settings file: with these sections present the engine does not create
# a ./_vizdoom folder in the working directory; everything else stays at its defaults.
ENGINE_INI = "".join(
    f"[{section}]\n"
    for section in (
        "IWADSearch.Directories",
        "FileSearch.Directories",
        *(f"{game}.AutoExec" for game in ("Doom", "Heretic", "Hexen", "Strife", "Chex")),
    )
)

# Game variables reported in info (lower-cased names).
INFO_VARIABLES = ("HEALTH", "POSITION_X", "POSITION_Y", "ANGLE")


def _resolutions() -> list[tuple[int, int, Any]]:
    """ViZDoom's screen resolutions as (H, W, enum), smallest area first."""
    found = []
    for name in dir(vzd.ScreenResolution):
        match = re.fullmatch(r"RES_(\d+)X(\d+)", name)
        if match:
            width, height = int(match[1]), int(match[2])
            found.append((height, width, getattr(vzd.ScreenResolution, name)))
    return sorted(found, key=lambda r: (r[0] * r[1], r[0]))


def pick_resolution(size: tuple[int, int]) -> Any:
    """The smallest ViZDoom resolution at least ``size=(H, W)`` (exact when one exists)."""
    candidates = _resolutions()
    for height, width, res in candidates:
        if (height, width) == size:
            return res
    for height, width, res in candidates:
        if height >= size[0] and width >= size[1]:
            return res
    return candidates[-1][2]


def scenario_config(scenario: str) -> str:
    """Path of a bundled scenario's .cfg (``"health_gathering"``) or a given .cfg path."""
    if os.path.isfile(scenario):
        return scenario
    path = os.path.join(vzd.scenarios_path, f"{scenario}.cfg")
    if not os.path.isfile(path):
        bundled = sorted(f[:-4] for f in os.listdir(vzd.scenarios_path) if f.endswith(".cfg"))
        raise UnknownGameError(
            f"no ViZDoom scenario {scenario!r}: use one of {bundled} or a path to a .cfg file"
        )
    return path


def _shut_down(game: Any, ini_path: str) -> None:
    game.close()  # writes the settings file, so delete it afterwards
    if os.path.exists(ini_path):
        os.remove(ini_path)


class ViZDoomEnv(FrameEnv):
    """A ViZDoom scenario or Freedoom map, rendered off-screen, through Gymnasium 1.x.

    ## Description
    First-person Doom on the ZDoom engine via ViZDoom. Bundled scenarios such as
    ``health_gathering`` (pick up medkits on an acid floor: moving and turning) or a full
    Freedoom map (``scenario="freedoom1", doom_map="E1M1"``: doors, monsters, weapons).

    ## Action Space
    Discrete over named button combinations (``action_names``). ``action_set="move"``:
    noop, forward, turn_left, turn_right, forward+turn_left, forward+turn_right.
    ``"full"`` adds backward, strafe_left/right, attack, use, forward+attack. A mapping
    ``{name: (button, ...)}`` of ViZDoom button names gives a custom set.

    ## Observation Space
    Box(0, 255, (H, W, 3), uint8), 120x160 by default (``size``); rendered at the
    smallest ViZDoom resolution that covers it and resized with PIL if not exact.

    ## Rewards
    The scenario's (health gathering: +1 per tic alive, -100 on death; map: +1 at exit).

    ## Starting State
    A new episode; the engine seed is drawn from ``np_random`` at every reset.

    ## Episode End
    ``terminated`` when the episode finishes in the game: the player dies or the map is
    exited. The scenario's own timeout is disabled; truncation comes from ``TimeLimit``.
    After the end the observation repeats the last rendered frame (ViZDoom shows none).

    ## Info
    ``health``, ``position_x``, ``position_y``, ``angle`` (floats) and ``tic``.

    ## Arguments
    ``scenario`` (bundled name or .cfg path), ``doom_map``, ``size``, ``frame_skip``
    (tics per step, default 4: 8.75 frames/s shown), ``action_set``, ``render_hud``,
    ``render_mode`` (``"rgb_array"``; ``"human"`` is left to play.py).

    ## Version History
    * v0: first version (ViZDoom 1.3).
    """

    metadata: ClassVar[dict[str, Any]] = {
        "render_modes": ["rgb_array"],
        "render_fps": DOOM_TICRATE / 4,
    }

    def __init__(
        self,
        scenario: str = "health_gathering",
        doom_map: str | None = None,
        size: int | tuple[int, int] = (120, 160),
        frame_skip: int = 4,
        action_set: str | Mapping[str, Sequence[str]] | None = None,
        render_hud: bool | None = None,
        render_mode: str | None = None,
    ) -> None:
        self.check_arguments(render_mode, frame_skip)
        self.size = frame_size(size)
        self.frame_skip = int(frame_skip)
        self.render_mode = render_mode
        if action_set is None:
            action_set = "move" if scenario == "health_gathering" else "full"
        actions = ACTION_SETS[action_set] if isinstance(action_set, str) else action_set
        self.action_names: list[str] = list(actions)

        game = vzd.DoomGame()
        game.load_config(scenario_config(scenario))
        # ViZDoom writes an engine settings file to the working directory unless told; give
        # each game its own (parallel workers would race on one) and delete it on close.
        handle, self._ini_path = tempfile.mkstemp(prefix="worldsim_vizdoom_", suffix=".ini")
        with os.fdopen(handle, "w") as ini:
            ini.write(ENGINE_INI)
        game.set_doom_config_path(self._ini_path)
        # Closes the game and deletes its settings file on close(), garbage collection or exit.
        self._finalizer = weakref.finalize(self, _shut_down, game, self._ini_path)
        if doom_map is not None:
            game.set_doom_map(doom_map)
        game.set_window_visible(False)
        game.set_sound_enabled(False)
        game.set_audio_buffer_enabled(False)
        game.set_automap_buffer_enabled(False)
        game.set_depth_buffer_enabled(False)
        game.set_labels_buffer_enabled(False)
        game.set_screen_format(vzd.ScreenFormat.RGB24)
        game.set_screen_resolution(pick_resolution(self.size))
        if render_hud is not None:
            game.set_render_hud(render_hud)
        game.set_episode_timeout(0)  # truncation belongs to TimeLimit
        game.set_mode(vzd.Mode.PLAYER)
        buttons = sorted({b for combo in actions.values() for b in combo})
        game.set_available_buttons([getattr(vzd.Button, b) for b in buttons])
        game.set_available_game_variables([getattr(vzd.GameVariable, v) for v in INFO_VARIABLES])
        game.init()
        self.game = game
        self._combos = [[float(b in combo) for b in buttons] for combo in actions.values()]
        self.observation_space = image_space(self.size)
        self.action_space = spaces.Discrete(len(self._combos))
        self.metadata = {**self.metadata, "render_fps": DOOM_TICRATE / self.frame_skip}
        self._frame: np.ndarray | None = None

    def _observe(self) -> np.ndarray:
        state = self.game.get_state()
        if state is not None:  # None once the episode has finished: keep the last frame
            self._frame = resize_frame(state.screen_buffer, self.size)
        return self._frame.copy()

    def _info(self) -> dict[str, Any]:
        # Read from the game, not the state, so the values after death are the final ones.
        info: dict[str, Any] = {
            name.lower(): float(self.game.get_game_variable(getattr(vzd.GameVariable, name)))
            for name in INFO_VARIABLES
        }
        info["tic"] = int(self.game.get_episode_time())
        return info

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.game.set_seed(int(self.np_random.integers(2**31 - 1)))
        self.game.new_episode()
        return self._observe(), self._info()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._frame is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        reward = self.game.make_action(self._combos[int(action)], self.frame_skip)
        terminated = bool(self.game.is_episode_finished())
        return self._observe(), float(reward), terminated, False, self._info()

    def close(self) -> None:
        if hasattr(self, "_finalizer"):
            self._finalizer()
        super().close()
