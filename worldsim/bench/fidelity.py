"""The fidelity protocol: open-loop dreams from real context, scored against the real continuation.

For every clip of K + H real frames: condition on the first K frames and the actions between
them, feed the H logged actions, generate H frames (S samples, different seeds), and score each
against the real frame at the same step. The same clips give the baselines (copy the last
context frame; the model's own teacher-forced next frame, with real context at every step), a
rollout with random actions (Genie's Δ PSNR), the IDM's reading and reward / ends. On arrays:

    >>> from worldsim.bench import evaluate_rollouts
    >>> result = evaluate_rollouts(wm, frames, actions, context=4, horizon=16, samples=2)
    >>> result.summary["psnr"]["model"]["moving"]     # {"1": dB, "4": dB, "16": dB, "mean": dB}
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from worldsim.bench import rollouts, scoring, semantic_eval
from worldsim.bench.data import merge_leading
from worldsim.bench.idm import action_targets, score_targets
from worldsim.bench.metrics import (
    PSNR_CAP_DB,
    feature_stats,
    frechet_distance,
    moving_mask,
    psnr,
    summary_steps,
)
from worldsim.bench.rollouts import rollout_seed
from worldsim.bench.semantic_verdict import semantic_verdict
from worldsim.errors import WorldsimError
from worldsim.model.tiles import events_had
from worldsim.spaces import tree_index

__all__ = ["FidelityResult", "evaluate_rollouts"]

FVD_FRAMES = 16  # StyleGAN-V's fvd2048_16f clips


@dataclass
class FidelityResult:
    """Everything `evaluate_rollouts` measured; `to_dict()` is report.json's core (no arrays)."""

    settings: dict[str, Any]
    curves: dict[str, Any]  # metric -> variant -> subset -> {"mean", "sem", "count"} per step
    summary: dict[str, Any]  # metric -> variant -> subset -> {"1": .., "4": .., "mean": ..}
    verdict: dict[str, Any]
    controllability: dict[str, Any]
    events: dict[str, Any]
    fvd: dict[str, Any]
    speed: dict[str, Any]
    skipped: dict[str, str] = field(default_factory=dict)
    loops: dict[str, Any] | None = None
    semantic: dict[str, Any] = field(default_factory=dict)  # tiles, scroll, long horizon
    gallery: list[dict[str, np.ndarray]] = field(default_factory=list)
    long_gallery: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("gallery")
        out.pop("long_gallery")
        return out


