"""The command line of play.py (`python play.py --help`), its errors, and its start image."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from envs.keymaps import help_text
from worldsim.cli.argtypes import device, non_negative_float, non_negative_int, positive_int
from worldsim.errors import WorldsimError

__all__ = ["OPTIONS", "PlayError", "build_parser", "load_image"]


# The command line: (flag, argparse options).
OPTIONS: list[tuple[str, dict[str, Any]]] = [
    ("--checkpoint", {"type": Path, "help": "release folder (default: the bundled model)"}),
    ("--game", {"help": "crafter, doom-health, breakout, ... (default: the checkpoint's game)"}),
    ("--real", {"action": "store_true", "help": "play the real game instead of the dream"}),
    ("--side-by-side", {"action": "store_true", "help": "real game and dream, same keys"}),
    ("--record", {"type": Path, "metavar": "OUT.mp4", "help": "record the window (PyAV)"}),
    (
        "--steps",
        {"type": non_negative_int, "default": 0, "help": "quit after N steps (0: play until quit)"},
    ),
    (
        "--fps",
        {
            "type": non_negative_float,
            "help": "frames per second (default: the game's; 0: no limit)",
        },
    ),
    (
        "--scale",
        {"type": positive_int, "help": "pixels per frame pixel (default: about 512 px tall)"},
    ),
    ("--seed", {"type": int, "help": "seed of the first reset"}),
    ("--start-image", {"type": Path, "metavar": "PNG", "help": "start the dream from a picture"}),
    (
        "--strength",
        {
            "type": float,
            "help": "with --start-image: bring the picture onto the game first (image-to-world, "
            "worldsim.generate.animate): 0 keeps it, 1 re-draws it all; tile models re-draw "
            "this share of its tiles, worst-matching first",
        },
    ),
    (
        "--sampler-steps",
        {"type": positive_int, "help": "denoising steps per frame (default: checkpoint's)"},
    ),
    ("--device", {"type": device, "default": "auto", "help": "auto, cpu or cuda"}),
    (
        "--threads",
        {
            "type": positive_int,
            "default": 1,
            "help": "torch CPU threads (default: 1: batch-1 play is fastest with one thread on a "
            "2-core CPU with anything else running: 9.2 frames/s against 3.9 with 2, measured "
            "with benchmarks/bench_env.py --threads)",
        },
    ),
    (
        "--agent",
        {
            "type": Path,
            "metavar": "DIR",
            "help": "a trained agent plays (worldsim rl train); you watch",
        },
    ),
]


class PlayError(WorldsimError, ValueError):
    """A bad combination of play.py options, or an unreadable start image."""


def build_parser() -> argparse.ArgumentParser:
    """The command line; its epilog lists every game's keys."""
    parser = argparse.ArgumentParser(
        prog="play.py",
        description="Play a learned world model (default: the bundled Crafter model) or the real game.",
        epilog=help_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for flag, options in OPTIONS:
        parser.add_argument(flag, **options)
    return parser


def load_image(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """An image file as uint8 [H, W, 3], resized to the world model's frame size."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert("RGB").resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
            return np.asarray(image, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise PlayError(f"cannot read start image {path}: {e}; pass a PNG or JPEG file") from e
