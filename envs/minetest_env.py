"""Minetest, a Minecraft-like 3D voxel game, as a real Gymnasium 1.x environment (headless, Xvfb).

`gym.make("worldsim/RealMinetest-v0")` starts its own X server (Xvfb) and game client, joins a
seeded singleplayer world and plays it in lockstep: keys and mouse go in through XTEST, a fixed
tick passes, the window is grabbed. A server-side mod (envs/minetest_mod) reports the pose and
the controls the game saw, teleports the player and hides the HUD; the process plumbing is in
envs.minetest_game.
"""

from __future__ import annotations

import time
import weakref
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from envs.minecraft_minerl import BUTTONS, minerl_action_space
from envs.minetest_game import (
    DEGREES_PER_PIXEL,
    KEYSYMS,
    MOUSE_BUTTONS,
    MinetestError,
    MinetestGame,
    find_minetest,
)
from envs.pixel_env import FrameEnv, frame_size, image_space, resize_frame
from worldsim.errors import ActionError
from worldsim.spaces import check_actions

__all__ = ["IGNORED_BUTTONS", "MinetestEnv", "MinetestError", "find_minetest"]

TICK = 0.05  # seconds per step: 20 steps/s, MineRL's and VPT's tick
# MineRL buttons with no Minetest counterpart, or that open a menu and stall the lockstep.
IGNORED_BUTTONS = tuple(b for b in BUTTONS if b not in KEYSYMS and b not in MOUSE_BUTTONS)
POSE_FIELDS = ("x", "y", "z", "yaw", "pitch")
MOVING = {"forward", "back", "left", "right", "jump", "sneak", "attack", "use"}
CONTROL_FIELDS = ("up", "down", "left", "right", "jump", "aux1", "sneak", "dig", "place", "zoom")


