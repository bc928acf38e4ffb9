"""Training callbacks: stop on a non-finite loss, log sample rollouts next to real clips, and a
progress bar that counts steps."""

from __future__ import annotations

import io
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor

from worldsim.errors import WorldsimError
from worldsim.spaces import tree_index


class NonFiniteLossError(WorldsimError, RuntimeError):
    """The training loss became NaN or infinite."""


class NonFiniteLossStop(L.Callback):
    """Stop training, before the bad update is applied, when the loss is NaN or infinite.

    The check runs before backward on every process; the processes agree (one all-reduce of
    a flag) so all of them stop together instead of some hanging in the gradient all-reduce.
    The weights and the last checkpoint are those from before the step that failed.
    """

    def on_before_backward(
        self, trainer: L.Trainer, pl_module: L.LightningModule, loss: Tensor
    ) -> None:
        finite = bool(torch.isfinite(loss.detach()).all())
        if trainer.strategy.reduce_boolean_decision(finite, all=True):
            return
        raise NonFiniteLossError(
            f"the training loss is not finite (this process: {loss.item()}) at global step "
            f"{trainer.global_step} (epoch {trainer.current_epoch}); the weights are those from before "
            "this step. Resume from the last checkpoint (`--ckpt_path last`) with a lower "
            "--model.lr, a longer --model.warmup_steps or --trainer.gradient_clip_val, or check the data"
        )


def gif_bytes(video: np.ndarray, fps: float) -> bytes:
    """An animated GIF of `video` uint8 [T, H, W, 3] that loops forever."""
    from PIL import Image

    images = [Image.fromarray(frame) for frame in video]
    buffer = io.BytesIO()
    duration = max(20, round(1000 / fps))  # ms per frame; browsers clamp below 20
    images[0].save(
        buffer, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0
    )
    return buffer.getvalue()


def log_video(
    logger: TensorBoardLogger, tag: str, video: np.ndarray, step: int, fps: float
) -> None:
    """Write `video` uint8 [T, H, W, 3] to TensorBoard as an animated image (Images tab).

    TensorBoard shows GIF-encoded image summaries animated; this is what
    `SummaryWriter.add_video` writes, without its moviepy dependency.
    """
    from tensorboard.compat.proto.summary_pb2 import Summary

    _, H, W, C = video.shape
    image = Summary.Image(
        height=H, width=W, colorspace=C, encoded_image_string=gif_bytes(video, fps)
    )
    summary = Summary(value=[Summary.Value(tag=tag, image=image)])
    logger.experiment._get_file_writer().add_summary(summary, step)


def side_by_side(real: Tensor, fake: Tensor, gap: int = 2) -> np.ndarray:
    """One video of real (left) and generated (right) clips, one pair per row.

    Args:
        real: uint8 [B, T, H, W, 3]. fake: uint8 [B, T, H, W, 3].

    Returns:
        uint8 [T, B*(H+gap)-gap, 2*W+gap, 3], white gaps between the panels.
    """
    B, T, H, W, _ = real.shape
    out = np.full((T, B * (H + gap) - gap, 2 * W + gap, 3), 255, np.uint8)
    real, fake = real.cpu().numpy(), fake.cpu().numpy()
    for b in range(B):
        top = b * (H + gap)
        out[:, top : top + H, :W] = real[b]
        out[:, top : top + H, W + gap :] = fake[b]
    return out


