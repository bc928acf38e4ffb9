"""`worldsim collect`: record real play of a game into an episode store."""

from __future__ import annotations

import argparse
import inspect
import json
from pathlib import Path
from typing import Any

from worldsim.cli.argtypes import non_negative_int, positive_int
from worldsim.errors import WorldsimError


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
        help="crafter | doom-health | doom-map | breakout | pong | minetest | atari:<ALE id> | gym:<Gymnasium id> | minerl:<id> (default: crafter)",
    )
    p.add_argument(
        "--episodes",
        type=non_negative_int,
        default=10,
        help="episodes of this policy and seed the store holds when done (default: 10)",
    )
    p.add_argument("--out", required=True, help="store directory or fsspec URL")
    p.add_argument(
        "--policy",
        default="sticky",
        help="random | sticky | explorer (walks in runs of 2-10 steps and interacts; first-person "
        "games such as minetest: walks, turns, jumps and digs) | builder (an explorer that also tries "
        "Crafter's place_/make_ actions after it interacts) | sleeper (a builder that also sleeps) | "
        "achiever (reads Crafter's screen from its labels and climbs the tech tree: stone, "
        "furnace, iron) | path of a saved agent (default: sticky)",
    )
    p.add_argument(
        "--workers", type=positive_int, default=1, help="parallel worker processes (default: 1)"
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="run seed; episode k uses a seed derived from (seed, k) (default: 0)",
    )
    p.add_argument(
        "--max-steps",
        type=positive_int,
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


def game_arguments(game: str) -> list[str] | None:
    """The keyword arguments the adapter of `game` takes (None: it takes any, or unknown)."""
    import gymnasium as gym
    from gymnasium.envs.registration import load_env_creator

    from envs.games import resolve

    game_spec = resolve(game)
    entry_point = gym.spec(game_spec.gym_id).entry_point
    try:
        params = inspect.signature(load_env_creator(entry_point)).parameters.values()
    except (TypeError, ValueError, ImportError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    fixed = set(game_spec.kwargs)  # chosen by the game name itself (atari:<id> sets env_id)
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in params if p.kind in kinds and p.name not in fixed]


def check_game_args(game: str, kwargs: dict[str, Any], items: list[str]) -> None:
    """Raise WorldsimError for --game-arg keys the game does not take, or values it refuses.

    Values are checked by making the game once (only when --game-arg is given), so a bad
    value fails here, named, and not as a traceback inside a worker process.
    """
    if not kwargs:
        return
    from envs.games import make_game

    accepted = game_arguments(game)
    if accepted is not None:
        unknown = [k for k in kwargs if k not in accepted]
        if "max_episode_steps" in unknown:
            raise WorldsimError("--game-arg max_episode_steps: use --max-steps N instead")
        if unknown:
            raise WorldsimError(
                f"--game-arg {unknown[0]}: {game} takes no argument {unknown[0]!r}; it takes "
                f"{', '.join(accepted) or 'none'}"
            )
    try:
        make_game(game, **kwargs).close()
    except (TypeError, ValueError) as e:
        if isinstance(e, WorldsimError):
            raise
        shown = " ".join(f"--game-arg {item}" for item in items)
        reason = str(e).split(" was raised from the environment creator")[0]
        raise WorldsimError(f"{shown}: {game} refuses it ({reason})") from None


def check_out(out: str) -> None:
    """Raise WorldsimError if --out is a local path that exists and is not a directory."""
    if "://" in out:
        return  # an fsspec URL: the store checks it
    path = Path(out).expanduser()
    if path.exists() and not path.is_dir():
        raise WorldsimError(
            f"--out {out} is an existing file, not a store directory: pass a new or existing "
            "store directory (e.g. data/crafter)"
        )


def run(args: argparse.Namespace) -> int:
    from envs.collect import CollectConfig, collect

    check_out(args.out)
    game_kwargs = parse_game_args(args.game_arg)
    check_game_args(args.game, game_kwargs, args.game_arg)
    cfg = CollectConfig(
        game=args.game,
        episodes=args.episodes,
        out=args.out,
        policy=args.policy,
        workers=args.workers,
        seed=args.seed,
        max_steps=args.max_steps,
        game_kwargs=game_kwargs,
    )
    summary = collect(cfg, progress=not args.quiet)
    print(
        f"added {summary['episodes_added']} episodes ({summary['frames_added']} frames) in "
        f"{summary['seconds']:.1f} s: {summary['frames_per_second']:.0f} frames/s; "
        f"mean return {summary['mean_return']:.2f}; the store now holds {summary['episodes_in_store']} episodes"
    )
    return 0
