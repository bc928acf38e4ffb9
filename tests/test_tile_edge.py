"""The edge prior: new ground drawn one tile at a time from its neighbours, in patches."""

from __future__ import annotations

import torch

from worldsim.model.tile_edge import EdgePrior, sweep_rank
from worldsim.model.tile_rollout import _choose

K, R, C = 8, 5, 6


PLAYER = K - 1  # stands in the middle of every view, as Crafter's player does


def _stripes(n: int, gen: torch.Generator) -> torch.Tensor:
    """n grids [n, R, C], half of one random code per row, half per column, the player in the
    middle."""
    rows = torch.randint(K - 1, (n, R, 1), generator=gen).expand(n, R, C)
    cols = torch.randint(K - 1, (n, 1, C), generator=gen).expand(n, R, C)
    grids = torch.where(torch.arange(n)[:, None, None] % 2 == 0, rows, cols).clone()
    grids[:, R // 2, C // 2] = PLAYER
    return grids


def test_revealed_tokens_are_drawn_after_everything_in_view() -> None:
    for d in [(1, 0), (-1, 0), (0, 1), (0, -1)]:
        rank = sweep_rank(R, C, torch.tensor([d])).view(R, C)
        edge = {(1, 0): rank[-1], (-1, 0): rank[0], (0, 1): rank[:, -1], (0, -1): rank[:, 0]}[d]
        inner = {(1, 0): rank[:-1], (-1, 0): rank[1:], (0, 1): rank[:, :-1], (0, -1): rank[:, 1:]}
        assert edge.min() > inner[d].max()
        assert (edge.diff() > 0).all()  # along the band in raster order


def test_the_edge_prior_learns_patches_and_draws_a_new_row_that_holds_together() -> None:
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    prior = EdgePrior(K, dim=16, hidden=64)
    opt = torch.optim.Adam(prior.parameters(), lr=3e-3)
    first = None
    for _ in range(600):
        loss, _acc = prior.loss(_stripes(64, gen), generator=gen)
        first = float(loss) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss) < 0.5 * first

    # A new bottom row under 64 known views: rows of stripes (the row's code cannot be known,
    # but all its tiles must agree) and columns (each tile continues its column).
    grids = _stripes(64, torch.Generator().manual_seed(1))
    todo = torch.zeros_like(grids, dtype=torch.bool)
    todo[:, -1] = True
    shown = grids.masked_fill(todo, K)
    down = torch.tensor([[1, 0]]).expand(64, 2)

    def sample(logits: torch.Tensor) -> torch.Tensor:
        return _choose(logits, 1.0, gen)

    drawn = prior.draw(shown, todo, down, sample)
    assert torch.equal(drawn[~todo], grids[~todo])  # only the revealed tokens are drawn
    new = drawn[:, -1]
    by_row, by_col = new[0::2], new[1::2]
    assert (by_row == by_row[:, :1]).all(1).float().mean() > 0.9  # one code along the row
    assert len(by_row[:, 0].unique()) >= 3  # ...drawn, not one fixed code
    assert (by_col == grids[1::2, -1]).float().mean() > 0.75  # the columns go on
    assert not (new == PLAYER).any()  # trained on the edge: the middle's player never comes in
    # Each token drawn alone (no neighbour drawn before it is shown) would be speckle.
    alone = torch.stack([sample(prior(prior.neighbours(shown)[:, -1, j])) for j in range(C)], 1)
    assert (alone[0::2] == alone[0::2, :1]).all(1).float().mean() < 0.3
