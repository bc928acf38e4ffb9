"""argparse ``type=`` functions that check numbers and devices as the command line is parsed.

argparse names the flag in the error and exits with status 2, e.g.
``worldsim collect: error: argument --max-steps: must be an integer >= 1, got -5``.
Shared by the `worldsim` subcommands and play.py.
"""

from __future__ import annotations

import argparse
import math

from worldsim.validation import DeviceError, check_device

__all__ = [
    "device",
    "non_negative_float",
    "non_negative_int",
    "positive_float",
    "positive_int",
    "probability",
]


def _int(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value}")
    return value


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (counts: episodes, steps, workers, batch sizes)."""
    return _int(text, 1)


def non_negative_int(text: str) -> int:
    """An integer >= 0 (counts where 0 means none or off)."""
    return _int(text, 0)


def positive_float(text: str) -> float:
    """A finite number > 0 (learning rates, sizes in GB)."""
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (frame rates where 0 means no limit, guidance scales)."""
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def probability(text: str) -> float:
    """A number in (0, 1] (shares, quantiles)."""
    value = _float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1], got {text!r}")
    return value


def device(text: str) -> str:
    """auto, cpu, cuda, cuda:N or mps, and available here (imports torch only when given)."""
    try:
        return check_device(text)
    except DeviceError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
