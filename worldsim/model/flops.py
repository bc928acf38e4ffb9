"""Parameter and FLOP counts of a model config, measured with torch's FlopCounterMode on meta tensors."""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import torch
from torch.utils.flop_counter import FlopCounterMode

from worldsim.model.config import DiffusionSampler, ModelConfig
from worldsim.model.kv_cache import KVCache
from worldsim.model.net import WorldModelNet

__all__ = ["ModelCost", "model_cost"]


@dataclass
class ModelCost:
    """Sizes and per-frame costs of one configuration."""

    params: int  # all parameters (autoencoder included)
    trainable_params: int  # without the frozen autoencoder
    tokens_per_frame: int
    eval_flops: float  # one denoiser evaluation of one new frame after a full cached window
    train_flops: float  # forward + backward per frame of a training clip of `context` frames
    step_flops: float  # one generated frame at the sampler's steps (+ the cache pass)


def model_cost(
    config: ModelConfig,
    action_space: gym.spaces.Space | None = None,
    sampler: DiffusionSampler | None = None,
) -> ModelCost:
    """Count parameters and FLOPs without allocating real memory (meta device); a frame's
    generation at `sampler`'s steps (None: DiffusionSampler's defaults).

    FLOPs are those of matmuls, convolutions and attention (FlopCounterMode), i.e. what
    matters for MFU; elementwise work is not counted.
    """
    space = action_space or gym.spaces.Discrete(17)
    with torch.device("meta"):
        net = WorldModelNet(config, space)
        T, A = config.context, net.action_encoder.dim
        c, f = config.latent_channels, config.latent_factor
        x = torch.zeros(1, T, c, config.height // f, config.width // f)
        sigma, acts = torch.ones(1, T), torch.zeros(1, T, A)
        mask = torch.ones(1, T, dtype=torch.bool)
    params = sum(p.numel() for p in net.parameters())
    trainable = params - (
        sum(p.numel() for p in net.autoencoder.parameters()) if net.autoencoder else 0
    )
    counter = FlopCounterMode(display=False)
    with counter:
        denoised, _, features = net.denoise(x, sigma, x, sigma, acts, mask)
        (denoised.sum() + features.sum()).backward()
    train = counter.get_total_flops() / T
    cache = KVCache(config.depth)
    with torch.no_grad():
        if T > 1:
            net.denoise(
                x[:, 1:], sigma[:, 1:], x[:, 1:], sigma[:, 1:], acts[:, 1:], mask[:, 1:], cache
            )
            cache.commit()
        counter = FlopCounterMode(display=False)
        with counter:
            net.denoise(
                x[:, :1], sigma[:, :1], x[:, :1], sigma[:, :1], acts[:, :1], mask[:, :1], cache
            )
    evals = counter.get_total_flops()
    sampler = DiffusionSampler() if sampler is None else sampler
    heun = sampler.sampler == "heun"
    evals_per_step = sampler.sampler_steps * (2 if heun else 1) + 1
    if heun:
        evals_per_step -= 1  # Heun's last step is an Euler step
    return ModelCost(
        params, trainable, config.tokens_per_frame, evals, train, evals * evals_per_step
    )
