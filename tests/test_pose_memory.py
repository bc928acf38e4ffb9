"""Pose memory: the geometry, the references training and rollouts find, and a tiny run."""

from __future__ import annotations

import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from training.data import EpisodeDataModule, pose_references
from training.module import ConfigError, WorldModelSystem
from worldsim.data import EpisodeStore
from worldsim.errors import StoreError
from worldsim.model import WorldModelNet, preset
from worldsim.model.pose import local_delta, nearest, odometry_step, turn_view
from worldsim.model.rollout import Rollout

H = W = 16
VIEWS = 6  # a toy panorama: six views, 60 degrees apart
TURN = {0: 0.0, 1: 60.0, 2: -60.0}  # noop, turn left, turn right
SPEC = {"pose": {"fields": ["x", "y", "z", "yaw", "pitch"], "units": "toy"}}


def make_store(path: Path, episodes: int = 8, T: int = 24, labels: bool = True) -> EpisodeStore:
    """Turning on the spot in a world of six views; poses as Minetest labels them."""
    rng = np.random.default_rng(0)
    panorama = rng.integers(0, 256, (VIEWS, H // 4, W // 4, 3), dtype=np.uint8)
    panorama = panorama.repeat(4, axis=1).repeat(4, axis=2)  # blocks of 4x4 px
    store = EpisodeStore.create(str(path), game="panorama", action_space=gym.spaces.Discrete(3),
                                observation_space=gym.spaces.Box(0, 255, (H, W, 3), np.uint8),
                                fps=10, label_spec=SPEC if labels else None)  # fmt: skip
    for _ in range(episodes):
        actions = rng.integers(0, 3, T)
        yaw = np.concatenate([[0.0], np.cumsum([TURN[int(a)] for a in actions])]) % 360
        poses = np.zeros((T + 1, 5), np.float32)
        poses[:, 3] = yaw
        frames = panorama[np.round(yaw / 60).astype(int) % VIEWS]
        store.append(frames, actions, np.zeros(T, np.float32), np.zeros(T, bool),
                     np.arange(T) == T - 1, labels={"pose": poses} if labels else None)  # fmt: skip
    return store


def test_local_delta_and_odometry_are_inverse() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.rand(64, 5, generator=g) * torch.tensor([20, 5, 20, 360, 60]) - torch.tensor(
        [10, 0, 10, 0, 30]
    )
    b = a + torch.randn(64, 5, generator=g) * torch.tensor([2, 0.5, 2, 40, 10])
    b[:, 3] = b[:, 3] % 360
    d = local_delta(a, b)
    back = odometry_step(a, d)
    assert torch.allclose(back[:, :3], b[:, :3], atol=1e-4)
    assert torch.allclose(local_delta(back, b), torch.zeros(64, 5), atol=1e-3)
    # forward is where the yaw faces: yaw 0 faces +z, yaw 90 (a left turn) faces -x
    start = torch.tensor([[0.0, 0, 0, 90, 0]])
    assert torch.allclose(odometry_step(start, torch.tensor([[1.0, 0, 0, 0, 0]]))[0, :3],
                          torch.tensor([-1.0, 0, 0]), atol=1e-6)  # fmt: skip


def test_nearest_skips_empty_slots_and_prefers_the_earliest_tie() -> None:
    memory = torch.tensor([[[0.0, 0, 0, 15, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [5, 0, 0, 0, 0]]])
    valid = torch.tensor([[True, True, True, False]])
    index, dist = nearest(memory, valid, torch.tensor([[0.0, 0, 0, 350, 0]]), 15.0)
    assert int(index) == 1 and math.isclose(float(dist), 10 / 15, rel_tol=1e-5)  # wraps 350 -> -10
    index, _ = nearest(memory, valid, torch.tensor([[4.9, 0, 0, 0, 0]]), 15.0)
    assert int(index) == 1  # slot 3 is nearer but empty


def test_turn_view_is_the_pinhole_rotation() -> None:
    x = -torch.ones(2, 3, 32, 32)
    x[..., 15:17] = 1.0  # a vertical white line at the centre
    turn = torch.tensor([[0.0, 0.0], [10.0, 0.0]])  # none; 10 degrees to the left
    out = turn_view(x, turn, fov=90.0)
    assert torch.equal(out[0], x[0])  # no turn: untouched, bit for bit
    # turning left moves what is ahead to the right, by f tan(10 deg) with f = 16 px at 90 deg
    column = float((out[1, 0, 16] > 0).float().nonzero().float().mean())
    assert abs(column - (15.5 + 16 * math.tan(math.radians(10)))) < 0.6, column
    assert float(out[1, :, :, -2:].abs().max()) > 0  # what comes in from the left edge is new: 0


def test_references_find_the_start_after_a_full_turn() -> None:
    poses = np.zeros((8, 5), np.float32)
    poses[:, 3] = (np.arange(8) * 60) % 360  # a full turn in six steps, then one more
    refs, delta = pose_references(poses, 0, 8, memory=16, degrees_per_unit=15.0)
    assert refs[0] == -1 and refs[1] == 0 and refs[6] == 0 and refs[7] == 1
    assert np.allclose(delta[6], 0) and np.allclose(delta[1], [0, 0, 0, 60, 0])
    refs, *_ = pose_references(poses, 0, 8, memory=2, degrees_per_unit=15.0)
    assert refs[6] == 5  # the start is out of a memory of two: the nearest of frames 4 and 5


def pose_net(memory: int = 16, context: int = 4) -> WorldModelNet:
    torch.manual_seed(0)
    cfg = preset("tiny", height=H, width=W, context=context, pose_memory=memory)
    return WorldModelNet(cfg, gym.spaces.Discrete(3)).eval()


def exact_odometry(net: WorldModelNet) -> None:
    """The odometry fit to the toy's turns."""
    actions = torch.tensor([0, 1, 2] * 4)
    steps = torch.zeros(12, 5)
    steps[:, 3] = torch.tensor([TURN[int(a)] for a in actions])
    net.fit_odometry(net.encode_actions(actions), steps)


def test_a_rollout_remembers_the_frame_it_returns_to() -> None:
    """After a full turn the next frame's reference is the first frame, as it was."""
    net = pose_net()
    exact_odometry(net)
    step = net.pose_step(net.encode_actions(torch.tensor([1])))
    assert torch.allclose(step, torch.tensor([[0.0, 0, 0, 60, 0]]), atol=1e-5)
    rollout = Rollout(net)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, 3, H, W, generator=g) * 2 - 1
    with torch.no_grad():
        state = rollout.start(x, net.encode_actions(torch.zeros(1, 0, dtype=torch.long)))
        turn = net.encode_actions(torch.tensor([[1]]))
        for _ in range(5):
            rollout.next(state, turn, generator=g)
        (planes, _, delta), pose, _ = rollout._reference(state, turn[:, 0], 1)
    assert torch.allclose(pose, torch.zeros(1, 5), atol=1e-3)  # 360 degrees: back at the start
    assert torch.allclose(delta, torch.zeros(1, 5), atol=1e-3)
    assert torch.equal(planes, x[:, 0])  # the start frame, untouched


def test_a_step_back_to_a_remembered_pose_shows_that_frame_as_it_was() -> None:
    """With `recall_distance`, the sixth turn of 60 degrees (back at the start) is the start
    frame bit for bit; without it, the network's redraw. A step that does not move the pose
    (a dig, standing still) is always the network's: the world may have changed."""
    from worldsim.model.config import DiffusionSampler

    net = pose_net()
    exact_odometry(net)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, 3, H, W, generator=g) * 2 - 1
    turn, still = (net.encode_actions(torch.tensor([[a]])) for a in (1, 0))
    frames = {}
    for near in (0.0, 0.1):
        rollout = Rollout(net, sampler=DiffusionSampler(recall_distance=near))
        with torch.no_grad():
            state = rollout.start(x, net.encode_actions(torch.zeros(1, 0, dtype=torch.long)))
            out = [rollout.next(state, turn, generator=g)[0][:, 0] for _ in range(6)]
            out.append(rollout.next(state, still, generator=g)[0][:, 0])
        frames[near] = out
    assert torch.equal(frames[0.1][5], x[:, 0])  # back at the start: the start frame
    assert not torch.allclose(frames[0.0][5], x[:, 0], atol=1e-3)  # off: the network redraws
    assert not torch.equal(frames[0.1][4], x[:, 0])  # 60 degrees short of it: drawn anew
    assert not torch.equal(frames[0.1][6], frames[0.1][5])  # standing still: the network's
    with pytest.raises(ValueError, match="recall_distance"):
        DiffusionSampler(recall_distance=-1.0)


def test_a_step_in_place_keeps_older_frames_from_being_recalled() -> None:
    """Action 2 here takes no pose step (a dig): frames made before it may show a world since
    changed, so coming back to the start pose after it draws anew; the frames made after it
    are recalled."""
    from worldsim.model.config import DiffusionSampler

    net = pose_net()
    actions = torch.tensor([0, 1, 2] * 4)
    steps = torch.zeros(12, 5)
    steps[:, 3] = torch.where(actions == 1, 60.0, 0.0)
    net.fit_odometry(net.encode_actions(actions), steps)
    turn, dig = (net.encode_actions(torch.tensor([[a]])) for a in (1, 2))
    rollout = Rollout(net, sampler=DiffusionSampler(recall_distance=0.1))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, 3, H, W, generator=g) * 2 - 1
    with torch.no_grad():
        state = rollout.start(x, net.encode_actions(torch.zeros(1, 0, dtype=torch.long)))
        for a in [turn] * 5 + [dig]:
            rollout.next(state, a, generator=g)
        back = rollout.next(state, turn, generator=g)[0][:, 0]  # the start pose, after the dig
        again = [rollout.next(state, turn, generator=g)[0][:, 0] for _ in range(6)][-1]
    assert not torch.allclose(back, x[:, 0], atol=1e-3)  # the start frame may be stale
    assert torch.equal(again, back)  # the frame made there after the dig


