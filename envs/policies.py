"""Behaviour policies for collecting play: uniform random, sticky random, explorer, builder,
sleeper, achiever, or a trained agent.

A policy is called once per step with the current observation and returns an action of the
env's action space; `reset(seed)` starts a new episode with its own random stream, so a
collection run is reproducible from its seed. A policy that reads what the screen shows
from the game's labels (the achiever) also has `see(info)`, called with the info of every
reset and step before it is asked for the next action.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Protocol

import gymnasium as gym
import numpy as np

from worldsim.errors import WorldsimError

POLICIES = ("random", "sticky", "explorer", "builder", "sleeper", "achiever")


class Policy(Protocol):
    name: str

    def reset(self, seed: int) -> None: ...

    def __call__(self, observation: np.ndarray) -> Any: ...


class RandomPolicy:
    """Uniformly random actions from the action space."""

    name = "random"

    def __init__(self, action_space: gym.Space) -> None:
        self.action_space = action_space

    def reset(self, seed: int) -> None:
        self.action_space.seed(int(seed))

    def __call__(self, observation: np.ndarray) -> Any:
        return self.action_space.sample()


class StickyPolicy(RandomPolicy):
    """Random actions held for random durations (geometric, mean `mean_hold` steps).

    Holding a move for several steps walks the player across the map and holding "do" finishes
    collecting, so it explores far more of Crafter or Doom than uniform random actions do.
    """

    name = "sticky"

    def __init__(self, action_space: gym.Space, mean_hold: float = 5.0) -> None:
        super().__init__(action_space)
        self.mean_hold = mean_hold
        self._rng = np.random.default_rng(0)
        self._action: Any = None
        self._left = 0

    def reset(self, seed: int) -> None:
        super().reset(seed)
        self._rng = np.random.default_rng(seed)
        self._left = 0

    def __call__(self, observation: np.ndarray) -> Any:
        if self._left <= 0:
            self._action = self.action_space.sample()
            self._left = int(self._rng.geometric(1.0 / self.mean_hold))
        self._left -= 1
        return self._action


class ExplorerPolicy:
    """Walks in runs and interacts: the play a world model must follow (moves, scrolls, rewards).

    Each turn it walks one direction for 2-10 steps (uniform), then with probability
    `interact` presses the interaction action (Crafter's "do": chop, drink, mine, hit) 1-4
    times, facing whatever stopped or ended the walk; otherwise, with probability `other`,
    it takes one other action (place, craft, sleep, noop). Needs named move actions
    (``move_*``) and an interaction action (`do`).
    """

    name = "explorer"

    def __init__(
        self,
        action_space: gym.Space,
        action_names: list[str] | None,
        interact: float = 0.5,
        other: float = 0.2,
        do: str = "do",
    ) -> None:
        names = list(action_names or [])
        moves = [i for i, n in enumerate(names) if n.startswith("move")]
        if not isinstance(action_space, gym.spaces.Discrete) or not moves or do not in names:
            raise WorldsimError(
                f"--policy explorer needs a Discrete action space with named move_* actions and "
                f"{do!r} (Crafter has them); this game has {action_space} named {names or 'nothing'}:"
                " use --policy sticky"
            )
        self.moves, self.do = moves, names.index(do)
        self.others = [i for i in range(len(names)) if i not in moves and i != self.do]
        self.interact, self.other = interact, other
        self._rng = np.random.default_rng(0)
        self._plan: list[int] = []

    def reset(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)
        self._plan = []

    def _new_plan(self) -> list[int]:
        rng = self._rng
        plan = [int(rng.choice(self.moves))] * int(rng.integers(2, 11))
        if rng.random() < self.interact:
            plan += [self.do] * int(rng.integers(1, 5))
        elif rng.random() < self.other:
            plan.append(int(rng.choice(self.others)))
        return plan

    def __call__(self, observation: np.ndarray) -> Any:
        if not self._plan:
            self._plan = self._new_plan()
        return np.int64(self._plan.pop(0))


# Crafter's tech tree in the order it opens: a table, the tools it makes from wood, a furnace,
# stone tools, then what needs no station. A builder tries these in turn (those the game has).
CRAFTS = (
    "place_table", "make_wood_pickaxe", "make_wood_sword", "place_furnace",
    "make_stone_pickaxe", "make_stone_sword", "make_iron_pickaxe", "make_iron_sword",
    "place_stone", "place_plant",
)  # fmt: skip


class BuilderPolicy(ExplorerPolicy):
    """An explorer that also builds: the play where a game's crafting happens.

    The explorer reaches a crafting step on one plan in ten and then picks one of 15 actions,
    so in 500 of its Crafter episodes a table stood in 11 and no tool was ever made: a world
    model trained on that play cannot show a table or a pickaxe, and an agent trained in it
    never learns to build. After an interaction burst (which may have gathered wood or stone)
    the builder, with probability `craft`, takes one move (to face open ground rather than
    what it just hit) and then tries each of `crafts` once, in order. It does not look at the
    screen: a try without the materials or the station does nothing, as a player's would.
    """

    name = "builder"

    def __init__(
        self,
        action_space: gym.Space,
        action_names: list[str] | None,
        craft: float = 0.5,
        crafts: tuple[str, ...] = CRAFTS,
        **explorer: Any,
    ) -> None:
        super().__init__(action_space, action_names, **explorer)
        names = list(action_names or [])
        self.crafts = [names.index(c) for c in crafts if c in names]
        if not self.crafts:
            raise WorldsimError(
                f"--policy builder tries crafting actions ({', '.join(crafts)}) and this game has "
                f"none of them (it has {names}): use --policy explorer"
            )
        self.craft = craft

    def _new_plan(self) -> list[int]:
        plan = super()._new_plan()
        if plan[-1] == self.do and self._rng.random() < self.craft:
            plan += [int(self._rng.choice(self.moves)), *self.crafts]
        return plan


class SleeperPolicy(BuilderPolicy):
    """A builder that also rests: the play where a game's sleep happens.

    Crafter's player falls asleep on "sleep" only when its energy is below the maximum, which
    it first is about 30 steps into an episode; asleep, the view turns grey, every action is
    ignored, and it wakes (paying the wake_up achievement) once its energy is full again,
    11 steps a point later. The explorer presses sleep on one plan in 150, so 200 builder
    episodes held 591 sleeping frames and a world model trained on them never fell asleep.
    After `rest_after` steps of an episode, the sleeper ends a plan with `rest` (Crafter's
    "sleep") with probability `rest_p`. It does not look at the screen: a press at full
    energy does nothing, and what it presses while asleep is ignored, as a player's would be.
    """

    name = "sleeper"

    def __init__(
        self,
        action_space: gym.Space,
        action_names: list[str] | None,
        rest: str = "sleep",
        rest_p: float = 0.15,
        rest_after: int = 25,
        **builder: Any,
    ) -> None:
        super().__init__(action_space, action_names, **builder)
        names = list(action_names or [])
        if rest not in names:
            raise WorldsimError(
                f"--policy sleeper presses {rest!r} and this game has no such action (it has "
                f"{names}): use --policy builder"
            )
        self.rest, self.rest_p, self.rest_after = names.index(rest), rest_p, rest_after
        self._t = 0

    def reset(self, seed: int) -> None:
        super().reset(seed)
        self._t = 0

    def _new_plan(self) -> list[int]:
        plan = super()._new_plan()
        if self._t >= self.rest_after and self._rng.random() < self.rest_p:
            plan.append(self.rest)
        return plan

    def __call__(self, observation: np.ndarray) -> Any:
        self._t += 1
        return super().__call__(observation)


class FirstPersonExplorer:
    """Explores a first-person world with a MineRL-style Dict action space (Minetest, MineRL).

    Plans in segments: walk forward for 4-16 steps (jumping at times, to climb); walk back or
    sideways for 2-8, sneaking half the time; walk out 2-12 steps in any direction and back
    the same way, or turn and turn back (the returns a 3D memory is learned from); turn by
    20-120 degrees over 2-6 steps; look up or down a little; or dig (hold attack 4-12 steps,
    looking slightly down). Every step is one action dict; the view keeps moving and the world
    keeps changing, the play a 3D world model must follow, with every walking key pressed.
    """

    name = "explorer"

    def __init__(self, action_space: gym.spaces.Dict) -> None:
        from worldsim.spaces import noop_action

        self.noop = lambda: noop_action(action_space)
        self._rng = np.random.default_rng(0)
        self._plan: list[dict[str, Any]] = []

    def reset(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)
        self._plan = []

    def _action(self, camera: tuple[float, float] = (0.0, 0.0), **buttons: int) -> dict[str, Any]:
        action = self.noop()
        for key, value in buttons.items():
            action[key] = np.int64(value)
        action["camera"] = np.array(camera, np.float32)
        return action

    OPPOSITE: ClassVar[dict[str, str]] = {
        "forward": "back",
        "back": "forward",
        "left": "right",
        "right": "left",
    }

    def _segment(self) -> list[dict[str, Any]]:
        rng = self._rng
        kind = rng.choice(["walk", "step", "return", "turn", "look", "dig"],
                          p=[0.3, 0.1, 0.15, 0.25, 0.07, 0.13])  # fmt: skip
        if kind == "walk":
            n = int(rng.integers(4, 17))
            return [self._action(forward=1, jump=int(rng.random() < 0.15)) for _ in range(n)]
        if kind in ("step", "return"):
            sneak = int(rng.random() < 0.5)
            if kind == "step":
                key, n = str(rng.choice(["back", "left", "right"])), int(rng.integers(2, 9))
                return [self._action(**{key: 1, "sneak": sneak}) for _ in range(n)]
            key, n = str(rng.choice(list(self.OPPOSITE))), int(rng.integers(2, 13))
            return [self._action(**{key: 1, "sneak": sneak}) for _ in range(n)] + [
                self._action(**{self.OPPOSITE[key]: 1, "sneak": sneak}) for _ in range(n)
            ]
        if kind == "turn":
            n, total = int(rng.integers(2, 7)), rng.uniform(20, 120) * rng.choice([-1, 1])
            out = [self._action((0.0, total / n)) for _ in range(n)]
            if rng.random() < 0.3:  # and back
                out += [self._action((0.0, -total / n)) for _ in range(n)]
            return out
        if kind == "look":
            return [self._action((float(rng.uniform(-10, 10)), 0.0))]
        n = int(rng.integers(4, 13))
        return [self._action((5.0, 0.0)), *(self._action(attack=1) for _ in range(n)),
                self._action((-5.0, 0.0))]  # fmt: skip

    def __call__(self, observation: np.ndarray) -> Any:
        if not self._plan:
            self._plan = self._segment()
        return self._plan.pop(0)


def make_policy(
    spec: str,
    action_space: gym.Space,
    action_names: list[str] | None = None,
    label_spec: dict[str, Any] | None = None,
) -> Policy:
    """The policy named by `spec`: "random", "sticky", "explorer" (needs the game's
    `action_names`, or a MineRL-style Dict space with a camera: `FirstPersonExplorer`),
    "builder" (an explorer that crafts; needs Crafter-style place_/make_ actions), "sleeper"
    (a builder that also sleeps; needs a "sleep" action), "achiever" (reads Crafter's screen
    through its labels, `label_spec`, and climbs the tech tree), or the path of a saved
    agent."""
    if spec == "random":
        return RandomPolicy(action_space)
    if spec == "sticky":
        return StickyPolicy(action_space)
    if spec == "builder":
        return BuilderPolicy(action_space, action_names)
    if spec == "sleeper":
        return SleeperPolicy(action_space, action_names)
    if spec == "achiever":
        from envs.achiever import AchieverPolicy

        names = (label_spec or {}).get("semantic", {}).get("names")
        return AchieverPolicy(action_space, action_names, names)
    if spec == "explorer":
        if isinstance(action_space, gym.spaces.Dict) and "camera" in action_space.spaces:
            return FirstPersonExplorer(action_space)
        return ExplorerPolicy(action_space, action_names)
    if Path(spec).exists():
        from worldsim.agents import load_agent_policy  # imports torch: only for agents

        return load_agent_policy(spec, action_space)
    raise WorldsimError(
        f"unknown policy {spec!r}: use {', '.join(POLICIES)} or the path of a saved agent"
    )
