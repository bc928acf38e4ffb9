"""Loop-consistency cases played in the real game: walk away and back, where the player returned.

`worldsim.bench.loops` scores loops (from recordings and from here); this module is where the
benchmark touches a real game, so it lives with the games:

    store_loop_tests(world_model, store, ..., play_real=play_loops)
"""

from __future__ import annotations

import numpy as np

from envs.games import make_game
from worldsim.bench.loops import LoopCase

__all__ = ["play_loops"]


def play_loops(
    game: str,
    pattern: np.ndarray,
    context: int,
    count: int,
    *,
    frame_shape: tuple[int, ...],
    seed: int = 0,
    moves: list[int] | None = None,
) -> list[LoopCase]:
    """Play `count` loops in the real game (fresh episodes), keeping those where the player
    really came back (when the game reports `player_pos`). The K-1 context steps are random
    `moves` (default: the loop's own two actions).

    Raises:
        UnknownGameError / GameDependencyError: no real game of that name here.
        ValueError: the game makes frames of another shape than `frame_shape`.
    """
    try:
        env = make_game(game, size=tuple(frame_shape[:2]))
    except TypeError:
        env = make_game(game)
    if tuple(env.observation_space.shape) != tuple(frame_shape):
        env.close()
        raise ValueError(
            f"{game} makes frames {env.observation_space.shape}, the data has {frame_shape}"
        )
    rng = np.random.default_rng(seed)
    moves = moves or sorted(set(pattern.tolist()))
    cases = []
    try:
        for attempt in range(4 * count):
            obs, info = env.reset(seed=int(rng.integers(2**31 - 1)))
            frames, actions = [obs], []
            for a in [*rng.choice(moves, size=context - 1).tolist(), *pattern.tolist()]:
                obs, _, terminated, truncated, info_t = env.step(a)
                frames.append(obs)
                actions.append(a)
                if len(actions) == context - 1:
                    info = info_t  # the start of the loop
                if terminated or truncated:
                    break
            if len(actions) < context - 1 + len(pattern):
                continue
            start_pos, end_pos = info.get("player_pos"), info_t.get("player_pos")
            returned = None if start_pos is None else bool(np.array_equal(start_pos, end_pos))
            if returned is False:
                continue
            cases.append(
                LoopCase(np.stack(frames), np.array(actions), f"{game} attempt {attempt}", returned)
            )
            if len(cases) >= count:
                break
    finally:
        env.close()
    return cases
