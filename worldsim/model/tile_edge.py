"""EdgePrior: draws the tiles that come into view one at a time, each from its neighbours.

A tile model's shift reveals a band of tokens at the view's edge (Crafter: a row or a column
of 9 or 7 tiles). Drawn by the tile net, each revealed token chooses alone: at temperature 0
the likeliest tile (grass everywhere), at temperature 1 the right mix of tiles but no two
neighbours agreeing (speckle). The real world is made of patches: a lake, a forest, a
mountain. The edge prior draws the band as an autoregressive model over the tile grid: each
revealed token, in a sweep order (the band nearest the known view first, then along it), gets
a categorical over the codebook from the codes of its 8 neighbours, of which only those
already known (in view, remembered or drawn before it) are shown. So a lake that reaches the
edge goes on into the new row, and the new row's tiles agree with each other.

Training: the tokens at the edge of a real frame's scrolling grid are the targets (what comes
into view is always at the edge: in Crafter never the player, who stands in the middle),
each seeing the neighbours that come before it in a sweep order drawn per frame from the 4
directions a view can move in (the same orders a rollout draws in).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["NEIGHBOURS", "EdgePrior", "sweep_rank"]

# The 8 neighbours (d_row, d_col) of a token, row by row.
NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def sweep_rank(rows: int, cols: int, direction: Tensor) -> Tensor:
    """Every grid position's place [B, rows * cols] in the order a view moving by `direction`
    [B, 2] (d_row, d_col; any sign, any size) reveals and draws: the positions furthest back
    against the motion first (the view's known part), then along a band in raster order. A
    token is drawn after every token ranked lower."""
    dev = direction.device
    r = torch.arange(rows, device=dev).repeat_interleave(cols)  # [M]
    c = torch.arange(cols, device=dev).repeat(rows)
    d = direction.sign().long()
    depth = r[None] * d[:, :1] + c[None] * d[:, 1:]  # [B, M]: how far along the motion
    return depth * (rows * cols) + torch.arange(rows * cols, device=dev)


class EdgePrior(nn.Module):
    """A categorical over `codebook_size` codes for a token from its 8 neighbours' codes
    (`codebook_size`: unknown or outside the grid).

    Args:
        codebook_size: K, the codes drawn.
        dim: width of a neighbour's code embedding.
        hidden: width of the two hidden layers.
    """

    def __init__(self, codebook_size: int, dim: int = 64, hidden: int = 256) -> None:
        super().__init__()
        self.K = codebook_size
        self.code = nn.Embedding(codebook_size + 1, dim)  # K: unknown
        self.body = nn.Sequential(
            nn.Linear(len(NEIGHBOURS) * dim, hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.GELU(),
        )
        self.head = nn.Linear(hidden, codebook_size)

    def forward(self, neighbours: Tensor) -> Tensor:
        """Logits [..., K] from the neighbours' codes [..., 8] (K: unknown)."""
        x = self.code(neighbours).flatten(-2)  # [..., 8 * dim]: each neighbour in its place
        return self.head(self.body(x))

    def neighbours(self, grid: Tensor, fill: int | None = None) -> Tensor:
        """The 8 neighbours' values [B, R, C, 8] of every token of grids [B, R, C]; outside
        the grid `fill` (None: K, unknown)."""
        R, C = grid.shape[-2:]
        padded = F.pad(grid, (1, 1, 1, 1), value=self.K if fill is None else fill)
        return torch.stack(
            [padded[:, 1 + dr : 1 + dr + R, 1 + dc : 1 + dc + C] for dr, dc in NEIGHBOURS], -1
        )

    def shown(self, grid: Tensor, rank: Tensor) -> Tensor:
        """What every token of code grids [B, R, C] is shown of its neighbours [B, R, C, 8]
        when tokens are drawn in the order `rank` [B, R, C] (`sweep_rank`): the codes of the
        neighbours ranked before it, K for the others and outside the grid."""
        after = torch.iinfo(rank.dtype).max  # outside the grid: never known
        known = self.neighbours(rank, after) < rank[..., None]
        return self.neighbours(grid).masked_fill(~known, self.K)

    def loss(
        self, grid: Tensor, bands: int = 1, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Mean negative log-likelihood of the tokens a view's motion would reveal in real
        code grids [B, R, C]: per grid a direction is drawn from the 4 a view moves in, and the
        `bands` outermost bands that way (a motion radius' worth) are the targets, each seeing
        the neighbours before it in that sweep order. Only the edge: what comes into view is
        never the middle of the view (in Crafter, never the player). Also returns the share of
        targets whose likeliest code is the real one."""
        B, R, C = grid.shape
        steps = torch.tensor([(1, 0), (-1, 0), (0, 1), (0, -1)], device=grid.device)
        pick = torch.randint(len(steps), (B,), generator=generator, device=grid.device)
        rank = sweep_rank(R, C, steps[pick]).view(B, R, C)
        depth = rank // (R * C)  # how far along the motion
        edge = depth > depth.flatten(1).max(1).values[:, None, None] - bands  # [B, R, C]
        logits = self(self.shown(grid, rank)[edge])  # [n, K]
        nll = F.cross_entropy(logits, grid[edge])
        return nll, (logits.argmax(-1) == grid[edge]).float().mean()

    @torch.no_grad()
    def draw(
        self,
        grid: Tensor,
        todo: Tensor,
        direction: Tensor,
        choose: Callable[[Tensor], Tensor],
    ) -> Tensor:
        """Fill the tokens `todo` (bool [B, R, C]) of code grids `grid` (long [B, R, C]; K
        where unknown) one at a time, in the sweep order of the view motion `direction`
        [B, 2], each from the neighbours known by then (in view, remembered or drawn);
        `choose(logits [b, K]) -> codes [b]` picks. Returns the filled grids."""
        B, R, C = grid.shape
        padded = F.pad(grid, (1, 1, 1, 1), value=self.K).view(B, -1)  # [B, (R+2)(C+2)]
        todo = todo.reshape(B, R * C)
        rank = sweep_rank(R, C, direction)
        order = rank.masked_fill(~todo, torch.iinfo(rank.dtype).max).argsort(1)  # [B, M]
        offsets = torch.tensor([dr * (C + 2) + dc for dr, dc in NEIGHBOURS], device=grid.device)
        rows = torch.arange(B, device=grid.device)
        for i in range(int(todo.sum(1).max())):
            at = order[:, i]
            live = todo[rows, at]
            b, at = rows[live], at[live]
            centre = (at // C + 1) * (C + 2) + at % C + 1  # [b] in the padded grid
            # Every token ranked before `at` is known by now; the rest show K.
            near = padded[b[:, None], centre[:, None] + offsets]  # [b, 8]
            padded[b, centre] = choose(self(near))
        return padded.view(B, R + 2, C + 2)[:, 1:-1, 1:-1]
