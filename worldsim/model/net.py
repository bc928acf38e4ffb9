"""WorldModelNet: DiT backbone + EDM preconditioning + action encoding + reward/termination heads."""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from worldsim.actions import ActionEncoder
from worldsim.diffusion.edm import (
    NO_PREV_SIGMA,
    log_uniform,
    precondition,
    reference,
    residual_std,
    sample_sigmas,
)
from worldsim.errors import WorldsimError
from worldsim.model.autoencoder import FrameAutoencoder
from worldsim.model.config import DiffusionLoss, ModelConfig
from worldsim.model.dit import DiT
from worldsim.model.heads import RewardTerminationHead
from worldsim.model.kv_cache import KVCache
from worldsim.model.motion import apply_token_filters
from worldsim.model.pose import POSE_DIM, fit_odometry, odometry_features, turn_view

__all__ = ["FrameError", "WorldModelNet", "check_frames", "pixels_to_x", "x_to_pixels"]


class FrameError(WorldsimError, ValueError):
    """Frames of the wrong shape, dtype or size for the model."""


def check_frames(
    frames: Any, shape: tuple[int, int, int], device: torch.device, ndim: int = 5
) -> Tensor:
    """Frames as a uint8 tensor on `device`, checked to be [B, (T,) H, W, C] of `shape`.

    Raises:
        FrameError: wrong dtype, rank or size.
    """
    if not isinstance(frames, Tensor):
        frames = torch.as_tensor(np.asarray(frames))
    if frames.dtype != torch.uint8:
        raise FrameError(f"frames must be uint8 in [0, 255], got {frames.dtype}")
    if frames.dim() != ndim or tuple(frames.shape[-3:]) != tuple(shape):
        dims = "B, T, " if ndim == 5 else "B, "
        H, W, C = shape
        raise FrameError(
            f"frames have shape {tuple(frames.shape)}; this model needs [{dims}{H}, {W}, {C}] "
            "(resize observations to the model's size, or train a model for this one)"
        )
    return frames.to(device)


def pixels_to_x(frames: Tensor) -> Tensor:
    """uint8 frames [B, T, H, W, C] -> x [B, T, C, H, W] scaled to [-1, 1]."""
    return frames.permute(0, 1, 4, 2, 3).float() / 127.5 - 1


