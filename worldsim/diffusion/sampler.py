"""Few-step EDM samplers (Euler, Heun) over any denoiser, and classifier-free guidance."""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise

from torch import Tensor

__all__ = ["Denoiser", "guided", "sample"]

# D(x, sigma): the denoised estimate of x at noise level sigma (a Python float).
Denoiser = Callable[[Tensor, float], Tensor]


def sample(denoiser: Denoiser, x: Tensor, sigmas: Tensor, method: str = "euler") -> Tensor:
    """Integrate the probability-flow ODE from sigmas[0] to sigmas[-1] = 0.

    Args:
        denoiser: D(x, sigma).
        x: the starting sample at noise level sigmas[0] (any shape).
        sigmas: [steps + 1] decreasing noise levels ending at 0 (`karras_sigmas`).
        method: "euler" (one evaluation per step) or "heun" (two, except the last step).

    Returns:
        The sample at sigma 0, shaped like x.
    """
    if method not in ("euler", "heun"):
        raise ValueError(f"sampler {method!r} is not 'euler' or 'heun'")
    levels = [float(s) for s in sigmas]
    for s, s_next in pairwise(levels):
        denoised = denoiser(x, s)
        if s_next == 0:  # the Euler step to sigma 0 lands exactly on the denoised estimate
            x = denoised
            continue
        d = (x - denoised) / s
        x_next = x + (s_next - s) * d
        if method == "heun":
            d_next = (x_next - denoiser(x_next, s_next)) / s_next
            x_next = x + (s_next - s) * (d + d_next) / 2
        x = x_next
    return x


def guided(conditional: Denoiser, unconditional: Denoiser, scale: float) -> Denoiser:
    """Classifier-free guidance: D_u + scale * (D_c - D_u); scale 1 is plain conditional."""
    if scale == 1.0:
        return conditional

    def denoiser(x: Tensor, sigma: float) -> Tensor:
        d_u = unconditional(x, sigma)
        return d_u + scale * (conditional(x, sigma) - d_u)

    return denoiser
