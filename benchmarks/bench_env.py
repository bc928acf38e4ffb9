"""Speed of the dream as an environment: play frame rate, vector env steps/s, SB3 PPO wall time.

Run (quick):  python benchmarks/bench_env.py --play-steps 50 --vector-steps 5 --ppo-steps 256
Full:         python benchmarks/bench_env.py --out benchmarks/results/env.json

Without --checkpoint it uses the bundled Crafter model if installed, else a randomly
initialised model of --preset (speed does not depend on the weights), at 64x64 with Crafter's
spaces and starting contexts taken from the real game.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # play.py lives at the repo root


def random_release(path: Path, preset_name: str, contexts: int = 4) -> Path:
    """A release of an untrained `preset_name` model with real Crafter starting contexts."""
    from envs.games import make_game
    from worldsim.checkpoint import save_release
    from worldsim.model import WorldModelNet, preset

    env = make_game("crafter")
    config = preset(preset_name, height=64, width=64)
    K = max(config.context - 1, 1)
    frames, actions = [], []
    for i in range(contexts):
        obs, _ = env.reset(seed=i)
        clip, acts = [obs], []
        for _ in range(K - 1):
            a = int(env.action_space.sample())
            clip.append(env.step(a)[0])
            acts.append(a)
        frames.append(np.stack(clip))
        actions.append(np.asarray(acts, np.int64))
    names = list(env.unwrapped.action_names)
    net = WorldModelNet(config, env.action_space)
    save_release(
        path, net, observation_space=env.observation_space, action_space=env.action_space,
        contexts={"frames": np.stack(frames), "actions": np.stack(actions)},
        metadata={"game": "crafter", "fps": 10, "action_names": names, "note": f"random {preset_name}"},
    )  # fmt: skip
    env.close()
    return path


def bench_play(checkpoint: Path, steps: int, device: str) -> dict[str, float]:
    """play.py's frame rate, uncapped (--fps 0), headless, at default and 1/2/4 sampler steps."""
    import play

    threads = torch.get_num_threads()  # play.py sets its own (1 by default): restored below
    out = {}
    for label, extra in [
        ("default", []),
        ("1", ["--sampler-steps", "1"]),
        ("2", ["--sampler-steps", "2"]),
        ("4", ["--sampler-steps", "4"]),
    ]:
        argv = [
            "--checkpoint",
            str(checkpoint),
            "--fps",
            "0",
            "--steps",
            str(steps),
            "--device",
            device,
            "--seed",
            "0",
            *extra,
        ]
        result = play.play(play.build_parser().parse_args(argv))
        out[label] = result.fps
        print(
            f"play  sampler steps {label:>7}: {result.fps:6.1f} frames/s ({steps} steps)",
            flush=True,
        )
    torch.set_num_threads(threads)
    return out


def bench_vector(
    checkpoint: Path, batches: list[int], steps: int, device: str, tensors: bool = False
) -> dict[int, float]:
    """Vector env steps/s (env steps: B per call) at each batch size B; with `tensors` the
    observations stay torch tensors on the device, as `worldsim rl train` runs the dream."""
    from envs.world_model_env import load_world_model
    from envs.world_model_vector_env import WorldModelVectorEnv

    world_model = load_world_model(checkpoint, device=device)
    out = {}
    for B in batches:
        env = WorldModelVectorEnv(B, world_model=world_model, tensors=tensors)
        env.reset(seed=0)
        env.action_space.seed(0)
        for _ in range(2):  # warm-up
            env.step(env.action_space.sample())
        _sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            env.step(env.action_space.sample())
        _sync(device)
        out[B] = B * steps / (time.perf_counter() - start)
        kind = "tensors" if tensors else "numpy"
        print(f"vector env B={B:3d} ({kind}): {out[B]:8.1f} env steps/s", flush=True)
    return out