def x_to_pixels(x: Tensor) -> Tensor:
    """x [B, T, C, H, W] in [-1, 1] -> uint8 frames [B, T, H, W, C]."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 1, 3, 4, 2)


class NoiseEmbedding(nn.Module):
    """c_noise [B, T] -> [B, T, D]: Fourier features then an MLP."""

    def __init__(self, dim: int, frequencies: int = 128) -> None:
        super().__init__()
        self.register_buffer(
            "freqs", torch.exp(-math.log(1e3) * torch.arange(frequencies) / frequencies)
        )
        self.mlp = nn.Sequential(nn.Linear(2 * frequencies, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, c_noise: Tensor) -> Tensor:
        angles = c_noise[..., None] * self.freqs * 100  # [B, T, F]: c_noise spans about [-2, 1]
        return self.mlp(torch.cat([angles.cos(), angles.sin()], dim=-1))


class WorldModelNet(nn.Module):
    """The world model's network: denoises frames given past frames and actions.

    Frame t is conditioned (adaLN) on its noise level and on actions[t - 1], the action
    that led to it; frame 0 of a clip, and frames whose action is dropped for
    classifier-free guidance, get a learned "no action" embedding instead. Frames are
    diffused as pixels scaled to [-1, 1] or, with `set_autoencoder`, as latents.

    Args:
        config: the model configuration (also stored in checkpoints).
        action_space: the game's Gymnasium action space.
    """

    def __init__(self, config: ModelConfig, action_space: gym.spaces.Space) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.action_space = action_space
        self.action_encoder = ActionEncoder(action_space)
        d, c = config.dim, config.latent_channels
        # Input planes per frame: the scaled noisy residual and the reference (previous frame).
        self.backbone = DiT(config, in_channels=2 * c, out_channels=c)
        self.noise_embed = NoiseEmbedding(d)
        self.action_embed = nn.Sequential(
            nn.Linear(self.action_encoder.dim, d), nn.SiLU(), nn.Linear(d, d)
        )
        self.null_action = nn.Parameter(torch.zeros(d))
        self.heads = RewardTerminationHead(d)
        if config.pose_memory:
            # The pose difference between a frame and its reference, as a condition (starts
            # at zero: a fresh embedding changes nothing), and the odometry: least-squares
            # weights, fit to the training data (`fit_odometry`), of the pose step an action
            # takes in the player's heading frame, dead-reckoning poses in rollouts.
            self.pose_embed = nn.Sequential(nn.Linear(POSE_DIM, d), nn.SiLU(), nn.Linear(d, d))
            nn.init.zeros_(self.pose_embed[2].weight)
            nn.init.zeros_(self.pose_embed[2].bias)
            features = odometry_features(torch.zeros(1, self.action_encoder.dim)).shape[-1]
            self.register_buffer("odometry", torch.zeros(features, POSE_DIM))
            # the encoded action at rest, which takes no step (`pose_step`); derived, not saved
            self.register_buffer("rest_action", self.action_encoder.rest(), persistent=False)
        self.autoencoder: FrameAutoencoder | None = None
        if config.autoencoder is not None:
            self.set_autoencoder(FrameAutoencoder(config.autoencoder))

    # ----------------------------------------------------------------- frames <-> x
    def set_autoencoder(self, ae: FrameAutoencoder | None) -> None:
        """Diffuse frames in `ae`'s latent space (frozen), or in pixel space with None.

        The autoencoder's config must match `config.autoencoder` (channels and factor decide
        the backbone's shapes); it becomes part of the network's weights and checkpoints.
        """
        if ae is not None:
            if self.config.autoencoder is None or ae.config != self.config.autoencoder:
                raise ValueError(
                    "the autoencoder's config differs from ModelConfig.autoencoder; build the "
                    "net with config.autoencoder = ae.config"
                )
            ae.requires_grad_(False).eval()
        elif self.config.autoencoder is not None:
            raise ValueError("this net was configured with an autoencoder; it cannot be removed")
        self.autoencoder = ae

    def train(self, mode: bool = True) -> WorldModelNet:
        super().train(mode)
        if self.autoencoder is not None:
            self.autoencoder.eval()  # frozen: always in eval mode
        return self

    @property
    def device(self) -> torch.device:
        return self.null_action.device

    def check_frames(self, frames: Any, ndim: int = 5) -> Tensor:
        """Frames as a uint8 tensor on the net's device, checked against the config.

        Raises:
            FrameError: wrong dtype, rank or size.
        """
        c = self.config
        return check_frames(frames, (c.height, c.width, c.channels), self.device, ndim)

    def frames_to_x(self, frames: Any) -> Tensor:
        """uint8 frames [B, T, H, W, C] -> diffused tensor x [B, T, c, h, w] in about [-1, 1]."""
        frames = self.check_frames(frames)
        B, T = frames.shape[:2]
        if self.autoencoder is not None:
            with torch.no_grad():
                x = self.autoencoder.encode(frames.flatten(0, 1))  # [B*T, c, h, w]
            return x.view(B, T, *x.shape[1:])
        return pixels_to_x(frames)

    def x_to_frames(self, x: Tensor) -> Tensor:
        """Diffused tensor x [B, T, c, h, w] -> uint8 frames [B, T, H, W, C]."""
        B, T = x.shape[:2]
        if self.autoencoder is not None:
            with torch.no_grad():
                x = self.autoencoder.decode(x.flatten(0, 1))  # [B*T, C, H, W] in [-1, 1]
            x = x.view(B, T, *x.shape[1:])
        return x_to_pixels(x)

    def encode_actions(self, actions: Any) -> Tensor:
        """Raw actions [..., *action_shape] (or a dict of such) -> float [..., A]."""
        return self.action_encoder.encode(actions)

    # ----------------------------------------------------------------- pose memory
    # Pose differences as the network reads them: world units, and degrees over 30; height
    # is left out (the odometry does not dead-reckon it, so rollouts could not tell it).
    POSE_SCALE = (1.0, 1.0, 1.0, 30.0, 30.0)
    POSE_SEEN = (1.0, 1.0, 0.0, 1.0, 1.0)

    def fit_odometry(self, actions: Tensor, steps: Tensor) -> None:
        """Fit the odometry to encoded actions [N, A] and the pose steps [N, 5] they took
        (`worldsim.model.pose.local_delta` of consecutive poses) by least squares."""
        self.odometry.copy_(fit_odometry(actions, steps).to(self.odometry.device))

    def pose_step(self, actions: Tensor) -> Tensor:
        """Encoded actions [..., A] -> the pose step each takes [..., 5], in the player's
        heading frame (`worldsim.model.pose.local_delta`): the rollout's odometry. The action
        at rest (`ActionEncoder.rest`) takes none, though the fit gives it the average drift
        of the data's still steps (a player still sliding after a walk): standing still stays
        at the pose, so its reference is the first frame made there, not the last."""
        still = self.at_rest(actions)[..., None]
        return (odometry_features(actions) @ self.odometry).masked_fill(still, 0.0)

    def at_rest(self, actions: Tensor) -> Tensor:
        """Encoded actions [..., A] -> bool [...]: the action at rest (every key up, the camera
        still: `ActionEncoder.rest`). Pose-memory models only."""
        return (actions == self.rest_action).all(-1)

    def pose_reference(self, ref: Tensor, delta: Tensor) -> Tensor:
        """Reference frames ref [B, T, c, h, w] turned by the yaw and pitch of their pose
        differences delta [B, T, 5] to the new frames' view (`pose_fov` 0: as they are)."""
        if not self.config.pose_fov:
            return ref
        turned = turn_view(ref.flatten(0, 1), delta[..., 3:5].flatten(0, 1), self.config.pose_fov)
        return turned.view(ref.shape)

    # ----------------------------------------------------------------- the denoiser
    def condition(self, c_noise: Tensor, actions: Tensor | None, mask: Tensor | None) -> Tensor:
        """Per-frame condition [B, T, D] from c_noise [B, T], encoded actions [B, T, A] and
        mask [B, T] (True: use the action, False: the "no action" embedding)."""
        cond = self.noise_embed(c_noise)
        if actions is None:
            return cond + self.null_action
        emb = self.action_embed(actions)  # [B, T, D]
        if mask is not None:
            emb = torch.where(mask[..., None], emb, self.null_action)
        return cond + emb

    def denoise(
        self,
        x: Tensor,
        sigma: Tensor,
        prev: Tensor,
        prev_sigma: Tensor,
        actions: Tensor | None = None,
        mask: Tensor | None = None,
        cache: KVCache | None = None,
        motion_temperature: float = 1.0,
        pose_delta: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """EDM denoiser D for T frames following the cached ones.

        Args:
            x: [B, T, c, h, w] noisy frames. sigma: [B, T] their noise levels.
            prev: [B, T, c, h, w] each frame's previous frame as the network sees it, and
                prev_sigma [B, T] its noise level (NO_PREV_SIGMA and zeros: no previous).
            actions: [B, T, A] encoded actions that led to each frame; mask [B, T] which to use.
            cache: keys/values of earlier frames; the new ones are staged (see KVCache).
            motion_temperature: of the motion kernels (sampling may sharpen them; 1: as trained).
            pose_delta: [B, T, 5] each frame's pose seen from its reference's (pose-memory
                models: `prev` is then the reference, already turned by `pose_reference`).

        Returns:
            denoised [B, T, c, h, w], raw network output F [B, T, c, h, w] and features [B, T, D].
        """
        cfg = self.config
        ref, sd = reference(prev, prev_sigma, cfg.sigma_data, cfg.sigma_data_residual)
        c_skip, c_out, c_in, c_noise = precondition(sigma, sd)  # [B, T] each
        residual = x - ref
        planes = torch.cat([_bc(c_in) * residual, ref], dim=2)  # [B, T, 2c, h, w]
        cond = self.condition(c_noise, actions, mask)
        if cfg.pose_memory:
            if pose_delta is None:
                raise ValueError("a pose-memory model needs each frame's pose_delta")
            seen = pose_delta.new_tensor(self.POSE_SEEN) / pose_delta.new_tensor(self.POSE_SCALE)
            cond = cond + self.pose_embed(pose_delta * seen)
        out, features, kernels = self.backbone(planes, cond, cache, motion_temperature)
        if kernels is not None:  # predict relative to the previous frame moved by the kernels
            ref = apply_token_filters(ref, *kernels, cfg.patch_size)
        denoised = ref + _bc(c_skip) * (x - ref) + _bc(c_out) * out
        return denoised, out, features

    def _pose_references(
        self, pose: dict[str, Any] | None, lc: DiffusionLoss, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """A training batch's pose references (`training_loss`'s `pose`) as the denoiser takes
        them: (reference planes [B, T, c, h, w] lightly noised and turned to each frame's view,
        their noise levels [B, T], NO_PREV_SIGMA where there is none, pose differences [B, T, 5])."""
        if pose is None:
            raise ValueError(
                "a pose-memory model trains on clips with pose references: set "
                "data.pose_memory to the model's pose_memory (a store with a `pose` label)"
            )
        dev = self.device
        delta = torch.as_tensor(pose["ref_delta"], device=dev).float()
        valid = torch.as_tensor(pose["ref_valid"], device=dev).bool()
        noisy, ref_sigma = _lightly_noised(self.frames_to_x(pose["ref_frames"]), lc, generator)
        prev = torch.where(_bc(valid), self.pose_reference(noisy, delta), 0.0)
        return prev, torch.where(valid, ref_sigma, NO_PREV_SIGMA), delta

    def predict(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """Features [B, T, D] of frames -> (reward [B, T] of the transition into each frame,
        termination probability [B, T])."""
        return self.heads.predict(features)

    # ----------------------------------------------------------------- training
    def training_loss(
        self,
        frames: Tensor,
        actions: Any,
        rewards: Tensor,
        terminated: Tensor,
        generator: torch.Generator | None = None,
        *,
        loss: DiffusionLoss | None = None,
        pose: dict[str, Any] | None = None,
    ) -> dict[str, Tensor]:
        """Diffusion-forcing loss on clips, plus reward and termination losses.

        Args:
            frames: uint8 [B, T, H, W, C], T <= config.context.
            actions: raw actions [B, T-1, ...] (tensor, array, or dict of them); actions[:, t]
                leads from frame t to frame t+1.
            rewards: float [B, T-1]. terminated: bool [B, T-1].
            generator: source of all randomness (noise levels, noise, action dropout).
            loss: the loss settings (None: DiffusionLoss's defaults).
            pose: pose-memory models only (`training.data.pose_references` makes it): each
                frame's reference "ref_frames" uint8 [B, T, H, W, C], "ref_delta" [B, T, 5]
                (its pose seen from the reference's) and "ref_valid" bool [B, T] (False: no
                earlier frame). References are clean, lightly noised, as in rollouts.

        Returns:
            dict with "loss" (to backprop), "diffusion", "reward", "termination",
            "reward_acc", "termination_acc" (scalars), "sigma" [B, T] and the detached
            per-frame diffusion loss "frame_loss" [B, T].
        """
        cfg, dev = self.config, self.device
        lc = DiffusionLoss() if loss is None else loss
        x0 = self.frames_to_x(frames)  # [B, T, c, h, w]
        B, T = x0.shape[:2]
        if cfg.context < T:
            raise FrameError(f"clips of {T} frames exceed the model's context of {cfg.context}")
        enc = self.encode_actions(actions).to(dev)  # [B, T-1, A]
        if enc.shape[:2] != (B, T - 1):
            raise FrameError(
                f"actions have batch shape {tuple(enc.shape[:2])}, expected ({B}, {T - 1})"
            )
        # Diffusion forcing: an independent noise level per frame. In a share of clips a
        # random prefix is context instead: lightly noised (augmentation), as in rollouts.
        sigma = sample_sigmas((B, T), lc.p_mean, lc.p_std, device=dev, generator=generator)
        if T > 1 and lc.prefix_prob > 0:
            is_prefix_clip = torch.rand(B, 1, device=dev, generator=generator) < lc.prefix_prob
            prefix = torch.randint(1, T, (B, 1), device=dev, generator=generator)
            in_prefix = is_prefix_clip & (torch.arange(T, device=dev) < prefix)  # [B, T]
            ctx_sigma = log_uniform(
                (B, T), lc.context_noise_min, lc.context_noise_max, device=dev, generator=generator
            )
            sigma = torch.where(in_prefix, ctx_sigma, sigma)
        noise = torch.randn(x0.shape, device=dev, generator=generator)
        x = x0 + _bc(sigma) * noise
        delta = None
        if cfg.pose_memory:  # each frame's reference found by pose, as rollouts find it
            prev, prev_sigma, delta = self._pose_references(pose, lc, generator)
        else:
            if lc.clean_reference:  # the previous frame as rollouts see it: clean, lightly noised
                seen, ref_sigma = _lightly_noised(x0, lc, generator)
            else:  # the previous frame at its own diffusion-forcing noise level
                ref_sigma, seen = sigma, x
            prev = torch.cat([torch.zeros_like(seen[:, :1]), seen[:, :-1]], dim=1)
            prev_sigma = torch.cat(
                [torch.full_like(sigma[:, :1], NO_PREV_SIGMA), ref_sigma[:, :-1]], dim=1
            )
        acts = torch.cat([enc.new_zeros(B, 1, enc.shape[-1]), enc], dim=1)  # [B, T, A]
        keep = torch.rand(B, T, device=dev, generator=generator) >= lc.action_dropout
        keep[:, 0] = False  # frame 0 has no action before it
        denoised, _, features = self.denoise(
            x, sigma, prev, prev_sigma, acts, keep, pose_delta=delta
        )
        # EDM loss: lambda(sigma) * |D - x0|^2 with lambda = 1 / c_out^2 (unit-variance
        # network targets; the same as |F - F_target|^2).
        sd = residual_std(prev_sigma, cfg.sigma_data, cfg.sigma_data_residual)
        c_out = precondition(sigma, sd)[1]
        frame_loss = ((denoised - x0) / _bc(c_out)).pow(2).mean(dim=(2, 3, 4))  # [B, T]
        diffusion = frame_loss.mean()
        # Heads on the frames that follow a kept action (features of frame t+1 <-> step t).
        rewards = torch.as_tensor(rewards, device=dev).float()  # [B, T-1]
        terminated = torch.as_tensor(terminated, device=dev).bool()
        if rewards.shape != (B, T - 1) or terminated.shape != (B, T - 1):
            raise ValueError(
                f"rewards {tuple(rewards.shape)} and terminated {tuple(terminated.shape)} must be "
                f"[B, T-1] = [{B}, {T - 1}]"
            )
        head = self.heads.loss(features[:, 1:], rewards, terminated, keep[:, 1:])
        loss = (
            diffusion
            + lc.reward_weight * head["reward"]
            + lc.termination_weight * head["termination"]
        )
        return {
            "loss": loss,
            "diffusion": diffusion,
            "sigma": sigma,
            "frame_loss": frame_loss.detach(),
            **head,
        }


def _lightly_noised(
    x0: Tensor, lc: DiffusionLoss, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """Clean frames x0 [B, T, ...] noised as rollouts see their context: (noisy frames, the
    levels [B, T], drawn log-uniformly in [context_noise_min, context_noise_max])."""
    B, T = x0.shape[:2]
    sigma = log_uniform(
        (B, T), lc.context_noise_min, lc.context_noise_max, device=x0.device, generator=generator
    )
    return x0 + _bc(sigma) * torch.randn(x0.shape, device=x0.device, generator=generator), sigma


def _bc(v: Tensor) -> Tensor:
    """[B, T] -> [B, T, 1, 1, 1] for broadcasting over frame planes."""
    return v[..., None, None, None]
