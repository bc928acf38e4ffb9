"""The generative tools on any `WorldModel`: extend, animate a picture, edit (bridge: in
bridge.py).

Each takes a WorldModel and returns a `Generation` (frames as arrays, which ones the model
made). Frames the model is given are held clean: they come back bit-exact. The tile world
model and the diffusion model each do what their kind allows; a tool a kind cannot do raises
GenerateError saying why and what would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from worldsim.generate.clip import (
    GenerateError,
    Generation,
    check_clip,
    check_future,
    check_picture,
    concat_actions,
    n_actions,
    slice_actions,
)
from worldsim.generate.diffusion import denoise_from, sdedit_sigmas
from worldsim.generate.tile import (
    animate_tiles,
    edit_tiles,
    map_palette,
)
from worldsim.model.tile_net import TileWorldNet
from worldsim.spaces import noop_action, stack_actions, tree_index

# A `worldsim.world_model.WorldModel` (not imported: it imports this package for its methods).
WorldModel = Any

__all__ = ["REVERSED_KEY", "animate", "edit", "extend"]

# Release metadata key a model trained on time-reversed clips carries ("reversed": True).
REVERSED_KEY = "reversed"

Policy = Callable[[np.ndarray], Any]


def _shape(wm: WorldModel) -> tuple[int, int, int]:
    return tuple(wm.observation_space.shape)  # type: ignore[return-value]


def _enc(wm: WorldModel, actions: Any) -> Tensor:
    """Actions [T, ...] encoded as [T, A] on the model's device."""
    return wm.net.encode_actions(tree_index(actions, np.newaxis)).to(wm.device)[0]


def _x(wm: WorldModel, frames: np.ndarray) -> Tensor:
    return wm.net.frames_to_x(frames[None])  # [1, T, c, h, w]


def _frames(wm: WorldModel, x: Tensor) -> np.ndarray:
    return wm.net.x_to_frames(x)[0].cpu().numpy()


def _reversed(actions: Any) -> Any:
    """Actions [T, ...] in reverse time order (a copy: tensors take no negative strides, and
    ascontiguousarray keeps them on arrays of one element)."""
    if isinstance(actions, dict):
        return {k: np.asarray(v)[::-1].copy() for k, v in actions.items()}
    return np.asarray(actions)[::-1].copy()


def _strength(strength: float) -> float:
    s = float(strength)
    if not 0.0 <= s <= 1.0:
        raise GenerateError(f"strength {strength} must be in [0, 1] (0: keep, 1: re-draw all)")
    return s


def _is_tiles(wm: WorldModel) -> bool:
    return isinstance(wm.net, TileWorldNet)


def _nan(n: int) -> np.ndarray:
    return np.full(n, np.nan, np.float32)


