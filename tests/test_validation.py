"""Input validation at the boundary: bad flags, arguments, actions and reset options get one
clear error naming the thing and the fix, the same in the dream and in the real game."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

import play
from envs.crafter_env import CrafterEnv
from envs.world_model_env import StartError, WorldModelEnv
from envs.world_model_registry import register_world_model_envs
from envs.world_model_vector_env import WorldModelVectorEnv
from worldsim.cli import main as worldsim_main
from worldsim.errors import ActionError, CheckpointError
from worldsim.validation import (
    ArgumentValueError,
    DeviceError,
    check_discrete_action,
    check_discrete_actions,
    check_int,
)

ACTIONS = gym.spaces.Discrete(17)
FRAMES = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)


@pytest.fixture(scope="module")
def checkpoint(crafter_release):
    register_world_model_envs()
    return crafter_release


@pytest.fixture(scope="module")
def dream(checkpoint):
    env = WorldModelEnv(checkpoint, device="cpu", sampler_steps=1)
    env.reset(seed=0)
    return env


@pytest.fixture(scope="module")
def real():
    env = CrafterEnv()
    env.reset(seed=0)
    return env


def parse_error(capsys, call, *argv) -> str:
    """The one-line argparse error of `call(argv)` (exit status 2)."""
    with pytest.raises(SystemExit) as exit_info:
        call([str(a) for a in argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def cli_error(capsys, *argv) -> str:
    """The one-line error of `worldsim ARGV` that parses but fails when run (exit status 2)."""
    assert worldsim_main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


# ------------------------------------------------------------------------------ play.py
def test_play_refuses_bad_numbers_at_parse_time(capsys):
    line = parse_error(capsys, play.build_parser().parse_args, "--sampler-steps", -1)
    assert "--sampler-steps" in line and ">= 1" in line
    for flag, value in [("--steps", -2), ("--scale", 0), ("--threads", 0), ("--fps", -1)]:
        assert flag in parse_error(capsys, play.build_parser().parse_args, flag, value)


def test_play_script_exits_2_with_one_line(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(play.__file__).resolve().parent
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy"}
    done = subprocess.run([sys.executable, str(root / "play.py"), "--sampler-steps", "-1"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "play.py: error: argument --sampler-steps: must be an integer >= 1, got -1"
    )


def test_play_device_cuda_without_cuda(monkeypatch, capsys):
    no_cuda(monkeypatch)
    line = parse_error(capsys, play.build_parser().parse_args, "--device", "cuda")
    assert "--device" in line and "CUDA is not available" in line and "--device cpu" in line
    assert "--device" in parse_error(capsys, play.build_parser().parse_args, "--device", "tpu")
    assert play.build_parser().parse_args(["--device", "cpu"]).device == "cpu"


def test_dream_env_device_cuda_without_cuda(checkpoint, monkeypatch):
    no_cuda(monkeypatch)
    with pytest.raises(DeviceError, match=r"CUDA is not available.*cpu"):
        WorldModelEnv(checkpoint, device="cuda")


# ------------------------------------------------------------------------------ collect
@pytest.mark.parametrize(
    ("flag", "value"), [("--max-steps", -5), ("--episodes", -1), ("--workers", 0)]
)
def test_collect_refuses_bad_counts(capsys, tmp_path, flag, value):
    line = parse_error(capsys, worldsim_main, "collect", "--out", tmp_path / "s", flag, value)
    assert f"argument {flag}: must be an integer" in line
    assert not (tmp_path / "s").exists()


def test_collect_refuses_bad_game_args_and_out(capsys, tmp_path):
    out = tmp_path / "s"
    line = cli_error(capsys, "collect", "--out", out, "--game-arg", "size=banana")
    assert "--game-arg size=banana" in line and "size must be" in line
    line = cli_error(capsys, "collect", "--out", out, "--game-arg", "colour=3")
    assert "--game-arg colour" in line and "size, area, view, reward, render_mode" in line
    assert not out.exists()
    file = tmp_path / "file"
    file.write_text("not a store")
    line = cli_error(capsys, "collect", "--out", file, "--episodes", 1, "--max-steps", 2)
    assert f"--out {file} is an existing file" in line


# ------------------------------------------------------------------------------ bench
FIDELITY = ["bench", "fidelity", "--checkpoint", "ck", "--data", "store", "--out", "report"]


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--episodes", 0),
        ("--batch-size", 0),
        ("--horizon", 0),
        ("--samples", 0),
        ("--context", 0),
        ("--horizon", -3),
        ("--steps", 0),
    ],
)
def test_bench_fidelity_refuses_zero_and_negative_counts(capsys, flag, value):
    line = parse_error(capsys, worldsim_main, *FIDELITY, flag, value)
    assert f"argument {flag}: must be an integer >= 1" in line


def test_bench_fidelity_defaults_stay_none():
    from worldsim.cli import build_parser

    args = build_parser().parse_args(FIDELITY)
    assert args.context is None and args.horizon is None and args.samples is None


def test_bench_fidelity_refuses_a_file_that_is_not_an_idm(capsys, tmp_path):
    from safetensors.torch import save_file

    text = tmp_path / "notes.txt"
    text.write_text("hello")
    argv = [*FIDELITY, "--device", "cpu", "--idm"]
    line = cli_error(capsys, *argv, text)
    assert f"--idm {text} is not an inverse-dynamics model" in line and "train-idm" in line
    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other))
    line = cli_error(capsys, *argv, other)
    assert f"--idm {other}" in line and "not a worldsim IDM" in line


def test_bench_train_idm_refuses_zero_steps(capsys):
    line = parse_error(
        capsys, worldsim_main, "bench", "train-idm", "--data", "d", "--out", "o", "--steps", 0
    )
    assert "argument --steps: must be an integer >= 1" in line


# ------------------------------------------------------------------------------ rl
@pytest.mark.parametrize(("flag", "value"), [("--num_envs", 0), ("--total_timesteps", -10)])
def test_rl_train_refuses_bad_counts(capsys, flag, value, tmp_path):
    line = cli_error(capsys, "rl", "train", "--out", tmp_path / "a", flag, value)
    assert f"{flag[2:]} must be an integer >= 1, got {value}" in line
    assert line.startswith("worldsim rl train --algo ppo: error:")


def test_rl_train_refuses_steps_it_cannot_train_exactly(capsys, checkpoint, tmp_path):
    ck = ["--checkpoint", checkpoint, "--device", "cpu", "--out", tmp_path / "a"]
    line = cli_error(capsys, "rl", "train", *ck, "--num_envs", 4, "--total_timesteps", 10)
    assert "total_timesteps 10 is not a multiple of num_envs 4" in line
    assert "pass total_timesteps 8 or 12" in line
    line = cli_error(capsys, "rl", "train", "--algo", "sb3-ppo", *ck, "--num_envs", 2,
                     "--total_timesteps", 100)  # fmt: skip
    assert "not a multiple of the rollout" in line and "= 256" in line
    assert "pass total_timesteps 256" in line
    line = cli_error(capsys, "rl", "train", *ck, "--num_steps", 0)
    assert "num_steps must be an integer >= 1, got 0" in line
    assert not (tmp_path / "a").exists()


def test_rl_train_trains_exactly_the_steps_asked_for(checkpoint, tmp_path, capsys):
    out = tmp_path / "agent"
    argv = ["rl", "train", "--checkpoint", checkpoint, "--num_envs", 2, "--total_timesteps", 36,
            "--device", "cpu", "--sampler_steps", 1, "--max_episode_steps", 8, "--out", out,
            "--quiet", "--num_steps", 8, "--channels", "[8, 16, 16]", "--hidden", 32]  # fmt: skip
    assert worldsim_main([str(a) for a in argv]) == 0
    assert "after 36 steps" in capsys.readouterr().out
    config = json.loads((out / "agent.json").read_text())
    assert config["metadata"]["global_step"] == 36 and config["metadata"]["total_steps"] == 36
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["global_step"] for r in rows] == [16, 32, 36]  # two full rollouts, one of 2 steps


def test_rl_eval_refuses_negative_episodes(capsys):
    line = parse_error(capsys, worldsim_main, "rl", "eval", "--agent", "random", "--episodes", -2)
    assert "argument --episodes: must be an integer >= 1" in line
    from training.rl_eval import evaluate_agent

    with pytest.raises(ArgumentValueError, match=r"episodes \(--episodes\) must be"):
        evaluate_agent("random", episodes=0)


# ------------------------------------------------------------------------------ dream env args
@pytest.mark.parametrize("steps", [-3, 0, 1.5, True])
def test_dream_env_refuses_bad_sampler_steps_at_construction(checkpoint, steps):
    with pytest.raises(ArgumentValueError, match="sampler_steps must be an integer >= 1"):
        gym.make("worldsim/WorldModel-v0", checkpoint=checkpoint, device="cpu", sampler_steps=steps)
    with pytest.raises(ArgumentValueError, match="sampler_steps"):
        WorldModelVectorEnv(2, checkpoint, device="cpu", sampler_steps=steps)


def test_dream_env_sampler_steps_set_later_are_checked(dream):
    dream.sampler_steps = 3
    assert dream.sampler_steps == 3
    with pytest.raises(ArgumentValueError, match="sampler_steps"):
        dream.sampler_steps = 0
    assert dream.sampler_steps == 3
    dream.sampler_steps = 1


def test_vector_env_refuses_bad_num_envs(checkpoint):
    with pytest.raises(ArgumentValueError, match="num_envs must be an integer >= 1"):
        WorldModelVectorEnv(0, checkpoint, device="cpu")


# ------------------------------------------------------------------------------ actions
BAD_ACTIONS = [17, -1, 3.7, 3.0, True, np.float32(2), np.bool_(False), "move_left",
               np.array([3]), None]  # fmt: skip


@pytest.mark.parametrize("action", BAD_ACTIONS, ids=repr)
def test_dream_and_real_game_give_the_same_answer_to_a_bad_action(dream, real, action):
    with pytest.raises(ActionError) as in_dream:
        dream.step(action)
    with pytest.raises(ActionError) as in_game:
        real.step(action)
    assert str(in_dream.value) == str(in_game.value)
    assert "Discrete(17)" in str(in_dream.value) and "[0, 16]" in str(in_dream.value)


def test_action_errors_say_what_to_pass(dream):
    with pytest.raises(ActionError, match=r"action_names.index\('move_left'\) = 1"):
        dream.step("move_left")
    with pytest.raises(ActionError, match="action 17 is out of range"):
        dream.step(17)
    with pytest.raises(ActionError, match=r"action 3.0 \(float, dtype float64\) is not an integer"):
        dream.step(3.0)


@pytest.mark.parametrize("action", [3, np.int64(3), np.uint8(3), np.array(3), torch.tensor(3)])
def test_integer_actions_are_taken(dream, real, action):
    assert FRAMES.contains(dream.step(action)[0])
    assert FRAMES.contains(real.step(action)[0])


def test_vector_env_checks_batched_actions(checkpoint):
    envs = WorldModelVectorEnv(2, checkpoint, device="cpu", sampler_steps=1)
    envs.reset(seed=0)
    for bad, message in [
        (np.array([1.0, 2.0]), "dtype float64 are not integers"),
        (np.array([True, False]), "dtype bool are not integers"),
        ([0, 17], r"action 17 \(env 1\) is out of range: Discrete\(17\)"),
        (np.array([1, 2, 3]), r"shape \(3,\); expected \(2,\)"),
    ]:
        with pytest.raises(ActionError, match=message):
            envs.step(bad)
    assert envs.step([1, 2])[0].shape == (2, 64, 64, 3)


def test_discrete_check_honours_start():
    space = gym.spaces.Discrete(3, start=-1)
    assert check_discrete_action(-1, space) == -1
    with pytest.raises(ActionError, match=r"\[-1, 1\]"):
        check_discrete_action(2, space)
    assert check_discrete_actions([-1, 1], space, 2).tolist() == [-1, 1]
    assert check_int(np.int32(4), "n") == 4


# ------------------------------------------------------------------------------ reset options
def test_unknown_reset_option_is_refused(dream, checkpoint):
    with pytest.raises(StartError, match=r"unknown reset option\(s\) 'episodes'.*context, store"):
        dream.reset(options={"episodes": 3})
    envs = WorldModelVectorEnv(2, checkpoint, device="cpu")
    with pytest.raises(StartError, match=r"'mask'.*image, reset_mask"):
        envs.reset(options={"mask": [True, False]})


def make_store(path, game, action_space, shape=(64, 64, 3)):
    from worldsim.data import EpisodeStore

    space = gym.spaces.Box(0, 255, shape, np.uint8)
    store = EpisodeStore.create(
        path, game=game, action_space=action_space, observation_space=space, fps=10.0
    )
    T = 4
    store.append(
        np.zeros((T + 1, *shape), np.uint8),
        np.zeros(T, np.int64),
        np.zeros(T, np.float32),
        np.zeros(T, bool),
        np.zeros(T, bool),
    )
    return store


def test_store_of_another_game_is_refused(dream, checkpoint, tmp_path):
    breakout = make_store(tmp_path / "breakout", "breakout", gym.spaces.Discrete(4))
    with pytest.raises(
        StartError, match=r"holds 'breakout' episodes but the world model is of 'crafter'"
    ):
        dream.reset(options={"store": breakout})
    with pytest.raises(StartError, match="'breakout' episodes"):
        dream.reset(options={"store": str(tmp_path / "breakout")})
    envs = WorldModelVectorEnv(2, checkpoint, device="cpu")
    with pytest.raises(StartError, match="'breakout' episodes"):
        envs.reset(options={"store": breakout})
    actions = make_store(tmp_path / "a", "crafter", gym.spaces.Discrete(4))
    with pytest.raises(
        StartError, match=r"action space of .* is Discrete\(4\), not Discrete\(17\)"
    ):
        dream.reset(options={"store": actions})
    small = make_store(tmp_path / "small", "crafter", ACTIONS, (32, 32, 3))
    with pytest.raises(StartError, match=r"\(32, 32, 3\) frames.*\(64, 64, 3\)"):
        dream.reset(options={"store": small})
    good = make_store(tmp_path / "good", "crafter", ACTIONS)
    assert dream.reset(options={"store": good})[1]["start"] == "store"


def test_missing_checkpoint_is_still_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        WorldModelEnv(tmp_path / "none", device="cpu")
