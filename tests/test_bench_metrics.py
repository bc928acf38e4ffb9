"""Benchmark metrics on constructed cases with known answers; LPIPS/FVD loaders; IDM heads; video frames."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from worldsim.bench.gallery import side_by_side
from worldsim.bench.idm import InverseDynamics, action_heads, action_targets
from worldsim.bench.metrics import (
    PSNR_CAP_DB,
    feature_stats,
    frechet_distance,
    moving_mask,
    precision_recall_f1,
    psnr,
    ssim,
    step_curve,
)
from worldsim.bench.perceptual import LPIPS, MetricUnavailable, load_i3d, load_lpips
from worldsim.spaces import tree_stack

SIZE = 16


def draw(pos: np.ndarray) -> np.ndarray:
    """A black frame with a white 2x2 dot at pos."""
    frame = np.zeros((SIZE, SIZE, 3), np.uint8)
    frame[pos[0] : pos[0] + 2, pos[1] : pos[1] + 2] = 255
    return frame


# ------------------------------------------------------------------ metrics with known answers
def test_psnr_identical_offset_and_shifted() -> None:
    rng = np.random.default_rng(0)
    clip = rng.integers(10, 200, size=(2, 3, SIZE, SIZE, 3), dtype=np.uint8)
    assert np.isinf(psnr(clip, clip)).all()  # identical: infinite ...
    assert (psnr(clip, clip, cap_db=PSNR_CAP_DB) == PSNR_CAP_DB).all()  # ... capped for averaging
    offset = clip + np.uint8(5)  # every pixel off by 5: PSNR = 20 log10(255 / 5)
    np.testing.assert_allclose(psnr(offset, clip), 20 * math.log10(255 / 5), rtol=1e-5)
    a, b = draw(np.array([4, 4])), draw(np.array([4, 5]))  # the 2x2 dot shifted by one pixel
    # 4 of 256 pixels differ by 255 in every channel: MSE = 255² · 4/256 -> PSNR = 10 log10(64)
    np.testing.assert_allclose(psnr(a, b), 10 * math.log10(64), rtol=1e-5)
    assert psnr(clip, clip).shape == (2, 3)


def test_ssim_identical_is_one_and_drops_with_difference() -> None:
    rng = np.random.default_rng(1)
    clip = rng.integers(0, 255, size=(4, SIZE, SIZE, 3), dtype=np.uint8)
    np.testing.assert_allclose(ssim(clip, clip), 1.0, atol=1e-6)
    noisy = np.clip(clip + rng.normal(0, 40, clip.shape), 0, 255).astype(np.uint8)
    assert (ssim(noisy, clip) < 0.9).all()
    assert (ssim(255 - clip, clip) < ssim(noisy, clip)).all()


def test_moving_mask_counts_only_real_changes() -> None:
    frames = np.zeros((5, SIZE, SIZE, 3), np.uint8)
    frames[2] = 3  # codec noise everywhere: below the 8/255 threshold
    frames[3, 0, 0] = 255  # one pixel of 256: below the 1% share
    frames[4, :4] = 200  # a quarter of the view changes
    assert moving_mask(frames).tolist() == [False, False, False, True]
    assert moving_mask(frames[None]).shape == (1, 4)


def test_step_curve_and_mask() -> None:
    values = np.array([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]])
    mask = np.array([[True, False, True], [True, False, False]])
    assert step_curve(values)["mean"] == [2.0, 3.0, 4.0]
    curve = step_curve(values, mask)
    assert curve["mean"] == [2.0, None, 3.0]
    assert curve["count"] == [2, 0, 1]


def test_frechet_distance_of_known_gaussians() -> None:
    # Commuting covariances: d² = |m1 - m2|² + tr(S1 + S2) - 2 Σ sqrt(λ1 λ2) = 5 + 10 - 8 = 7.
    s1, s2 = np.diag([1.0, 4.0]), np.diag([4.0, 1.0])
    assert frechet_distance(np.zeros(2), s1, np.array([1.0, 2.0]), s2) == pytest.approx(7.0)
    # One dimension: (m1 - m2)² + (s1 - s2)².
    assert frechet_distance([0.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(9 + 1)
    # A rotated pair (not diagonal): the distance does not depend on the basis.
    rot = np.array([[0.6, -0.8], [0.8, 0.6]])
    assert frechet_distance(
        np.zeros(2), rot @ s1 @ rot.T, rot @ [1.0, 2.0], rot @ s2 @ rot.T
    ) == pytest.approx(7.0)
    # From samples: the estimate approaches the exact value.
    rng = np.random.default_rng(0)
    x = rng.multivariate_normal(np.zeros(2), s1, size=100_000)
    y = rng.multivariate_normal([1.0, 2.0], s2, size=100_000)
    assert frechet_distance(*feature_stats(x), *feature_stats(y)) == pytest.approx(7.0, rel=0.03)
    assert frechet_distance(*feature_stats(x), *feature_stats(x)) == pytest.approx(0.0, abs=1e-6)


def test_precision_recall_f1() -> None:
    r = precision_recall_f1([1, 1, 0, 0, 1], [1, 0, 0, 1, 1])  # tp 2, fp 1, fn 1
    assert (r["precision"], r["recall"], r["f1"], r["support"]) == (2 / 3, 2 / 3, 2 / 3, 3)
    none = precision_recall_f1([0, 0], [0, 0])
    assert none["f1"] is None and none["precision"] is None and none["support"] == 0


# ------------------------------------------------------------------ LPIPS / FVD from local files only
def test_lpips_and_fvd_without_weights_are_skipped_with_a_message(tmp_path) -> None:
    with pytest.raises(MetricUnavailable, match=r"LPIPS skipped.*--lpips-weights"):
        load_lpips(None)
    with pytest.raises(MetricUnavailable, match="does not exist"):
        load_lpips(tmp_path / "alex.pth")
    with pytest.raises(MetricUnavailable, match=r"FVD skipped.*i3d_torchscript\.pt"):
        load_i3d(None)
    with pytest.raises(MetricUnavailable, match="does not exist"):
        load_i3d(tmp_path / "i3d_torchscript.pt")
    # Only the linear layers (alex.pth) without the AlexNet trunk: named as missing.
    ref = LPIPS()
    torch.save(
        {f"lin{k}.model.1.weight": lin.weight for k, lin in enumerate(ref.lins)},
        tmp_path / "alex.pth",
    )
    with pytest.raises(MetricUnavailable, match=r"lack \['features"):
        load_lpips(tmp_path / "alex.pth")


def test_lpips_loads_standard_key_names(tmp_path) -> None:
    ref = LPIPS()
    torch.nn.init.uniform_(ref.lins[0].weight)
    torch.save(
        {f"lin{k}.model.1.weight": lin.weight for k, lin in enumerate(ref.lins)},
        tmp_path / "alex.pth",
    )
    trunk = {
        f"features.{k}": v for k, v in ref.features.state_dict().items()
    }  # torchvision's names
    torch.save(trunk, tmp_path / "alexnet-owt-7be5be79.pth")
    model = load_lpips(tmp_path)  # a folder holding both files
    for a, b in zip(model.state_dict().values(), ref.state_dict().values()):
        assert torch.equal(a, b)
    frames = np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
    assert model.distance(frames, frames) == pytest.approx([0.0, 0.0], abs=1e-6)
    assert (model.distance(frames, 255 - frames) > 0).all()


def test_idm_heads_for_every_space_kind() -> None:
    space = gym.spaces.Dict(
        {
            "buttons": gym.spaces.MultiBinary(3),
            "camera": gym.spaces.Box(-10, 10, (2,)),
            "hotbar": gym.spaces.Discrete(4, start=1),
            "keys": gym.spaces.MultiDiscrete([2, 3]),
        }
    )
    assert [h.kind for h in action_heads(space)] == ["binary"] * 3 + ["box"] * 2 + ["class"] * 3
    space.seed(0)
    actions = tree_stack([space.sample() for _ in range(6)])
    targets = action_targets(space, actions)
    assert (
        targets.shape == (6, 8) and np.abs(targets[:, 3:5]).max() <= 1
    )  # camera scaled to [-1, 1]
    np.testing.assert_array_equal(targets[:, 5], actions["hotbar"] - 1)
    model = InverseDynamics(space, (SIZE, SIZE, 3), width=8)
    frames = np.zeros((6, SIZE, SIZE, 3), np.uint8)
    scores = model.evaluate(frames, frames, actions)
    assert set(scores["heads"]) == {
        "buttons[0]",
        "buttons[1]",
        "buttons[2]",
        "camera[0]",
        "camera[1]",
        "hotbar",
        "keys[0]",
        "keys[1]",
    }
    assert scores["box_mae"] is not None and 0 <= scores["accuracy"] <= 1


def test_side_by_side_video_frames() -> None:
    real = np.zeros((5, SIZE, SIZE, 3), np.uint8)
    video = side_by_side(real, real + 10, context=2)
    assert video.shape[0] == 5 and video.shape[1] % 2 == 0 and video.shape[2] % 2 == 0
    assert video.shape[1] >= 256
