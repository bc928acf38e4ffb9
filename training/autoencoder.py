"""The frame autoencoder's own Lightning run, and loading its checkpoint for the world model."""

from __future__ import annotations

from typing import Any

import lightning as L
from torch import Tensor

from training import optim
from worldsim.errors import CheckpointError


class AutoencoderSystem(L.LightningModule):
    """Trains a `worldsim.model.FrameAutoencoder` to reconstruct single frames.

    Use with the episode data module at `clip_length: 1` (training/configs/autoencoder.yaml);
    the world model then loads the result with `--model.autoencoder PATH.ckpt` and keeps it
    frozen. Logs `{stage}/loss` and every other term the autoencoder's loss returns
    (mse, l1, psnr).

    Args:
        channels: Conv widths per level; the latent is 2 ** (len(channels) - 1) times smaller per side.
        latent_channels: Channels of the latent the world model diffuses.
        blocks_per_level: Residual blocks at each level.
        lr: Peak AdamW learning rate (after warmup).
        weight_decay: AdamW weight decay on weight matrices.
        betas: AdamW betas.
        warmup_steps: Optimizer steps of linear learning-rate warmup.
        total_steps: Length of the cosine decay (None: the whole run, from the trainer).
        min_lr_ratio: Final learning rate as a fraction of `lr`.
    """

    def __init__(
        self,
        channels: tuple[int, ...] = (32, 64, 128),
        latent_channels: int = 4,
        blocks_per_level: int = 1,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.99),
        warmup_steps: int = 200,
        total_steps: int | None = None,
        min_lr_ratio: float = 0.1,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        from worldsim.model import AutoencoderConfig, FrameAutoencoder

        self.config = AutoencoderConfig(
            channels=tuple(channels),
            latent_channels=latent_channels,
            blocks_per_level=blocks_per_level,
        )
        self.autoencoder = FrameAutoencoder(self.config)

    def _common_step(self, batch: dict[str, Any], stage: str) -> Tensor:
        frames = batch["frames"].flatten(0, 1)  # uint8 [B*T, H, W, 3]
        out = self.autoencoder.loss(frames)
        train = stage == "train"
        for name, value in out.items():
            if isinstance(value, Tensor) and value.numel() == 1:
                self.log(
                    f"{stage}/{name}",
                    value.detach(),
                    prog_bar=name == "loss",
                    on_step=train,
                    on_epoch=not train,
                    batch_size=len(frames),
                    sync_dist=not train,
                )
        return out["loss"]

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        return self._common_step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        return self._common_step(batch, "val")

    def configure_optimizers(self) -> dict:
        h = self.hparams
        return optim.configure(
            self,
            [self.autoencoder],
            h.lr,
            h.weight_decay,
            tuple(h.betas),
            h.warmup_steps,
            h.total_steps,
            h.min_lr_ratio,
        )


def load_autoencoder(path: str) -> Any:
    """The trained FrameAutoencoder in an AutoencoderSystem .ckpt, frozen and in eval mode."""
    try:
        system = AutoencoderSystem.load_from_checkpoint(path, map_location="cpu")
    except FileNotFoundError:
        raise CheckpointError(
            f"no autoencoder checkpoint at {path}: train one with "
            "`worldsim fit --config training/configs/autoencoder.yaml` and pass its .ckpt"
        ) from None
    except (KeyError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"{path} is not an AutoencoderSystem checkpoint ({e})") from None
    autoencoder = system.autoencoder.eval().requires_grad_(False)
    return autoencoder
