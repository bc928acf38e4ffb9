"""Semantic fidelity of a world model: what a player sees, scored on tile labels.

Run by `evaluate_rollouts` when the clips carry tile labels and a tile model is given, or on
their own from Python:

- `open_loop_tiles`: per-step tile accuracy of open-loop (and teacher-forced) rollouts, on
  map, object and already-seen tiles, next to copy-last-frame and the oracle scroller.
- `scroll_control`: one teacher-forced step after real context, per direction: does the
  generated view scroll the way the real one did; do blocked moves scroll anyway; does the
  opposite key still scroll the real way.
- `long_horizon`: roll the model far past its training horizon (noop, random play) and
  report the share of tiles that still look like real ones.
- `terrain`: does the ground an open-loop walk invents look like the game's? The mix of tile
  classes and of neighbouring pairs, against the real continuations of the same clips.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from worldsim.bench import rollouts
from worldsim.bench.semantic import (
    SHIFT_NAMES,
    SHIFTS,
    classify_scroll,
    shift_index,
    summarise_curve,
    tile_scores,
)
from worldsim.errors import WorldsimError
from worldsim.spaces import tree_index

__all__ = [
    "long_horizon",
    "noop_action",
    "open_loop_tiles",
    "scroll_control",
    "semantic_setup",
    "static_frames",
    "terrain",
    "view_given_tiles",
    "walk_progress",
]

LONG_AT = (16, 64, 256, 1000)
OPPOSITE = np.array(
    [0, 2, 1, 4, 3]
)  # index into SHIFTS of the opposite shift  # steps the long-horizon realism is summarised at


def open_loop_tiles(
    pred: np.ndarray,
    semantic: np.ndarray,
    view_pos: np.ndarray,
    K: int,
    background: list[int],
    steps: list[int],
    teacher_forced: np.ndarray | None = None,
) -> dict[str, Any]:
    """Tile accuracy per step of generated tile labels against the real ones.

    Args:
        pred: generated labels [S, N, H, R, C] (the tile classifier's reading).
        semantic, view_pos: real labels [N, T, R, C] and view positions [N, T, 2] of the clips.
        K: context frames; the rollout's step h is clip frame K - 1 + h.
        teacher_forced: labels [N, H, R, C] of teacher-forced next frames (optional).

    Returns:
        {"curves": {subset: {variant: {"mean", "count"}}}, "summary": {subset: {variant:
        {"1", "4", ..., "mean_1_16"}}}}.
    """
    H = pred.shape[2]
    args = (
        semantic[:, K : K + H],
        semantic[:, :K],
        view_pos[:, :K],
        view_pos[:, K : K + H],
        background,
    )
    curves = tile_scores(pred, *args)
    if teacher_forced is not None:
        tf = tile_scores(teacher_forced[None], *args)
        for subset in curves:
            curves[subset]["teacher_forced"] = tf[subset]["model"]
    summary = {
        subset: {v: summarise_curve(c, steps) for v, c in block.items()}
        for subset, block in curves.items()
    }
    return {"curves": curves, "summary": summary}


def view_given_tiles(
    world_model: Any,
    tiles: Any,
    frames: np.ndarray,
    actions: Any,
    labels: dict[str, np.ndarray],
    K: int,
    H: int,
    steps_at: list[int],
    *,
    steps: int | None = None,
    seed: int = 0,
    batch_size: int = 16,
) -> dict[str, Any]:
    """`open_loop_tiles` of one open-loop rollout per clip told the real view motion
    (`WorldModel.generate(view_motion=...)`, tile models only), as the oracle scroller knows it.

    Open loop, the dream invents the ground that comes into view; where it invents water or a
    tree on the real path, its walk stops and its view parts from the real one, and every tile
    seen before is then compared with another place. Told where the view went, the objects
    already seen measure the model's memory alone.
    """
    motion = np.diff(np.asarray(labels["view_pos"])[:, K - 1 : K + H], axis=1)
    N = len(frames)
    pred = np.zeros((1, N, H, *tiles.grid.grid), np.uint8)
    for b0 in range(0, N, batch_size):
        sl = slice(b0, b0 + batch_size)
        out = world_model.generate(
            frames[sl, :K],
            tree_index(actions, (sl, slice(0, K - 1))),
            tree_index(actions, (sl, slice(K - 1, K - 1 + H))),
            steps=steps,
            generator=torch.Generator().manual_seed(rollouts.rollout_seed(seed, 0, b0)),
            view_motion=motion[sl],
        )
        pred[0, sl] = tiles.classify(out["frames"])
    return open_loop_tiles(
        pred, labels["semantic"], labels["view_pos"], K, tiles.background_ids, steps_at
    )


def walk_progress(
    pred: np.ndarray,
    semantic: np.ndarray,
    view_pos: np.ndarray,
    K: int,
    anchor: tuple[int, int] | None = None,
    movers: Sequence[int] = (),
) -> dict[str, Any]:
    """Does an open-loop walk keep walking? Per step, of the real scrolls (readable in the
    real tiles), the share where the generated rollout scrolls the same way between its own
    frames h-1 and h. A dream that boxes the player in with invented obstacles, or freezes,
    stops scrolling; per-tile realism cannot see that.

    Args:
        pred: generated labels [S, N, H, R, C]; semantic, view_pos: real labels [N, T, R, C]
            and view positions [N, T, 2]; K: context frames.

    Returns:
        {"curve": {"mean": [H], "count": [H]}, "by_quarter": [4 shares], "all": share}.
    """
    S, _N, H = pred.shape[:3]
    real_prev = semantic[:, K - 1 : K - 1 + H]
    real_next = semantic[:, K : K + H]
    true = shift_index(view_pos[:, K : K + H] - view_pos[:, K - 1 : K - 1 + H])  # [N, H]
    readable = (classify_scroll(real_prev, real_next, anchor, movers=movers) == true) & (true > 0)
    gen_prev = np.concatenate([np.repeat(semantic[None, :, K - 1 : K], S, 0), pred[:, :, :-1]], 2)
    gen_shift = classify_scroll(gen_prev, pred, anchor, movers=movers)  # [S, N, H]
    hit = (gen_shift == true[None]) & readable[None]
    count = np.broadcast_to(readable[None], hit.shape).sum((0, 1))
    mean = [float(hit[:, :, h].sum() / count[h]) if count[h] else None for h in range(H)]
    quarters = np.array_split(np.arange(H), 4)
    by_quarter = [
        float(hit[:, :, q].sum() / max(count[q].sum(), 1)) if count[q].sum() else None
        for q in quarters
    ]
    total = int(count.sum())
    return {
        "curve": {"mean": mean, "count": count.tolist()},
        "by_quarter": by_quarter,
        "all": float(hit.sum() / total) if total else None,
        "n": total,
    }


def _pair_counts(labels: np.ndarray, classes: int, axis: int) -> np.ndarray:
    """Counts [classes * classes] of the (a, b) class pairs of neighbours along `axis` of tile
    labels [..., R, C] (axis -2: a above b; -1: a left of b)."""
    a = np.moveaxis(labels, axis, -1)
    pairs = a[..., :-1].astype(np.int64) * classes + a[..., 1:]
    return np.bincount(pairs.ravel(), minlength=classes * classes)


def _tv(p: np.ndarray, q: np.ndarray) -> float | None:
    """Total variation distance of two count vectors (None if either is empty)."""
    if p.sum() == 0 or q.sum() == 0:
        return None
    return float(0.5 * np.abs(p / p.sum() - q / q.sum()).sum())


def _same_share(counts: np.ndarray, classes: int) -> float | None:
    """Share of neighbour pairs of one class, from `_pair_counts`."""
    total = counts.sum()
    return float(counts.reshape(classes, classes).trace() / total) if total else None


def _terrain_counts(labels: np.ndarray, classes: int) -> dict[str, np.ndarray]:
    """Counts of the classes and of the neighbour pairs across and down of labels [..., R, C]."""
    return {
        "class": np.bincount(labels.ravel().astype(np.int64), minlength=classes),
        "across": _pair_counts(labels, classes, -1),
        "down": _pair_counts(labels, classes, -2),
    }


def terrain(
    pred: np.ndarray, semantic: np.ndarray, K: int, classes: int, quarters: int = 4
) -> dict[str, Any]:
    """Does the world an open-loop rollout shows look like the game's, tile for tile aside?
    By quarter of the horizon, pooled over clips and samples: the total-variation distance
    between the generated and the real continuations' mix of tile classes, and of their pairs
    of neighbours across and down, and the share of neighbour pairs of one class across and
    down (stripes of invented terrain push one of them up, a speckle of independent draws
    pulls both down). The floor is the distance between two halves of the real clips.

    Args:
        pred: generated labels [S, N, H, R, C]; semantic: real labels [N, T, R, C]; K: context
            frames (step h is clip frame K - 1 + h); classes: the tile classes.

    Returns:
        {"by_quarter": [{"class_tv", "across_tv", "down_tv", "floor": {...}, "same_across":
        {"generated", "real"}, "same_down": {...}}], "n": clips}.
    """
    S, N, H = pred.shape[:3]
    real = semantic[:, K : K + H]
    out = []
    for q in np.array_split(np.arange(H), quarters):
        gen_q, real_q = pred[:, :, q], real[:, q]
        g, r = _terrain_counts(gen_q, classes), _terrain_counts(real_q, classes)
        h0, h1 = _terrain_counts(real_q[0::2], classes), _terrain_counts(real_q[1::2], classes)
        out.append(
            {
                "steps": [int(q[0]) + 1, int(q[-1]) + 1],
                **{f"{k}_tv": _tv(g[k], r[k]) for k in ("class", "across", "down")},
                "floor": {f"{k}_tv": _tv(h0[k], h1[k]) for k in ("class", "across", "down")},
                **{
                    f"same_{k}": {
                        "generated": _same_share(g[k], classes),
                        "real": _same_share(r[k], classes),
                    }
                    for k in ("across", "down")
                },
            }
        )
    return {"by_quarter": out, "n": int(N), "samples": int(S)}


def static_frames(
    psnr: np.ndarray, moving: np.ndarray, copy_psnr: np.ndarray, bar_db: float = 40.0
) -> dict[str, Any]:
    """Teacher-forced PSNR of the steps whose real frame did not change (nothing moved): a
    still view should come back exactly. `copy_psnr` is the previous real frame's PSNR on the
    same steps (what an exact copy scores: below the cap where the light changes, at dusk).
    psnr, copy_psnr [N, H]; moving bool [N, H]."""
    still = ~np.asarray(moving, bool)
    model, copy = np.asarray(psnr)[still], np.asarray(copy_psnr)[still]
    if not model.size:
        return {"n": 0, "median_db": None, "share_at_bar": None, "bar_db": bar_db}
    return {
        "n": int(model.size),
        "median_db": float(np.median(model)),
        "share_at_bar": float((model >= bar_db).mean()),
        "copy_last_median_db": float(np.median(copy)),
        "copy_last_share_at_bar": float((copy >= bar_db).mean()),
        "bar_db": bar_db,
    }


def _share(hit: np.ndarray) -> dict[str, Any]:
    return {"share": float(hit.mean()) if hit.size else None, "n": int(hit.size)}


def scroll_control(
    world_model: Any,
    tiles: Any,
    frames: np.ndarray,
    actions: np.ndarray,
    semantic: np.ndarray,
    view_pos: np.ndarray,
    moves: dict[int, tuple[int, int]],
    K: int,
    H: int,
    *,
    anchor: tuple[int, int] | None = None,
    movers: Sequence[int] = (),
    generated_labels: np.ndarray | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    seed: int = 0,
    batch_size: int = 16,
) -> dict[str, Any]:
    """Does one teacher-forced step scroll the view the way the keys say?

    Over the move transitions of the clips (steps 1..H after K real frames):
    - *agreement*: of the real one-tile scrolls, the share the generated frame scrolls the same
      way (per direction, and over all);
    - *false scrolls*: of the blocked moves (the key was a move, the view stayed), the share
      the generated frame scrolls anyway;
    - *opposite*: with the opposite move in place of the real one, the share that still
      scrolls the real way.
    Only transitions whose real scroll (or stay) can be told from the real tiles count: in a
    field of plain grass nobody can see a scroll.

    Args:
        tiles: a TileModel with a classifier.
        actions: Discrete actions [N, T-1]; moves: action -> view displacement when unblocked.
        generated_labels: tile labels [N, H, R, C] of the teacher-forced frames with the
            logged actions, if already made and read.
        anchor, movers: as in `worldsim.bench.semantic.scroll_agreement` (a creature's step
            is not read as a scroll).

    Returns:
        {"agreement": {direction: {"share", "n"}, "all": ...}, "false_scroll": {...},
        "opposite_real_way": {...}, "unclear_real": n, "seconds": s}.
    """
    start = time.perf_counter()
    N = len(frames)
    acts = np.asarray(actions)[:, K - 1 : K - 1 + H]  # [N, H]: the action into step h
    prev = semantic[:, K - 1 : K - 1 + H]
    nxt = semantic[:, K : K + H]
    d = view_pos[:, K : K + H] - view_pos[:, K - 1 : K - 1 + H]  # [N, H, 2]
    true = shift_index(d)
    readable = classify_scroll(prev, nxt, anchor, movers=movers) == true  # the real tiles show it
    is_move = np.isin(acts, list(moves))
    scrolled = is_move & (true > 0) & readable
    blocked = is_move & (true == 0) & readable
    if generated_labels is None:
        n_idx, h_idx = np.divmod(np.arange(N * H), H)
        generated = rollouts.teacher_forced(
            world_model, frames, actions, K, n_idx, h_idx, steps=steps, guidance=guidance,
            seed=seed, batch_size=batch_size,
        )[0].reshape(N, H, *frames.shape[2:])  # fmt: skip
        generated_labels = tiles.classify(generated)
    gen_shift = classify_scroll(prev, generated_labels, anchor, movers=movers)  # [N, H]
    out: dict[str, Any] = {"agreement": {}, "false_scroll": {}, "opposite_real_way": {}}
    for j in range(1, len(SHIFTS)):
        sel = scrolled & (true == j)
        out["agreement"][SHIFT_NAMES[j]] = _share(gen_shift[sel] == j)
    out["agreement"]["all"] = _share(gen_shift[scrolled] == true[scrolled])
    for a, dd in sorted(moves.items()):
        sel = blocked & (acts == a)
        name = SHIFT_NAMES[int(shift_index(np.asarray(dd)))]
        out["false_scroll"][name] = _share(gen_shift[sel] > 0)
    out["false_scroll"]["all"] = _share(gen_shift[blocked] > 0)
    # The opposite key on every real scroll whose opposite move exists.
    opposite = {tuple(-np.asarray(dd)): a for a, dd in moves.items()}
    n_idx, h_idx = np.nonzero(scrolled)
    opp = np.array([opposite.get(tuple(d[n, h]), -1) for n, h in zip(n_idx, h_idx)], np.int64)
    keep = opp >= 0
    n_idx, h_idx, opp = n_idx[keep], h_idx[keep], opp[keep]
    if len(n_idx):
        opp_frames = rollouts.teacher_forced(
            world_model, frames, actions, K, n_idx, h_idx, next_actions=opp.astype(acts.dtype),
            steps=steps, guidance=guidance, seed=seed + 1, batch_size=batch_size,
        )[0]  # fmt: skip
        opp_labels = tiles.classify(opp_frames)
        opp_shift = classify_scroll(prev[n_idx, h_idx], opp_labels, anchor, movers=movers)
        real_way = opp_shift == true[n_idx, h_idx]
        for j in range(1, len(SHIFTS)):
            out["opposite_real_way"][SHIFT_NAMES[j]] = _share(real_way[true[n_idx, h_idx] == j])
        out["opposite_real_way"]["all"] = _share(real_way)
        out["opposite_commanded_way"] = _share(opp_shift == OPPOSITE[true[n_idx, h_idx]])
    out["unclear_real"] = int((is_move & ~readable).sum())
    out["moves"] = int(is_move.sum())
    out["seconds"] = time.perf_counter() - start
    return out


def long_horizon(
    world_model: Any,
    tiles: Any,
    frames: np.ndarray,
    actions: Any,
    K: int,
    *,
    length: int = 1000,
    policies: tuple[str, ...] = ("noop", "random"),
    noop: Any = 0,
    every: int = 16,
    steps: int | None = None,
    guidance: float | None = None,
    seed: int = 0,
    batch_size: int = 16,
    keep: int = 0,
) -> dict[str, Any]:
    """Roll `length` steps from real contexts and check the tiles still look like real ones.

    Args:
        tiles: a TileModel (its bank and threshold judge "looks real").
        frames, actions: real clips [N, T, ...] and their actions; the first K frames start
            each rollout.
        policies: "noop" (always `noop`) and/or "random" (uniform random actions).
        every: realism is measured every `every` steps (and at LONG_AT within `length`, and at
            the last step).
        keep: rollouts of each policy whose frames are kept (at the measured steps) for a look.

    Returns:
        {policy: {"steps": [..], "map_real": [..], "inventory_real": [..] (if the lattice has
        rows below the map), "at": {step: {"map", "inventory"}}, "frames_per_s": ..}}, and
        where every context shows one tile class at the view's centre (an avatar the camera
        follows: Crafter's player), "avatars" (tiles of that class a frame) and
        "avatar_missing" (share of frames whose centre lost it) at each measured step: a
        dream that leaves its avatar behind as it scrolls shows two, or none.
    """
    N = len(frames)
    at = sorted({*range(every, length + 1, every), *(s for s in LONG_AT if s <= length), length})
    rows = tiles.grid.grid[0] if tiles.classifier is not None else tiles.grid.frame_grid[0]
    avatar, centre = None, (rows // 2, tiles.grid.grid[1] // 2)  # the view's centre tile
    if tiles.classifier is not None:
        shown = tiles.classify(frames[:, K - 1])[:, centre[0], centre[1]]
        avatar = int(shown[0]) if (shown == shown[0]).all() else None
    out: dict[str, Any] = {}
    for policy in policies:
        if policy == "noop":
            future = np.broadcast_to(np.asarray(noop), (N, length, *np.shape(noop))).copy()
        elif policy == "random":
            future = rollouts.random_actions(
                world_model.action_space, N, length, rollouts.rollout_seed(seed, 123)
            )
        else:
            raise ValueError(f"policy must be 'noop' or 'random', not {policy!r}")
        real = np.zeros((N, len(at), *tiles.grid.frame_grid), bool)
        avatars = np.zeros((N, len(at)))
        missing = np.zeros((N, len(at)), bool)
        shown = []
        t0 = time.perf_counter()
        for b0 in range(0, N, batch_size):
            sl = slice(b0, b0 + batch_size)
            g = torch.Generator().manual_seed(rollouts.rollout_seed(seed, 55, b0))
            gen = world_model.generate(
                frames[sl, :K],
                tree_index(actions, (sl, slice(0, K - 1))),
                tree_index(future, sl),
                steps=steps,
                guidance=guidance,
                generator=g,
            )["frames"][:, np.asarray(at) - 1]  # [b, len(at), H, W, 3]
            real[sl] = tiles.looks_real(gen)
            if avatar is not None:
                cls = tiles.classify(gen)
                avatars[sl] = (cls == avatar).sum((-2, -1))
                missing[sl] = cls[..., centre[0], centre[1]] != avatar
            if b0 < keep:
                shown.append(gen[: keep - b0])
        seconds = time.perf_counter() - t0
        block = {
            "steps": at,
            "map_real": real[:, :, :rows].mean((0, 2, 3)).tolist(),
            "frames_per_s": N * length / max(seconds, 1e-9),
            "clips": N,
        }
        if real.shape[2] > rows:
            block["inventory_real"] = real[:, :, rows:].mean((0, 2, 3)).tolist()
        block["at"] = {
            str(s): {
                "map": block["map_real"][at.index(s)],
                "inventory": block.get("inventory_real", [None] * len(at))[at.index(s)],
            }
            for s in LONG_AT
            if s in at
        }
        block["min_map_real"] = float(min(block["map_real"]))
        if avatar is not None:
            block["avatar"] = tiles.names[avatar]
            block["avatars"] = avatars.mean(0).tolist()
            block["avatar_missing"] = missing.mean(0).tolist()
            for s in block["at"]:
                i = at.index(int(s))
                block["at"][s]["avatars"] = block["avatars"][i]
                block["at"][s]["avatar_missing"] = block["avatar_missing"][i]
        if shown:  # popped into FidelityResult.long_gallery, not JSON
            block["frames"] = np.concatenate(shown)
            block["frames_real"] = real[: len(block["frames"])]
        out[policy] = block
    return out


MOVERS = ("cow", "zombie", "skeleton", "arrow")


def semantic_setup(
    labels: dict[str, np.ndarray] | None,
    spec: dict[str, Any] | None,
    tiles: Any | None,
    clip_shape: tuple[int, int],
) -> dict[str, Any]:
    """Which semantic metrics apply to these clips, and why the others do not."""
    out: dict[str, Any] = {
        "applies": [],
        "skipped": None,
        "names": [],
        "moves": {},
        "anchor": None,
        "movers": [],
    }
    if tiles is None:
        out["skipped"] = (
            "no tile model: train one with `worldsim bench train-tiles --data STORE --out "
            "tiles.safetensors` and pass --tiles (tile accuracy and scroll need a game with "
            "tile labels, such as Crafter; realism works on any game)"
        )
        return out
    out["applies"].append("realism")
    out["names"] = list(tiles.names)
    if tiles.classifier is None:
        out["skipped"] = "the tile model has no classifier (no tile labels): realism only"
        return out
    if not labels or "semantic" not in labels or "view_pos" not in labels:
        out["skipped"] = (
            "the clips have no tile labels (semantic, view_pos): only Crafter records them; "
            "re-record Crafter data with `worldsim collect`"
        )
        return out
    for name in ("semantic", "view_pos"):
        if tuple(np.shape(labels[name])[:2]) != tuple(clip_shape):
            raise WorldsimError(
                f"labels[{name!r}] has shape {np.shape(labels[name])}, expected "
                f"[{clip_shape[0]}, {clip_shape[1]}, ...]: one entry per clip frame"
            )
    if tuple(np.shape(labels["semantic"])[2:]) != tuple(tiles.grid.grid):
        raise WorldsimError(
            f"the clips' tile labels are {np.shape(labels['semantic'])[2:]} tiles, the tile "
            f"model reads {tiles.grid.grid}: a tile model of another game or view?"
        )
    out["applies"].append("semantic")
    spec = spec or {}
    moves = {int(k): tuple(v) for k, v in (spec.get("moves") or {}).items()}
    if moves:
        out["applies"].append("scroll")
        out["moves"] = moves
    anchor = (spec.get("semantic") or {}).get("anchor")
    out["anchor"] = tuple(anchor) if anchor else None
    # Classes that move by themselves are no evidence of where the view went: the label spec's
    # "movers", else those of MOVERS the tile model knows (Crafter's creatures).
    movers = (spec.get("semantic") or {}).get("movers", MOVERS)
    out["movers"] = [i for i, name in enumerate(tiles.names) if name in set(movers)]
    return out


def noop_action(space: Any) -> Any:
    """The do-nothing action: 0 of a Discrete space (Crafter's noop), else zeros."""
    if hasattr(space, "n"):
        return np.int64(getattr(space, "start", 0))
    sample = space.sample()
    if isinstance(sample, dict):
        raise WorldsimError("long-horizon noop rollouts need a non-Dict action space")
    return np.zeros_like(sample)