class RolloutVideos(L.Callback):
    """After validation, roll the EMA model out open-loop from real contexts and log videos.

    Each logged video shows, per row, a real validation clip (left) and the model's rollout
    (right) from the same first `context_frames` frames under the same actions. Also logs
    `val/rollout_psnr` (dB, generated vs real future frames). Runs on every process with the
    same inputs (so sharded models work) and writes from process 0; needs the datamodule
    to be a `training.data.EpisodeDataModule`.

    Args:
        num_videos: Validation clips rolled out (rows of the video).
        context_frames: Real frames the model starts from.
        rollout_frames: Frames generated after the context.
        sampler_steps: Denoising steps per frame (None: the run's `model.sampler` setting).
        every_n_validations: Log at every n-th validation run.
        fps: Playback rate (None: the store's frame rate).
        seed: Seed of the sampler's generator (the same noise at every validation).
    """

    def __init__(
        self,
        num_videos: int = 4,
        context_frames: int = 4,
        rollout_frames: int = 12,
        sampler_steps: int | None = None,
        every_n_validations: int = 1,
        fps: float | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.num_videos = num_videos
        self.context_frames = context_frames
        self.rollout_frames = rollout_frames
        self.sampler_steps = sampler_steps
        self.every_n_validations = every_n_validations
        self.fps = fps
        self.seed = seed
        self._clips: dict[str, Any] | None = None
        self._validations = 0

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or getattr(pl_module, "ema", None) is None:
            return
        self._validations += 1
        if (self._validations - 1) % self.every_n_validations:
            return
        from worldsim.world_model import WorldModel

        dm = trainer.datamodule
        K, N = self.context_frames, self.rollout_frames
        if self._clips is None:
            self._clips = dm.contexts(self.num_videos, K + N, split="val")
        frames = self._clips["frames"].to(pl_module.device)  # uint8 [B, K+N, H, W, 3]
        actions = self._clips["actions"]
        actions = (
            {k: v.to(pl_module.device) for k, v in actions.items()}
            if isinstance(actions, dict)
            else actions.to(pl_module.device)
        )
        world_model = WorldModel.from_net(
            pl_module.ema.module, dm.observation_space, dm.action_space,
            sampler=pl_module.sampler_config,
        )  # fmt: skip
        generator = torch.Generator(pl_module.device).manual_seed(self.seed)
        out = world_model.generate(
            frames[:, :K],
            tree_index(actions, (slice(None), slice(0, K - 1))),
            tree_index(actions, (slice(None), slice(K - 1, K + N - 1))),
            steps=self.sampler_steps,
            generator=generator,
        )
        fake = torch.as_tensor(out["frames"])  # uint8 [B, N, H, W, 3]
        frames = frames.cpu()
        real = frames[:, K:]
        mse = ((fake.float() - real.float()) / 255).pow(2).mean(dim=(1, 2, 3, 4)).clamp_min(1e-10)
        pl_module.log("val/rollout_psnr", (-10 * torch.log10(mse)).mean(), sync_dist=False)
        logger = trainer.logger
        if trainer.is_global_zero and isinstance(logger, TensorBoardLogger):
            video = side_by_side(frames, torch.cat([frames[:, :K], fake], dim=1))
            fps = self.fps or float(dm.store.fps)
            log_video(logger, "rollouts/real_vs_generated", video, trainer.global_step, fps)


class StepProgressBar(RichProgressBar):
    """Rich progress bar that counts optimiser steps towards `max_steps` across epochs and resumes.

    Lightning's bar counts batches of the current epoch and shows "Epoch 0/-2" when only
    `max_steps` bounds the run, and "160/39" after a resume; runs here are step-bounded.
    """

    @property
    def total_train_batches(self) -> int | float:
        steps = self.trainer.max_steps
        return steps if steps and steps > 0 else super().total_train_batches

    def _get_train_description(self, current_epoch: int) -> str:
        epochs = self.trainer.max_epochs
        text = f"Epoch {current_epoch}" + (f"/{epochs - 1}" if epochs and epochs > 0 else "")
        if self.trainer.max_steps and self.trainer.max_steps > 0:
            text = f"Steps ({text})"
        return f"{text:{len(self.validation_description)}}"

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if trainer.max_steps and trainer.max_steps > 0 and not self.is_disabled:
            if self.train_progress_bar_id is None:
                self._initialize_train_progress_bar_id()
            self._update(self.train_progress_bar_id, trainer.global_step)
            self._update_metrics(trainer, pl_module)
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
