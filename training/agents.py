"""RL agents: the actor-critic network, the agent folder format, and loading an agent as a policy.

An agent folder (written by `worldsim rl train`, read by `worldsim rl eval`, `worldsim collect
--policy DIR` and `play.py --agent DIR`):

    agent.json         {"format": "worldsim-agent", "format_version": 1, "algo": "ppo" | "sb3-ppo",
                        "observation_space", "action_space" (minari serialisation, like releases),
                        "network": {...}, "hyperparameters": {...}, "metadata": {...}}
    model.safetensors  the network weights (sb3-ppo: the state dict of SB3's ActorCriticCnnPolicy)
    sb3_model.zip      sb3-ppo only: SB3's own save, for `PPO.load` when resuming with SB3;
                       never read here (it holds pickles)

Loading never unpickles anything. The same agent acts in the dream and in the real game: the
world model's spaces are the game's.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from worldsim.errors import WorldsimError

__all__ = [
    "AGENT_FORMAT",
    "ActorCritic",
    "AgentError",
    "AgentPolicy",
    "NetworkConfig",
    "load_actor_critic",
    "load_agent_policy",
    "read_agent_config",
    "save_agent",
    "write_agent_config",
]

AGENT_FORMAT = "worldsim-agent"
AGENT_FORMAT_VERSION = 1
ALGOS = ("ppo", "sb3-ppo")


class AgentError(WorldsimError, ValueError):
    """A missing or unusable agent folder, or an agent made for another game's spaces."""


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


# ------------------------------------------------------------------------------ the folder
def _serialize(space: gym.Space) -> Any:
    from minari.serialization import serialize_space

    data = json.loads(serialize_space(space))
    if data.get("type") == "Box":
        # Uniform bounds as one number (a frame space's 12,288 zeros make agent.json unreadable).
        for key in ("low", "high"):
            values = np.unique(np.asarray(data[key]))
            if len(values) == 1:
                data[key] = values[0].item()
    return data


def _deserialize(data: Any, path: Path) -> gym.Space:
    from minari.serialization import deserialize_space

    try:
        if data.get("type") == "Box":  # uniform bounds saved as one number
            for key in ("low", "high"):
                if not isinstance(data[key], list):
                    data = {**data, key: np.full(data["shape"], data[key]).tolist()}
        return deserialize_space(json.dumps(data))
    except (KeyError, TypeError, ValueError, NotImplementedError) as e:
        raise AgentError(f"{path / 'agent.json'} has an invalid space ({e})") from e


def write_agent_config(
    path: str | Path,
    *,
    algo: str,
    observation_space: gym.Space,
    action_space: gym.Space,
    network: dict[str, Any],
    hyperparameters: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write `agent.json` into the folder `path` (created if needed); returns the folder."""
    if algo not in ALGOS:
        raise AgentError(f"unknown algo {algo!r}: one of {', '.join(ALGOS)}")
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "format": AGENT_FORMAT,
        "format_version": AGENT_FORMAT_VERSION,
        "algo": algo,
        "observation_space": _serialize(observation_space),
        "action_space": _serialize(action_space),
        "network": network,
        "hyperparameters": hyperparameters or {},
        "metadata": metadata or {},
    }
    tmp = folder / "agent.json.tmp"
    tmp.write_text(json.dumps(config, indent=1, default=_json_default))
    os.replace(tmp, folder / "agent.json")
    return folder


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return repr(value)


def save_weights(path: Path, module: nn.Module) -> None:
    """The module's weights as `model.safetensors` (atomic; tied tensors stored once)."""
    from safetensors.torch import save_model

    tmp = path / "model.safetensors.tmp"
    save_model(module, str(tmp), metadata={"format": AGENT_FORMAT})
    os.replace(tmp, path / "model.safetensors")


def load_weights(path: Path, module: nn.Module) -> nn.Module:
    """Load `model.safetensors` into `module`; AgentError if missing or not matching."""
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    if not (path / "model.safetensors").is_file():
        raise AgentError(f"{path} has no model.safetensors: save the agent again")
    try:
        load_model(module, str(path / "model.safetensors"), device="cpu")
    except (SafetensorError, OSError) as e:
        raise AgentError(f"{path / 'model.safetensors'} is corrupt ({e})") from e
    except RuntimeError as e:
        raise AgentError(f"{path / 'model.safetensors'} does not fit agent.json ({e})") from e
    return module


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


def read_agent_config(path: str | Path) -> dict[str, Any]:
    """The parsed agent.json of an agent folder, with its spaces deserialised."""
    folder = Path(path).expanduser()
    file = folder / "agent.json"
    if not file.is_file():
        raise AgentError(
            f"{folder} is not an agent folder (no agent.json): train one with `worldsim rl train`"
        )
    try:
        config = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AgentError(f"{file} is corrupt ({e}); save the agent again") from e
    if not isinstance(config, dict) or config.get("format") != AGENT_FORMAT:
        raise AgentError(f"{file} is not a {AGENT_FORMAT} config")
    if config.get("format_version", 0) > AGENT_FORMAT_VERSION:
        raise AgentError(
            f"agent format {config['format_version']} is newer than this worldsim reads; upgrade"
        )
    if config.get("algo") not in ALGOS:
        raise AgentError(f"{file}: unknown algo {config.get('algo')!r} (one of {ALGOS})")
    config["observation_space"] = _deserialize(config["observation_space"], folder)
    config["action_space"] = _deserialize(config["action_space"], folder)
    return config


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


# ------------------------------------------------------------------------------ as a policy
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
    if action_space is not None and action_space != config["action_space"]:
        raise AgentError(
            f"{folder} was trained for action space {config['action_space']}, not "
            f"{action_space}: it is an agent of another game"
        )
    device = torch.device(device)
    if config["algo"] == "ppo":
        net, _ = load_actor_critic(folder, device)
        logits_fn = lambda obs: net(obs)[0]  # noqa: E731
    else:
        from training.rl_sb3 import load_sb3_logits_fn

        logits_fn = load_sb3_logits_fn(folder, config, device)
    name = f"{config['algo']}:{folder.name}"
    return AgentPolicy(logits_fn, name, deterministic, device, config)
