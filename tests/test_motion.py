"""Tests for the motion-compensated reference: per-token dynamic filters (worldsim/model/motion.py)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from worldsim.model import Rollout, WorldModelNet, preset
from worldsim.model.config import DiffusionLoss, DiffusionSampler
from worldsim.model.motion import MotionHead, apply_token_filters


def one_hot_taps(shape: tuple[int, ...], radius: int, d: int) -> torch.Tensor:
    taps = torch.zeros(*shape, 2 * radius + 1)
    taps[..., radius + d] = 1.0
    return taps


@pytest.mark.parametrize("patch", [8, 7])  # 7 does not divide 64: the frame is zero-padded
@pytest.mark.parametrize(("dy", "dx"), [(0, 0), (0, 7), (-7, 0), (3, -5)])
def test_one_hot_kernels_translate_the_frame_with_zero_fill(patch, dy, dx):
    ref = torch.randn(2, 3, 3, 64, 64)
    N = (-(-64 // patch)) ** 2
    ky, kx = one_hot_taps((2, 3, N), 8, dy), one_hot_taps((2, 3, N), 8, dx)
    moved = apply_token_filters(ref, ky, kx, patch)
    # out(y, x) = ref(y + dy, x + dx), zero outside the frame
    expected = torch.zeros_like(ref)
    ys, yd = (
        (slice(dy, None), slice(None, 64 - dy)) if dy >= 0 else (slice(None, dy), slice(-dy, None))
    )
    xs, xd = (
        (slice(dx, None), slice(None, 64 - dx)) if dx >= 0 else (slice(None, dx), slice(-dx, None))
    )
    expected[..., yd, xd] = ref[..., ys, xs]
    torch.testing.assert_close(moved, expected)


def test_each_token_moves_its_own_region():
    ref = torch.randn(1, 1, 3, 16, 16)
    ky = one_hot_taps((1, 1, 4), 2, 0)
    kx = one_hot_taps((1, 1, 4), 2, 0)
    kx[0, 0, 1] = one_hot_taps((), 2, 2)  # token (0, 1) reads 2 px to its right
    moved = apply_token_filters(ref, ky, kx, 8)
    torch.testing.assert_close(moved[..., :8, :8], ref[..., :8, :8])
    torch.testing.assert_close(moved[..., :8, 8:14], ref[..., :8, 10:16])
    assert moved[..., :8, 14:].abs().max() == 0  # past the frame's edge: zero
    torch.testing.assert_close(moved[..., 8:, :], ref[..., 8:, :])


def test_a_fresh_head_is_nearly_the_identity_and_kernels_are_normalised():
    head = MotionHead(32, 4)
    ky, kx = head(torch.randn(2, 3, 5, 32))
    assert ky.shape == kx.shape == (2, 3, 5, 9)
    assert torch.all(ky[..., 4] > 0.98) and torch.all(kx[..., 4] > 0.98)
    torch.testing.assert_close(ky.sum(-1), torch.ones(2, 3, 5))
    flat = torch.full((1, 1, 3, 16, 16), 0.3)  # normalised kernels keep a flat interior flat
    moved = apply_token_filters(flat, *MotionHead(8, 2)(torch.randn(1, 1, 4, 8)), 8)
    torch.testing.assert_close(moved[..., 2:-2, 2:-2], flat[..., 2:-2, 2:-2])


def test_temperature_sharpens_kernels():
    head = MotionHead(8, 2)
    with torch.no_grad():
        head.proj.weight.normal_()
    tokens = torch.randn(1, 1, 3, 8)
    trained = head(tokens)[1]
    sampled = head(tokens, 0.5)[1]
    torch.testing.assert_close(sampled, (trained.log() / 0.5).softmax(-1))
    assert torch.all(sampled.max(-1).values >= trained.max(-1).values)
    with pytest.raises(ValueError, match="motion_temperature"):
        DiffusionSampler(motion_temperature=0.0)


def test_a_rollout_samples_kernels_at_its_samplers_temperature(monkeypatch):
    """The sampler's motion_temperature reaches the motion head; training uses 1."""
    net = WorldModelNet(preset("tiny", height=16, width=16, patch_size=8, motion_radius=2),
                        gym.spaces.Discrete(3)).eval()  # fmt: skip
    seen: list[float] = []
    forward = net.backbone.motion.forward

    def spy(tokens, temperature=1.0):
        seen.append(temperature)
        return forward(tokens, temperature)

    monkeypatch.setattr(net.backbone.motion, "forward", spy)
    x = torch.zeros(1, 1, 3, 16, 16)
    acts = net.encode_actions(torch.zeros(1, 1, dtype=torch.long))
    rollout = Rollout(net, sampler=DiffusionSampler(motion_temperature=0.25, sampler_steps=1))
    rollout.next(rollout.start(x, acts[:, :0]), acts)
    assert seen and set(seen) == {0.25}
    seen.clear()
    frames = torch.zeros(1, 2, 16, 16, 3, dtype=torch.uint8)
    net.train().training_loss(frames, torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 1),
                              torch.zeros(1, 1, dtype=torch.bool))  # fmt: skip
    assert set(seen) == {1.0}


