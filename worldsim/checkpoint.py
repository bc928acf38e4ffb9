"""Release checkpoints: a folder of safetensors weights, JSON config/spaces, starting contexts.

Layout of a release folder:
    model.safetensors     the WorldModelNet state dict (autoencoder included, if any)
    config.json           {"format", "format_version", "model_config" (the architecture),
                           "sampler_config" (the sampler defaults), "loss_config" (what it was
                           trained with: a record), "observation_space", "action_space"
                           (minari.serialization), "metadata", "files" (sha256 of each file
                           beside it: a folder mixing two exports is refused)}
    contexts.safetensors  optional: "frames" uint8 [N, K, H, W, 3] and "actions"
                          [N, K-1, ...] (or "actions.<key>" for each key of a Dict space);
                          optional "episode_start" bool [N]: which start their episode
Format 1 held one flat "model_config" mixing the three; it is still read (split by field).
Loading never unpickles anything. A release is written into a temporary folder beside the
target and swapped in at the end, so an export killed at any point leaves the old release
(or, in the instant between two renames, a `.NAME.old-*` folder that `load_release` names).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch

from worldsim.errors import CheckpointError
from worldsim.model.config import ModelConfig, config_from_fields, field_names, split_fields
from worldsim.model.net import WorldModelNet
from worldsim.model.tile_config import TileConfig
from worldsim.model.tile_net import TileWorldNet
from worldsim.spaces import check_compatible, space_from_dict, space_to_dict

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "Release",
    "ReleaseInfo",
    "load_release",
    "save_release",
    "with_sampler_defaults",
]

FORMAT = "worldsim-release"
FORMAT_VERSION = 2


@dataclass(frozen=True)
class ReleaseInfo:
    """What a release says about its world model besides the weights, typed (`WorldModel.release`).

    The game, rate and names come from the release's metadata (unrecorded: None, 10 fps); the
    sampler settings from its sampler config, the context window from the model's.
    """

    game: str | None = None  # the game it was trained on (None: not recorded)
    fps: float = 10.0  # frames per second the game is shown at (10: not recorded)
    action_names: list[str] | None = None  # names of Discrete actions (keymaps, headers)
    sampler: str = "euler"  # the sampler's kind ("euler", "heun"; tile models: "rounds")
    sampler_steps: int = 2  # default denoising steps (tile models: commit rounds) per frame
    guidance: float = 1.0  # default classifier-free guidance scale on the action (1: off)
    context: int = 16  # frames in the model's attention window

    @classmethod
    def of(cls, metadata: dict[str, Any], config: Any, sampler: Any) -> ReleaseInfo:
        """From a release's metadata dict, its model config and its sampler config."""
        names = metadata.get("action_names")
        return cls(
            game=metadata.get("game"),
            fps=float(metadata.get("fps") or 10.0),
            action_names=list(names) if names is not None else None,
            sampler=str(sampler.sampler),
            sampler_steps=int(sampler.sampler_steps),
            guidance=float(sampler.guidance),
            context=int(config.context),
        )


class Release(NamedTuple):
    """What `load_release` returns."""

    net: WorldModelNet | TileWorldNet  # in eval mode
    observation_space: gym.spaces.Space
    action_space: gym.spaces.Space
    contexts: dict[str, Any] | None  # starting contexts, or None
    metadata: dict[str, Any]
    sampler: Any  # the sampler defaults: a DiffusionSampler or TileSampler


def configs_from_dict(
    model: dict[str, Any], sampler: dict[str, Any] | None = None, loss: dict[str, Any] | None = None
) -> tuple[Any, Any, Any]:
    """Saved configs -> (architecture, loss, sampler) of the model's kind: TileConfig
    (kind "tiles") or the diffusion ModelConfig, with its LOSS and SAMPLER. A `model` dict
    that mixes all three (release format 1, older training checkpoints) is split by field;
    unknown fields raise ValueError naming them."""
    arch = TileConfig if isinstance(model, dict) and model.get("kind") == "tiles" else ModelConfig
    own, old_loss, old_sampler = split_fields(arch, dict(model))
    return (
        arch.from_dict(own),
        config_from_fields(arch.LOSS, {**old_loss, **(loss or {})}),
        config_from_fields(arch.SAMPLER, {**old_sampler, **(sampler or {})}),
    )


