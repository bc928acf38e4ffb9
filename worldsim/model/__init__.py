"""The world model's network: config presets, DiT backbone, autoencoder, heads, KV cache."""

from worldsim.model.autoencoder import FrameAutoencoder
from worldsim.model.config import (
    PRESETS,
    AutoencoderConfig,
    DiffusionLoss,
    DiffusionSampler,
    ModelConfig,
    preset,
)
from worldsim.model.kv_cache import KVCache
from worldsim.model.net import FrameError, WorldModelNet
from worldsim.model.rollout import Rollout, RolloutState

__all__ = [
    "PRESETS",
    "AutoencoderConfig",
    "DiffusionLoss",
    "DiffusionSampler",
    "FrameAutoencoder",
    "FrameError",
    "KVCache",
    "ModelConfig",
    "Rollout",
    "RolloutState",
    "WorldModelNet",
    "preset",
]