def test_standing_still_keeps_the_first_frame_made_at_the_pose() -> None:
    """The odometry's fit gives the still action the data's average drift; the rollout holds
    the pose instead, so every still step starts from the first frame, not its last redraw."""
    net = pose_net()
    actions = torch.tensor([0, 1, 2] * 4)
    steps = torch.zeros(12, 5)
    steps[:, 0] = torch.where(actions == 0, 0.01, 0.0)  # sliding on after a walk
    steps[:, 3] = torch.tensor([TURN[int(a)] for a in actions])
    net.fit_odometry(net.encode_actions(actions), steps)
    noop = net.encode_actions(torch.tensor([[0]]))
    assert net.odometry[:, 0].abs().sum() > 1e-3  # the fit says still steps slide
    assert torch.equal(net.pose_step(noop), torch.zeros(1, 1, 5))  # the rollout stays
    rollout = Rollout(net)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 2, 3, H, W, generator=g) * 2 - 1
    with torch.no_grad():
        state = rollout.start(x, net.encode_actions(torch.zeros(1, 1, dtype=torch.long)))
        for _ in range(4):
            rollout.next(state, noop, generator=g)
        (planes, _, delta), pose, _ = rollout._reference(state, noop[:, 0], 1)
    assert torch.equal(pose, torch.zeros(1, 5)) and torch.equal(delta, torch.zeros(1, 5))
    assert torch.equal(planes, x[:, 0])  # the first context frame, not the dream's last frame