def build_net(
    config: ModelConfig | TileConfig, action_space: gym.spaces.Space
) -> WorldModelNet | TileWorldNet:
    """An untrained network of `config`'s kind (weights and buffers to be loaded)."""
    if isinstance(config, TileConfig):
        return TileWorldNet(config, action_space)
    return WorldModelNet(config, action_space)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _swap_in(tmp: Path, folder: Path) -> None:
    """Replace `folder` by the complete folder `tmp` (two renames; the old one is removed)."""
    old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def _context_tensors(
    contexts: dict[str, Any], action_space: gym.spaces.Space
) -> dict[str, torch.Tensor]:
    frames = np.asarray(contexts["frames"])
    if frames.dtype != np.uint8 or frames.ndim != 5:
        raise CheckpointError(
            f"contexts['frames'] must be uint8 [N, K, H, W, 3], got {frames.dtype} {frames.shape}"
        )
    out = {"frames": torch.from_numpy(np.ascontiguousarray(frames))}
    actions = contexts["actions"]
    if isinstance(action_space, gym.spaces.Dict):
        for key in action_space.spaces:
            out[f"actions.{key}"] = torch.from_numpy(np.ascontiguousarray(np.asarray(actions[key])))
    else:
        out["actions"] = torch.from_numpy(np.ascontiguousarray(np.asarray(actions)))
    if contexts.get("episode_start") is not None:
        start = np.asarray(contexts["episode_start"], dtype=bool)
        if start.shape != frames.shape[:1]:
            raise CheckpointError(
                f"contexts['episode_start'] must be bool [{len(frames)}], got {start.shape}"
            )
        out["episode_start"] = torch.from_numpy(start)
    return out


def save_release(
    path: str | Path,
    net: WorldModelNet,
    *,
    observation_space: gym.spaces.Space,
    action_space: gym.spaces.Space,
    contexts: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    sampler: Any = None,
    loss: Any = None,
) -> Path:
    """Write a release folder, atomically: all of it is written beside `path` and swapped in.

    Args:
        path: the folder.
        net: the network whose weights and architecture config are saved.
        observation_space / action_space: the game's spaces (action space must be the net's).
        contexts: optional dict(frames uint8 [N, K, H, W, 3], actions [N, K-1, ...]).
        metadata: JSON-serialisable extras (game id, training run, metrics).
        sampler: the release's sampler defaults, a config of the net's kind
            (`net.config.SAMPLER`); None: that kind's defaults.
        loss: the loss config it was trained with (`net.config.LOSS`), kept as a record.

    Returns:
        The folder path.
    """
    from safetensors.torch import save_file

    check_compatible(net.action_space, action_space, "the action space given", error=CheckpointError,
                     fix="a release holds the action space its net was built for")  # fmt: skip
    for name, given, kind in (("sampler", sampler, net.config.SAMPLER),
                              ("loss", loss, net.config.LOSS)):  # fmt: skip
        if given is not None and not isinstance(given, kind):
            raise CheckpointError(
                f"{name} is a {type(given).__name__}; this model's is a {kind.__name__}"
            )
    sampler = net.config.SAMPLER() if sampler is None else sampler
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise CheckpointError(f"{folder} is a file, not a release folder: choose another --out")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    state = {k: v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(tmp / "model.safetensors"), metadata={"format": FORMAT})
    if contexts is not None:
        save_file(_context_tensors(contexts, action_space), str(tmp / "contexts.safetensors"))
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        **_config_entries(net.config, sampler, loss),
        "observation_space": space_to_dict(observation_space),
        "action_space": space_to_dict(action_space),
        "metadata": metadata or {},
        "files": {p.name: sha256_file(p) for p in sorted(tmp.iterdir())},
    }
    (tmp / "config.json").write_text(json.dumps(config, indent=1))
    _swap_in(tmp, folder)
    return folder


def read_release_config(path: str | Path) -> dict[str, Any]:
    """The parsed config.json of a release folder, checked for format and version."""
    folder = Path(path)
    if not folder.exists():
        left = sorted(folder.parent.glob(f".{folder.name}.old-*")) if folder.parent.is_dir() else []
        if left:
            raise CheckpointError(
                f"{folder} is missing: an interrupted export left the previous release at "
                f"{left[-1]}; rename it to {folder.name}, or export again"
            )
    if not folder.is_dir() or not (folder / "config.json").is_file():
        raise CheckpointError(
            f"{folder} is not a worldsim release folder (no config.json); make one with "
            "`worldsim export` from a training checkpoint"
        )
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(
            f"{folder / 'config.json'} is corrupt ({e}); re-export the release"
        ) from e
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{folder / 'config.json'} is not a {FORMAT} config")
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"release format {config['format_version']} is newer than this worldsim reads "
            f"({FORMAT_VERSION}); upgrade worldsim"
        )
    return config


