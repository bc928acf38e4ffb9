"""The agent folder format: agent.json + safetensors weights, read and written without pickles.

An agent folder (written by `worldsim rl train`, read by `worldsim rl eval`, `worldsim collect
--policy DIR` and `play.py --agent DIR`):

    agent.json         {"format": "worldsim-agent", "format_version": 1, "algo": "ppo" | "sb3-ppo",
                        "observation_space", "action_space" (minari serialisation, like releases),
                        "network": {...}, "hyperparameters": {...}, "metadata": {...}}
    model.safetensors  the network weights (sb3-ppo: the state dict of SB3's ActorCriticCnnPolicy)
    sb3_model.zip      sb3-ppo only: SB3's own save, for `PPO.load` when resuming with SB3;
                       never read here (it holds pickles)

Each algorithm registers how its network is rebuilt (`register_loader`), in its own module of
this package; the format knows no algorithm.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from worldsim.errors import WorldsimError
from worldsim.spaces import space_from_dict, space_to_dict

AGENT_FORMAT = "worldsim-agent"
AGENT_FORMAT_VERSION = 1

# obs uint8 [B, H, W, C] -> logits [B, A]
LogitsFn = Callable[[Tensor], Tensor]
# (agent folder, its agent.json, device) -> the agent's logits function
Loader = Callable[[Path, dict[str, Any], torch.device], LogitsFn]
LOADERS: dict[str, Loader] = {}


class AgentError(WorldsimError, ValueError):
    """A missing or unusable agent folder, or an agent made for another game's spaces."""


def register_loader(algo: str) -> Callable[[Loader], Loader]:
    """Decorator: `fn(folder, config, device) -> logits_fn` rebuilds agents of `algo`."""

    def decorate(fn: Loader) -> Loader:
        LOADERS[algo] = fn
        return fn

    return decorate


def algos() -> tuple[str, ...]:
    """The algorithms whose agents this install writes and reads."""
    return tuple(LOADERS)


def load_logits_fn(folder: Path, config: dict[str, Any], device: torch.device) -> LogitsFn:
    """The network of the agent in `folder` (its parsed agent.json `config`) as a logits function."""
    return LOADERS[config["algo"]](folder, config, device)


def _deserialize(data: Any, path: Path) -> gym.Space:
    try:
        return space_from_dict(data)
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
    if algo not in LOADERS:
        raise AgentError(f"unknown algo {algo!r}: one of {', '.join(algos())}")
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "format": AGENT_FORMAT,
        "format_version": AGENT_FORMAT_VERSION,
        "algo": algo,
        "observation_space": space_to_dict(observation_space, compact=True),
        "action_space": space_to_dict(action_space, compact=True),
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
    if config.get("algo") not in LOADERS:
        raise AgentError(f"{file}: unknown algo {config.get('algo')!r} (one of {algos()})")
    config["observation_space"] = _deserialize(config["observation_space"], folder)
    config["action_space"] = _deserialize(config["action_space"], folder)
    return config
