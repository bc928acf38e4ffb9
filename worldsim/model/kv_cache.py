"""KVCache: temporal-attention keys/values of past frames, so a rollout step costs one frame."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["KVCache"]


class KVCache:
    """Per-layer keys/values [B*N, heads, frames, head_dim] of the frames seen so far.

    Keys are stored before rotary rotation; positions are applied at use time relative to
    the window, so dropping the oldest frame (a sliding window) needs no re-encoding and the
    positions never exceed the trained context. A forward pass stages the new frames'
    keys/values; `commit()` appends them (after the sampler has settled on the frame),
    `discard()` drops them (every denoising step before that).
    """

    def __init__(self, depth: int) -> None:
        self.keys: list[Tensor | None] = [None] * depth
        self.values: list[Tensor | None] = [None] * depth
        self._staged: list[tuple[Tensor, Tensor] | None] = [None] * depth

    @property
    def frames(self) -> int:
        """Number of cached frames."""
        return 0 if self.keys[0] is None else self.keys[0].shape[2]

    def extend(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Cached keys/values of `layer` followed by the new ones (not stored)."""
        if self.keys[layer] is None:
            return k, v
        return torch.cat([self.keys[layer], k], dim=2), torch.cat([self.values[layer], v], dim=2)

    def stage(self, layer: int, k: Tensor, v: Tensor) -> None:
        self._staged[layer] = (k, v)

    def commit(self) -> None:
        """Append the staged keys/values of the last forward pass."""
        for i, staged in enumerate(self._staged):
            if staged is None:
                raise RuntimeError("KVCache.commit() without a forward pass to commit")
            self.keys[i], self.values[i] = self.extend(i, *staged)
        self.discard()

    def discard(self) -> None:
        self._staged = [None] * len(self._staged)

    def keep_last(self, frames: int) -> None:
        """Sliding window: keep only the newest `frames` frames."""
        if self.frames > frames:
            start = self.frames - frames
            self.keys = [k[:, :, start:] for k in self.keys]
            self.values = [v[:, :, start:] for v in self.values]
