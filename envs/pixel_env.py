"""Any Gymnasium environment seen through its pixels, plus the frame helpers the adapters share."""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from PIL import Image

from envs.games import UnknownGameError, unknown_id_error

FrameSize = tuple[int, int]  # (H, W)


def frame_size(size: int | tuple[int, int] | list[int]) -> FrameSize:
    """Normalise a frame size argument to ``(H, W)``.

    Args:
        size: One int for square frames, or ``(H, W)``.

    Returns:
        ``(H, W)`` as ints, both positive.
    """
    if isinstance(size, int | np.integer):
        size = (int(size), int(size))
    height, width = (int(v) for v in size)
    if height <= 0 or width <= 0:
        raise ValueError(f"frame size must be positive, got {size!r}")
    return height, width


def image_space(size: FrameSize) -> spaces.Box:
    """The observation space of an RGB frame: Box(0, 255, (H, W, 3), uint8)."""
    return spaces.Box(0, 255, (*size, 3), np.uint8)


def resize_frame(frame: np.ndarray, size: FrameSize) -> np.ndarray:
    """Resize an RGB frame with PIL (antialiased bilinear when shrinking).

    Args:
        frame: uint8 [H0, W0, 3].
        size: target ``(H, W)``.

    Returns:
        A new uint8 [H, W, 3] array (always a copy, never the game's buffer).
    """
    if frame.shape[:2] == tuple(size):
        return np.array(frame, dtype=np.uint8, copy=True)
    image = Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8))
    return np.asarray(image.resize((size[1], size[0]), Image.Resampling.BILINEAR)).copy()


def is_image_space(space: gym.Space) -> bool:
    """Whether ``space`` holds uint8 RGB frames [H, W, 3]."""
    return (
        isinstance(space, spaces.Box)
        and space.dtype == np.uint8
        and len(space.shape) == 3
        and space.shape[-1] == 3
    )


def discrete_action_names(env: gym.Env) -> list[str] | None:
    """Names for the actions of a Discrete space, or None for any other space.

    Uses the game's own names where it has them (``action_names`` or ALE-style
    ``get_action_meanings()``), else ``"action_<i>"``.
    """
    if not isinstance(env.action_space, spaces.Discrete):
        return None
    inner = env.unwrapped
    names = getattr(inner, "action_names", None)
    if names is None and hasattr(inner, "get_action_meanings"):
        names = inner.get_action_meanings()
    n = int(env.action_space.n)
    if names is None or len(names) != n:
        names = [f"action_{i}" for i in range(n)]
    return [str(name) for name in names]


class FrameEnv(gym.Env):
    """What every real-game adapter shares: the argument checks, ``render()`` returning the
    current frame (``render_mode="rgb_array"``), and ``close()`` closing the wrapped env."""

    render_mode: str | None = None
    _frame: np.ndarray | None = None

    @staticmethod
    def check_arguments(render_mode: str | None, frame_skip: int = 1) -> None:
        """Raise ValueError for a render mode other than None / "rgb_array", or frame_skip < 1."""
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if frame_skip < 1:
            raise ValueError(f"frame_skip must be >= 1, got {frame_skip}")

    def render(self) -> np.ndarray | None:
        """The current frame, uint8 [H, W, 3] (``render_mode="rgb_array"``)."""
        if self.render_mode != "rgb_array" or self._frame is None:
            return None
        return self._frame.copy()

    def close(self) -> None:
        inner = getattr(self, "inner", None)  # the wrapped env, if made
        if inner is not None:
            inner.close()
        super().close()


class PixelEnv(FrameEnv):
    """Any Gymnasium environment, observed as RGB frames.

    ## Description
    Wraps the environment registered as ``env_id``. If its observation is already an RGB
    image (e.g. ``CarRacing-v3``) that image is the observation; otherwise (e.g.
    ``CartPole-v1``) the environment is made with ``render_mode="rgb_array"`` and
    ``render()`` is the observation. Frames are resized to ``size``.

    ## Action Space
    The wrapped environment's own, unchanged (CarRacing: continuous Box(3)). For Discrete
    spaces ``action_names`` holds names (the game's where it has them).

    ## Observation Space
    Box(0, 255, (H, W, 3), uint8), ``size=(H, W)`` (default 64x64).

    ## Rewards
    The wrapped environment's.

    ## Starting State
    The wrapped environment's reset, seeded from this env's ``np_random`` at every reset.

    ## Episode End
    ``terminated`` and ``truncated`` come from the wrapped environment, including the
    ``TimeLimit`` of its own registration (CartPole-v1: 500 steps).

    ## Arguments
    ``env_id``, ``size``, ``render_mode`` (``"rgb_array"`` returns the current frame;
    ``"human"`` is left to play.py), and ``env_kwargs`` passed to ``gym.make(env_id)``.

    ## Version History
    * v0: first version.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        env_id: str = "CartPole-v1",
        size: int | tuple[int, int] = 64,
        render_mode: str | None = None,
        env_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.check_arguments(render_mode)
        self.env_id = env_id
        self.size = frame_size(size)
        self.render_mode = render_mode
        # rgb_array only renders when asked, so asking for it costs nothing for envs whose
        # observation is already an image, and it saves making the env twice.
        try:
            self.inner = gym.make(
                env_id, render_mode="rgb_array", disable_env_checker=True, **(env_kwargs or {})
            )
        except gym.error.UnregisteredEnv as error:
            raise unknown_id_error("Gymnasium", env_id, error, "CarRacing-v3") from error
        self.uses_render = not is_image_space(self.inner.observation_space)
        if self.uses_render and "rgb_array" not in self.inner.metadata.get("render_modes", []):
            self.inner.close()
            raise UnknownGameError(
                f"{env_id!r} has neither RGB image observations nor render_mode='rgb_array', "
                "so it cannot be seen as pixels: pick an env with one of them"
            )
        self.observation_space = image_space(self.size)
        self.action_space = self.inner.action_space
        self.action_names = discrete_action_names(self.inner)
        fps = self.inner.metadata.get("render_fps") or 30
        self.metadata = {**self.metadata, "render_fps": float(fps)}
        self._frame: np.ndarray | None = None

    def _observe(self, obs: Any) -> np.ndarray:
        frame = self.inner.render() if self.uses_render else obs
        self._frame = resize_frame(np.asarray(frame), self.size)
        return self._frame.copy()

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        inner_seed = int(self.np_random.integers(2**31 - 1))
        obs, info = self.inner.reset(seed=inner_seed, options=options)
        return self._observe(obs), copy.deepcopy(info)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.inner.step(action)
        return (
            self._observe(obs),
            float(reward),
            bool(terminated),
            bool(truncated),
            copy.deepcopy(info),
        )
