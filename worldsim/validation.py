"""Checks of user input shared by the envs and the command lines: counts, devices, Discrete actions.

One place for each check, so the same bad input gets the same answer everywhere: the dream
(`envs.world_model_env`), its vector env and the real games all validate Discrete actions
with `check_discrete_action(s)`, and `worldsim.cli.argtypes` wraps `check_int` /
`check_device` as argparse ``type=`` functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from worldsim.errors import ActionError, WorldsimError

__all__ = [
    "ArgumentValueError",
    "DeviceError",
    "check_device",
    "check_discrete_action",
    "check_discrete_actions",
    "check_int",
]


class ArgumentValueError(WorldsimError, ValueError):
    """An argument of the wrong type or out of range (a count below 1, a fraction, ...)."""


class DeviceError(WorldsimError, ValueError):
    """A device that does not exist here (CUDA asked for on a machine or torch without it)."""


def check_int(value: Any, name: str, minimum: int = 1) -> int:
    """`value` as an int >= `minimum`; bools, floats and strings are refused.

    Args:
        value: a Python or numpy integer.
        name: how the caller calls it, e.g. ``"sampler_steps"``; named in the error.
        minimum: the smallest accepted value.

    Raises:
        ArgumentValueError: not an integer, or below `minimum`.
    """
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise ArgumentValueError(
            f"{name} must be an integer >= {minimum}, got {value!r} ({type(value).__name__})"
        )
    if int(value) < minimum:
        raise ArgumentValueError(f"{name} must be an integer >= {minimum}, got {int(value)}")
    return int(value)


def check_device(name: str) -> str:
    """`name` if it is a device torch can use here: auto, cpu, cuda, cuda:N or mps.

    Raises:
        DeviceError: an unknown name, or CUDA (or MPS) asked for where it is not available.
    """
    text = str(name).strip().lower()
    if text == "auto":
        return text
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise DeviceError(
            f"unknown device {name!r}: use auto, cpu, cuda or cuda:N (e.g. cuda:1)"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {name!r} asked for, but CUDA is not available (torch "
                f"{torch.__version__}, {'a CPU-only build' if torch.version.cuda is None else 'no GPU visible'}): "
                "use device cpu (--device cpu), or auto to take a GPU only when there is one"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise DeviceError(
                f"device {name!r} asked for, but this machine has {count} GPU(s): "
                f"use cuda:0 .. cuda:{count - 1}, or cpu"
            )
    elif device.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise DeviceError(f"device {name!r} asked for, but MPS is not available: use cpu")
    elif device.type != "cpu":
        raise DeviceError(f"unsupported device {name!r}: use auto, cpu, cuda or cuda:N")
    return text


# ------------------------------------------------------------------ Discrete actions
def _accepted(space: gym.spaces.Discrete) -> str:
    low = int(space.start)
    return f"{space} takes one integer in [{low}, {low + int(space.n) - 1}]"


def _name_hint(action: Any, names: Sequence[str] | None) -> str:
    if isinstance(action, str) and names and action in names:
        return f"; for {action!r} pass action_names.index({action!r}) = {list(names).index(action)}"
    if isinstance(action, str) and names:
        return f"; action names ({', '.join(names)}) map to their index in action_names"
    return ""


def check_discrete_action(
    action: Any, space: gym.spaces.Discrete, names: Sequence[str] | None = None
) -> int:
    """One action of a Discrete space as a Python int, or ActionError.

    Accepted: a Python int, a numpy integer scalar or a 0-d integer array (a 0-d torch
    integer tensor too). Refused: bools (``True`` is not action 1), floats (even ``3.0``: a
    float action is a bug upstream, e.g. a policy returning probabilities), strings (action
    names: the error says which index), arrays of other shapes, and values out of range.

    Args:
        action: the action.
        space: the env's Discrete action space (``start`` is honoured).
        names: the env's ``action_names``, to point a string action to its index.

    Raises:
        ActionError: the action is not an integer of the space.
    """
    try:
        array = None if isinstance(action, str | bytes) else np.asarray(action)
    except Exception:  # an object numpy cannot read
        array = None
    if (
        array is None
        or array.ndim != 0
        or array.dtype == np.bool_
        or not np.issubdtype(array.dtype, np.integer)
    ):
        kind = type(action).__name__
        if array is not None and array.ndim != 0:
            kind = f"{kind} of shape {array.shape}"
        elif array is not None:
            kind = f"{kind}, dtype {array.dtype}"
        raise ActionError(
            f"action {action!r} ({kind}) is not an integer: {_accepted(space)} "
            f"(a Python int, a numpy integer or a 0-d integer array){_name_hint(action, names)}"
        )
    value = int(array)
    if not space.start <= value < space.start + space.n:
        raise ActionError(f"action {value} is out of range: {_accepted(space)}")
    return value


def check_discrete_actions(actions: Any, space: gym.spaces.Discrete, num_envs: int) -> np.ndarray:
    """A batch of Discrete actions, one per env, as int64 [B], or ActionError.

    The batched form of `check_discrete_action`: an integer array (or list of ints) of shape
    [B]; bool and float arrays are refused like single bool and float actions.

    Raises:
        ActionError: wrong shape or dtype, or an action out of range (the env is named).
    """
    try:
        array = np.asarray(actions)
    except Exception as e:  # ragged lists
        raise ActionError(
            f"actions {actions!r} are not an array ({e}): pass int64 [{num_envs}], one per env"
        ) from None
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
        raise ActionError(
            f"actions of dtype {array.dtype} are not integers: {_accepted(space)} per env "
            f"(an integer array of shape ({num_envs},))"
        )
    if array.shape != (num_envs,):
        raise ActionError(
            f"actions have shape {array.shape}; expected ({num_envs},): one action per env"
        )
    bad = np.flatnonzero((array < space.start) | (array >= space.start + space.n))
    if len(bad):
        i = int(bad[0])
        raise ActionError(f"action {int(array[i])} (env {i}) is out of range: {_accepted(space)}")
    return array.astype(np.int64, copy=False)
