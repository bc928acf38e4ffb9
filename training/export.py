"""Export: a Lightning training checkpoint -> a released world model (`worldsim export`).

The release holds the EMA weights (safetensors), the model config, the spaces and a few real
starting contexts read from the episode store the run trained on (or `store`); load it with
`WorldModel.from_checkpoint(DIR)`. The command line is `worldsim.cli.export`; the
train-in-the-dream loop (`training.world_model_loop`) calls `export_checkpoint` directly.
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any

from worldsim.errors import CheckpointError, StoreError

__all__ = ["export_checkpoint"]


def _to_numpy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_numpy(v) for k, v in value.items()}
    return value.cpu().numpy()


def _time_reversed(value: Any) -> Any:
    """Clips [n, T, ...] (or a dict of such) played backwards."""
    if isinstance(value, dict):
        return {k: _time_reversed(v) for k, v in value.items()}
    return value[:, ::-1].copy()


def _init_args(hparams: dict[str, Any]) -> dict[str, Any]:
    """Saved hyperparameters without the entries LightningCLI adds (`_class_path`, ...)."""
    return {k: v for k, v in hparams.items() if not k.startswith("_")}


def _split_overrides(hparams: dict[str, Any], arch: Any) -> dict[str, Any]:
    """Hyperparameters of a run from before the configs were split, whose `overrides` mixed
    loss and sampler fields in: those move to `loss` and `sampler`."""
    from worldsim.model.config import split_fields

    own, loss, sampler = split_fields(arch, dict(hparams.get("overrides") or {}))
    if not (loss or sampler):
        return hparams
    return {
        **hparams,
        "overrides": own,
        "loss": {**loss, **(hparams.get("loss") or {})},
        "sampler": {**sampler, **(hparams.get("sampler") or {})},
    }


def export_checkpoint(
    ckpt: str,
    out: str,
    store: str | None = None,
    contexts: int = 8,
    context_frames: int | None = None,
    split: str = "val",
    weights: str = "ema",
    sampler_steps: int | None = None,
    guidance: float | None = None,
    motion_temperature: float | None = None,
    episode_starts: bool = False,
) -> Path:
    """Write the release folder `out` from the Lightning checkpoint `ckpt`.

    Args:
        ckpt: A .ckpt written by training with `training.module.WorldModelSystem`.
        out: The release folder to write.
        store: Episode store to take starting contexts from (default: the run's `data.store`).
        contexts: How many starting contexts to include.
        context_frames: Frames per starting context (default: half the model's context).
        split: Store split the contexts come from ("val", "test" or "train").
        weights: "ema" (the averaged weights, normally better) or "trained".
        sampler_steps / guidance: the release's default sampler steps and action-guidance
            scale (chosen with `worldsim bench fidelity --steps/--guidance`); None: the run's.
        motion_temperature: the release's motion-kernel sampling temperature (models with
            motion_radius; below 1 rollouts commit to the likeliest displacement); None: the run's.
        episode_starts: take the starting contexts from episodes' first frames and mark them
            so: a dream started from one knows the game's timers from its first step (a tile
            model's HUD clocks), as a game starts at its reset.

    Returns:
        The release folder.
    """
    import torch

    from training.data import EpisodeDataModule
    from training.module import WorldModelSystem
    from worldsim.checkpoint import save_release
    from worldsim.data import EpisodeStore
    from worldsim.model.config import field_names
    from worldsim.spaces import check_compatible

    if contexts < 1 or (context_frames is not None and context_frames < 1):
        raise CheckpointError(
            f"--contexts ({contexts}) and --context-frames ({context_frames}) must be at least 1"
        )

    try:
        checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(
            f"no checkpoint at {ckpt}: pass a .ckpt from a run's checkpoints/ folder"
        ) from None
    except Exception as e:
        raise CheckpointError(f"{ckpt} is not a readable Lightning checkpoint ({e})") from None
    if "worldsim" not in checkpoint or "hyper_parameters" not in checkpoint:
        raise CheckpointError(
            f"{ckpt} was not written by a world-model run (training.module.WorldModelSystem); "
            "autoencoder checkpoints are used with --model.autoencoder, not exported"
        )
    hparams = _init_args(checkpoint["hyper_parameters"])
    system_class = WorldModelSystem
    if checkpoint["worldsim"].get("system") == "training.tile_module.TileWorldSystem":
        from training.tile_module import TileWorldSystem

        system_class = TileWorldSystem
    # A subclass made in Python (not by LightningCLI) also saves its base class's arguments
    # (preset, autoencoder), which it sets itself: pass it only its own.
    accepted = inspect.signature(system_class.__init__).parameters
    hparams = _split_overrides(hparams, system_class.ARCH)
    system = system_class(**{k: v for k, v in hparams.items() if k in accepted})
    system.on_load_checkpoint(checkpoint)  # builds the net from the saved config and spaces
    system.load_state_dict(checkpoint["state_dict"])
    net = system.ema.module if weights == "ema" else system.net
    net.eval()
    sampler = system.sampler_config
    given = {"sampler_steps": sampler_steps, "guidance": guidance,
             "motion_temperature": motion_temperature}  # fmt: skip
    given = {k: v for k, v in given.items() if v is not None}
    fields = field_names(type(sampler))
    extra = sorted(set(given) - fields)
    if extra:
        key = extra[0]
        raise CheckpointError(
            f"--{key.replace('_', '-')} does not apply to this {type(sampler).__name__}: it "
            f"has {', '.join(sorted(fields))} (set with `worldsim model sampler --set`)"
        )
    try:
        sampler = dataclasses.replace(sampler, **given)
    except ValueError as e:
        raise CheckpointError(
            f"invalid sampler settings for this model: {e} (1 step and guidance 1 are the "
            "fastest; motion temperature 1 keeps the trained kernels)"
        ) from None

    data_args = _init_args(checkpoint.get("datamodule_hyper_parameters", {}))
    if store is not None:
        data_args["store"] = store
    if "store" not in data_args:
        raise StoreError(
            f"{ckpt} does not name its episode store: pass --store PATH for the starting contexts"
        )
    if store is not None:  # another store than the run's: it must hold the same game
        own = checkpoint.get("datamodule_hyper_parameters", {}).get("store")
        given = EpisodeStore.open(store)
        check_compatible(system.action_space, given.action_space,
                         f"the action space of --store {store} ({given.game!r})",
                         error=StoreError, fix="pass a store of the model's game")  # fmt: skip
        if tuple(given.observation_space.shape) != tuple(system.observation_space.shape):
            raise StoreError(
                f"--store {store} holds {given.frame_shape} frames; the model was trained on "
                f"{tuple(system.observation_space.shape)}: pass a store of the model's game"
            )
        if own is not None and EpisodeStore.exists(own):
            trained_on = EpisodeStore.open(own).game
            if trained_on != given.game:
                raise StoreError(
                    f"--store {store} holds {given.game!r}, the model was trained on "
                    f"{trained_on!r} ({own}): pass a store of {trained_on!r}"
                )
    shared = ("store", "val_fraction", "test_fraction", "seed")  # what every data module names
    datamodule = EpisodeDataModule(
        **{k: v for k, v in data_args.items() if k in shared}, num_workers=0
    )
    K = context_frames or max(1, net.config.context // 2)
    clips = datamodule.contexts(contexts, K, split=split, episode_starts=episode_starts)
    metadata = {
        "game": datamodule.store.game,
        "fps": datamodule.store.fps,
        "action_names": datamodule.store.metadata.get("action_names"),  # keymaps, headers
        "source_checkpoint": str(ckpt),
        "global_step": int(checkpoint.get("global_step", 0)),
        "weights": weights,
        "preset": hparams.get("preset"),
    }
    frames, actions = _to_numpy(clips["frames"]), _to_numpy(clips["actions"])
    episode_start = clips.get("episode_start")
    if data_args.get("reverse"):  # trained on time-reversed play: it plays backwards from these
        metadata["reversed"] = True
        frames, actions = _time_reversed(frames), _time_reversed(actions)
        episode_start = None  # reversed, a clip ends at its episode's start
    save_release(
        out,
        net,
        observation_space=system.observation_space,
        action_space=system.action_space,
        contexts={"frames": frames, "actions": actions, "episode_start": episode_start},
        metadata=metadata,
        sampler=sampler,
        loss=system.loss_config,
    )
    return Path(out)