@torch.inference_mode()
def extend(
    wm: WorldModel,
    frames: Any,
    actions: Any,
    future_actions: Any = None,
    *,
    policy: Policy | None = None,
    n: int | None = None,
    backward: bool = False,
    steps: int | None = None,
    generator: torch.Generator | None = None,
    reference: np.ndarray | None = None,
) -> Generation:
    """A recorded clip extended by new frames, forward (after its last frame) or backward.

    Args:
        frames: uint8 [T>=1, H, W, C] the clip, held clean; actions [T-1, ...] between them.
        future_actions: [N, ...] the actions of the new frames (forward: the first leads from
            the last frame; backward: actions[i] leads from new frame i to the one after it).
            Or `policy` (frame [H, W, C] -> action) and `n` frames (forward only).
        backward: the frames before the clip. Needs a model trained on time-reversed clips
            (its release metadata says `reversed: true`); others raise GenerateError.
        reference: what was recorded over the returned steps (for side-by-side videos).

    Returns:
        Generation of T + N frames (backward: the N new ones first).
    """
    frames, actions = check_clip(frames, actions, _shape(wm), wm.action_space)
    if backward:
        if not wm.metadata.get(REVERSED_KEY):
            raise GenerateError(
                "backward extension needs a world model trained on time-reversed clips (frames "
                "played backwards, each action on the transition it led); this one was trained "
                "forward only. Train one on reversed episodes and export it with "
                f"metadata {{{REVERSED_KEY!r}: true}}; see docs/generate.md"
            )
        if policy is not None:
            raise GenerateError("backward extension takes future_actions, not a policy")
        future = check_future(wm.action_space, future_actions)
        rev = extend(
            wm,
            frames[::-1].copy(),
            _reversed(actions),
            _reversed(future),
            steps=steps,
            generator=generator,
        )
        return Generation(
            "extend-backward",
            rev.frames[::-1].copy(),
            rev.generated[::-1].copy(),
            _reversed(rev.actions),
            rev.rewards[::-1].copy(),
            reference,
            {"backward": True},
        )
    rollout = wm.rollout
    state = rollout.start(_x(wm, frames), _enc(wm, actions)[None])
    out, rewards, taken = [], [], []
    if policy is None:
        future = check_future(wm.action_space, future_actions)
        total = n_actions(future)
    else:
        if future_actions is not None or n is None or n < 1:
            raise GenerateError("extend with a policy needs n >= 1 frames and no future_actions")
        total, frame = n, frames[-1]
    for i in range(total):
        a = tree_index(future, slice(i, i + 1)) if policy is None else None
        if policy is not None:
            a = stack_actions(wm.action_space, [policy(frame)])
            check_future(wm.action_space, a, "the policy's action")
        x, r, _ = rollout.next(state, _enc(wm, a)[None], steps=steps, generator=generator)
        frame = _frames(wm, x)[0]
        out.append(frame)
        rewards.append(float(r[0, 0]))
        taken.append(a)
    new = np.stack(out)
    return Generation(
        "extend",
        np.concatenate([frames, new]),
        np.r_[np.zeros(len(frames), bool), np.ones(len(new), bool)],
        concat_actions([actions, *taken]),
        np.r_[_nan(len(frames) - 1), np.asarray(rewards, np.float32)],
        reference,
        {"context": len(frames)},
    )


@torch.inference_mode()
def animate(
    wm: WorldModel,
    image: Any,
    strength: float,
    actions: Any = None,
    *,
    order: str = "worst",
    steps: int | None = None,
    generator: torch.Generator | None = None,
) -> Generation:
    """Image-to-world (SDEdit): a picture brought onto the game's manifold, then played.

    Tile model: the picture is drawn with the codebook's nearest real map tiles (those the
    release's starting contexts show), under a real status bar (the HUD rows of a starting
    context), then a share `strength` of its map tiles (the worst-matching first,
    `order="worst"`, or at random) is re-drawn by the tile net given the rest, a row's worth at
    a time. Diffusion model: the picture is noised to the
    level of `strength` and denoised as the first frame of a clip.

    Args:
        image: uint8 [H, W, C] of the model's frame size.
        strength: in [0, 1].
        actions: [N, ...] played from the first frame (None: the first frame only).

    Returns:
        Generation of 1 + N frames; reference: the picture.
    """
    image = check_picture(image, _shape(wm))
    s = _strength(strength)
    future = None if actions is None else check_future(wm.action_space, actions)
    if future is not None and n_actions(future) == 0:
        future = None
    noop = _enc(wm, stack_actions(wm.action_space, [noop_action(wm.action_space)]))
    enc = None if future is None else _enc(wm, future)
    if _is_tiles(wm):
        real = None if wm.contexts is None else np.asarray(wm.contexts["frames"])
        hud = real.reshape(-1, *real.shape[-3:])[0] if real is not None else None
        first, played, rewards = animate_tiles(
            wm.rollout,
            image,
            s,
            noop,
            enc,
            order=order,
            steps=steps,
            generator=generator,
            palette=map_palette(wm.net, real),
            hud=hud if wm.net.config.fixed_rows else None,
        )
    else:
        x0 = _x(wm, image[None])
        state = wm.rollout.start(x0[:, :0], noop[None, :0])
        sig = sdedit_sigmas(wm.sampler, s, steps)
        x, _, _ = denoise_from(wm.rollout, state, x0, noop[None], sig, generator=generator)
        first, played, rewards = _frames(wm, x)[0], [], []
        for i in range(0 if enc is None else len(enc)):
            x, r, _ = wm.rollout.next(state, enc[None, i : i + 1], steps=steps, generator=generator)
            played.append(_frames(wm, x)[0])
            rewards.append(float(r[0, 0]))
        played = np.stack(played) if played else first[None][:0]
        rewards = np.asarray(rewards, np.float32)
    frames = np.concatenate([first[None], played])
    acts = future if future is not None else stack_actions(wm.action_space, [])
    return Generation(
        "animate",
        frames,
        np.ones(len(frames), bool),
        acts,
        np.asarray(rewards, np.float32),
        image[None],
        {"strength": s, "order": order},
    )


