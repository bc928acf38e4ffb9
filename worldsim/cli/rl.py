"""`worldsim rl train|eval`: train agents inside a world model; evaluate them in the real game.

worldsim rl train --algo ppo --num_envs 16 --total_timesteps 100000 --out agents/ppo
worldsim rl train --algo sb3-ppo --checkpoint models/crafter --total_timesteps 50000 --out agents/sb3
worldsim rl train --algo sb3-ppo --real_game crafter --total_timesteps 50000 --out agents/sb3-real
worldsim rl train --algo ppo --help        # every hyperparameter, with its one-line docstring
worldsim rl eval --agent agents/ppo --game crafter --episodes 20 --out report.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from worldsim.cli.argtypes import positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rl",
        help="train RL agents in a world model, evaluate them in the real game",
        description=__doc__.split("\n\n")[0],
    )
    rl = p.add_subparsers(dest="rl_command", metavar="{train,eval}")
    rl.required = True
    rl.add_parser(
        "train",
        add_help=False,  # `worldsim rl train` is the trainer's own command line (train_main)
        help="train an agent purely inside a world model (or, as a baseline, in the real game)",
    )

    e = rl.add_parser(
        "eval",
        help="run an agent in the REAL game: return, Crafter score, achievement success rates",
        description=(
            "Play N episodes of the real game with an agent (and, as a baseline, a random "
            "policy on the same worlds); report return and, for Crafter, the official score."
        ),
        epilog="example: worldsim rl eval --agent agents/ppo --game crafter --episodes 20 --out report.json",
    )
    e.add_argument("--agent", required=True, help="agent folder, or 'random'")
    e.add_argument("--game", default="crafter", help="real game (default: crafter)")
    e.add_argument(
        "--episodes", type=positive_int, default=10, help="episodes per policy (default: 10)"
    )
    e.add_argument("--seed", type=int, default=0, help="episode k plays the world of (seed, k)")
    e.add_argument(
        "--max-steps", type=positive_int, default=None, help="cut episodes at this length"
    )
    e.add_argument("--deterministic", action="store_true", help="most likely action, no sampling")
    e.add_argument("--no-baseline", action="store_true", help="skip the random-policy baseline")
    e.add_argument("--out", default=None, help="write the report here as JSON")
    e.add_argument("--quiet", action="store_true", help="no line per episode")
    e.set_defaults(func=run_eval)


TRAIN_DESCRIPTION = (
    "Train an agent in the dream: batched PPO (--algo ppo, CleanRL-style, on "
    "WorldModelVectorEnv) or Stable-Baselines3 PPO('CnnPolicy') over the Gymnasium env "
    "(--algo sb3-ppo). Every hyperparameter of the algo is an option; --config reads them "
    "from a YAML file, --print_config writes them."
)


def train_main(argv: list[str]) -> int:
    """`worldsim rl train [--algo ppo|sb3-ppo] ...`: the chosen trainer's jsonargparse command
    line (the same as `python -m training.rl_ppo` / `training.rl_sb3`)."""
    pre = argparse.ArgumentParser(prog="worldsim rl train", add_help=False)
    pre.add_argument("--algo", default="ppo", choices=["ppo", "sb3-ppo"])
    known, rest = pre.parse_known_args(argv)
    from training import rl_ppo, rl_sb3
    from training.rl_common import trainer_main

    algo, args_class = (rl_ppo, rl_ppo.PPOArgs) if known.algo == "ppo" else (rl_sb3, rl_sb3.SB3Args)
    return trainer_main(rest, prog=f"worldsim rl train --algo {known.algo}",
                        description=TRAIN_DESCRIPTION, args_class=args_class, run=algo.run,
                        out=f"agents/{known.algo}")  # fmt: skip


def run_eval(args: argparse.Namespace) -> int:
    from training.rl_eval import evaluate_agent, format_reports

    reports = evaluate_agent(
        args.agent,
        args.game,
        episodes=args.episodes,
        seed=args.seed,
        max_steps=args.max_steps,
        baseline=not args.no_baseline,
        deterministic=args.deterministic,
        verbose=not args.quiet,
    )
    print(format_reports(reports))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(reports, indent=1))
        print(f"wrote {args.out}", file=sys.stderr)
    return 0
