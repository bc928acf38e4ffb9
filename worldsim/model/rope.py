"""Rotary position embeddings: 1D over frames, 2D over the token grid (any height/width)."""

from __future__ import annotations

import functools

import torch
from torch import Tensor

__all__ = ["apply_rope", "rope_1d", "rope_2d"]


def _angles(positions: Tensor, pairs: int, base: float = 10000.0) -> Tensor:
    """positions [L] -> angles [L, pairs] with geometric frequencies."""
    freqs = base ** (-torch.arange(pairs, dtype=torch.float64) / pairs)
    return positions.double()[:, None] * freqs[None, :]


def _cos_sin(angles: Tensor, device: torch.device) -> Tensor:
    return torch.polar(torch.ones_like(angles), angles).to(torch.complex64).to(device)


# Tables are cached per shape and device. They are built outside inference mode so that a
# table first made during a rollout (inference mode) still works in training afterwards.
@functools.lru_cache(maxsize=64)
def _rope_1d(length: int, head_dim: int, device: torch.device) -> Tensor:
    with torch.inference_mode(False):
        return _cos_sin(_angles(torch.arange(length), head_dim // 2), device)


@functools.lru_cache(maxsize=64)
def _rope_2d(rows: int, cols: int, head_dim: int, device: torch.device) -> Tensor:
    with torch.inference_mode(False):
        r, c = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
        quarter = head_dim // 4
        angles = torch.cat([_angles(r.flatten(), quarter), _angles(c.flatten(), quarter)], dim=1)
        return _cos_sin(angles, device)


def rope_1d(length: int, head_dim: int, device: torch.device | str) -> Tensor:
    """Rotations exp(i * angle) [length, head_dim/2] (complex64) for positions 0..length-1."""
    return _rope_1d(length, head_dim, torch.device(device))


def rope_2d(rows: int, cols: int, head_dim: int, device: torch.device | str) -> Tensor:
    """Rotations [rows*cols, head_dim/2] (complex64): half the frequencies encode the row, half the column
    (row-major token order), so any grid size works without a learned position table."""
    return _rope_2d(rows, cols, head_dim, torch.device(device))


def apply_rope(x: Tensor, rotations: Tensor) -> Tensor:
    """Rotate x [..., L, head_dim] by rotations [L, head_dim/2] (complex).

    Consecutive pairs of channels form complex numbers (the pairing is arbitrary, the
    projection that makes x is learned); one complex multiply rotates them all, several
    times faster on a CPU than the rotate-half formulation's slicing and concatenation.
    """
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))  # [..., L, hd/2]
    return torch.view_as_real(pairs * rotations).flatten(-2).to(x.dtype)
