"""Crafter (the default game) as a Gymnasium 1.x environment."""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import crafter
import gymnasium as gym
import numpy as np
from crafter import constants
from gymnasium import spaces

from envs.pixel_env import FrameEnv, frame_size, image_space
from worldsim.validation import check_discrete_action

# Crafter's standard episode length (the benchmark's 10,000 steps), applied by TimeLimit.
CRAFTER_MAX_STEPS = 10000


def sleeping_view(frames: np.ndarray) -> np.ndarray:
    """Whether each 64x64 Crafter frame [..., 64, 64, 3] shows the sleeping view: the game
    desaturates its map (the top 7 tile rows, 63 x 49 px) and tints it blue, so R = G and
    B = G + 8 there. Real frames separate by a margin of 19 levels (asleep at most 3.1, awake
    at least 22.1 over 15 episodes of the sleeper policy); night leaves colour."""
    m = np.asarray(frames)[..., :49, :63, :].astype(np.float32)
    r, g, b = m[..., 0], m[..., 1], m[..., 2]
    return np.abs(r - g).mean((-1, -2)) + np.abs(b - g - 8).mean((-1, -2)) < 10


def relabel(frames: np.ndarray, labels: dict[str, np.ndarray], spec: dict[str, Any]) -> dict:
    """The labels of an episode recorded before Crafter's stores counted falling asleep,
    brought to today's: the `events` counters gain `fall_asleep`, the times the frames turn to
    the sleeping view (`sleeping_view`), in the order of `spec` (CrafterEnv's label_spec)."""
    names = spec["events"]["names"]
    old = np.asarray(labels["events"])
    if old.shape[1] == len(names):
        return dict(labels)
    if old.shape[1] != len(names) - 1 or names[-1] != "fall_asleep":
        raise ValueError(f"events of {old.shape[1]} counters: not a Crafter store of this project")
    asleep = sleeping_view(frames)
    fell = np.concatenate([[0], np.cumsum(asleep[1:] & ~asleep[:-1])]).astype(np.int32)
    return {**labels, "events": np.concatenate([old, fell[:, None]], 1)}


