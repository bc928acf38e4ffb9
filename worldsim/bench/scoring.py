"""Scoring helpers of the fidelity protocol: per-frame metrics, curves, verdicts, events, IDM."""

from __future__ import annotations

from typing import Any

import numpy as np

from worldsim.bench.data import merge_leading
from worldsim.bench.metrics import (
    PSNR_CAP_DB,
    precision_recall_f1,
    psnr,
    ssim,
    step_curve,
)

__all__ = [
    "HIGHER_IS_BETTER",
    "FrameScorer",
    "curves",
    "events",
    "idm_scores",
    "summarise",
    "verdict",
]

HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "lpips": False}


class FrameScorer:
    """Per-frame metrics of generated vs real frames [..., H, W, 3] -> {name: [...]}."""

    def __init__(self, lpips: Any | None) -> None:
        self.lpips = lpips

    def __call__(self, preds: np.ndarray, target: np.ndarray) -> dict[str, np.ndarray]:
        out = {"psnr": psnr(preds, target, cap_db=PSNR_CAP_DB), "ssim": ssim(preds, target)}
        if self.lpips is not None:
            out["lpips"] = self.lpips.distance(np.ascontiguousarray(preds), target)
        return out


def curves(values: np.ndarray, moving: np.ndarray) -> dict[str, Any]:
    return {"all": step_curve(values), "moving": step_curve(values, moving)}


def summarise(values: np.ndarray, moving: np.ndarray, steps: list[int]) -> dict[str, Any]:
    out = {}
    for subset, mask in (("all", np.ones_like(moving)), ("moving", moving)):
        m = np.broadcast_to(mask, values.shape) & np.isfinite(values)
        curve = step_curve(values, mask)["mean"]
        row = {str(s): curve[s - 1] for s in steps}
        row["mean"] = float(values[m].mean()) if m.any() else None
        out[subset] = row
    return out


def verdict(summary: dict[str, Any], steps: list[int]) -> dict[str, Any]:
    """Where the model beats copy-last-frame, per metric and subset, with plain sentences."""
    beats, lines = {}, []
    for metric, higher in HIGHER_IS_BETTER.items():
        if metric not in summary or "copy_last" not in summary[metric]:
            continue
        beats[metric] = {}
        for subset in ("all", "moving"):
            model, copy_ = summary[metric]["model"][subset], summary[metric]["copy_last"][subset]
            row = {}
            for s in [*map(str, steps), "mean"]:
                if model[s] is None or copy_[s] is None:
                    row[s] = None
                else:
                    row[s] = bool(model[s] > copy_[s]) if higher else bool(model[s] < copy_[s])
            beats[metric][subset] = row
            losing = [s for s in map(str, steps) if row[s] is False]
            frames = "all frames" if subset == "all" else "frames where the real view moved"
            if losing:
                s0 = losing[0]
                lines.append(
                    f"{metric.upper()}, {frames}: the model does NOT beat copy-last-frame at step"
                    f"{'s' if len(losing) > 1 else ''} {', '.join(losing)} "
                    f"(step {s0}: model {model[s0]:.4g} vs copy-last-frame {copy_[s0]:.4g})."
                )
            elif any(v for v in row.values()):
                lines.append(
                    f"{metric.upper()}, {frames}: the model beats copy-last-frame at every summary step."
                )
    return {"beats_copy_last": beats, "text": lines}


def events(
    pred_r: np.ndarray, pred_t: np.ndarray, real_r: np.ndarray, real_t: np.ndarray, threshold: float
) -> dict[str, Any]:
    """Precision/recall of reward and end events, predicted vs real (same shapes or broadcast).

    Besides any positive / negative reward, Crafter's reward is split in its two parts: +1 for
    each achievement unlocked (`reward_unlock`: reward >= 0.5) and the change in health / 10
    (`reward_health`: a fractional part of at least `threshold`). Games with whole rewards
    have no health events.
    """
    real_r = np.broadcast_to(real_r, pred_r.shape)
    real_t = np.broadcast_to(real_t, pred_t.shape)

    def health(r: np.ndarray) -> np.ndarray:
        return np.abs(r - np.round(r)) >= threshold

    return {
        "reward_positive": precision_recall_f1(pred_r > threshold, real_r > threshold),
        "reward_negative": precision_recall_f1(pred_r < -threshold, real_r < -threshold),
        "reward_unlock": precision_recall_f1(pred_r >= 0.5, real_r >= 0.5),
        "reward_health": precision_recall_f1(health(pred_r), health(real_r)),
        "reward_mae": float(np.abs(pred_r - real_r).mean()),
        "termination": precision_recall_f1(pred_t, real_t),
    }


def idm_scores(idm, frames, actions, future, idm_gen, tf_frames, K, H, moving) -> dict[str, Any]:
    """IDM accuracy on generated, teacher-forced and real transitions of the same clips."""
    from worldsim.bench.idm import action_targets, score_targets

    N, S = len(frames), idm_gen.shape[0]
    target = action_targets(idm.action_space, merge_leading(future))  # [N*H, heads]
    f0 = frames[:, K - 1 : K - 1 + H].reshape(-1, *frames.shape[2:])
    f1 = frames[:, K : K + H].reshape(-1, *frames.shape[2:])
    real_pred = idm.predict_targets(f0, f1)
    out = {
        "real": score_targets(idm.heads, real_pred, target),
        "generated": score_targets(
            idm.heads, idm_gen.reshape(S * N * H, -1), np.tile(target, (S, 1))
        ),
    }
    cat = [j for j, h in enumerate(idm.heads) if h.kind != "box"]
    if tf_frames is not None:
        tf_pred = idm.predict_targets(f0, tf_frames.reshape(-1, *frames.shape[2:]))
        out["teacher_forced"] = score_targets(idm.heads, tf_pred, target)
    if cat:  # per-step share of transitions whose every categorical component is read right

        def correct(pred: np.ndarray) -> np.ndarray:
            return (pred[..., cat].round() == target.reshape(N, H, -1)[..., cat]).all(-1)

        out["curve"] = {
            "generated": curves(correct(idm_gen.reshape(S, N, H, -1)).astype(float), moving),
            "real": curves(correct(real_pred.reshape(N, H, -1)).astype(float), moving),
        }
    return out
