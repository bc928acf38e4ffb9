"""RL figures: dream env steps/s while training (batched PPO, SB3 PPO), and the real-game table.

Quick:  python benchmarks/bench_rl.py --speed-steps 512 --dream-steps 2048 --real-steps 2048 --episodes 2
Full:   python benchmarks/bench_rl.py --dream-steps 200000 --real-steps 60000 --episodes 20 \
            --out benchmarks/results/rl.json

Speed: env steps/s of the dream alone (time inside env.step) and of the whole training loop,
for the batched PPO at each --num-envs and for SB3 PPO over the Gymnasium env. The table: the
Crafter score and return in the REAL game of (a) a random policy, (b) the batched-PPO agent
trained only in the dream for --dream-steps (or --dream-agent DIR), (c) SB3 PPO trained in the
real game for --real-steps (or --real-agent DIR): give it as many steps as built the world
model's data. Without --checkpoint it uses the bundled Crafter model if installed, else an
untrained model shaped like --config (fine for speed; the table is then meaningless, and says so).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch


def untrained_release(path: Path, config: str, contexts: int = 4) -> Path:
    """A release of an untrained model shaped like training config `config`, real Crafter contexts."""
    import numpy as np
    import yaml

    from envs.games import make_game
    from training.world_model_loop import config_path
    from worldsim.checkpoint import save_release
    from worldsim.model import WorldModelNet, preset

    model = yaml.safe_load(config_path(config).read_text())["model"]["init_args"]
    net_config = preset(model["preset"], **(model.get("overrides") or {}), height=64, width=64)
    env = make_game("crafter")
    K = max(net_config.context // 2, 1)  # what `worldsim export` ships
    frames, actions = [], []
    for i in range(contexts):
        clip, acts = [env.reset(seed=i)[0]], []
        for _ in range(K - 1):
            acts.append(int(env.action_space.sample()))
            clip.append(env.step(acts[-1])[0])
        frames.append(np.stack(clip))
        actions.append(np.asarray(acts, np.int64))
    net = WorldModelNet(net_config, env.action_space)
    save_release(path, net, observation_space=env.observation_space, action_space=env.action_space,
                 contexts={"frames": np.stack(frames), "actions": np.stack(actions)},
                 metadata={"game": "crafter", "fps": 10, "note": f"untrained {config}"})  # fmt: skip
    env.close()
    return path


def world_checkpoint(args: argparse.Namespace, tmp: Path) -> tuple[Path, bool]:
    """(release folder, trained?): --checkpoint, the bundled model, or an untrained --config."""
    from envs.world_model_registry import bundled_checkpoint_path

    if args.checkpoint:
        return Path(args.checkpoint), True
    bundled = bundled_checkpoint_path("crafter")
    if (bundled / "config.json").is_file():
        return bundled, True
    print(f"no bundled model: timing an untrained {args.config!r} model", file=sys.stderr)
    return untrained_release(tmp / "untrained", args.config), False


def bench_speed(checkpoint: Path, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Dream env steps/s (env alone and whole training loop) for batched PPO and SB3 PPO."""
    from training import rl_ppo, rl_sb3

    out: dict[str, Any] = {}
    for B in args.num_envs:
        ppo = rl_ppo.PPOArgs(total_timesteps=max(args.speed_steps, 2 * B * 32), num_envs=B,
                             num_steps=32, device=args.device, torch_threads=args.threads)  # fmt: skip
        s = rl_ppo.run(
            ppo, None, world="worldsim/WorldModel-v0", checkpoint=checkpoint, verbose=False
        )
        out[f"ppo_B{B}"] = _speed(s)
        print(f"batched PPO, B={B}: {_line(out[f'ppo_B{B}'])}", flush=True)
    sb3 = rl_sb3.SB3Args(total_timesteps=args.speed_steps, num_envs=args.sb3_envs,
                         n_steps=max(32, args.speed_steps // (2 * args.sb3_envs)),
                         batch_size=64, device=args.device, torch_threads=args.threads)  # fmt: skip
    s = rl_sb3.run(sb3, None, world="worldsim/WorldModel-v0", checkpoint=checkpoint)
    out[f"sb3_ppo_{args.sb3_envs}envs"] = _speed(s)
    print(f"SB3 PPO, {args.sb3_envs} envs: {_line(out[f'sb3_ppo_{args.sb3_envs}envs'])}")
    return out


def _speed(summary: dict[str, Any]) -> dict[str, float]:
    return {
        "steps": summary["global_step"],
        "env_steps_per_second": round(summary["env_steps_per_second"], 1),
        "train_steps_per_second": round(summary["steps_per_second"], 1),
    }


def _line(speed: dict[str, float]) -> str:
    return (
        f"dream env {speed['env_steps_per_second']:.0f} steps/s, "
        f"training loop {speed['train_steps_per_second']:.0f} steps/s"
    )


def bench_table(checkpoint: Path, trained: bool, args: argparse.Namespace, tmp: Path) -> dict:
    """Real-game evaluation of random, the dream-trained agent, and SB3 PPO trained for real."""
    from training import rl_ppo, rl_sb3
    from training.rl_eval import PUBLISHED_CRAFTER_SCORES, evaluate, format_reports
    from worldsim.agents import load_agent_policy

    agents: dict[str, tuple[str | None, str]] = {"random": (None, "random policy")}
    seconds: dict[str, float] = {}
    if args.dream_agent or args.dream_steps:
        path = args.dream_agent
        if not path:
            path, t0 = str(tmp / "dream_ppo"), time.perf_counter()
            hp = rl_ppo.PPOArgs(total_timesteps=args.dream_steps, num_envs=args.num_envs[-1],
                                device=args.device, torch_threads=args.threads)  # fmt: skip
            rl_ppo.run(
                hp, path, world="worldsim/WorldModel-v0", checkpoint=checkpoint, verbose=False
            )
            seconds["dream"] = time.perf_counter() - t0
        agents["dream"] = (path, f"batched PPO, {_steps(path)} dream steps")
    if args.real_agent or args.real_steps:
        path = args.real_agent
        if not path:
            path, t0 = str(tmp / "real_sb3"), time.perf_counter()
            hp = rl_sb3.SB3Args(total_timesteps=args.real_steps, num_envs=args.sb3_envs,
                                device=args.device, torch_threads=args.threads)  # fmt: skip
            rl_sb3.run(hp, path, real_game="crafter")
            seconds["real"] = time.perf_counter() - t0
        agents["real"] = (path, f"SB3 PPO, {_steps(path)} real steps")
    reports = {}
    for key, (path, label) in agents.items():
        from envs.policies import make_policy

        policy = (
            make_policy("random", _crafter_actions()) if path is None else load_agent_policy(path)
        )
        report = evaluate(
            policy, "crafter", args.episodes, seed=args.seed, max_steps=args.max_steps
        )
        reports[key] = {**report, "policy": label}
    print(format_reports(reports))
    if not trained:
        print("(the world model is untrained: the dream agent's row measures nothing)")
    return {
        "world_model": str(checkpoint),
        "world_model_trained": trained,
        "reports": reports,
        "training_seconds": seconds,
        "published": PUBLISHED_CRAFTER_SCORES,
    }


def _steps(agent: str) -> int:
    from worldsim.agents import read_agent_config

    return int(read_agent_config(agent)["metadata"].get("global_step", 0))


def _crafter_actions() -> Any:
    import gymnasium as gym

    return gym.spaces.Discrete(17)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=None, help="world model release (default: bundled)")
    p.add_argument("--config", default="crafter_default",
                   help="training config whose untrained model is timed if none is bundled")  # fmt: skip
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--num-envs", type=lambda s: [int(x) for x in s.split(",")], default=[16, 64],
                   help="batched-PPO env counts to time, comma-separated (default: 16,64)")  # fmt: skip
    p.add_argument("--sb3-envs", type=int, default=4, help="SB3 DummyVecEnv size (default: 4)")
    p.add_argument(
        "--speed-steps", type=int, default=4096, help="env steps per speed run (0: skip)"
    )
    p.add_argument("--dream-steps", type=int, default=0, help="train the dream agent this long")
    p.add_argument("--dream-agent", default=None, help="or evaluate this dream-trained agent")
    p.add_argument(
        "--real-steps", type=int, default=0, help="train SB3 PPO in real Crafter this long"
    )
    p.add_argument("--real-agent", default=None, help="or evaluate this real-trained agent")
    p.add_argument("--episodes", type=int, default=10, help="real-game episodes per policy")
    p.add_argument("--max-steps", type=int, default=None, help="cut evaluation episodes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write the figures here as JSON")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results: dict[str, Any] = {"device": args.device, "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint, trained = world_checkpoint(args, Path(tmp))
        if args.speed_steps:
            results["speed"] = bench_speed(checkpoint, args, Path(tmp))
        if args.episodes:
            results["table"] = bench_table(checkpoint, trained, args, Path(tmp))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1, default=str))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