def test_bad_kernel_shapes_raise_value_error():
    with pytest.raises(ValueError, match="do not fit"):
        apply_token_filters(
            torch.zeros(1, 1, 3, 16, 16), torch.zeros(1, 1, 3, 5), torch.zeros(1, 1, 3, 5), 8
        )
    with pytest.raises(ValueError, match="motion_radius"):
        preset("tiny", motion_radius=-1)


def scrolling_world(n: int, T: int, size: int, tile: int, rng: np.random.Generator):
    """Clips of a view scrolling over a random tile map: action 0 stays, 1 moves right by a
    tile, 2 moves down by a tile. frames uint8 [n, T, size, size, 3], actions [n, T-1]."""
    tiles = size // tile
    world_tiles = tiles + T
    palette = rng.integers(0, 256, (6, 3))
    frames = np.zeros((n, T, size, size, 3), np.uint8)
    actions = rng.integers(0, 3, (n, T - 1))
    for i in range(n):
        world = palette[rng.integers(0, 6, (world_tiles, world_tiles))]
        world = world.repeat(tile, 0).repeat(tile, 1)
        y = x = 0
        for t in range(T):
            if t:
                y += tile * (actions[i, t - 1] == 2)
                x += tile * (actions[i, t - 1] == 1)
            frames[i, t] = world[y : y + size, x : x + size]
    return frames, actions


def test_the_motion_head_learns_that_an_action_scrolls_the_view():
    """A tiny net learns, in a few dozen steps, to move the reference by one tile to the right
    when the action is "right" and to keep it still for "stay"."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    space = gym.spaces.Discrete(3)
    cfg = preset("tiny", height=32, width=32, patch_size=8, motion_radius=4)
    net = WorldModelNet(cfg, space)
    recipe = DiffusionLoss(clean_reference=True, prefix_prob=0.0)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(60):
        frames, actions = scrolling_world(8, 4, 32, 4, rng)
        zeros = np.zeros(actions.shape, np.float32)
        loss = net.training_loss(
            frames, torch.as_tensor(actions), zeros, zeros > 0, gen, loss=recipe
        )["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    frames, _ = scrolling_world(1, 2, 32, 4, rng)
    x = net.frames_to_x(frames)  # [1, 2, 3, 32, 32]
    prev = torch.cat([torch.zeros_like(x[:, :1]), x[:, :1]], dim=1)
    kernels: list[tuple[torch.Tensor, torch.Tensor]] = []
    net.backbone.motion.register_forward_hook(lambda module, args, out: kernels.append(out))
    with torch.no_grad():
        for a in (0, 1):
            acts = net.encode_actions(torch.tensor([[0, a]]))
            sigma, prev_sigma = torch.tensor([[5.0, 5.0]]), torch.tensor([[1e4, 0.02]])
            net.denoise(x, sigma, prev, prev_sigma, acts, torch.tensor([[False, True]]))
    stay, right = (kx[0, 1].mean(0) for _, kx in kernels)  # frame 1, mean over tokens
    assert right[4 + 4] > 0.5, right  # "right": the content moves left, read 4 px to the right
    assert stay[4] > 0.5, stay  # "stay": the centre tap
