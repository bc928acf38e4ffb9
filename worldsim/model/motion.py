"""Motion-compensated reference: per-token dynamic filters that move the previous frame.

Why: a world model must learn that an action moves the view (Crafter scrolls by one 7-pixel
tile per step; Atari sprites and Doom's view shift by a few pixels). Copying texture through
attention to a shifted token is slow to learn (the calibration prototype and the first bundled
models never learned it on a CPU budget). Dynamic filter networks (De Brabandere et al. 2016)
and CDNA (Finn et al. 2016, action-conditioned video prediction) instead let the network
predict a small normalised kernel that is applied to the previous frame: a translation by
(dy, dx) is a one-hot kernel, "nothing moved" is the centre tap, and the texture is copied
exactly whatever its detail. Here every token predicts its own kernel from its features (so
the world can scroll while a centred player sprite stays, and a cow can walk on its own), the
kernel is applied to the pixels of that token's region, and diffusion then predicts the frame
relative to this moved reference: only what is truly new (the strip that scrolls into view)
is left for the residual.

The kernels are separable, a vertical and a horizontal distribution of 2r+1 taps each: exact
for any translation and for "moved or blocked" along one axis, 4x cheaper than a full
(2r+1)^2 kernel and applied with two small matmuls per token (fast on a CPU, unlike grouped
convolutions).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MotionHead", "apply_token_filters"]


def _banded(taps: Tensor, rows: int) -> Tensor:
    """taps [..., K] -> banded matrices [..., rows, rows + K - 1], M[i, i + u] = taps[u]."""
    K = taps.shape[-1]
    i = torch.arange(rows, device=taps.device)[:, None]
    j = torch.arange(rows + K - 1, device=taps.device)[None, :]
    u = j - i  # [rows, rows + K - 1]
    inside = (u >= 0) & (u < K)
    padded = F.pad(taps, (0, 1))  # index K reads the appended zero
    return padded[..., torch.where(inside, u, K)]


def apply_token_filters(ref: Tensor, ky: Tensor, kx: Tensor, patch: int) -> Tensor:
    """Filter each token's region of `ref` with that token's separable kernel.

    Out-of-frame pixels read as zero (mid-grey in [-1, 1] pixel space).

    Args:
        ref: [B, T, c, h, w] frames (planes) to move.
        ky, kx: [B, T, N, K] per-token vertical and horizontal taps (K = 2r + 1, each summing
            to 1 when made by `MotionHead`), N = rows * cols tokens of `patch` x `patch` pixels
            in row-major order over the zero-padded frame. Taps ky[r + dy] and kx[r + dx]
            copy the pixel (y + dy, x + dx) to (y, x): the content moves by (-dy, -dx).
        patch: token size in pixels of `ref`.

    Returns:
        [B, T, c, h, w] moved frames.
    """
    B, T, c, h, w = ref.shape
    rows, cols = -(-h // patch), -(-w // patch)
    N, K = rows * cols, ky.shape[-1]
    r = (K - 1) // 2
    if ky.shape != (B, T, N, K) or kx.shape != (B, T, N, K) or K % 2 == 0:
        raise ValueError(
            f"kernels {tuple(ky.shape)}, {tuple(kx.shape)} do not fit [{B}, {T}, {N}, odd K]"
        )
    x = ref.reshape(B * T, c, h, w)
    x = F.pad(x, (r, cols * patch - w + r, r, rows * patch - h + r))
    span = patch + 2 * r  # each token's region plus the margin its kernel reaches
    nb = x.unfold(2, span, patch).unfold(3, span, patch)  # [BT, c, rows, cols, span, span]
    nb = nb.permute(0, 2, 3, 1, 4, 5).reshape(B * T * N, c, span, span)
    my = _banded(ky.reshape(B * T * N, 1, K), patch)  # [BTN, 1, patch, span]
    mx = _banded(kx.reshape(B * T * N, 1, K), patch)  # [BTN, 1, patch, span]
    y = my @ nb @ mx.transpose(-1, -2)  # [BTN, c, patch, patch]
    y = y.view(B * T, rows, cols, c, patch, patch).permute(0, 3, 1, 4, 2, 5)
    y = y.reshape(B * T, c, rows * patch, cols * patch)[..., :h, :w]
    return y.reshape(B, T, c, h, w)


class MotionHead(nn.Module):
    """Token features [B, T, N, D] -> per-token taps (ky, kx), each [B, T, N, 2r + 1].

    Starts as the identity (99% of each axis's weight on the centre tap, the rest spread
    evenly): a fresh head, or one added to a trained model for fine-tuning, leaves the
    reference as the previous frame, and the spread keeps every displacement's gradient alive.
    """

    CENTRE_WEIGHT = 0.99

    def __init__(self, dim: int, radius: int) -> None:
        super().__init__()
        self.radius = radius
        self.proj = nn.Linear(dim, 2 * (2 * radius + 1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Zero weights and centre-tap biases: identity kernels, whatever the features."""
        K = 2 * self.radius + 1
        nn.init.zeros_(self.proj.weight)
        with torch.no_grad():
            self.proj.bias.zero_()
            centre = math.log(self.CENTRE_WEIGHT * (K - 1) / (1 - self.CENTRE_WEIGHT))
            self.proj.bias[self.radius] = centre
            self.proj.bias[K + self.radius] = centre

    def forward(self, tokens: Tensor, temperature: float = 1.0) -> tuple[Tensor, Tensor]:
        """Separable kernels (ky, kx) [..., 2r + 1] of tokens [..., D]; taps are
        softmax(logits / temperature) (1: as trained; rollouts may sharpen them)."""
        logits = self.proj(tokens)
        if temperature != 1.0:
            logits = logits / temperature
        ky, kx = logits.chunk(2, dim=-1)
        return ky.softmax(dim=-1), kx.softmax(dim=-1)
