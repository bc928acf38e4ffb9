"""Diffusion: EDM preconditioning with a residual reference, noise levels, samplers, CFG."""

from worldsim.diffusion.edm import (
    NO_PREV_SIGMA,
    karras_sigmas,
    log_uniform,
    precondition,
    reference,
    sample_sigmas,
)
from worldsim.diffusion.sampler import guided, sample

__all__ = [
    "NO_PREV_SIGMA",
    "guided",
    "karras_sigmas",
    "log_uniform",
    "precondition",
    "reference",
    "sample",
    "sample_sigmas",
]
