"""A Crafter player that reads its screen and climbs the tech tree: play where rare things happen.

The explorer, builder and sleeper do not look at the screen. In 1,050 of their episodes
(184,878 steps) stone was mined in 12 and placed in 4, so a world model trained on them
cannot pay what a player unlocks next after a wood pickaxe, and an agent in its dream never
learns it. The achiever reads what the screen shows, from the game's labels of the frame (the
view's tiles, ``info["semantic"]``), its inventory (the bar below the view) and which way it
faces (the player's sprite), and goes for the next step of the tree:

wood, a table, wood pickaxe and sword, stone, stone placed, stone pickaxe and sword, a
furnace, coal and iron; water and cows when thirst or hunger are below half, a zombie when
one is next to it, sleep when tired, a sapling planted.

It walks by breadth-first search over the walkable tiles in view to a tile beside its
target, turns to face it and interacts; with nothing in view it walks in runs, as the
explorer does. With probability `noise` a step is a uniformly random action, so the play
still covers every action in every place. It plays to collect data, not to score: it does
not plan beyond the view, flee at night, or remember where the table stood.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np

from worldsim.errors import WorldsimError

MOVES = {"move_left": (0, -1), "move_right": (0, 1), "move_up": (-1, 0), "move_down": (1, 0)}
WALKABLE = ("grass", "sand", "path")
TOOLS = ("wood_pickaxe", "wood_sword", "stone_pickaxe", "stone_sword")  # made at a table, in order


class AchieverPolicy:
    """Reads the view's tiles, the inventory and its facing (see `see`) and goes up the tree."""

    name = "achiever"

    def __init__(
        self,
        action_space: gym.Space,
        action_names: list[str] | None,
        tile_names: list[str] | None,
        noise: float = 0.1,
    ) -> None:
        names = list(action_names or [])
        needed = [*MOVES, "do", "sleep", "place_table", "place_stone", "make_wood_pickaxe"]
        missing = [n for n in needed if n not in names]
        if not isinstance(action_space, gym.spaces.Discrete) or missing or not tile_names:
            raise WorldsimError(
                "--policy achiever plays Crafter: it needs Crafter's named actions and the "
                "labels of its view (label_spec semantic names); this game has "
                f"{action_space} named {names or 'nothing'}: use --policy builder"
            )
        from crafter import constants  # what each tool and the furnace use: the game's recipes

        self.tools = [(f"make_{t}", t, dict(constants.make[t]["uses"])) for t in TOOLS]
        self.furnace_stone = int(constants.place["furnace"]["uses"]["stone"])
        self.n = action_space.n
        self.act = {n: i for i, n in enumerate(names)}
        self.tile = {n: i for i, n in enumerate(tile_names)}
        self.noise = noise
        self._rng = np.random.default_rng(0)
        self._info: dict[str, Any] = {}
        self._run = "move_right"  # the move of the run the player walks
        self._run_left = 0

    def reset(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)
        self._info, self._run_left = {}, 0

    def see(self, info: dict[str, Any]) -> None:
        """Take in what the screen shows after a reset or step (the env's info)."""
        self._info = info

    # what the screen shows -------------------------------------------------------------

    def _ids(self, *names: str) -> list[int]:
        return [self.tile[n] for n in names if n in self.tile]

    def _near(self, view: np.ndarray, centre: tuple[int, int], *names: str) -> bool:
        """Whether one of `names` is in the 3x3 around the player (Crafter's "nearby")."""
        r, c = centre
        around = view[max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2]
        return bool(np.isin(around, self._ids(*names)).any())

    def _path(self, view: np.ndarray, centre: tuple[int, int], targets: list[int]) -> str | None:
        """The first move toward a tile beside the nearest target in view (None: none seen)."""
        rows, cols = view.shape
        walk = np.isin(view, self._ids(*WALKABLE))
        goal = np.isin(view, targets)
        if not goal.any():
            return None
        first: dict[tuple[int, int], str | None] = {centre: None}
        queue = deque([centre])
        while queue:
            r, c = queue.popleft()
            for name, (dr, dc) in MOVES.items():
                nr, nc = r + dr, c + dc
                if not (0 <= nr < rows and 0 <= nc < cols) or (nr, nc) in first:
                    continue
                step = first[(r, c)] or name
                if goal[nr, nc]:
                    # beside the target: face it (a move into it turns the player only)
                    return step
                if walk[nr, nc]:
                    first[(nr, nc)] = step
                    queue.append((nr, nc))
        return None

    @staticmethod
    def _beside(view: np.ndarray, centre: tuple[int, int], step: tuple[int, int]) -> int:
        """The tile one `step` (row, col) from the player; -1 outside the view."""
        r, c = centre[0] + step[0], centre[1] + step[1]
        return int(view[r, c]) if 0 <= r < view.shape[0] and 0 <= c < view.shape[1] else -1

    def _faced(self, view: np.ndarray, centre: tuple[int, int]) -> int:
        x, y = (int(v) for v in self._info.get("facing", (0, 1)))
        return self._beside(view, centre, (y, x))  # Crafter's facing is (x, y); the view [row, col]

    # what to do ---------------------------------------------------------------------

    def _goal(self, view: np.ndarray, centre: tuple[int, int]) -> int | None:
        inv = self._info["inventory"]
        done = self._info.get("achievements", {})
        act = self.act
        faced = self._faced(view, centre)
        if inv.get("energy", 9) < 3:
            return act["sleep"]
        if self._near(view, centre, "zombie"):
            return self._toward(view, centre, "zombie")
        if self._near(view, centre, "table"):
            for action, tool, uses in self.tools:
                if inv.get(tool, 0) == 0 and all(inv.get(k, 0) >= v for k, v in uses.items()):
                    return act[action]
        placeable = faced in self._ids("grass", "sand", "path")
        if inv.get("stone", 0) >= 1 and not done.get("place_stone") and placeable:
            return act["place_stone"]
        furnace = inv.get("stone", 0) >= self.furnace_stone and not done.get("place_furnace")
        if furnace and placeable and self._near(view, centre, "table"):
            return act["place_furnace"]
        tools_left = any(inv.get(t, 0) == 0 for t in TOOLS)
        table_seen = (view == self.tile["table"]).any()
        if inv.get("wood", 0) >= 3 and tools_left and placeable and not table_seen:
            return act["place_table"]
        if faced == self.tile["grass"] and not done.get("place_plant"):
            if inv.get("sapling", 0) >= 1:
                return act["place_plant"]
            if self._rng.random() < 0.3:  # grass gives a sapling on a tenth of the tries
                return act["do"]
        wants = []
        if inv.get("drink", 9) <= 5:
            wants.append("water")
        if inv.get("food", 9) <= 5:
            wants.append("cow")
        if inv.get("wood_pickaxe", 0) == 0 or inv.get("wood", 0) < 2:
            wants.append("tree")
        if inv.get("wood_pickaxe", 0) and inv.get("stone", 0) < 5:
            wants += ["coal", "stone"]
        if inv.get("stone_pickaxe", 0):
            wants.append("iron")
        wants += ["tree", "cow", "water"]
        for want in wants:
            move = self._toward(view, centre, want)
            if move is not None:
                return move
        return None

    def _toward(self, view: np.ndarray, centre: tuple[int, int], name: str) -> int | None:
        """Interact ("do") when facing `name`, else the move toward it (None: none in view)."""
        if name not in self.tile:
            return None
        if self._faced(view, centre) == self.tile[name]:
            return self.act["do"]
        move = self._path(view, centre, [self.tile[name]])
        return None if move is None else self.act[move]

    def _wander(self, view: np.ndarray, centre: tuple[int, int]) -> int:
        """Walk in runs; a new direction when the run ends or the way is blocked."""
        blocked = self._beside(view, centre, MOVES[self._run]) not in self._ids(*WALKABLE)
        if self._run_left <= 0 or blocked:
            self._run = list(MOVES)[int(self._rng.integers(len(MOVES)))]
            self._run_left = int(self._rng.integers(4, 16))
        self._run_left -= 1
        return self.act[self._run]

    def __call__(self, observation: np.ndarray) -> Any:
        if not self._info or self._rng.random() < self.noise:
            return np.int64(self._rng.integers(self.n))
        view = np.asarray(self._info["semantic"])
        centre = (view.shape[0] // 2, view.shape[1] // 2)
        action = self._goal(view, centre)
        return np.int64(self._wander(view, centre) if action is None else action)