@torch.inference_mode()
def edit(
    wm: WorldModel,
    frames: Any,
    actions: Any,
    start: int,
    *,
    strength: float | None = None,
    new_actions: Any = None,
    steps: int | None = None,
    generator: torch.Generator | None = None,
) -> Generation:
    """Edit a recorded clip from frame `start` on, keeping frames[:start] exactly.

    Counterfactual replay (`new_actions` [M, ...]): the frames after start-1 re-generated under
    other actions ("what if I had turned left at step k"). SDEdit (`strength`): every later
    frame re-drawn at that strength under the recorded actions; the tile model gives the net a
    share 1 - strength of the recorded tiles and the recorded view shift, the diffusion model
    noises each frame to the strength's level with the frames before it clean.

    Returns:
        Generation of start + M frames (counterfactual) or T frames (SDEdit); reference: the
        recorded clip.
    """
    frames, actions = check_clip(frames, actions, _shape(wm), wm.action_space)
    T = len(frames)
    if (strength is None) == (new_actions is None):
        raise GenerateError("edit takes either new_actions (counterfactual) or strength (SDEdit)")
    if not 1 <= start <= (T if new_actions is not None else T - 1):
        raise GenerateError(
            f"start {start} is outside the clip of {T} frames: frames[:start] are kept, so "
            f"start must be in [1, {T if new_actions is not None else T - 1}]"
        )
    if new_actions is not None:
        gen = extend(
            wm,
            frames[:start],
            slice_actions(actions, 0, start - 1),
            new_actions,
            steps=steps,
            generator=generator,
            reference=frames,
        )
        gen.tool, gen.info = "counterfactual", {"start": start}
        return gen
    s = _strength(strength)
    enc = _enc(wm, actions)
    if _is_tiles(wm):
        new, rewards = edit_tiles(
            wm.rollout, frames, enc, start, s, steps=steps, generator=generator
        )
    else:
        state = wm.rollout.start(_x(wm, frames[:start]), enc[None, : start - 1])
        sig = sdedit_sigmas(wm.sampler, s, steps)
        out, rewards = [], []
        for t in range(start, T):
            x, r, _ = denoise_from(
                wm.rollout,
                state,
                _x(wm, frames[t : t + 1]),
                enc[None, t - 1 : t],
                sig,
                generator=generator,
            )
            out.append(_frames(wm, x)[0])
            rewards.append(float(r[0, 0]))
        new, rewards = np.stack(out), np.asarray(rewards, np.float32)
    return Generation(
        "edit",
        np.concatenate([frames[:start], new]),
        np.r_[np.zeros(start, bool), np.ones(T - start, bool)],
        actions,
        np.r_[_nan(start - 1), rewards],
        frames,
        {"start": start, "strength": s},
    )
