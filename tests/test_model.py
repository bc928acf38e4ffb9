"""Tests for action encoding, the network, the diffusion objective and samplers (tiny preset)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from worldsim.actions import ActionEncoder
from worldsim.diffusion import guided, karras_sigmas, sample
from worldsim.errors import ActionError
from worldsim.model import AutoencoderConfig, FrameAutoencoder, FrameError, WorldModelNet, preset
from worldsim.model.config import DiffusionLoss

SPACES = {
    "discrete": gym.spaces.Discrete(5, start=1),
    "multidiscrete": gym.spaces.MultiDiscrete([3, 4]),
    "multibinary": gym.spaces.MultiBinary(4),
    "box": gym.spaces.Box(-1.0, 2.0, (2,), np.float32),
    "box_unbounded": gym.spaces.Box(-np.inf, np.inf, (3,), np.float32),
    "minerl_dict": gym.spaces.Dict(
        {
            "attack": gym.spaces.Discrete(2),
            "camera": gym.spaces.Box(-180.0, 180.0, (2,), np.float32),
            "keys": gym.spaces.MultiBinary(3),
            "hotbar": gym.spaces.MultiDiscrete([9]),
        }
    ),
    "tuple": gym.spaces.Tuple((gym.spaces.Discrete(3), gym.spaces.Box(0.0, 1.0, (1,), np.float32))),
}


def batch_of(space: gym.spaces.Space, shape: tuple[int, ...]):
    """Valid actions with leading dims `shape`, sampled from the space."""
    n = int(np.prod(shape))
    samples = [space.sample() for _ in range(n)]
    if isinstance(space, gym.spaces.Dict):
        return {
            k: np.stack([s[k] for s in samples]).reshape((*shape, *space[k].shape))
            for k in space.spaces
        }
    if isinstance(space, gym.spaces.Tuple):
        return tuple(
            np.stack([s[i] for s in samples]).reshape((*shape, *sub.shape))
            for i, sub in enumerate(space.spaces)
        )
    return np.stack(samples).reshape((*shape, *space.shape))


def clip_batch(
    space: gym.spaces.Space, B: int = 2, T: int = 4, H: int = 64, W: int = 64, seed: int = 0
):
    """Clips of a square moving by the action (Discrete(4)) or random frames otherwise."""
    rng = np.random.default_rng(seed)
    frames = np.zeros((B, T, H, W, 3), np.uint8)
    frames[..., 1] = 90
    actions = batch_of(space, (B, T - 1))
    for b in range(B):
        y, x = 8 + 12 * b, 16
        for t in range(T):
            frames[b, t, y : y + 8, x : x + 8] = (250, 200, 10)
            if t < T - 1 and isinstance(space, gym.spaces.Discrete):
                dy, dx = [(0, 4), (0, -4), (4, 0), (-4, 0)][int(actions[b, t]) % 4]
                y, x = int(np.clip(y + dy, 0, H - 8)), int(np.clip(x + dx, 0, W - 8))
    rewards = rng.choice([0.0, 1.0, -0.1], size=(B, T - 1)).astype(np.float32)
    terminated = np.zeros((B, T - 1), bool)
    terminated[0, -1] = True
    return (
        torch.from_numpy(frames),
        actions,
        torch.from_numpy(rewards),
        torch.from_numpy(terminated),
    )


@pytest.mark.parametrize("name", sorted(SPACES))
def test_every_action_space_kind_encodes(name):
    space = SPACES[name]
    space.seed(0)
    encoder = ActionEncoder(space)
    encoded = encoder.encode(batch_of(space, (2, 3)))
    assert encoded.shape == (2, 3, encoder.dim) and encoded.dtype == torch.float32
    assert torch.isfinite(encoded).all()
    assert encoder.encode(batch_of(space, ())).shape == (encoder.dim,)


def test_discrete_is_one_hot_and_box_is_scaled():
    encoder = ActionEncoder(gym.spaces.Discrete(5, start=1))
    assert encoder.encode(torch.tensor([1, 5])).tolist() == [[1, 0, 0, 0, 0], [0, 0, 0, 0, 1]]
    box = ActionEncoder(gym.spaces.Box(-1.0, 3.0, (2,), np.float32))
    assert box.encode(np.array([[-1.0, 3.0]])).tolist() == [[-1.0, 1.0]]


def test_the_action_at_rest_is_every_button_up_and_every_axis_still():
    space = gym.spaces.Dict(
        {
            "move": gym.spaces.Discrete(3, start=-1),
            "keys": gym.spaces.MultiBinary(2),
            "camera": gym.spaces.Box(-180.0, 180.0, (2,), np.float32),
            "throttle": gym.spaces.Box(0.5, 1.0, (1,), np.float32),  # zero left out: clipped in
        }
    )
    encoder = ActionEncoder(space)
    rest = {"move": -1, "keys": np.zeros(2, np.int64), "camera": np.zeros(2, np.float32),
            "throttle": np.array([0.5], np.float32)}  # fmt: skip
    assert torch.equal(encoder.rest(), encoder.encode(rest))
    assert not torch.equal(encoder.rest(), encoder.encode({**rest, "move": 0}))


@pytest.mark.parametrize(
    ("space", "bad"),
    [
        (gym.spaces.Discrete(5), np.array([5])),
        (gym.spaces.Discrete(5), np.array([0.5])),
        (gym.spaces.MultiDiscrete([3, 4]), np.array([[0, 4]])),
        (gym.spaces.MultiDiscrete([3, 4]), np.array([[0, 1, 2]])),
        (gym.spaces.MultiBinary(4), np.array([[0, 2, 0, 1]])),
        (gym.spaces.Box(-1.0, 1.0, (2,), np.float32), np.array([[0.0, 1.5]])),
        (gym.spaces.Box(-1.0, 1.0, (2,), np.float32), np.array([0.0, 0.5, 0.1])),
        (gym.spaces.Box(-1.0, 1.0, (2,), np.float32), np.array([[np.nan, 0.0]])),
        (SPACES["minerl_dict"], {"attack": np.array([1])}),
        (SPACES["minerl_dict"], np.array([1])),
    ],
)
def test_bad_actions_raise_action_error(space, bad):
    with pytest.raises(ActionError):
        ActionEncoder(space).encode(bad)


def test_dict_parts_with_different_batch_shapes_raise():
    space = gym.spaces.Dict({"a": gym.spaces.Discrete(2), "b": gym.spaces.Discrete(3)})
    with pytest.raises(ActionError, match="batch shapes"):
        ActionEncoder(space).encode({"a": np.zeros(2, np.int64), "b": np.zeros(3, np.int64)})


def test_training_loss_returns_the_contract():
    space = gym.spaces.Discrete(4)
    net = WorldModelNet(preset("tiny"), space)
    frames, actions, rewards, terminated = clip_batch(space)
    out = net.training_loss(
        frames, torch.as_tensor(actions), rewards, terminated, torch.Generator().manual_seed(0)
    )
    for key in ("loss", "diffusion", "reward", "termination", "reward_acc", "termination_acc"):
        assert out[key].dim() == 0 and torch.isfinite(out[key]), key
    assert out["sigma"].shape == (2, 4) and out["frame_loss"].shape == (2, 4)
    assert not out["frame_loss"].requires_grad
    out["loss"].backward()
    assert all(p.grad is not None for p in net.backbone.parameters())


def test_loss_falls_when_overfitting_two_clips():
    torch.manual_seed(0)
    space = gym.spaces.Discrete(4)
    space.seed(0)
    net = WorldModelNet(preset("tiny", height=32, width=32), space)
    frames, actions, rewards, terminated = clip_batch(space, H=32, W=32)
    actions = torch.as_tensor(actions)

    def fixed_loss() -> float:  # the same noise levels and noise every time
        with torch.no_grad():
            out = net.training_loss(
                frames, actions, rewards, terminated, torch.Generator().manual_seed(123)
            )
        return out["loss"].item()

    before = fixed_loss()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(80):
        loss = net.training_loss(frames, actions, rewards, terminated, gen)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert fixed_loss() < 0.75 * before  # low-noise frames keep it from going much lower fast


def test_resolution_48x80_and_patches_that_do_not_divide_the_frame():
    space = gym.spaces.Discrete(4)
    net = WorldModelNet(preset("tiny", height=48, width=80), space)
    frames, actions, rewards, terminated = clip_batch(space, H=48, W=80)
    out = net.training_loss(frames, torch.as_tensor(actions), rewards, terminated)
    assert torch.isfinite(out["loss"])
    assert net.config.grid == (12, 20)
    # Crafter's 7-pixel tiles: 7x7 patches pad a 64x64 frame to 70x70, a 10x10 grid.
    padded = WorldModelNet(preset("tiny", patch_size=7), space)
    assert padded.config.grid == (10, 10)
    frames, actions, rewards, terminated = clip_batch(space)
    out = padded.training_loss(frames, torch.as_tensor(actions), rewards, terminated)
    assert torch.isfinite(out["loss"])
    x = padded.frames_to_x(frames)
    planes = torch.cat([x, x], dim=2)
    assert padded.backbone(planes, torch.zeros(2, 4, 64))[0].shape == x.shape
    with pytest.raises(ValueError, match="divisible by the autoencoder"):
        preset("tiny", height=50, width=80, autoencoder=AutoencoderConfig(channels=(8, 8, 8)))


def test_frames_of_the_wrong_size_raise_frame_error():
    space = gym.spaces.Discrete(4)
    net = WorldModelNet(preset("tiny"), space)
    frames, actions, rewards, terminated = clip_batch(space, H=32, W=32)
    with pytest.raises(FrameError, match="64, 64, 3"):
        net.training_loss(frames, torch.as_tensor(actions), rewards, terminated)
    with pytest.raises(FrameError, match="uint8"):
        net.training_loss(frames.float(), torch.as_tensor(actions), rewards, terminated)


def test_autoencoder_latent_diffusion():
    ae_config = AutoencoderConfig(channels=(8, 16), latent_channels=4)
    ae = FrameAutoencoder(ae_config)
    frames = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
    latents = ae.encode(frames)
    assert latents.shape == (2, 4, 32, 32) and latents.abs().max() <= 1
    assert ae.decode_uint8(latents).shape == (2, 64, 64, 3)
    assert torch.isfinite(ae.loss(frames)["loss"])
    space = gym.spaces.Discrete(4)
    net = WorldModelNet(preset("tiny", autoencoder=ae_config), space)
    net.set_autoencoder(ae)
    clips = clip_batch(space)
    out = net.training_loss(clips[0], torch.as_tensor(clips[1]), *clips[2:])
    out["loss"].backward()
    assert all(p.grad is None for p in net.autoencoder.parameters())  # frozen
    assert net.x_to_frames(net.frames_to_x(clips[0])).shape == clips[0].shape


def test_euler_one_step_is_the_denoiser_and_guidance_mixes():
    x = torch.randn(3)
    sigmas = karras_sigmas(1, 0.002, 5.0, 7.0)
    assert sample(lambda x, s: x * 0 + 1.0, x, sigmas).tolist() == [1.0, 1.0, 1.0]
    heun = sample(lambda x, s: x / (1 + s**2), x, karras_sigmas(4, 0.002, 5.0, 7.0), "heun")
    assert torch.isfinite(heun).all()
    mixed = guided(lambda x, s: x + 2, lambda x, s: x, 1.5)(torch.zeros(1), 1.0)
    assert mixed.item() == pytest.approx(3.0)


def test_model_info_prints_parameters_and_flops(capsys):
    from worldsim.cli import main

    assert main(["model", "info", "--preset", "tiny", "--height", "48", "--width", "80"]) == 0
    out = capsys.readouterr().out
    assert "tiny" in out and "48x80" in out and "GF/eval" in out


@pytest.mark.parametrize("clean", [True, False])
def test_clean_reference_shows_each_frame_its_clean_previous_frame(clean, monkeypatch):
    space = gym.spaces.Discrete(4)
    net = WorldModelNet(preset("tiny"), space)
    loss = DiffusionLoss(clean_reference=clean, prefix_prob=0.0)
    frames, actions, rewards, terminated = clip_batch(space)
    seen = {}
    denoise = net.denoise

    def spy(x, sigma, prev, prev_sigma, *args, **kwargs):
        seen.update(prev=prev, prev_sigma=prev_sigma)
        return denoise(x, sigma, prev, prev_sigma, *args, **kwargs)

    monkeypatch.setattr(net, "denoise", spy)
    net.training_loss(
        frames, torch.as_tensor(actions), rewards, terminated, torch.Generator().manual_seed(0),
        loss=loss,
    )  # fmt: skip
    x0 = net.frames_to_x(frames)
    gap = (seen["prev"][:, 1:] - x0[:, :-1]).abs().amax(dim=(2, 3, 4))  # [B, T-1]
    ctx = loss.context_noise_max
    if clean:  # the clean previous frame, noised no more than the context is in rollouts
        assert (seen["prev_sigma"][:, 1:] <= ctx + 1e-6).all()
        assert (gap <= 6 * seen["prev_sigma"][:, 1:]).all()
    else:  # the previous frame at its own diffusion-forcing noise level
        assert (seen["prev_sigma"][:, 1:] > ctx).any() and (gap > 6 * ctx).any()
    assert (seen["prev"][:, 0] == 0).all()  # frame 0 has no previous frame
