"""Semantic fidelity on tile labels: tile accuracy, object permanence, scroll classification.

Everything here works on plain arrays of tile class ids (a real game's own labels, or a tile
classifier's reading of generated frames), so it scores any model, or none:

- `tile_scores`: per-step accuracy over map tiles, object tiles, and tiles whose world
  position was in view in the context (object permanence), for the model and two baselines:
  copy-last-frame, and the oracle scroller (the last real frame's tiles moved by the true
  displacement, every object kept, new tiles unknown).
- `classify_scroll`: which one-tile shift (or none) leads from one frame's tiles to the next.

Displacements `d = (drow, dcol)` are the change of the view's world position (`view_pos`),
so tile (r, c) of the next frame shows what tile (r + drow, c + dcol) showed before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "SHIFTS",
    "SHIFT_NAMES",
    "classify_scroll",
    "in_view_mask",
    "oracle_labels",
    "pooled_curve",
    "scroll_agreement",
    "shift_index",
    "shift_labels",
    "tile_scores",
]

# The candidate view displacements, "none" first: up/down/left/right is where the view went.
SHIFTS = np.array([(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)])
SHIFT_NAMES = ("none", "up", "down", "left", "right")
UNKNOWN = -1  # a tile the shifted frame cannot know (it came into view)


def shift_labels(labels: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Move tile labels [..., R, C] by view displacements d [..., 2] (or one [2]).

    Returns:
        int16 [..., R, C]: out[r, c] = labels[r + drow, c + dcol], UNKNOWN (-1) where that is
        outside the frame.
    """
    labels = np.asarray(labels)
    R, C = labels.shape[-2:]
    lead = labels.shape[:-2]
    flat = labels.reshape(-1, R, C)
    d = np.broadcast_to(np.asarray(d, np.int64), (*lead, 2)).reshape(-1, 2)
    rows = np.arange(R)[None, :, None] + d[:, 0, None, None]  # [M, R, 1]
    cols = np.arange(C)[None, None, :] + d[:, 1, None, None]  # [M, 1, C]
    inside = (rows >= 0) & (rows < R) & (cols >= 0) & (cols < C)  # [M, R, C]
    m = np.arange(len(flat))[:, None, None]
    picked = flat[m, np.clip(rows, 0, R - 1), np.clip(cols, 0, C - 1)]
    return np.where(inside, picked, UNKNOWN).astype(np.int16).reshape(*lead, R, C)


def scroll_agreement(
    prev: np.ndarray,
    nxt: np.ndarray,
    anchor: tuple[int, int] | None = None,
    movers: Sequence[int] = (),
) -> np.ndarray:
    """Share of tiles of `nxt` that match `prev` moved by each candidate shift: [..., 5].

    Args:
        prev, nxt: tile labels [..., R, C] of consecutive frames.
        anchor: a tile that stays put whatever the view does (Crafter's player, at the
            centre): left out of every comparison, else it would favour "none".
        movers: classes that move by themselves (Crafter's cows, zombies): left out where
            either frame shows one, so a creature's step is not read as the view's.
    """
    prev = np.asarray(prev, np.int16)
    nxt = np.asarray(nxt, np.int16)
    still = ~np.isin(nxt, movers) if len(movers) else None
    out = []
    for d in SHIFTS:
        moved = shift_labels(prev, d)
        valid = moved != UNKNOWN
        if still is not None:
            valid = valid & still & ~np.isin(moved, movers)
        if anchor is not None:
            r, c = anchor
            valid = valid.copy()
            valid[..., r, c] = False  # the anchor in the next frame
            r0, c0 = r - d[0], c - d[1]  # where the previous frame's anchor lands
            if 0 <= r0 < valid.shape[-2] and 0 <= c0 < valid.shape[-1]:
                valid[..., r0, c0] = False
        same = (moved == nxt) & valid
        out.append(same.sum((-2, -1)) / np.maximum(valid.sum((-2, -1)), 1))
    return np.stack(out, -1)


def classify_scroll(
    prev: np.ndarray,
    nxt: np.ndarray,
    anchor: tuple[int, int] | None = None,
    margin: float = 1e-6,
    movers: Sequence[int] = (),
) -> np.ndarray:
    """Index into SHIFTS of the shift that best explains `nxt` from `prev`; -1 if unclear.

    A shift wins when it matches more than `margin` better than every other candidate (a
    field of plain grass matches every shift equally: unclear). `anchor` and `movers`: as in
    `scroll_agreement`.

    Returns:
        int64 [...].
    """
    a = scroll_agreement(prev, nxt, anchor, movers)
    order = np.sort(a, -1)
    best = a.argmax(-1)
    return np.where(order[..., -1] - order[..., -2] > margin, best, -1)


