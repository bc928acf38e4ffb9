"""Is a generated clip a path the game could take? Each step must change the view by at most
one tile scroll (worldsim.bench.semantic's scroll agreement over tile labels)."""

from __future__ import annotations

from typing import Any

import numpy as np

from worldsim.bench.semantic import SHIFT_NAMES, scroll_agreement

__all__ = ["path_validity"]


def path_validity(
    labels: np.ndarray, threshold: float, anchor: tuple[int, int] | None = None
) -> dict[str, Any]:
    """Score tile labels [T, R, C] of a clip (a game's own, or a tile classifier's reading) as
    a path: step t is valid when some shift among none/up/down/left/right explains at least
    `threshold` of frame t+1's tiles from frame t's (calibrate it on real transitions).

    Returns:
        dict(valid: every step valid, steps: bool [T-1], agreement: float [T-1] (the best
        shift's share), shift: the best shift's name per step).
    """
    labels = np.asarray(labels)
    if len(labels) < 2:
        return {"valid": True, "steps": np.ones(0, bool), "agreement": np.zeros(0), "shift": []}
    a = scroll_agreement(labels[:-1], labels[1:], anchor)  # [T-1, 5]
    best = a.max(-1)
    steps = best >= threshold
    return {
        "valid": bool(steps.all()),
        "steps": steps,
        "agreement": best,
        "shift": [SHIFT_NAMES[i] for i in a.argmax(-1)],
    }
