"""Rollouts the benchmark scores: teacher-forced next frames, seeds and random actions."""

from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np
import torch

from worldsim.spaces import tree_index, tree_stack

__all__ = ["random_actions", "rollout_seed", "teacher_forced"]


def rollout_seed(*parts: int) -> int:
    """One seed from several integers (independent streams for every combination)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def random_actions(space: Any, n: int, horizon: int, seed: int) -> Any:
    """Uniform random actions of `space`, [n, horizon, ...] (a dict of such for Dict spaces)."""
    space = copy.deepcopy(space)
    space.seed(seed)
    flat = tree_stack([space.sample() for _ in range(n * horizon)])
    if isinstance(flat, dict):
        return {k: v.reshape(n, horizon, *v.shape[1:]) for k, v in flat.items()}
    return flat.reshape(n, horizon, *flat.shape[1:])


def teacher_forced(
    world_model: Any,
    frames: np.ndarray,
    actions: Any,
    K: int,
    clip: np.ndarray,
    step: np.ndarray,
    *,
    next_actions: Any | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    seed: int = 0,
    batch_size: int = 16,
    paid: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """The next frame after K real frames, for chosen (clip, step) pairs.

    Pair p conditions on real frames `step[p] .. step[p] + K - 1` of clip `clip[p]` and
    predicts frame `step[p] + K` (horizon step `step[p] + 1`).

    Args:
        frames: real clips uint8 [N, T, H, W, 3]; actions [N, T-1, ...].
        clip, step: int [P] each.
        next_actions: [P, ...] actions to take instead of the logged ones (counterfactuals).
        paid: bool [P, E]: the named events each pair's episode had had before it (a tile
            model with events pays only new ones; `WorldModel.generate`'s `paid`).

    Returns:
        frames uint8 [P, H, W, 3], rewards [P], terminated [P], seconds spent generating.
    """
    P = len(clip)
    out_f = np.zeros((P, *frames.shape[2:]), np.uint8)
    out_r, out_t = np.zeros(P, np.float32), np.zeros(P, bool)
    seconds = 0.0
    for p0 in range(0, P, batch_size):
        n = np.asarray(clip[p0 : p0 + batch_size])[:, None]
        h = np.asarray(step[p0 : p0 + batch_size])[:, None]
        ctx = frames[n, h + np.arange(K)]  # [b, K, H, W, 3]
        ctx_a = tree_index(actions, (n, h + np.arange(K - 1)))
        if next_actions is None:
            fut = tree_index(actions, (n, h + K - 1))  # [b, 1, ...]
        else:
            fut = tree_index(next_actions, slice(p0, p0 + batch_size))
            fut = tree_index(fut, (slice(None), None))  # [b, 1, ...]
        g = torch.Generator().manual_seed(rollout_seed(seed, 77, p0))
        t0 = time.perf_counter()
        more = {} if paid is None else {"paid": paid[p0 : p0 + batch_size]}
        out = world_model.generate(
            ctx, ctx_a, fut, steps=steps, guidance=guidance, generator=g, **more
        )
        seconds += time.perf_counter() - t0
        out_f[p0 : p0 + batch_size] = out["frames"][:, 0]
        out_r[p0 : p0 + batch_size] = out["rewards"][:, 0]
        out_t[p0 : p0 + batch_size] = out["terminated"][:, 0]
    return out_f, out_r, out_t, seconds
