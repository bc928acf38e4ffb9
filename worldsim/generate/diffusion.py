"""The generative tools on the diffusion world model: SDEdit with diffusion forcing.

Known frames are held clean in the window (tagged with the small stabilisation noise level, as
in any rollout); a frame to edit is noised to the level its strength gives and denoised from
there along the tail of the sampler's schedule (SDEdit), the frames before it clean.
"""

from __future__ import annotations

import torch
from torch import Tensor

from worldsim.diffusion.edm import karras_sigmas
from worldsim.model.rollout import Rollout, RolloutState, randn

__all__ = ["denoise_from", "sdedit_sigmas"]


def sdedit_sigmas(sampler, strength: float, steps: int | None = None) -> Tensor:
    """Noise levels [steps' + 1] from the level of `strength` down to 0: strength 1 is the
    sampler's sigma_max (the whole schedule, a frame from noise), strength s the point a share
    s of the way down Karras' ramp from sigma_min, so s -> 0 leaves the frame almost as it is.
    Strength 0 gives [0]: nothing to denoise. `sampler`: a DiffusionSampler."""
    steps = sampler.sampler_steps if steps is None else int(steps)
    if strength <= 0:
        return torch.zeros(1)
    full = karras_sigmas(max(steps, 1), sampler.sigma_min, sampler.sigma_max, sampler.rho)
    if strength >= 1:
        return full
    lo, hi = sampler.sigma_min ** (1 / sampler.rho), sampler.sigma_max ** (1 / sampler.rho)
    top = (lo + strength * (hi - lo)) ** sampler.rho
    ramp = torch.linspace(0, 1, max(steps, 1), dtype=torch.float64)
    levels = ((top ** (1 / sampler.rho)) + ramp * (lo - top ** (1 / sampler.rho))) ** sampler.rho
    return torch.cat([levels, levels.new_zeros(1)]).float()


def denoise_from(
    rollout: Rollout,
    state: RolloutState,
    x0: Tensor,
    actions: Tensor,
    sigmas: Tensor,
    *,
    method: str | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Frames x0 [B, k, c, h, w] (in diffusion space) noised to sigmas[0] and denoised along
    `sigmas` after the state's window (held clean), then appended to it (`Rollout.denoise`).

    Args:
        actions: encoded actions into each frame [B, k, A].

    Returns:
        frames x [B, k, c, h, w], rewards [B, k], termination probabilities [B, k].
    """
    x = x0
    if float(sigmas[0]) > 0:
        x = x0 + float(sigmas[0]) * randn(tuple(x0.shape), actions.device, generator)
    return rollout.denoise(state, x, actions, sigmas, method=method)
