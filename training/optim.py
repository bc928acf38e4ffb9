"""AdamW with decoupled weight decay on matrices only, and a linear-warmup + cosine schedule."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn


def adamw(
    modules: Iterable[nn.Module],
    lr: float,
    weight_decay: float,
    betas: tuple[float, float],
    fused: bool = False,
) -> torch.optim.AdamW:
    """AdamW over the trainable parameters of `modules`.

    Matrices (linear and conv weights, embeddings) decay; biases, norm gains and other
    vectors do not, as in nanoGPT: decaying a gain towards zero only fights the model.
    """
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused)


def warmup_cosine(step: int, warmup_steps: int, total_steps: float, min_lr_ratio: float) -> float:
    """Learning-rate factor at optimizer step `step` (0-based).

    Linear from 1/warmup_steps to 1 over `warmup_steps`, then a cosine down to
    `min_lr_ratio` at `total_steps` (held there after). An infinite `total_steps`
    (training without an end) keeps the factor at 1 after warmup.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if math.isinf(total_steps) or total_steps <= warmup_steps:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def configure(
    module: nn.Module,
    trainable: Iterable[nn.Module],
    lr: float,
    weight_decay: float,
    betas: tuple[float, float],
    warmup_steps: int,
    total_steps: int | None,
    min_lr_ratio: float,
) -> dict:
    """What a LightningModule's `configure_optimizers` returns: AdamW + per-step schedule.

    Args:
        module: The LightningModule (its trainer gives the run length when `total_steps` is None).
        trainable: Modules whose trainable parameters are optimised.
        total_steps: Steps of the cosine; None: the trainer's estimated stepping batches.
    """
    fused = next(module.parameters()).device.type == "cuda"
    optimizer = adamw(trainable, lr, weight_decay, betas, fused=fused)
    total = (
        float(total_steps)
        if total_steps is not None
        else float(module.trainer.estimated_stepping_batches)
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, warmup_steps, total, min_lr_ratio)
    )
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
