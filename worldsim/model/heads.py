"""Reward and termination heads on per-frame features of the world model."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["RewardTerminationHead"]


class RewardTerminationHead(nn.Module):
    """Predicts the reward and episode end of the transition into each frame.

    Rewards are split into sign (3-way classification: negative, zero, positive; robust to
    rare, sparse rewards, as in DIAMOND) and magnitude (regressed per sign), so Crafter's
    -0.1 health losses and +1 achievements both come out at the right size. Termination is a
    binary logit.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, 6))
        # Start from the priors of sparse events: reward zero, episode going on.
        last = self.mlp[-1]
        nn.init.normal_(last.weight, std=0.01)
        with torch.no_grad():
            last.bias.copy_(torch.tensor([0.0, 3.0, 0.0, 0.0, 0.0, -4.0]))

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """features [B, T, D] -> sign logits [B, T, 3], magnitudes [B, T, 2], end logit [B, T]."""
        out = self.mlp(self.norm(features))
        return out[..., :3], F.softplus(out[..., 3:5]), out[..., 5]

    def predict(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """features [B, T, D] -> (reward [B, T], termination probability [B, T])."""
        sign_logits, magnitude, end_logit = self(features)
        sign = sign_logits.argmax(-1)  # 0: negative, 1: zero, 2: positive
        reward = torch.where(sign == 0, -magnitude[..., 0], magnitude[..., 1])
        reward = torch.where(sign == 1, torch.zeros_like(reward), reward)
        return reward, torch.sigmoid(end_logit)

    def loss(
        self, features: Tensor, rewards: Tensor, terminated: Tensor, mask: Tensor
    ) -> dict[str, Tensor]:
        """Losses and accuracies over the masked-in transitions.

        Args:
            features: [B, T, D]; rewards [B, T]; terminated [B, T] bool; mask [B, T] bool.
        """
        sign_logits, magnitude, end_logit = self(features)
        m = mask.float()
        n = m.sum().clamp(min=1)
        sign = (rewards.sign() + 1).long()  # [B, T] in {0, 1, 2}
        ce = F.cross_entropy(sign_logits.flatten(0, 1), sign.flatten(), reduction="none").view_as(m)
        mag = torch.where(sign == 0, magnitude[..., 0], magnitude[..., 1])
        mag_err = (mag - rewards.abs()).pow(2) * (sign != 1).float()
        end = terminated.float()
        bce = F.binary_cross_entropy_with_logits(end_logit, end, reduction="none")
        with torch.no_grad():
            reward_acc = ((sign_logits.argmax(-1) == sign).float() * m).sum() / n
            termination_acc = (((end_logit > 0).float() == end).float() * m).sum() / n
        return {
            "reward": ((ce + mag_err) * m).sum() / n,
            "termination": (bce * m).sum() / n,
            "reward_acc": reward_acc,
            "termination_acc": termination_acc,
        }