def test_cached_rollout_equals_the_recomputed_one() -> None:
    net = pose_net(memory=6, context=3)
    exact_odometry(net)
    actions = net.encode_actions(torch.tensor([[1, 0, 2, 1, 1, 0, 2, 2, 1, 1, 1, 1]]))
    outs = []
    for cache in (True, False):
        rollout, g = Rollout(net, use_cache=cache), torch.Generator().manual_seed(1)
        x = torch.linspace(-1, 1, 2 * 3 * H * W).view(1, 2, 3, H, W)
        with torch.no_grad():
            state = rollout.start(x, actions[:, :1])
            frames = [
                rollout.next(state, actions[:, i : i + 1], generator=g)[0] for i in range(1, 12)
            ]
        outs.append(torch.cat(frames, 1))
    assert torch.allclose(outs[0], outs[1], atol=1e-4)
    with pytest.raises(ValueError, match="one frame at a time"):
        Rollout(net).next(Rollout(net).start(x, actions[:, :1]), actions[:, 1:3])


def test_a_tiny_pose_memory_run_learns(tmp_path: Path) -> None:
    import lightning as L

    store = make_store(tmp_path / "store")
    overrides = {"height": H, "width": W, "pose_memory": 16}
    torch.manual_seed(0)
    system = WorldModelSystem(preset="tiny", overrides=overrides, lr=3e-3, warmup_steps=5,
                              validate_ema=False)  # fmt: skip
    dm = EpisodeDataModule(store=str(store.path), clip_length=4, batch_size=8, samples_per_epoch=800,
                           val_samples=16, val_fraction=0.25, num_workers=0, pose_memory=16)  # fmt: skip
    args = dict(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                enable_checkpointing=False, default_root_dir=tmp_path)  # fmt: skip
    before = L.Trainer(**args).validate(system, datamodule=dm, verbose=False)[0]["val/loss"]
    L.Trainer(max_steps=80, limit_val_batches=0, **args).fit(system, datamodule=dm)
    after = L.Trainer(**args).validate(system, datamodule=dm, verbose=False)[0]["val/loss"]
    assert after < 0.75 * before, (before, after)  # the same clips and noise before and after
    # the odometry was fit to the data: each action's turn, exactly, in both weight sets
    for net in (system.net, system.ema.module):
        steps = net.pose_step(net.encode_actions(torch.tensor([0, 1, 2])))
        assert torch.allclose(steps[:, 3], torch.tensor([0.0, 60, -60]), atol=1e-3), steps


def test_pose_settings_that_do_not_fit_are_named(tmp_path: Path) -> None:
    import lightning as L

    store = make_store(tmp_path / "store", episodes=2)
    args = dict(clip_length=4, batch_size=2, samples_per_epoch=4, val_samples=0, num_workers=0)
    system = WorldModelSystem(preset="tiny", overrides={"pose_memory": 8})
    trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False,
                        default_root_dir=tmp_path)  # fmt: skip
    with pytest.raises(ConfigError, match=r"data\.pose_memory"):
        trainer.fit(system, datamodule=EpisodeDataModule(store=str(store.path), **args))
    bare = make_store(tmp_path / "bare", episodes=2, labels=False)
    dm = EpisodeDataModule(store=str(bare.path), pose_memory=8, **args)
    dm.setup()
    with pytest.raises(StoreError, match="no `pose` label"):
        dm.train_set[0]
    with pytest.raises(StoreError, match="no `pose` label"):
        dm.odometry_pairs()
