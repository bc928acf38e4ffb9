"""WorldModel: the inference API (checkpoint -> batched reset / step / generate)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from worldsim.allocator import keep_freed_memory
from worldsim.checkpoint import ReleaseInfo, load_release
from worldsim.errors import ActionError, WorldsimError
from worldsim.generate import Generation, animate, bridge, edit, extend
from worldsim.model.net import FrameError, WorldModelNet
from worldsim.model.rollout import Rollout, RolloutState
from worldsim.model.tile_net import TileWorldNet
from worldsim.model.tile_rollout import Given, TileRollout, TileRolloutState
from worldsim.spaces import check_compatible

__all__ = ["WorldModel"]


def make_rollout(
    net: WorldModelNet | TileWorldNet, use_cache: bool, sampler: Any = None
) -> Rollout | TileRollout:
    """The rollout driver of a network's kind (diffusion or tiles), sampling with `sampler`
    (a DiffusionSampler or TileSampler; None: its kind's defaults)."""
    if isinstance(net, TileWorldNet):
        return TileRollout(net, use_cache=use_cache, sampler=sampler)
    return Rollout(net, use_cache=use_cache, sampler=sampler)


class WorldModel:
    """A trained world model: give it context frames and actions, get the next frames.

    Example:
        >>> wm = WorldModel.from_checkpoint("crafter-S", device="cpu")
        >>> wm.reset(frames, actions)        # [B, K, H, W, 3] uint8, [B, K-1, ...]
        >>> frames, rewards, terminated = wm.step(actions, generator=torch.Generator().manual_seed(0))

    Every call is reproducible under a seeded `torch.Generator`. The rollout keeps
    keys/values of the context window (`use_cache=True`), so a step costs the new frame's
    tokens only; rollouts longer than the model's context slide the window.

    Args:
        net: the network (moved to eval mode).
        observation_space: Box [H, W, 3] uint8 matching the net's frame size.
        action_space: the game's action space; must be the net's.
        contexts: optional starting contexts, dict(frames [N, K, H, W, 3], actions [N, K-1, ...]).
        use_cache: KV-cache the context (True) or recompute it at every pass.
        sampler: how rollouts sample, a config of the net's kind (`net.config.SAMPLER`: a
            DiffusionSampler or TileSampler); None: that kind's defaults. A release brings its
            own (`from_checkpoint`).
    """

    def __init__(
        self,
        net: WorldModelNet,
        observation_space: gym.spaces.Box,
        action_space: gym.spaces.Space,
        contexts: dict[str, Any] | None = None,
        use_cache: bool = True,
        metadata: dict[str, Any] | None = None,
        sampler: Any = None,
    ) -> None:
        cfg = net.config
        expected = (cfg.height, cfg.width, cfg.channels)
        if tuple(observation_space.shape or ()) != expected:
            raise FrameError(
                f"observation space shape {observation_space.shape} does not match the model's "
                f"frames {expected}"
            )
        check_compatible(net.action_space, action_space, "the action space given",
                         error=ActionError, fix="a WorldModel takes its net's")  # fmt: skip
        self.net = net.eval()
        if self.net.device.type == "cpu":
            keep_freed_memory()  # a step's large temporaries reuse memory (worldsim/allocator.py)
        self._observation_space, self._action_space = observation_space, action_space
        self._contexts = contexts
        self.metadata: dict[str, Any] = dict(metadata or {})  # e.g. the release's game id
        kind = cfg.SAMPLER
        if sampler is not None and not isinstance(sampler, kind):
            raise WorldsimError(
                f"sampler is a {type(sampler).__name__}; this model samples with a {kind.__name__}"
            )
        self.rollout = make_rollout(net, use_cache, sampler)
        self._state: RolloutState | TileRolloutState | None = None
        self._batch = 0

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str | torch.device = "cpu",
        *,
        action_space: gym.spaces.Space | None = None,
        observation_space: gym.spaces.Space | None = None,
    ) -> WorldModel:
        """Load a released checkpoint folder (see `worldsim.checkpoint.save_release`).

        Args:
            path: the release folder.
            device: where to run.
            action_space / observation_space: if given, the checkpoint must have been trained
                for these (else CheckpointError: a model of another game).
        """
        release = load_release(
            path, device, action_space=action_space, observation_space=observation_space
        )
        return cls(
            release.net,
            release.observation_space,
            release.action_space,
            release.contexts,
            metadata=release.metadata,
            sampler=release.sampler,
        )

    @classmethod
    def from_net(
        cls,
        net: WorldModelNet,
        observation_space: gym.spaces.Box,
        action_space: gym.spaces.Space,
        contexts: dict[str, Any] | None = None,
        sampler: Any = None,
    ) -> WorldModel:
        """Wrap an in-memory network (e.g. during training, for sample rollouts), sampling
        with `sampler` (None: its kind's defaults)."""
        return cls(net, observation_space, action_space, contexts, sampler=sampler)

    # ------------------------------------------------------------------ properties
    @property
    def observation_space(self) -> gym.spaces.Box:
        return self._observation_space

    @property
    def action_space(self) -> gym.spaces.Space:
        return self._action_space

    @property
    def contexts(self) -> dict[str, Any] | None:
        """Starting contexts shipped with the checkpoint: frames [N, K, H, W, 3] uint8 and
        actions [N, K-1, ...] (dict of arrays for Dict spaces), or None."""
        return self._contexts

    @property
    def config(self):
        return self.net.config

    @property
    def sampler(self) -> Any:
        """How rollouts sample (a DiffusionSampler or TileSampler): the release's defaults
        unless replaced; `step`'s steps and guidance override it per call."""
        return self.rollout.sampler

    @property
    def release(self) -> ReleaseInfo:
        """The game, frame rate, action names and sampler settings of this model (typed)."""
        return ReleaseInfo.of(self.metadata, self.net.config, self.sampler)

    @property
    def device(self) -> torch.device:
        return self.net.device

    @property
    def batch_size(self) -> int | None:
        """Batch size of the current rollout (None before `reset`)."""
        return None if self._state is None else self._batch

    @property
    def paid(self) -> np.ndarray | None:
        """Which named events (`config.events`) each rollout has had, bool [B, E] (those it
        was told it had at its start included); None before `reset` or for a model without
        named events."""
        got = getattr(self._state, "paid", None)
        return None if got is None else got.cpu().numpy().copy()

    # ------------------------------------------------------------------ input checks
    def _context(self, frames: Any, actions: Any) -> tuple[Tensor, Tensor]:
        frames = self.net.check_frames(frames, ndim=5)  # [B, K, H, W, 3]
        B, K = frames.shape[:2]
        if K < 1:
            raise FrameError("reset needs at least one context frame: frames [B, K>=1, H, W, 3]")
        shape = self.net.action_encoder.batch_shape(actions)
        if shape != (B, K - 1):
            raise ActionError(
                f"context actions have batch shape {shape}; frames [B={B}, K={K}] need actions "
                f"[{B}, {K - 1}, ...] (the actions between consecutive frames)"
            )
        return self.net.frames_to_x(frames), self.net.encode_actions(actions).to(self.device)

    def _actions(self, actions: Any, batch: int, chunk: int | None) -> Tensor:
        shape = self.net.action_encoder.batch_shape(actions)
        want = (batch,) if chunk is None else (batch, chunk)
        if shape != want:
            raise ActionError(
                f"actions have batch shape {shape}, expected {want} "
                f"(one action per {'environment' if chunk is None else 'environment and frame'})"
            )
        return self.net.encode_actions(actions).to(self.device)

    # ------------------------------------------------------------------ rollout
    @torch.inference_mode()
    def reset(
        self, frames: Any, actions: Any, paid: Any | None = None, episode_start: Any | None = None
    ) -> None:
        """Start B rollouts from context frames [B, K, H, W, 3] uint8 (np or torch) and the
        K-1 actions between them, [B, K-1, ...] (a dict of such for Dict spaces).

        Frames beyond the model's context keep only the newest `context - 1`. `paid`: bool
        [B, E], the named events each episode had before the context; `episode_start`: bool
        [B], whose context starts at its episode's first frame (both as in `generate`).
        """
        x, enc = self._context(frames, actions)
        self._batch = x.shape[0]
        state = self.rollout.start(x, enc)
        if paid is not None:
            self._set_paid(state, paid)
        if episode_start is not None:
            self._set_episode_start(state, episode_start, x)
        self._state = state

    @property
    def restarts_rows(self) -> bool:
        """Whether `restart` can start some rollouts afresh while the others go on (a tile
        model: each rollout's state is its own; the diffusion model shares one cache)."""
        return hasattr(self.rollout, "restart")

    @torch.inference_mode()
    def restart(
        self,
        rows: Any,
        frames: Any,
        actions: Any,
        paid: Any | None = None,
        episode_start: Any | None = None,
    ) -> None:
        """Start the rollouts `rows` (indices into the batch) afresh from context frames
        [b, K, H, W, 3] and actions [b, K-1, ...], one per row, the events they had before
        (`paid` bool [b, E]) and whose context starts its episode (`episode_start` bool [b];
        both as in `reset`); the others go on, their memory included. Needs `restarts_rows`;
        else `reset` them all."""
        if self._state is None:
            raise WorldsimError("call reset(frames, actions) before restart(rows, ...)")
        if not self.restarts_rows:
            raise WorldsimError(
                "this world model's rollouts share one state: reset(frames, actions) all of them"
            )
        rows = torch.as_tensor(np.asarray(rows, dtype=np.int64)).reshape(-1)
        if len(rows) and (rows.min() < 0 or rows.max() >= self._batch):
            raise WorldsimError(f"rows {rows.tolist()} out of range for {self._batch} rollouts")
        x, enc = self._context(frames, actions)
        if x.shape[0] != len(rows):
            raise FrameError(f"{len(rows)} rows to restart but {x.shape[0]} contexts given")
        if len(rows):
            self.rollout.restart(self._state, rows, x, enc)
            if paid is not None:
                self._set_paid(self._state, paid, rows.to(self.device))
            if episode_start is not None:
                self._set_episode_start(self._state, episode_start, x, rows.to(self.device))

    @torch.inference_mode()
    def step(
        self,
        actions: Any,
        *,
        steps: int | None = None,
        guidance: float | None = None,
        generator: torch.Generator | None = None,
        as_tensors: bool = False,
    ) -> tuple[Any, Any, Any]:
        """Generate the frame that follows `actions` [B, ...] in every rollout.

        Args:
            actions: one action per rollout, [B, ...] (a dict of such for Dict spaces).
            steps: sampler steps (default: the config's).
            guidance: classifier-free guidance scale on the action (1: none).
            generator: seeds the sampling noise.
            as_tensors: return torch tensors on the model's device (no copy to numpy).

        Returns:
            frames uint8 [B, H, W, 3], rewards float32 [B], terminated bool [B]: numpy arrays,
            or tensors with `as_tensors`.
        """
        if self._state is None:
            raise WorldsimError("call reset(frames, actions) before step(actions)")
        enc = self._actions(actions, self._batch, None)[:, None]  # [B, 1, A]
        x, rewards, p_end = self.rollout.next(
            self._state, enc, steps=steps, guidance=guidance, generator=generator
        )
        out = self.net.x_to_frames(x)[:, 0], rewards[:, 0].float(), p_end[:, 0] > 0.5
        return out if as_tensors else tuple(t.cpu().numpy() for t in out)

    @torch.inference_mode()
    def generate(
        self,
        context_frames: Any,
        context_actions: Any,
        future_actions: Any,
        *,
        steps: int | None = None,
        guidance: float | None = None,
        generator: torch.Generator | None = None,
        chunk: int = 1,
        paid: Any | None = None,
        episode_start: Any | None = None,
        view_motion: Any | None = None,
    ) -> dict[str, np.ndarray]:
        """Open-loop rollout of N frames after a context, leaving `reset` state untouched.

        Args:
            context_frames: uint8 [B, K, H, W, 3]; context_actions [B, K-1, ...].
            future_actions: [B, N, ...] actions, the first leading from the last context frame.
            chunk: frames denoised jointly per sampler run (1: one at a time; N: the whole
                future as one clip).
            paid: bool [B, E]: which of a tile model's named events (`config.events`) the
                episode had already had before the context, so they do not pay again (None:
                none; a clip from the middle of an episode should say).
            episode_start: bool [B]: which contexts start at their episode's first frame
                (the game's reset), where its timers start: a tile model with HUD clocks
                (`config.hud_clock`) then knows from the first step when food and water fall
                (None: none; the clocks run from the first change they see). Models without
                clocks ignore it.
            view_motion: int [B, N, 2]: how far the view moves at each step, in tiles (d_row,
                d_col; Crafter's `view_pos` differences). A tile model then scrolls so instead
                of choosing: the benchmark's test of memory with the oracle's knowledge of
                where the player went. Other models raise WorldsimError.

        Returns:
            dict(frames uint8 [B, N, H, W, 3], rewards float32 [B, N], terminated bool [B, N]).
        """
        x, enc = self._context(context_frames, context_actions)
        B = x.shape[0]
        shape = self.net.action_encoder.batch_shape(future_actions)
        if len(shape) != 2 or shape[0] != B:
            raise ActionError(f"future actions have batch shape {shape}, expected ({B}, N)")
        future = self.net.encode_actions(future_actions).to(self.device)  # [B, N, A]
        if chunk < 1:
            raise ValueError(f"chunk must be at least 1, got {chunk}")
        state = self.rollout.start(x, enc)
        if paid is not None:
            self._set_paid(state, paid)
        if episode_start is not None:
            self._set_episode_start(state, episode_start, x)
        told = None if view_motion is None else self._told_motion(view_motion, future.shape[:2])
        xs, rewards, ends = [], [], []
        for i in range(0, future.shape[1], chunk):
            out, r, p = self.rollout.next(
                state, future[:, i : i + chunk], steps=steps, guidance=guidance, generator=generator,
                **({} if told is None else {"given": told[i : i + chunk]}),
            )  # fmt: skip
            xs.append(out)
            rewards.append(r)
            ends.append(p > 0.5)
        if not xs:
            raise ActionError("future_actions is empty: pass [B, N>=1, ...] actions")
        return {
            "frames": self.net.x_to_frames(torch.cat(xs, 1)).cpu().numpy(),
            "rewards": torch.cat(rewards, 1).float().cpu().numpy(),
            "terminated": torch.cat(ends, 1).cpu().numpy(),
        }

    @property
    def takes_view_motion(self) -> bool:
        """Whether `generate` accepts `view_motion` (tile models: their scroll is a choice)."""
        return isinstance(self.net, TileWorldNet)

    def _told_motion(self, view_motion: Any, shape: tuple[int, int]) -> list[Any]:
        """`generate`'s view_motion [B, N, 2] as one `Given` shift per frame."""
        if not self.takes_view_motion:
            raise WorldsimError(
                "view_motion: only a tile world model can be told how its view moves (this "
                "one draws the scroll itself); leave view_motion out"
            )
        motion = torch.as_tensor(np.asarray(view_motion), device=self.device)
        if tuple(motion.shape) != (*shape, 2):
            raise ValueError(
                f"view_motion has shape {tuple(motion.shape)}, expected {(*shape, 2)}: "
                "(d_row, d_col) per rollout and step"
            )
        classes = self.rollout.shift_classes(motion)
        return [Given(shift=classes[:, i]) for i in range(shape[1])]

    def _set_paid(self, state: Any, paid: Any, rows: Tensor | None = None) -> None:
        """Set which named events the rollouts (`rows` of them; None: all) had already had."""
        want = getattr(state, "paid", None)
        if want is not None and rows is not None:
            want = want[rows]
        given = torch.as_tensor(np.asarray(paid, dtype=bool), device=self.device)
        if want is None or given.shape != want.shape:
            raise ValueError(
                f"paid has shape {tuple(given.shape)}; this model takes "
                + (f"bool [B, E] = {tuple(want.shape)}, one per named event" if want is not None
                   else "none (it has no named events): leave it out")
            )  # fmt: skip
        if rows is None:
            state.paid = given
        else:
            state.paid[rows] = given

    def _set_episode_start(
        self, state: Any, episode_start: Any, x: Tensor, rows: Tensor | None = None
    ) -> None:
        """Count the HUD clocks of the rollouts (`rows` of them; None: all) whose context x
        [b, K, ...] starts its episode from that first frame, as if every HUD token had
        changed there: the game's timers start at its reset (`tiles.hud_clocks`)."""
        clock = getattr(state, "clock", None)
        n, frames = x.shape[:2]
        given = torch.as_tensor(np.asarray(episode_start, dtype=bool), device=self.device)
        if given.shape != (n,):
            raise ValueError(
                f"episode_start has shape {tuple(given.shape)}; pass bool [{n}], one per rollout"
            )
        if clock is None:
            return
        part = clock if rows is None else clock[rows]
        part = torch.where(given[:, None] & (part == 0), frames, part)
        if rows is None:
            state.clock = part
        else:
            state.clock[rows] = part

    @torch.inference_mode()
    def sample_clip(
        self,
        actions: Any,
        *,
        steps: int | None = None,
        guidance: float | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, np.ndarray]:
        """Denoise a whole clip of T = N + 1 frames jointly from noise, given its actions.

        Args:
            actions: [B, N, ...], N + 1 <= config.context; actions[:, t] leads frame t -> t+1.

        Returns:
            dict(frames uint8 [B, N+1, H, W, 3], rewards float32 [B, N], terminated bool [B, N])
            (rewards/terminated of the transitions between the frames).
        """
        if isinstance(self.net, TileWorldNet):
            raise WorldsimError(
                "sample_clip needs a diffusion world model: a tile world model generates from "
                "a real starting frame (use reset/step or generate)"
            )
        shape = self.net.action_encoder.batch_shape(actions)
        if len(shape) != 2 or shape[1] + 1 > self.config.context:
            raise ActionError(
                f"actions have batch shape {shape}; sample_clip needs [B, N, ...] with "
                f"N + 1 <= context {self.config.context}"
            )
        enc = self.net.encode_actions(actions).to(self.device)  # [B, N, A]
        B, c, f = shape[0], self.config.latent_channels, self.config.latent_factor
        empty = torch.zeros(
            B, 0, c, self.config.height // f, self.config.width // f, device=self.device
        )
        state = self.rollout.start(empty, enc[:, :0])
        enc = torch.cat([torch.zeros_like(enc[:, :1]), enc], 1)  # frame 0: no action before it
        x, rewards, p_end = self.rollout.next(
            state, enc, steps=steps, guidance=guidance, generator=generator
        )
        return {
            "frames": self.net.x_to_frames(x).cpu().numpy(),
            "rewards": rewards[:, 1:].float().cpu().numpy(),
            "terminated": (p_end[:, 1:] > 0.5).cpu().numpy(),
        }

    # ------------------------------------------------------------------ generative tools
    # One clip at a time; the logic and the full arguments are in worldsim/generate/.
    def extend(
        self, frames: Any, actions: Any, future_actions: Any = None, **kw: Any
    ) -> Generation:
        """A clip [T, H, W, 3] extended forward (or `backward=True`) by new frames."""
        return extend(self, frames, actions, future_actions, **kw)

    def animate(self, image: Any, strength: float, actions: Any = None, **kw: Any) -> Generation:
        """A picture [H, W, 3] brought onto the game at `strength` in [0, 1], then played."""
        return animate(self, image, strength, actions, **kw)

    def edit(self, frames: Any, actions: Any, start: int, **kw: Any) -> Generation:
        """frames[start:] re-generated under `new_actions` or at `strength`; frames[:start] kept."""
        return edit(self, frames, actions, start, **kw)

    def bridge(self, start_frame: Any, end_frame: Any, n: int, **kw: Any) -> Generation:
        """The n frames between a start and an end frame [H, W, 3], both held clean."""
        return bridge(self, start_frame, end_frame, n, **kw)
