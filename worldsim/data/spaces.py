"""Gymnasium spaces for stored data: JSON (de)serialisation and batch checks of actions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from worldsim.errors import StoreError


def serialize_space(space: gym.Space) -> str:
    """JSON text of a space, in Minari's format (so Minari datasets and our stores agree)."""
    from minari.serialization import serialize_space as _serialize

    return _serialize(space)


def deserialize_space(text: str) -> gym.Space:
    """The space serialised by `serialize_space`."""
    from minari.serialization import deserialize_space as _deserialize

    return _deserialize(text)


def stack_actions(space: gym.Space, actions: Any) -> np.ndarray | dict[str, np.ndarray]:
    """A list of per-step actions (or an array / dict of arrays) as arrays with a leading T axis."""
    if isinstance(space, gym.spaces.Dict):
        if isinstance(actions, Mapping):
            return {k: np.asarray(actions[k]) for k in space.spaces if k in actions} | {
                k: np.asarray(v) for k, v in actions.items() if k not in space.spaces
            }
        if isinstance(actions, list | tuple) and actions and isinstance(actions[0], Mapping):
            return {k: np.stack([np.asarray(a[k]) for a in actions]) for k in actions[0]}
        raise StoreError(
            f"actions for a Dict space must be a dict of arrays or a list of dicts, not {type(actions).__name__}"
        )
    return np.asarray(actions, dtype=space.dtype if space.dtype is not None else None)


def check_actions(
    space: gym.Space, actions: np.ndarray | dict[str, np.ndarray], T: int, name: str = "actions"
) -> None:
    """Raise StoreError unless `actions` holds T valid actions of `space` (vectorised check)."""
    if isinstance(space, gym.spaces.Dict):
        if not isinstance(actions, dict) or set(actions) != set(space.spaces):
            got = sorted(actions) if isinstance(actions, dict) else type(actions).__name__
            raise StoreError(f"{name} must have the keys {sorted(space.spaces)}, got {got}")
        for k, sub in space.spaces.items():
            check_actions(sub, np.asarray(actions[k]), T, f"{name}[{k!r}]")
        return
    a = np.asarray(actions)
    shape = tuple(space.shape or ())
    if a.shape != (T, *shape):
        raise StoreError(
            f"{name} has shape {a.shape}, expected {(T, *shape)}: one action of {space} per transition"
        )
    if isinstance(space, gym.spaces.Discrete):
        ok = (a >= space.start) & (a < space.start + space.n)
    elif isinstance(space, gym.spaces.MultiDiscrete):
        ok = (a >= space.start) & (a < space.start + space.nvec)
    elif isinstance(space, gym.spaces.MultiBinary):
        ok = (a == 0) | (a == 1)
    elif isinstance(space, gym.spaces.Box):
        ok = np.isfinite(a) & (a >= space.low) & (a <= space.high)
    else:
        ok = np.array([space.contains(x) for x in a])
    if not np.all(ok):
        bad = int(np.argwhere(~np.asarray(ok).reshape(T, -1).all(axis=1))[0, 0])
        raise StoreError(f"{name}[{bad}] = {a[bad]} is outside the action space {space}")
