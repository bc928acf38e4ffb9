"""The diffusion model's three configs (ModelConfig: architecture, saved with the weights;
DiffusionLoss: training; DiffusionSampler: rollouts), AutoencoderConfig and the size presets
(tiny, S, B, L)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = [
    "PRESETS",
    "AutoencoderConfig",
    "DiffusionLoss",
    "DiffusionSampler",
    "ModelConfig",
    "preset",
    "split_fields",
]


@dataclass
class AutoencoderConfig:
    """A small conv frame autoencoder: frames [H, W, 3] <-> latents [latent_channels, H/f, W/f]."""

    channels: tuple[int, ...] = (32, 64, 128)  # conv widths per level; f = 2 ** (len - 1)
    latent_channels: int = 4  # latents are tanh-bounded to [-1, 1], the same range as pixels
    blocks_per_level: int = 1  # residual blocks at each level

    @property
    def factor(self) -> int:
        """Spatial downsampling factor from frame to latent."""
        return 2 ** (len(self.channels) - 1)


@dataclass
class DiffusionLoss:
    """How a diffusion WorldModelNet is trained (diffusion forcing): the training run's business,
    not saved with the weights (a release records it in its metadata)."""

    p_mean: float = -0.4  # log-normal training noise levels (EDM)
    p_std: float = 1.2
    # Context frames are noised at a level drawn in [context_noise_min, context_noise_max].
    context_noise_min: float = 2e-3
    context_noise_max: float = 0.1
    prefix_prob: float = 0.5  # share of clips split into a clean-ish prefix + a noisy rest
    # Each frame's reference (the previous-frame input planes) is the clean previous frame,
    # lightly noised up to context_noise_max, as in rollouts; False: the previous frame at its
    # own diffusion-forcing noise level (mostly noise, so "clean frame + action -> next frame"
    # is trained on few frames).
    clean_reference: bool = False
    action_dropout: float = 0.1  # per-frame action drop, for classifier-free guidance
    reward_weight: float = 0.1
    termination_weight: float = 0.1

    def __post_init__(self) -> None:
        if not 0 <= self.context_noise_min <= self.context_noise_max:
            raise ValueError(
                f"context noise range [{self.context_noise_min}, {self.context_noise_max}] is "
                "not 0 <= context_noise_min <= context_noise_max"
            )
        for name in ("prefix_prob", "action_dropout"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")


@dataclass
class DiffusionSampler:
    """How a diffusion WorldModelNet's rollouts sample (EDM; the few-step settings follow
    DIAMOND). A release stores its defaults; rollouts take them as an argument."""

    sampler: str = "euler"  # "euler" or "heun"
    sampler_steps: int = 2
    guidance: float = 1.0  # classifier-free guidance scale on the action (1: off)
    # Kernel taps are softmax(logits / motion_temperature) (models with motion_radius). Below 1
    # a rollout commits to the likeliest displacement instead of blending "moved" and "blocked"
    # (a blur that compounds over open-loop steps); training always uses 1 (the MMSE kernels).
    motion_temperature: float = 1.0
    sigma_min: float = 2e-3  # the Karras schedule
    sigma_max: float = 5.0  # next frames are well determined by context: no need for 80
    rho: float = 7.0
    sigma_stab: float = 0.02  # the noise level context frames are tagged with
    # Pose-memory models: a step that moves the pose (by more than this) back to within this
    # `pose_distance` of a remembered frame shows that frame as it was, not the network's
    # redraw of it (a static world renders one frame at one pose). 0: off.
    recall_distance: float = 0.0

    def __post_init__(self) -> None:
        if self.sampler not in ("euler", "heun"):
            raise ValueError(f"sampler {self.sampler!r} is not 'euler' or 'heun'")
        if self.sampler_steps < 1:
            raise ValueError(f"sampler_steps must be at least 1, got {self.sampler_steps}")
        if self.guidance < 0:
            raise ValueError(f"guidance must be >= 0 (1: off), got {self.guidance}")
        if self.motion_temperature <= 0:
            raise ValueError(f"motion_temperature must be positive, got {self.motion_temperature}")
        if self.recall_distance < 0:
            raise ValueError(f"recall_distance must be >= 0 (0: off), got {self.recall_distance}")
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(
                f"the schedule needs 0 < sigma_min < sigma_max, got {self.sigma_min}, "
                f"{self.sigma_max}"
            )


@dataclass
class ModelConfig:
    """A diffusion WorldModelNet's architecture: everything needed to rebuild it; saved with
    every checkpoint and release. How it is trained is `DiffusionLoss`, how it samples
    `DiffusionSampler`.

    Shapes: frames are [height, width, channels] uint8; the transformer sees
    (height/f/patch_size) x (width/f/patch_size) tokens per frame, f being the autoencoder's
    factor (1 without one).
    """

    LOSS: ClassVar[type] = DiffusionLoss
    SAMPLER: ClassVar[type] = DiffusionSampler

    # Frames.
    height: int = 64
    width: int = 64
    channels: int = 3
    # Tokens. Patch 4 keeps spatial detail finer than Crafter's ~7 px tiles (calibration
    # lesson 2); the conv stem/decoder adds full-resolution detail cheaply on a CPU. A patch
    # size that does not divide the frame pads it (Crafter's 7 px tiles: patch_size 7, and a
    # move shifts the view by exactly one token).
    patch_size: int = 4
    stem_channels: int = 32  # 0: no conv stem/decoder, a linear patch embedding only
    # Motion-compensated reference (worldsim/model/motion.py): each token predicts a separable
    # kernel (2r+1 taps per axis) that moves the previous frame's pixels by up to r, and the frame is
    # predicted relative to the moved frame. 0: off (the reference is the previous frame).
    # Crafter scrolls by 7 px: r = 8.
    motion_radius: int = 0
    # Pose memory (worldsim/model/pose.py; data with a `pose` label, e.g. Minetest): the
    # reference is the remembered frame (of the last `pose_memory`) nearest to the new frame's
    # pose, turned to its view direction for a pinhole camera of vertical field of view
    # `pose_fov` degrees (0: not turned), the pose dead-reckoned from the actions by an
    # odometry fit to the training data. Nearness counts `pose_degrees_per_unit` degrees of turn as one world unit of
    # distance. 0: off (the reference is the previous frame).
    pose_memory: int = 0
    pose_fov: float = 0.0
    pose_degrees_per_unit: float = 15.0
    # Transformer.
    dim: int = 256
    depth: int = 6  # blocks, each: spatial attention, causal temporal attention, MLP
    heads: int = 4
    mlp_ratio: float = 4.0
    context: int = 16  # frames in the attention window (training clip length, rollout window)
    qk_norm: bool = True  # RMS-normalised queries/keys: stable attention logits at any size
    # EDM preconditioning (Karras et al. 2022): part of what the weights compute.
    sigma_data: float = 0.5  # std of frames scaled to [-1, 1] (or of tanh-bounded latents)
    sigma_data_residual: float = 0.1  # std of (frame - previous frame); 0.106 on Crafter
    # Optional frame autoencoder: frames are diffused in its latent space.
    autoencoder: AutoencoderConfig | None = None

    def __post_init__(self) -> None:
        if isinstance(self.autoencoder, dict):
            ae = dict(self.autoencoder)
            ae["channels"] = tuple(ae.get("channels", AutoencoderConfig.channels))
            self.autoencoder = AutoencoderConfig(**ae)
        self.validate()

    @property
    def latent_factor(self) -> int:
        """Spatial downsampling from frames to the diffused tensor (1 without autoencoder)."""
        return 1 if self.autoencoder is None else self.autoencoder.factor

    @property
    def latent_channels(self) -> int:
        """Channels of the diffused tensor."""
        return self.channels if self.autoencoder is None else self.autoencoder.latent_channels

    @property
    def grid(self) -> tuple[int, int]:
        """Tokens per frame as (rows, columns); planes are zero-padded on the bottom/right
        to a multiple of the patch size (e.g. 7x7 patches on 64x64 frames: a 10x10 grid)."""
        f, p = self.latent_factor, self.patch_size
        return -(-self.height // f // p), -(-self.width // f // p)

    @property
    def tokens_per_frame(self) -> int:
        rows, cols = self.grid
        return rows * cols

    def validate(self) -> None:
        """Raise ValueError naming the inconsistent field."""
        f = self.latent_factor
        if self.height % f or self.width % f:
            raise ValueError(
                f"frame size {self.height}x{self.width} is not divisible by the autoencoder's "
                f"factor {f}; resize or crop frames, or use an autoencoder with fewer levels"
            )
        if self.patch_size < 1:
            raise ValueError(f"patch_size must be at least 1, got {self.patch_size}")
        if self.dim % self.heads or (self.dim // self.heads) % 4:
            raise ValueError(
                f"dim {self.dim} must split into {self.heads} heads of a multiple of 4"
            )
        if self.motion_radius < 0:
            raise ValueError(f"motion_radius must be 0 (off) or positive, got {self.motion_radius}")
        if self.context < 1:
            raise ValueError(f"context must be at least 1, got {self.context}")
        if self.pose_memory < 0 or not 0 <= self.pose_fov < 180 or self.pose_degrees_per_unit <= 0:
            raise ValueError(
                f"pose memory settings (pose_memory {self.pose_memory}, pose_fov {self.pose_fov}, "
                f"pose_degrees_per_unit {self.pose_degrees_per_unit}) need pose_memory >= 0 "
                "(0: off), 0 <= pose_fov < 180 and pose_degrees_per_unit > 0"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (round-trips through `from_dict`)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Rebuild from `to_dict` output; unknown keys raise ValueError."""
        return config_from_fields(cls, data)


