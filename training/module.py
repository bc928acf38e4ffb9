"""The world-model LightningModule: WorldModelNet + EMA weights, trained by diffusion forcing."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import gymnasium as gym
import lightning as L
import torch
from lightning.pytorch.strategies import FSDPStrategy
from torch import Tensor
from torch.optim.swa_utils import AveragedModel

from training import optim
from worldsim.errors import CheckpointError, WorldsimError
from worldsim.model.config import ModelConfig
from worldsim.spaces import check_compatible, deserialize_space, serialize_space


class ConfigError(WorldsimError, ValueError):
    """Training options that do not fit together (a bad preset, override or clip length)."""


# Noise-level buckets logged per step: quartiles of the batch's sigmas (q1 = least noisy).
BUCKETS = 4


def ema_update(decay: float):
    """`multi_avg_fn` for AveragedModel: EMA with decay min(decay, (1 + n) / (10 + n)).

    The warmup term keeps early averages from being dominated by the random initialisation
    (n is the number of updates so far). Integer buffers are copied, not averaged.
    """

    def update(averaged: list[Tensor], current: list[Tensor], num_averaged: Tensor) -> None:
        if not averaged[0].is_floating_point():
            torch._foreach_copy_(averaged, current)
            return
        n = float(num_averaged)
        torch._foreach_lerp_(averaged, current, 1.0 - min(decay, (1.0 + n) / (10.0 + n)))

    return update


class WorldModelSystem(L.LightningModule):
    """Trains a `worldsim.model.WorldModelNet` on clips of an episode store.

    The network is built in `configure_model` from a size preset (plus overrides) and the
    datamodule's spaces: the frame size from its observation space, the action encoder from
    its action space, so one YAML file works for any game. The spaces are saved in the
    checkpoint; a resume on data with other spaces fails with a clear error.

    Every frame of a clip gets its own noise level (diffusion forcing); the loss is logged
    overall, per noise-level quartile, and split into diffusion/reward/termination parts.
    EMA weights are kept beside the trained ones (`self.ema.module`, outside the module tree so
    DDP/FSDP leave it alone; saved in the checkpoint), used for validation, sample rollouts
    and export.

    Args:
        preset: Model size preset: tiny, S, B or L (`worldsim model info` lists them).
        overrides: ModelConfig (architecture) fields to change, e.g. {depth: 8, context: 8}.
            height/width come from the data and need not be given.
        loss: DiffusionLoss fields to change, e.g. {clean_reference: true} (how it trains).
        sampler: DiffusionSampler fields to change, e.g. {sampler_steps: 1}: how sample
            rollouts during training sample, and the defaults an export gives its release.
        autoencoder: Frame-autoencoder checkpoint (.ckpt of `training.autoencoder.AutoencoderSystem`);
            frames are then diffused in its latent space. None: diffuse pixels.
        init_from: A release folder (`worldsim export`) whose weights start a new run (fine-tuning);
            its network must have the same shapes as preset + overrides. Ignored on resume
            (`--ckpt_path`), where the checkpoint's weights win.
        lr: Peak AdamW learning rate (after warmup).
        weight_decay: AdamW weight decay on weight matrices (not on biases or norms).
        betas: AdamW betas.
        warmup_steps: Optimizer steps of linear learning-rate warmup.
        total_steps: Length of the cosine decay in optimizer steps (None: the whole run, from the trainer).
        min_lr_ratio: Final learning rate as a fraction of `lr`.
        ema_decay: Decay of the EMA weights (with a 1/10-step warmup); the EMA is what gets exported.
        validate_ema: Validate the EMA weights (True) or the trained weights (False).
    """

    def __init__(
        self,
        preset: str = "tiny",
        overrides: dict[str, Any] | None = None,
        loss: dict[str, Any] | None = None,
        sampler: dict[str, Any] | None = None,
        autoencoder: str | None = None,
        init_from: str | None = None,
        lr: float = 3e-4,
        weight_decay: float = 0.05,
        betas: tuple[float, float] = (0.9, 0.99),
        warmup_steps: int = 500,
        total_steps: int | None = None,
        min_lr_ratio: float = 0.1,
        ema_decay: float = 0.999,
        validate_ema: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.loss_config, self.sampler_config = self._run_configs()
        self.net: Any = None  # WorldModelNet, built in configure_model
        self.ema: AveragedModel | None = None
        self.action_space: gym.Space | None = None
        self.observation_space: gym.Space | None = None

    # -------------------------------------------------------------- building
    ARCH: Any = ModelConfig  # the architecture config class; its LOSS and SAMPLER

    def _run_configs(self) -> tuple[Any, Any]:
        """This run's loss and sampler configs, from `loss` and `sampler` (ConfigError on a
        bad field), after checking that `overrides` holds architecture fields only."""
        from worldsim.model.config import config_from_fields, field_names

        arch, h = self.ARCH, self.hparams
        configs = []
        for name, part in (("loss", arch.LOSS), ("sampler", arch.SAMPLER)):
            misplaced = sorted(set(h.overrides or {}) & field_names(part))
            if misplaced:
                raise ConfigError(
                    f"model.overrides {misplaced} are {part.__name__} settings, not the "
                    f"architecture's: set them under model.{name}"
                )
            try:
                configs.append(config_from_fields(part, dict(h.get(name) or {})))
            except (TypeError, ValueError) as e:
                raise ConfigError(f"model.{name} {h.get(name)}: {e}") from None
        return configs[0], configs[1]

    def model_config(self, observation_space: gym.Space, autoencoder: Any = None) -> Any:
        """The ModelConfig of this run for frames of `observation_space` (H, W, 3).

        With a trained `autoencoder` (FrameAutoencoder), frames are diffused in its latent.
        """
        from worldsim.model import preset

        H, W = observation_space.shape[:2]
        overrides = {"height": H, "width": W, **(self.hparams.overrides or {})}
        if autoencoder is not None:
            overrides["autoencoder"] = autoencoder.config
        try:
            return preset(self.hparams.preset, **overrides)
        except KeyError as e:  # an unknown preset
            raise ConfigError(f"model.preset: {e.args[0]}") from None
        except (TypeError, ValueError) as e:  # an unknown or inconsistent ModelConfig field
            raise ConfigError(f"model.overrides {self.hparams.overrides}: {e}") from None

    def build(
        self, action_space: gym.Space, observation_space: gym.Space, config: Any = None
    ) -> None:
        """Create the network and its EMA copy (once; later calls do nothing).

        Args:
            action_space: The game's action space (the action encoder is built from it).
            observation_space: Box(0, 255, (H, W, 3), uint8) of the frames.
            config: A ModelConfig to use as is (from a checkpoint); None: preset + overrides,
                with the autoencoder of `hparams.autoencoder` loaded from its .ckpt.
        """
        if self.net is not None:
            return
        from worldsim.model import WorldModelNet

        autoencoder = None
        if config is None:
            if self.hparams.autoencoder:
                from training.autoencoder import load_autoencoder

                autoencoder = load_autoencoder(self.hparams.autoencoder)
            config = self.model_config(observation_space, autoencoder)
        net = WorldModelNet(config, action_space)
        if autoencoder is not None:
            net.set_autoencoder(autoencoder)
        if self.hparams.init_from:
            self._init_weights(net, self.hparams.init_from, action_space, observation_space)
        self.action_space, self.observation_space = action_space, observation_space
        self.net = net
        ema = AveragedModel(net, multi_avg_fn=ema_update(self.hparams.ema_decay), use_buffers=True)
        # Kept outside the module tree (not a registered child): DDP/FSDP never wrap, shard or
        # wait for gradients of it; it is saved under "ema_state_dict" and follows .to() via _apply.
        object.__setattr__(self, "ema", ema.requires_grad_(False).eval())

    @staticmethod
    def _init_weights(
        net: Any, folder: str, action_space: gym.Space, observation_space: gym.Space
    ) -> Any:
        """Copy a release's weights into `net` (same game, same shapes), or raise ConfigError;
        returns the release's net."""
        from worldsim.checkpoint import load_release

        source = load_release(
            folder, action_space=action_space, observation_space=observation_space
        )[0]
        # A motion head may be added to a release without one: it starts as the identity;
        # a net's OPTIONAL_KEYS (e.g. a tile net's event head) start fresh.
        optional = ("backbone.motion.", *getattr(net, "OPTIONAL_KEYS", ()))
        own = net.state_dict()
        weights = {
            k: v
            for k, v in source.state_dict().items()
            if not (k.startswith(optional) and k in own and own[k].shape != v.shape)
        }
        try:
            missing, unexpected = net.load_state_dict(weights, strict=False)
            new = [k for k in missing if not k.startswith(optional)]
            if new or unexpected:
                raise RuntimeError(f"missing keys {new}, unexpected keys {unexpected}")
        except RuntimeError as e:
            raise ConfigError(
                f"model.init_from {folder}: its weights do not fit this run's preset + overrides "
                f"({str(e).splitlines()[0]}); copy the release's dim, depth, heads, mlp_ratio, "
                "patch_size and stem_channels into model.overrides"
            ) from None
        return source

    def configure_model(self) -> None:
        if self._trainer is None:  # load_from_checkpoint: on_load_checkpoint builds the net
            return
        dm = self.trainer.datamodule
        if self.net is None and dm is None:
            raise CheckpointError(
                "WorldModelSystem needs a datamodule with action_space/observation_space "
                "(training.data.EpisodeDataModule), or call system.build(action_space, observation_space) first"
            )
        if self.net is None:
            self.build(dm.action_space, dm.observation_space)
        memory = getattr(self.net.config, "pose_memory", 0)
        wanted = (memory, self.net.config.pose_degrees_per_unit if memory else None)
        given = getattr(dm, "pose_memory", 0)
        given = (given, getattr(dm, "pose_degrees_per_unit", None) if given else None)
        if given != wanted:
            raise ConfigError(
                f"the model's pose memory (pose_memory, pose_degrees_per_unit) is {wanted}, the "
                f"data's {given}: set data.pose_memory and data.pose_degrees_per_unit to the "
                "model's (0 and anything: off)"
            )
        clip_length = getattr(dm, "clip_length", None)
        if clip_length is not None and clip_length > self.net.config.context:
            raise ConfigError(
                f"data.clip_length {clip_length} exceeds the model's context of {self.net.config.context} "
                f"frames: lower data.clip_length or set model.overrides {{context: {clip_length}}}"
            )

    def _apply(self, fn: Any, recurse: bool = True) -> WorldModelSystem:
        super()._apply(fn, recurse)
        if self.ema is not None:
            self.ema._apply(fn, recurse)  # device/dtype moves apply to the EMA copy too
        return self

    def on_fit_start(self) -> None:
        self.ema.to(self.device)  # in case a strategy moved parameters without .to() on the module
        if getattr(self.net.config, "pose_memory", 0):
            # the odometry is fit to the train split in closed form, not learned by steps
            actions, steps = self.trainer.datamodule.odometry_pairs()
            enc = torch.cat([self.net.encode_actions(a) for a in actions])
            for net in (self.net, self.ema.module):
                net.fit_odometry(enc, torch.as_tensor(steps))

    def on_validation_start(self) -> None:
        self.ema.to(self.device)

    def _full_params(self) -> Any:
        """Context in which `self.net` holds whole (unsharded) parameters on every process."""
        strategy = self._trainer.strategy if self._trainer is not None else None
        if isinstance(strategy, FSDPStrategy):
            from torch.distributed.fsdp import FullyShardedDataParallel

            return FullyShardedDataParallel.summon_full_params(strategy.model, writeback=False)
        return contextlib.nullcontext()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["ema_state_dict"] = self.ema.state_dict()
        checkpoint["worldsim"] = {
            "action_space": serialize_space(self.action_space),
            "observation_space": serialize_space(self.observation_space),
            "model_config": self.net.config.to_dict(),
            "loss_config": dataclasses.asdict(self.loss_config),
            "sampler_config": dataclasses.asdict(self.sampler_config),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("worldsim")
        if saved is None:
            raise CheckpointError(
                "this .ckpt was not written by training.module.WorldModelSystem (no 'worldsim' entry)"
            )
        action_space = deserialize_space(saved["action_space"])
        observation_space = deserialize_space(saved["observation_space"])
        if self.net is None:  # load_from_checkpoint: build from what the checkpoint says
            self.build(action_space, observation_space, self._saved_configs(saved))
        else:
            self._check_spaces(action_space, observation_space)
        if "ema_state_dict" in checkpoint:
            self.ema.load_state_dict(checkpoint["ema_state_dict"])

    def _saved_configs(self, saved: dict[str, Any]) -> Any:
        """The architecture config a checkpoint's "worldsim" entry holds; its loss and
        sampler configs become this system's (older checkpoints mixed all three in one)."""
        from worldsim.checkpoint import configs_from_dict

        arch, self.loss_config, self.sampler_config = configs_from_dict(
            saved["model_config"], saved.get("sampler_config"), saved.get("loss_config")
        )
        return arch

    def _check_spaces(self, action_space: gym.Space, observation_space: gym.Space) -> None:
        """Raise CheckpointError if a checkpoint's spaces differ from the data's."""
        for name, mine, theirs in (
            ("action", self.action_space, action_space),
            ("observation", self.observation_space, observation_space),
        ):
            check_compatible(mine, theirs, f"the {name} space the checkpoint was trained with",
                             error=CheckpointError, fix="the data has the latter; resume on the "
                             "same game's store, or start a new run without --ckpt_path")  # fmt: skip

    # -------------------------------------------------------------- steps
    def _common_step(
        self,
        batch: dict[str, Any],
        stage: str,
        net: Any = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Loss of one batch (frames [B,T,H,W,3] uint8, actions [B,T-1,...], rewards/terminated [B,T-1])."""
        net = self.net if net is None else net
        out = net.training_loss(
            batch["frames"],
            batch["actions"],
            batch["rewards"],
            batch["terminated"],
            loss=self.loss_config,
            generator=generator,
            pose=batch.get("pose"),
        )
        B = batch["frames"].shape[0]
        train = stage == "train"
        metrics = {
            f"{stage}/{k}": out[k].detach()
            for k in ("diffusion", "reward", "termination", "reward_acc", "termination_acc")
        }
        metrics.update(self._bucket_losses(out["sigma"], out["frame_loss"], stage))
        self.log(
            f"{stage}/loss",
            out["loss"].detach(),
            prog_bar=True,
            on_step=train,
            on_epoch=not train,
            batch_size=B,
            sync_dist=not train,
        )
        self.log_dict(metrics, on_step=train, on_epoch=not train, batch_size=B, sync_dist=not train)
        return out["loss"]

    @staticmethod
    def _bucket_losses(sigma: Tensor, frame_loss: Tensor, stage: str) -> dict[str, Tensor]:
        """Mean frame loss per noise-level quartile of this batch (sigma, frame_loss: [B, T])."""
        sigma, frame_loss = sigma.detach().flatten().float(), frame_loss.detach().flatten().float()
        order = sigma.argsort()
        chunks = frame_loss[order].tensor_split(BUCKETS)
        return {f"{stage}/loss_noise_q{k + 1}": c.mean() for k, c in enumerate(chunks) if c.numel()}

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        return self._common_step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        # The same noise for the same batch at every validation: curves show the model, not the dice.
        generator = torch.Generator(self.device).manual_seed(10_000 + batch_idx)
        net = self.ema.module if self.hparams.validate_ema else self.net
        return self._common_step(batch, "val", net=net, generator=generator)

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        with self._full_params():  # after every real update (accumulation-aware)
            self.ema.update_parameters(self.net)

    def configure_optimizers(self) -> dict:
        h = self.hparams
        return optim.configure(
            self,
            [self.net],
            h.lr,
            h.weight_decay,
            tuple(h.betas),
            h.warmup_steps,
            h.total_steps,
            h.min_lr_ratio,
        )
