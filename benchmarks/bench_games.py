"""Real-game collection speed, one process, random actions: `python benchmarks/bench_games.py [--steps 2000]`."""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from envs import make_game

GAMES = [
    "crafter",
    "doom-health",
    "doom-map",
    "breakout",
    "pong",
    "gym:CartPole-v1",
    "gym:CarRacing-v3",
]


def bench(name: str, steps: int, seed: int = 0) -> dict[str, float]:
    """Frames per second of ``steps`` uniformly random steps, resets included.

    Returns:
        ``{"fps": ..., "episodes": ..., "make_s": ..., "frame": (H, W)}``.
    """
    start = time.perf_counter()
    env = make_game(name)
    make_s = time.perf_counter() - start
    env.action_space.seed(seed)
    frames, _ = env.reset(seed=seed)
    episodes = 0
    start = time.perf_counter()
    for _ in range(steps):
        frames, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            episodes += 1
            frames, _ = env.reset()
    seconds = time.perf_counter() - start
    env.close()
    return {
        "fps": steps / seconds,
        "episodes": episodes,
        "make_s": make_s,
        "frame": frames.shape[:2],
    }


def main() -> None:
    """Print one line per game: frames/s, episodes ended, construction time, frame size."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=2000, help="random steps per game")
    parser.add_argument("--games", nargs="*", default=GAMES, help="make_game names")
    args = parser.parse_args()
    print(f"{args.steps} random steps per game, 1 process, load average {os.getloadavg()[0]:.2f}")
    print(f"{'game':<20} {'frames/s':>9} {'episodes':>9} {'make s':>7}  frame")
    rates = []
    for name in args.games:
        result = bench(name, args.steps)
        rates.append(result["fps"])
        height, width = result["frame"]
        print(
            f"{name:<20} {result['fps']:>9.0f} {result['episodes']:>9d} "
            f"{result['make_s']:>7.2f}  {height}x{width}"
        )
    print(f"geometric mean {float(np.exp(np.mean(np.log(rates)))):.0f} frames/s")


if __name__ == "__main__":
    main()
