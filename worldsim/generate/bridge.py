"""Bridge two frames: the frames between a start and an end frame, both held clean, on any
`WorldModel` (a planned walk on tile models, the best of sampled rollouts on any model)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from worldsim.generate.clip import GenerateError, Generation, check_picture
from worldsim.generate.tile import bridge_tiles, find_offset
from worldsim.generate.tools import WorldModel, _enc, _is_tiles, _shape, _x
from worldsim.spaces import noop_action, stack_actions, tree_index

__all__ = ["bridge"]


def _choices(space: gym.Space) -> np.ndarray | Any:
    """Actions a planned walk picks from: every action of a Discrete space, else the no-op."""
    if isinstance(space, gym.spaces.Discrete):
        return np.arange(space.start, space.start + space.n)
    return stack_actions(space, [noop_action(space)])


@torch.inference_mode()
def bridge(
    wm: WorldModel,
    start_frame: Any,
    end_frame: Any,
    n: int,
    *,
    method: str = "plan",
    offset: tuple[int, int] | None = None,
    candidates: int = 4,
    remember_end: bool = True,
    pull: bool = True,
    steps: int | None = None,
    generator: torch.Generator | None = None,
) -> Generation:
    """The n frames between a start and an end frame, both held clean.

    `method="plan"` (tile models): walk from the start view to the end's (`offset` in tiles,
    read off the tiles both show if None), one tile per step, with the end frame in the world
    memory (`remember_end`) and its tiles in view given to a growing share of their tokens
    (`pull`: a share (t + 1) / n at step t); the best of `candidates` walks. `method="sample"` (any model): `candidates`
    rollouts under random actions; keeps the one whose last frame is nearest the end frame.

    Returns:
        Generation of n + 2 frames: start, the n made, end.
    """
    shape = _shape(wm)
    start = check_picture(start_frame, shape)
    end = check_picture(end_frame, shape)
    if n < 1 or candidates < 1:
        raise GenerateError(
            f"bridge needs n >= 1 frames and candidates >= 1 (got {n}, {candidates})"
        )
    seed = 0 if generator is None else int(torch.randint(2**31 - 1, (1,), generator=generator))
    space = wm.action_space
    if method == "plan":
        if not _is_tiles(wm):
            raise GenerateError(
                "bridge method 'plan' walks the tile model's world memory: this is a diffusion "
                "model (its frames attend only to earlier ones, so a held end frame cannot steer "
                "them); use method='sample'"
            )
        if offset is None:
            offset = find_offset(wm.net, start, end)
        choices = _choices(space)
        new, picks, rewards, info = bridge_tiles(
            wm.rollout,
            start,
            end,
            n,
            tuple(offset),
            _enc(wm, choices),
            candidates=candidates,
            remember_end=remember_end,
            pull=pull,
            steps=steps,
            generator=generator,
            seed=seed,
        )
        acts = tree_index(choices, picks)
    elif method == "sample":
        new, acts, rewards, info = _bridge_sample(
            wm, start, end, n, candidates, seed, steps, generator
        )
    else:
        raise GenerateError(f"bridge method {method!r} is not 'plan' or 'sample'")
    frames = np.concatenate([start[None], new, end[None]])
    gen_mask = np.r_[False, np.ones(n, bool), False]
    return Generation(
        "bridge",
        frames,
        gen_mask,
        acts,
        np.r_[rewards, np.nan].astype(np.float32),
        None,
        {"method": method, **info},
    )


def _bridge_sample(wm, start, end, n, candidates, seed, steps, generator):
    space = wm.action_space
    space.seed(seed)
    acts = [stack_actions(space, [space.sample() for _ in range(n + 1)]) for _ in range(candidates)]
    enc = torch.stack([_enc(wm, a) for a in acts])  # [c, n+1, A]
    x0 = _x(wm, start[None]).repeat(candidates, 1, 1, 1, 1)
    state = wm.rollout.start(x0, enc[:, :0])
    xs, rs = [], []
    for t in range(n):
        x, r, _ = wm.rollout.next(state, enc[:, t : t + 1], steps=steps, generator=generator)
        xs.append(x)
        rs.append(r)
    frames = wm.net.x_to_frames(torch.cat(xs, 1)).cpu().numpy()  # [c, n, H, W, C]
    err = ((frames[:, -1].astype(np.float32) - end.astype(np.float32)) ** 2).mean((1, 2, 3))
    best = int(err.argmin())
    rewards = torch.cat(rs, 1)[best].float().cpu().numpy()
    return (
        frames[best],
        acts[best],
        rewards,
        {"candidates": candidates, "end_mse": float(err[best])},
    )
