"""Gymnasium environments: real-game adapters and the `worldsim/...` ids (registered on import)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from envs.games import GAMES, game_info, make_game
from envs.world_model_registry import register_world_model_envs


def _register(gym_id: str, entry_point: str, max_episode_steps: int | None, **kwargs: Any) -> None:
    # Idempotent: importing twice (or reloading) must not re-register and warn.
    if gym_id not in gym.registry:
        gym.register(
            gym_id, entry_point=entry_point, max_episode_steps=max_episode_steps, kwargs=kwargs
        )


# --- real games (truncation limits are each game's standard) ---
# Crafter's benchmark episode length.
_register("worldsim/RealCrafter-v0", "envs.crafter_env:CrafterEnv", 10000)
# 2100 tics (the scenario's own timeout) at frame skip 4.
_register(
    "worldsim/RealDoomHealthGathering-v0",
    "envs.doom_env:ViZDoomEnv",
    525,
    scenario="health_gathering",
)
# 2100 steps = 4 minutes of play at frame skip 4.
_register(
    "worldsim/RealDoomMap-v0",
    "envs.doom_env:ViZDoomEnv",
    2100,
    scenario="freedoom1",
    doom_map="E1M1",
)
# ALE v5's 108,000 console frames at frame skip 4.
_register("worldsim/RealAtari-v0", "envs.atari_env:AtariEnv", 27000)
_register("worldsim/RealBreakout-v0", "envs.atari_env:AtariEnv", 27000, env_id="ALE/Breakout-v5")
_register("worldsim/RealPong-v0", "envs.atari_env:AtariEnv", 27000, env_id="ALE/Pong-v5")
# The wrapped id keeps its own TimeLimit (CartPole-v1: 500, CarRacing-v3: 1000); pass
# max_episode_steps= to gym.make / make_game to add one.
_register("worldsim/RealPixel-v0", "envs.pixel_env:PixelEnv", None)
# MineRL envs carry their own limits.
_register("worldsim/RealMineRL-v0", "envs.minerl_env:MineRLEnv", None)
# 1000 steps = 50 s of play at 20 steps/s. Walking is timed by the game's clock, so a replay
# drifts (measured in envs/minetest_env.py): nondeterministic.
if "worldsim/RealMinetest-v0" not in gym.registry:
    gym.register(
        "worldsim/RealMinetest-v0",
        entry_point="envs.minetest_env:MinetestEnv",
        max_episode_steps=1000,
        nondeterministic=True,
    )

# --- world-model environments: worldsim/Crafter-v0 (bundled model), worldsim/WorldModel-v0 ---
register_world_model_envs()

__all__ = ["GAMES", "game_info", "make_game"]
