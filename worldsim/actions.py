"""ActionEncoder: any Gymnasium action space to one fixed-size float vector, with validation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from worldsim.errors import ActionError

__all__ = ["ActionEncoder", "space_description"]

# Box bounds beyond this are treated as unbounded: such values pass through unscaled
# (after a sign-preserving log squash so huge values cannot blow up the network).
_UNBOUNDED = 1e6


def space_description(space: gym.spaces.Space) -> str:
    """A short human-readable form of a space for error messages."""
    return repr(space).replace("\n", " ")


def _as_tensor(actions: Any, device: torch.device | None = None) -> Tensor:
    if isinstance(actions, Tensor):
        return actions if device is None else actions.to(device)
    try:
        array = np.asarray(actions)
    except Exception as e:  # e.g. ragged lists
        raise ActionError(
            f"could not turn actions into an array ({e}); pass a tensor or array"
        ) from e
    if array.dtype == object:
        raise ActionError("actions must be numeric (got an object array); pass a tensor or array")
    return torch.as_tensor(array, device=device)


class _Leaf(nn.Module):
    """Encoder for one non-Dict space; `event_shape` is the shape of a single action."""

    def __init__(self, space: gym.spaces.Space, name: str) -> None:
        super().__init__()
        self.space, self.name = space, name
        if isinstance(space, gym.spaces.Discrete):
            self.kind, self.event_shape, self.dim = "discrete", (), int(space.n)
            self.register_buffer("start", torch.tensor([int(space.start)]), persistent=False)
            self.register_buffer("nvec", torch.tensor([int(space.n)]), persistent=False)
        elif isinstance(space, gym.spaces.MultiDiscrete):
            self.kind, self.event_shape = "multidiscrete", tuple(space.shape)
            nvec = torch.as_tensor(np.asarray(space.nvec, dtype=np.int64).reshape(-1))
            self.register_buffer("nvec", nvec, persistent=False)
            start = np.asarray(getattr(space, "start", np.zeros_like(space.nvec)), dtype=np.int64)
            self.register_buffer("start", torch.as_tensor(start.reshape(-1)), persistent=False)
            self.dim = int(nvec.sum())
        elif isinstance(space, gym.spaces.MultiBinary):
            self.kind, self.event_shape = "multibinary", tuple(space.shape)
            self.dim = int(np.prod(space.shape))
        elif isinstance(space, gym.spaces.Box):
            self.kind, self.event_shape = "box", tuple(space.shape)
            self.dim = int(np.prod(space.shape))
            low = np.asarray(space.low, dtype=np.float64).reshape(-1)
            high = np.asarray(space.high, dtype=np.float64).reshape(-1)
            bounded = (np.abs(low) < _UNBOUNDED) & (np.abs(high) < _UNBOUNDED) & (high > low)
            low_b, high_b = np.where(bounded, low, -1.0), np.where(bounded, high, 1.0)
            center, half = (low_b + high_b) / 2, (high_b - low_b) / 2
            self.register_buffer("low", torch.as_tensor(low, dtype=torch.float32), persistent=False)
            self.register_buffer(
                "high", torch.as_tensor(high, dtype=torch.float32), persistent=False
            )
            self.register_buffer(
                "center", torch.as_tensor(center, dtype=torch.float32), persistent=False
            )
            self.register_buffer(
                "half_range", torch.as_tensor(half, dtype=torch.float32), persistent=False
            )
            self.register_buffer("bounded", torch.as_tensor(bounded), persistent=False)
        else:
            raise ActionError(
                f"action space {space_description(space)} ({name}) is not supported; use Discrete, "
                "MultiDiscrete, MultiBinary, Box, or a Dict/Tuple of these"
            )

    def batch_shape(self, actions: Tensor) -> tuple[int, ...]:
        """Leading (batch) dims of `actions`, checking that the trailing dims fit the space."""
        n = len(self.event_shape)
        if actions.dim() < n or tuple(actions.shape[actions.dim() - n :]) != self.event_shape:
            raise ActionError(
                f"action {self.name} has shape {tuple(actions.shape)} but the space "
                f"{space_description(self.space)} needs [..., {', '.join(map(str, self.event_shape))}]"
                if n
                else f"action {self.name} has shape {tuple(actions.shape)}; expected [...] of integers"
            )
        return tuple(actions.shape[: actions.dim() - n])

    def _check_integral(self, actions: Tensor) -> Tensor:
        if actions.dtype == torch.bool:
            return actions.long()
        if actions.is_floating_point() and not bool(torch.all(actions == actions.round())):
            raise ActionError(
                f"action {self.name} must hold integers for {space_description(self.space)}; "
                "got fractional values"
            )
        return actions.long()

    def rest(self) -> Tensor:
        """The action at rest, raw [*event_shape]: every button up, every count at its start,
        every axis at zero (clipped into a Box that leaves zero out)."""
        if self.kind in ("discrete", "multidiscrete"):
            return self.start.view(self.event_shape).clone()
        if self.kind == "multibinary":
            return torch.zeros(self.event_shape, dtype=torch.long)
        zero = torch.zeros(self.dim, device=self.low.device)
        return zero.clamp(self.low, self.high).view(self.event_shape)

    def forward(self, actions: Tensor) -> Tensor:
        """Encode `actions` [..., *event_shape] to float [..., dim]."""
        batch = self.batch_shape(actions)
        flat = actions.reshape(*batch, -1) if self.event_shape else actions.reshape(*batch, 1)
        if self.kind in ("discrete", "multidiscrete"):
            flat = self._check_integral(flat) - self.start
            bad = (flat < 0) | (flat >= self.nvec)
            if bool(bad.any()):
                value = (flat + self.start)[bad][0].item()
                raise ActionError(
                    f"action {self.name}={value} is out of range for {space_description(self.space)}"
                )
            parts = [
                nn.functional.one_hot(flat[..., i], int(n))
                for i, n in enumerate(self.nvec.tolist())
            ]
            return torch.cat(parts, dim=-1).float()
        if self.kind == "multibinary":
            flat = self._check_integral(flat)
            if bool(((flat != 0) & (flat != 1)).any()):
                raise ActionError(
                    f"action {self.name} must be 0/1 for {space_description(self.space)}"
                )
            return flat.float() * 2 - 1
        flat = flat.float()
        if not bool(torch.isfinite(flat).all()):
            raise ActionError(f"action {self.name} holds NaN or infinite values")
        tol = 1e-5 * torch.clamp(self.high - self.low, max=1e6) + 1e-6
        if bool(((flat < self.low - tol) | (flat > self.high + tol)).any()):
            raise ActionError(
                f"action {self.name} is outside the bounds of {space_description(self.space)}; "
                "clip it to [low, high] first (e.g. np.clip(a, space.low, space.high))"
            )
        scaled = (flat - self.center) / self.half_range
        # Unbounded dims: a symmetric log squash keeps magnitude information without overflow.
        squashed = torch.sign(scaled) * torch.log1p(scaled.abs())
        return torch.where(self.bounded, scaled, squashed)


class ActionEncoder(nn.Module):
    """Encodes actions of one Gymnasium space to a float vector of size `dim`.

    Discrete and MultiDiscrete become one-hot blocks, MultiBinary becomes +-1, Box is scaled
    to [-1, 1] per dimension (unbounded dimensions are log-squashed), and Dict/Tuple spaces
    concatenate their parts in the space's key order. There are no learned parameters: the
    network embeds the vector. Invalid actions raise `worldsim.errors.ActionError`.

    Args:
        space: the game's action space.
    """

    def __init__(self, space: gym.spaces.Space) -> None:
        super().__init__()
        self.space = space
        self.keys: list[str] | None = None
        if isinstance(space, gym.spaces.Dict):
            self.keys = list(space.spaces.keys())
            leaves = [_Leaf(space[k], f"[{k!r}]") for k in self.keys]
        elif isinstance(space, gym.spaces.Tuple):
            self.keys = [str(i) for i in range(len(space.spaces))]
            leaves = [_Leaf(s, f"[{i}]") for i, s in enumerate(space.spaces)]
        else:
            leaves = [_Leaf(space, "")]
        if self.keys is not None and not leaves:
            raise ActionError(f"action space {space_description(space)} is empty")
        self.leaves = nn.ModuleList(leaves)
        self.dim = sum(leaf.dim for leaf in leaves)

    @property
    def is_composite(self) -> bool:
        """True for Dict/Tuple spaces, whose actions come as a mapping/sequence of arrays."""
        return self.keys is not None

    def _parts(self, actions: Any, device: torch.device) -> list[Tensor]:
        if self.keys is None:
            return [_as_tensor(actions, device)]
        if isinstance(self.space, gym.spaces.Dict):
            if not isinstance(actions, Mapping):
                raise ActionError(
                    f"actions for the Dict space must be a dict with keys {self.keys}, "
                    f"got {type(actions).__name__}"
                )
            missing = [k for k in self.keys if k not in actions]
            extra = [k for k in actions if k not in self.keys]
            if missing or extra:
                raise ActionError(
                    f"action dict keys do not match the space: missing {missing}, unexpected {extra}"
                )
            return [_as_tensor(actions[k], device) for k in self.keys]
        if not isinstance(actions, (tuple, list)) or len(actions) != len(self.keys):
            raise ActionError(
                f"actions for the Tuple space must be a tuple of {len(self.keys)} arrays"
            )
        return [_as_tensor(a, device) for a in actions]

    def batch_shape(self, actions: Any) -> tuple[int, ...]:
        """The leading (batch) dims of `actions`, validated against the space."""
        return self._batch_shape(self._parts(actions, self._device()))

    def _batch_shape(self, parts: list[Tensor]) -> tuple[int, ...]:
        shapes = {leaf.batch_shape(p) for leaf, p in zip(self.leaves, parts)}
        if len(shapes) != 1:
            raise ActionError(
                f"the parts of a composite action have different batch shapes {shapes}"
            )
        return shapes.pop()

    def _device(self) -> torch.device:
        for buffer in self.buffers():
            return buffer.device
        return torch.device("cpu")

    def encode(self, actions: Any) -> Tensor:
        """Encode raw actions to float [..., dim].

        Args:
            actions: a tensor/array [...] (Discrete), [..., *shape] (MultiDiscrete,
                MultiBinary, Box), or a dict (Dict spaces) / tuple (Tuple spaces) of such
                with equal leading dims.

        Returns:
            Float tensor [..., dim] on the encoder's device.

        Raises:
            ActionError: a value out of range, a wrong shape or dtype, or missing keys.
        """
        parts = self._parts(actions, self._device())
        self._batch_shape(parts)
        return torch.cat([leaf(p) for leaf, p in zip(self.leaves, parts)], dim=-1)

    forward = encode

    def rest(self) -> Tensor:
        """The encoding [dim] of the action at rest (`_Leaf.rest` of every part: for a
        MineRL-style Dict every key up and the camera still; for Discrete its first action)."""
        return torch.cat([leaf(leaf.rest().to(self._device())) for leaf in self.leaves], -1)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, space={space_description(self.space)}"
