"""Batched PPO (CleanRL-style, one readable file) on a vector env: the dream, or a real game.

    worldsim rl train --algo ppo --num_envs 16 --total_timesteps 100000 --out agents/ppo
    python -m training.rl_ppo --checkpoint models/crafter --total_timesteps 20000 --out agents/ppo
    python -m training.rl_ppo --help      # every hyperparameter, with its one-line docstring

This is CleanRL's ppo_atari.py on `WorldModelVectorEnv`: B dream envs advance in one batched
world-model call, and rollouts, advantages and updates stay as tensors on the model's device
(the vector env hands back numpy frames: they are converted once per step). Differences from
CleanRL, and why: Gymnasium 1.x vector envs with SAME_STEP autoreset (the ended episode's last
frame is in info["final_obs"]); truncated episodes are bootstrapped with the value of that
frame, since dream episodes are cut short by a time limit rather than ending; no frame stacking
or Atari wrappers (the world model's frames are the game's). Metrics use CleanRL's names
(charts/episodic_return, losses/value_loss, ...) in TensorBoard and in OUT/metrics.jsonl.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from envs.dream import DreamCore
from training.ppo_update import advantages_and_returns, ppo_update
from training.rl_common import (
    MetricsLog,
    check_counts,
    env_device,
    make_vector_env,
    multiples,
    set_threads,
    trainer_main,
)
from worldsim.agents import ActorCritic, AgentError, NetworkConfig, load_actor_critic, save_agent


@dataclass
class PPOArgs:
    """Batched PPO hyperparameters (CleanRL's ppo_atari defaults unless noted)."""

    seed: int = 1
    """seed of the run: network init, action sampling, env starts"""
    total_timesteps: int = 100_000
    """env steps to train for, summed over the envs"""
    num_envs: int = 16
    """parallel envs B, stepped by one batched world-model call"""
    num_steps: int = 64
    """steps per env per rollout (a rollout is num_envs * num_steps transitions)"""
    learning_rate: float = 2.5e-4
    """Adam learning rate"""
    anneal_lr: bool = True
    """decay the learning rate linearly to 0 over the run"""
    gamma: float = 0.99
    """discount factor"""
    gae_lambda: float = 0.95
    """lambda of generalised advantage estimation"""
    num_minibatches: int = 4
    """minibatches per epoch over a rollout"""
    update_epochs: int = 4
    """epochs of updates per rollout"""
    norm_adv: bool = True
    """normalise advantages per minibatch"""
    clip_coef: float = 0.1
    """surrogate clipping coefficient"""
    clip_vloss: bool = True
    """clip the value loss like the policy loss"""
    ent_coef: float = 0.01
    """entropy bonus coefficient"""
    vf_coef: float = 0.5
    """value loss coefficient"""
    max_grad_norm: float = 0.5
    """gradient clipping norm"""
    target_kl: float | None = None
    """stop a rollout's updates early once the approximate KL exceeds this (None: never)"""
    channels: tuple[int, int, int] = (32, 64, 64)
    """conv widths of the agent's Nature-DQN torso"""
    hidden: int = 512
    """width of the agent's shared linear layer"""
    sampler_steps: int | None = None
    """denoising steps per dream frame (None: the checkpoint's default); fewer is faster"""
    max_episode_steps: int | None = None
    """cut episodes after this many steps (None: the env id's limit)"""
    start_store: str | None = None
    """dream episodes start from the first frames of this store's episodes, as real ones
    start (None: from the release's starting contexts)"""
    device: str = "auto"
    """where the world model and agent run: auto (a GPU if there is one), cpu or cuda"""
    save_interval: int = 10
    """save the agent every this many rollouts (and at the end)"""
    torch_threads: int | None = None
    """CPU threads for torch (None: its default); 1 avoids thrashing on a busy CPU"""


def check_args(args: PPOArgs) -> None:
    """Raise AgentError for hyperparameters PPO cannot run with (named, with the fix)."""
    check_counts(
        args,
        ("total_timesteps", "num_envs", "num_steps", "num_minibatches", "update_epochs",
         "save_interval", "hidden"),
        ("sampler_steps", "max_episode_steps", "torch_threads"),
    )  # fmt: skip
    B = args.num_envs
    if args.total_timesteps % B:
        raise AgentError(
            f"total_timesteps {args.total_timesteps} is not a multiple of num_envs {B}: every "
            f"vector step advances all {B} envs; pass total_timesteps "
            f"{multiples(args.total_timesteps, B)}"
        )


def rollout_lengths(args: PPOArgs) -> list[int]:
    """Steps per env of each rollout: num_steps, and a shorter last one for the remainder.

    So a run trains exactly total_timesteps env steps (a multiple of num_envs).
    """
    full, rest = divmod(args.total_timesteps, args.num_envs * args.num_steps)
    return [args.num_steps] * full + ([rest // args.num_envs] if rest else [])


# ------------------------------------------------------------------ training
def train(
    args: PPOArgs,
    envs: gym.vector.VectorEnv,
    out: str | Path | None = None,
    *,
    agent: ActorCritic | None = None,
    metadata: dict[str, Any] | None = None,
    verbose: bool = True,
) -> dict[str, Any]:
    """Train `agent` (a new one if None) with PPO on `envs`; save it to `out` if given.

    Args:
        args: hyperparameters (`args.num_envs` must be `envs.num_envs`).
        envs: a Gymnasium vector env with SAME_STEP autoreset (see `make_vector_env`).
        out: the agent folder to write (agent.json, model.safetensors, metrics.jsonl, tb/).
        agent: an agent to continue training (e.g. from `load_actor_critic`).
        metadata: extras for agent.json (the world model it was trained in, ...).
        verbose: print one line per rollout.

    Returns:
        A summary: global_step, episodes, episodic returns, last losses, steps/s overall and of
        the env alone (dream generation), and one row per rollout in "history".

    Raises:
        AgentError: hyperparameters out of range (`check_args`), or envs/agent that do not fit.
    """
    check_args(args)
    if envs.metadata.get("autoreset_mode") != AutoresetMode.SAME_STEP:
        raise AgentError("PPO needs a vector env with autoreset_mode=SAME_STEP (make_vector_env)")
    if envs.num_envs != args.num_envs:
        raise AgentError(f"args.num_envs={args.num_envs} but the env has {envs.num_envs}")
    out = Path(out) if out is not None else None
    set_threads(args.torch_threads)
    device = env_device(envs, args.device)
    B, T = args.num_envs, args.num_steps
    lengths = rollout_lengths(args)  # [T, ..., T, T_last]: exactly total_timesteps steps
    num_iterations = len(lengths)

    torch.manual_seed(args.seed)
    if agent is None:
        agent = ActorCritic(
            envs.single_observation_space,
            envs.single_action_space,
            NetworkConfig(tuple(args.channels), args.hidden),
        )
    elif agent.action_space != envs.single_action_space:
        raise AgentError(
            f"the agent acts in {agent.action_space}, the env in {envs.single_action_space}"
        )
    agent = agent.to(device).train()
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)
    generator = torch.Generator(device=device).manual_seed(args.seed)  # action sampling
    shuffler = torch.Generator().manual_seed(args.seed)  # minibatch order
    log = MetricsLog(out, args)

    # Rollout storage, on the device: frames uint8 [T, B, H, W, C], the rest [T, B].
    obs = torch.zeros(
        (T, B, *envs.single_observation_space.shape), dtype=torch.uint8, device=device
    )
    actions = torch.zeros((T, B), dtype=torch.long, device=device)
    logprobs, rewards, dones, values = (torch.zeros((T, B), device=device) for _ in range(4))

    global_step, env_seconds, start = 0, 0.0, time.perf_counter()
    if args.start_store is not None and not isinstance(envs.unwrapped, DreamCore):
        raise AgentError(
            f"start_store {args.start_store}: only a dream starts from a store; a real game "
            "starts its own episodes"
        )
    options = None if args.start_store is None else {"store": args.start_store}
    next_obs_np, _ = envs.reset(seed=args.seed, options=options)
    next_obs = torch.as_tensor(next_obs_np, device=device)  # [B, H, W, C]
    next_done = torch.zeros(B, device=device)
    episode_return = torch.zeros(B, device=device)
    episode_length = torch.zeros(B, dtype=torch.long, device=device)
    all_returns: list[float] = []
    history: list[dict[str, Any]] = []

    for iteration in range(1, num_iterations + 1):
        if args.anneal_lr:
            optimizer.param_groups[0]["lr"] = (
                1.0 - (iteration - 1.0) / num_iterations
            ) * args.learning_rate
        finished: list[tuple[float, int]] = []
        reward_sum = torch.zeros((), device=device)  # the env's rewards in this rollout
        T_i = lengths[iteration - 1]  # T, or less for the last rollout
        batch_size = B * T_i
        minibatch_size = max(1, batch_size // args.num_minibatches)

        for step in range(T_i):
            global_step += B
            obs[step], dones[step] = next_obs, next_done
            with torch.no_grad():
                action, logprob, _, value = agent.get_action_and_value(
                    next_obs, generator=generator
                )
            values[step], actions[step], logprobs[step] = value, action, logprob

            t0 = time.perf_counter()
            next_obs_np, reward_np, terminated, truncated, infos = envs.step(action.cpu().numpy())
            env_seconds += time.perf_counter() - t0
            reward = torch.as_tensor(reward_np, dtype=torch.float32, device=device)  # [B]
            episode_return += reward
            reward_sum += reward.sum()
            episode_length += 1
            # A time limit is not the end of the world: bootstrap from the frame it cut at.
            cut = np.flatnonzero(truncated & ~terminated)
            if len(cut):
                final = torch.stack([torch.as_tensor(infos["final_obs"][i], device=device)
                                     for i in cut])  # fmt: skip
                with torch.no_grad():
                    reward[cut] += args.gamma * agent.get_value(final)
            rewards[step] = reward
            next_obs = torch.as_tensor(next_obs_np, device=device)
            ended = torch.as_tensor(terminated | truncated, device=device)
            next_done = ended.float()
            for i in torch.nonzero(ended).flatten().tolist():
                ret, length = float(episode_return[i]), int(episode_length[i])
                finished.append((ret, length))
                log.scalar("charts/episodic_return", ret, global_step)
                log.scalar("charts/episodic_length", length, global_step)
            episode_return[ended], episode_length[ended] = 0.0, 0

        with torch.no_grad():
            advantages, returns = advantages_and_returns(
                rewards[:T_i], values[:T_i], dones[:T_i], agent.get_value(next_obs), next_done,
                args.gamma, args.gae_lambda,
            )  # fmt: skip
        # Flatten the rollout to [T_i * B, ...].
        b_obs = obs[:T_i].reshape(-1, *obs.shape[2:])
        b_logprobs, b_actions = logprobs[:T_i].reshape(-1), actions[:T_i].reshape(-1)
        b_advantages, b_returns = advantages.reshape(-1), returns.reshape(-1)
        b_values = values[:T_i].reshape(-1)

        losses = ppo_update(
            agent, optimizer, args, shuffler, minibatch_size,
            b_obs, b_actions, b_logprobs, b_advantages, b_returns, b_values,
        )  # fmt: skip

        y_pred, y_true = b_values.cpu().numpy(), b_returns.cpu().numpy()
        var_y = np.var(y_true)
        explained_var = np.nan if var_y == 0 else 1 - np.var(y_true - y_pred) / var_y

        elapsed = time.perf_counter() - start
        all_returns += [r for r, _ in finished]
        row = {
            "iteration": iteration,
            "global_step": global_step,
            "charts/learning_rate": optimizer.param_groups[0]["lr"],
            "charts/episodic_return": float(np.mean([r for r, _ in finished]))
            if finished
            else None,
            "charts/episodic_length": float(np.mean([n for _, n in finished]))
            if finished
            else None,
            "charts/episodes": len(finished),
            "charts/reward_per_step": reward_sum.item() / batch_size,  # also without episode ends
            **{f"losses/{name}": value for name, value in losses.items()},
            "losses/explained_variance": float(explained_var),
            "charts/SPS": global_step / elapsed,
            "charts/env_SPS": global_step / max(env_seconds, 1e-9),
        }
        for name, value in row.items():
            if "/" in name and name != "charts/episodic_return" and value is not None:
                log.scalar(name, value, global_step)
        log.row(row)
        history.append(row)
        if verbose:
            ret = row["charts/episodic_return"]
            print(
                f"ppo {iteration}/{num_iterations} step {global_step} "
                f"return {'-' if ret is None else f'{ret:.2f}'} "
                f"value_loss {row['losses/value_loss']:.4f} SPS {row['charts/SPS']:.0f} "
                f"env_SPS {row['charts/env_SPS']:.0f}",
                flush=True,
            )
        if out is not None and (iteration % args.save_interval == 0 or iteration == num_iterations):
            meta = {**(metadata or {}), "global_step": global_step, "episodes": len(all_returns)}
            save_agent(out, agent, hyperparameters=asdict(args), metadata=meta)
    log.close()
    agent.eval()
    last = history[-1]
    return {
        "agent": agent,
        "out": str(out) if out is not None else None,
        "global_step": global_step,
        "episodes": len(all_returns),
        "episodic_returns": all_returns,
        "mean_episodic_return": float(np.mean(all_returns)) if all_returns else None,
        "reward_per_step": float(np.mean([row["charts/reward_per_step"] for row in history])),
        "losses": {k: v for k, v in last.items() if k.startswith("losses/")},
        "steps_per_second": last["charts/SPS"],
        "env_steps_per_second": last["charts/env_SPS"],
        "seconds": time.perf_counter() - start,
        "history": history,
    }


def run(
    args: PPOArgs,
    out: str | Path | None,
    *,
    world: str = "worldsim/Crafter-v0",
    checkpoint: str | Path | None = None,
    real_game: str | None = None,
    init_agent: str | Path | None = None,
    verbose: bool = True,
) -> dict[str, Any]:
    """Make the envs (dream or real), train (continuing `init_agent` if given), save to `out`."""
    check_args(args)  # before the envs load a world model
    envs = make_vector_env(args, world, checkpoint, real_game)
    try:
        steps = args.total_timesteps  # exactly what train() runs
        agent, before = None, 0
        if init_agent is not None:
            agent, config = load_actor_critic(init_agent)
            before = int(config["metadata"].get("total_steps", 0))
        metadata = {
            "trained_in": f"real:{real_game}" if real_game else "dream",
            "world": None if real_game else world,
            "checkpoint": str(checkpoint) if checkpoint is not None else None,
            "game": real_game or getattr(envs.unwrapped, "game", None),
            "init_agent": str(init_agent) if init_agent is not None else None,
            "total_steps": before + steps,  # over every run that trained this agent
        }
        return train(args, envs, out, agent=agent, metadata=metadata, verbose=verbose)
    finally:
        envs.close()


def main(argv: list[str] | None = None) -> int:
    """`python -m training.rl_ppo`: every PPOArgs field is an option (`--help`), or a YAML `--config`."""
    return trainer_main(argv, prog="python -m training.rl_ppo", description=__doc__.split("\n\n")[0],
                        args_class=PPOArgs, run=run, out="agents/ppo")  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
