"""Real-game adapters: Gymnasium API (check_env), seeding, episode ends, info copies, sizes, errors."""

from __future__ import annotations

import importlib
import json
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env

import envs
from envs import game_info, make_game
from envs.games import GameDependencyError, UnknownGameError
from worldsim.errors import WorldsimError

# (game name, make_game kwargs, expected frame shape)
RUNNABLE = [
    ("crafter", {}, (64, 64, 3)),
    ("doom-health", {}, (120, 160, 3)),
    ("doom-map", {}, (120, 160, 3)),
    ("breakout", {}, (64, 64, 3)),
    ("pong", {}, (64, 64, 3)),
    ("gym:CartPole-v1", {}, (64, 64, 3)),
    ("gym:CarRacing-v3", {"size": 48}, (48, 48, 3)),
]


@pytest.mark.parametrize(("name", "kwargs", "shape"), RUNNABLE, ids=[r[0] for r in RUNNABLE])
def test_check_env_passes(name: str, kwargs: dict, shape: tuple[int, int, int]) -> None:
    env = make_game(name, render_mode="rgb_array", **kwargs)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_env(env.unwrapped)
        assert not [str(w.message) for w in caught if w.category is not DeprecationWarning]
        assert env.observation_space == spaces.Box(0, 255, shape, np.uint8)
        frames, _ = env.reset(seed=0)
        assert frames.shape == shape and frames.dtype == np.uint8
        np.testing.assert_array_equal(env.render(), frames)
        assert env.metadata["render_fps"] > 0
        names = env.unwrapped.action_names
        if isinstance(env.action_space, spaces.Discrete):
            assert len(names) == env.action_space.n
            assert all(isinstance(n, str) for n in names)
        else:
            assert names is None
    finally:
        env.close()


def test_crafter_spaces_and_names() -> None:
    import crafter

    env = make_game("crafter")
    assert env.action_space == spaces.Discrete(17)
    assert env.unwrapped.action_names == list(crafter.constants.actions)
    assert env.unwrapped.action_names[:2] == ["noop", "move_left"]
    assert env.metadata["render_fps"] == 10
    assert env.spec.max_episode_steps == 10000


def test_crafter_same_seed_same_world() -> None:
    first, second = make_game("crafter"), make_game("crafter")
    frames_a, _ = first.reset(seed=7)
    second.reset(seed=3)
    second.step(1)
    frames_b, _ = second.reset(seed=7)
    np.testing.assert_array_equal(frames_a, frames_b)
    frames_c, _ = second.reset(seed=8)
    assert not np.array_equal(frames_a, frames_c)


def test_time_limit_truncates() -> None:
    env = make_game("crafter", max_episode_steps=3)
    env.reset(seed=0)
    ends = [env.step(0)[2:4] for _ in range(3)]
    assert ends == [(False, False), (False, False), (False, True)]


def test_crafter_death_terminates() -> None:
    env = make_game("crafter")
    env.reset(seed=0)
    _, _, terminated, truncated, _ = env.step(0)
    assert (terminated, truncated) == (False, False)
    env.unwrapped.player.health = 0  # the game object, as a lethal hit would leave it
    _, _, terminated, truncated, info = env.step(0)
    assert (terminated, truncated) == (True, False)
    assert info["inventory"]["health"] == 0


def test_crafter_counts_falling_asleep_as_an_unpaid_event() -> None:
    env = make_game("crafter")
    spec = env.unwrapped.label_spec["events"]
    fall = spec["names"].index("fall_asleep")
    assert spec["unpaid"] == ["fall_asleep"] and len(spec["names"]) == 23
    _, info = env.reset(seed=0)
    sleep = env.unwrapped.action_names.index("sleep")
    info = env.step(sleep)[-1]  # energy full: nothing happens
    assert info["events"][fall] == 0 and not env.unwrapped.player.sleeping
    for _ in range(40):  # Crafter's energy falls after 30 steps awake
        env.step(0)
    view = env.step(sleep)
    assert env.unwrapped.player.sleeping and view[-1]["events"][fall] == 1
    assert view[1] < 0.5  # falling asleep unlocks nothing (health may change)
    info = env.step(sleep)[-1]  # asleep: no new fall
    assert info["events"][fall] == 1
    env.reset(seed=1)
    assert env.step(0)[-1]["events"][fall] == 0  # counted per episode


def test_doom_death_terminates() -> None:
    env = make_game("doom-health")
    env.reset(seed=0)
    forward = env.unwrapped.action_names.index("forward")
    for _ in range(2000):  # the acid floor kills a player who only runs forward
        _, _, terminated, truncated, info = env.step(forward)
        if terminated or truncated:
            break
    assert (terminated, truncated) == (True, False)
    assert info["health"] <= 0


def test_crafter_info_is_a_copy() -> None:
    env = make_game("crafter")
    _, info = env.reset(seed=0)
    assert set(info) >= {"achievements", "inventory", "player_pos"}
    _, _, _, _, info = env.step(0)
    player = env.unwrapped.player
    # the game changing its state does not reach what was handed out ...
    wood = info["inventory"]["wood"]
    player.inventory["wood"] += 3
    player.achievements["collect_wood"] += 1
    assert info["inventory"]["wood"] == wood
    assert info["achievements"]["collect_wood"] == 0
    # ... and changing what was handed out does not reach the game or the next info
    info["inventory"]["wood"] = 99
    info["achievements"]["place_table"] = 99
    info["player_pos"][:] = -1
    _, _, _, _, after = env.step(0)
    assert after["inventory"]["wood"] == wood + 3
    assert after["achievements"]["place_table"] == 0
    assert (after["player_pos"] >= 0).all()


