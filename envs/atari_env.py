"""Atari 2600 games through ale-py (bundled ROMs) as Gymnasium 1.x environments with small frames."""

from __future__ import annotations

from typing import Any, ClassVar

import ale_py
import gymnasium as gym
import numpy as np

from envs.games import unknown_id_error
from envs.pixel_env import FrameEnv, frame_size, image_space, resize_frame

gym.register_envs(ale_py)  # makes the ALE/... ids known to gym.make

ATARI_FPS = 60  # the console's frame rate
ALE_MAX_FRAMES = 108_000  # ALE v5's per-episode limit in console frames (30 minutes)


class AtariEnv(FrameEnv):
    """An Atari 2600 game from the Arcade Learning Environment, with resized RGB frames.

    ## Description
    Any ALE id (``ALE/Breakout-v5``, ``ALE/Pong-v5``, ``ALE/Seaquest-v5``, ...) made with
    ``gym.make`` and the v5 protocol: sticky actions with probability 0.25 and a frame
    skip of 4 by default.

    ## Action Space
    The game's minimal Discrete action set (``full_action_space=True``: all 18), named by
    ``action_names`` from ALE's ``get_action_meanings()`` (NOOP, FIRE, RIGHT, ...).

    ## Observation Space
    Box(0, 255, (H, W, 3), uint8): the 210x160 screen resized with PIL, 64x64 by default.

    ## Rewards
    The game score change over the skipped frames.

    ## Starting State
    ALE's reset. The emulator is deterministic; the sticky-action draws come from
    ``np_random``, so ``reset(seed=s)`` and the same actions replay the same episode.

    ## Episode End
    ``terminated`` at game over. ``truncated`` when ALE's 108,000-frame limit is hit, or
    from ``TimeLimit`` (27,000 steps when registered, the same limit at frame skip 4).

    ## Info
    ALE's: ``lives``, ``episode_frame_number``, ``frame_number``.

    ## Arguments
    ``env_id``, ``size`` (int or (H, W)), ``frame_skip``, ``repeat_action_probability``,
    ``full_action_space``, ``render_mode`` (``"rgb_array"`` returns the current frame;
    ``"human"`` is left to play.py).

    ## Version History
    * v0: first version (ale-py 0.12).
    """

    metadata: ClassVar[dict[str, Any]] = {
        "render_modes": ["rgb_array"],
        "render_fps": ATARI_FPS / 4,
    }

    def __init__(
        self,
        env_id: str = "ALE/Breakout-v5",
        size: int | tuple[int, int] = 64,
        frame_skip: int = 4,
        repeat_action_probability: float = 0.25,
        full_action_space: bool = False,
        render_mode: str | None = None,
    ) -> None:
        self.check_arguments(render_mode, frame_skip)
        self.env_id = env_id
        self.size = frame_size(size)
        self.frame_skip = int(frame_skip)
        self.repeat_action_probability = float(repeat_action_probability)
        self.render_mode = render_mode
        try:
            self.inner = gym.make(
                env_id,
                obs_type="rgb",
                frameskip=self.frame_skip,
                repeat_action_probability=0.0,  # sticky actions are drawn here, see step()
                full_action_space=full_action_space,
                max_num_frames_per_episode=ALE_MAX_FRAMES,
                disable_env_checker=True,
            )
        except gym.error.UnregisteredEnv as error:
            raise unknown_id_error("ALE", env_id, error, "ALE/Seaquest-v5") from error
        self.observation_space = image_space(self.size)
        self.action_space = self.inner.action_space
        self.action_names: list[str] = list(self.inner.unwrapped.get_action_meanings())
        self.ale = self.inner.unwrapped.ale
        self._ale_actions = list(
            self.ale.getLegalActionSet() if full_action_space else self.ale.getMinimalActionSet()
        )
        self._held = ale_py.Action.NOOP
        self.metadata = {**self.metadata, "render_fps": ATARI_FPS / self.frame_skip}
        self._frame: np.ndarray | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        # No seed for ALE: seeding it reloads the ROM (~90 ms). With sticky actions drawn from
        # np_random below, the emulator itself is deterministic.
        obs, _ = self.inner.reset()
        self._held = ale_py.Action.NOOP
        self._frame = resize_frame(obs, self.size)
        return self._frame.copy(), self._info()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        chosen = self._ale_actions[int(action)]
        reward = 0.0
        for _ in range(self.frame_skip):
            # ALE v5 sticky actions: each console frame keeps the previous action with
            # probability p (what ALE does internally, but from this env's np_random).
            if self.np_random.random() >= self.repeat_action_probability:
                self._held = chosen
            reward += self.ale.act(self._held)
        terminated = self.ale.game_over(with_truncation=False)
        truncated = self.ale.game_truncated()
        self._frame = resize_frame(self.ale.getScreenRGB(), self.size)
        return self._frame.copy(), float(reward), bool(terminated), bool(truncated), self._info()

    def _info(self) -> dict[str, Any]:
        # Not ALE's frame_number: it counts since the ROM was loaded, across episodes.
        return {"lives": self.ale.lives(), "episode_frame_number": self.ale.getEpisodeFrameNumber()}
