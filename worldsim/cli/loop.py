"""`worldsim loop`: the world-model RL loop (collect real play, fit the world model, train in the dream).

worldsim loop --game crafter --iterations 5 --real-steps-per-iteration 20000 --out runs/loop
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "loop",
        help="world-model RL loop: collect real play, fit the world model, train in the dream, repeat",
        description=(
            "Each iteration collects real play with the current agent (random at first), fits "
            "the world model further, exports it, and trains the agent inside it. Everything is "
            "written to one run directory (--out) with its state in loop.json: running the "
            "same command again resumes; a larger --iterations adds iterations."
        ),
        epilog="example: worldsim loop --game crafter --iterations 3 --real-steps-per-iteration 10000 --out runs/loop",
    )
    p.add_argument("--game", default="crafter", help="real game (default: crafter)")
    p.add_argument("--iterations", type=int, default=3, help="iterations (default: 3)")
    p.add_argument("--real-steps-per-iteration", type=int, default=10_000,
                   help="real env steps collected per iteration (default: 10000)")  # fmt: skip
    p.add_argument("--out", required=True, help="the run directory")
    p.add_argument("--world-model-config", default="crafter_tiles",
                   help="Lightning config: a name in training/configs (crafter_tiles, tiles_tiny, "
                        "crafter_default, ...) or a YAML path (default: crafter_tiles, the tile "
                        "world model)")  # fmt: skip
    p.add_argument("--init-from", default=None, metavar="RELEASE",
                   help="release folder the world model starts from, e.g. worldsim/assets/crafter "
                        "(default: the config's model.init_from)")  # fmt: skip
    p.add_argument("--fit-steps-per-iteration", type=int, default=500,
                   help="world-model training steps per iteration (default: 500)")  # fmt: skip
    p.add_argument("--fit-arg", action="append", default=[], metavar="OPTION=VALUE",
                   help="extra `worldsim fit` option, e.g. --fit-arg=--trainer.accelerator=gpu (repeatable)")  # fmt: skip
    p.add_argument(
        "--algo", default="ppo", choices=["ppo", "sb3-ppo"], help="dream agent (default: ppo)"
    )
    p.add_argument("--dream-steps-per-iteration", type=int, default=50_000,
                   help="agent env steps in the dream per iteration (default: 50000)")  # fmt: skip
    p.add_argument("--num-envs", type=int, default=16, help="dream envs (default: 16)")
    p.add_argument("--hp", action="append", default=[], metavar="KEY=VALUE",
                   help="agent hyperparameter, any option of the trainer's own command line "
                        "(`worldsim rl train --algo ALGO --help`), e.g. --hp learning_rate=1e-4 or "
                        "--hp channels=[16,32,32] (repeatable)")  # fmt: skip
    p.add_argument("--max-episode-steps", type=int, default=None,
                   help="cut real episodes at this length (default: the game's)")  # fmt: skip
    p.add_argument("--eval-episodes", type=int, default=0,
                   help="real-game evaluation episodes after each iteration (default: 0)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="run seed (default: 0)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's; 1 is faster on a busy CPU)")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from training.world_model_loop import LoopConfig, run_loop

    cfg = LoopConfig(
        game=args.game,
        iterations=args.iterations,
        real_steps_per_iteration=args.real_steps_per_iteration,
        out=args.out,
        world_model_config=args.world_model_config,
        init_from=args.init_from,
        fit_steps_per_iteration=args.fit_steps_per_iteration,
        fit_args=list(args.fit_arg),
        algo=args.algo,
        dream_steps_per_iteration=args.dream_steps_per_iteration,
        num_envs=args.num_envs,
        agent_hp=list(args.hp),
        max_episode_steps=args.max_episode_steps,
        eval_episodes=args.eval_episodes,
        seed=args.seed,
        device=args.device,
        torch_threads=args.threads,
        verbose=not args.quiet,
    )
    state = run_loop(cfg)
    for record in state["iterations"][: cfg.iterations]:
        score = (record.get("eval") or {}).get("crafter_score")
        reward = record.get("dream_reward_per_step")
        print(
            f"iteration {record['iteration']}: {record.get('real_steps')} real steps, world model "
            f"step {record.get('world_model_step')}, {record.get('dream_steps')} dream steps"
            + (f" (dream reward/step {reward:.4f})" if reward is not None else "")
            + (f", real-game Crafter score {score:.2f}%" if score is not None else "")
        )
    print(f"run directory: {cfg.out} (state in {cfg.out}/loop.json)")
    return 0
