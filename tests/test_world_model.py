"""Tests for WorldModel rollouts (cache, chunks, windows), release checkpoints and bad input."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from worldsim.checkpoint import load_release, save_release
from worldsim.errors import ActionError, CheckpointError, WorldsimError
from worldsim.model import (
    DiffusionLoss,
    DiffusionSampler,
    FrameError,
    WorldModelNet,
    preset,
)
from worldsim.model.tile_config import TileSampler
from worldsim.world_model import WorldModel

SPACE = gym.spaces.Discrete(5)
H, W = 32, 48


def obs_space(h: int = H, w: int = W) -> gym.spaces.Box:
    return gym.spaces.Box(0, 255, (h, w, 3), np.uint8)


def random_net(context: int = 6, space: gym.spaces.Space = SPACE, **overrides) -> WorldModelNet:
    """A tiny net with every weight perturbed, so zero-initialised layers do not hide bugs."""
    torch.manual_seed(0)
    net = WorldModelNet(preset("tiny", height=H, width=W, context=context, **overrides), space)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return net.eval()


def context(B: int = 2, K: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (B, K, H, W, 3), dtype=np.uint8), rng.integers(0, 5, (B, K - 1))


def rollout(wm: WorldModel, frames, actions, future, seed: int = 1, **kwargs):
    wm.reset(frames, actions)
    gen = torch.Generator().manual_seed(seed)
    steps = [wm.step(future[:, i], generator=gen, **kwargs) for i in range(future.shape[1])]
    return [np.stack(parts, 1) for parts in zip(*steps)]


def test_step_returns_frames_rewards_terminated_and_is_reproducible():
    wm = WorldModel.from_net(random_net(), obs_space(), SPACE)
    frames, actions = context()
    wm.reset(frames, actions)
    out, rewards, terminated = wm.step(np.array([1, 2]), generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, H, W, 3) and out.dtype == np.uint8
    assert rewards.shape == (2,) and rewards.dtype == np.float32
    assert terminated.shape == (2,) and terminated.dtype == bool
    wm.reset(frames, actions)
    again = wm.step(np.array([1, 2]), generator=torch.Generator().manual_seed(0))[0]
    assert np.array_equal(out, again)


@pytest.mark.parametrize("motion_radius", [0, 3])
def test_cached_and_uncached_rollouts_agree(motion_radius):
    net = random_net(context=6, motion_radius=motion_radius)
    frames, actions = context(K=3)
    future = np.array([[0, 1, 2], [4, 3, 2]])  # 3 + 3 frames: the whole window, no sliding
    cached = rollout(
        WorldModel(net, obs_space(), SPACE, use_cache=True), frames, actions, future, steps=2
    )
    uncached = rollout(
        WorldModel(net, obs_space(), SPACE, use_cache=False), frames, actions, future, steps=2
    )
    wm_c, wm_u = (WorldModel(net, obs_space(), SPACE, use_cache=c) for c in (True, False))
    for wm in (wm_c, wm_u):
        wm.reset(frames, actions)
    gen_c, gen_u = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    with torch.no_grad():  # compare the float frames, before uint8 rounding
        for i in range(future.shape[1]):
            enc = net.encode_actions(torch.as_tensor(future[:, i : i + 1]))
            x_c, r_c, _ = wm_c.rollout.next(wm_c._state, enc, steps=2, generator=gen_c)
            x_u, r_u, _ = wm_u.rollout.next(wm_u._state, enc, steps=2, generator=gen_u)
            torch.testing.assert_close(x_c, x_u, atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(r_c, r_u, atol=1e-4, rtol=1e-4)
    assert np.abs(cached[0].astype(int) - uncached[0].astype(int)).max() <= 1
    with torch.no_grad():  # chunks of 2 frames denoised jointly: the same agreement
        x = net.frames_to_x(frames)
        enc = net.encode_actions(torch.as_tensor(actions))
        chunk = net.encode_actions(torch.as_tensor(future[:, :2]))
        outs = []
        for wm in (wm_c, wm_u):
            state = wm.rollout.start(x, enc)
            outs.append(wm.rollout.next(state, chunk, generator=torch.Generator().manual_seed(4)))
        for a, b in zip(*outs):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_chunked_and_joint_generation_agree_in_shape_and_are_finite():
    wm = WorldModel.from_net(random_net(context=6), obs_space(), SPACE)
    frames, actions = context(K=2)
    future = np.random.default_rng(1).integers(0, 5, (2, 7))  # longer than the context: slides
    for chunk in (1, 3, 5):
        out = wm.generate(
            frames, actions, future, chunk=chunk, generator=torch.Generator().manual_seed(0)
        )
        assert out["frames"].shape == (2, 7, H, W, 3) and out["frames"].dtype == np.uint8
        assert out["rewards"].shape == (2, 7) and np.isfinite(out["rewards"]).all()
        assert out["terminated"].shape == (2, 7)
    guided = wm.generate(frames, actions, future[:, :2], steps=3, guidance=2.0)
    assert guided["frames"].shape == (2, 2, H, W, 3)
    heun = WorldModel.from_net(random_net(), obs_space(), SPACE, sampler=DiffusionSampler("heun"))
    assert heun.generate(frames, actions, future[:, :2], steps=2)["frames"].shape == (2, 2, H, W, 3)
    clip = wm.sample_clip(future[:, :5], generator=torch.Generator().manual_seed(0))  # 6 frames
    assert clip["frames"].shape == (2, 6, H, W, 3) and clip["rewards"].shape == (2, 5)


def test_training_still_works_after_an_inference_rollout():
    """A rollout (eval mode, inference tensors, the key/value cache) leaves nothing behind that
    changes training: loss and gradients equal those of a copy of the net that never rolled out."""
    net = random_net()
    untouched = copy.deepcopy(net)
    wm = WorldModel.from_net(net, obs_space(), SPACE)
    frames, actions = context(K=4)
    wm.generate(frames[:, :2], actions[:, :1], actions[:, 1:])

    def loss_and_grads(model: WorldModelNet) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out = model.train().training_loss(
            torch.from_numpy(frames), torch.from_numpy(actions), torch.zeros(2, 3),
            torch.zeros(2, 3, dtype=torch.bool), generator=torch.Generator().manual_seed(0),
        )  # fmt: skip
        out["loss"].backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        return out["loss"].detach(), grads

    loss, grads = loss_and_grads(net)
    expected_loss, expected_grads = loss_and_grads(untouched)
    assert torch.isfinite(loss) and loss > 0
    torch.testing.assert_close(loss, expected_loss)
    assert grads.keys() == expected_grads.keys()
    assert len(grads) > len(list(net.parameters())) // 2  # most weights learn
    for name, grad in grads.items():
        torch.testing.assert_close(grad, expected_grads[name], msg=name)
    assert sum(float(g.abs().sum()) for g in grads.values()) > 0


def test_fresh_model_copies_the_last_frame():
    """Residual path (calibration lesson 1): an untrained net predicts "nothing changed"."""
    net = WorldModelNet(preset("tiny", height=H, width=W), SPACE).eval()
    wm = WorldModel.from_net(net, obs_space(), SPACE)
    frames, actions = context()
    wm.reset(frames, actions)
    out = wm.step(np.array([0, 1]), steps=1, generator=torch.Generator().manual_seed(0))[0]
    assert np.abs(out.astype(int) - frames[:, -1].astype(int)).mean() < 2.0


def test_release_round_trip_gives_identical_outputs(tmp_path):
    net = random_net()
    frames, actions = context(B=3, K=2)
    path = save_release(
        tmp_path / "release",
        net,
        observation_space=obs_space(),
        action_space=SPACE,
        contexts={"frames": frames, "actions": actions},
        metadata={"game": "test"},
    )
    loaded = WorldModel.from_checkpoint(path)
    original = WorldModel.from_net(net, obs_space(), SPACE)
    future = np.array([[1, 2], [3, 4], [0, 0]])
    a = rollout(original, frames, actions, future)
    b = rollout(loaded, frames, actions, future)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
    assert np.array_equal(loaded.contexts["frames"], frames)
    assert loaded.config == net.config and loaded.observation_space == obs_space()
    assert load_release(path)[4] == {"game": "test"}


def test_dict_action_release_round_trip(tmp_path):
    space = gym.spaces.Dict(
        {"attack": gym.spaces.Discrete(2), "camera": gym.spaces.Box(-180, 180, (2,), np.float32)}
    )
    net = random_net(space=space)
    frames, _ = context(B=1, K=2)
    actions = {"attack": np.zeros((1, 1), np.int64), "camera": np.zeros((1, 1, 2), np.float32)}
    path = save_release(tmp_path, net, observation_space=obs_space(), action_space=space,
                        contexts={"frames": frames, "actions": actions})  # fmt: skip
    wm = WorldModel.from_checkpoint(path)
    assert wm.contexts["actions"]["camera"].shape == (1, 1, 2)
    wm.reset(wm.contexts["frames"], wm.contexts["actions"])
    out = wm.step({"attack": np.array([1]), "camera": np.array([[10.0, -5.0]], np.float32)})
    assert out[0].shape == (1, H, W, 3)


def test_bad_inputs_raise_clear_errors(tmp_path):
    wm = WorldModel.from_net(random_net(), obs_space(), SPACE)
    frames, actions = context()
    with pytest.raises(WorldsimError, match="reset"):
        wm.step(np.array([0, 0]))
    with pytest.raises(FrameError, match=f"{H}, {W}, 3"):
        wm.reset(np.zeros((2, 3, 64, 64, 3), np.uint8), actions)
    with pytest.raises(ActionError, match="batch shape"):
        wm.reset(frames, actions[:, :1])
    wm.reset(frames, actions)
    with pytest.raises(ActionError, match="out of range"):
        wm.step(np.array([0, 7]))
    with pytest.raises(ActionError, match="batch shape"):
        wm.step(np.array([0, 1, 2]))


def test_bad_checkpoints_raise_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="not a worldsim release"):
        WorldModel.from_checkpoint(tmp_path / "missing")
    path = save_release(
        tmp_path / "r", random_net(), observation_space=obs_space(), action_space=SPACE
    )
    with pytest.raises(CheckpointError, match="another game"):
        WorldModel.from_checkpoint(path, action_space=gym.spaces.Discrete(17))
    (path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="corrupt"):
        WorldModel.from_checkpoint(path)
    (path / "config.json").write_text("{ broken")
    with pytest.raises(CheckpointError, match="corrupt"):
        WorldModel.from_checkpoint(path)


def test_a_release_copies_with_other_sampler_defaults(crafter_release, tmp_path, capsys):
    from worldsim.checkpoint import read_release_config, with_sampler_defaults
    from worldsim.cli import main as worldsim_main
    from worldsim.errors import CheckpointError

    crafter_release, out = Path(crafter_release), tmp_path / "steps3"
    argv = ["model", "sampler", "--release", str(crafter_release), "--set", "sampler_steps=3",
            "--out", str(out)]  # fmt: skip
    assert worldsim_main(argv) == 0
    assert WorldModel.from_checkpoint(out).sampler.sampler_steps == 3
    again = with_sampler_defaults(out, tmp_path / "steps3-guided", {"guidance": "1.5"})
    changes = read_release_config(again)["metadata"]["sampler_changes"]  # every change, in order
    assert changes == [{"from": str(crafter_release), "sampler_steps": 3},
                       {"from": str(out), "guidance": 1.5}]  # fmt: skip
    assert (out / "model.safetensors").read_bytes() == (
        crafter_release / "model.safetensors"
    ).read_bytes()
    with pytest.raises(CheckpointError, match="exists"):
        with_sampler_defaults(crafter_release, out, {"sampler_steps": "2"})
    with pytest.raises(CheckpointError, match="'dim' is not a sampler setting"):
        with_sampler_defaults(crafter_release, tmp_path / "x", {"dim": "64"})
    with pytest.raises(CheckpointError, match="is not of type int"):
        with_sampler_defaults(crafter_release, tmp_path / "x", {"sampler_steps": "two"})
    with pytest.raises(CheckpointError, match="sampler_steps"):
        with_sampler_defaults(crafter_release, tmp_path / "x", {"sampler_steps": "0"})
    assert not (tmp_path / "x").exists()


def test_a_release_keeps_architecture_sampler_and_loss_apart(tmp_path):
    """Format 2 saves three configs; a format-1 release (one flat config mixing the three)
    still loads, split by field, with the same sampler."""
    sampler = DiffusionSampler(sampler_steps=3, motion_temperature=0.5, sigma_stab=0.05)
    loss = DiffusionLoss(clean_reference=True)
    net = random_net()
    path = save_release(tmp_path / "r", net, observation_space=obs_space(), action_space=SPACE,
                        sampler=sampler, loss=loss)  # fmt: skip
    config = json.loads((path / "config.json").read_text())
    assert config["format_version"] == 2
    assert config["model_config"] == net.config.to_dict()
    assert DiffusionSampler(**config["sampler_config"]) == sampler
    assert DiffusionLoss(**config["loss_config"]) == loss
    assert WorldModel.from_checkpoint(path).sampler == sampler
    flat = {**config["model_config"], **config["sampler_config"], **config["loss_config"]}
    del flat["context_noise_min"]  # format 1 had one sigma_min for both
    config.update(format_version=1, model_config=flat)
    del config["sampler_config"], config["loss_config"]
    (path / "config.json").write_text(json.dumps(config))
    old = WorldModel.from_checkpoint(path)
    assert old.sampler == sampler and old.config == net.config
    with pytest.raises(CheckpointError, match="TileSampler"):
        save_release(tmp_path / "bad", net, observation_space=obs_space(), action_space=SPACE,
                     sampler=TileSampler())  # fmt: skip
    with pytest.raises(WorldsimError, match="DiffusionSampler"):
        WorldModel.from_net(net, obs_space(), SPACE, sampler=TileSampler())