class CrafterEnv(FrameEnv):
    """Crafter, the open-world survival game of Hafner (2021), through Gymnasium 1.x.

    ## Description
    A 2D Minecraft-like world: collect materials, craft tools, survive hunger, thirst,
    fatigue, zombies and skeletons, and unlock up to 22 achievements.

    ## Action Space
    Discrete(17), named in ``action_names`` (crafter's own names): noop, move_left,
    move_right, move_up, move_down, do, sleep, place_stone, place_table, place_furnace,
    place_plant, make_wood_pickaxe, make_stone_pickaxe, make_iron_pickaxe,
    make_wood_sword, make_stone_sword, make_iron_sword. An action must be an integer in
    [0, 16] (Python or numpy); anything else raises ``worldsim.errors.ActionError``.

    ## Observation Space
    Box(0, 255, (H, W, 3), uint8): the local 9x7 view above the inventory bar, 64x64 by
    default (``size``).

    ## Rewards
    Crafter's: +1 for each achievement unlocked the first time in the episode, and the
    change in health / 10 (``reward=False`` gives 0 always).

    ## Starting State
    A freshly generated 64x64 world. Every reset draws the world seed from ``np_random``,
    so ``reset(seed=s)`` reproduces the same world and first frame.

    ## Episode End
    ``terminated`` when the player dies (health <= 0). Crafter's own length limit is
    disabled; truncation comes from ``TimeLimit`` (10,000 steps when registered).

    ## Info
    ``achievements`` (name -> count), ``inventory`` (name -> amount, health included),
    ``player_pos`` (int64 [2], world x, y), ``facing`` (int64 [2], the x, y step the player
    faces, shown by its sprite), and the labels of the frame, recorded with every
    episode: ``semantic`` (uint8 [7, 9], the semantic id drawn in each map tile of the view,
    from the game's own semantic map: material, or the creature standing on it; 0 outside the
    world; names in ``label_spec``) and ``view_pos`` (int32 [2], world row and column of the
    view's top-left map tile) and ``events`` (int32 [23], the count of each achievement so far
    in the episode, in the order of ``label_spec["events"]["names"]``: the first time one
    leaves 0, Crafter pays its +1; and last, ``fall_asleep``, how often the player fell
    asleep, which greys the whole view until it wakes: an event the game shows but does not
    pay, listed under ``label_spec["events"]["unpaid"]``). All are copies, safe to keep.

    ## Arguments
    ``size`` (int or (H, W)), ``area`` (world size in tiles), ``view`` (tiles seen),
    ``reward`` (bool), ``render_mode`` (``"rgb_array"`` returns the current frame;
    ``"human"`` is left to play.py).

    ## Version History
    * v0: first version (crafter 1.8).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        size: int | tuple[int, int] = 64,
        area: tuple[int, int] = (64, 64),
        view: tuple[int, int] = (9, 9),
        reward: bool = True,
        render_mode: str | None = None,
    ) -> None:
        self.check_arguments(render_mode)
        try:
            self.size = frame_size(size)
        except (TypeError, ValueError):
            raise ValueError(
                f"size must be a positive int or [H, W], got {size!r} (e.g. size=96)"
            ) from None
        self.render_mode = render_mode
        # crafter's size is (W, H): it renders [W, H, 3] and transposes.
        self.game = crafter.Env(
            area=area, view=view, size=(self.size[1], self.size[0]), reward=reward, length=None
        )
        self.observation_space = image_space(self.size)
        self.action_space = spaces.Discrete(len(constants.actions))
        self.action_names: list[str] = list(constants.actions)
        # Crafter's achievements, and falling asleep (counted here: the game pays nothing for
        # it, but the view turns grey at once, a change a world model must be told).
        self._event_names = [*sorted(constants.achievements), "fall_asleep"]
        self._fell_asleep = 0
        self.label_spec = self._label_spec(view)
        self._frame: np.ndarray | None = None

    def _label_spec(self, view: tuple[int, int]) -> dict[str, Any]:
        """How the per-frame labels map onto the frame, stored with recorded episodes."""
        cols, rows = self.game._local_view._grid.tolist()  # map tiles (x, y)
        unit = [self.size[0] // view[1], self.size[1] // view[0]]  # tile [h, w] in px
        border = [(self.size[i] - unit[i] * view[1 - i]) // 2 for i in (0, 1)]
        sem = self.game._sem_view
        names = [None] * (len(sem._mat_ids) + len(sem._obj_ids))
        for material, i in sem._mat_ids.items():
            names[i] = material or "none"
        for kind, i in sem._obj_ids.items():
            names[i] = kind.__name__.lower()
        moves = {
            "move_left": [0, -1],
            "move_right": [0, 1],
            "move_up": [-1, 0],
            "move_down": [1, 0],
        }
        return {
            "arrays": ["semantic", "view_pos", "events"],
            "semantic": {
                "names": names,
                "grid": [rows, cols],  # map tiles of the view, top-left first
                "frame_grid": [int(view[1]), int(view[0])],  # every tile row, inventory below
                "tile": unit,
                "origin": border,  # pixel (y, x) of the top-left tile
                "background": ["none", "grass", "sand", "path"],  # not objects
                "anchor": [rows // 2, cols // 2],  # the player's tile: fixed while the view moves
            },
            # action -> change of view_pos when the move is not blocked
            "moves": {str(self.action_names.index(k)): v for k, v in moves.items()},
            # per-episode event counters; a step where any of them but the unpaid ones first
            # leaves 0 pays `reward`
            "events": {
                "names": list(self._event_names),
                "reward": 1.0,
                "pays": "first",
                "unpaid": ["fall_asleep"],
            },
        }

    def _labels(self) -> dict[str, np.ndarray]:
        rows, cols = self.label_spec["semantic"]["grid"]
        x, y = (int(v) for v in self.game._player.pos)
        top, left = y - rows // 2, x - cols // 2
        semantic = np.pad(self.game._sem_view(), max(rows, cols))  # [X, Y]; 0 outside
        pad = max(rows, cols)
        window = semantic[left + pad : left + pad + cols, top + pad : top + pad + rows]
        counts = {**self.game._player.achievements, "fall_asleep": self._fell_asleep}
        return {
            "semantic": np.ascontiguousarray(window.T, dtype=np.uint8),
            "view_pos": np.array([top, left], np.int32),
            "events": np.array([counts[k] for k in self._event_names], np.int32),
        }

    def _info(self) -> dict[str, Any]:
        # crafter mutates these dicts in place every step: hand out copies.
        player = self.game._player
        return {
            "achievements": copy.deepcopy(player.achievements),
            "inventory": copy.deepcopy(player.inventory),
            "player_pos": np.array(player.pos, dtype=np.int64),
            "facing": np.array(player.facing, dtype=np.int64),
            **self._labels(),
        }

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        # crafter seeds world generation with hash((_seed, _episode)); pin both so the
        # world depends only on np_random.
        self.game._seed = int(self.np_random.integers(2**31 - 1))
        self.game._episode = 0
        self._frame = self.game.reset()
        self._fell_asleep = 0
        return self._frame.copy(), self._info()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._frame is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        # The same check, and the same ActionError, as the dream of this game.
        action = check_discrete_action(action, self.action_space, self.action_names)
        was_asleep = self.game._player.sleeping
        self._frame, reward, _, _ = self.game.step(action)
        self._fell_asleep += self.game._player.sleeping and not was_asleep
        terminated = bool(self.game._player.health <= 0)
        return self._frame.copy(), float(reward), terminated, False, self._info()

    @property
    def player(self) -> Any:
        """The game's player object (health, inventory, ...), for tests and tools."""
        return self.game._player
