"""WorldModelEnv / WorldModelVectorEnv: Gymnasium checks, seeding, autoreset, real clients."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode

from envs import world_model_registry
from envs.world_model_env import StartError
from envs.world_model_registry import DREAM_MAX_STEPS, register_world_model_envs
from envs.world_model_vector_env import WorldModelVectorEnv
from worldsim.errors import CheckpointError

ACTIONS = gym.spaces.Discrete(17)
FRAMES = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
N, K = 3, 3  # starting contexts in the release (conftest.crafter_release), frames per context


@pytest.fixture(scope="module")
def checkpoint(crafter_release):
    register_world_model_envs()
    return crafter_release


def make(checkpoint, **kwargs):
    return gym.make("worldsim/WorldModel-v0", checkpoint=checkpoint, device="cpu", **kwargs)


def rollout(env, seed, actions):
    obs, _ = env.reset(seed=seed)
    frames = [obs]
    for a in actions:
        obs, *_ = env.step(a)
        frames.append(obs)
    return np.stack(frames)


def test_check_env_passes_on_registered_id(checkpoint):
    env = make(checkpoint)
    assert env.spec.max_episode_steps == DREAM_MAX_STEPS
    assert env.observation_space == FRAMES and env.action_space == ACTIONS
    check_env(env.unwrapped)
    check_env(make(checkpoint, render_mode="rgb_array").unwrapped)
    obs, info = env.reset(seed=0)
    assert info["start"] == "checkpoint" and info["sampler_steps"] >= 1
    obs, reward, _, truncated, info = env.step(3)
    assert FRAMES.contains(obs) and isinstance(reward, float) and not truncated
    assert set(info) >= {"sampler_steps", "guidance", "sampler"}
    assert env.unwrapped.action_names[3] == "move_up"
    assert env.metadata["render_fps"] == 10


def test_same_seed_and_actions_give_same_frames(checkpoint):
    env = make(checkpoint)
    actions = [3, 5, 0, 1]
    a, b = rollout(env, 7, actions), rollout(env, 7, actions)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(rollout(env, 8, actions)[1:], a[1:])  # other noise, other frames
    # The starting context comes from the checkpoint and is the last context frame.
    obs, _ = env.reset(seed=1, options={"context": 2})
    np.testing.assert_array_equal(obs, env.unwrapped.world_model.contexts["frames"][2, -1])


def test_truncation_comes_from_time_limit(checkpoint):
    env = make(checkpoint, max_episode_steps=2)
    env.reset(seed=0)
    assert not env.step(0)[3]
    assert env.step(0)[3]


def test_image_store_and_frames_starts(checkpoint, tmp_path):
    from worldsim.data import EpisodeStore

    env = make(checkpoint)
    image = np.full((64, 64, 3), 77, np.uint8)
    obs, info = env.reset(seed=0, options={"image": image})
    assert info["start"] == "image"
    np.testing.assert_array_equal(obs, image)
    assert FRAMES.contains(env.step(0)[0])
    with pytest.raises(StartError, match="uint8"):
        env.reset(options={"image": np.zeros((32, 32, 3), np.uint8)})

    store = EpisodeStore.create(
        tmp_path / "store", game="crafter", action_space=ACTIONS, observation_space=FRAMES, fps=10.0
    )
    rng = np.random.default_rng(1)
    T = 6
    frames = rng.integers(0, 256, (T + 1, 64, 64, 3), dtype=np.uint8)
    store.append(
        frames,
        rng.integers(0, 17, T),
        np.zeros(T, np.float32),
        np.zeros(T, bool),
        np.zeros(T, bool),
    )
    obs, info = env.reset(seed=0, options={"store": tmp_path / "store", "episode": 0, "start": 2})
    assert info["start"] == "store" and info["episode"] == 0
    np.testing.assert_array_equal(obs, frames[2 + K - 1])
    obs, info = env.reset(seed=0, options={"frames": frames[:2]})
    np.testing.assert_array_equal(obs, frames[1])


def test_bundled_id_missing_and_installed(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(
        world_model_registry, "bundled_checkpoint_path", lambda game="crafter": tmp_path / "none"
    )
    with pytest.raises(CheckpointError, match=r"not installed.*checkpoint="):
        gym.make("worldsim/Crafter-v0")
    env = gym.make("worldsim/Crafter-v0", checkpoint=checkpoint, device="cpu")  # explicit override
    assert env.unwrapped.game == "crafter"
    monkeypatch.setattr(
        world_model_registry, "bundled_checkpoint_path", lambda game="crafter": checkpoint
    )
    env = gym.make("worldsim/Crafter-v0", device="cpu", render_mode="rgb_array")
    assert env.spec.max_episode_steps == DREAM_MAX_STEPS
    check_env(env.unwrapped)
    vec = gym.make_vec(
        "worldsim/Crafter-v0", num_envs=2, vectorization_mode="vector_entry_point", device="cpu"
    )
    assert vec.observation_space.shape == (2, 64, 64, 3)


def test_checkpoint_of_another_game_is_refused(checkpoint, tmp_path):
    with pytest.raises(CheckpointError, match="not 'doom-health'"):
        make(checkpoint, game="doom-health")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        make(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="checkpoint="):
        gym.make("worldsim/WorldModel-v0")


def test_vector_env_matches_single_env_and_make_vec(checkpoint):
    vec = gym.make_vec(
        "worldsim/WorldModel-v0",
        num_envs=1,
        vectorization_mode="vector_entry_point",
        checkpoint=checkpoint,
        device="cpu",
    )
    assert isinstance(vec.unwrapped, WorldModelVectorEnv)
    assert vec.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert vec.unwrapped.max_episode_steps == DREAM_MAX_STEPS
    actions = [3, 5, 0]
    obs, _ = vec.reset(seed=11)
    frames = [obs[0]]
    for a in actions:
        frames.append(vec.step(np.array([a]))[0][0])
    # One batched env reproduces the single env exactly: same seeding, same model calls.
    np.testing.assert_array_equal(np.stack(frames), rollout(make(checkpoint), 11, actions))


def test_vector_env_next_step_autoreset(checkpoint):
    env = WorldModelVectorEnv(3, checkpoint, device="cpu", max_episode_steps=4)
    model_step = env.world_model.step
    ends = {2: np.array([False, True, False])}  # env 1 "dies" in step 2
    calls = []

    def scripted_step(actions, **kwargs):
        frames, rewards, terminated = model_step(actions, **kwargs)
        calls.append(len(calls) + 1)
        return frames, rewards + 1.0, terminated | ends.get(len(calls), False)

    env.world_model.step = scripted_step
    starts = env.world_model.contexts["frames"][:, -1]
    obs, _ = env.reset(seed=0)
    for _ in range(2):
        obs, rewards, terminated, truncated, infos = env.step(np.array([1, 2, 3]))
    assert terminated.tolist() == [False, True, False] and not truncated.any()
    # NEXT_STEP: env 1 resets now (action ignored, reward 0), the others go on.
    obs, rewards, terminated, truncated, infos = env.step(np.array([1, 2, 3]))
    assert rewards.tolist() == [1.0, 0.0, 1.0] and not terminated.any() and not truncated.any()
    assert any(np.array_equal(obs[1], s) for s in starts)
    assert infos["_start"].tolist() == [False, True, False]
    obs, rewards, terminated, truncated, infos = env.step(np.array([1, 2, 3]))
    assert truncated.tolist() == [True, False, True]  # 4 steps for envs 0 and 2, 1 for env 1
    obs, rewards, terminated, truncated, infos = env.step(np.array([1, 2, 3]))
    assert rewards.tolist() == [0.0, 1.0, 0.0] and infos["_start"].tolist() == [True, False, True]


def test_vector_env_same_step_and_reset_mask(checkpoint):
    env = WorldModelVectorEnv(
        2, checkpoint, device="cpu", max_episode_steps=2, autoreset_mode="SameStep"
    )
    env.reset(seed=0)
    env.step(np.array([0, 0]))
    _, _, _, truncated, infos = env.step(np.array([0, 0]))
    assert truncated.all() and infos["_final_obs"].all()
    assert infos["final_obs"][0].shape == (64, 64, 3) and infos["_start"].all()
    obs, infos = env.reset(options={"reset_mask": np.array([False, True]), "context": 0})
    np.testing.assert_array_equal(obs[1], env.world_model.contexts["frames"][0, -1])
    assert infos["_start"].tolist() == [False, True]


def test_vector_env_keeps_observations_as_tensors_when_asked(checkpoint):
    import torch

    runs = {}
    for tensors in (False, True):
        env = WorldModelVectorEnv(2, checkpoint, device="cpu", max_episode_steps=2,
                                  autoreset_mode="SameStep", render_mode="rgb_array",
                                  tensors=tensors)  # fmt: skip
        obs, _ = env.reset(seed=0)
        seen, final = [obs], None
        for a in ([0, 3], [1, 2], [4, 0]):
            obs, _, _, truncated, infos = env.step(np.array(a))
            seen.append(obs)
            if truncated.any():
                final = infos["final_obs"]
        runs[tensors] = seen, final, env.render()
    for a, b in zip(runs[False][0], runs[True][0], strict=True):  # the same frames, kept as tensors
        assert isinstance(b, torch.Tensor) and b.dtype == torch.uint8
        np.testing.assert_array_equal(a, b.numpy())
    assert all(isinstance(f, torch.Tensor) for f in runs[True][1])
    np.testing.assert_array_equal(
        np.stack(runs[False][1]), torch.stack(list(runs[True][1])).numpy()
    )
    np.testing.assert_array_equal(runs[False][2], runs[True][2])  # render() gives numpy


def test_stable_baselines3_ppo_learns_in_the_dream(checkpoint):
    from stable_baselines3 import PPO

    env = make(checkpoint, max_episode_steps=20)
    model = PPO("CnnPolicy", env, n_steps=128, batch_size=64, n_epochs=2, seed=0, device="cpu")
    model.learn(total_timesteps=256)
    assert model.num_timesteps == 256
    action, _ = model.predict(env.reset(seed=0)[0], deterministic=True)
    assert ACTIONS.contains(int(action))


def test_gymnasium_play_runs_headless(checkpoint):
    import pygame
    from gymnasium.utils.play import play

    env = make(checkpoint, render_mode="rgb_array")
    keys = env.unwrapped.get_keys_to_action()
    assert keys[(pygame.K_w,)] == 3  # w: move_up, as in Crafter
    seen = []

    def callback(obs, next_obs, action, reward, terminated, truncated, info):
        seen.append(next_obs)
        if len(seen) == 5:
            pygame.event.post(pygame.event.Event(pygame.QUIT))

    play(env, fps=0, zoom=2, callback=callback, seed=0)
    assert len(seen) == 5 and FRAMES.contains(seen[-1])


def test_record_video_and_human_render(checkpoint, tmp_path):
    pytest.importorskip("moviepy", reason="gymnasium's RecordVideo needs moviepy")
    import av
    from gymnasium.wrappers import RecordVideo

    env = RecordVideo(
        make(checkpoint, render_mode="rgb_array", max_episode_steps=5),
        str(tmp_path / "videos"),
        episode_trigger=lambda e: True,
        disable_logger=True,
    )
    env.reset(seed=0)
    done = False
    while not done:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        done = terminated or truncated
    env.close()
    (video,) = (tmp_path / "videos").glob("*.mp4")
    with av.open(str(video)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 6  # reset frame + 5 steps

    human = make(checkpoint, render_mode="human")  # SDL_VIDEODRIVER=dummy (conftest)
    human.reset(seed=0)
    human.step(0)
    human.close()


def test_bundled_minetest_dream_turns_round_to_what_it_saw():
    """worldsim/Minetest-v0 is the bundled pose-memory model: a Gymnasium env with MineRL's
    actions, and after a full turn in place it shows the start view again (its memory)."""
    from worldsim.bench.metrics import psnr
    from worldsim.spaces import noop_action

    env = gym.make("worldsim/Minetest-v0", device="cpu")
    assert env.unwrapped.game == "minetest" and env.observation_space.shape == (64, 64, 3)
    check_env(env.unwrapped)
    start, _ = env.reset(seed=0)
    turn = noop_action(env.action_space)
    turn["camera"] = np.array([0.0, 15.0], np.float32)  # 24 x 15 degrees: a full turn
    seen = [float(psnr(env.step(turn)[0], start)) for _ in range(24)]
    assert seen[-1] > seen[11] + 5, seen  # facing away at half a turn; the start view at the end
