"""A saved agent (any registered algorithm) as a behaviour policy: ``policy(obs) -> action``.

The same agent acts in the dream and in the real game: the world model's spaces are the game's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from worldsim.agents.format import AgentError, load_logits_fn, read_agent_config
from worldsim.spaces import check_compatible


@dataclass
class AgentPolicy:
    """A trained agent as a behaviour policy: ``policy(obs) -> action`` (envs.policies.Policy).

    Actions are sampled from the agent's distribution with a generator seeded by
    ``reset(seed)`` (or its most likely action, ``deterministic=True``), so a run is
    reproducible. ``act(obs [B, H, W, C])`` acts for a batch of observations.
    """

    logits_fn: Any  # uint8 tensor [B, H, W, C] -> logits [B, A]
    name: str = "agent"
    deterministic: bool = False
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    config: dict[str, Any] = field(default_factory=dict)  # the agent.json

    def __post_init__(self) -> None:
        self.generator = torch.Generator(device=self.device).manual_seed(0)

    def reset(self, seed: int) -> None:
        self.generator.manual_seed(int(seed) % 2**63)

    @torch.inference_mode()
    def act(self, observations: Any) -> np.ndarray:
        """observations uint8 [B, H, W, C] (numpy or tensor) -> actions int64 [B]."""
        if not isinstance(observations, torch.Tensor):
            observations = np.asarray(observations)
        obs = torch.as_tensor(observations, device=self.device)
        space = self.config.get("observation_space")
        if space is not None and tuple(obs.shape[1:]) != space.shape:
            raise AgentError(
                f"the agent sees frames {space.shape}, got observations {tuple(obs.shape)}: "
                "use it in the game it was trained on"
            )
        logits = self.logits_fn(obs)  # [B, A]
        if self.deterministic:
            return logits.argmax(-1).cpu().numpy()
        probs = torch.softmax(logits.float(), -1)
        return torch.multinomial(probs, 1, generator=self.generator)[:, 0].cpu().numpy()

    def __call__(self, observation: np.ndarray) -> int:
        return int(self.act(np.asarray(observation)[None])[0])


def load_agent_policy(
    path: str | Path,
    action_space: gym.Space | None = None,
    *,
    deterministic: bool = False,
    device: str | torch.device = "cpu",
) -> AgentPolicy:
    """Load an agent folder (any algo) as a policy ``policy(obs) -> action``.

    Args:
        path: the agent folder.
        action_space: the env's action space; the agent must have been trained for it.
        deterministic: take the most likely action instead of sampling.
        device: where the network runs.

    Raises:
        AgentError: not an agent folder, or an agent for another action space.
    """
    folder = Path(path).expanduser()
    config = read_agent_config(folder)
    if action_space is not None:
        check_compatible(action_space, config["action_space"],
                         f"the action space {folder} was trained for", error=AgentError,
                         fix="it is an agent of another game")  # fmt: skip
    device = torch.device(device)
    logits_fn = load_logits_fn(folder, config, device)
    name = f"{config['algo']}:{folder.name}"
    return AgentPolicy(logits_fn, name, deterministic, device, config)
