"""The generative tools on a tile world model: quantise a picture and re-draw a share of its
tiles, re-draw a clip with some recorded tiles given, and walk a planned path to an end frame
that is already in the world memory.

The tile net is told things through `worldsim.model.tile_rollout.Given`: a shift (the view's
move), tiles committed before its rounds (the rest are filled around them, as MaskGIT fills
the tokens it was not given), and tokens to draw afresh as if they had just come into view.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from worldsim.generate.clip import GenerateError
from worldsim.model.net import pixels_to_x
from worldsim.model.tile_rollout import Given, TileRollout, TileRolloutState
from worldsim.model.tiles import (
    displacements,
    frames_to_patches,
    nearest_codes,
    patch_rms,
    patches_to_frames,
    shift_from_pixels,
)

__all__ = ["animate_tiles", "bridge_tiles", "edit_tiles", "find_offset", "quantise"]


def _rand(shape: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
    return torch.rand(shape, generator=generator)


def map_palette(net: Any, frames: np.ndarray | None) -> Tensor | None:
    """bool [K]: the codes real frames [..., H, W, C] show in the scrolling rows (the map),
    or None without frames. A picture is drawn with these only: the codebook also holds the
    HUD's icons and digits, which are near many dark or flat colours."""
    if frames is None:
        return None
    patches = frames_to_patches(torch.as_tensor(np.asarray(frames)), net.config.patch)
    codes = nearest_codes(patches[..., : net.moving, :].to(net.device), net.codebook)[0]
    allowed = torch.zeros(net.config.codebook_size, dtype=torch.bool, device=net.device)
    allowed[codes.flatten()] = True
    return allowed


def quantise(
    net: Any, image: np.ndarray, palette: Tensor | None = None, hud: np.ndarray | None = None
) -> tuple[np.ndarray, Tensor]:
    """A picture [H, W, C] drawn with the codebook's real tiles: each map tile replaced by its
    nearest code among `palette` (bool [K]; None: all), the fixed rows (a HUD) taken from a
    real frame `hud` [H, W, C] where given, pixels off the tile grid kept. Returns (uint8
    [H, W, C], RMS error per token [N], 0-255 units; 0 for the HUD's tokens)."""
    base = torch.as_tensor(np.array(image)).to(net.device)
    patches = frames_to_patches(base, net.config.patch)  # [N, D]
    idx = torch.arange(net.config.codebook_size, device=net.device)
    if palette is not None:
        idx = idx[palette]
    near, errs = nearest_codes(patches, net.codebook[idx])
    pix = net.codebook[idx[near]]
    if hud is not None:
        real = frames_to_patches(torch.as_tensor(np.array(hud)).to(net.device), net.config.patch)
        pix[net.moving :] = real[net.moving :]
        errs[net.moving :] = 0.0
    frame = patches_to_frames(pix, base, net.config.patch)
    return frame.cpu().numpy(), errs.cpu()


def choose_tokens(
    errs: Tensor, strength: float, order: str, generator: torch.Generator | None
) -> Tensor:
    """The share `strength` of the tokens [N] with errors >= 0 to re-draw, ranked: the worst-matching first
    ("worst"; ties broken at random) or at random ("random"). Returns long [N]: each token's
    rank in the re-drawing order, -1 for the tokens kept."""
    N = len(errs)
    drawable = errs >= 0  # negative: a token that is never re-drawn (a real HUD)
    n = round(strength * int(drawable.sum()))
    noise = _rand((N,), generator)
    if order == "worst":
        score = errs.float() + 1e-3 * noise  # ties (exact tiles: error 0) at random
    elif order == "random":
        score = noise
    else:
        raise GenerateError(f"order {order!r} is not 'worst' or 'random'")
    score = score.masked_fill(~drawable, -1e9)
    out = torch.full((N,), -1, dtype=torch.long)
    out[score.argsort(descending=True)[:n]] = torch.arange(n)
    return out


def _start(rollout: TileRollout, frames: np.ndarray, enc: Tensor) -> TileRolloutState:
    x = pixels_to_x(torch.as_tensor(frames[None]).to(rollout.net.device))
    return rollout.start(x, enc[None])


