"""play.py headless (SDL dummy driver, scripted keys) and the keymaps it uses."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from PIL import Image

import play
from envs.keymaps import Keymap, noop_action

ACTIONS = gym.spaces.Discrete(17)
FRAMES = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)


@pytest.fixture(scope="module")
def checkpoint(crafter_release):
    return crafter_release


def args(*argv):
    return play.build_parser().parse_args([str(a) for a in argv])


def count_frames(path):
    import av

    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_plays_a_few_hundred_frames_and_records(checkpoint, tmp_path):
    out = tmp_path / "out.mp4"
    script = {
        1: ["+w"],
        60: ["-w", "+space"],
        120: ["-space", "+"],
        121: ["-"],
        150: ["h"],
        170: ["h"],
    }
    result = play.play(
        args(
            "--checkpoint",
            checkpoint,
            "--steps",
            200,
            "--fps",
            0,
            "--scale",
            2,
            "--record",
            out,
            "--seed",
            0,
        ),
        play.scripted_keys(script),
    )
    assert result.steps == 200
    assert result.frames_recorded == 201 == count_frames(out)  # the first frame, then one per step
    assert set(result.returns) == {"dream"}


def test_pause_single_step_reset_and_sampler_keys(checkpoint, tmp_path):
    out = tmp_path / "out.mp4"
    player = play.Player(
        args("--checkpoint", checkpoint, "--fps", 0, "--scale", 1, "--record", out)
    )
    default = player.dream.sampler_steps
    script = {
        1: ["return"],
        4: ["."],
        6: ["return"],
        7: ["backspace"],
        8: ["+", "+", "-"],
        10: ["escape"],
    }
    result = player.run(play.scripted_keys(script))
    # frame 0 shows the start; 1-5 paused but for the single step at 4; 6 steps; 7 resets;
    # 8 and 9 step; 10 quits.
    assert result.steps == 4
    assert result.frames_recorded == count_frames(out) == 6  # start + 4 steps + reset
    assert player.dream.sampler_steps == default + 1


def test_held_keys_choose_crafter_actions(checkpoint):
    player = play.Player(args("--checkpoint", checkpoint, "--fps", 0, "--scale", 1, "--steps", 3))
    seen = []
    original = player.dream.step
    player.dream.step = lambda action: seen.append(int(action)) or original(action)
    player.run(play.scripted_keys({0: ["+a"], 2: ["-a", "+tab"]}))
    assert seen == [1, 6, 6]  # frame 0 shows the start; then move_left, sleep, sleep


def test_real_and_side_by_side(checkpoint):
    result = play.play(args("--real", "--steps", 5, "--fps", 0, "--scale", 1, "--seed", 1))
    assert result.steps == 5 and set(result.returns) == {"real"}
    player = play.Player(
        args(
            "--checkpoint",
            checkpoint,
            "--side-by-side",
            "--steps",
            3,
            "--fps",
            0,
            "--scale",
            1,
            "--seed",
            1,
        )
    )
    player.reset()
    real, dream = player.panes
    # The dream starts where the real game is.
    np.testing.assert_array_equal(real.frame, dream.frame)
    assert player.run().steps == 3


def test_start_image(checkpoint, tmp_path):
    png = tmp_path / "start.png"
    Image.fromarray(np.full((100, 80, 3), 200, np.uint8)).save(png)  # resized to 64x64
    player = play.Player(args("--checkpoint", checkpoint, "--start-image", png, "--scale", 1))
    player.reset()
    assert (player.panes[0].frame == 200).all()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--checkpoint", "{tmp}/missing"], "no checkpoint at"),
        (
            ["--checkpoint", "{ck}", "--game", "doom-health"],
            "world model of 'crafter', not 'doom-health'",
        ),
        (["--checkpoint", "{ck}", "--start-image", "{tmp}/bad.png"], "cannot read start image"),
        (["--checkpoint", "{ck}", "--agent", "{tmp}"], "is not an agent folder"),
        (["--game", "nosuchgame", "--real"], "unknown game"),
    ],
)
def test_bad_input_gets_a_message_not_a_traceback(checkpoint, tmp_path, capsys, argv, message):
    (tmp_path / "bad.png").write_text("not an image")
    argv = [a.format(tmp=tmp_path, ck=checkpoint) for a in argv]
    assert play.main([*argv, "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("play.py: error:") and message in err and "Traceback" not in err


def test_missing_bundled_model_message(monkeypatch, tmp_path, capsys):
    from envs import world_model_registry

    monkeypatch.setattr(
        world_model_registry, "bundled_checkpoint_path", lambda game="crafter": tmp_path
    )
    assert play.main(["--steps", "1"]) == 2
    assert "bundled crafter world model is not installed" in capsys.readouterr().err


def test_help_lists_keys(capsys):
    with pytest.raises(SystemExit):
        play.main(["--help"])
    text = capsys.readouterr().out
    for words in (
        "--side-by-side",
        "--record",
        "w=move_up",
        "Doom:",
        "Atari:",
        "mouse drives the camera",
        "backspace=reset",
    ):
        assert words in text


def test_keymaps_for_other_games():
    doom = Keymap(
        "doom-health",
        gym.spaces.Discrete(6),
        ["noop", "forward", "turn_left", "turn_right", "forward+turn_left", "forward+turn_right"],
    )
    assert doom.action({"up", "left"}) == 4 and doom.action({"w"}) == 1 and doom.action(set()) == 0
    assert "e" not in doom.bindings  # this action set has no "use"
    names = ["NOOP", "FIRE", "UP", "RIGHT", "LEFT", "DOWN", "UPFIRE"]
    atari = Keymap("breakout", gym.spaces.Discrete(7), names)
    assert atari.action({"up", "space"}) == 6 and atari.action({"left"}) == 4
    generic = Keymap("gym:Foo-v0", gym.spaces.Discrete(4), None)
    assert generic.action({"3"}) == 3 and generic.action(set()) == 0
    space = gym.spaces.Dict(
        {
            "forward": gym.spaces.Discrete(2),
            "attack": gym.spaces.Discrete(2),
            "camera": gym.spaces.Box(-180, 180, (2,), np.float32),
        }
    )
    mc = Keymap("minerl:MineRLTreechop-v0", space)
    action = mc.action({"w", "mouse1"}, mouse=(10.0, -20.0))
    assert space.contains(action) and action["forward"] == 1 and action["attack"] == 1
    np.testing.assert_allclose(action["camera"], [-3.0, 1.5])  # [pitch, yaw] in degrees
    assert space.contains(noop_action(space)) and "forward" in mc.describe(action)


def test_an_agent_plays_the_dream(checkpoint, tmp_path):
    from worldsim.agents import ActorCritic, NetworkConfig, load_agent_policy, save_agent

    env_space = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    torch.manual_seed(0)
    agent_dir = save_agent(tmp_path / "agent", ActorCritic(env_space, ACTIONS, NetworkConfig()))
    player = play.Player(args("--checkpoint", checkpoint, "--agent", agent_dir, "--scale", 1))
    player.reset()
    frame = player.panes[-1].frame.copy()
    player.step()
    policy = load_agent_policy(agent_dir, ACTIONS)
    policy.reset(0)
    assert player.action_name == player.keymap.describe(policy(frame))
    assert "agent ppo:agent" in player.header(10.0)[0]


def test_play_defaults_to_one_torch_thread() -> None:
    # Measured fastest for batch-1 play on a busy 2-core CPU (benchmarks/bench_env.py --threads).
    assert play.build_parser().parse_args([]).threads == 1
    assert play.build_parser().parse_args(["--threads", "2"]).threads == 2
