"""Autoregressive rollout: context priming, KV-cached or recomputed windows, chunked sampling."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from worldsim.diffusion.edm import NO_PREV_SIGMA, karras_sigmas
from worldsim.diffusion.sampler import guided, sample
from worldsim.model.config import DiffusionSampler
from worldsim.model.kv_cache import KVCache
from worldsim.model.net import WorldModelNet
from worldsim.model.pose import local_delta, nearest, odometry_step, pose_distance

__all__ = ["Rollout", "RolloutState", "randn"]


def randn(
    shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None
) -> Tensor:
    """Standard normal noise drawn on the generator's device (so a CPU generator seeds a GPU
    rollout identically), then moved to `device`."""
    where = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=where).to(device)


@dataclass
class RolloutState:
    """Frames seen so far, in diffusion space, newest last (at most `config.context`).

    Cached mode also keeps the temporal keys/values of the window in `cache`; uncached mode
    recomputes the window from `frames` and `actions` at every pass.

    Pose-memory models (`ModelConfig.pose_memory`) also keep each window frame's reference as
    it was made (`refs`: reference planes, their noise level and the pose difference), the
    last frame's dead-reckoned pose [B, 5] (the first context frame's is zero), the
    memory: up to `pose_memory` frames with their poses and the step each was made at, newest
    last, and the step of each rollout's last action in place (neither the action at rest nor
    one that moves the pose: a dig, a placed block), since which older frames may be stale.
    """

    frames: list[Tensor] = field(default_factory=list)  # each [B, c, h, w]
    actions: list[Tensor | None] = field(
        default_factory=list
    )  # encoded action into each frame [B, A]
    cache: KVCache | None = None
    refs: list[tuple[Tensor, Tensor, Tensor]] = field(default_factory=list)
    pose: Tensor | None = None
    memory: list[tuple[Tensor, Tensor, int]] = field(default_factory=list)  # frame, pose, step
    steps: int = 0  # frames remembered so far (context frames included)
    acted_at: Tensor | None = None  # long [B]: the step the player last acted in place

    @property
    def last(self) -> Tensor | None:
        return self.frames[-1] if self.frames else None


class Rollout:
    """Generates frames from a WorldModelNet, one or `k` at a time.

    Context frames are clean but tagged with the sampler's `sigma_stab`. Each new chunk of k frames
    is denoised jointly (causal among themselves, every frame at the same noise level) from
    sigma_max in a few Euler/Heun steps, then passed once more, clean, to read rewards and
    terminations from its features and (cached mode) to append its keys/values. The window
    holds at most `config.context` frames; older ones slide out.

    Args:
        net: the network (putting it in eval mode is the caller's business).
        use_cache: keep keys/values of past frames (fast) or recompute the window each pass
            (the reference the cache is tested against).
        sampler: the sampling settings (None: DiffusionSampler's defaults); `next`'s steps
            and guidance override its own per call.
    """

    def __init__(
        self, net: WorldModelNet, use_cache: bool = True, sampler: DiffusionSampler | None = None
    ) -> None:
        self.net, self.use_cache, self.config = net, use_cache, net.config
        self.sampler = DiffusionSampler() if sampler is None else sampler

    def start(self, x: Tensor, actions: Tensor) -> RolloutState:
        """A state primed with context x [B, K, c, h, w] and encoded actions [B, K-1, A].

        At most the last `config.context - 1` frames are kept, leaving room for a new one.
        K may be 0 (x [B, 0, ...]): the next chunk is then a clip denoised from nothing.
        """
        keep = min(x.shape[1], max(self.config.context - 1, 0))
        per_frame: list[Tensor | None] = [None, *actions.unbind(1)][: x.shape[1]]
        state = RolloutState(
            list(x.unbind(1))[x.shape[1] - keep :], per_frame[len(per_frame) - keep :]
        )
        if self.config.pose_memory:  # every context frame remembered at its dead-reckoned pose
            state.acted_at = torch.full((x.shape[0],), -1, dtype=torch.long, device=x.device)
            for j, frame in enumerate(x.unbind(1)):
                state.refs.append(self._remember(state, frame, per_frame[j]))
            state.refs = state.refs[x.shape[1] - keep :]
        if self.use_cache:
            state.cache = KVCache(self.config.depth)
            if keep:
                context = torch.stack(state.frames, 1)
                sigma = context.new_full(context.shape[:2], self.sampler.sigma_stab)
                self._pass(RolloutState(cache=state.cache), context, sigma, state.actions, True,
                           state.refs)  # fmt: skip
                state.cache.commit()
        return state

    # ------------------------------------------------------------------ pose memory
    def _reference(
        self, state: RolloutState, action: Tensor | None, batch: int
    ) -> tuple[tuple[Tensor, Tensor, Tensor], Tensor, tuple[Tensor, Tensor, Tensor] | None]:
        """The reference of the frame that `action` [B, A] leads to (None: a first frame),
        that frame's pose, and what it recalls: ((planes [B, c, h, w] turned to its view, noise
        level [B], pose difference [B, 5]), pose [B, 5], `_recall`'s answer or None where
        `recall_distance` is 0)."""
        net, cfg = self.net, self.config
        shape = (batch, cfg.latent_channels, *self._plane_size())
        if state.pose is None or action is None:
            pose = torch.zeros(batch, 5, device=net.device)
        else:
            pose = odometry_step(state.pose, net.pose_step(action))
        if not state.memory:
            none = torch.zeros(shape, device=net.device)
            sigma = pose.new_full((batch,), NO_PREV_SIGMA)
            return (none, sigma, torch.zeros_like(pose)), pose, None
        poses = torch.stack([m[1] for m in state.memory], 1)  # [B, M, 5]
        valid = torch.ones(poses.shape[:2], dtype=torch.bool, device=poses.device)
        index, dist = nearest(poses, valid, pose, cfg.pose_degrees_per_unit)
        rows = torch.arange(batch, device=poses.device)
        delta = local_delta(poses[rows, index], pose)
        # only the chosen frames are gathered, not the whole memory of up to pose_memory frames
        found = torch.stack([state.memory[m][0][b] for b, m in enumerate(index.tolist())])
        planes = net.pose_reference(found[:, None], delta[:, None])[:, 0]
        recall, near = None, self.sampler.recall_distance
        if near > 0 and state.pose is not None and action is not None:
            recall = self._recall(state, action, pose, poses, (dist, found), near)
        return (planes, pose.new_full((batch,), self.sampler.sigma_stab), delta), pose, recall

    def _recall(
        self,
        state: RolloutState,
        action: Tensor,
        pose: Tensor,
        poses: Tensor,
        nearest_any: tuple[Tensor, Tensor],
        near: float,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """What a step to `pose` recalls (`DiffusionSampler.recall_distance`): (bool [B] the
        rows whose step moved the pose back to within `near` of a frame made since the player
        last acted in place, those frames [B, c, h, w], bool [B] the rows acting in place now).
        `nearest_any`: the nearest remembered frame of any age (distance [B], frame
        [B, c, h, w]), the answer while no remembered frame is stale."""
        per_unit = self.config.pose_degrees_per_unit
        moved = pose_distance(pose, state.pose, per_unit) > near
        in_place = ~moved & ~self.net.at_rest(action)
        made = torch.tensor([m[2] for m in state.memory], device=poses.device)
        fresh = made[None] >= state.acted_at[:, None]  # [B, M]: made since the last act in place
        dist, found = nearest_any
        if not bool(fresh.all()):
            index, dist = nearest(poses, fresh, pose, per_unit)
            found = torch.stack([state.memory[m][0][b] for b, m in enumerate(index.tolist())])
        return moved & (dist <= near), found, in_place

    def _add_memory(
        self,
        state: RolloutState,
        frame: Tensor,
        pose: Tensor,
        recall: tuple[Tensor, Tensor, Tensor] | None,
    ) -> None:
        """Remember `frame` [B, c, h, w] at `pose`; a step in place (`_recall`) marks the
        frames before it as possibly stale."""
        if recall is not None:
            state.acted_at = torch.where(recall[2], state.steps, state.acted_at)
        state.pose = pose
        state.memory = [*state.memory, (frame, pose, state.steps)][-self.config.pose_memory :]
        state.steps += 1

    def _remember(
        self, state: RolloutState, frame: Tensor, action: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Find `frame`'s reference, then add the frame to the memory at its pose (the
        pose the action leads to); returns the reference."""
        ref, pose, recall = self._reference(state, action, frame.shape[0])
        self._add_memory(state, frame, pose, recall)
        return ref

    def _pass(
        self,
        state: RolloutState,
        x: Tensor,
        sigma: Tensor,
        actions: list[Tensor | None],
        use_actions: bool,
        refs: list[tuple[Tensor, Tensor, Tensor]] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Denoise chunk x [B, k, c, h, w] at levels sigma [B, k] following the state's window.

        A chunk frame's previous frame is the chunk frame before it (at its current noise
        level, as in diffusion-forcing training); the first one's is the window's last frame.
        Pose-memory models give each chunk frame's reference in `refs` instead.
        Returns (denoised [B, k, c, h, w], features [B, k, D]).
        """
        cfg, stab, (B, k) = self.config, self.sampler.sigma_stab, x.shape[:2]
        window: list[Tensor] = []
        window_actions: list[Tensor | None] = []
        if state.cache is None and cfg.context > k and state.frames:
            window = state.frames[-(cfg.context - k) :]
            window_actions = state.actions[-len(window) :]
        n, last = len(window), None if window else state.last
        frames = torch.cat([torch.stack(window, 1), x], 1) if n else x  # [B, n + k, c, h, w]
        sig = torch.cat([sigma.new_full((B, n), stab), sigma], 1)  # [B, n + k]
        delta = None
        if cfg.pose_memory:
            assert refs is not None, "pose-memory passes need the chunk's references"
            given = state.refs[-n:] + list(refs) if n else list(refs)
            prev, prev_sigma, delta = (torch.stack(part, 1) for part in zip(*given))
        else:
            first = torch.zeros_like(x[:, :1]) if last is None else last[:, None]
            prev = torch.cat([first, frames[:, :-1]], 1)
            first_sigma = NO_PREV_SIGMA if last is None else stab
            prev_sigma = torch.cat([sig.new_full((B, 1), first_sigma), sig[:, :-1]], 1)
        acts = window_actions + list(actions)
        if last is None:
            acts[0] = None  # the first frame passed starts a clip: no action led to it
        mask = torch.tensor([a is not None for a in acts], device=x.device).expand(B, -1).clone()
        if not use_actions:
            mask[:, n:] = False
        zero = x.new_zeros(B, self.net.action_encoder.dim)
        enc = torch.stack([zero if a is None else a for a in acts], 1)  # [B, n + k, A]
        denoised, _, features = self.net.denoise(
            frames,
            sig,
            prev,
            prev_sigma,
            enc,
            mask,
            state.cache,
            self.sampler.motion_temperature,
            pose_delta=delta,
        )
        return denoised[:, n:], features[:, n:]

    def next(
        self,
        state: RolloutState,
        actions: Tensor,
        *,
        steps: int | None = None,
        guidance: float | None = None,
        generator: torch.Generator | None = None,
        method: str | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Generate the k frames that follow encoded actions [B, k, A]; updates `state`.

        Returns:
            frames x [B, k, c, h, w], rewards [B, k], termination probabilities [B, k].
        """
        cfg, sp = self.config, self.sampler
        B, k = actions.shape[:2]
        if not 1 <= k <= cfg.context:
            raise ValueError(f"chunk of {k} frames must be between 1 and the context {cfg.context}")
        steps = sp.sampler_steps if steps is None else int(steps)
        guidance = sp.guidance if guidance is None else float(guidance)
        sigmas = karras_sigmas(steps, sp.sigma_min, sp.sigma_max, sp.rho)
        shape = (B, k, cfg.latent_channels, *self._plane_size())
        base = (
            torch.zeros(shape, device=actions.device)
            if state.last is None
            else state.last[:, None].expand(shape)
        )
        x = base + float(sigmas[0]) * randn(shape, actions.device, generator)
        return self.denoise(state, x, actions, sigmas, guidance=guidance, method=method)

    def denoise(
        self,
        state: RolloutState,
        x: Tensor,
        actions: Tensor,
        sigmas: Tensor,
        *,
        guidance: float = 1.0,
        method: str | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Frames x [B, k, c, h, w] at noise level sigmas[0], denoised along `sigmas` after the
        state's window (held clean) and appended to it. `next` starts them from noise; SDEdit
        (worldsim/generate) from noised frames. sigmas[0] == 0: x is taken as it is.

        Returns:
            frames x [B, k, c, h, w], rewards [B, k], termination probabilities [B, k].
        """
        cfg = self.config
        B, k = actions.shape[:2]
        if state.cache is not None:
            state.cache.keep_last(cfg.context - k)  # sliding window
        acts = list(actions.unbind(1))
        refs, pose, recall = None, None, None
        if cfg.pose_memory:
            if k != 1:
                raise ValueError(
                    f"a pose-memory model makes one frame at a time (each frame's reference is "
                    f"found by its pose among the frames before it), not chunks of {k}"
                )
            ref, pose, recall = self._reference(state, acts[0] if state.frames else None, B)
            refs = [ref]

        def denoiser(use_actions: bool):
            def run(x: Tensor, s: float) -> Tensor:
                out = self._pass(state, x, x.new_full((B, k), s), acts, use_actions, refs)[0]
                if state.cache is not None:
                    state.cache.discard()
                return out

            return run

        if float(sigmas[0]) > 0:
            x = sample(
                guided(denoiser(True), denoiser(False), guidance),
                x,
                sigmas,
                method or self.sampler.sampler,
            )
            x = x.clamp(-1, 1)
            if recall is not None:  # back at a remembered pose: that frame, as it was
                x = torch.where(recall[0][:, None, None, None, None], recall[1][:, None], x)
        # One clean pass: rewards/terminations from features, keys/values for the cache.
        clean = x.new_full((B, k), self.sampler.sigma_stab)
        _, features = self._pass(state, x, clean, acts, True, refs)
        if state.cache is not None:
            state.cache.commit()
        if refs is not None:
            state.refs = (state.refs + refs)[-cfg.context :]
            self._add_memory(state, x[:, 0], pose, recall)
        state.frames = (state.frames + list(x.unbind(1)))[-cfg.context :]
        state.actions = (state.actions + acts)[-cfg.context :]
        rewards, p_end = self.net.predict(features)
        return x, rewards, p_end

    def _plane_size(self) -> tuple[int, int]:
        f = self.config.latent_factor
        return self.config.height // f, self.config.width // f
