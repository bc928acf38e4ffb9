"""`worldsim rl train|eval`: train agents inside a world model; evaluate them in the real game.

worldsim rl train --world worldsim/Crafter-v0 --algo ppo --num-envs 16 --steps 100000 --out agents/ppo
worldsim rl train --checkpoint models/crafter --algo sb3-ppo --steps 50000 --out agents/sb3
worldsim rl train --real-game crafter --algo sb3-ppo --steps 50000 --out agents/sb3-real
worldsim rl eval --agent agents/ppo --game crafter --episodes 20 --out report.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from worldsim.cli.argtypes import device, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rl",
        help="train RL agents in a world model, evaluate them in the real game",
        description=__doc__.split("\n\n")[0],
    )
    rl = p.add_subparsers(dest="rl_command", metavar="{train,eval}")
    rl.required = True
    t = rl.add_parser(
        "train",
        help="train an agent purely inside a world model (or, as a baseline, in the real game)",
        description=(
            "Train an agent in the dream: batched PPO (--algo ppo, CleanRL-style, on "
            "WorldModelVectorEnv) or Stable-Baselines3 PPO('CnnPolicy') over the Gymnasium env "
            "(--algo sb3-ppo). Every hyperparameter can be set with --hp KEY=VALUE; "
            "`python -m training.rl_ppo --help` / `python -m training.rl_sb3 --help` list them."
        ),
        epilog="example: worldsim rl train --world worldsim/Crafter-v0 --algo ppo --num-envs 16 --steps 100000 --out agents/ppo",
    )
    t.add_argument("--world", default="worldsim/Crafter-v0",
                   help="world-model env id (default: worldsim/Crafter-v0, the bundled model)")  # fmt: skip
    t.add_argument("--checkpoint", default=None,
                   help="a released world model folder (uses worldsim/WorldModel-v0)")  # fmt: skip
    t.add_argument("--real-game", default=None, metavar="GAME",
                   help="train in the real game instead of a dream (the baseline), e.g. crafter")  # fmt: skip
    t.add_argument("--algo", default="ppo", choices=["ppo", "sb3-ppo"], help="default: ppo")
    t.add_argument(
        "--num-envs", type=positive_int, default=None, help="parallel envs B (default: the algo's)"
    )
    t.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help="env steps to train for, over all envs: exactly this many (ppo: a multiple of "
        "--num-envs; sb3-ppo: of --num-envs x n_steps)",
    )
    t.add_argument("--out", required=True, help="agent folder to write")
    t.add_argument("--seed", type=int, default=None, help="seed of the run")
    t.add_argument("--device", type=device, default=None, help="auto | cpu | cuda (default: auto)")
    t.add_argument(
        "--sampler-steps", type=positive_int, default=None, help="denoising steps per dream frame"
    )
    t.add_argument(
        "--max-episode-steps", type=positive_int, default=None, help="cut episodes at this length"
    )
    t.add_argument("--init-agent", default=None, help="agent folder (same algo) to train further")
    t.add_argument("--hp", action="append", default=[], metavar="KEY=VALUE",
                   help="any hyperparameter of the algo, e.g. --hp learning_rate=1e-4 (repeatable)")  # fmt: skip
    t.add_argument("--quiet", action="store_true", help="no progress lines")
    t.set_defaults(func=run_train)

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


def run_train(args: argparse.Namespace) -> int:
    if args.algo == "ppo":
        from training import rl_ppo as algo

        hparams = algo.PPOArgs()
    else:
        from training import rl_sb3 as algo

        hparams = algo.SB3Args()
    from training.rl_common import with_overrides

    flags = {
        "num_envs": args.num_envs,
        "total_timesteps": args.steps,
        "seed": args.seed,
        "device": args.device,
        "sampler_steps": args.sampler_steps,
        "max_episode_steps": args.max_episode_steps,
    }
    hparams = dataclasses.replace(hparams, **{k: v for k, v in flags.items() if v is not None})
    hparams = with_overrides(hparams, args.hp)
    world = args.world
    if args.checkpoint is not None and world == "worldsim/Crafter-v0":
        world = "worldsim/WorldModel-v0"  # an explicit checkpoint replaces the bundled model
    summary = algo.run(hparams, args.out, world=world, checkpoint=args.checkpoint,
                       real_game=args.real_game, init_agent=args.init_agent,
                       verbose=not args.quiet)  # fmt: skip
    ret = summary["mean_episodic_return"]
    print(
        f"saved {args.out} ({args.algo}, {summary['global_step']} steps in "
        f"{'the real ' + args.real_game if args.real_game else world}, "
        f"{summary['seconds']:.0f} s, env {summary['env_steps_per_second']:.0f} steps/s, "
        f"mean episodic return {'-' if ret is None else f'{ret:.2f}'})"
    )
    return 0


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
