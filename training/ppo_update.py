"""PPO's arithmetic on one rollout: generalised advantage estimation and the clipped update.

Split from `training.rl_ppo` (which collects the rollouts and logs); the code is CleanRL's
ppo_atari.py, line for line, on tensors [T, B] / [T * B].
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from worldsim.agents import ActorCritic

__all__ = ["advantages_and_returns", "ppo_update"]


def advantages_and_returns(
    rewards: Tensor,
    values: Tensor,
    dones: Tensor,
    next_value: Tensor,
    next_done: Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation over a rollout.

    Args:
        rewards, values, dones: [T, B] (dones[t]: the episode ended before step t).
        next_value, next_done: [B], for the observation after the rollout.

    Returns:
        advantages [T, B] and returns (advantages + values) [T, B].
    """
    T, B = rewards.shape
    advantages = torch.zeros_like(rewards)
    lastgaelam = torch.zeros(B, device=rewards.device)
    for t in reversed(range(T)):
        if t == T - 1:
            nextnonterminal, nextvalues = 1.0 - next_done, next_value
        else:
            nextnonterminal, nextvalues = 1.0 - dones[t + 1], values[t + 1]
        delta = rewards[t] + gamma * nextvalues * nextnonterminal - values[t]
        advantages[t] = lastgaelam = delta + gamma * gae_lambda * nextnonterminal * lastgaelam
    return advantages, advantages + values


def ppo_update(
    agent: ActorCritic,
    optimizer: torch.optim.Optimizer,
    args: Any,
    shuffler: torch.Generator,
    minibatch_size: int,
    b_obs: Tensor,
    b_actions: Tensor,
    b_logprobs: Tensor,
    b_advantages: Tensor,
    b_returns: Tensor,
    b_values: Tensor,
) -> dict[str, float]:
    """`args.update_epochs` epochs of clipped-surrogate minibatch updates on a flat rollout.

    Args:
        agent, optimizer: what is updated.
        args: the run's PPOArgs (clip_coef, norm_adv, clip_vloss, ent_coef, vf_coef,
            max_grad_norm, update_epochs, target_kl).
        shuffler: draws the minibatch order (CPU generator).
        b_obs: uint8 [N, H, W, C]; the rest [N]: the rollout flattened, N = T * B.

    Returns:
        The last minibatch's value_loss, policy_loss, entropy, old_approx_kl, approx_kl,
        and the clipped fraction over every minibatch (clipfrac).
    """
    device = b_obs.device
    batch_size = len(b_obs)
    clipfracs = []
    for _epoch in range(args.update_epochs):
        order = torch.randperm(batch_size, generator=shuffler).to(device)
        for begin in range(0, batch_size, minibatch_size):
            mb = order[begin : begin + minibatch_size]
            _, newlogprob, entropy, newvalue = agent.get_action_and_value(b_obs[mb], b_actions[mb])
            logratio = newlogprob - b_logprobs[mb]
            ratio = logratio.exp()
            with torch.no_grad():
                # http://joschu.net/blog/kl-approx.html
                old_approx_kl = (-logratio).mean()
                approx_kl = ((ratio - 1) - logratio).mean()
                clipfracs.append(((ratio - 1.0).abs() > args.clip_coef).float().mean().item())

            mb_advantages = b_advantages[mb]
            if args.norm_adv and len(mb) > 1:
                mb_advantages = (mb_advantages - mb_advantages.mean()) / (
                    mb_advantages.std() + 1e-8
                )

            # Policy loss
            pg_loss1 = -mb_advantages * ratio
            pg_loss2 = -mb_advantages * torch.clamp(ratio, 1 - args.clip_coef, 1 + args.clip_coef)
            pg_loss = torch.max(pg_loss1, pg_loss2).mean()

            # Value loss
            if args.clip_vloss:
                v_loss_unclipped = (newvalue - b_returns[mb]) ** 2
                v_clipped = b_values[mb] + torch.clamp(
                    newvalue - b_values[mb], -args.clip_coef, args.clip_coef
                )
                v_loss_clipped = (v_clipped - b_returns[mb]) ** 2
                v_loss = 0.5 * torch.max(v_loss_unclipped, v_loss_clipped).mean()
            else:
                v_loss = 0.5 * ((newvalue - b_returns[mb]) ** 2).mean()

            entropy_loss = entropy.mean()
            loss = pg_loss - args.ent_coef * entropy_loss + v_loss * args.vf_coef

            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
            optimizer.step()

        if args.target_kl is not None and approx_kl > args.target_kl:
            break

    return {
        "value_loss": v_loss.item(),
        "policy_loss": pg_loss.item(),
        "entropy": entropy_loss.item(),
        "old_approx_kl": old_approx_kl.item(),
        "approx_kl": approx_kl.item(),
        "clipfrac": float(np.mean(clipfracs)),
    }
