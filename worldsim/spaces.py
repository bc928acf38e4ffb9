"""Gymnasium spaces and actions: the one serialiser, the one compatibility check, no-op actions,
and the helpers for "an array, or a dict of arrays for Dict spaces" (actions of any space).

Spaces are serialised in Minari's format everywhere (episode stores as text, releases and
agent folders as JSON objects), so Minari datasets and our files agree. Whether data, a model
and an agent belong together is answered by `check_compatible`, with one message shape.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from worldsim.errors import ActionError, WorldsimError

__all__ = [
    "check_actions",
    "check_compatible",
    "deserialize_space",
    "noop_action",
    "same_space",
    "serialize_space",
    "space_from_dict",
    "space_to_dict",
    "stack_actions",
    "tree_index",
    "tree_stack",
]


# ------------------------------------------------------------------ serialising
def serialize_space(space: gym.Space) -> str:
    """JSON text of a space, in Minari's format (so Minari datasets and our stores agree)."""
    from minari.serialization import serialize_space as _serialize

    return _serialize(space)


def deserialize_space(text: str) -> gym.Space:
    """The space serialised by `serialize_space`."""
    from minari.serialization import deserialize_space as _deserialize

    return _deserialize(text)


def space_to_dict(space: gym.Space, *, compact: bool = False) -> dict[str, Any]:
    """`serialize_space` as a JSON object (for config files). `compact`: a Box whose bounds are
    uniform stores each bound as one number (a 64x64x3 frame space's 12,288 zeros would make
    the file unreadable); `space_from_dict` reads both forms."""
    data = json.loads(serialize_space(space))
    if compact and data.get("type") == "Box":
        for key in ("low", "high"):
            values = np.unique(np.asarray(data[key]))
            if len(values) == 1:
                data[key] = values[0].item()
    return data


def space_from_dict(data: Mapping[str, Any]) -> gym.Space:
    """The space of `space_to_dict` (either form).

    Raises:
        KeyError, TypeError, ValueError, NotImplementedError: not a serialised space.
    """
    if data.get("type") == "Box":  # uniform bounds saved as one number
        for key in ("low", "high"):
            if not isinstance(data[key], list):
                data = {**data, key: np.full(data["shape"], data[key]).tolist()}
    return deserialize_space(json.dumps(dict(data)))


# ------------------------------------------------------------------ compatibility
def same_space(a: gym.Space, b: gym.Space) -> bool:
    """Whether two spaces are the same: equal, or serialised alike (a space read back from a
    store, release or agent folder is the same as the one it was written from)."""
    return a == b or serialize_space(a) == serialize_space(b)


def check_compatible(
    expected: gym.Space,
    found: gym.Space,
    what: str,
    *,
    error: type[Exception] = WorldsimError,
    fix: str = "data, world models and agents must be of the same game",
) -> None:
    """Raise `error` unless `found` is the space `expected`.

    Args:
        expected: the space wanted (the model's, the store's, the env's).
        found: the space of the thing being checked.
        what: that thing's space, for the message ("the action space of data/crafter").
        error: the exception type (StoreError, CheckpointError, AgentError, ...).
        fix: what to do about it, ending the message.
    """
    if not same_space(expected, found):
        raise error(f"{what} is {found}, not {expected}: {fix}")


# ------------------------------------------------------------------ actions
def noop_action(space: gym.spaces.Space) -> Any:
    """The "do nothing" action of a space: index ``start``, zeros, or zeros clipped into a Box."""
    if isinstance(space, gym.spaces.Dict):
        return {k: noop_action(s) for k, s in space.spaces.items()}
    if isinstance(space, gym.spaces.Discrete):
        return np.int64(space.start)
    if isinstance(space, gym.spaces.MultiDiscrete):
        return np.asarray(
            getattr(space, "start", np.zeros_like(space.nvec)), dtype=space.dtype
        ).copy()
    if isinstance(space, gym.spaces.MultiBinary):
        return np.zeros(space.shape, dtype=space.dtype)
    if isinstance(space, gym.spaces.Box):
        return np.clip(np.zeros(space.shape, space.dtype), space.low, space.high).astype(
            space.dtype
        )
    raise TypeError(f"no no-op action for {space}")


def tree_index(actions: Any, index: Any) -> Any:
    """``actions[index]`` on every leaf: an array or tensor, or each one of a dict (Dict
    spaces); lists and Python numbers are made arrays first."""
    if isinstance(actions, Mapping):
        return {k: tree_index(v, index) for k, v in actions.items()}
    if not hasattr(actions, "shape"):
        actions = np.asarray(actions)
    return actions[index]


def tree_stack(items: Sequence[Any]) -> Any:
    """``np.stack`` along a new leading axis: arrays, or dicts of arrays key by key."""
    if isinstance(items[0], Mapping):
        return {k: tree_stack([x[k] for x in items]) for k in items[0]}
    return np.stack([np.asarray(x) for x in items])


def stack_actions(
    space: gym.Space, actions: Any, error: type[Exception] = ActionError
) -> np.ndarray | dict[str, np.ndarray]:
    """Per-step actions (a list of T actions, an array, or a dict of arrays) as arrays with a
    leading T axis, in the space's dtype; an empty list gives [0, ...] arrays.

    Raises:
        error: a Dict space given neither a dict of arrays nor a list of dicts.
    """
    if isinstance(space, gym.spaces.Dict):
        if isinstance(actions, Mapping):
            return {k: np.asarray(actions[k]) for k in space.spaces if k in actions} | {
                k: np.asarray(v) for k, v in actions.items() if k not in space.spaces
            }
        if isinstance(actions, list | tuple) and not actions:
            return {k: stack_actions(s, [], error) for k, s in space.spaces.items()}
        if isinstance(actions, list | tuple) and isinstance(actions[0], Mapping):
            return {k: np.stack([np.asarray(a[k]) for a in actions]) for k in actions[0]}
        raise error(
            f"actions for a Dict space must be a dict of arrays or a list of dicts, not {type(actions).__name__}"
        )
    array = np.asarray(actions, dtype=space.dtype if space.dtype is not None else None)
    if array.size == 0 and array.ndim == 1:
        array = array.reshape(0, *(space.shape or ()))
    return array


def check_actions(
    space: gym.Space,
    actions: np.ndarray | dict[str, np.ndarray],
    T: int,
    name: str = "actions",
    error: type[Exception] = ActionError,
) -> None:
    """Raise `error` unless `actions` holds T valid actions of `space` (vectorised check)."""
    if isinstance(space, gym.spaces.Dict):
        if not isinstance(actions, dict) or set(actions) != set(space.spaces):
            got = sorted(actions) if isinstance(actions, dict) else type(actions).__name__
            raise error(f"{name} must have the keys {sorted(space.spaces)}, got {got}")
        for k, sub in space.spaces.items():
            check_actions(sub, np.asarray(actions[k]), T, f"{name}[{k!r}]", error)
        return
    a = np.asarray(actions)
    shape = tuple(space.shape or ())
    if a.shape != (T, *shape):
        raise error(
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
        raise error(f"{name}[{bad}] = {a[bad]} is outside the action space {space}")
