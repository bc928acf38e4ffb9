"""Short game names -> real-game Gymnasium environments: `make_game("crafter")`, `make_game("atari:ALE/Seaquest-v5")`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

from worldsim.errors import WorldsimError


class UnknownGameError(WorldsimError, ValueError):
    """A game name (or a game id inside it) that no adapter knows."""


class GameDependencyError(WorldsimError, ImportError):
    """A game's optional package is missing; the message says how to install it."""


@dataclass(frozen=True)
class Game:
    """A playable game: the registered Gymnasium id and the arguments that select it."""

    gym_id: str  # registered in envs/__init__.py
    description: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def make(self, **kwargs: Any) -> gym.Env:
        """``gym.make`` with TimeLimit (``max_episode_steps=`` overrides the registered one)."""
        return gym.make(self.gym_id, **{**self.kwargs, **kwargs})


GAMES: dict[str, Game] = {
    "crafter": Game("worldsim/RealCrafter-v0", "Crafter, 64x64, 17 actions (the default)"),
    "doom-health": Game(
        "worldsim/RealDoomHealthGathering-v0", "ViZDoom health gathering: move and turn"
    ),
    "doom-map": Game("worldsim/RealDoomMap-v0", "ViZDoom full Freedoom map E1M1"),
    "breakout": Game("worldsim/RealBreakout-v0", "Atari Breakout (ALE v5)"),
    "pong": Game("worldsim/RealPong-v0", "Atari Pong (ALE v5)"),
    "minetest": Game(
        "worldsim/RealMinetest-v0", "Minetest 3D voxel world, 64x64, MineRL Dict actions"
    ),
}

# Families named "<prefix><id>": the id is passed to the adapter as env_id.
PREFIXES: dict[str, tuple[str, str]] = {
    "atari:": ("worldsim/RealAtari-v0", "atari:ALE/Seaquest-v5"),
    "gym:": ("worldsim/RealPixel-v0", "gym:CarRacing-v3"),
    "minerl:": ("worldsim/RealMineRL-v0", "minerl:MineRLTreechop-v0"),
}


def game_names() -> list[str]:
    """Every accepted name, prefixed families written as ``prefix<id>``."""
    return [*GAMES, *(f"{prefix}<id> (e.g. {ex})" for prefix, (_, ex) in PREFIXES.items())]


def resolve(name: str) -> Game:
    """The :class:`Game` a name stands for.

    Raises:
        UnknownGameError: the name is neither a known game nor ``prefix:<id>``.
    """
    if name in GAMES:
        return GAMES[name]
    for prefix, (gym_id, _) in PREFIXES.items():
        if name.startswith(prefix) and len(name) > len(prefix):
            env_id = name[len(prefix) :]
            return Game(gym_id, f"{gym_id} wrapping {env_id}", {"env_id": env_id})
    raise UnknownGameError(f"unknown game {name!r}: use one of " + ", ".join(game_names()))


def make_game(name: str, **kwargs: Any) -> gym.Env:
    """Make a real game by short name, with its TimeLimit applied.

    Args:
        name: ``"crafter"``, ``"doom-health"``, ``"doom-map"``, ``"breakout"``, ``"pong"``,
            ``"atari:<ALE id>"``, ``"gym:<Gymnasium id>"`` or ``"minerl:<MineRL id>"``.
        **kwargs: passed to ``gym.make``: the adapter's arguments (``size``,
            ``frame_skip``, ``render_mode``, ...) and ``max_episode_steps``.

    Returns:
        The environment; ``env.unwrapped.action_names`` names Discrete actions (else
        None) and ``env.metadata["render_fps"]`` is the rate its frames are shown at.

    Raises:
        UnknownGameError: an unknown name or wrapped id.
        GameDependencyError: the game's optional package is not installed (MineRL).
    """
    return resolve(name).make(**kwargs)


def game_info(name: str) -> dict[str, Any]:
    """What a game name stands for, JSON-ready, for dataset metadata.

    Returns:
        ``{"game": name, "gym_id": ..., "kwargs": {...}, "max_episode_steps": ...,
        "description": ...}``.
    """
    game = resolve(name)
    spec = gym.spec(game.gym_id)
    return {
        "game": name,
        "gym_id": game.gym_id,
        "kwargs": {**spec.kwargs, **game.kwargs},
        "max_episode_steps": spec.max_episode_steps,
        "description": game.description,
    }


def unknown_id_error(kind: str, env_id: str, error: Exception, example: str) -> UnknownGameError:
    """The error for an id the wrapped library does not know (used by the adapters)."""
    return UnknownGameError(f"unknown {kind} id {env_id!r} ({error}); e.g. {example}")