def config_from_fields(cls: Any, data: dict[str, Any]) -> Any:
    """The dataclass `cls` built from a saved dict; unknown keys raise ValueError naming them."""
    unknown = sorted(set(data) - field_names(cls))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {unknown}")
    return cls(**data)


def field_names(cls: Any) -> set[str]:
    """The field names of the dataclass `cls`."""
    return {f.name for f in dataclasses.fields(cls)}


def split_fields(arch: Any, data: dict[str, Any]) -> tuple[dict, dict, dict]:
    """A dict mixing the fields of the architecture config class `arch` and of its LOSS and
    SAMPLER configs -> (architecture, loss, sampler) dicts; unknown keys stay in the
    architecture's, whose constructor names them. Reads configs saved before the three were
    split (release format 1, older training checkpoints)."""
    loss, sampler = field_names(arch.LOSS), field_names(arch.SAMPLER)
    parts: tuple[dict, dict, dict] = ({}, {}, {})
    for key, value in data.items():
        parts[1 if key in loss else 2 if key in sampler else 0][key] = value
    if "context_noise_min" in loss and "sigma_min" in parts[2]:  # format 1: one sigma_min
        top = parts[1].get("context_noise_max", arch.LOSS.context_noise_max)
        parts[1]["context_noise_min"] = min(parts[2]["sigma_min"], top)
    return parts


