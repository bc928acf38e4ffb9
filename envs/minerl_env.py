"""MineRL (Minecraft) environments as Gymnasium 1.x environments, when `minerl` is installed."""

from __future__ import annotations

import copy
import importlib
from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces

from envs.games import GameDependencyError
from envs.pixel_env import FrameEnv, frame_size, image_space, resize_frame

MINERL_FPS = 20  # Minecraft ticks per second; MineRL steps once per tick

INSTALL_HINT = (
    "MineRL is not installed. It needs a Java 8 JDK and builds Minecraft while installing "
    "(network access required): install a JDK 8 (e.g. `apt-get install openjdk-8-jdk`), "
    "then `pip install 'worldsim[minerl]'` (or `pip install minerl`). Recorded Minecraft "
    "play (VPT or MineRL datasets) can be imported without it."
)


def require_minerl() -> Any:
    """Import and return the `minerl` module, or raise GameDependencyError with the fix."""
    try:
        return importlib.import_module("minerl")
    except ImportError as error:
        raise GameDependencyError(INSTALL_HINT) from error


def convert_space(space: Any) -> spaces.Space:
    """A MineRL (old ``gym``) space as the equivalent Gymnasium space.

    MineRL's ``Enum`` (named values such as ``"none"``, ``"dirt"``) becomes
    ``Discrete(len(values))``; its index is mapped back by :func:`to_minerl_action`.
    """
    if hasattr(space, "values") and not hasattr(space, "spaces"):  # minerl Enum
        return spaces.Discrete(len(space.values))
    if hasattr(space, "spaces"):  # Dict
        return spaces.Dict({key: convert_space(sub) for key, sub in space.spaces.items()})
    if hasattr(space, "n"):  # Discrete
        return spaces.Discrete(int(space.n))
    if hasattr(space, "low") and hasattr(space, "high"):  # Box
        return spaces.Box(
            np.asarray(space.low), np.asarray(space.high), tuple(space.shape), space.dtype
        )
    raise TypeError(f"unsupported MineRL space {space!r}")


def to_minerl_action(action: dict[str, Any], space: Any) -> dict[str, Any]:
    """Our Gymnasium action dict -> the dict MineRL's ``step`` expects (Enum names restored)."""
    out = {}
    for key, sub in space.spaces.items():
        value = action[key]
        if hasattr(sub, "values") and not hasattr(sub, "spaces"):
            out[key] = list(sub.values)[int(value)]
        elif hasattr(sub, "spaces"):
            out[key] = to_minerl_action(value, sub)
        else:
            out[key] = np.asarray(value)
    return out


class MineRLEnv(FrameEnv):
    """A MineRL environment (old ``gym`` API) adapted to Gymnasium 1.x, observed through ``pov``.

    ## Description
    Minecraft through MineRL (``MineRLTreechop-v0``, ``MineRLNavigateDense-v0``,
    ``MineRLBasaltFindCave-v0``, ...). Needs the optional ``minerl`` package and Java;
    without it, construction raises :class:`GameDependencyError` saying how to install it.

    ## Action Space
    MineRL's Dict action space as Gymnasium spaces (keys, attack/use, camera Box(2) in
    degrees, Enum choices as Discrete indices). ``action_names`` is None.

    ## Observation Space
    Box(0, 255, (H, W, 3), uint8): ``obs["pov"]``, at its native size unless ``size``.

    ## Rewards, Starting State, Episode End
    MineRL's. ``done`` is ``terminated`` unless the inner ``TimeLimit`` flagged it
    (``TimeLimit.truncated``), then it is ``truncated``.

    ## Info
    MineRL's info plus the other observation keys (inventory, equipment, ...), copied.

    ## Arguments
    ``env_id``, ``size`` (None: native), ``render_mode`` (``"rgb_array"``).

    ## Version History
    * v0: first version (MineRL 0.4 and 1.0 APIs).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": MINERL_FPS}

    def __init__(
        self,
        env_id: str = "MineRLTreechop-v0",
        size: int | tuple[int, int] | None = None,
        render_mode: str | None = None,
    ) -> None:
        self.check_arguments(render_mode)
        require_minerl()
        old_gym = importlib.import_module("gym")  # MineRL registers its ids with old gym
        self.env_id = env_id
        self.render_mode = render_mode
        self.inner = old_gym.make(env_id)
        native = tuple(self.inner.observation_space.spaces["pov"].shape[:2])
        self.size = frame_size(size) if size is not None else native
        self.observation_space = image_space(self.size)
        self.action_space = convert_space(self.inner.action_space)
        self.action_names = None
        self._frame: np.ndarray | None = None

    def _split(self, obs: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        self._frame = resize_frame(np.asarray(obs["pov"]), self.size)
        extra = {k: copy.deepcopy(v) for k, v in obs.items() if k != "pov"}
        return self._frame.copy(), extra

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.inner.seed(int(self.np_random.integers(2**31 - 1)))
        result = self.inner.reset()
        obs = result[0] if isinstance(result, tuple) else result
        return self._split(obs)

    def step(self, action: dict[str, Any]) -> tuple[np.ndarray, float, bool, bool, dict]:
        result = self.inner.step(to_minerl_action(action, self.inner.action_space))
        if len(result) == 5:
            obs, reward, terminated, truncated, info = result
        else:
            obs, reward, done, info = result
            truncated = bool(info.get("TimeLimit.truncated", False))
            terminated = bool(done) and not truncated
        frame, extra = self._split(obs)
        return (
            frame,
            float(reward),
            bool(terminated),
            bool(truncated),
            {**extra, **copy.deepcopy(info)},
        )
