"""Loop-consistency tests: walk away and back, and compare the frame at the return with the start.

In the real game a loop (Crafter: move left n times, then right n times) brings the view back
to where it was, up to the player's facing direction and whatever moved meanwhile. A world
model that remembers the scene does the same; one that forgets invents a new one. Each loop is
scored twice: generated frame at the return vs the start frame, and the real frame at the
return vs the start frame (the real game's own error, the floor to compare with).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from worldsim.bench.metrics import PSNR_CAP_DB, psnr
from worldsim.errors import WorldsimError
from worldsim.spaces import tree_index, tree_stack

__all__ = [
    "LOOPS",
    "LoopCase",
    "find_loops",
    "loop_actions",
    "loop_consistency",
    "store_loop_tests",
]

# Loops per game: name -> (action going out, action coming back), by the game's action names.
LOOPS: dict[str, dict[str, tuple[str, str]]] = {
    "crafter": {
        "left-right": ("move_left", "move_right"),
        "right-left": ("move_right", "move_left"),
        "up-down": ("move_up", "move_down"),
        "down-up": ("move_down", "move_up"),
    },
}
CRAFTER_ACTIONS = ["noop", "move_left", "move_right", "move_up", "move_down"]  # the first five


@dataclass
class LoopCase:
    """One real loop: `frames` uint8 [K + 2n, H, W, 3] (K context frames, then the loop's),
    `actions` [K - 1 + 2n, ...], where it came from, and whether the player really returned."""

    frames: np.ndarray
    actions: Any
    source: str
    returned: bool | None = None


def loop_actions(game: str, action_names: list[str] | None, n: int) -> dict[str, np.ndarray]:
    """The action sequences [2n] of `game`'s loops ({} when the game has none defined)."""
    names = action_names or (CRAFTER_ACTIONS if game == "crafter" else None)
    if game not in LOOPS or not names:
        return {}
    out = {}
    for loop, (go, back) in LOOPS[game].items():
        if go in names and back in names:
            out[loop] = np.array([names.index(go)] * n + [names.index(back)] * n, dtype=np.int64)
    return out


def find_loops(
    episodes: Iterable[tuple[np.ndarray, np.ndarray, str]],
    pattern: np.ndarray,
    context: int,
    limit: int,
) -> list[LoopCase]:
    """Occurrences of `pattern` in recorded episodes (frames [T+1], Discrete actions [T], name)."""
    cases, m = [], len(pattern)
    for frames, actions, name in episodes:
        a = np.asarray(actions)
        if a.ndim != 1 or len(a) < context - 1 + m:
            continue
        windows = np.lib.stride_tricks.sliding_window_view(a, m)
        for t in np.flatnonzero((windows == pattern).all(axis=1)):
            if t >= context - 1:  # K context frames end at frame t, where the loop starts
                s = t - (context - 1)
                cases.append(LoopCase(frames[s : t + m + 1], a[s : t + m], f"{name} step {t}"))
                if len(cases) >= limit:
                    return cases
    return cases


def _mae(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.float32) - b.astype(np.float32)).mean(axis=(-3, -2, -1))


