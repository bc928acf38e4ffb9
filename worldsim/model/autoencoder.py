"""FrameAutoencoder: a small conv autoencoder so large frames are diffused in a compact latent."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from worldsim.model.config import AutoencoderConfig

__all__ = ["FrameAutoencoder"]


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels)


class ResBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _norm(channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
            _norm(channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class FrameAutoencoder(nn.Module):
    """Conv encoder/decoder between uint8 frames [B, H, W, 3] and latents [B, c, H/f, W/f].

    Latents are tanh-bounded to [-1, 1], the range of pixels, so the diffusion settings
    (sigma_data) carry over unchanged and no data-dependent scale constant is needed.
    Trained on its own (`loss`), then frozen inside the world model.

    Args:
        config: widths per level, latent channels, residual blocks per level.
    """

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        self.config = config
        ch = list(config.channels)
        enc: list[nn.Module] = [nn.Conv2d(3, ch[0], 3, padding=1)]
        for i, c in enumerate(ch):
            enc += [ResBlock(c) for _ in range(config.blocks_per_level)]
            if i + 1 < len(ch):
                enc.append(nn.Conv2d(c, ch[i + 1], 4, stride=2, padding=1))
        enc += [_norm(ch[-1]), nn.SiLU(), nn.Conv2d(ch[-1], config.latent_channels, 3, padding=1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(config.latent_channels, ch[-1], 3, padding=1)]
        for i, c in reversed(list(enumerate(ch))):
            dec += [ResBlock(c) for _ in range(config.blocks_per_level)]
            if i > 0:
                dec += [
                    nn.Upsample(scale_factor=2, mode="nearest"),
                    nn.Conv2d(c, ch[i - 1], 3, padding=1),
                ]
        dec += [_norm(ch[0]), nn.SiLU(), nn.Conv2d(ch[0], 3, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)

    @property
    def factor(self) -> int:
        return self.config.factor

    @staticmethod
    def to_float(frames: Tensor) -> Tensor:
        """uint8 [B, H, W, 3] -> float [B, 3, H, W] in [-1, 1]."""
        return frames.permute(0, 3, 1, 2).float() / 127.5 - 1

    @staticmethod
    def to_uint8(images: Tensor) -> Tensor:
        """float [B, 3, H, W] in [-1, 1] -> uint8 [B, H, W, 3]."""
        return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)

    def encode(self, frames: Tensor) -> Tensor:
        """uint8 frames [B, H, W, 3] (H, W divisible by the factor) -> latents [B, c, h, w]."""
        f = self.factor
        if frames.dim() != 4 or frames.shape[-1] != 3 or frames.shape[1] % f or frames.shape[2] % f:
            raise ValueError(
                f"frames {tuple(frames.shape)} must be [B, H, W, 3] with H, W divisible by {f}"
            )
        return torch.tanh(self.encoder(self.to_float(frames)))

    def decode(self, latents: Tensor) -> Tensor:
        """latents [B, c, h, w] -> float frames [B, 3, h*f, w*f], about [-1, 1]."""
        return self.decoder(latents)

    def decode_uint8(self, latents: Tensor) -> Tensor:
        """latents [B, c, h, w] -> uint8 frames [B, H, W, 3]."""
        return self.to_uint8(self.decode(latents))

    def loss(self, frames: Tensor) -> dict[str, Tensor]:
        """Reconstruction loss on uint8 frames [B, H, W, 3]: MSE + L1, with PSNR for logging."""
        target = self.to_float(frames)
        recon = self.decode(self.encode(frames))
        mse = F.mse_loss(recon, target)
        l1 = F.l1_loss(recon, target)
        psnr = 10 * torch.log10(4 / mse.detach().clamp(min=1e-10))  # range 2 -> peak^2 = 4
        return {"loss": mse + l1, "mse": mse, "l1": l1, "psnr": psnr}
