"""EDM preconditioning (Karras et al. 2022) with a residual path from the previous frame.

Why EDM rather than v-prediction or flow matching: with 1-2 sampler steps the first step
starts at sigma_max, where EDM's c_skip/c_out make the network predict the clean frame
directly (an x0-predictor); with the residual reference below that prediction starts at
"copy the last frame" for free. Flow matching/v-prediction give the same family of
objectives up to weighting; EDM's log-normal noise levels and weighting are what DIAMOND,
the closest peer, measured to work for 1-3 step next-frame sampling, so we start there.

Residual path (calibration lesson 1): frame t is denoised relative to a reference built
from the previous frame as the network sees it (noisy at level prev_sigma):
    ref = w * prev,  w = sd^2 / (prev_sigma^2 + sd^2)   (the optimal linear denoise of prev)
and EDM is applied to the residual (x - ref), whose std is sd_res when prev is clean and
sd when there is no usable previous frame. A zero network output thus predicts "nothing
changed", and the same formula holds for clean context, noisy context (diffusion forcing)
and jointly denoised chunks.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "NO_PREV_SIGMA",
    "karras_sigmas",
    "log_uniform",
    "precondition",
    "reference",
    "residual_std",
    "sample_sigmas",
]

# prev_sigma of a frame with no previous frame (first of a clip): w = 0, ref = 0.
NO_PREV_SIGMA = 1e4


def reference(
    prev: Tensor, prev_sigma: Tensor, sigma_data: float, sigma_data_residual: float
) -> tuple[Tensor, Tensor]:
    """Reference frame and residual std for each frame.

    Args:
        prev: [B, T, C, h, w] previous frames as the network sees them (noisy).
        prev_sigma: [B, T] their noise levels (NO_PREV_SIGMA where there is none).

    Returns:
        ref [B, T, C, h, w] and the residual data std sd_eff [B, T].
    """
    w = sigma_data**2 / (prev_sigma**2 + sigma_data**2)  # [B, T] trust in prev
    return w[..., None, None, None] * prev, residual_std(
        prev_sigma, sigma_data, sigma_data_residual
    )


def residual_std(prev_sigma: Tensor, sigma_data: float, sigma_data_residual: float) -> Tensor:
    """Std sd_eff [B, T] of (frame - reference) given the previous frame's noise level [B, T]."""
    w = sigma_data**2 / (prev_sigma**2 + sigma_data**2)
    var = w * (sigma_data_residual**2 + w * prev_sigma**2) + (1 - w) * sigma_data**2
    return var.sqrt()


def precondition(sigma: Tensor, sd: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """EDM coefficients c_skip, c_out, c_in, c_noise, each shaped like sigma [B, T]."""
    total = sigma**2 + sd**2
    c_skip = sd**2 / total
    c_out = sigma * sd / total.sqrt()
    c_in = 1 / total.sqrt()
    c_noise = sigma.log() / 4
    return c_skip, c_out, c_in, c_noise


def sample_sigmas(
    shape: tuple[int, ...],
    p_mean: float,
    p_std: float,
    *,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Training noise levels: log-normal(p_mean, p_std), one per frame (diffusion forcing)."""
    return (torch.randn(shape, device=device, generator=generator) * p_std + p_mean).exp()


def log_uniform(
    shape: tuple[int, ...],
    low: float,
    high: float,
    *,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Noise levels spread evenly in log-space over [low, high] (context augmentation)."""
    u = torch.rand(shape, device=device, generator=generator)
    return (math.log(low) + u * (math.log(high) - math.log(low))).exp()


def karras_sigmas(
    steps: int, sigma_min: float, sigma_max: float, rho: float, device: torch.device | str = "cpu"
) -> Tensor:
    """Sampler noise levels [steps + 1] from sigma_max down to sigma_min, then 0.

    One step evaluates the denoiser once at sigma_max and returns its prediction.
    """
    if steps == 1:
        return torch.tensor([sigma_max, 0.0], device=device)
    ramp = torch.linspace(0, 1, steps, device=device, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)]).float()