def test_doom_frame_size_and_skip() -> None:
    env = make_game("doom-map", size=(60, 80), frame_skip=7)
    frames, info = env.reset(seed=0)
    assert frames.shape == (60, 80, 3)
    assert env.metadata["render_fps"] == pytest.approx(35 / 7)
    assert {"health", "position_x", "position_y", "angle"} <= set(info)
    frames, *_ = env.step(env.unwrapped.action_names.index("forward"))
    assert frames.shape == (60, 80, 3)
    env.close()
    square = make_game("doom-health", size=64)  # no 64x64 screen: rendered larger, resized
    assert square.reset(seed=0)[0].shape == (64, 64, 3)
    square.close()


def test_atari_frame_size_and_skip() -> None:
    env = make_game("breakout", size=(84, 72), frame_skip=2)
    frames, _ = env.reset(seed=0)
    assert frames.shape == (84, 72, 3)
    assert env.metadata["render_fps"] == 30
    assert env.unwrapped.action_names == ["NOOP", "FIRE", "RIGHT", "LEFT"]
    _, _, _, _, info = env.step(1)
    assert info["episode_frame_number"] == 2
    env.close()


def test_atari_prefix_and_seeded_replay() -> None:
    env = make_game("atari:ALE/Pong-v5")
    actions = np.random.default_rng(0).integers(env.action_space.n, size=40)

    def replay(seed: int) -> np.ndarray:
        frames = [env.reset(seed=seed)[0]]
        frames += [env.step(a)[0] for a in actions]
        return np.stack(frames)

    first = replay(1)
    assert first.shape == (41, *env.observation_space.shape)
    other = replay(2)
    # The seed fixes the episode (sticky actions draw from it), whatever ran in between, and
    # another seed gives another episode: an env that ignored its seed fails one of the two.
    np.testing.assert_array_equal(replay(1), first)
    assert not np.array_equal(other, first)
    env.close()


def test_pixel_env_keeps_continuous_actions() -> None:
    env = make_game("gym:CarRacing-v3", size=32)
    assert isinstance(env.action_space, spaces.Box) and env.action_space.shape == (3,)
    assert env.unwrapped.action_names is None
    env.reset(seed=0)
    frames, *_ = env.step(env.action_space.sample())
    assert frames.shape == (32, 32, 3)
    env.close()


@pytest.mark.parametrize("name", ["nope", "atari:ALE/NoSuchGame-v5", "gym:NoSuchEnv-v0", "gym:"])
def test_unknown_game_is_a_clear_error(name: str) -> None:
    with pytest.raises(UnknownGameError) as excinfo:
        make_game(name)
    assert isinstance(excinfo.value, WorldsimError)
    if name in ("nope", "gym:"):
        message = str(excinfo.value)
        for known in ("crafter", "doom-health", "doom-map", "breakout", "pong", "atari:", "gym:"):
            assert known in message


def test_minerl_missing_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "minerl", None)  # import fails even where installed
    with pytest.raises(GameDependencyError, match="pip install") as excinfo:
        make_game("minerl:MineRLTreechop-v0")
    assert isinstance(excinfo.value, WorldsimError)
    assert "Java" in str(excinfo.value)


def test_minerl_space_conversion() -> None:
    from types import SimpleNamespace

    from envs.minerl_env import convert_space, to_minerl_action

    enum = SimpleNamespace(values=("none", "dirt", "stone"))
    minerl_space = SimpleNamespace(
        spaces={"attack": spaces.Discrete(2), "camera": spaces.Box(-180, 180, (2,)), "place": enum}
    )
    space = convert_space(minerl_space)
    assert space["place"] == spaces.Discrete(3)
    assert space["camera"].shape == (2,)
    action = to_minerl_action({"attack": 1, "camera": [1.5, -2.0], "place": 2}, minerl_space)
    assert action["place"] == "stone" and action["camera"].tolist() == [1.5, -2.0]


def test_registration_is_idempotent() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        importlib.reload(envs)
        importlib.reload(envs)
    for gym_id in (
        "worldsim/RealCrafter-v0",
        "worldsim/RealDoomHealthGathering-v0",
        "worldsim/RealDoomMap-v0",
        "worldsim/RealBreakout-v0",
        "worldsim/RealPong-v0",
        "worldsim/RealPixel-v0",
        "worldsim/RealMineRL-v0",
    ):
        assert gym_id in gym.registry


def test_game_info_is_json_ready() -> None:
    info = game_info("doom-health")
    assert info["gym_id"] == "worldsim/RealDoomHealthGathering-v0"
    assert info["max_episode_steps"] == 525
    assert game_info("atari:ALE/Seaquest-v5")["kwargs"]["env_id"] == "ALE/Seaquest-v5"
    json.dumps(info)