def with_sampler_defaults(src: str | Path, out: str | Path, settings: dict[str, str]) -> Path:
    """Copy the release `src` to `out` with other sampler defaults, e.g. {"fixed_temperature":
    "1"} (values as text, typed by the sampler config's fields). The weights are not touched.

    Raises:
        CheckpointError: `out` exists, a setting is not a sampler field of this model's kind,
            or a value does not fit it.
    """
    src, out = Path(src), Path(out)
    config = read_release_config(src)
    if out.exists():
        raise CheckpointError(f"{out} exists: pick a new folder for the changed release")
    try:
        model, loss, sampler = _configs_of(config)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{src / 'config.json'} is incomplete or invalid ({e})") from e
    cls = type(sampler)
    kind = "tiles" if isinstance(model, TileConfig) else "diffusion"
    hints = typing.get_type_hints(cls)
    fields = field_names(cls)
    changed: dict[str, Any] = {}
    for key, text in settings.items():
        if key not in fields:
            raise CheckpointError(
                f"{key!r} is not a sampler setting of a {kind} model: one of "
                f"{', '.join(sorted(fields))}"
            )
        try:
            changed[key] = hints[key](text)
        except ValueError:
            raise CheckpointError(f"{key}={text!r} is not of type {hints[key].__name__}") from None
    try:
        sampler = dataclasses.replace(sampler, **changed)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{settings}: {e}") from None
    shutil.copytree(src, out)
    config.update(format_version=FORMAT_VERSION, **_config_entries(model, sampler, loss))
    metadata = dict(config.get("metadata", {}))
    before = metadata.pop("sampler_changed", None)  # how releases before 2026-12-08 kept one
    history = [before] if before else []
    metadata["sampler_changes"] = [
        *history,
        *metadata.get("sampler_changes", []),
        {"from": str(src), **changed},
    ]
    config["metadata"] = metadata
    (out / "config.json").write_text(json.dumps(config, indent=1))
    return out


def _config_entries(model: Any, sampler: Any, loss: Any) -> dict[str, Any]:
    """The three config entries of a format-2 config.json (loss None: not recorded)."""
    return {
        "model_config": model.to_dict(),
        "sampler_config": dataclasses.asdict(sampler),
        "loss_config": None if loss is None else dataclasses.asdict(loss),
    }


def _configs_of(config: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(architecture, loss or None, sampler) of a release's parsed config.json, any format."""
    model, loss, sampler = configs_from_dict(
        config["model_config"], config.get("sampler_config"), config.get("loss_config")
    )
    recorded = config.get("loss_config") is not None or config.get("format_version", 1) < 2
    return model, loss if recorded else None, sampler


def load_release(
    path: str | Path,
    device: str | torch.device = "cpu",
    *,
    action_space: gym.spaces.Space | None = None,
    observation_space: gym.spaces.Space | None = None,
) -> Release:
    """Load a release folder without unpickling.

    Args:
        path: the folder written by `save_release`.
        device: where to put the network.
        action_space / observation_space: if given, the release must be for these spaces.

    Returns:
        Release(net in eval mode, observation_space, action_space, contexts or None, metadata,
        sampler defaults).

    Raises:
        CheckpointError: missing or corrupt files, or a release made for another game.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(path)
    config = read_release_config(folder)
    try:
        model_config, _, sampler = _configs_of(config)
        obs_space = space_from_dict(config["observation_space"])
        act_space = space_from_dict(config["action_space"])
    except (KeyError, TypeError, ValueError, NotImplementedError) as e:
        raise CheckpointError(f"{folder / 'config.json'} is incomplete or invalid ({e})") from e
    for name, wanted, found in (
        ("action", action_space, act_space),
        ("observation", observation_space, obs_space),
    ):
        if wanted is not None:
            check_compatible(wanted, found, f"the {name} space {folder} was trained for",
                             error=CheckpointError, fix="it is a model of another game (or "
                             "another setting of it); pick the matching checkpoint")  # fmt: skip
    for name, digest in (config.get("files") or {}).items():
        if not (folder / name).is_file() or sha256_file(folder / name) != digest:
            raise CheckpointError(
                f"{folder / name} is missing, corrupt, or not the file its config.json was "
                "written with (a release mixing two exports, or a damaged copy): export it again"
            )
    net = build_net(model_config, act_space)
    try:
        state = load_file(str(folder / "model.safetensors"), device="cpu")
    except FileNotFoundError as e:
        raise CheckpointError(f"{folder} has no model.safetensors; re-export the release") from e
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(
            f"{folder / 'model.safetensors'} is corrupt ({e}); re-export the release"
        ) from e
    missing, unexpected = set(net.state_dict()) - set(state), set(state) - set(net.state_dict())
    if missing or unexpected:
        raise CheckpointError(
            f"{folder / 'model.safetensors'} does not fit its config: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}"
        )
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(
            f"{folder / 'model.safetensors'} does not fit its config ({e})"
        ) from e
    contexts = None
    if (folder / "contexts.safetensors").exists():
        try:
            tensors = load_file(str(folder / "contexts.safetensors"))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{folder / 'contexts.safetensors'} is corrupt ({e})") from e
        contexts = {"frames": tensors["frames"].numpy()}
        if isinstance(act_space, gym.spaces.Dict):
            contexts["actions"] = {k: tensors[f"actions.{k}"].numpy() for k in act_space.spaces}
        else:
            contexts["actions"] = tensors["actions"].numpy()
        if "episode_start" in tensors:
            contexts["episode_start"] = tensors["episode_start"].numpy()
    metadata = config.get("metadata", {})
    return Release(net.to(device).eval(), obs_space, act_space, contexts, metadata, sampler)
