"""The world-model Gymnasium ids: worldsim/Crafter-v0 and worldsim/Minetest-v0 (bundled models) and
worldsim/WorldModel-v0 (any release)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym

from worldsim.errors import CheckpointError

__all__ = [
    "DREAM_MAX_STEPS",
    "bundled_checkpoint_path",
    "make_bundled_env",
    "make_bundled_vector_env",
    "make_env",
    "make_vector_env",
    "register_world_model_envs",
]

# Dreams drift over long horizons, and RL in a world model uses short episodes; 1,000
# steps (100 s of Crafter at 10 fps) keeps episodes long enough to play, short enough to
# stay on the data. Override with gym.make(..., max_episode_steps=N).
DREAM_MAX_STEPS = 1000


def bundled_checkpoint_path(game: str = "crafter") -> Path:
    """Where the bundled release of `game` lives: ``worldsim/assets/<game>/`` in the package."""
    import worldsim

    return Path(worldsim.__file__).resolve().parent / "assets" / game


def bundled_checkpoint(game: str = "crafter") -> Path:
    """The bundled release folder of `game`.

    Raises:
        CheckpointError: it is not installed (the message says how to use another one).
    """
    path = bundled_checkpoint_path(game)
    if not (path / "config.json").is_file():
        raise CheckpointError(
            f"the bundled {game} world model is not installed (expected a release folder at "
            f"{path}); pass a checkpoint instead: gym.make('worldsim/WorldModel-v0', "
            "checkpoint='path/to/release'), or `python play.py --checkpoint path/to/release`; "
            "make one with `worldsim fit` then `worldsim export`"
        )
    return path


def _checked(kwargs: dict[str, Any], where: str) -> dict[str, Any]:
    if kwargs.get("checkpoint") is None and kwargs.get("world_model") is None:
        raise CheckpointError(
            f"{where} needs checkpoint='path/to/release' (a `worldsim export` folder)"
        )
    return kwargs


def make_env(**kwargs: Any) -> gym.Env:
    """Entry point of worldsim/WorldModel-v0: ``WorldModelEnv(checkpoint=..., ...)``."""
    from envs.world_model_env import WorldModelEnv

    return WorldModelEnv(**_checked(kwargs, "worldsim/WorldModel-v0"))


def make_vector_env(num_envs: int = 1, **kwargs: Any) -> gym.vector.VectorEnv:
    """Vector entry point of worldsim/WorldModel-v0."""
    from envs.world_model_vector_env import WorldModelVectorEnv

    return WorldModelVectorEnv(num_envs, **_checked(kwargs, "worldsim/WorldModel-v0"))


def _bundled_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    game = kwargs.pop("game", None) or "crafter"
    if kwargs.get("checkpoint") is None and kwargs.get("world_model") is None:
        kwargs["checkpoint"] = bundled_checkpoint(game)
    return {"game": game, **kwargs}


def make_bundled_env(**kwargs: Any) -> gym.Env:
    """Entry point of worldsim/Crafter-v0 and worldsim/Minetest-v0: a bundled world model
    (`game`, default crafter)."""
    from envs.world_model_env import WorldModelEnv

    return WorldModelEnv(**_bundled_kwargs(kwargs))


def make_bundled_vector_env(num_envs: int = 1, **kwargs: Any) -> gym.vector.VectorEnv:
    """Vector entry point of worldsim/Crafter-v0 and worldsim/Minetest-v0."""
    from envs.world_model_vector_env import WorldModelVectorEnv

    return WorldModelVectorEnv(num_envs, **_bundled_kwargs(kwargs))


# gym.make reads an entry point's metadata to choose render wrappers.
_METADATA = {"render_modes": ["rgb_array", "human"], "render_fps": 10}
make_env.metadata = make_bundled_env.metadata = _METADATA  # type: ignore[attr-defined]


def register_world_model_envs() -> None:
    """Register worldsim/Crafter-v0, worldsim/Minetest-v0 and worldsim/WorldModel-v0
    (idempotent; imports no torch)."""
    ids = {
        "worldsim/Crafter-v0": ("make_bundled_env", "make_bundled_vector_env", {"game": "crafter"}),
        "worldsim/Minetest-v0": (
            "make_bundled_env",
            "make_bundled_vector_env",
            {"game": "minetest"},
        ),
        "worldsim/WorldModel-v0": ("make_env", "make_vector_env", {}),
    }
    for gym_id, (single, vector, kwargs) in ids.items():
        if gym_id not in gym.registry:
            gym.register(
                gym_id,
                entry_point=f"{__name__}:{single}",
                vector_entry_point=f"{__name__}:{vector}",
                max_episode_steps=DREAM_MAX_STEPS,
                kwargs=kwargs,
            )