def animate_tiles(
    rollout: TileRollout,
    image: np.ndarray,
    strength: float,
    noop: Tensor,  # [1, A] the encoded no-op
    future: Tensor | None,
    *,
    order: str = "worst",
    chunk: int | None = None,
    palette: Tensor | None = None,
    hud: np.ndarray | None = None,
    steps: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The picture quantised, a share `strength` of its tiles re-drawn by the tile net given
    the others (`chunk` tokens a pass; default one row's worth), then played under encoded
    actions future [N, A]. `palette` (bool [K]) limits the codes of the map's tiles; `hud`, a
    real frame, gives the fixed rows (the picture has no inventory to show).

    Returns:
        the start frame uint8 [H, W, C], the played frames [N, H, W, C], rewards [N].
    """
    net = rollout.net
    quantised, errs = quantise(net, image, palette, hud)
    if hud is not None:
        errs[net.moving :] = -1.0  # the real HUD is kept: never re-drawn
    order_ = choose_tokens(errs, strength, order, generator)  # [N] ranks, -1: kept
    state = _start(rollout, quantised[None], noop[:0])
    still = torch.zeros(1, dtype=torch.long, device=net.device)
    # A few tokens at a time, worst first, each pass given all the others: like the row of
    # tiles that comes into view when the view scrolls, the case the net was trained on.
    chunk = chunk or rollout.cols
    todo = int((order_ >= 0).sum())
    for lo in range(0, todo, chunk):
        hide = ((order_ >= lo) & (order_ < lo + chunk)).to(net.device)[None]  # [1, N]
        told = Given(shift=still, patches=state.pix.clone(), mask=~hide, hide=hide, allowed=palette)
        rollout.next(state, noop[None], steps=steps, generator=generator, given=[told])
        state.prev_code, state.prev_shift = state.code.clone(), still  # a still start
    first = state.frame[0].cpu().numpy()
    if future is None or len(future) == 0:
        return first, first[None][:0], np.zeros(0, np.float32)
    x, rewards, _ = rollout.next(state, future[None], steps=steps, generator=generator)
    return first, net.x_to_frames(x)[0].cpu().numpy(), rewards[0].float().cpu().numpy()


def edit_tiles(
    rollout: TileRollout,
    frames: np.ndarray,
    enc: Tensor,
    start: int,
    strength: float,
    *,
    steps: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """SDEdit on a clip: frames[:start] held, each later frame re-drawn with a share
    1 - `strength` of its recorded tiles given (at random) and the recorded view shift.

    Args:
        frames: uint8 [T, H, W, C]; enc: the encoded recorded actions [T-1, A].

    Returns:
        frames [T - start, H, W, C] and rewards [T - start].
    """
    net, cfg = rollout.net, rollout.config
    state = _start(rollout, frames[:start], enc[: start - 1])
    patches = frames_to_patches(torch.as_tensor(frames[start - 1 :]), cfg.patch)  # [n+1, N, D]
    shifts = torch.as_tensor(shift_from_pixels(patches, net.source.cpu(), net.valid.cpu()))
    out, rewards = [], []
    for i in range(len(frames) - start):
        mask = _rand((1, cfg.tokens_per_frame), generator) >= strength  # given: 1 - strength
        told = Given(
            shift=shifts[i : i + 1].to(net.device),
            patches=patches[i + 1][None].to(net.device),
            mask=mask.to(net.device),
        )
        x, r, _ = rollout.next(
            state,
            enc[None, start - 1 + i : start + i],
            steps=steps,
            generator=generator,
            given=[told],
        )
        out.append(net.x_to_frames(x)[0, 0].cpu().numpy())
        rewards.append(float(r[0, 0]))
    return np.stack(out), np.asarray(rewards, np.float32)


def _same(a: Tensor, b: Tensor, tol: float) -> Tensor:
    """Whether patches a and b [..., D] look the same: RMS within `tol` (0-255 units). Codes
    are no test: the codebook holds many tints of a tile (Crafter's daylight), so one tile
    maps to another code from frame to frame."""
    return patch_rms(a, b) <= tol


def find_offset(
    net: Any, start: np.ndarray, end: np.ndarray, min_agree: float = 0.5, tol: float = 12.0
) -> tuple[int, int]:
    """Where the end frame's view lies from the start's, in tiles (d_row, d_col), read off the
    tiles both show: the offset at which most overlapping map tiles look the same."""
    cfg = net.config
    rows, cols = cfg.grid[0] - cfg.fixed_rows, cfg.grid[1]
    pix = frames_to_patches(torch.as_tensor(np.stack([start, end])), cfg.patch)
    a = pix[0, : rows * cols].reshape(rows, cols, -1)
    b = pix[1, : rows * cols].reshape(rows, cols, -1)
    best, best_agree = (0, 0), -1.0
    for dr in range(-(rows - 1), rows):
        for dc in range(-(cols - 1), cols):
            # end tile (r, c) shows the world at start tile (r + dr, c + dc)
            r0, r1 = max(0, -dr), min(rows, rows - dr)
            c0, c1 = max(0, -dc), min(cols, cols - dc)
            if (r1 - r0) * (c1 - c0) < rows * cols / 3:
                continue
            same = _same(b[r0:r1, c0:c1], a[r0 + dr : r1 + dr, c0 + dc : c1 + dc], tol)
            agree = float(same.float().mean())
            nearer = abs(dr) + abs(dc) < abs(best[0]) + abs(best[1])
            if agree > best_agree + 1e-9 or (abs(agree - best_agree) <= 1e-9 and nearer):
                best, best_agree = (dr, dc), agree
    if best_agree < min_agree:
        raise GenerateError(
            "cannot tell where the end frame lies from the start (their views share too few "
            "tiles); pass offset=(d_row, d_col), the end view's position in tiles from the start's"
        )
    return best


def _plan(offset: tuple[int, int], n: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """n + 1 displacements from the start to the end view, one tile at a time in a random
    order, the moves spread at random over the n generated steps (the last one may be the
    step into the end frame)."""
    dr, dc = offset
    moves = [(int(np.sign(dr)), 0)] * abs(dr) + [(0, int(np.sign(dc)))] * abs(dc)
    rng.shuffle(moves)
    plan = [(0, 0)] * (n + 1)
    k = min(len(moves), n)
    where = np.sort(rng.choice(n, size=k, replace=False)) if k else []
    for i, w in enumerate(where):
        plan[w] = moves[i]
    if len(moves) > n:
        plan[n] = moves[n]
    return plan


def _end_in_view(
    net: Any, end_pix: Tensor, walk: Tensor, offset: tuple[int, int]
) -> tuple[Tensor, Tensor, Tensor]:
    """The end frame's map tiles [N, D] as the views at `walk` [B, 2] (tiles from the start)
    see them: patches [B, N, D], where the end's view covers the token, bool [B, N], and
    which end token each map token shows, long [B, n]."""
    cfg = net.config
    rows, cols = cfg.grid[0] - cfg.fixed_rows, cfg.grid[1]
    r = torch.arange(rows, device=walk.device).repeat_interleave(cols)
    c = torch.arange(cols, device=walk.device).repeat(rows)
    er = r[None] + walk[:, :1] - offset[0]  # the token's row in the end view [B, n]
    ec = c[None] + walk[:, 1:] - offset[1]
    inside = (er >= 0) & (er < rows) & (ec >= 0) & (ec < cols)
    idx = (er.clamp(0, rows - 1) * cols + ec.clamp(0, cols - 1)).long()
    # Not the end view's centre tile: a scrolling game draws its avatar there (Crafter's
    # player), and pulled in at its world position it would show a second one.
    inside &= idx != (rows // 2) * cols + cols // 2
    B, N = walk.shape[0], cfg.tokens_per_frame
    patches = torch.zeros(B, N, end_pix.shape[-1], dtype=end_pix.dtype, device=walk.device)
    patches[:, : net.moving] = end_pix[idx]
    mask = torch.zeros(B, N, dtype=torch.bool, device=walk.device)
    mask[:, : net.moving] = inside
    return patches, mask, idx


def _scroll_agreement(net: Any, prev: Tensor, nxt: Tensor, shift: Tensor) -> Tensor:
    """Share of the map tokens of nxt [B, N, D] that prev [B, N, D] moved by shift [B] shows
    (within 12 RMS): 1 for an exact scroll. Returns [B]."""
    moved = net.shifted(prev, shift, 0)[:, : net.moving]
    known = net.valid[shift][:, : net.moving]
    same = _same(moved, nxt[:, : net.moving].expand_as(moved), 12.0) & known
    return same.sum(1) / known.sum(1).clamp(min=1)


def _best_action(net: Any, state: TileRolloutState, actions: Tensor, shift: Tensor) -> Tensor:
    """Per rollout, the index of the encoded action [A_n, A] under which the shift net finds the
    wanted shift [B] likeliest."""
    B, n = state.code.shape[0], len(actions)
    code = state.code.repeat_interleave(n, 0)
    pix = state.pix.repeat_interleave(n, 0)
    logits = net.shift_logits(code, pix, actions.repeat(B, 1)).log_softmax(-1)  # [B*n, S]
    want = shift.repeat_interleave(n)
    return logits.gather(1, want[:, None])[:, 0].view(B, n).argmax(1)


def bridge_tiles(
    rollout: TileRollout,
    start: np.ndarray,
    end: np.ndarray,
    n: int,
    offset: tuple[int, int],
    choices: Tensor,
    *,
    candidates: int = 1,
    remember_end: bool = True,
    pull: bool = True,
    steps: int | None = None,
    generator: torch.Generator | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """The n frames between `start` and `end` [H, W, C]: `candidates` planned walks from the
    start view to the end's (offset: its position in tiles), each step's action the one under
    which the model finds the planned shift likeliest (among the encoded `choices` [A_n, A]),
    with the end frame written into the world memory at its offset (`remember_end`) so tiles
    coming into view are drawn from it, and (`pull`) the end's tiles in view given to a share
    (t + 1) / n of their tokens at step t, so the walk arrives at the end frame. Keeps the
    candidate whose worst step (the step into the end frame included) is best explained by
    its planned scroll, judged on pixels.

    Returns:
        frames [n, H, W, C], the chosen action indices [n + 1], rewards [n], info.
    """
    net, cfg = rollout.net, rollout.config
    disp = displacements(cfg.motion_radius)
    if cfg.motion_radius < 1:
        raise GenerateError("this tile model never scrolls the view (motion_radius 0): no path")
    m = abs(offset[0]) + abs(offset[1])
    if m > n + 1:
        raise GenerateError(
            f"the end view is {m} tiles from the start's: {n} frames between cannot walk there "
            f"at one tile per step; pass n >= {m - 1}"
        )
    rng = np.random.default_rng(seed)
    plans = [_plan(offset, n, rng) for _ in range(candidates)]
    cls = torch.tensor([[disp.index(d) for d in p] for p in plans], device=net.device)  # [c, n+1]
    x_start = pixels_to_x(torch.as_tensor(start[None, None]).to(net.device))
    state = rollout.start(x_start.repeat(candidates, 1, 1, 1, 1), choices[None, :0])
    x_end = pixels_to_x(torch.as_tensor(end[None, None]).to(net.device))[:, 0]
    if remember_end:
        off = torch.tensor([offset], device=net.device).repeat(candidates, 1)
        rollout.remember_at(state, x_end.repeat(candidates, 1, 1, 1), off)
    frames, picks, rewards, scores = [], [], [], []
    end_pix = frames_to_patches(torch.as_tensor(end).to(net.device), cfg.patch)  # [N, D]
    walk = torch.tensor([[0, 0]], device=net.device).repeat(candidates, 1)
    # when each of the end's tiles is pulled in: once given, it stays given (no flicker)
    order = _rand((candidates, net.moving), generator).to(net.device)
    disp_t = torch.tensor(disp, device=net.device)
    for t in range(n + 1):
        pick = _best_action(net, state, choices, cls[:, t])
        picks.append(pick)
        if t == n:
            break
        walk = walk + disp_t[cls[:, t]]
        told = Given(shift=cls[:, t])
        if pull:  # the end's tiles in view, given to a share (t+1)/n of their tokens
            told.patches, told.mask, where = _end_in_view(net, end_pix, walk, offset)
            told.mask[:, : net.moving] &= order.gather(1, where) < (t + 1) / n
        before = state.pix.clone()
        x, r, _ = rollout.next(
            state, choices[pick][:, None], steps=steps, generator=generator, given=[told]
        )
        scores.append(_scroll_agreement(net, before, state.pix, cls[:, t]))
        frames.append(net.x_to_frames(x)[:, 0])
        rewards.append(r[:, 0])
    # the step into the end frame, then: keep the walk whose worst step scrolls best
    scores.append(_scroll_agreement(net, state.pix, end_pix[None], cls[:, n]))
    agree = torch.stack(scores, 1)  # [c, n + 1]
    best = int((agree.min(1).values + 1e-3 * agree.mean(1)).argmax())
    out = torch.stack(frames, 1)[best].cpu().numpy() if frames else start[None][:0]
    reward = torch.stack(rewards, 1)[best].float().cpu().numpy() if rewards else np.zeros(0)
    info = {
        "offset": list(offset),
        "candidates": candidates,
        "end_agreement": float(agree[best, -1]),
        "worst_step_agreement": float(agree[best].min()),
        "plan": [list(d) for d in plans[best]],
    }
    return out, torch.stack(picks, 1)[best].cpu().numpy(), reward.astype(np.float32), info
