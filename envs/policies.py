"""Behaviour policies for collecting play: uniform random, sticky random, or a trained agent.

A policy is called once per step with the current observation and returns an action of the
env's action space; `reset(seed)` starts a new episode with its own random stream, so a
collection run is reproducible from its seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from worldsim.errors import WorldsimError

POLICIES = ("random", "sticky")


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


def make_policy(spec: str, action_space: gym.Space) -> Policy:
    """The policy named by `spec`: "random", "sticky", or the path of a saved agent."""
    if spec == "random":
        return RandomPolicy(action_space)
    if spec == "sticky":
        return StickyPolicy(action_space)
    if Path(spec).exists():
        try:
            from training.agents import load_agent_policy  # trained agents live in training/
        except ImportError:
            raise WorldsimError(
                f"{spec} looks like an agent, but this install cannot load agents yet: "
                f"use --policy {' or '.join(POLICIES)}"
            ) from None
        return load_agent_policy(spec, action_space)
    raise WorldsimError(
        f"unknown policy {spec!r}: use {', '.join(POLICIES)} or the path of a saved agent"
    )
