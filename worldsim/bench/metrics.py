"""Frame and event metrics for the fidelity benchmark: PSNR, SSIM, moving-step masks, Fréchet distance, P/R/F1."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torchmetrics.functional.classification import binary_stat_scores
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

__all__ = [
    "PSNR_CAP_DB",
    "SUMMARY_STEPS",
    "feature_stats",
    "frechet_distance",
    "moving_mask",
    "precision_recall_f1",
    "psnr",
    "ssim",
    "step_curve",
    "summary_steps",
]

# Identical frames have infinite PSNR. Per-frame values are clipped here before averaging, so a
# baseline that copies a static frame does not make every mean infinite (an MSE of 255²·1e-6).
PSNR_CAP_DB = 60.0
# Horizon steps every curve is summarised at (those within the horizon, plus the last step).
SUMMARY_STEPS = (1, 4, 16, 64)


def _as_float_images(frames: np.ndarray | Tensor) -> Tensor:
    """uint8 [..., H, W, 3] -> float32 [M, 3, H, W] in 0..255, leading dims flattened."""
    x = (
        frames
        if isinstance(frames, Tensor)
        else torch.from_numpy(np.require(frames, requirements="CW"))
    )
    if x.dim() < 3 or x.shape[-1] != 3:
        raise ValueError(f"frames must be [..., H, W, 3], got shape {tuple(x.shape)}")
    return x.reshape(-1, *x.shape[-3:]).permute(0, 3, 1, 2).float()


def psnr(
    preds: np.ndarray | Tensor, target: np.ndarray | Tensor, *, cap_db: float | None = None
) -> np.ndarray:
    """Per-frame PSNR in dB (data range 255) of uint8 frames [..., H, W, 3].

    Args:
        preds: generated frames.
        target: real frames of the same shape.
        cap_db: clip values above this (identical frames give +inf without a cap).

    Returns:
        float64 [...] (the leading dims of the inputs).
    """
    if tuple(np.shape(preds)) != tuple(np.shape(target)):
        raise ValueError(f"shapes differ: {np.shape(preds)} vs {np.shape(target)}")
    lead = tuple(np.shape(target))[:-3]
    p, t = _as_float_images(preds), _as_float_images(target)
    values = peak_signal_noise_ratio(p, t, data_range=255.0, reduction="none", dim=(1, 2, 3))
    out = values.double().numpy().reshape(lead)
    return np.minimum(out, cap_db) if cap_db is not None else out


def ssim(preds: np.ndarray | Tensor, target: np.ndarray | Tensor) -> np.ndarray:
    """Per-frame SSIM (Gaussian window 11, sigma 1.5, torchmetrics) of uint8 frames [..., H, W, 3].

    Returns:
        float64 [...] in [-1, 1]; 1 for identical frames.
    """
    if tuple(np.shape(preds)) != tuple(np.shape(target)):
        raise ValueError(f"shapes differ: {np.shape(preds)} vs {np.shape(target)}")
    lead = tuple(np.shape(target))[:-3]
    p, t = _as_float_images(preds) / 255.0, _as_float_images(target) / 255.0
    values = structural_similarity_index_measure(p, t, data_range=1.0, reduction="none")
    return values.double().numpy().reshape(lead)


def moving_mask(
    frames: np.ndarray, *, threshold: float = 8.0, min_fraction: float = 0.01
) -> np.ndarray:
    """Which steps of real clips change the view: frame t differs from frame t-1.

    A step counts as moving when more than `min_fraction` of its pixels changed by more than
    `threshold` (0..255, largest channel difference) from the previous frame. The tolerance
    ignores codec noise in recorded video; in Crafter a move scrolls the whole view.

    Args:
        frames: uint8 [..., T, H, W, 3].

    Returns:
        bool [..., T-1]: entry t-1 says whether frame t changed from frame t-1.
    """
    x = np.asarray(frames)
    diff = np.abs(x[..., 1:, :, :, :].astype(np.int16) - x[..., :-1, :, :, :].astype(np.int16))
    changed = diff.max(axis=-1) > threshold  # [..., T-1, H, W]
    return changed.mean(axis=(-2, -1)) > min_fraction


def step_curve(values: np.ndarray, mask: np.ndarray | None = None) -> dict[str, list]:
    """Mean, standard error and count per horizon step of per-frame values.

    Args:
        values: [..., H] per-frame metric values (leading dims: samples, clips).
        mask: bool, broadcastable to `values`: only these entries count (None: all).

    Returns:
        {"mean": [H], "sem": [H], "count": [H]}; mean/sem are None where nothing counts.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v.reshape(-1, v.shape[-1])
    m = np.ones_like(v, dtype=bool) if mask is None else np.broadcast_to(mask, values.shape)
    m = np.asarray(m).reshape(-1, v.shape[-1]) & np.isfinite(v)
    mean, sem, count = [], [], []
    for h in range(v.shape[-1]):
        col = v[m[:, h], h]
        count.append(int(col.size))
        mean.append(float(col.mean()) if col.size else None)
        sem.append(float(col.std(ddof=1) / math.sqrt(col.size)) if col.size > 1 else None)
    return {"mean": mean, "sem": sem, "count": count}