def _fvd_window(context: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """The FVD_FRAMES frames ending at min(H, 16) steps into the rollout: [B, 16, H, W, 3]."""
    K, H = context.shape[1], frames.shape[1]
    seq = np.concatenate([context, frames], axis=1)
    end = K + min(H, FVD_FRAMES)
    return seq[:, end - FVD_FRAMES : end]


def _events_had(
    world_model: Any, labels: dict[str, np.ndarray] | None, label_spec: dict[str, Any] | None
) -> np.ndarray | None:
    """bool [N, T, E]: which of the model's named events each clip's episode had had by each
    frame (its `events` counters above 0), matched by name (an event the clips do not count:
    never), when the clips carry them."""
    names = list(getattr(getattr(getattr(world_model, "net", None), "config", None), "events", []))
    spec = (label_spec or {}).get("events") or {}
    if not names or labels is None or "events" not in labels or "names" not in spec:
        return None
    return events_had(labels["events"], spec["names"], names)


def evaluate_rollouts(
    world_model: Any,
    frames: np.ndarray,
    actions: Any,
    *,
    rewards: np.ndarray | None = None,
    terminated: np.ndarray | None = None,
    context: int = 4,
    horizon: int = 16,
    samples: int = 1,
    steps: int | None = None,
    guidance: float | None = None,
    seed: int = 0,
    batch_size: int = 16,
    idm: Any | None = None,
    lpips: Any | None = None,
    fvd: Any | None = None,
    teacher_forced: bool = True,
    random_actions: bool = True,
    gallery: int = 8,
    moving_threshold: float = 8.0,
    moving_fraction: float = 0.01,
    reward_threshold: float = 0.05,
    labels: dict[str, np.ndarray] | None = None,
    label_spec: dict[str, Any] | None = None,
    tiles: Any | None = None,
    long_horizon: int = 0,
    long_horizon_clips: int = 8,
    log: Callable[[str], None] | None = None,
) -> FidelityResult:
    """Score open-loop rollouts of `world_model` against real clips.

    Args:
        world_model: a `WorldModel` (or anything with the same `generate` and `action_space`).
        frames: real clips, uint8 [N, T, H, W, 3] with T >= context + horizon.
        actions: [N, T-1, ...] (a dict of such for Dict spaces): actions[:, t] leads from frame t.
        rewards, terminated: [N, T-1] real rewards / episode ends (optional: event metrics).
        context: K real frames conditioned on; horizon: H frames generated open loop.
        samples: S rollouts per clip, each with its own seed.
        steps, guidance: sampler steps and guidance scale (None: the model's defaults).
        seed: seeds every rollout (sample s, batch b: SeedSequence([seed, s, b])).
        batch_size: clips per `generate` call.
        idm: an `InverseDynamics` to read actions back from generated transitions.
        lpips: an `LPIPS` module; fvd: an `I3DFeatures` (both optional, see perceptual.py).
        teacher_forced / random_actions: also run these (they cost one more model pass each).
        gallery: clips of sample 0 kept for the side-by-side videos.
        moving_threshold / moving_fraction: what counts as a moving step (`moving_mask`).
        reward_threshold: |reward| above this is a reward event.
        labels: real per-frame labels of the clips: {"semantic": [N, T, R, C] tile classes,
            "view_pos": [N, T, 2]} (Crafter records them); with `tiles`, the semantic metrics.
        label_spec: how they map onto frames (a store's `label_spec`: moves, anchor).
        tiles: a TileModel (`worldsim bench train-tiles`): reads generated frames as tiles,
            and says which tiles look real (also for games without labels).
        long_horizon: roll this many steps under noop and random play from the first
            `long_horizon_clips` contexts and check the tiles still look real (0: skip).
        log: progress messages (e.g. `print`).

    Returns:
        A FidelityResult; per-step curves cover steps 1..H (index h-1 is step h).
    """
    say = log or (lambda _msg: None)
    frames = np.asarray(frames)
    K, H, S = int(context), int(horizon), int(samples)
    if frames.dtype != np.uint8 or frames.ndim != 5 or frames.shape[-1] != 3:
        raise WorldsimError(
            f"frames must be uint8 [N, T, H, W, 3], got {frames.dtype} {frames.shape}"
        )
    N, T = frames.shape[:2]
    if K < 1 or H < 1 or S < 1 or T < K + H:
        raise WorldsimError(
            f"clips of {T} frames cannot hold context {K} + horizon {H} (both >= 1)"
        )
    L = K + H
    real, last = frames[:, K:L], frames[:, K - 1]  # [N, H, ...], [N, ...]
    moving = moving_mask(
        frames[:, K - 1 : L], threshold=moving_threshold, min_fraction=moving_fraction
    )
    ctx_actions = tree_index(actions, (slice(None), slice(0, K - 1)))
    future = tree_index(actions, (slice(None), slice(K - 1, L - 1)))
    scorer = scoring.FrameScorer(lpips)
    names = ["psnr", "ssim"] + (["lpips"] if lpips is not None else [])
    values = {n: np.zeros((S, N, H)) for n in names}
    pred_r, pred_t = np.zeros((S, N, H), np.float32), np.zeros((S, N, H), bool)
    idm_gen = np.zeros((S, N, H, len(idm.heads))) if idm is not None else None
    feats: dict[str, list[np.ndarray]] = {
        "model": [],
        "real": [],
        "copy_last": [],
        "teacher_forced": [],
    }
    use_fvd = fvd is not None and K + min(H, FVD_FRAMES) >= FVD_FRAMES and N >= 2
    kept: list[np.ndarray] = []
    gen_seconds = 0.0
    sem = semantic_eval.semantic_setup(labels, label_spec, tiles, frames.shape[:2])
    classify = sem["skipped"] is None and "semantic" in sem["applies"]
    if classify:
        R, C = tiles.grid.grid
        pred_labels = np.zeros((S, N, H, R, C), np.uint8)
    realism = np.zeros((S, N, H)) if tiles is not None else None

    had = _events_had(world_model, labels, label_spec)  # [N, T, E] or None

    def rollout(acts: Any, s: int, b0: int, h: int) -> dict[str, np.ndarray]:
        nonlocal gen_seconds
        sl = slice(b0, b0 + batch_size)
        g = torch.Generator().manual_seed(rollout_seed(seed, s, b0))
        t0 = time.perf_counter()
        out = world_model.generate(
            frames[sl, :K],
            tree_index(ctx_actions, sl),
            tree_index(acts, (sl, slice(0, h))),
            steps=steps,
            guidance=guidance,
            generator=g,
            **({} if had is None else {"paid": had[sl, K - 1]}),
        )
        gen_seconds += time.perf_counter() - t0
        return out

    for s in range(S):
        for b0 in range(0, N, batch_size):
            sl = slice(b0, b0 + batch_size)
            out = rollout(future, s, b0, H)
            gen = out["frames"]  # [b, H, h, w, 3]
            for n, v in scorer(gen, real[sl]).items():
                values[n][s, sl] = v
            pred_r[s, sl], pred_t[s, sl] = out["rewards"], out["terminated"]
            if classify:
                pred_labels[s, sl] = tiles.classify(gen)
            if realism is not None:
                realism[s, sl] = tiles.looks_real(gen).mean((-2, -1))
            if idm is not None:
                prev = np.concatenate([last[sl, None], gen[:, :-1]], axis=1)
                p = idm.predict_targets(
                    prev.reshape(-1, *prev.shape[2:]), gen.reshape(-1, *gen.shape[2:])
                )
                idm_gen[s, sl] = p.reshape(len(gen), H, -1)
            if use_fvd:
                feats["model"].append(fvd(_fvd_window(frames[sl, :K], gen)))
            if s == 0 and b0 < gallery:
                kept.append(gen[: gallery - b0])
        say(f"open loop: sample {s + 1}/{S} done, {gen_seconds:.1f}s generating")
    speed = {
        "open_loop_frames_per_s": S * N * H / max(gen_seconds, 1e-9),
        "open_loop_seconds": gen_seconds,
        "batch_size": batch_size,
    }

    steps_at = summary_steps(H)
    variants = {n: {"model": values[n]} for n in names}
    copy_frames = np.broadcast_to(last[:, None], real.shape)
    for n, v in scorer(copy_frames, real).items():
        variants[n]["copy_last"] = v[None]
    events = {}
    real_r = None if rewards is None else np.asarray(rewards)[:, K - 1 : L - 1]
    real_t = None if terminated is None else np.asarray(terminated, bool)[:, K - 1 : L - 1]
    if real_r is not None and real_t is not None:
        events["open_loop"] = scoring.events(
            pred_r, pred_t, real_r[None], real_t[None], reward_threshold
        )
    if use_fvd:
        feats["real"] = [fvd(_fvd_window(frames[:, :K], real))]
        feats["copy_last"] = [fvd(_fvd_window(frames[:, :K], copy_frames))]

    tf_frames = None
    if teacher_forced:
        clip_idx, step_idx = np.divmod(np.arange(N * H), H)  # pair p: clip n, step h
        tf_frames, tf_r, tf_t, tf_seconds = rollouts.teacher_forced(
            world_model, frames, actions, K, clip_idx, step_idx, steps=steps,
            guidance=guidance, seed=seed, batch_size=batch_size,
            paid=None if had is None else had[clip_idx, step_idx + K - 1],
        )  # fmt: skip
        tf_frames = tf_frames.reshape(N, H, *frames.shape[2:])
        tf_r, tf_t = tf_r.reshape(N, H), tf_t.reshape(N, H)
        speed["teacher_forced_frames_per_s"] = N * H / max(tf_seconds, 1e-9)
        for n, v in scorer(tf_frames, real).items():
            variants[n]["teacher_forced"] = v[None]
        if real_r is not None and real_t is not None:
            events["teacher_forced"] = scoring.events(tf_r, tf_t, real_r, real_t, reward_threshold)
        if use_fvd:
            feats["teacher_forced"] = [fvd(_fvd_window(frames[:, :K], tf_frames))]
        say(f"teacher-forced: {N * H} next frames in {tf_seconds:.1f}s")

    controllability: dict[str, Any] = {}
    if random_actions:
        Hr = min(H, 16)
        rand = rollouts.random_actions(world_model.action_space, N, Hr, rollout_seed(seed, 99))
        rand_psnr = np.full((N, H), np.nan)  # steps past Hr: not run
        rand_idm = []  # IDM readings of the random-action transitions, per batch
        for b0 in range(0, N, batch_size):
            sl = slice(b0, b0 + batch_size)
            gen = rollout(rand, 0, b0, Hr)["frames"]  # [b, Hr, H, W, 3]
            rand_psnr[sl, :Hr] = psnr(gen, real[sl, :Hr], cap_db=PSNR_CAP_DB)
            if idm is not None:
                prev = np.concatenate([last[sl, None], gen[:, :-1]], axis=1)
                rand_idm.append(
                    idm.predict_targets(
                        prev.reshape(-1, *gen.shape[2:]), gen.reshape(-1, *gen.shape[2:])
                    )
                )
        variants["psnr"]["random_actions"] = rand_psnr[None]
        # Same clips, same noise: only the actions differ.
        delta = values["psnr"][0, :, :Hr] - rand_psnr[:, :Hr]
        dc = scoring.curves(delta, moving[:, :Hr])
        controllability["delta_psnr"] = {
            "curve": dc,
            "at": {str(t): dc["all"]["mean"][t - 1] for t in (1, 4, 16) if t <= Hr},
            "moving_at": {str(t): dc["moving"]["mean"][t - 1] for t in (1, 4, 16) if t <= Hr},
        }
        if idm is not None:
            target = action_targets(idm.action_space, merge_leading(rand))
            controllability["idm_random_actions"] = score_targets(
                idm.heads, np.concatenate(rand_idm), target
            )

    if idm is not None:
        controllability["idm"] = scoring.idm_scores(
            idm, frames, actions, future, idm_gen, tf_frames, K, H, moving
        )

    semantic: dict[str, Any] = {"applies": sem["applies"], "names": sem["names"]}
    long_gallery: dict[str, dict[str, np.ndarray]] = {}
    if tiles is not None:
        semantic["tile_model"] = tiles.describe()
    if sem["skipped"]:
        semantic["skipped"] = sem["skipped"]
    if tf_frames is not None:
        previous = frames[:, K - 1 : L - 1]  # each step's previous real frame
        semantic["static_frames"] = semantic_eval.static_frames(
            variants["psnr"]["teacher_forced"][0], moving, psnr(previous, real, cap_db=PSNR_CAP_DB)
        )
    if realism is not None:
        semantic["realism_open_loop"] = scoring.curves(realism, moving)["all"]
    if classify:
        tf_labels = tiles.classify(tf_frames) if tf_frames is not None else None
        semantic["tiles"] = semantic_eval.open_loop_tiles(
            pred_labels, labels["semantic"], labels["view_pos"], K, tiles.background_ids,
            steps_at, teacher_forced=tf_labels,
        )  # fmt: skip
        if "scroll" in sem["applies"] and getattr(world_model, "takes_view_motion", False):
            semantic["tiles_view_given"] = semantic_eval.view_given_tiles(
                world_model, tiles, frames, actions, labels, K, H, steps_at, steps=steps,
                seed=seed, batch_size=batch_size,
            )  # fmt: skip
        semantic["terrain"] = semantic_eval.terrain(
            pred_labels, labels["semantic"], K, len(tiles.names)
        )
        if "scroll" in sem["applies"]:
            semantic["walk"] = semantic_eval.walk_progress(
                pred_labels,
                labels["semantic"],
                labels["view_pos"],
                K,
                sem["anchor"],
                movers=sem["movers"],
            )
            semantic["scroll"] = semantic_eval.scroll_control(
                world_model, tiles, frames, actions, labels["semantic"], labels["view_pos"],
                sem["moves"], K, H, anchor=sem["anchor"], movers=sem["movers"],
                generated_labels=tf_labels, steps=steps,
                guidance=guidance, seed=seed, batch_size=batch_size,
            )  # fmt: skip
            say(f"scroll control: {semantic['scroll']['seconds']:.1f}s")
    if long_horizon and tiles is not None:
        n = min(long_horizon_clips, N)
        semantic["long_horizon"] = semantic_eval.long_horizon(
            world_model, tiles, frames[:n], tree_index(actions, slice(0, n)), K,
            length=long_horizon, noop=semantic_eval.noop_action(world_model.action_space), steps=steps,
            guidance=guidance, seed=seed, batch_size=batch_size, keep=min(gallery, n),
        )  # fmt: skip
        say(f"long horizon: {long_horizon} steps x {n} clips under noop and random play")
        for policy, block in semantic["long_horizon"].items():
            if "frames" in block:
                long_gallery[policy] = {
                    "frames": block.pop("frames"),
                    "real": block.pop("frames_real"),
                }

    fvd_out: dict[str, Any] = {}
    if use_fvd:
        stats_real = feature_stats(np.concatenate(feats["real"]))
        for variant in ("model", "copy_last", "teacher_forced"):
            if feats[variant]:
                mu, sigma = feature_stats(np.concatenate(feats[variant]))
                fvd_out[variant] = frechet_distance(mu, sigma, *stats_real)
        fvd_out["clips"] = {"real": N, "model": N * S}
        fvd_out["frames"] = FVD_FRAMES

    curves = {n: {k: scoring.curves(v, moving) for k, v in variants[n].items()} for n in names}
    summary = {
        n: {k: scoring.summarise(v, moving, steps_at) for k, v in variants[n].items()}
        for n in names
    }
    summary["moving_share"] = float(moving.mean())
    settings = {
        "context": K,
        "horizon": H,
        "samples": S,
        "clips": N,
        "steps": steps,
        "guidance": guidance,
        "seed": seed,
        "batch_size": batch_size,
        "frame_shape": list(frames.shape[2:]),
        "summary_steps": steps_at,
        "psnr_cap_db": PSNR_CAP_DB,
        "moving_threshold": moving_threshold,
        "moving_fraction": moving_fraction,
        "reward_threshold": reward_threshold,
        "teacher_forced": teacher_forced,
        "random_actions": random_actions,
        "long_horizon": long_horizon,
        "long_horizon_clips": min(long_horizon_clips, N) if long_horizon else 0,
    }
    kept_frames = np.concatenate(kept) if kept else np.zeros((0, H, *frames.shape[2:]), np.uint8)
    shown = [
        {
            "index": i,
            "real": frames[i, :L],
            "generated": np.concatenate([frames[i, :K], kept_frames[i]]),
        }
        for i in range(len(kept_frames))
    ]
    if classify:
        for item in shown:
            item["real_labels"] = labels["semantic"][item["index"], :L]
            item["generated_labels"] = tiles.classify(item["generated"])
    semantic["verdict"] = semantic_verdict(semantic, events)
    return FidelityResult(
        settings=settings,
        curves=curves,
        summary=summary,
        verdict=scoring.verdict(summary, steps_at),
        controllability=controllability,
        events=events,
        fvd=fvd_out,
        speed=speed,
        semantic=semantic,
        gallery=shown,
        long_gallery=long_gallery,
    )
