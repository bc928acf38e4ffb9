"""Tile tokens: frames as a grid of p x p patches, a codebook of real patches, exact shifts of
the grid, and a memory of the patches seen at each world position.

These are the mechanisms of `TileWorldNet` (worldsim/model/tile_net.py), shared by its training
data (training/tile_data.py) and its rollouts (worldsim/model/tile_rollout.py), so both compute
them the same way. Nothing here is about one game: a patch size, a motion radius in tokens and
a count of bottom rows that never scroll (a HUD) describe the layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "NO_CODE",
    "Canvas",
    "age_bucket",
    "anchor_tokens",
    "build_codebook",
    "displacements",
    "event_clocks",
    "first_events",
    "frames_to_patches",
    "hud_clocks",
    "move_table",
    "nearest_codes",
    "novelty",
    "patch_rms",
    "patches_to_frames",
    "remember",
    "same_tile_codes",
    "shift_from_offsets",
    "shift_from_pixels",
    "shift_table",
    "tick_clock",
]

NO_CODE = -1  # "no code here": a tile revealed by a shift, or an empty memory cell


def frames_to_patches(frames: Tensor | np.ndarray, patch: int) -> Tensor:
    """uint8 frames [..., H, W, C] -> patches [..., R*C_, p*p*C] of the top-left R x C_ grid
    (R = H // p, C_ = W // p); pixels right of or below the grid are not in any patch."""
    x = torch.as_tensor(frames)
    *lead, H, W, C = x.shape
    R, Q = H // patch, W // patch
    x = x[..., : R * patch, : Q * patch, :].reshape(*lead, R, patch, Q, patch, C)
    n = len(lead)
    x = x.permute(*range(n), n, n + 2, n + 1, n + 3, n + 4)
    return x.reshape(*lead, R * Q, patch * patch * C)


def patches_to_frames(patches: Tensor, base: Tensor, patch: int) -> Tensor:
    """Write patches [..., R*Q, p*p*C] into a copy of frames `base` [..., H, W, C]."""
    *lead, H, W, C = base.shape
    R, Q = H // patch, W // patch
    n = len(lead)
    x = patches.reshape(*lead, R, Q, patch, patch, C)
    x = x.permute(*range(n), n, n + 2, n + 1, n + 3, n + 4).reshape(*lead, R * patch, Q * patch, C)
    out = base.clone()
    out[..., : R * patch, : Q * patch, :] = x
    return out


def build_codebook(
    patches: np.ndarray, size: int, frequent: int, seed: int = 0, iters: int = 10
) -> np.ndarray:
    """A codebook of `size` real patches from patches [N, D] uint8.

    The `frequent` most frequent exact patches come first (most of a game's screen is a few
    sprites drawn exactly); k-means centroids of the patches they do not cover fill the rest
    (tinted or noisy ones: Crafter's dusk and night). Deterministic for a given `seed`, so a
    resumed run rebuilds the same codebook.

    Returns:
        uint8 [size, D] (fewer rows if the data has fewer distinct patches).
    """
    rng = np.random.default_rng(seed)
    if len(patches) > 2_000_000:
        patches = patches[np.sort(rng.choice(len(patches), 2_000_000, replace=False))]
    x = torch.from_numpy(np.ascontiguousarray(patches))
    keys = torch.cat([_hash(x[i : i + 262144]) for i in range(0, len(x), 262144)]).numpy()
    uniq, first, inverse, counts = np.unique(
        keys, return_index=True, return_inverse=True, return_counts=True
    )
    order = np.argsort(-counts, kind="stable")[: min(frequent, size)]
    exact = patches[first[order]]
    chosen = np.zeros(len(uniq), dtype=bool)
    chosen[order] = True
    rest = np.flatnonzero(~chosen[inverse])
    k = min(size - len(exact), len(rest))
    if k <= 0:
        return exact
    sample = patches[rng.choice(rest, min(len(rest), 50 * k), replace=False)].astype(np.float32)
    X = torch.from_numpy(sample)
    gen = torch.Generator().manual_seed(seed)
    C = X[torch.randperm(len(X), generator=gen)[:k]].clone()
    for _ in range(iters):
        assign = _nearest(X, C)
        sums = torch.zeros_like(C).index_add_(0, assign, X)
        n = torch.bincount(assign, minlength=k).float()[:, None]
        C = torch.where(n > 0, sums / n.clamp(min=1), C)
    return np.concatenate([exact, C.round().clamp(0, 255).numpy().astype(np.uint8)])


def renew_codebook(
    codebook: np.ndarray, patches: np.ndarray, count: int, rms: float = 10.0, least: int = 20
) -> tuple[np.ndarray, np.ndarray]:
    """A codebook that also holds what new play shows: up to `count` of the codes `patches`
    [N, D] (uint8) use least are swapped for the exact patches the codebook draws worst
    (nearest code further than `rms`, 0-255 units), most frequent first, each seen at least
    `least` times (a furnace, a stone pickaxe in the inventory: things the play the codebook
    was built from never showed).

    Returns:
        (the codebook, uint8 [K, D]; the indices of the swapped codes, int64 [n <= count]).
    """
    none = np.zeros(0, np.int64)
    if count < 1:
        return codebook, none
    book = torch.from_numpy(np.ascontiguousarray(codebook))
    x = torch.from_numpy(np.ascontiguousarray(patches))
    codes, errs = nearest_codes(x, book)
    far = (errs > rms).numpy()
    if not far.any():
        return codebook, none
    bad = patches[far]
    keys = _hash(torch.from_numpy(bad)).numpy()
    _, first, counts = np.unique(keys, return_index=True, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    order = order[counts[order] >= least][:count]
    if not len(order):
        return codebook, none
    usage = np.bincount(codes.numpy()[~far], minlength=len(codebook))
    swapped = np.sort(np.argsort(usage, kind="stable")[: len(order)])
    out = codebook.copy()
    out[swapped] = bad[first[order]]
    return out, swapped.astype(np.int64)


def _nearest(X: Tensor, C: Tensor, chunk: int = 65536) -> Tensor:
    """Index of the nearest row of C [K, D] for each row of X [N, D] (float)."""
    cn = (C * C).sum(1)
    out = []
    for i in range(0, len(X), chunk):
        x = X[i : i + chunk]
        out.append((cn[None] - 2 * x @ C.T).argmin(1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


_HASH = torch.from_numpy(np.random.default_rng(12345).integers(1, 2**62, size=4096, dtype=np.int64))


def _hash(patches: Tensor) -> Tensor:
    """An int64 hash of each uint8 patch [..., D] (equal patches, equal hashes)."""
    w = _HASH[: patches.shape[-1]].to(patches.device)
    return (patches.long() * w).sum(-1)


def nearest_codes(patches: Tensor, codebook: Tensor, chunk: int = 262144) -> tuple[Tensor, Tensor]:
    """The nearest codebook row of each uint8 patch [..., D], and its RMS error (0-255 units).

    Patches equal to a codebook row are found by hash; only the others are compared with
    every row.

    Returns:
        codes long [...], errors float32 [...].
    """
    lead = patches.shape[:-1]
    flat = patches.reshape(-1, patches.shape[-1])
    book_h = _hash(codebook)
    order = book_h.argsort()
    sorted_h = book_h[order]
    C = codebook.float()
    codes = torch.empty(len(flat), dtype=torch.long, device=flat.device)
    errs = torch.zeros(len(flat), dtype=torch.float32, device=flat.device)
    for i in range(0, len(flat), chunk):
        x = flat[i : i + chunk]
        h = _hash(x)
        pos = torch.searchsorted(sorted_h, h).clamp(max=len(sorted_h) - 1)
        hit = sorted_h[pos] == h
        c = order[pos]
        miss = (~hit).nonzero()[:, 0]
        if len(miss):
            xm = x[miss].float()
            near = _nearest(xm, C)
            c[miss] = near
            errs[i + miss] = ((xm - C[near]) ** 2).mean(-1).sqrt()
        codes[i : i + chunk] = c
    return codes.reshape(lead), errs.reshape(lead)


def patch_rms(a: Tensor, b: Tensor) -> Tensor:
    """The RMS pixel distance (0-255 units) between patches a and b [..., D]: [...]."""
    return (a.float() - b.float()).square().mean(-1).sqrt()


def same_tile_codes(codebook: Tensor, rms: float, chunk: int = 1024) -> Tensor:
    """Which codes draw one tile: the twin pairs long [2, P] (code, twin; both orders, never a
    code with itself) of rows of the codebook uint8 [K, D] within `rms` (RMS, 0-255 units) of
    each other. A row equal to an earlier one (the zero rows of a codebook larger than its
    data) is in no pair, so unused rows never pool."""
    K, dev = len(codebook), codebook.device
    _, inverse = torch.unique(codebook, dim=0, return_inverse=True)
    first = torch.full((K,), K, dtype=torch.long, device=dev)
    first.scatter_reduce_(0, inverse, torch.arange(K, device=dev), "amin")
    distinct = (first[inverse] == torch.arange(K, device=dev)).nonzero()[:, 0]
    book = codebook[distinct].float()
    rows, cols = [], []
    for i in range(0, len(book), chunk):
        d = torch.cdist(book[i : i + chunk], book) / book.shape[1] ** 0.5
        r, c = (d < rms).nonzero(as_tuple=True)
        off = (r + i) != c
        rows.append(distinct[r[off] + i])
        cols.append(distinct[c[off]])
    return torch.stack([torch.cat(rows), torch.cat(cols)])


def displacements(radius: int) -> list[tuple[int, int]]:
    """The view displacements (d_row, d_col) a frame may shift by: none first, then every one
    with |d_row| + |d_col| <= radius (radius 1: none, left, right, up, down)."""
    out = [(0, 0)]
    for dr in range(-radius, radius + 1):
        for dc in range(-radius, radius + 1):
            if 0 < abs(dr) + abs(dc) <= radius:
                out.append((dr, dc))
    return out


def anchor_tokens(anchored: Sequence[Sequence[int]], rows: int, cols: int) -> list[int]:
    """Token indices (row-major) of anchored view tokens [row, col] (`TileConfig.anchored`)
    in a scrolling view of rows x cols; ValueError for one outside it."""
    out = []
    for at in anchored:
        if len(at) != 2 or not (0 <= at[0] < rows and 0 <= at[1] < cols):
            raise ValueError(
                f"anchored {[list(a) for a in anchored]}: each is a [row, col] of a scrolling "
                f"token, row in [0, {rows}) and col in [0, {cols})"
            )
        out.append(at[0] * cols + at[1])
    return out


def near_tokens(
    anchored: Sequence[Sequence[int]], rows: int, cols: int, fixed_rows: int
) -> list[int]:
    """Token indices (row-major) of the scrolling tokens beside the anchored ones (up, down,
    left, right of each, in that order; anchored tokens and fixed rows left out)."""
    moving = rows - fixed_rows
    anchors = anchor_tokens(anchored, moving, cols)
    out: list[int] = []
    for r, c in anchored:
        for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            k = (r + dr) * cols + c + dc
            if 0 <= r + dr < moving and 0 <= c + dc < cols and k not in anchors + out:
                out.append(k)
    return out


def shift_table(
    rows: int, cols: int, fixed_rows: int, radius: int, anchored: Sequence[int] = ()
) -> tuple[Tensor, Tensor]:
    """Where each token of a shifted frame comes from.

    The view moves by (dr, dc) tiles: the new token (r, c) shows what the old one at
    (r + dr, c + dc) showed. Tokens in the bottom `fixed_rows` rows never move, nor do the
    `anchored` tokens (indices; `TileConfig.anchored`), and what an anchored token covered
    comes into view where the view moves off it.

    Returns:
        source [K, N] long (a token's own index where nothing is there) and
        valid [K, N] bool (False: the tile came into view and is unknown).
    """
    disp = displacements(radius)
    N = rows * cols
    source = torch.arange(N).repeat(len(disp), 1)
    valid = torch.ones(len(disp), N, dtype=torch.bool)
    moving = rows - fixed_rows
    for k, (dr, dc) in enumerate(disp):
        for r in range(moving):
            for c in range(cols):
                rr, cc = r + dr, c + dc
                if 0 <= rr < moving and 0 <= cc < cols:
                    source[k, r * cols + c] = rr * cols + cc
                else:
                    valid[k, r * cols + c] = False
    if len(anchored):
        pinned = torch.as_tensor(list(anchored))
        valid &= ~torch.isin(source, pinned) | (source == torch.arange(N))
        source[:, pinned], valid[:, pinned] = pinned, True
    return source, valid


def move_table(
    rows: int, cols: int, fixed_rows: int, anchored: Sequence[int] = ()
) -> tuple[Tensor, Tensor]:
    """`shift_table` of the move head's one-tile steps (`MOVE_OPPOSITE` order): source [5, N]
    (the neighbour each token would step onto) and valid [5, N]; an anchored token neither
    steps nor is stepped onto."""
    source, valid = shift_table(rows, cols, fixed_rows, 1)
    if len(anchored):
        pinned = torch.as_tensor(list(anchored))
        valid &= ~torch.isin(source, pinned)
        valid[1:, pinned], valid[0] = False, True
    return source, valid


def shift_from_offsets(offsets: np.ndarray, radius: int) -> np.ndarray:
    """Shift classes of each transition from recorded view offsets [T+1, 2] (row, col): the
    class of offsets[t+1] - offsets[t], or 0 (none) for a jump no class describes."""
    d = np.diff(np.asarray(offsets, dtype=np.int64), axis=0)
    out = np.zeros(len(d), dtype=np.int64)
    for k, (dr, dc) in enumerate(displacements(radius)):
        if k:
            out[(d[:, 0] == dr) & (d[:, 1] == dc)] = k
    return out


def shift_from_pixels(
    patches: Tensor, source: Tensor, valid: Tensor, margin: float = 2.0
) -> np.ndarray:
    """Shift classes of each transition of episodes' patches [..., T+1, N, D], read off the
    pixels: the shift whose shifted frame matches the next one best (RMS over the tokens both
    show), if it beats "none" by `margin` (0-255 units); else none. Used where a recording has
    no view offsets; a uniform view (all grass) reads as none. Returns int64 [..., T]."""
    prev, nxt = patches[..., :-1, :, :].float(), patches[..., 1:, :, :].float()
    errs = []
    for k in range(len(source)):
        moved = prev[..., source[k], :]
        e = ((moved - nxt) ** 2).mean(-1)  # [..., T, N]
        v = valid[k].float()
        errs.append(((e * v).sum(-1) / v.sum()).sqrt())
    errs_t = torch.stack(errs, -1)  # [..., T, K]
    best = errs_t.argmin(-1)
    gain = errs_t[..., 0] - errs_t.gather(-1, best[..., None])[..., 0]
    return torch.where(gain > margin, best, torch.zeros_like(best)).numpy()


def age_bucket(age: Tensor, buckets: int) -> Tensor:
    """Memory age in steps -> bucket 0 (no memory) or 1 + floor(log2(age)), capped."""
    b = 1 + torch.log2(age.clamp(min=1).float()).floor().long()
    return torch.where(age > 0, b.clamp(max=buckets - 1), torch.zeros_like(b))


def tick_clock(clock: Tensor, changed: Tensor) -> Tensor:
    """Clocks one step on (HUD clocks, `TileConfig.hud_clock`: `changed` where the token's code
    changed; event clocks, `TileConfig.event_clock`: where the event happened): 1 where it
    did, one more where it did not and the clock runs, 0 where it has not been seen yet."""
    return torch.where(changed, 1, torch.where(clock > 0, clock + 1, 0))


def hud_clocks(codes: Tensor, episode_start: bool = False) -> Tensor:
    """The clock of every frame of codes [B, T, F] (a HUD's tokens): steps since the token's
    code last changed within the T frames, 0 before its first change. `episode_start`: the first
    frame is the episode's first, where the game's timers start, so it counts as a change
    (clock 1 there). long [B, T, F]."""
    clock = torch.full_like(codes[:, 0], int(episode_start), dtype=torch.long)
    out = [clock]
    for t in range(1, codes.shape[1]):
        clock = tick_clock(clock, codes[:, t] != codes[:, t - 1])
        out.append(clock)
    return torch.stack(out, 1)


def event_clocks(fired: Tensor) -> Tensor:
    """The event clocks (`TileConfig.event_clock`) of every frame of an episode whose T steps
    fired events bool [T, E]: steps since each last happened, 0 before it first does (the
    first frame: none yet). long [T + 1, E]."""
    clock = torch.zeros(fired.shape[1:], dtype=torch.long)
    out = [clock]
    for t in range(len(fired)):
        clock = tick_clock(clock, fired[t])
        out.append(clock)
    return torch.stack(out)


class Canvas:
    """What was last seen at each world tile position, for B rollouts.

    The view's top-left tile is at world position `origin` [B, 2]; a shift moves it. Each cell
    of a toroidal canvas (`size` x `size` tiles) keeps the code seen there, the world position
    it was seen at (so a cell reused after a long walk is not mistaken for memory) and when.
    Only the scrolling rows of the view (not the fixed bottom rows) are remembered.
    """

    def __init__(
        self,
        batch: int,
        rows: int,
        cols: int,
        size: int = 128,
        device: torch.device | None = None,
        anchored: Sequence[int] = (),
    ) -> None:
        self.rows, self.cols, self.size = rows, cols, size
        # The view's tokens that show the world: not the anchored ones (an avatar).
        self.world = torch.ones(rows * cols, dtype=torch.bool, device=device)
        self.world[list(anchored)] = False
        self.code = torch.full((batch, size, size), NO_CODE, dtype=torch.long, device=device)
        self.where = torch.full((batch, size, size, 2), -(1 << 30), dtype=torch.long, device=device)
        self.when = torch.zeros((batch, size, size), dtype=torch.long, device=device)
        self.origin = torch.zeros((batch, 2), dtype=torch.long, device=device)
        self.step = 0
        r = torch.arange(rows, device=device).repeat_interleave(cols)
        c = torch.arange(cols, device=device).repeat(rows)
        self.grid = torch.stack([r, c], -1)  # [n, 2]

    def _cells(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The view's world positions [B, n, 2] and their cells (batch, row, column indices)."""
        pos = self.origin[:, None] + self.grid  # [B, n, 2]
        idx = pos % self.size
        b = torch.arange(len(pos), device=pos.device)[:, None].expand(-1, pos.shape[1])
        return pos, b, idx[..., 0], idx[..., 1]

    def move(self, delta: Tensor) -> None:
        """Move the view by delta [B, 2] (d_row, d_col) tiles."""
        self.origin = self.origin + delta.to(self.origin)

    def read(self) -> tuple[Tensor, Tensor]:
        """Memory of the view's scrolling tiles: codes [B, n] (NO_CODE: never seen) and ages
        [B, n] in steps (0: never seen)."""
        pos, b, i, j = self._cells()
        hit = (self.where[b, i, j] == pos).all(-1) & (self.code[b, i, j] != NO_CODE) & self.world
        code = torch.where(hit, self.code[b, i, j], torch.full_like(i, NO_CODE))
        age = torch.where(hit, self.step - self.when[b, i, j], torch.zeros_like(i))
        return code, age

    def assign(self, rows: Tensor, other: Canvas) -> None:
        """Replace the rollouts `rows` (long [b]) with those of `other` (b rollouts), keeping
        their ages."""
        self.code[rows], self.where[rows], self.origin[rows] = other.code, other.where, other.origin
        self.when[rows] = other.when + (self.step - other.step)

    def write(self, codes: Tensor) -> None:
        """Remember the view's scrolling tiles codes [B, n] (then the clock ticks); an
        anchored token's cell keeps what was seen there before the avatar covered it."""
        pos, b, i, j = self._cells()
        w = self.world
        b, i, j, pos = b[:, w], i[:, w], j[:, w], pos[:, w]
        self.code[b, i, j] = codes[:, w]
        self.where[b, i, j] = pos
        self.when[b, i, j] = self.step
        self.step += 1


def remember(
    codes: Tensor, shifts: Tensor, canvas: Canvas, seen: Tensor, disp: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Walk B rollouts through frames of codes [B, T, N] whose view moved by shift classes
    [B, T-1] (`disp`: the displacement of each class), as a rollout keeps its memory: each
    frame reads the canvas, is checked for novelty, then is written.

    Returns what every frame found before it was written: memory codes and ages
    [B, T, n] of the scrolling tokens, and novelty bool [B, T, N]. `canvas` and `seen` are
    left holding all T frames.
    """
    moving = canvas.grid.shape[0]
    mem_code, mem_age, new = [], [], []
    for t in range(codes.shape[1]):
        if t:
            canvas.move(disp[shifts[:, t - 1]])
        c, a = canvas.read()
        mem_code.append(c)
        mem_age.append(a)
        new.append(novelty(codes[:, t], seen))
        canvas.write(codes[:, t, :moving])
    return torch.stack(mem_code, 1), torch.stack(mem_age, 1), torch.stack(new, 1)


def first_events(counts: np.ndarray) -> np.ndarray:
    """Per-episode event counters [T+1, E] (a store's `events` label) -> bool [T, E]: the
    steps where each counter first leaves 0 (what pays once, e.g. Crafter's unlocks)."""
    counts = np.asarray(counts)
    return (counts[:-1] == 0) & (counts[1:] > 0)


def events_had(counts: np.ndarray, names: list[str], wanted: list[str]) -> np.ndarray:
    """Which of the events `wanted` (a model's, by name) per-episode counters [..., E] named
    `names` (a store's label spec) show as had (above 0): bool [..., len(wanted)]; an event the
    store does not count, never."""
    had = np.asarray(counts) > 0
    index = {name: i for i, name in enumerate(names)}
    out = np.zeros((*had.shape[:-1], len(wanted)), bool)
    for j, name in enumerate(wanted):
        if name in index:
            out[..., j] = had[..., index[name]]
    return out


def paying_events(spec: dict) -> np.ndarray:
    """Which of a store's named events (its label spec's `events`) pay when they first fire:
    bool [E], all but those listed `unpaid` (Crafter's falling asleep)."""
    unpaid = set(spec.get("unpaid", []))
    return np.array([name not in unpaid for name in spec.get("names", [])], bool)


def shift_tokens(tensor: Tensor, shift: Tensor, source: Tensor, valid: Tensor, fill: Any) -> Tensor:
    """Tokens [B, N, ...] moved by shift classes [B] (`shift_table`'s source and valid);
    revealed tokens get `fill`."""
    src, ok = source[shift], valid[shift]  # [B, N]
    idx = src.view(*src.shape, *([1] * (tensor.dim() - 2))).expand_as(tensor)
    out = tensor.gather(1, idx)
    mask = ok.view(*ok.shape, *([1] * (tensor.dim() - 2)))
    return torch.where(mask, out, torch.as_tensor(fill, dtype=tensor.dtype, device=tensor.device))


def novelty(codes: Tensor, seen: Tensor) -> Tensor:
    """Which tokens show a code never shown at their position before: codes [B, N] long,
    seen [B, N, K] bool (updated in place). Returns bool [B, N]."""
    B, N = codes.shape
    b = torch.arange(B, device=codes.device)[:, None].expand(B, N)
    n = torch.arange(N, device=codes.device)[None].expand(B, N)
    new = ~seen[b, n, codes]
    seen[b, n, codes] = True
    return new
