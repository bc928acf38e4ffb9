"""Shared by the RL trainers: their command line (jsonargparse), --hp overrides, vector envs, metrics."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from gymnasium.vector import AutoresetMode

from worldsim.agents import AgentError
from worldsim.errors import WorldsimError

__all__ = [
    "MetricsLog",
    "args_parser",
    "check_counts",
    "env_device",
    "make_vector_env",
    "multiples",
    "set_threads",
    "trainer_main",
    "with_overrides",
]


def args_parser(args_class: type, **kwargs: Any) -> Any:
    """The jsonargparse parser of a trainer's dataclass: every field an option (`--name`),
    typed, with its attribute docstring as help. Both the trainer's command line and
    `with_overrides` (the loop's --hp) parse with it."""
    from jsonargparse import ArgumentParser, set_parsing_settings

    set_parsing_settings(docstring_parse_attribute_docstrings=True)  # the fields' help
    parser = ArgumentParser(**kwargs)
    parser.add_class_arguments(args_class)
    return parser


def with_overrides(args: Any, items: list[str]) -> Any:
    """A copy of the dataclass `args` with KEY=VALUE items applied, parsed as the trainer's
    own options (`--KEY VALUE`).

    Raises:
        AgentError: an unknown key or a value that does not parse.
    """
    names = [f.name for f in dataclasses.fields(args)]
    argv = []
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip().lstrip("-").replace("-", "_")
        if not sep or key not in names:
            raise AgentError(
                f"--hp {item!r}: expected KEY=VALUE with KEY one of {', '.join(names)}"
            )
        argv.append(f"--{key}={text}")
    parser = args_parser(type(args), exit_on_error=False)
    parser.set_defaults(dataclasses.asdict(args))
    try:
        cfg = parser.parse_args(argv)
    except argparse.ArgumentError as e:  # names the option and what it expected
        raise AgentError(f"--hp {' '.join(items)}: {' '.join(str(e).split())}") from None
    return type(args)(**{n: cfg[n] for n in names})


def check_counts(args: Any, counts: tuple[str, ...], optional: tuple[str, ...] = ()) -> None:
    """Raise AgentError unless the fields `counts` (and `optional`, unless None) are ints >= 1.

    The message names the field, as both command lines do (`worldsim rl train --num_steps N`,
    `worldsim loop --hp num_steps=N`): ``num_steps must be an integer >= 1, got 0``.
    """
    for field in counts + optional:
        value = getattr(args, field)
        if field in optional and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise AgentError(f"{field} must be an integer >= 1, got {value!r}")


def multiples(total: int, unit: int) -> str:
    """The multiples of `unit` nearest `total`, for an error message: "8 or 12" (or "16")."""
    low, high = total // unit * unit, (total // unit + 1) * unit
    return f"{low} or {high}" if low else str(high)


def make_vector_env(
    args: Any,
    world: str = "worldsim/Crafter-v0",
    checkpoint: str | Path | None = None,
    real_game: str | None = None,
) -> gym.vector.VectorEnv:
    """B envs with SAME_STEP autoreset: the dream `world` id (batched, its observations torch
    tensors on the model's device), or a real game (sync, numpy).

    Args:
        args: num_envs, device, sampler_steps and max_episode_steps are used.
        world: a world-model env id with a vector entry point.
        checkpoint: the release folder for ``worldsim/WorldModel-v0``.
        real_game: a name for ``envs.games.make_game`` ("crafter"): train in the real game.
    """
    kwargs: dict[str, Any] = {}
    if args.max_episode_steps is not None:
        kwargs["max_episode_steps"] = args.max_episode_steps
    if real_game is not None:
        from envs.games import resolve

        game = resolve(real_game)
        return gym.make_vec(
            game.gym_id,
            num_envs=args.num_envs,
            vectorization_mode="sync",
            vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
            **game.kwargs,
            **kwargs,
        )
    from envs.world_model_registry import register_world_model_envs

    register_world_model_envs()
    if checkpoint is not None:
        kwargs["checkpoint"] = str(checkpoint)
    if args.sampler_steps is not None:
        kwargs["sampler_steps"] = args.sampler_steps
    return gym.make_vec(
        world,
        num_envs=args.num_envs,
        vectorization_mode="vector_entry_point",
        device=args.device,
        autoreset_mode=AutoresetMode.SAME_STEP,
        tensors=True,  # frames stay on the model's device, where the agent reads them
        **kwargs,
    )


def set_threads(threads: int | None) -> None:
    """Use `threads` CPU threads in torch (None: leave torch's default)."""
    if threads:
        torch.set_num_threads(int(threads))


def env_device(envs: gym.vector.VectorEnv, fallback: str) -> torch.device:
    """The world model's device (observations and agent live there), else `fallback`."""
    world_model = getattr(envs.unwrapped, "world_model", None)
    if world_model is not None:
        return torch.device(world_model.device)
    if fallback == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(fallback)


class MetricsLog:
    """Scalars to TensorBoard (OUT/tb) and, one JSON line per rollout, to OUT/metrics.jsonl."""

    def __init__(self, out: Path | None, args: Any) -> None:
        self.writer, self.file = None, None
        if out is not None:
            from torch.utils.tensorboard import SummaryWriter

            out.mkdir(parents=True, exist_ok=True)
            self.writer = SummaryWriter(str(out / "tb"))
            table = "\n".join(f"|{k}|{v}|" for k, v in asdict(args).items())
            self.writer.add_text("hyperparameters", f"|param|value|\n|-|-|\n{table}")
            self.file = (out / "metrics.jsonl").open("w")  # this run only

    def scalar(self, name: str, value: float, step: int) -> None:
        if self.writer is not None:
            self.writer.add_scalar(name, value, step)

    def row(self, row: dict[str, Any]) -> None:
        if self.file is not None:
            self.file.write(json.dumps(row) + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.file.close()


def trainer_main(
    argv: list[str] | None,
    *,
    prog: str,
    description: str,
    args_class: type,
    run: Callable[..., dict[str, Any]],
    out: str,
) -> int:
    """The command line of one trainer (`python -m training.rl_ppo`, `... rl_sb3`), on
    jsonargparse like `worldsim fit`: every field of `args_class` is an option, with its
    docstring as help, and `--config FILE.yaml` / `--print_config` read and write them all.

    `run(args, out, world=, checkpoint=, real_game=, init_agent=)` trains; bad
    hyperparameters, checkpoints or agents print one line and return 2.
    """
    from jsonargparse import ActionConfigFile

    parser = args_parser(args_class, prog=prog, description=description)
    parser.add_argument("--config", action=ActionConfigFile, help="a YAML file of these options")
    parser.add_argument("--world", default="worldsim/Crafter-v0", help="world-model env id")
    parser.add_argument("--checkpoint", type=str | None, default=None,
                        help="release folder (uses worldsim/WorldModel-v0)")  # fmt: skip
    parser.add_argument("--real_game", type=str | None, default=None,
                        help="train in this real game instead of a dream")  # fmt: skip
    parser.add_argument("--init_agent", type=str | None, default=None,
                        help="agent folder (same algo) to continue training")  # fmt: skip
    parser.add_argument("--out", default=out, help="agent folder to write")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    cfg = parser.parse_args(argv)
    args = args_class(**{f.name: cfg[f.name] for f in dataclasses.fields(args_class)})
    world = cfg.world
    if cfg.checkpoint and world == "worldsim/Crafter-v0":
        world = "worldsim/WorldModel-v0"  # an explicit checkpoint replaces the bundled model
    try:
        summary = run(args, cfg.out, world=world, checkpoint=cfg.checkpoint,
                      real_game=cfg.real_game, init_agent=cfg.init_agent,
                      verbose=not cfg.quiet)  # fmt: skip
    except WorldsimError as e:  # bad hyperparameters, checkpoint, agent: one line
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    where = f"the real {cfg.real_game}" if cfg.real_game else world
    line = f"saved {summary['out']} after {summary['global_step']} steps in {where}"
    if "seconds" in summary:
        ret = summary.get("mean_episodic_return")
        line += (
            f" ({summary['seconds']:.0f} s, env {summary['env_steps_per_second']:.0f} steps/s, "
            f"mean episodic return {'-' if ret is None else f'{ret:.2f}'})"
        )
    print(line)
    return 0