def loop_consistency(
    world_model: Any,
    cases: dict[str, list[LoopCase]],
    *,
    context: int,
    samples: int = 1,
    steps: int | None = None,
    guidance: float | None = None,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Score every loop: start-vs-return PSNR / MAE for the model and for the real game.

    Returns:
        {loop name: {"cases", "n", "sources", "model": {"psnr", "mae"}, "real": {"psnr", "mae"},
        "model_vs_real_at_return": {"psnr", "mae"}, "seconds"}}; PSNR capped at PSNR_CAP_DB.
    """
    out = {}
    for name, group in cases.items():
        if not group:
            continue
        K = context
        frames = np.stack([c.frames for c in group])  # [M, K + 2n, H, W, 3]
        actions = tree_stack([c.actions for c in group])  # [M, K - 1 + 2n]
        start, real_end = frames[:, K - 1], frames[:, -1]
        t0 = time.perf_counter()
        model_psnr, model_mae, vs_psnr, vs_mae = [], [], [], []
        for s in range(samples):
            g = torch.Generator().manual_seed(seed * 1000 + s)
            gen = world_model.generate(
                frames[:, :K],
                tree_index(actions, (slice(None), slice(0, K - 1))),
                tree_index(actions, (slice(None), slice(K - 1, None))),
                steps=steps,
                guidance=guidance,
                generator=g,
            )["frames"]
            end = gen[:, -1]
            model_psnr.append(psnr(end, start, cap_db=PSNR_CAP_DB))
            model_mae.append(_mae(end, start))
            vs_psnr.append(psnr(end, real_end, cap_db=PSNR_CAP_DB))
            vs_mae.append(_mae(end, real_end))
        returned = [c.returned for c in group if c.returned is not None]
        out[name] = {
            "n": len(group),
            "steps_out_and_back": int(frames.shape[1] - K),
            "sources": [c.source for c in group],
            "real_returned": float(np.mean(returned)) if returned else None,
            "model": {"psnr": float(np.mean(model_psnr)), "mae": float(np.mean(model_mae))},
            "real": {
                "psnr": float(psnr(real_end, start, cap_db=PSNR_CAP_DB).mean()),
                "mae": float(_mae(real_end, start).mean()),
            },
            "model_vs_real_at_return": {
                "psnr": float(np.mean(vs_psnr)),
                "mae": float(np.mean(vs_mae)),
            },
            "seconds": time.perf_counter() - t0,
        }
        if log:
            r = out[name]
            log(
                f"loop {name}: model {r['model']['psnr']:.2f} dB vs real game {r['real']['psnr']:.2f} dB "
                f"(start vs return, {len(group)} loops)"
            )
    return out


def store_loop_tests(
    world_model: Any,
    store: Any,
    *,
    split: str,
    context: int,
    n: int = 4,
    count: int = 16,
    samples: int = 1,
    steps: int | None = None,
    guidance: float | None = None,
    seed: int = 0,
    skipped: dict[str, str] | None = None,
    log: Callable[[str], None] | None = None,
    play_real: Callable[..., list[LoopCase]] | None = None,
) -> dict[str, Any] | None:
    """The loop tests of a store's game: loops found in its `split` episodes, topped up by
    playing the real game with `play_real` (`envs.loops.play_loops`; None: recorded loops
    only); None (with the reason in `skipped`) when there are none."""
    from worldsim.bench.data import load_episodes, split_indices

    skipped = {} if skipped is None else skipped
    patterns = loop_actions(store.game, store.metadata.get("action_names"), n)
    if not patterns:
        skipped["loops"] = (
            f"no loop test is defined for game {store.game!r} (defined: {', '.join(LOOPS)})"
        )
        return None
    episodes = load_episodes(store, split_indices(store, split), max_bytes=2e8, seed=seed)
    named = [(frames, actions, f"episode {store.keys[i]}") for i, frames, actions in episodes]
    cases, notes = {}, []
    for name, pattern in patterns.items():
        found = find_loops(named, pattern, context, count)
        if len(found) < count and play_real is None:
            notes.append(f"{name}: {len(found)} recorded loops, and no real game to play more")
        elif len(found) < count:
            try:
                found += play_real(
                    store.game,
                    pattern,
                    context,
                    count - len(found),
                    frame_shape=store.frame_shape,
                    seed=seed,
                )
            # No such game here (unknown, its package missing) or frames of another size:
            # keep what was found.
            except (ImportError, WorldsimError, ValueError) as e:
                notes.append(f"{name}: could not play the real game ({type(e).__name__}: {e})")
        cases[name] = found
    if notes:
        skipped["loops_real_game"] = "; ".join(notes)
    if not any(cases.values()):
        skipped["loops"] = "no loop in the held-out episodes, and the real game could not be played"
        return None
    return loop_consistency(
        world_model,
        cases,
        context=context,
        samples=samples,
        steps=steps,
        guidance=guidance,
        seed=seed,
        log=log,
    )
