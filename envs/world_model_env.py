"""WorldModelEnv: a released world model served as a Gymnasium environment (the "dream").

Loading, checks, start contexts and sampler settings are the dream core (`envs.dream`,
`envs.dream_starts`), shared with the batched `WorldModelVectorEnv`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import gymnasium as gym
import numpy as np
import torch

from envs.dream import DreamCore, load_world_model, model_game, to_numpy
from envs.dream_starts import START_OPTIONS, StartContexts, StartError, check_options
from worldsim.spaces import stack_actions, tree_index
from worldsim.validation import check_discrete_action, check_int

if TYPE_CHECKING:
    from worldsim.world_model import WorldModel

__all__ = [
    "START_OPTIONS",
    "StartContexts",
    "StartError",
    "WorldModelEnv",
    "load_world_model",
    "model_game",
]


class WorldModelEnv(DreamCore, gym.Env):
    """A learned world model of a game, played as a Gymnasium environment.

    ## Description
    Every step generates the next frame of the game from the frames so far and the action
    taken, with a few-step diffusion sampler (worldsim's action-conditioned DiT), and
    predicts the reward and whether the episode ended. An agent trained here runs in the
    real game unchanged: the spaces are the real game's.

    ## Action Space
    The real game's, as stored in the checkpoint (Crafter: ``Discrete(17)``, named in
    ``action_names``).

    ## Observation Space
    The real game's frames: ``Box(0, 255, (H, W, 3), uint8)`` (Crafter: 64x64).

    ## Rewards
    The model's predicted reward for the transition (trained on the real game's rewards).

    ## Starting State
    K real context frames and the K-1 actions between them; the observation is the last.
    By default a context from the checkpoint, drawn with ``np_random``. Reset options:
    ``{"context": i}`` picks checkpoint context i; ``{"store": PATH or EpisodeStore,
    "episode": i, "start": t}`` takes frames t..t+K-1 of a recorded episode (a random
    episode, from its first frame, by default); ``{"frames": uint8 [K, H, W, 3], "actions":
    [K-1, ...]}`` gives the context itself; ``{"image": uint8 [H, W, 3]}`` starts from
    any picture (image-to-world): it is repeated K times with no-op actions between the
    copies, a world that has stood still.

    ## Episode End
    ``terminated`` when the model predicts the episode ended (death). Truncation comes
    from ``TimeLimit`` (``max_episode_steps`` of the registered id). Long dreams drift.

    ## Info
    ``sampler_steps``, ``guidance`` and ``sampler`` (the settings that produced the frame);
    after reset also ``start`` (checkpoint, store or image) and the context's index.

    ## Arguments
    ``checkpoint`` (a release folder), or ``world_model`` (a loaded ``WorldModel``; it holds
    this env's rollout state, so give each env its own: batch envs with
    ``WorldModelVectorEnv`` instead); ``game`` (check the checkpoint is of this game); ``device``
    (``"auto"``, ``"cpu"``, ``"cuda"``); ``sampler_steps`` and ``guidance`` (None: the
    checkpoint's defaults; both can be changed between steps); ``render_mode``
    (``"rgb_array"`` or ``"human"``, a pygame window scaled by ``render_scale``).
    Bad values raise at once, naming the argument: ``sampler_steps`` below 1, a device that
    is not here (``device="cuda"`` without CUDA), an unknown reset option, a store of another
    game; Discrete actions must be integers in range (``worldsim.validation``), as in the
    real game's env.

    All randomness comes from ``np_random``: a ``torch.Generator`` seeded from it drives
    the sampler, so the same seed and actions give the same frames.

    ## Version History
    * v0: first version.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array", "human"], "render_fps": 10}

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        *,
        world_model: WorldModel | None = None,
        game: str | None = None,
        device: str | torch.device = "auto",
        sampler_steps: int | None = None,
        guidance: float | None = None,
        render_mode: str | None = None,
        render_scale: int = 8,
    ) -> None:
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(
                f"render_mode must be None, 'rgb_array' or 'human', got {render_mode!r}"
            )
        self.init_dream(checkpoint, world_model, game=game, device=device,
                        sampler_steps=sampler_steps, guidance=guidance)  # fmt: skip
        self.observation_space = self.world_model.observation_space
        self.action_space = self.world_model.action_space
        self.render_mode = render_mode
        self.render_scale = check_int(render_scale, "render_scale")
        self._frame: np.ndarray | None = None
        self._window: Any = None  # pygame display surface (render_mode="human")
        self._clock: Any = None

    def get_keys_to_action(self) -> dict[tuple[int, ...], int]:
        """pygame key codes -> action (Discrete games), so ``gymnasium.utils.play.play`` works."""
        from envs.keymaps import keymap_for

        return keymap_for(self.game or "", self.action_space, self.action_names).keys_to_action()

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        options = check_options(options)
        super().reset(seed=seed)
        self.seed_generator()
        frames, actions, info = self.starts.draw(options, self.np_random)
        if actions is None or len(frames) == 1:
            actions = stack_actions(self.action_space, [])
        paid = info.get("paid")
        self.world_model.reset(
            frames[None],
            tree_index(actions, None),
            None if paid is None else paid[None],
            episode_start=[info["episode_start"]],
        )
        self._frame = np.ascontiguousarray(frames[-1])
        if self.render_mode == "human":
            self.render()
        return self._frame.copy(), {**info, **self.sampler_info()}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._frame is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        if isinstance(self.action_space, gym.spaces.Discrete):
            action = check_discrete_action(action, self.action_space, self.action_names)
        frames, rewards, terminated = self.world_model.step(
            tree_index(action, None),
            steps=self.sampler_steps,
            guidance=self.guidance,
            generator=self._generator,
        )
        self._frame = np.ascontiguousarray(to_numpy(frames)[0])
        if self.render_mode == "human":
            self.render()
        reward, done = float(to_numpy(rewards)[0]), bool(to_numpy(terminated)[0])
        return self._frame.copy(), reward, done, False, self.sampler_info()

    def render(self) -> np.ndarray | None:
        """rgb_array: the current frame uint8 [H, W, 3]; human: show it in a pygame window."""
        if self._frame is None or self.render_mode is None:
            return None
        if self.render_mode == "rgb_array":
            return self._frame.copy()
        import pygame  # only for human rendering

        H, W = self._frame.shape[:2]
        size = (W * self.render_scale, H * self.render_scale)
        if self._window is None:
            pygame.display.init()
            pygame.display.set_caption(f"worldsim: {self.game or 'world model'}")
            self._window = pygame.display.set_mode(size)
            self._clock = pygame.time.Clock()
        surface = pygame.surfarray.make_surface(self._frame.swapaxes(0, 1))
        self._window.blit(pygame.transform.scale(surface, size), (0, 0))
        pygame.event.pump()
        pygame.display.flip()
        self._clock.tick(self.metadata["render_fps"])
        return None

    def close(self) -> None:
        if self._window is not None:
            import pygame

            pygame.display.quit()
            self._window = None