class MinetestEnv(FrameEnv):
    """Minetest 5.x (minetest_game) played for real, headless, through Gymnasium 1.x.

    ## Description
    A 3D voxel sandbox in the Minecraft family: walk, jump, look around, dig and place blocks
    in a world generated from ``world_seed``. The game runs in its own Xvfb with Mesa's
    software GL; HUD, clouds and view bobbing are off and the time of day is fixed (noon), so a
    frame depends only on the pose and the world. Needs the ``minetest`` and ``xvfb`` system
    packages (Debian: ``apt-get install -y minetest xvfb``) and ``pip install
    'worldsim[minetest]'``; without the game, construction raises ``MinetestError`` saying so.

    ## Action Space
    The MineRL/VPT Dict of ``envs.minecraft_minerl.minerl_action_space()``: 23 buttons
    Discrete(2) and ``camera`` Box(-180, 180, (2,)) as [pitch, yaw] degrees this step (pitch
    positive looks down, yaw positive turns right), so VPT and MineRL recordings, this env and
    their world models share one action encoding and play.py's Minecraft keymap. forward/back/
    left/right/jump/sneak/drop/hotbar.1-9 press w/s/a/d/space/shift/q/1-9, attack digs (left
    button), use places (right button); ``IGNORED_BUTTONS`` (sprint, pickItem, inventory, ESC,
    swapHands) are accepted and ignored. The camera moves the mouse by whole pixels of 0.15
    degrees (VPT's 360/2400), the remainder carried to the next step, so camera actions that
    add up to a full turn come back to the same yaw. Invalid actions raise ``ActionError``.

    ## Observation Space
    Box(0, 255, (H, W, 3), uint8), 64x64 by default (``size``); rendered at ``render_size``
    (default twice ``size``) and resized with PIL.

    ## Rewards
    None: always 0.0 (a sandbox; task rewards are for wrappers).

    ## Starting State
    The world at ``world_seed`` as generated, every dug or placed block put back and dropped
    items removed; the player on the ground at a start drawn from ``np_random`` within
    ``start_radius`` nodes of the world's spawn, facing a random yaw, level, with a pickaxe,
    shovel, axe and 99 each of dirt, cobble, wood, glass and torches (slot 1 selected).

    ## Episode End
    Never terminated (damage is off); ``TimeLimit`` truncates (1,000 steps when registered).

    ## Info
    From the mod, as the server saw it at the end of the step: ``pose`` float32 [5] (x, y, z
    in nodes, z north; yaw degrees in [0, 360), counter-clockwise from +z; pitch degrees,
    positive down), ``controls`` uint8 [10] (the client's up, down, left, right, jump, aux1,
    sneak, dig, place, zoom), ``wield_index`` (1-9) and ``server_tick``. ``pose`` and
    ``controls`` are recorded with every collected episode (``label_spec``). The server's view
    trails the client's by up to one client send interval (20 ms here).

    ## Determinism (measured: benchmarks/bench_minetest.py --replay-steps 64, docs/minetest.md)
    The same pose gives a pixel-identical frame (the mod keeps the sky, water and time still),
    and ``reset(seed=s)`` gives an identical first frame. Turning is exact (whole pixels): a
    replay of random camera moves gives the same poses and 68-84% identical frames (mean abs
    difference 0.5-1.4 of 255, over two runs on a CPU shared with other work; a busy game draws
    newly seen terrain a frame or two late). Walking is timed by the game's clock, so replays
    that walk drift: 4-11% identical frames for the explorer (5.2-6.4 of 255, positions within
    0.4-1.0 nodes), 1.5% for sticky random play (9.7-11.2 of 255, 1.9-3.0 nodes after jumps
    and falls); hence the registration's ``nondeterministic=True``. The game runs on between
    steps, with the action's keys held.

    ## Arguments
    ``size``, ``render_size``, ``world_seed`` (map seed, default 42), ``tick`` (seconds per
    step, default 0.05), ``start_radius`` (nodes), ``viewing_range`` (nodes), ``fps_max`` (the
    game's frame cap), ``settle_timeout`` (seconds to wait for a still first frame),
    ``render_mode`` (``"rgb_array"``), ``binary`` (path of the minetest executable).

    ## Version History
    * v0: first version (Minetest 5.6.1, minetest_game).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 1 / TICK}

    def __init__(
        self,
        size: int | tuple[int, int] = 64,
        render_size: int | tuple[int, int] | None = None,
        world_seed: int = 42,
        tick: float = TICK,
        start_radius: float = 24.0,
        viewing_range: int = 60,
        fps_max: int = 60,
        settle_timeout: float = 3.0,
        render_mode: str | None = None,
        binary: str | None = None,
    ) -> None:
        self.check_arguments(render_mode)
        self.size = frame_size(size)
        self.render_size = (
            frame_size(render_size) if render_size else (2 * self.size[0], 2 * self.size[1])
        )
        if not tick > 0 or start_radius < 0 or settle_timeout <= 0:
            raise ValueError(
                f"tick and settle_timeout must be > 0 and start_radius >= 0, got tick={tick}, "
                f"settle_timeout={settle_timeout}, start_radius={start_radius}"
            )
        self.tick, self.start_radius, self.settle_timeout = (
            float(tick),
            float(start_radius),
            float(settle_timeout),
        )
        self.render_mode = render_mode
        self.observation_space = image_space(self.size)
        self.action_space = minerl_action_space()
        self.action_names = None
        self.metadata = {**self.metadata, "render_fps": 1 / self.tick}
        self.label_spec = {
            "arrays": ["pose", "controls"],
            "pose": {
                "fields": list(POSE_FIELDS),
                "units": "nodes, degrees (yaw ccw from +z, pitch down)",
            },
            "controls": {"fields": list(CONTROL_FIELDS)},
        }
        self.game = MinetestGame(
            find_minetest(binary),
            self.render_size,
            world_seed=int(world_seed),
            viewing_range=int(viewing_range),
            fps_max=int(fps_max),
        )
        # Stops the game and its X server on close(), garbage collection or interpreter exit.
        self._finalizer = weakref.finalize(self, self.game.stop)
        self.game.start()
        self._held: set[str] = set()
        self._camera_rest = np.zeros(2)  # pixels of camera motion not yet sent
        self._frame: np.ndarray | None = None

    # ------------------------------------------------------------------ gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.game.set_held(set())
        self._held, self._camera_rest = set(), np.zeros(2)
        time.sleep(0.1)  # the client takes in the last mouse motion before it is teleported
        cx, cz = self.game.spawn
        for _ in range(50):  # a start on water or off the map is refused: draw again
            dx, dz = self.np_random.uniform(-self.start_radius, self.start_radius, 2)
            yaw = float(self.np_random.uniform(0.0, 360.0))
            if self.game.command("reset", round(cx + dx), round(cz + dz), round(yaw, 2), 0.0):
                break
        else:
            raise MinetestError(
                f"no start on dry ground within {self.start_radius} nodes of the spawn "
                f"{self.game.spawn}: raise start_radius or pick another world_seed"
            )
        self.game.tap("hotbar.1")  # the server cannot choose the wielded slot (Minetest 5.6)
        self._frame = self._observe(self.game.settle(self.settle_timeout))
        return self._frame.copy(), self._info()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._frame is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        action = self._check(action)
        held = {k for k in (*KEYSYMS, *MOUSE_BUTTONS) if action[k]}
        # Whole pixels of mouse motion; the rest is carried, so turns add up exactly.
        pitch, yaw = np.asarray(action["camera"], np.float64)
        self._camera_rest += np.array([yaw, pitch]) / DEGREES_PER_PIXEL
        move = np.round(self._camera_rest)
        self._camera_rest -= move
        start = time.perf_counter()
        self.game.set_held(held, mouse=(int(move[0]), int(move[1])))
        self._held = held
        time.sleep(max(0.0, self.tick - (time.perf_counter() - start)))
        # Standing still (turning at most), the view must come to rest: a busy CPU can make the
        # game draw the turn a frame or two late. Walking never rests, so it is not waited for.
        moving = bool(held & MOVING)
        self._frame = self._observe(self.game.grab() if moving else self.game.latest_frame())
        return self._frame.copy(), 0.0, False, False, self._info()

    def set_pose(self, x: float, y: float, z: float, yaw: float, pitch: float = 0.0) -> np.ndarray:
        """Teleport to an exact pose (keys released) and return its settled frame [H, W, 3].

        The 3D-consistency benchmark uses it to fetch the real frame at a pose.
        """
        if self._frame is None:
            raise gym.error.ResetNeeded("call reset() before set_pose()")
        self.game.set_held(set())
        self._held = set()
        self.game.command("pose", x, y, z, yaw, pitch)
        self._frame = self._observe(self.game.settle(self.settle_timeout))
        return self._frame.copy()

    def close(self) -> None:
        if hasattr(self, "_finalizer"):
            self._finalizer()
        super().close()

    # ------------------------------------------------------------------ helpers
    @property
    def pids(self) -> list[int]:
        """Process ids of the X server and the game (empty once closed), for tests."""
        return self.game.pids

    def _observe(self, frame: np.ndarray) -> np.ndarray:
        return resize_frame(frame, self.size)

    def _info(self) -> dict[str, Any]:
        state = self.game.fresh_state()
        return {
            "pose": np.array(state["pose"], np.float32),
            "controls": np.array(state["controls"], np.uint8),
            "wield_index": state["wield_index"],
            "server_tick": state["tick"],
        }

    def _check(self, action: Any) -> dict[str, Any]:
        """The action as a dict of numpy values, or ActionError naming what is wrong."""
        if not isinstance(action, dict):
            raise ActionError(
                f"a Minetest action is a dict with the MineRL keys {sorted(self.action_space.spaces)}"
                f" (start from worldsim.spaces.noop_action(env.action_space)); got {type(action).__name__}"
            )
        try:
            batch = {k: np.asarray(v)[None] for k, v in action.items()}
        except (TypeError, ValueError) as e:
            raise ActionError(f"could not read the action dict as arrays: {e}") from e
        check_actions(self.action_space, batch, 1, "action")
        return {k: v[0] for k, v in batch.items()}
