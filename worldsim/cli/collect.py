"""`worldsim collect`: record real play of a game into an episode store."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "collect",
        help="record real play into an episode store",
        description=(
            "Play a real game with a behaviour policy and append the episodes to a store. "
            "Resumable: running the same command again plays only the episodes still missing; "
            "a larger --episodes or another --seed adds episodes."
        ),
        epilog="example: worldsim collect --game crafter --episodes 20 --out data/crafter --policy sticky --workers 2",
    )
    p.add_argument(
        "--game",
        default="crafter",
        help="crafter | doom-health | doom-map | breakout | pong | atari:<ALE id> | gym:<Gymnasium id> | minerl:<id> (default: crafter)",
    )
    p.add_argument(
        "--episodes",
        type=int,
        default=10,
        help="episodes of this policy and seed the store holds when done (default: 10)",
    )
    p.add_argument("--out", required=True, help="store directory or fsspec URL")
    p.add_argument(
        "--policy",
        default="sticky",
        help="random | sticky | explorer (walks in runs of 2-10 steps and interacts) | path of "
        "a saved agent (default: sticky)",
    )
    p.add_argument("--workers", type=int, default=1, help="parallel worker processes (default: 1)")
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="run seed; episode k uses a seed derived from (seed, k) (default: 0)",
    )
    p.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="truncate episodes at this many steps (default: the game's time limit)",
    )
    p.add_argument(
        "--game-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra game argument, e.g. --game-arg size=96 (JSON values), repeatable",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def parse_game_args(items: list[str]) -> dict:
    """KEY=VALUE pairs, values parsed as JSON where they are JSON (96, [120,160], true)."""
    from worldsim.errors import WorldsimError

    out = {}
    for item in items:
        if "=" not in item:
            raise WorldsimError(f"--game-arg {item!r} is not KEY=VALUE")
        key, value = item.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def run(args: argparse.Namespace) -> int:
    from envs.collect import CollectConfig, collect

    cfg = CollectConfig(
        game=args.game,
        episodes=args.episodes,
        out=args.out,
        policy=args.policy,
        workers=args.workers,
        seed=args.seed,
        max_steps=args.max_steps,
        game_kwargs=parse_game_args(args.game_arg),
    )
    summary = collect(cfg, progress=not args.quiet)
    print(
        f"added {summary['episodes_added']} episodes ({summary['frames_added']} frames) in "
        f"{summary['seconds']:.1f} s: {summary['frames_per_second']:.0f} frames/s; "
        f"mean return {summary['mean_return']:.2f}; the store now holds {summary['episodes_in_store']} episodes"
    )
    return 0
