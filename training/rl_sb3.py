"""Stable-Baselines3 PPO("CnnPolicy") over the Gymnasium env: a standard client trains in the dream.

    worldsim rl train --algo sb3-ppo --num_envs 4 --total_timesteps 50000 --out agents/sb3
    worldsim rl train --algo sb3-ppo --real_game crafter --total_timesteps 50000 --out agents/sb3-real  # baseline
    python -m training.rl_sb3 --help

Each of the `num_envs` envs is a plain ``gym.make("worldsim/...")`` in SB3's DummyVecEnv, so
nothing here knows it is a world model. The agent folder holds the policy's weights as
safetensors (read by `worldsim.agents.load_agent_policy`, no pickles) plus SB3's own zip for
`PPO.load`. SB3 logs rollout/ep_rew_mean, train/value_loss, ... to OUT/sb3_logs (CSV and
TensorBoard).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from training.rl_common import check_counts, multiples, set_threads, trainer_main
from worldsim.agents import (
    AgentError,
    check_spaces,
    load_weights,
    read_agent_config,
    save_weights,
    write_agent_config,
)


@dataclass
class SB3Args:
    """SB3 PPO hyperparameters (SB3's Atari zoo settings, scaled to a CPU, unless noted)."""

    seed: int = 1
    """seed of the run (SB3 seeds env k with seed + k)"""
    total_timesteps: int = 100_000
    """env steps to train for, summed over the envs"""
    num_envs: int = 4
    """envs in SB3's DummyVecEnv (stepped one after another; each loads its own world model)"""
    n_steps: int = 128
    """steps per env per rollout"""
    batch_size: int = 256
    """minibatch size"""
    n_epochs: int = 4
    """epochs of updates per rollout"""
    learning_rate: float = 2.5e-4
    """Adam learning rate"""
    gamma: float = 0.99
    """discount factor"""
    gae_lambda: float = 0.95
    """lambda of generalised advantage estimation"""
    clip_range: float = 0.1
    """surrogate clipping coefficient"""
    ent_coef: float = 0.01
    """entropy bonus coefficient"""
    vf_coef: float = 0.5
    """value loss coefficient"""
    max_grad_norm: float = 0.5
    """gradient clipping norm"""
    features_dim: int = 512
    """output width of SB3's NatureCNN feature extractor"""
    sampler_steps: int | None = None
    """denoising steps per dream frame (None: the checkpoint's default)"""
    max_episode_steps: int | None = None
    """cut episodes after this many steps (None: the env id's limit)"""
    device: str = "auto"
    """where the world models and the policy run: auto, cpu or cuda"""
    torch_threads: int | None = None
    """CPU threads for torch (None: its default); 1 avoids thrashing on a busy CPU"""


def check_args(args: SB3Args) -> None:
    """Raise AgentError for hyperparameters SB3 PPO cannot run exactly (named, with the fix).

    SB3 collects whole rollouts of num_envs * n_steps steps and would overshoot any other
    total_timesteps, so the total must be a multiple of that.
    """
    check_counts(
        args,
        ("total_timesteps", "num_envs", "n_steps", "batch_size", "n_epochs", "features_dim"),
        ("sampler_steps", "max_episode_steps", "torch_threads"),
    )
    rollout = args.num_envs * args.n_steps
    if args.total_timesteps % rollout:
        raise AgentError(
            f"total_timesteps {args.total_timesteps} is not a multiple of the rollout, "
            f"num_envs {args.num_envs} x n_steps {args.n_steps} = {rollout} (SB3 collects whole "
            f"rollouts): pass total_timesteps {multiples(args.total_timesteps, rollout)}, or "
            "change num_envs or n_steps"
        )


def env_factory(
    args: SB3Args,
    world: str = "worldsim/Crafter-v0",
    checkpoint: str | Path | None = None,
    real_game: str | None = None,
) -> Callable[[], gym.Env]:
    """A function making one env: the dream `world` id, or the real game `real_game`."""
    kwargs: dict[str, Any] = {}
    if args.max_episode_steps is not None:
        kwargs["max_episode_steps"] = args.max_episode_steps
    if real_game is not None:
        from envs.games import make_game

        return lambda: make_game(real_game, **kwargs)
    from envs.world_model_registry import register_world_model_envs

    register_world_model_envs()
    kwargs["device"] = args.device
    if checkpoint is not None:
        kwargs["checkpoint"] = str(checkpoint)
    if args.sampler_steps is not None:
        kwargs["sampler_steps"] = args.sampler_steps
    return lambda: gym.make(world, **kwargs)


def _timed_vec_env(venv: Any) -> Any:
    """Wrap an SB3 VecEnv to count the seconds spent stepping it (`.env_seconds`)."""
    from stable_baselines3.common.vec_env import VecEnvWrapper

    class TimedVecEnv(VecEnvWrapper):
        env_seconds = 0.0

        def reset(self) -> Any:
            return self.venv.reset()

        def step_wait(self) -> Any:
            t0 = time.perf_counter()
            result = self.venv.step_wait()
            self.env_seconds += time.perf_counter() - t0
            return result

    return TimedVecEnv(venv)


def policy_kwargs(features_dim: int) -> dict[str, Any]:
    """The CnnPolicy's keyword arguments (JSON-ready: saved in agent.json)."""
    return {"features_extractor_kwargs": {"features_dim": int(features_dim)}}


def train(
    args: SB3Args,
    make_env: Callable[[], gym.Env],
    out: str | Path | None = None,
    *,
    init_agent: str | Path | None = None,
    metadata: dict[str, Any] | None = None,
    verbose: bool = False,
) -> dict[str, Any]:
    """Train SB3 PPO("CnnPolicy") on `num_envs` copies of `make_env()`; save it to `out` if given.

    Returns:
        A summary: global_step, mean episodic return of the last 100 episodes, steps/s overall
        and of the env alone, and the SB3 model ("model").
    """
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.logger import configure

    check_args(args)
    set_threads(args.torch_threads)
    venv = _timed_vec_env(make_vec_env(make_env, n_envs=args.num_envs, seed=args.seed))
    check_spaces(venv.observation_space, venv.action_space)
    model = PPO(
        "CnnPolicy",
        venv,
        n_steps=args.n_steps,
        batch_size=args.batch_size,
        n_epochs=args.n_epochs,
        learning_rate=args.learning_rate,
        gamma=args.gamma,
        gae_lambda=args.gae_lambda,
        clip_range=args.clip_range,
        ent_coef=args.ent_coef,
        vf_coef=args.vf_coef,
        max_grad_norm=args.max_grad_norm,
        policy_kwargs=policy_kwargs(args.features_dim),
        seed=args.seed,
        device=args.device,
        verbose=int(verbose),
    )
    before = 0
    if init_agent is not None:  # continue an sb3-ppo agent from its safetensors weights
        config = read_agent_config(init_agent)
        if config["algo"] != "sb3-ppo":
            raise AgentError(
                f"{init_agent} is a {config['algo']} agent: continue it with that algo"
            )
        load_weights(Path(init_agent), model.policy)
        before = int(config["metadata"].get("total_steps", 0))
    if out is not None:
        out = Path(out)
        formats = ["stdout", "csv", "tensorboard"] if verbose else ["csv", "tensorboard"]
        model.set_logger(configure(str(out / "sb3_logs"), formats))
    start = time.perf_counter()
    try:
        model.learn(total_timesteps=args.total_timesteps)
    finally:
        venv.close()
    seconds = time.perf_counter() - start
    returns = [float(info["r"]) for info in model.ep_info_buffer]
    summary = {
        "model": model,
        "out": str(out) if out is not None else None,
        "global_step": int(model.num_timesteps),
        "episodes": len(returns),
        "mean_episodic_return": float(np.mean(returns)) if returns else None,
        "steps_per_second": model.num_timesteps / seconds,
        "env_steps_per_second": model.num_timesteps / max(venv.env_seconds, 1e-9),
        "seconds": seconds,
    }
    if out is not None:
        meta = {
            **(metadata or {}),
            "global_step": model.num_timesteps,
            "total_steps": before + model.num_timesteps,  # over every run that trained it
        }
        save_sb3_agent(out, model, args, venv.observation_space, meta)
    return summary


def save_sb3_agent(
    out: str | Path,
    model: Any,
    args: SB3Args,
    observation_space: gym.Space,
    metadata: dict[str, Any],
) -> Path:
    """Write the agent folder: agent.json, the policy as model.safetensors, SB3's sb3_model.zip.

    `observation_space` is the env's (frames [H, W, C]), not the policy's transposed one.
    """
    folder = write_agent_config(
        out,
        algo="sb3-ppo",
        observation_space=observation_space,
        action_space=model.action_space,
        network={"policy": "CnnPolicy", "policy_kwargs": policy_kwargs(args.features_dim)},
        hyperparameters=asdict(args),
        metadata=metadata,
    )
    save_weights(folder, model.policy)
    model.save(folder / "sb3_model.zip")
    return folder


def run(
    args: SB3Args,
    out: str | Path | None,
    *,
    world: str = "worldsim/Crafter-v0",
    checkpoint: str | Path | None = None,
    real_game: str | None = None,
    init_agent: str | Path | None = None,
    verbose: bool = False,
) -> dict[str, Any]:
    """Train SB3 PPO in the dream `world` (or the real game `real_game`) and save to `out`."""
    check_args(args)
    metadata = {
        "trained_in": f"real:{real_game}" if real_game else "dream",
        "world": None if real_game else world,
        "checkpoint": str(checkpoint) if checkpoint is not None else None,
        "game": real_game,
        "init_agent": str(init_agent) if init_agent is not None else None,
    }
    make_env = env_factory(args, world, checkpoint, real_game)
    return train(args, make_env, out, init_agent=init_agent, metadata=metadata, verbose=verbose)


def main(argv: list[str] | None = None) -> int:
    """`python -m training.rl_sb3`: every SB3Args field is an option (`--help`), or a YAML `--config`."""
    return trainer_main(argv, prog="python -m training.rl_sb3", description=__doc__.split("\n\n")[0],
                        args_class=SB3Args, run=run, out="agents/sb3")  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
