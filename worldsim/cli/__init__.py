"""The `worldsim` command: one subcommand per module in this package.

Run `worldsim --help` for the list. Each module defines `register(subparsers)`, which adds
its parser and sets `func` to the function that runs it. The command line is the application,
the top layer: it may import everything (`training`, `envs`, the core), and imports `envs` and
`training` inside the function that runs a subcommand, so `worldsim --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from worldsim.errors import WorldsimError

# Modules under worldsim/cli/ that register subcommands, in the order --help lists them.
COMMAND_MODULES = ["collect", "data", "model", "export", "bench", "rl", "loop", "generate"]

# Subcommands handed to another command line parser whole: LightningCLI owns `fit`, the
# trainers' jsonargparse command lines own `rl train`.
PASSTHROUGH = {("fit",): "training.cli:main", ("rl", "train"): "worldsim.cli.rl:train_main"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="worldsim",
        description="Learn interactive game worlds from recorded play.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    sub.add_parser("fit", help="train a world model with Lightning (`worldsim fit --help`)")
    for name in COMMAND_MODULES:
        importlib.import_module(f"worldsim.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    for words, target in PASSTHROUGH.items():
        if tuple(argv[: len(words)]) == words:
            module_name, func_name = target.split(":")
            return getattr(importlib.import_module(module_name), func_name)(argv[len(words) :]) or 0
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except WorldsimError as e:
        print(f"worldsim {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
