"""Stable-Baselines3 PPO agents (`algo: "sb3-ppo"`): their policy rebuilt from agent.json + safetensors.

`training.rl_sb3` trains and saves them; this module only loads them back (SB3 imported when
an sb3-ppo agent is loaded; its pickled zip is never read).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from worldsim.agents.format import AgentError, LogitsFn, load_weights, register_loader


@register_loader("sb3-ppo")
def load_sb3_logits_fn(folder: Path, config: dict[str, Any], device: torch.device) -> LogitsFn:
    """Rebuild an sb3-ppo agent's policy from agent.json + safetensors: obs [B,H,W,C] -> logits."""
    from stable_baselines3.common.policies import ActorCriticCnnPolicy
    from stable_baselines3.common.vec_env import VecTransposeImage

    if config["network"].get("policy") != "CnnPolicy":
        raise AgentError(f"{folder}: only CnnPolicy sb3-ppo agents load, not {config['network']}")
    observation_space = VecTransposeImage.transpose_space(config["observation_space"])
    policy = ActorCriticCnnPolicy(
        observation_space,
        config["action_space"],
        lr_schedule=lambda _: 0.0,
        **config["network"]["policy_kwargs"],
    )
    load_weights(folder, policy)
    policy = policy.to(device)
    policy.set_training_mode(False)

    def logits_fn(obs: torch.Tensor) -> torch.Tensor:
        return policy.get_distribution(obs.permute(0, 3, 1, 2)).distribution.logits  # [B, A]

    return logits_fn
