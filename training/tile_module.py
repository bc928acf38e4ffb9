"""The tile world model's LightningModule: TileWorldNet + EMA weights, trained on transitions.

    worldsim fit --config training/configs/crafter_tiles.yaml
    worldsim fit --config training/configs/crafter_tiles.yaml --ckpt_path last   # resume

It shares WorldModelSystem's EMA, optimizer, checkpoint spaces and export; the data module
(training.tile_data.TileDataModule) supplies the codebook and reward values the net is built
with.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from torch import Tensor
from torch.optim.swa_utils import AveragedModel

from training.module import ConfigError, WorldModelSystem, ema_update
from training.self_forcing import dream_batch
from worldsim.errors import CheckpointError
from worldsim.model.tile_config import TileConfig

__all__ = ["TileWorldSystem"]

_MATCH_DATA = (
    "patch",
    "fixed_rows",
    "anchored",
    "motion_radius",
    "codebook_size",
    "frequent_codes",
    "reward_classes",
)


class TileWorldSystem(WorldModelSystem):
    """Trains a `worldsim.model.tile_net.TileWorldNet` on a TileDataModule's transitions.

    Args:
        overrides: TileConfig (architecture) fields, e.g. {dim: 128, depth: 4}. The frame
            size and the data-layout fields (patch, fixed_rows, anchored, motion_radius,
            codebook_size, frequent_codes, reward_classes) come from the data module.
        loss: TileLoss fields, e.g. {change_weight: 3}, or {parts: [reward]} to train the
            reward net alone from init_from (the frames the model draws stay the same).
        sampler: TileSampler fields: the defaults an export gives its release, e.g.
            {fixed_temperature: 0.5}.
        init_from: A tile release folder whose weights start a new run (same shapes).
        lr, weight_decay, betas, warmup_steps, total_steps, min_lr_ratio, ema_decay,
        validate_ema: as for WorldModelSystem.
    """

    ARCH = TileConfig

    def __init__(
        self,
        overrides: dict[str, Any] | None = None,
        loss: dict[str, Any] | None = None,
        sampler: dict[str, Any] | None = None,
        init_from: str | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.99),
        warmup_steps: int = 200,
        total_steps: int | None = None,
        min_lr_ratio: float = 0.1,
        ema_decay: float = 0.999,
        validate_ema: bool = True,
    ) -> None:
        super().__init__(
            preset="tiles",
            overrides=overrides,
            loss=loss,
            sampler=sampler,
            init_from=init_from,
            lr=lr,
            weight_decay=weight_decay,
            betas=betas,
            warmup_steps=warmup_steps,
            total_steps=total_steps,
            min_lr_ratio=min_lr_ratio,
            ema_decay=ema_decay,
            validate_ema=validate_ema,
        )
        self.save_hyperparameters()

    def model_config(self, observation_space: gym.Space, autoencoder: Any = None) -> Any:
        H, W = observation_space.shape[:2]
        fields = {"height": H, "width": W, **(self.hparams.overrides or {})}
        dm = self._trainer.datamodule if self._trainer is not None else None
        for name in _MATCH_DATA:
            if dm is not None and hasattr(dm, "hparams") and name in dm.hparams:
                if name in (self.hparams.overrides or {}) and fields[name] != dm.hparams[name]:
                    raise ConfigError(
                        f"model.overrides.{name} {fields[name]} differs from data.{name} "
                        f"{dm.hparams[name]}: set it once, under data"
                    )
                fields[name] = dm.hparams[name]
        fields["anchored"] = [list(at) for at in fields.get("anchored") or []]
        if dm is not None and hasattr(dm, "event_names"):  # the store's named events
            fields["events"], fields["event_reward"] = list(dm.event_names), dm.event_reward
            fields["unpaid_events"] = list(getattr(dm, "unpaid_events", []))
        try:
            return TileConfig(**fields)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"model.overrides {self.hparams.overrides}: {e}") from None

    def build(
        self, action_space: gym.Space, observation_space: gym.Space, config: Any = None
    ) -> None:
        if self.net is not None:
            return
        from worldsim.model.tile_net import PARTS, TileWorldNet

        dm = self._trainer.datamodule if self._trainer is not None else None
        fresh = config is None  # a new run; a checkpoint brings its config and weights
        if config is None:
            config = self.model_config(observation_space)
        codebook = getattr(dm, "codebook", None)
        net = TileWorldNet(config, action_space, codebook, getattr(dm, "reward_values", None))
        if dm is not None and getattr(dm, "reward_prior", None) is not None:
            prior = torch.as_tensor(dm.reward_prior, dtype=torch.float32)
            net.reward_prior.fill_(-30.0)  # classes beyond the data's reward values: never
            net.reward_prior[: len(prior)] = prior
            net.end_prior.fill_(dm.end_prior)
            if len(config.events):
                net.event_prior.copy_(torch.as_tensor(dm.event_prior, dtype=torch.float32))
        if self.hparams.init_from and fresh:
            renewed = getattr(dm, "renewed", None)
            self._init_tile_weights(net, action_space, observation_space, renewed)
        for part in set(PARTS) - set(self.loss_config.parts):
            for p in net.part_parameters(part):  # kept as init_from gave them
                p.requires_grad_(False)
        self.action_space, self.observation_space = action_space, observation_space
        self.net = net
        ema = AveragedModel(net, multi_avg_fn=ema_update(self.hparams.ema_decay), use_buffers=True)
        object.__setattr__(self, "ema", ema.requires_grad_(False).eval())

    def _init_tile_weights(
        self,
        net: Any,
        action_space: gym.Space,
        observation_space: gym.Space,
        renewed: Any = None,
    ) -> None:
        """Start from init_from's weights; the token vocabulary must be the data's, but for
        the codes the data renewed (`renewed`: data.codebook_renew), which take the data's
        tiles and keep init_from's weights. The priors follow the net that reads them: a run
        that trains the reward net (or the shift net, for the events) takes this data's, one
        that leaves it as init_from gave it keeps init_from's, which that net was trained
        with."""
        folder = self.hparams.init_from
        book = net.codebook.clone()
        events = getattr(net, "event_prior", torch.zeros(0))
        priors = net.reward_prior.clone(), net.end_prior.clone(), events.clone()
        self._carry_events(net, self._init_weights(net, folder, action_space, observation_space))
        other = book.shape != net.codebook.shape
        if not other:
            differs = (book != net.codebook).any(-1)
            if renewed is not None:
                differs[torch.as_tensor(renewed, dtype=torch.long)] = False
            other = bool(differs.any())
        if other:
            raise ConfigError(
                f"model.init_from {folder} was trained with another tile codebook than the one "
                f"built from this data: set data.codebook_from: {folder}"
            )
        net.codebook.copy_(book)
        parts = self.loss_config.parts
        if "reward" in parts:
            net.reward_prior.copy_(priors[0])
            net.end_prior.copy_(priors[1])
        if len(priors[2]) and "shift" in parts:
            net.event_prior.copy_(priors[2])

    @staticmethod
    def _carry_events(net: Any, source: Any) -> None:
        """init_from's events by name (`source`: its net), where the data names others (a
        store that counts one more, as Crafter's falling asleep): each event both know keeps
        what the release learned (its logit, its say in the tile net, its prior); a new one
        starts fresh, as in a release trained before events."""
        old, new = list(source.config.events), list(net.config.events)
        if old == new or not old or not new:
            return
        with torch.no_grad():
            for j, name in enumerate(new):
                if name in old:
                    i = old.index(name)
                    net.s_events.weight[j] = source.s_events.weight[i]
                    net.s_events.bias[j] = source.s_events.bias[i]
                    net.t_events.weight[:, j] = source.t_events.weight[:, i]
                    net.event_prior[j] = source.event_prior[i]

    def configure_model(self) -> None:
        if self._trainer is None:
            return
        dm = self.trainer.datamodule
        if self.net is None and getattr(dm, "codebook", None) is None:
            raise CheckpointError(
                "TileWorldSystem needs a training.tile_data.TileDataModule (it builds the "
                "codebook the network is made with): set data.class_path to it"
            )
        if self.net is None:
            self.build(dm.action_space, dm.observation_space)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["worldsim"]["system"] = "training.tile_module.TileWorldSystem"

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("worldsim") or {}
        if self.net is None and "model_config" in saved:
            from worldsim.data.spaces import deserialize_space

            self.build(
                deserialize_space(saved["action_space"]),
                deserialize_space(saved["observation_space"]),
                self._saved_configs(saved),
            )
        else:
            book = checkpoint.get("state_dict", {}).get("net.codebook")
            if book is not None and not torch.equal(book.cpu(), self.net.codebook.cpu()):
                raise CheckpointError(
                    "the checkpoint's tile codebook differs from the one built from this data "
                    "(another store, or other data settings): resume on the run's own store "
                    "and data settings, or start a new run without --ckpt_path"
                )
        super().on_load_checkpoint(checkpoint)

    def _common_step(
        self,
        batch: dict[str, Any],
        stage: str,
        net: Any = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        net = self.net if net is None else net
        if stage == "train":  # a self-forced batch (data.unroll) gets its dreamed frames
            batch = dream_batch(net, self.sampler_config, batch)
        out = net.training_loss(batch, loss=self.loss_config, generator=generator)
        train = stage == "train"
        B = int(batch["shift"].shape[0])
        self.log(
            f"{stage}/loss",
            out["loss"].detach(),
            prog_bar=True,
            on_step=train,
            on_epoch=not train,
            batch_size=B,
        )
        metrics = {f"{stage}/{k}": v.detach() for k, v in out.items() if k != "loss"}
        self.log_dict(metrics, on_step=train, on_epoch=not train, batch_size=B)
        return out["loss"]
