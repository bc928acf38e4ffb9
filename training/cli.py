"""`worldsim fit`: Lightning's command line (LightningCLI) for the world model and autoencoder.

    worldsim fit --config training/configs/tiny.yaml
    worldsim fit --config training/configs/crafter_S.yaml --data.store data/crafter
    worldsim fit --config training/configs/crafter_S.yaml --ckpt_path last   # resume
    worldsim fit --config training/configs/tiny.yaml --print_config          # the full config
    worldsim fit --help                                                      # every option

`main(argv)` behaves like `LightningCLI(...)` run with ["fit", *argv]. Every checkpoint
callback option is under --checkpoint.*; the run stops with an error naming the step if the
loss becomes NaN or infinite.
"""

from __future__ import annotations

import sys
import warnings
import zipfile
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from training.autoencoder import AutoencoderSystem
from training.callbacks import NonFiniteLossStop, StepProgressBar
from training.module import WorldModelSystem
from worldsim.errors import WorldsimError

__all__ = ["AutoencoderSystem", "WorldModelSystem", "WorldsimCLI", "main"]


class WorldsimCLI(LightningCLI):
    """LightningCLI with the episode data module, a checkpoint callback and the NaN stop built in."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # Always-on callbacks, configurable as --checkpoint.* / in the YAML `checkpoint:` section.
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.save_last": True,  # last.ckpt: what `--ckpt_path last` resumes from
                "checkpoint.every_n_train_steps": 1000,
                "checkpoint.save_top_k": -1,
                "checkpoint.filename": "step{step:07d}",
                "checkpoint.auto_insert_metric_name": False,
                "model": {"class_path": "training.module.WorldModelSystem"},
                "data": {"class_path": "training.data.EpisodeDataModule"},
            }
        )
        parser.add_lightning_class_args(NonFiniteLossStop, "nan_stop")

    def _instantiate_trainer(self, config: dict, callbacks: list) -> Any:
        """Lightning's trainer, with the step-counting progress bar unless one is configured."""
        from lightning.pytorch.callbacks import ProgressBar

        configured = [*callbacks, *(config.get("callbacks") or [])]
        if config.get("enable_progress_bar", True) is not False and not any(
            isinstance(c, ProgressBar) for c in configured
        ):
            callbacks = [*callbacks, StepProgressBar()]
        return super()._instantiate_trainer(config, callbacks)

    def before_fit(self) -> None:
        """Refuse to resume from a checkpoint a crash cut short, naming the ones to use instead."""
        fit = self.config["fit"]
        ckpt = fit.get("ckpt_path")
        if ckpt == "last":
            dirpath = fit.get("checkpoint", {}).get("dirpath")
            path = Path(dirpath) / "last.ckpt" if dirpath else None
        elif ckpt in (None, "best", "hpc", "registry"):
            path = None
        else:
            path = Path(ckpt)
        if path is not None and path.is_file():
            check_checkpoint_file(path)


def check_checkpoint_file(path: Path) -> None:
    """Raise WorldsimError if a torch checkpoint file is truncated or corrupt (a zip check)."""
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        bad = str(e)
    if bad is None:
        return
    others = sorted(p.name for p in path.parent.glob("step*.ckpt") if p != path)
    hint = (
        f"resume from the newest step checkpoint beside it instead: --ckpt_path "
        f"{path.parent / others[-1]} (there are {len(others)}: {', '.join(others[-3:])})"
        if others
        else "no step*.ckpt is beside it: start a new run without --ckpt_path"
    )
    raise WorldsimError(
        f"{path} is truncated or corrupt ({bad}), probably cut short by a crash; {hint}"
    )


def main(argv: list[str] | None = None) -> int:
    """Run `LightningCLI` with ["fit", *argv]; returns a process exit code.

    Errors a user can fix (a missing store, a NaN loss, a checkpoint of another game) are
    printed without a traceback and return 2.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    # sys.argv stays as it is (DDP relaunches this command from it for the other ranks), so
    # LightningCLI would warn that args are given on top of a command line.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    try:
        WorldsimCLI(
            model_class=LightningModule,
            datamodule_class=LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            seed_everything_default=0,
            # a resumed run writes config.yaml into its log dir again
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"prog": "worldsim"},
            args=["fit", *argv],
        )
    except (WorldsimError, ValueError) as e:
        cause = _worldsim_error(e)
        if cause is None:
            raise
        print(f"worldsim fit: error: {cause}", file=sys.stderr)
        return 2
    return 0


def _worldsim_error(error: BaseException) -> WorldsimError | None:
    """The WorldsimError behind `error`: itself, or the one jsonargparse wrapped while
    building a data module or model of the configured class."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, WorldsimError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


if __name__ == "__main__":
    sys.exit(main())