def _presets() -> dict[str, ModelConfig]:
    return {
        # Tests and smoke runs: seconds on a CPU.
        "tiny": ModelConfig(dim=64, depth=2, heads=2, context=4, stem_channels=8),
        # Crafter on a CPU: 8x8 patches (64 tokens per 64x64 frame) inside a full-resolution
        # conv stem/decoder with a skip, plus the residual path from the last frame: fine
        # detail never has to pass through the tokens. Measured on 1 CPU thread: training
        # 5.6x faster and rollout 2.5x faster than with 4x4 patches (256 tokens).
        "S": ModelConfig(dim=256, depth=6, heads=4, context=16, patch_size=8),
        # GPU sizes: 4x4 patches (256 tokens per 64x64 frame).
        "B": ModelConfig(dim=512, depth=12, heads=8, context=16, stem_channels=64),
        "L": ModelConfig(dim=1024, depth=24, heads=16, context=16, stem_channels=64),
    }


PRESETS: dict[str, ModelConfig] = _presets()


def preset(name: str, **overrides: Any) -> ModelConfig:
    """A fresh copy of preset `name` with fields replaced by `overrides`.

    Args:
        name: one of PRESETS ("tiny", "S", "B", "L").
        **overrides: ModelConfig fields, e.g. height=48, width=80, context=8.

    Raises:
        KeyError: an unknown preset name.
    """
    if name not in PRESETS:
        raise KeyError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
    return dataclasses.replace(PRESETS[name], **overrides)
