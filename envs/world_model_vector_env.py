"""WorldModelVectorEnv: B dreams stepped together in one batched forward pass (Gymnasium 1.x).

Loading, checks, start contexts and sampler settings are the dream core (`envs.dream`,
`envs.dream_starts`), shared with the single `WorldModelEnv`.
"""

from __future__ import annotations

from collections import deque
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from envs.dream import DreamCore, to_numpy
from envs.dream_starts import check_options
from worldsim.spaces import stack_actions, tree_index, tree_stack
from worldsim.validation import check_discrete_actions, check_int

if TYPE_CHECKING:
    from worldsim.world_model import WorldModel

__all__ = ["WorldModelVectorEnv"]


class WorldModelVectorEnv(DreamCore, VectorEnv):
    """``num_envs`` copies of `WorldModelEnv` sharing one world model and one forward pass.

    Spaces, rewards, starting states and reset options are those of
    :class:`envs.world_model_env.WorldModelEnv` (per-env options may be lists, e.g.
    ``{"episode": [3, 5, ...]}``); observations are batched: uint8 [B, H, W, 3].

    Autoreset (``autoreset_mode``, Gymnasium 1.x): ``NEXT_STEP`` (default): the step after
    an env terminates or truncates resets it, ignoring its action and returning its new
    first observation with reward 0; ``SAME_STEP``: the env resets in the step that ends
    it, the last observation and info going to ``infos["final_obs"]``/``["final_info"]``;
    ``DISABLED``: call ``reset(options={"reset_mask": mask})`` yourself. Truncation after
    ``max_episode_steps`` steps is done here (vector envs get no ``TimeLimit``).

    Resetting some envs restarts only those where the model allows it (a tile model: each
    rollout, its world memory included, is its own). A diffusion model keeps one batched
    key/value cache, so there a reset re-primes the whole batch: every env restarts from its
    last frames, trimmed to the shortest window in the batch, so one env's reset can shorten
    the others' memory for a moment.

    Args:
        num_envs: B.
        checkpoint: a release folder, or pass ``world_model``.
        world_model: a loaded ``WorldModel`` (shared, e.g. with a single env).
        game: check the checkpoint is of this game.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        sampler_steps: denoising steps per frame (None: the checkpoint's default).
        guidance: classifier-free guidance scale on the action (None: the default).
        max_episode_steps: truncate episodes after this many steps (None: never).
        autoreset_mode: see above.
        render_mode: ``"rgb_array"``: ``render()`` returns the B frames.
        tensors: observations (and ``infos["final_obs"]``) are torch uint8 tensors on the
            model's device, never copied to numpy; rewards and flags stay numpy. For an agent
            on the same device (``worldsim rl train`` uses it); Gymnasium's own tools expect
            numpy observations, so it is off by default.
    """

    metadata: ClassVar[dict[str, Any]] = {
        "render_modes": ["rgb_array"],
        "render_fps": 10,
        "autoreset_mode": AutoresetMode.NEXT_STEP,
    }

    def __init__(
        self,
        num_envs: int = 1,
        checkpoint: str | Path | None = None,
        *,
        world_model: WorldModel | None = None,
        game: str | None = None,
        device: str | torch.device = "auto",
        sampler_steps: int | None = None,
        guidance: float | None = None,
        max_episode_steps: int | None = None,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        render_mode: str | None = None,
        tensors: bool = False,
    ) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        # Checked before the (slow) model load; None: the default.
        num_envs = check_int(num_envs, "num_envs")
        if max_episode_steps is not None:
            max_episode_steps = check_int(max_episode_steps, "max_episode_steps")
        self.autoreset_mode = AutoresetMode(autoreset_mode)
        self.init_dream(checkpoint, world_model, game=game, device=device,
                        sampler_steps=sampler_steps, guidance=guidance)  # fmt: skip
        self.num_envs, self.render_mode = int(num_envs), render_mode
        self.max_episode_steps = max_episode_steps
        self.metadata = {**self.metadata, "autoreset_mode": self.autoreset_mode}
        self.single_observation_space = self.world_model.observation_space
        self.single_action_space = self.world_model.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        # Frames the model attends to; its rollout keeps at most context - 1 of them on reset.
        self.window = max(self.world_model.release.context - 1, 1)
        B = self.num_envs
        self._frames: list[deque[Any]] = [deque(maxlen=self.window) for _ in range(B)]
        self._actions: list[deque[Any]] = [deque(maxlen=self.window - 1) for _ in range(B)]
        self.tensors = bool(tensors)
        self._obs: Any = np.zeros(self.observation_space.shape, np.uint8)
        if self.tensors:
            self._obs = torch.as_tensor(self._obs, device=self.world_model.device)
        self._steps = np.zeros(B, np.int64)
        self._done = np.zeros(B, np.bool_)  # ended last step: NEXT_STEP resets it now
        self._paid: list[np.ndarray | None] = [None] * B  # events had before each start
        self._episode_start = np.zeros(B, np.bool_)  # each start is its episode's first frame
        self._options: dict[str, Any] = {}

    # ---------------------------------------------------------------- contexts
    def _start(self, i: int, options: dict[str, Any]) -> dict[str, Any]:
        """Draw env i's starting context into its history; returns its info."""
        frames, actions, info = self.starts.draw(options, self.np_random, index=i)
        frames = np.asarray(frames)
        if self.tensors:
            frames = torch.as_tensor(frames, device=self.world_model.device)
        self._frames[i].clear()
        self._actions[i].clear()
        self._frames[i].extend(frames)
        if actions is not None and len(frames) > 1:
            self._actions[i].extend(tree_index(actions, t) for t in range(len(frames) - 1))
        self._obs[i] = frames[-1]
        self._steps[i] = 0
        self._paid[i] = info.get("paid")
        self._episode_start[i] = info["episode_start"]
        return info

    def _contexts(self, rows: np.ndarray) -> tuple[Any, Any]:
        """The recent frames [b, K, H, W, 3] (numpy, or a tensor with `tensors`) and actions
        [b, K-1, ...] of envs `rows`, all trimmed to the shortest of them."""
        K = min(len(self._frames[i]) for i in rows)
        stack = torch.stack if self.tensors else np.stack
        frames = stack([stack(list(self._frames[i])[-K:]) for i in rows])
        space, acts = self.single_action_space, [list(self._actions[i]) for i in rows]
        actions = tree_stack([stack_actions(space, a[len(a) - (K - 1) :] if K > 1 else [])
                              for a in acts])  # fmt: skip
        return frames, actions

    def _prime(self, rows: np.ndarray | None = None) -> None:
        """Restart the model for envs `rows` (None: all) from their recent frames; a model
        that cannot restart some rollouts alone restarts all of them."""
        wm, B = self.world_model, self.num_envs
        if rows is None or len(rows) == B or not wm.restarts_rows or wm.batch_size != B:
            rows, restart = np.arange(B), wm.reset
        else:
            restart = partial(wm.restart, rows)
        frames, actions = self._contexts(rows)
        # A context trimmed to a shorter one of the batch no longer starts its episode.
        whole = np.array([len(self._frames[i]) == frames.shape[1] for i in rows])
        restart(frames, actions, self._paid_of(rows),
                episode_start=self._episode_start[rows] & whole)  # fmt: skip

    def _paid_of(self, rows: np.ndarray) -> np.ndarray | None:
        """The named events envs `rows` had before their starts, bool [b, E] (a start from
        the middle of a stored episode; StartContexts), or None where no start says."""
        paid = [self._paid[i] for i in rows]
        if all(p is None for p in paid):
            return None
        E = len(next(p for p in paid if p is not None))
        return np.stack([np.zeros(E, np.bool_) if p is None else p for p in paid])

    def _infos(self, starts: dict[int, dict[str, Any]] | None = None) -> dict[str, Any]:
        B = self.num_envs
        infos: dict[str, Any] = {
            "sampler_steps": np.full(B, self.sampler_steps),
            "_sampler_steps": np.ones(B, np.bool_),
            "guidance": np.full(B, self.guidance),
            "_guidance": np.ones(B, np.bool_),
        }
        for i, info in (starts or {}).items():
            infos = self._add_info(infos, {k: v for k, v in info.items() if k != "sampler"}, i)
        return infos

    # ---------------------------------------------------------------- Gymnasium API
    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every env (or those in ``options["reset_mask"]``); see the class docstring."""
        options = check_options(options, extra=("reset_mask",))
        if isinstance(seed, list | tuple):
            seed = int(
                np.random.SeedSequence([s for s in seed if s is not None]).generate_state(1)[0]
            )
        super().reset(seed=seed)
        if self._generator is None or seed is not None:
            self.seed_generator()
        mask = options.pop("reset_mask", None)
        mask = np.ones(self.num_envs, np.bool_) if mask is None else np.asarray(mask, np.bool_)
        if mask.shape != (self.num_envs,):
            raise ValueError(
                f"options['reset_mask'] must have shape ({self.num_envs},), got {mask.shape}"
            )
        self._options = options
        starts = {int(i): self._start(int(i), options) for i in np.flatnonzero(mask)}
        self._done[mask] = False
        self._prime(np.flatnonzero(mask))
        return self._copy_obs(), self._infos(starts)

    def step(
        self, actions: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step all B envs with one batched model call; autoreset per ``autoreset_mode``."""
        if self._generator is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        if self.autoreset_mode == AutoresetMode.DISABLED and self._done.any():
            raise gym.error.ResetNeeded(
                f"envs {np.flatnonzero(self._done).tolist()} ended: reset them with "
                "reset(options={'reset_mask': mask}) (autoreset_mode=DISABLED)"
            )
        B = self.num_envs
        if isinstance(self.single_action_space, gym.spaces.Discrete):
            actions = check_discrete_actions(actions, self.single_action_space, B)
        elif not isinstance(actions, dict):
            actions = np.asarray(actions)
        if self.autoreset_mode == AutoresetMode.NEXT_STEP and self._done.all():
            # Every env ended last step (TimeLimit ends them together): no frame to generate.
            starts = {i: self._start(i, self._options) for i in range(B)}
            self._done[:] = False
            self._prime()
            zeros = np.zeros(B, np.bool_)
            return self._copy_obs(), np.zeros(B), zeros, zeros.copy(), self._infos(starts)
        frames, rewards, terminated = self.world_model.step(
            actions, steps=self.sampler_steps, guidance=self.guidance, generator=self._generator,
            as_tensors=self.tensors,
        )  # fmt: skip
        rewards = to_numpy(rewards).astype(np.float64).reshape(B)
        terminated = to_numpy(terminated).astype(np.bool_).reshape(B)
        self._steps += 1
        if self.max_episode_steps is not None:
            truncated = self._steps >= self.max_episode_steps
        else:
            truncated = np.zeros(B, np.bool_)
        self._obs[:] = frames
        for i in range(B):
            # A history that drops its first frame no longer starts the episode.
            self._episode_start[i] &= len(self._frames[i]) < self.window
            self._frames[i].append(frames[i])
            self._actions[i].append(tree_index(actions, i))
        infos = self._infos()
        # Envs to reset now: those that ended last step (NEXT_STEP) or this step (SAME_STEP).
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            reset = self._done.copy()
            rewards[reset], terminated[reset], truncated[reset] = 0.0, False, False
        elif self.autoreset_mode == AutoresetMode.SAME_STEP:
            reset = terminated | truncated
            if reset.any():
                final_obs = np.full(B, None, dtype=object)  # one frame per ended env
                for i in np.flatnonzero(reset):
                    final_obs[i] = self._copy_obs(i)
                infos["final_obs"] = final_obs
                infos["_final_obs"] = reset.copy()
                infos["final_info"] = {
                    k: v.copy() for k, v in infos.items() if not k.startswith(("final", "_final"))
                }
                infos["_final_info"] = reset.copy()
        else:
            reset = np.zeros(B, np.bool_)
        if reset.any():
            starts = {int(i): self._start(int(i), self._options) for i in np.flatnonzero(reset)}
            for i, info in starts.items():
                infos = self._add_info(infos, {k: v for k, v in info.items() if k != "sampler"}, i)
            self._prime(np.flatnonzero(reset))
        same_step = self.autoreset_mode == AutoresetMode.SAME_STEP
        self._done = np.zeros(B, np.bool_) if same_step else terminated | truncated
        return self._copy_obs(), rewards, terminated, truncated, infos

    def _copy_obs(self, i: int | None = None) -> Any:
        """A copy of the observations (or env i's), numpy or a tensor as `tensors` says."""
        obs = self._obs if i is None else self._obs[i]
        return obs.clone() if self.tensors else obs.copy()

    def render(self) -> np.ndarray | None:
        """The B current frames, uint8 [B, H, W, 3] (``render_mode="rgb_array"``)."""
        return to_numpy(self._copy_obs()) if self.render_mode == "rgb_array" else None