def summary_steps(horizon: int, steps: Sequence[int] = SUMMARY_STEPS) -> list[int]:
    """The summary steps within `horizon`, always including the last step."""
    out = [s for s in steps if s <= horizon]
    return out if horizon in out else [*out, horizon]


def feature_stats(features: np.ndarray | Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean [F] and covariance [F, F] of features [M, F], in float64.

    The covariance divides by M (as StyleGAN-V's FVD does), not M - 1.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"features must be [M >= 2, F], got shape {x.shape}")
    mean = x.mean(axis=0)
    centered = x - mean
    return mean, centered.T @ centered / len(x)


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    d² = |mu1 - mu2|² + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^½). The trace of the matrix
    square root is computed as tr((S1^½ S2 S1^½)^½), whose argument is symmetric positive
    semi-definite, so two symmetric eigendecompositions suffice (no scipy, no complex parts).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1 = torch.as_tensor(np.asarray(sigma1, np.float64))
    s2 = torch.as_tensor(np.asarray(sigma2, np.float64))
    s1, s2 = (s1 + s1.T) / 2, (s2 + s2.T) / 2
    evals, evecs = torch.linalg.eigh(s1)
    root1 = evecs @ torch.diag(evals.clamp(min=0).sqrt()) @ evecs.T  # S1^½
    inner = root1 @ s2 @ root1
    inner_evals = torch.linalg.eigvalsh((inner + inner.T) / 2)
    # Rank-deficient covariances (fewer clips than features) leave round-off eigenvalues
    # around 0 whose square roots would add up to visible error: treat those as 0.
    tol = float(inner_evals.abs().max()) * len(inner_evals) * torch.finfo(torch.float64).eps
    trace_sqrt = float(torch.where(inner_evals > tol, inner_evals, 0.0).sqrt().sum())
    mean_term = float(np.sum((mu1 - mu2) ** 2))
    return mean_term + float(torch.trace(s1) + torch.trace(s2)) - 2.0 * trace_sqrt


def precision_recall_f1(preds: np.ndarray, target: np.ndarray) -> dict[str, float | int | None]:
    """Precision, recall and F1 of boolean event predictions (torchmetrics stat scores).

    Returns:
        {"precision", "recall", "f1" (None where undefined: no predicted / no real events),
        "support" (real events), "predicted" (predicted events), "n"}.
    """
    p = torch.as_tensor(np.array(preds, dtype=bool).reshape(-1))  # a copy: inputs may be views
    t = torch.as_tensor(np.array(target, dtype=bool).reshape(-1))
    if p.numel() == 0:
        return {"precision": None, "recall": None, "f1": None, "support": 0, "predicted": 0, "n": 0}
    tp, fp, _tn, fn, support = (int(v) for v in binary_stat_scores(p.long(), t.long()))
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    if tp + fp + fn == 0:
        f1 = None
    else:
        f1 = 2 * tp / (2 * tp + fp + fn)
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "support": support,
        "predicted": tp + fp,
        "n": int(p.numel()),
    }
