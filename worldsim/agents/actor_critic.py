"""The batched-PPO agent's network (`algo: "ppo"`): a Nature-DQN actor-critic over frames.

`training.rl_ppo` trains it; this module saves it as an agent folder and registers how the
folder is loaded back, so play, collection and evaluation use it without `training`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from worldsim.agents.format import (
    AgentError,
    LogitsFn,
    load_weights,
    read_agent_config,
    register_loader,
    save_weights,
    write_agent_config,
)


@dataclass
class NetworkConfig:
    """The actor-critic's size: a Nature-DQN conv torso (8/4, 4/2, 3/1 kernels/strides)."""

    channels: tuple[int, int, int] = (32, 64, 64)  # conv widths; tests use (8, 16, 16)
    hidden: int = 512  # width of the linear layer shared by the policy and value heads

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetworkConfig:
        return cls(channels=tuple(data["channels"]), hidden=int(data["hidden"]))


def layer_init(layer: nn.Module, std: float = math.sqrt(2), bias: float = 0.0) -> nn.Module:
    """Orthogonal weights, constant bias: CleanRL's (and the PPO paper's) initialisation."""
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias)
    return layer


class ActorCritic(nn.Module):
    """Policy and value function over image observations, for a Discrete action space.

    Args:
        observation_space: Box(0, 255, (H, W, C), uint8) frames (H, W >= 36 for the torso).
        action_space: Discrete(A).
        config: torso and head sizes.
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        action_space: gym.spaces.Discrete,
        config: NetworkConfig | None = None,
    ) -> None:
        super().__init__()
        check_spaces(observation_space, action_space)
        self.config = config or NetworkConfig()
        self.observation_space, self.action_space = observation_space, action_space
        H, W, C = observation_space.shape
        c1, c2, c3 = self.config.channels
        self.torso = nn.Sequential(
            layer_init(nn.Conv2d(C, c1, 8, stride=4)),
            nn.ReLU(),
            layer_init(nn.Conv2d(c1, c2, 4, stride=2)),
            nn.ReLU(),
            layer_init(nn.Conv2d(c2, c3, 3, stride=1)),
            nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            flat = self.torso(torch.zeros(1, C, H, W)).shape[1]
        self.hidden = nn.Sequential(layer_init(nn.Linear(flat, self.config.hidden)), nn.ReLU())
        # Small policy init: near-uniform actions at the start; value head at unit scale.
        self.actor = layer_init(nn.Linear(self.config.hidden, int(action_space.n)), std=0.01)
        self.critic = layer_init(nn.Linear(self.config.hidden, 1), std=1.0)

    def features(self, obs: Tensor) -> Tensor:
        """obs uint8 [B, H, W, C] -> features [B, hidden]."""
        x = obs.permute(0, 3, 1, 2).float() / 255.0  # [B, C, H, W] in [0, 1]
        return self.hidden(self.torso(x))  # [B, hidden]

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """obs uint8 [B, H, W, C] -> (logits [B, A], value [B])."""
        h = self.features(obs)
        return self.actor(h), self.critic(h)[:, 0]

    def get_value(self, obs: Tensor) -> Tensor:
        """obs uint8 [B, H, W, C] -> value [B]."""
        return self.critic(self.features(obs))[:, 0]

    def get_action_and_value(
        self,
        obs: Tensor,
        action: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """CleanRL's step: sample an action (unless given) with its log-prob, entropy and value.

        Args:
            obs: uint8 [B, H, W, C].
            action: int64 [B] to evaluate (None: sample one from the policy).
            generator: seeds the sampling.

        Returns:
            action int64 [B], log_prob [B], entropy [B], value [B].
        """
        logits, value = self(obs)
        dist = torch.distributions.Categorical(logits=logits)
        if action is None:
            action = torch.multinomial(dist.probs, 1, generator=generator)[:, 0]  # [B]
        return action, dist.log_prob(action), dist.entropy(), value


def check_spaces(observation_space: gym.Space, action_space: gym.Space) -> None:
    """Raise AgentError unless the spaces are image frames and a Discrete action space."""
    if not isinstance(action_space, gym.spaces.Discrete):
        raise AgentError(
            f"the RL agents handle Discrete action spaces (Crafter, Atari, Doom), not {action_space}"
        )
    shape = tuple(getattr(observation_space, "shape", None) or ())
    if not (
        isinstance(observation_space, gym.spaces.Box)
        and observation_space.dtype == np.uint8
        and len(shape) == 3
        and min(shape[:2]) >= 36
    ):
        raise AgentError(
            f"the RL agents need uint8 image frames [H, W, C] of at least 36x36, not {observation_space}"
        )


def save_agent(
    path: str | Path,
    agent: ActorCritic,
    *,
    hyperparameters: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Save a batched-PPO agent (`algo: "ppo"`) as an agent folder; returns the folder."""
    folder = write_agent_config(
        path,
        algo="ppo",
        observation_space=agent.observation_space,
        action_space=agent.action_space,
        network=asdict(agent.config),
        hyperparameters=hyperparameters,
        metadata=metadata,
    )
    save_weights(folder, agent)
    return folder


def load_actor_critic(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[ActorCritic, dict[str, Any]]:
    """A batched-PPO agent's network (eval mode) and its agent.json, e.g. to train it further."""
    folder = Path(path).expanduser()
    config = read_agent_config(folder)
    if config["algo"] != "ppo":
        raise AgentError(f"{folder} holds a {config['algo']} agent, not a batched-PPO one")
    net = ActorCritic(
        config["observation_space"],
        config["action_space"],
        NetworkConfig.from_dict(config["network"]),
    )
    load_weights(folder, net)
    return net.to(device).eval(), config


@register_loader("ppo")
def load_ppo_logits_fn(folder: Path, config: dict[str, Any], device: torch.device) -> LogitsFn:
    """Rebuild a batched-PPO agent from agent.json + safetensors: obs [B,H,W,C] -> logits."""
    net, _ = load_actor_critic(folder, device)
    return lambda obs: net(obs)[0]