def shift_index(d: np.ndarray) -> np.ndarray:
    """Index into SHIFTS of displacements [..., 2]; -1 for a displacement not among them."""
    d = np.asarray(d)
    match = (d[..., None, :] == SHIFTS).all(-1)  # [..., 5]
    return np.where(match.any(-1), match.argmax(-1), -1)


def oracle_labels(last: np.ndarray, view_pos_last: np.ndarray, view_pos: np.ndarray) -> np.ndarray:
    """The oracle scroller: the last real frame's tiles moved to each later view position.

    Args:
        last: labels [N, R, C] of the last context frame.
        view_pos_last: [N, 2] its view position; view_pos: [N, H, 2] those of the later frames.

    Returns:
        int16 [N, H, R, C], UNKNOWN where the tile came into view after the context.
    """
    d = np.asarray(view_pos) - np.asarray(view_pos_last)[:, None]  # [N, H, 2]
    H = d.shape[1]
    return shift_labels(np.repeat(np.asarray(last)[:, None], H, 1), d)


def in_view_mask(
    context_pos: np.ndarray, view_pos: np.ndarray, grid: tuple[int, int]
) -> np.ndarray:
    """Which tiles of later frames show a world position that was in view in the context.

    Args:
        context_pos: [N, K, 2] view positions of the context frames.
        view_pos: [N, H, 2] those of the later frames.
        grid: (R, C) map tiles.

    Returns:
        bool [N, H, R, C].
    """
    R, C = grid
    rows = np.asarray(view_pos)[..., 0, None, None] + np.arange(R)[:, None]  # [N, H, R, 1]
    cols = np.asarray(view_pos)[..., 1, None, None] + np.arange(C)[None, :]  # [N, H, 1, C]
    seen = np.zeros((*np.shape(view_pos)[:2], R, C), bool)
    for k in range(np.shape(context_pos)[1]):
        top = np.asarray(context_pos)[:, k, 0, None, None, None]
        left = np.asarray(context_pos)[:, k, 1, None, None, None]
        seen |= (rows >= top) & (rows < top + R) & (cols >= left) & (cols < left + C)
    return seen


def pooled_curve(correct: np.ndarray, mask: np.ndarray) -> dict[str, list]:
    """Accuracy per horizon step, pooled over every tile, clip and sample that counts.

    Args:
        correct: bool [..., H, R, C] (leading: samples, clips); mask: broadcastable to it.

    Returns:
        {"mean": [H] (None where no tile counts), "count": [H] tiles}.
    """
    m = np.broadcast_to(mask, correct.shape)
    axes = tuple(i for i in range(correct.ndim) if i != correct.ndim - 3)
    hits = (correct & m).sum(axes)
    count = m.sum(axes)
    return {
        "mean": [float(h / n) if n else None for h, n in zip(hits, count)],
        "count": [int(n) for n in count],
    }


def tile_scores(
    pred: np.ndarray,
    real: np.ndarray,
    context_labels: np.ndarray,
    context_pos: np.ndarray,
    view_pos: np.ndarray,
    background: list[int],
) -> dict[str, dict[str, dict[str, list]]]:
    """Per-step tile accuracy of generated tiles and of the two baselines.

    Args:
        pred: generated tile labels [S, N, H, R, C] (S samples).
        real: real labels [N, H, R, C] of the same steps.
        context_labels: [N, K, R, C] real labels of the context frames.
        context_pos, view_pos: [N, K, 2], [N, H, 2] real view positions.
        background: class ids that are not objects.

    Returns:
        {subset: {variant: pooled_curve}} for subsets "map" (all map tiles), "objects" (real
        tile is an object), "seen" (its world position was in view in the context) and
        "seen_objects"; variants "model", "copy_last", "oracle".
    """
    real = np.asarray(real, np.int16)
    last = np.asarray(context_labels)[:, -1]
    variants = {
        "model": np.asarray(pred, np.int16),
        "copy_last": np.repeat(last[:, None], real.shape[1], 1)[None].astype(np.int16),
        "oracle": oracle_labels(last, np.asarray(context_pos)[:, -1], view_pos)[None],
    }
    objects = ~np.isin(real, background)
    seen = in_view_mask(context_pos, view_pos, real.shape[-2:])
    masks = {
        "map": np.ones_like(objects),
        "objects": objects,
        "seen": seen,
        "seen_objects": seen & objects,
    }
    return {
        subset: {name: pooled_curve(v == real[None], mask) for name, v in variants.items()}
        for subset, mask in masks.items()
    }


def summarise_curve(curve: dict[str, list], steps: list[int]) -> dict[str, Any]:
    """The curve at the summary steps, and its mean over steps 1..16 (or the horizon)."""
    mean = curve["mean"]
    head = [m for m in mean[:16] if m is not None]
    return {
        **{str(s): mean[s - 1] for s in steps},
        "mean_1_16": float(np.mean(head)) if head else None,
    }