def bench_real(steps: int) -> float:
    """Real Crafter steps/s in this process (random actions, resets included): the speed the
    batched dream is compared with."""
    from envs.games import make_game

    env = make_game("crafter")
    env.reset(seed=0)
    env.action_space.seed(0)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    rate = steps / (time.perf_counter() - start)
    env.close()
    print(f"real Crafter: {rate:8.1f} steps/s", flush=True)
    return rate


def bench_ppo(checkpoint: Path, steps: int, device: str) -> dict[str, float]:
    """SB3 PPO("CnnPolicy") wall time per 10k env steps, dream vs the real Crafter."""
    from stable_baselines3 import PPO

    from envs.games import make_game
    from envs.world_model_env import WorldModelEnv

    out = {}
    for name, make in [
        ("real", lambda: make_game("crafter")),
        ("dream", lambda: WorldModelEnv(checkpoint, device=device)),
    ]:
        env = make()
        n_steps = min(2048, steps)
        model = PPO(
            "CnnPolicy", env, n_steps=n_steps, batch_size=min(64, n_steps), seed=0, device=device
        )
        start = time.perf_counter()
        model.learn(total_timesteps=steps)
        out[name] = (time.perf_counter() - start) * 10_000 / model.num_timesteps
        print(
            f"PPO CnnPolicy {name:>5}: {out[name]:7.1f} s per 10k env steps ({model.num_timesteps} steps)",
            flush=True,
        )
        env.close()
    return out


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkpoint", type=Path, help="release folder (default: bundled, else random --preset)"
    )
    parser.add_argument(
        "--preset", default="S", help="model preset for a random release (default S)"
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--play-steps", type=int, default=200, help="steps per play measurement (0: skip)"
    )
    parser.add_argument(
        "--batches", type=int, nargs="+", default=[1, 8, 32, 64], help="vector env sizes"
    )
    parser.add_argument(
        "--vector-steps", type=int, default=20, help="timed steps per batch size (0: skip)"
    )
    parser.add_argument(
        "--ppo-steps", type=int, default=2048, help="PPO env steps per env (0: skip)"
    )
    parser.add_argument(
        "--real-steps", type=int, default=2000, help="timed real Crafter steps (0: skip)"
    )
    parser.add_argument("--tensors", action="store_true",
                        help="vector env observations as torch tensors (as `worldsim rl train`)")  # fmt: skip
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

    from envs.world_model_registry import bundled_checkpoint_path

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint
        if checkpoint is None and (bundled_checkpoint_path() / "config.json").is_file():
            checkpoint = bundled_checkpoint_path()
        if checkpoint is None:
            checkpoint = random_release(Path(tmp) / "release", args.preset)
        saved = json.loads((checkpoint / "config.json").read_text())
        config = saved["model_config"]
        steps = (saved.get("sampler_config") or config).get("sampler_steps")
        patch = config.get("patch_size", config.get("patch"))
        print(f"checkpoint {checkpoint} ({config.get('kind', 'diffusion')}, dim {config['dim']}, depth {config['depth']}, patch {patch}, "
              f"sampler steps {steps}), device {args.device}, torch threads {torch.get_num_threads()}")  # fmt: skip
        results: dict[str, Any] = {"checkpoint": str(args.checkpoint or "bundled or random " + args.preset),
                                   "model_config": config, "device": args.device}  # fmt: skip
        if args.play_steps:
            results["play_fps"] = bench_play(checkpoint, args.play_steps, args.device)
        if args.vector_steps:
            results["vector_steps_per_s"] = bench_vector(
                checkpoint, args.batches, args.vector_steps, args.device, args.tensors
            )
            results["vector_tensors"] = args.tensors
        if args.real_steps:
            results["real_steps_per_s"] = bench_real(args.real_steps)
        if args.ppo_steps:
            results["ppo_seconds_per_10k"] = bench_ppo(checkpoint, args.ppo_steps, args.device)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    gym.logger.min_level = 40  # quiet SB3/Gymnasium image-space warnings
    sys.exit(main())
