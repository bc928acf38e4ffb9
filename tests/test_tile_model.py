"""The tile world model: patches, codebook, exact shifts, world memory, training and rollouts.

The toy tile game of test_semantic (a 3x5-tile view of 4x4 px over a world map, one inventory
row below, moves blocked by trees and water) gives exact answers.
"""

from __future__ import annotations

import copy
import math
from dataclasses import replace

import gymnasium as gym
import lightning as L
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from test_semantic import SPACE, SPEC, TILE, ToyWorld, toy_store

import envs.world_model_registry  # noqa: F401  (registers worldsim/WorldModel-v0)
from envs.world_model_env import WorldModelEnv
from envs.world_model_vector_env import WorldModelVectorEnv
from training.module import ConfigError
from training.tile_data import TileDataModule
from training.tile_module import TileWorldSystem
from worldsim.checkpoint import load_release, save_release
from worldsim.data import EpisodeStore
from worldsim.errors import WorldsimError
from worldsim.model.tile_config import TileConfig, TileLoss, TileSampler
from worldsim.model.tile_net import TileWorldNet, pay_events
from worldsim.model.tiles import (
    NO_CODE,
    Canvas,
    build_codebook,
    displacements,
    event_clocks,
    frames_to_patches,
    hud_clocks,
    move_table,
    nearest_codes,
    novelty,
    patches_to_frames,
    renew_codebook,
    shift_from_offsets,
    shift_from_pixels,
    shift_table,
    tick_clock,
)
from worldsim.world_model import WorldModel

SMALL = {"dim": 32, "depth": 2, "heads": 2, "shift_dim": 32, "shift_depth": 1,
         "reward_dim": 32, "reward_depth": 1}  # fmt: skip


def test_patches_round_trip_and_pixels_off_the_grid_are_kept() -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 3, 60, 80, 3), dtype=np.uint8)  # Doom-like: 7 divides neither
    p = frames_to_patches(frames, 7)
    assert p.shape == (2, 3, 8 * 11, 7 * 7 * 3)
    base = torch.zeros(2, 3, 60, 80, 3, dtype=torch.uint8)
    back = patches_to_frames(p, base, 7).numpy()
    assert (back[..., :56, :77, :] == frames[..., :56, :77, :]).all()
    assert (back[..., 56:, :, :] == 0).all()  # off the grid: the base frame's pixels


def test_codebook_holds_frequent_patches_exactly_and_codes_find_them() -> None:
    rng = np.random.default_rng(0)
    sprites = rng.integers(0, 256, (5, 12), dtype=np.uint8)
    noisy = np.clip(sprites[rng.integers(0, 5, 300)] + rng.normal(0, 20, (300, 12)), 0, 255)
    data = np.concatenate([sprites[rng.integers(0, 5, 2000)], noisy.astype(np.uint8)])
    book = build_codebook(data, size=20, frequent=5)
    assert len(book) == 20 and {b.tobytes() for b in book[:5]} == {s.tobytes() for s in sprites}
    assert (build_codebook(data, 20, 5) == book).all()  # deterministic: resumes rebuild it
    codes, err = nearest_codes(torch.from_numpy(data), torch.from_numpy(book))
    assert (err[:2000] == 0).all() and (book[codes[:2000]] == data[:2000]).all()
    direct = ((data[2000:, None].astype(float) - book[None].astype(float)) ** 2).mean(-1)
    assert (codes[2000:].numpy() == direct.argmin(1)).all()


def test_a_renewed_codebook_takes_the_new_tiles_play_shows_in_its_least_used_codes() -> None:
    rng = np.random.default_rng(1)
    book = rng.integers(0, 128, (10, 12), dtype=np.uint8)
    new = rng.integers(128, 256, (2, 12), dtype=np.uint8)  # far from every code
    use = np.repeat(np.arange(10), [50, 40, 30, 30, 30, 30, 30, 30, 3, 1])
    data = np.concatenate([book[use], new[[0] * 40 + [1] * 5]])  # the second new tile: rare
    renewed, swapped = renew_codebook(book, data, count=3)
    assert swapped.tolist() == [9]  # the least used code, for the one tile seen 20+ times
    assert (renewed[9] == new[0]).all() and (renewed[:9] == book[:9]).all()
    _, err = nearest_codes(torch.from_numpy(new[:1]), torch.from_numpy(renewed))
    assert err.item() == 0
    again, both = renew_codebook(book, data, count=3, least=5)
    assert both.tolist() == [8, 9] and {again[8].tobytes(), again[9].tobytes()} == {
        n.tobytes() for n in new
    }
    assert len(renew_codebook(book, data, count=0)[1]) == 0
    assert len(renew_codebook(book, book[use], count=3)[1]) == 0  # nothing new: as it was


def test_shifts_are_exact_copies_and_are_read_off_pixels_or_offsets() -> None:
    world = ToyWorld()
    source, valid = shift_table(4, 5, fixed_rows=1, radius=1)
    rng = np.random.default_rng(1)
    frames, _actions, _, views = world.episode(rng, 30)
    patches = frames_to_patches(frames, TILE)
    from_pixels = shift_from_pixels(patches, source, valid)
    from_offsets = shift_from_offsets(views, 1)
    assert (from_offsets > 0).sum() > 5
    assert (from_pixels == from_offsets).mean() > 0.9  # a uniform view may read as "none"
    for t in np.flatnonzero(from_offsets):
        k = from_offsets[t]
        moved = patches[t][source[k]]
        ok = valid[k].clone()
        anchor = 1 * 5 + 2  # the player's tile stays put while the world scrolls under it
        ok[anchor] = False
        ok[source[k] == anchor] = False
        assert (moved[ok] == patches[t + 1][ok]).all()  # the shifted frame is exact
        assert (~ok[15:]).sum() == 0  # the inventory row never moves
    assert displacements(1) == [(0, 0), (-1, 0), (0, -1), (0, 1), (1, 0)]


def test_the_tiles_beside_the_avatar_are_told_its_events_and_look_and_draw_as_before() -> None:
    from worldsim.model.tiles import near_tokens

    # Crafter: 9 x 9 tokens, 2 HUD rows, the player at (3, 4): up, down, left, right of it.
    assert near_tokens([[3, 4]], 9, 9, 2) == [22, 40, 30, 32]
    assert near_tokens([[0, 0]], 4, 5, 1) == [5, 1]  # none outside the view
    assert near_tokens([[2, 1]], 4, 5, 1) == [6, 10, 12]  # nor in the HUD's rows
    with pytest.raises(ValueError, match="near_anchor"):
        TileConfig(height=16, width=20, patch=TILE, fixed_rows=1, near_anchor=True, **SMALL)
    kw = dict(height=16, width=20, patch=TILE, fixed_rows=1, codebook_size=8, events=["a", "b"],
              event_reward=1.0, anchored=[[1, 2]], **SMALL)  # fmt: skip
    torch.manual_seed(0)
    plain = TileWorldNet(TileConfig(**kw), SPACE)
    near = TileWorldNet(TileConfig(**kw, near_anchor=True), SPACE)
    assert near.near.tolist() == [2, 12, 6, 8] and near.anchors.tolist() == [7]
    missing = near.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing == ["t_near.weight"]  # an older release's weights fit, and...
    B, N, K = 3, 20, 8
    g = torch.Generator().manual_seed(1)
    code = torch.randint(0, K, (B, N), generator=g)
    pix = torch.randint(0, 255, (B, N, TILE * TILE * 3), generator=g)
    args = (code, pix, code, torch.randint(0, K, (B, near.moving), generator=g),
            torch.ones(B, near.moving).long(), torch.zeros(B, N).long(),
            plain.encode_actions(np.zeros(B, np.int64)), torch.zeros(B).long(),
            torch.tensor([[True, False], [False, True], [True, True]]))  # fmt: skip
    with torch.no_grad():
        for a, b in zip(plain.tile_logits(*args), near.tile_logits(*args)):
            if a is not None:
                assert torch.allclose(a, b)  # ...it draws as before until it learns
        near.t_near.weight.normal_()
        codes = near.tile_logits(*args)[1]
        assert not torch.allclose(plain.tile_logits(*args)[1], codes)
        other = pix.clone()
        other[:, 7] = 255 - other[:, 7]  # the avatar looks another way: the tiles beside hear it
        assert not torch.allclose(near.tile_logits(code, other, *args[2:])[1], codes)


def test_an_anchored_avatar_holds_still_while_the_world_scrolls_under_it() -> None:
    world, avatar = ToyWorld(), 1 * 5 + 2  # the toy's player sits at the view's centre
    source, valid = shift_table(4, 5, fixed_rows=1, radius=1, anchored=[avatar])
    frames, _actions, _, views = world.episode(np.random.default_rng(1), 30)
    patches = frames_to_patches(frames, TILE)
    scrolls = shift_from_offsets(views, 1)
    assert (shift_from_pixels(patches, source, valid) == scrolls).mean() > 0.9
    for t in np.flatnonzero(scrolls):
        k = scrolls[t]
        assert source[k, avatar] == avatar and valid[k, avatar]  # the avatar stays put...
        behind = avatar + 5 * displacements(1)[k][0] + displacements(1)[k][1]
        assert not valid[k, avatar - (behind - avatar)]  # ...and uncovers the ground it stood on
        moved = patches[t][source[k]]
        assert (moved[valid[k]] == patches[t + 1][valid[k]]).all()  # exact, avatar and all
    # The world memory never holds the avatar: its cell keeps the ground seen there before.
    canvas = Canvas(1, rows=3, cols=5, size=16, anchored=[avatar])
    view = torch.arange(15)[None].clone()
    view[0, avatar] = 99
    canvas.write(view)  # world (1, 3) is token 8 here
    canvas.move(torch.tensor([[0, 1]]))
    code, _ = canvas.read()
    assert code[0, avatar - 1] == NO_CODE  # the cell the avatar covered was never seen
    canvas.write(view)  # the avatar now covers world (1, 3)
    canvas.move(torch.tensor([[0, -1]]))
    code, _ = canvas.read()
    assert code[0, avatar + 1] == 8 and code[0, avatar] == NO_CODE and (code != 99).all()
    # The move head can neither step the avatar nor step onto it.
    m_source, m_valid = move_table(4, 5, fixed_rows=1, anchored=[avatar])
    assert m_valid[0, avatar] and not m_valid[1:, avatar].any()
    assert not (m_valid & (m_source == avatar))[1:].any()


def test_an_anchored_store_trains_a_model_that_keeps_its_anchor(trained, tmp_path) -> None:
    _world, _dm, _, _, _, path = trained
    kw = {"patch": TILE, "fixed_rows": 1, "codebook_size": 64, "frequent_codes": 32}
    _trainer, system, dm = _fit(str(path / "store"), tmp_path, 2, anchored=[[1, 2]], **kw)
    assert system.net.config.anchored == [[1, 2]]
    assert system.net.config.anchored_tokens == [7]
    assert (dm.train["mem_code"][:, 7] == NO_CODE).all()  # the avatar is never remembered
    assert (dm.train["mem_code"][:, 6] != NO_CODE).any()
    with pytest.raises(ConfigError, match="anchored"):
        _fit(str(path / "store"), tmp_path / "bad", 2, anchored=[[3, 0]], **kw)
    with pytest.raises(ValueError, match="anchored"):
        TileConfig(height=16, width=20, patch=4, fixed_rows=1, anchored=[[3, 0]])


def test_canvas_remembers_tiles_walked_away_from_and_back() -> None:
    canvas = Canvas(1, rows=2, cols=3, size=8)
    first = torch.tensor([[1, 2, 3, 4, 5, 6]])
    canvas.write(first)
    for _ in range(5):  # walk right 5 tiles: nothing of the first view stays in sight
        canvas.move(torch.tensor([[0, 1]]))
        canvas.write(torch.full((1, 6), 9))
    for _ in range(5):
        canvas.move(torch.tensor([[0, -1]]))
    code, age = canvas.read()
    assert code[0, 0] == 1 and code[0, 3] == 4 and age[0, 0] == 6
    for _ in range(8):  # walk 8 right: the toroidal cells are reused by other world positions
        canvas.move(torch.tensor([[0, 1]]))
        canvas.write(torch.full((1, 6), 7))
    canvas.move(torch.tensor([[0, 3]]))
    code, _ = canvas.read()
    assert (code == NO_CODE).all()  # never seen there: reused cells are not mistaken for memory


def test_novelty_flags_codes_new_to_their_position() -> None:
    seen = torch.zeros(1, 3, 4, dtype=torch.bool)
    assert novelty(torch.tensor([[0, 1, 2]]), seen).all()
    assert novelty(torch.tensor([[0, 2, 2]]), seen).tolist() == [[False, True, False]]


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="fixed_rows"):
        TileConfig(fixed_rows=9)
    with pytest.raises(ValueError, match="guidance"):
        TileSampler(guidance=2.0)
    with pytest.raises(ValueError, match="patch"):
        TileConfig(height=5, width=5, patch=7)


# ------------------------------------------------------------------ training on the toy game
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    world = ToyWorld()
    path = tmp_path_factory.mktemp("tiles")
    toy_store(path / "store", world, episodes=24, T=60)
    dm = TileDataModule(str(path / "store"), patch=TILE, fixed_rows=1, codebook_size=64,
                        frequent_codes=32, batch_size=32, samples_per_epoch=32 * 400,
                        val_samples=64, val_fraction=0.2, test_fraction=0.0)  # fmt: skip
    system = TileWorldSystem(overrides=SMALL, lr=3e-3, warmup_steps=20, ema_decay=0.9)
    trainer = L.Trainer(max_steps=400, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, num_sanity_val_steps=0,
                        limit_val_batches=2, val_check_interval=200)  # fmt: skip
    torch.manual_seed(0)
    trainer.fit(system, dm)
    net = system.ema.module.eval()
    obs = gym.spaces.Box(0, 255, (16, 20, 3), np.uint8)
    return world, dm, system, net, obs, path


def test_training_lowers_the_loss_and_learns_the_shift(trained) -> None:
    _world, dm, _system, net, _obs, _path = trained
    batch = dm.batch(dm.val, dm.val_index)
    untrained = TileWorldNet(net.config, SPACE, net.codebook, net.reward_values)
    with torch.no_grad():
        before = untrained.training_loss(batch)
        after = net.training_loss(batch)
    assert after["loss"] < 0.5 * before["loss"]
    print({k: float(v) for k, v in after.items()})
    # Moves blocked by the map edge look like any other move: the pixels cannot tell.
    assert after["shift_acc"] > 0.85 and after["tile_acc"] > 0.95


def test_training_with_nothing_given_learns_the_one_round_step(trained) -> None:
    _world, dm, _system, net, _obs, _path = trained
    batch = dm.batch(dm.val, dm.val_index)

    def loss(given: float, seed: int) -> float:
        lc = TileLoss(parts=("tile",), given=given)
        with torch.no_grad():
            return float(
                net.training_loss(batch, torch.Generator().manual_seed(seed), loss=lc)["tile"]
            )

    # MaskGIT gives a random share of the tiles; at given 0 none, whatever the draw.
    assert loss(1.0, 0) != loss(1.0, 1)
    assert loss(0.0, 0) == loss(0.0, 1) > loss(1.0, 0)
    with pytest.raises(ValueError, match="given"):
        TileLoss(given=1.5)


def test_rollouts_scroll_with_the_keys_and_a_release_round_trips(trained) -> None:
    world, _dm, _system, net, obs, path = trained
    save_release(path / "release", net, observation_space=obs, action_space=SPACE,
                 metadata={"game": "toy"})  # fmt: skip
    loaded = load_release(path / "release")[0]
    assert torch.equal(loaded.codebook, net.codebook)
    wm = WorldModel.from_checkpoint(path / "release")
    # Open ground to the right: noop, noop, right, noop, left (back), noop.
    pos = next(p for p in sorted(world.pos_of.values())
               if world.step(p, 2) != p and world.step(world.step(p, 2), 1) == p)  # fmt: skip
    acts = np.array([0, 0, 2, 0, 1, 0])
    views = [pos]
    for a in acts:
        views.append(world.step(views[-1], a))
    real = np.stack([world.render(v)[0] for v in views[1:]])
    start = world.render(pos)[0][None, None]
    gen = torch.Generator().manual_seed(0)
    out = wm.generate(start, np.zeros((1, 0), np.int64), acts[None], generator=gen)["frames"][0]
    assert (out[0] == real[0]).all() and (out[1] == real[1]).all()  # noop: the frame stays
    # The move scrolls: every tile that stayed in view is exactly where it should be.
    src, ok = shift_table(4, 5, 1, 1)
    k = displacements(1).index((0, 1))
    gen_p, real_p = frames_to_patches(out[2], TILE), frames_to_patches(real[2], TILE)
    known = ok[k].clone()
    known[7] = False  # the player's tile
    known[src[k] == 7] = False
    assert (gen_p[known] == real_p[known]).all()
    assert not (gen_p[:15] == frames_to_patches(real[1], TILE)[:15]).all()  # it did move
    # Back where it started: the world memory brings the left column back.
    assert (out[4] == real[4]).mean() > 0.9
    with pytest.raises(WorldsimError, match="real starting frame"):
        wm.sample_clip(acts[None, :3])


def test_a_rollout_told_the_view_motion_scrolls_so(trained) -> None:
    world, _dm, _system, net, obs, path = trained
    save_release(path / "motion-release", net, observation_space=obs, action_space=SPACE,
                 metadata={"game": "toy"})  # fmt: skip
    wm = WorldModel.from_checkpoint(path / "motion-release")
    assert wm.takes_view_motion
    # A tree to the right: the key is blocked and the dream stays, unless told the view moved.
    C = world.map.shape[1]
    pos = next(p for p in sorted(world.pos_of.values())
               if world.step(p, 2) == p and p[1] + 5 < C)  # fmt: skip
    start = world.render(pos)[0][None, None]
    gen = torch.Generator().manual_seed(0)
    none = np.zeros((1, 0), np.int64)
    stays = wm.generate(start, none, np.array([[2]]), generator=gen)["frames"][0, 0]
    assert (stays == start[0, 0]).mean() > 0.9
    told = wm.generate(start, none, np.array([[2]]), generator=gen,
                       view_motion=np.array([[[0, 1]]]))["frames"][0, 0]  # fmt: skip
    src, ok = shift_table(4, 5, 1, 1)
    k = displacements(1).index((0, 1))
    known = ok[k].clone()
    known[7] = False  # the player's tile
    known[src[k] == 7] = False
    moved = frames_to_patches(world.render((pos[0], pos[1] + 1))[0], TILE)
    assert (frames_to_patches(told, TILE)[known] == moved[known]).all()
    with pytest.raises(WorldsimError, match="at most 1 tile"):
        wm.generate(start, none, np.array([[2]]), view_motion=np.array([[[0, 2]]]))
    with pytest.raises(ValueError, match="view_motion has shape"):
        wm.generate(start, none, np.array([[2, 2]]), view_motion=np.array([[[0, 1]]]))


def test_remembered_tiles_come_back_as_drawn_in_view_and_only_new_ground_is_sampled(
    trained,
) -> None:
    world, _dm, _system, net, obs, _path = trained
    sampler = TileSampler(sampler_steps=1, reveal="net", reveal_temperature=3.0, temperature=0.0)
    wm = WorldModel.from_net(net, obs, SPACE, sampler=sampler)
    C = world.map.shape[1]
    pos = next(p for p in sorted(world.pos_of.values()) if p[1] + 3 < C)
    start = np.repeat(world.render(pos)[0][None, None], 16, 0)
    none = np.zeros((16, 0), np.int64)
    walk = np.array([[0, 1], [0, 1], [0, -1], [0, -1]])  # right twice, back left twice
    out = wm.generate(start, none, np.full((16, 4), 2), generator=torch.Generator().manual_seed(0),
                      view_motion=np.repeat(walk[None], 16, 0))["frames"]  # fmt: skip
    cols = frames_to_patches(out, TILE)[:, :, :15].reshape(16, 4, 3, 5, -1)
    new_ground = cols[:, 1, :, 4]  # the right column after two steps right: never seen
    back = cols[:, 3, :, 0]  # the left column back at the start: seen in the start frame
    assert len({bytes(x.numpy()) for x in new_ground}) > 1  # drawn at the reveal temperature
    assert len({bytes(x.numpy()) for x in back}) == 1  # remembered: as a tile in view, argmax


def test_the_dream_env_runs_a_tile_model(trained) -> None:
    world, _dm, _system, net, obs, path = trained
    rng = np.random.default_rng(3)
    frames, actions, _, _ = world.episode(rng, 3)
    save_release(path / "env-release", net, observation_space=obs, action_space=SPACE,
                 contexts={"frames": frames[None], "actions": actions[None]},
                 metadata={"game": "toy", "fps": 10})  # fmt: skip
    env = gym.make("worldsim/WorldModel-v0", checkpoint=str(path / "env-release"), device="cpu")
    check_env(env.unwrapped, skip_render_check=True)
    obs0, _ = env.reset(seed=0)
    for _ in range(5):
        obs0, _reward, _term, _trunc, _info = env.step(env.action_space.sample())
    assert obs0.shape == (16, 20, 3)
    vec = WorldModelVectorEnv(4, str(path / "env-release"), device="cpu")
    obs_v, _ = vec.reset(seed=0)
    obs_v, rewards, *_ = vec.step(np.array([2, 2, 0, 1]))
    assert obs_v.shape == (4, 16, 20, 3) and rewards.shape == (4,)
    state = vec.world_model._state
    kept = state.canvas.read()[0][1:].clone()
    obs_r, _ = vec.reset(options={"reset_mask": np.array([True, False, False, False])})
    assert vec.world_model._state is state  # env 0 restarted alone: the others keep memory
    assert torch.equal(state.canvas.read()[0][1:], kept) and (obs_r[1:] == obs_v[1:]).all()


def test_a_restarted_rollout_leaves_the_others_and_their_memory_alone(trained) -> None:
    world, _dm, _system, net, _obs, _path = trained
    wm = WorldModel.from_net(net, _obs, SPACE)
    rng = np.random.default_rng(5)
    eps = [world.episode(rng, 12) for _ in range(4)]
    ctx = np.stack([e[0][:4] for e in eps[:3]])
    acts = np.stack([e[1][:3] for e in eps[:3]])
    moves = np.array([[2, 1, 2], [3, 3, 4], [1, 2, 0], [4, 4, 3]])
    gen = torch.Generator().manual_seed(0)
    wm.reset(ctx, acts)
    for a in moves:
        wm.step(a[:3], generator=gen)
    before = wm._state.canvas.read(), wm._state.code.clone(), wm._state.frame.clone()
    wm.restart([1], eps[3][0][None, :4], eps[3][1][None, :3])
    after = wm._state.canvas.read(), wm._state.code, wm._state.frame
    keep = torch.tensor([0, 2])
    for b, a in zip((*before[0], *before[1:]), (*after[0], *after[1:]), strict=True):
        assert torch.equal(b[keep], a[keep])
    fresh = WorldModel.from_net(net, _obs, SPACE)
    fresh.reset(eps[3][0][None, :4], eps[3][1][None, :3])
    assert torch.equal(fresh._state.frame[0], after[2][1])
    assert torch.equal(fresh._state.canvas.read()[0][0], after[0][0][1])
    assert (fresh._state.canvas.read()[0][0] != before[0][0][1]).any()  # another place
    with pytest.raises(WorldsimError, match="3 rollouts"):
        wm.restart([3], eps[3][0][None, :4], eps[3][1][None, :3])


def test_fixed_temperature_samples_the_hud_and_leaves_the_map_alone(trained) -> None:
    world, _dm, _system, net, obs, _path = trained
    rng = np.random.default_rng(9)
    frames, actions, _, _ = world.episode(rng, 6)
    runs = {}
    for t in (0.0, 50.0):
        # One round: the map's choices cannot see the HUD's.
        sampler = TileSampler(sampler_steps=1, temperature=0.0, reveal_temperature=0.0,
                              shift_temperature=0.0, fixed_temperature=t)  # fmt: skip
        wm = WorldModel.from_net(net, obs, SPACE, sampler=sampler)
        outs = []
        for seed in range(4):
            gen = torch.Generator().manual_seed(seed)
            out = wm.generate(frames[None, :2], actions[None, :1], actions[None, 1:6],
                              generator=gen)["frames"][0]  # fmt: skip
            outs.append(out)
        runs[t] = np.stack(outs)
    hud = slice(16 - TILE, 16)  # the fixed bottom row of tokens
    assert (runs[0.0] == runs[0.0][:1]).all()  # the likeliest everywhere: no randomness
    hot = runs[50.0]
    assert (hot[:, 0, : 16 - TILE] == runs[0.0][:, 0, : 16 - TILE]).all()  # the map: untouched
    assert not (hot[:, :, hud] == hot[:1, :, hud]).all()  # the HUD: sampled
    with pytest.raises(ValueError, match="fixed_temperature"):
        TileSampler(fixed_temperature=-1.0)


def test_a_rollout_by_tile_draws_as_by_code_where_the_codebook_has_no_twins(trained) -> None:
    world, _dm, _system, net, obs, _path = trained
    frames, actions, _, _ = world.episode(np.random.default_rng(4), 9)
    outs = {}
    for rms in (0.0, 1e-3, 3.0):  # 1e-3: only identical rows, which never pool
        sampler = TileSampler(sampler_steps=2, shift_temperature=0.0, twin_rms=rms)
        wm = WorldModel.from_net(net, obs, SPACE, sampler=sampler)
        outs[rms] = wm.generate(frames[None, :2], actions[None, :1], actions[None, 1:9],
                                generator=torch.Generator().manual_seed(0))["frames"][0]  # fmt: skip
    assert np.array_equal(outs[0.0], outs[1e-3])
    assert outs[3.0].shape == outs[0.0].shape
    with pytest.raises(ValueError, match="twin_rms"):
        TileSampler(twin_rms=-1.0)


# ------------------------------------------------------------------ resume, other games
def _fit(store: str, ckpt_dir, steps: int, resume: bool = False, init_from=None, loss=None,
         **data):  # fmt: skip
    dm = TileDataModule(store, batch_size=8, samples_per_epoch=8 * steps, val_samples=8,
                        val_fraction=0.2, test_fraction=0.0, **data)  # fmt: skip
    system = TileWorldSystem(overrides=SMALL, warmup_steps=2, init_from=init_from, loss=loss)
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_progress_bar=False,
                        num_sanity_val_steps=0, limit_val_batches=1, val_check_interval=steps,
                        callbacks=[L.pytorch.callbacks.ModelCheckpoint(ckpt_dir, save_last=True)])  # fmt: skip
    trainer.fit(system, dm, ckpt_path=str(ckpt_dir / "last.ckpt") if resume else None)
    return trainer, system, dm


def test_a_run_resumes_from_its_last_checkpoint_and_refuses_other_data(trained, tmp_path) -> None:
    world, dm, _, _, _, path = trained
    store = str(path / "store")
    kw = {"patch": TILE, "fixed_rows": 1, "codebook_size": 64, "frequent_codes": 32}
    first, _, _ = _fit(store, tmp_path, 6, **kw)
    assert first.global_step == 6
    again, _system, _ = _fit(store, tmp_path, 10, resume=True, **kw)
    assert again.global_step == 10  # continued, not restarted
    other = EpisodeStore.create(path / "other", game="toy", action_space=SPACE,
                                observation_space=dm.observation_space, fps=10)  # fmt: skip
    rng = np.random.default_rng(3)
    for _ in range(6):  # another game's look: other tiles, another codebook
        frames, actions, _, _ = world.episode(rng, 30)
        other.append(255 - frames, actions, np.zeros(30), np.zeros(30, bool), np.zeros(30, bool))
    with pytest.raises(Exception, match="codebook differs"):
        _fit(str(path / "other"), tmp_path, 12, resume=True, **kw)


def test_a_release_fine_tunes_on_new_data_with_its_own_codebook(trained, tmp_path) -> None:
    world, dm, _, net, obs, _path = trained
    net = copy.deepcopy(net)
    net.reward_prior[0], net.end_prior[...] = 1.5, -2.0  # priors no data of the toy game gives
    release = tmp_path / "release"
    save_release(release, net, observation_space=obs, action_space=SPACE, metadata={"game": "toy"})
    store = EpisodeStore.create(tmp_path / "more", game="toy", action_space=SPACE,
                                observation_space=dm.observation_space, fps=10)  # fmt: skip
    rng = np.random.default_rng(7)
    for _ in range(6):  # play that looks different: its own codebook would differ
        frames, actions, _, _ = world.episode(rng, 30)
        store.append(
            np.where(frames > 0, frames - 1, 0).astype(np.uint8),
            actions,
            np.zeros(30),
            np.zeros(30, bool),
            np.zeros(30, bool),
        )
    kw = {"patch": TILE, "fixed_rows": 1, "codebook_size": 64, "frequent_codes": 32}
    with pytest.raises(ConfigError, match=f"data.codebook_from: {release}"):
        _fit(str(tmp_path / "more"), tmp_path / "a", 4, init_from=str(release), **kw)
    _, system, new_dm = _fit(str(tmp_path / "more"), tmp_path / "b", 4, init_from=str(release),
                             codebook_from=str(release), **kw)  # fmt: skip
    assert torch.equal(system.net.codebook, net.codebook)
    assert torch.equal(system.net.reward_values, net.reward_values)
    assert new_dm.train["code"].max() < 64
    # The priors follow the net that reads them: retrained, the data's; left alone, the release's.
    assert not torch.equal(system.net.reward_prior, net.reward_prior)
    _, tiles_only, _ = _fit(str(tmp_path / "more"), tmp_path / "d", 2, init_from=str(release),
                            codebook_from=str(release), loss={"parts": ["tile"]}, **kw)  # fmt: skip
    assert torch.equal(tiles_only.net.reward_prior, net.reward_prior)
    assert torch.equal(tiles_only.net.end_prior, net.end_prior)
    from training.export import export_checkpoint  # the fine-tuned run exports as any other

    out = export_checkpoint(str(tmp_path / "b" / "last.ckpt"), str(tmp_path / "b-release"))
    assert torch.equal(load_release(out)[0].codebook, net.codebook)
    with pytest.raises(ConfigError, match="codebook_size 64 \\(data: 128\\)"):
        _fit(str(tmp_path / "more"), tmp_path / "c", 4, codebook_from=str(release),
             **{**kw, "codebook_size": 128})  # fmt: skip
    # Play that shows new tiles: the release's least used codes take them (codebook_renew),
    # the rest of its vocabulary and its weights stay.
    inverted = EpisodeStore.create(tmp_path / "inverted", game="toy", action_space=SPACE,
                                   observation_space=dm.observation_space, fps=10)  # fmt: skip
    for _ in range(6):
        frames, actions, _, _ = world.episode(rng, 30)
        inverted.append(255 - frames, actions, np.zeros(30), np.zeros(30, bool), np.zeros(30, bool))
    with pytest.raises(ConfigError, match=r"data\.codebook_from"):
        _fit(str(tmp_path / "inverted"), tmp_path / "e", 2, init_from=str(release), **kw)
    _, renewed, inv_dm = _fit(str(tmp_path / "inverted"), tmp_path / "f", 2, init_from=str(release),
                              codebook_from=str(release), codebook_renew=8, **kw)  # fmt: skip
    swapped = torch.as_tensor(inv_dm.renewed)
    assert 0 < len(swapped) <= 8
    kept = torch.ones(64, dtype=torch.bool)
    kept[swapped] = False
    assert torch.equal(renewed.net.codebook[kept], net.codebook[kept])
    assert torch.equal(renewed.net.codebook, torch.from_numpy(inv_dm.codebook))
    frames = torch.from_numpy(255 - world.episode(rng, 5)[0])
    patches = frames_to_patches(frames, TILE)
    before = nearest_codes(patches, net.codebook)[1].mean()
    assert nearest_codes(patches, renewed.net.codebook)[1].mean() < before / 2


def test_a_model_trained_on_reversed_play_extends_clips_backward(trained, tmp_path) -> None:
    from training.export import export_checkpoint

    world, _dm, _, _, _, path = trained
    dm = TileDataModule(str(path / "store"), patch=TILE, fixed_rows=1, codebook_size=64,
                        frequent_codes=32, batch_size=32, samples_per_epoch=32 * 300,
                        val_samples=32, val_fraction=0.2, test_fraction=0.0, reverse=True)  # fmt: skip
    system = TileWorldSystem(overrides=SMALL, lr=3e-3, warmup_steps=20, ema_decay=0.9)
    trainer = L.Trainer(max_steps=300, accelerator="cpu", logger=False, enable_progress_bar=False,
                        num_sanity_val_steps=0, limit_val_batches=0,
                        callbacks=[L.pytorch.callbacks.ModelCheckpoint(tmp_path, save_last=True)])  # fmt: skip
    torch.manual_seed(0)
    trainer.fit(system, dm)
    release = export_checkpoint(str(tmp_path / "last.ckpt"), str(tmp_path / "rev"), contexts=2)
    wm = WorldModel.from_checkpoint(release)
    assert wm.metadata["reversed"] is True
    # Played back, "right" undoes a step right: from the view one tile right of pos, the
    # model goes back to pos (a forward model would go one further right).
    pos = next(p for p in sorted(world.pos_of.values())
               if world.step(p, 2) != p and world.step(world.step(p, 2), 2) != world.step(p, 2))  # fmt: skip
    after = world.step(pos, 2)
    start = frames_to_patches(world.render(after)[0], TILE)[None]
    right = torch.tensor([2])

    def shift_probs(net):
        code = nearest_codes(start, net.codebook)[0]
        with torch.no_grad():
            logits = net.shift_logits(code, start, net.encode_actions(right))
        return dict(zip(displacements(1), torch.softmax(logits, -1)[0].tolist(), strict=True))

    backward, forward = shift_probs(wm.net), shift_probs(trained[3])
    assert backward[(0, -1)] > 20 * backward[(0, 1)], backward  # it steps back
    assert forward[(0, 1)] > 20 * forward[(0, -1)], forward
    gen = torch.Generator().manual_seed(0)
    clip = np.stack([world.render(pos)[0], world.render(after)[0]])
    gen_clip = wm.extend(clip, np.array([2]), np.array([2, 2]), backward=True, generator=gen)
    assert gen_clip.frames.shape == (4, 16, 20, 3) and (gen_clip.frames[2:] == clip).all()


@pytest.mark.parametrize(
    ("game", "patch", "shape"), [("doom-health", 8, (120, 160, 3)), ("breakout", 8, (84, 72, 3))]
)
def test_the_tile_model_trains_and_plays_on_doom_and_atari_frames(
    game, patch, shape, tmp_path
) -> None:
    from worldsim.cli import main as cli

    args = ["collect", "--game", game, "--episodes", "3", "--max-steps", "40", "--out",
            str(tmp_path / "store"), "--policy", "random", "--quiet"]  # fmt: skip
    if game == "breakout":
        args += ["--game-arg", "size=[84, 72]"]
    assert cli(args) == 0
    _trainer, system, dm = _fit(str(tmp_path / "store"), tmp_path / "ckpt", 30, patch=patch,
                               codebook_size=128, frequent_codes=64, motion_radius=1)  # fmt: skip
    net = system.net.eval()
    batch = dm.batch(dm.train, np.arange(16))
    with torch.no_grad():
        trained_loss = net.training_loss(batch)["loss"]
        fresh = TileWorldNet(net.config, net.action_space, net.codebook, net.reward_values)
        assert trained_loss < fresh.training_loss(batch)["loss"]
    obs = gym.spaces.Box(0, 255, shape, np.uint8)
    wm = WorldModel.from_net(net, obs, net.action_space)
    frames = np.stack([dm.store.episode(0).frames[:2]])
    acts = np.asarray(dm.store.episode(0).actions)[None, :1]
    out = wm.generate(frames, acts, np.zeros((1, 5), np.int64))
    assert out["frames"].shape == (1, 5, *shape) and out["frames"].dtype == np.uint8


# ------------------------------------------------------------------ events that pay once
def _edited_store(path, world: ToyWorld, spec: dict, seed: int, episodes: int, T: int, edit):
    """A store of toy episodes that `edit(frames, actions, rng)` turns into (frames, rewards,
    extra labels)."""
    obs = gym.spaces.Box(0, 255, (16, 20, 3), np.uint8)
    store = EpisodeStore.create(path, game="toy", action_space=SPACE, observation_space=obs,
                                fps=10, label_spec=spec)  # fmt: skip
    rng = np.random.default_rng(seed)
    for _ in range(episodes):
        frames, actions, labels, views = world.episode(rng, T)
        frames, rewards, extra = edit(frames, actions, rng)
        store.append(frames, actions, rewards, np.zeros(T, bool), np.zeros(T, bool),
                     labels={"semantic": labels, "view_pos": views, **extra})  # fmt: skip
    return store


def _resting_store(path, world: ToyWorld, episodes: int = 16, T: int = 40):
    """The toy game where resting (noop) is a named event that pays +1 the first time in an
    episode, as Crafter's achievements do: a later rest looks the same and pays nothing."""
    spec = {**SPEC, "arrays": [*SPEC["arrays"], "events"],
            "events": {"names": ["rest"], "reward": 1.0, "pays": "first"}}  # fmt: skip

    def rest(frames, actions, _rng):
        counts = np.concatenate([[0], np.cumsum(actions == 0)])[:, None].astype(np.int32)
        rewards = ((counts[1:, 0] == 1) & (counts[:-1, 0] == 0)).astype(np.float32)
        return frames, rewards, {"events": counts}

    return _edited_store(path, world, spec, 11, episodes, T, rest)


def test_events_are_told_before_the_frame_and_pay_only_the_first_time(trained, tmp_path) -> None:
    world, _dm, _system, net, obs, _path = trained
    release = tmp_path / "release"
    save_release(release, net, observation_space=obs, action_space=SPACE, metadata={"game": "toy"})
    _resting_store(tmp_path / "store", world)
    dm = TileDataModule(str(tmp_path / "store"), patch=TILE, fixed_rows=1, codebook_size=64,
                        frequent_codes=32, batch_size=32, samples_per_epoch=32 * 150,
                        val_samples=32, val_fraction=0.2, test_fraction=0.0,
                        codebook_from=str(release))  # fmt: skip
    # The shift net learns the events and the reward net what they do not pay; the tile net
    # keeps the release's weights (loss.parts).
    system = TileWorldSystem(overrides=SMALL, lr=3e-3, warmup_steps=10, ema_decay=0.9,
                             init_from=str(release), loss={"parts": ["shift", "reward"]})  # fmt: skip
    trainer = L.Trainer(max_steps=150, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, num_sanity_val_steps=0,
                        limit_val_batches=0)  # fmt: skip
    torch.manual_seed(0)
    trainer.fit(system, dm)
    # The data: every rest is an event; the reward class keeps what the event does not pay.
    assert dm.event_names == ["rest"] and dm.event_reward == 1.0
    assert (dm.train["events"][:, 0] == (np.asarray(dm.train["action"]) == 0)).all()
    assert (dm.train["reward"] == 0).all()
    tuned = system.ema.module.eval()
    assert tuned.config.events == ["rest"] and tuned.config.event_reward == 1.0
    for name, p in tuned.named_parameters():  # the tile net did not move
        if name.startswith("t_") and name in net.state_dict():
            assert torch.equal(p, net.state_dict()[name]), name
    assert not tuned.t_events.weight.any()  # nor did its new event input: it draws as before
    save_release(tmp_path / "tuned", tuned, observation_space=obs, action_space=SPACE,
                 metadata={"game": "toy"})  # fmt: skip
    sure = TileSampler(sampler_steps=1, shift_temperature=0.0)
    wm = WorldModel.from_net(load_release(tmp_path / "tuned")[0], obs, SPACE, sampler=sure)
    old = WorldModel.from_net(net, obs, SPACE, sampler=sure)
    assert wm.paid is None  # no rollout yet
    frames, actions, _, _ = world.episode(np.random.default_rng(4), 4)
    moves = np.array([[2, 0, 3, 0, 0, 1, 0]])
    outs = [m.generate(frames[None, :2], actions[None, :1], moves,
                       generator=torch.Generator().manual_seed(0)) for m in (wm, old)]  # fmt: skip
    assert (outs[0]["frames"] == outs[1]["frames"]).all()  # the frames it draws: unchanged
    assert outs[0]["rewards"][0].tolist() == [0, 1, 0, 0, 0, 0, 0]  # the first rest pays
    # A rollout told that the episode had rested before its context pays none.
    x, enc = wm._context(frames[None, :2], actions[None, :1])
    state = wm.rollout.start(x, enc)
    state.paid[:] = True
    _, rewards, _ = wm.rollout.next(state, wm.net.encode_actions(moves))
    assert (rewards == 0).all()
    # A dream started in the middle of a stored episode is told, from the store's event
    # counters, what the player had done by its last context frame, and does not pay it again.
    vec = WorldModelVectorEnv(4, world_model=wm, autoreset_mode="SameStep")
    store, had_before = EpisodeStore.open(str(tmp_path / "store")), []
    for episode in range(4):
        starts = [0, 5, 12, 30]
        _, info = vec.reset(seed=0, options={"store": str(tmp_path / "store"),
                                             "episode": episode, "start": starts})  # fmt: skip
        _, reward, *_ = vec.step(np.zeros(4, np.int64))  # everyone rests
        counts = store.labels(episode)["events"][:, 0]
        for i, start in enumerate(starts):
            had = bool(counts[start + vec.starts.length - 1] > 0)
            assert info["paid"][i].tolist() == [had]
            assert reward[i] == (0.0 if had else 1.0)
            had_before.append(had)
        assert vec.world_model.paid.tolist() == [[True]] * 4  # each has rested now
    assert set(had_before) == {True, False}
    one = WorldModelEnv(world_model=wm)  # the single env is told the same
    for start in (0, 30):
        _, info = one.reset(seed=0, options={"store": str(tmp_path / "store"), "episode": 0,
                                             "start": start})  # fmt: skip
        counts = store.labels(0)["events"][:, 0]
        had = bool(counts[start + one.starts.length - 1] > 0)
        assert info["paid"].tolist() == [had] and one.step(0)[1] == (0.0 if had else 1.0)
    with pytest.raises(ValueError, match="parts"):
        TileWorldSystem(loss={"parts": ["decoder"]})


def test_an_unpaid_event_is_told_but_never_pays_and_a_release_keeps_the_events_it_knew(
    trained, tmp_path
) -> None:
    # As Crafter's falling asleep: "nap" (moving left) is counted and told, and pays nothing.
    world, _dm, _system, net, obs, _path = trained
    spec = {**SPEC, "arrays": [*SPEC["arrays"], "events"],
            "events": {"names": ["nap", "rest"], "reward": 1.0, "pays": "first",
                       "unpaid": ["nap"]}}  # fmt: skip

    def count(frames, actions, _rng):
        counts = np.stack([np.concatenate([[0], np.cumsum(actions == a)]) for a in (1, 0)], 1)
        rewards = ((counts[1:, 1] == 1) & (counts[:-1, 1] == 0)).astype(np.float32)
        return frames, rewards, {"events": counts.astype(np.int32)}

    _edited_store(tmp_path / "store", world, spec, 12, 8, 30, count)
    old = TileWorldNet(replace(net.config, events=["rest"], event_reward=1.0), SPACE,
                       net.codebook, net.reward_values)  # fmt: skip
    with torch.no_grad():
        old.t_events.weight.normal_()  # as a trained one's, not the fresh zeros
    save_release(tmp_path / "old", old, observation_space=obs, action_space=SPACE,
                 metadata={"game": "toy"})  # fmt: skip
    dm = TileDataModule(str(tmp_path / "store"), patch=TILE, fixed_rows=1, codebook_size=64,
                        frequent_codes=32, batch_size=8, samples_per_epoch=8, val_samples=8,
                        val_fraction=0.2, test_fraction=0.0, codebook_from=str(tmp_path / "old"))  # fmt: skip
    system = TileWorldSystem(overrides=SMALL, init_from=str(tmp_path / "old"),
                             loss={"parts": ["shift", "reward"]})  # fmt: skip
    trainer = L.Trainer(max_steps=0, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, limit_val_batches=0)  # fmt: skip
    trainer.fit(system, dm)
    # The data: a first nap is not what the store's rewards paid for; only the rest is.
    assert dm.unpaid_events == ["nap"] and (dm.train["reward"] == 0).all()
    assert dm.train["events"][:, 0].any()
    new = system.net
    assert new.config.events == ["nap", "rest"] and new.config.unpaid_events == ["nap"]
    # The release's "rest" keeps its logit and its say in the tile net; "nap" starts fresh.
    assert torch.equal(new.s_events.weight[1], old.s_events.weight[0])
    assert torch.equal(new.t_events.weight[:, 1], old.t_events.weight[:, 0])
    assert not new.t_events.weight[:, 0].any()
    B = 3
    code = torch.zeros(B, new.config.tokens_per_frame, dtype=torch.long)
    act = new.encode_actions(torch.zeros(B, dtype=torch.long))
    fired = torch.tensor([[True, False], [False, True], [True, True]])
    with torch.no_grad():
        reward = new.predict_reward(code, code, torch.zeros_like(code, dtype=torch.bool), act,
                                    fired)[0]  # fmt: skip
    base = new.predict_reward(code, code, torch.zeros_like(code, dtype=torch.bool), act)[0]
    assert (reward - base).tolist() == [0.0, 1.0, 1.0]  # a nap pays nothing, a rest +1
    with pytest.raises(ValueError, match="unpaid_events"):
        replace(new.config, unpaid_events=["sleep"])


def test_cuts_where_the_whole_view_changes_at_once_are_drawn_more_often(tmp_path) -> None:
    # As Crafter's player falls asleep (the map turns grey) and wakes: steps 10-15 of every
    # episode show the map inverted, while the view scrolls as ever.
    def sleep(frames, _actions, _rng):
        frames[11:16, : 3 * TILE] = 255 - frames[11:16, : 3 * TILE]  # the 3 map rows
        return frames, np.zeros(len(frames) - 1, np.float32), {}

    _edited_store(tmp_path / "store", ToyWorld(), SPEC, 3, 8, 30, sleep)
    kw = dict(patch=TILE, fixed_rows=1, codebook_size=64, frequent_codes=32, val_fraction=0.0,
              test_fraction=0.0)  # fmt: skip
    dm = TileDataModule(str(tmp_path / "store"), cut_weight=9.0, **kw)
    dm.setup()
    cut = dm.train["cut"].reshape(8, 30)
    assert cut[:, [10, 15]].all() and cut.sum() == 16  # into and out of the inverted stretch
    p = dm.draw_weights()[0]
    assert p[dm.train["cut"]].sum() == pytest.approx(10 * 16 / (240 + 9 * 16))
    # With a span, the steps after a cut (Crafter: asleep) are drawn as often, within their
    # own episode only.
    span = TileDataModule(str(tmp_path / "store"), cut_weight=9.0, cut_span=3, **kw)
    span.setup()
    heavy = (span.weights > 1).reshape(8, 30)
    assert (np.flatnonzero(heavy[0]) == [10, 11, 12, 13, 15, 16, 17, 18]).all()
    assert (heavy == heavy[0]).all()
    plain = TileDataModule(str(tmp_path / "store"), **kw)
    plain.setup()
    assert plain.draw_weights()[0][plain.train["cut"]].sum() == pytest.approx(16 / 240)
    with pytest.raises(ConfigError, match="cut_weight"):
        TileDataModule(str(tmp_path / "store"), cut_weight=-1.0)


def test_events_fire_as_likely_as_the_model_says_at_temperature_one() -> None:
    cfg = TileConfig(height=16, width=20, patch=TILE, fixed_rows=1, codebook_size=8,
                     events=["a", "b"], event_reward=1.0, **SMALL)  # fmt: skip
    net = TileWorldNet(cfg, SPACE)
    logits = torch.tensor([[-1.3863, 3.0]]).repeat(20_000, 1)  # p = 0.2 and 0.95
    assert net.fire_events(logits).float().mean(0).tolist() == [0.0, 1.0]  # the likelier
    drawn = net.fire_events(logits, 1.0, torch.Generator().manual_seed(0)).float().mean(0)
    assert abs(drawn[0] - 0.2) < 0.01 and abs(drawn[1] - 0.95) < 0.01
    paid = torch.tensor([[True, False], [False, False], [True, True]])
    fired = torch.tensor([[True, False], [True, True], [True, True]])
    pay, after = pay_events(fired, paid, 1.0)
    assert pay.tolist() == [0.0, 1.0, 0.0] and after.all(-1).tolist() == [False, True, True]


def test_a_move_is_one_choice_that_swaps_a_tile_with_its_neighbour(trained) -> None:
    from worldsim.model.tile_rollout import TileRollout

    _world, dm, _system, trained_net, _obs, _path = trained
    cfg = TileConfig(height=16, width=20, patch=TILE, fixed_rows=1, codebook_size=8,
                     object_moves=True, **SMALL)  # fmt: skip
    book = np.repeat(np.arange(8, dtype=np.uint8)[:, None] * 30, TILE * TILE * 3, 1)
    book[6] = book[5] + 1  # two codes that draw the same tile (within match_rms)
    net = TileWorldNet(cfg, SPACE, codebook=book)
    right, left = displacements(1).index((0, 1)), displacements(1).index((0, -1))
    # A cow (code 5) on grass (code 1) at token 6 (row 1, column 1) steps right, onto 7.
    code_sh = torch.ones(1, 20, dtype=torch.long)
    code_sh[0, 6] = 5
    code_next = code_sh.clone()
    code_next[0, 6], code_next[0, 7] = 1, 5
    target = net.move_targets(code_sh, net.codebook[code_sh], net.codebook[code_next])
    assert target[0, 6] == right and (target[0, torch.arange(20) != 6] == 0).all()
    code_next[0, 7] = 6  # the tile that arrived is matched by its pixels, not its code
    assert torch.equal(
        net.move_targets(code_sh, net.codebook[code_sh], net.codebook[code_next]), target
    )
    # The rollout carries a move out: the cow's patch lands, the grass it stepped on shows
    # where it stood (a swap, so nothing is made or lost).
    rollout = TileRollout(net)
    code_sh[0, 7] = 2  # another kind of ground
    pix_sh = net.codebook[code_sh]
    step = torch.zeros(1, 20, dtype=torch.long)
    step[0, 6] = right
    code, pix = rollout._move(step, code_sh, pix_sh, code_sh.clone(), pix_sh.clone())
    assert code[0, 7] == 5 and code[0, 6] == 2 and torch.equal(pix[0, 7], pix_sh[0, 6])
    assert torch.equal(pix[0, 6], pix_sh[0, 7])
    rest = torch.ones(20, dtype=torch.bool)
    rest[[6, 7]] = False
    assert torch.equal(code[0, rest], code_sh[0, rest])
    # Two cows stepping onto one token: one lands, the other stays; none lost, none made.
    code_sh[0, 8] = 5
    step[0, 8] = left
    pix_sh = net.codebook[code_sh]
    code, _ = rollout._move(step, code_sh, pix_sh, code_sh.clone(), pix_sh.clone())
    assert int((code[0] == 5).sum()) == 2  # and every tile is still there, once
    assert sorted(code[0].tolist()) == sorted(code_sh[0].tolist())
    # Nor onto a token the tile net changes this step.
    changed = code_sh.clone()
    changed[0, 7] = 3
    code, _ = rollout._move(step, code_sh, pix_sh, changed, net.codebook[changed])
    assert code[0, 7] == 3 and code[0, 6] == 5
    # A rollout step carries out the move head's choice: the head says the cow steps right.
    from worldsim.model.tile_rollout import Given

    frame = patches_to_frames(
        net.codebook[code_sh], torch.zeros(1, 16, 20, 3, dtype=torch.uint8), TILE
    )
    obs = gym.spaces.Box(0, 255, (16, 20, 3), np.uint8)
    wm = WorldModel.from_net(net, obs, SPACE)
    state = wm.rollout.start(*wm._context(frame[:, None].numpy(), np.zeros((1, 0), np.int64)))
    tile_logits = net.tile_logits

    def cow_steps_right(*args, **kw):
        keep, codes, moves = tile_logits(*args, **kw)
        moves = torch.full_like(moves, -1e4)
        moves[..., 0] = 0.0
        moves[0, 6, right] = 1e4
        return keep + 1e4, codes, moves  # every tile kept, but for the move

    net.tile_logits = cow_steps_right
    still = [Given(shift=torch.zeros(1, dtype=torch.long))]
    wm.rollout.next(state, net.encode_actions(np.zeros((1, 1), np.int64)), given=still)
    assert state.code[0, 7] == 5 and state.code[0, 6] == 2 and int((state.code == 5).sum()) == 2
    del net.tile_logits
    # No move leaves the view or starts in the fixed rows (the HUD).
    assert not net.move_valid[:, net.moving :].any() and not net.move_valid[right, 4]
    # The move head trains with the tile net; a release without it starts it fresh.
    moving = TileWorldNet(replace(trained_net.config, object_moves=True), SPACE,
                          trained_net.codebook, trained_net.reward_values)  # fmt: skip
    missing = moving.load_state_dict(trained_net.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith(("m_move.", "m_move_qk.")) for k in missing)
    out = moving.training_loss(dm.batch(dm.val, dm.val_index))
    assert torch.isfinite(out["move"]) and "move_recall" in out
    # loss.parts [move]: the move head's loss alone (TileWorldSystem freezes the rest).
    out = moving.training_loss(dm.batch(dm.val, dm.val_index), loss=TileLoss(parts=("move",)))
    assert torch.allclose(out["loss"], out["move"]) and out["tile"] > 0
    # ...read off a step with nothing committed, as a one-round rollout moves tiles; with the
    # tile net, a random share of tokens is given its answer (MaskGIT).
    seen = []
    moving.tile_logits = lambda *a, **kw: (
        seen.append(a[5]) or tile_logits.__func__(moving, *a, **kw)
    )
    for parts in (("move",), ("tile", "move")):
        moving.training_loss(dm.batch(dm.val, dm.val_index), loss=TileLoss(parts=parts))
    del moving.tile_logits
    assert not seen[0].any() and seen[1].any()
    assert {k for k, _ in moving.named_parameters() if k.startswith("m_")} == {
        k for p in moving.part_parameters("move") for k, q in moving.named_parameters() if q is p
    }
    with pytest.raises(ValueError, match="move_temperature"):
        TileSampler(move_temperature=-1)


def test_tile_choices_from_the_split_logits_equal_those_of_the_joined_ones() -> None:
    from worldsim.model.tile_rollout import _choose, _choose_tiles

    gen = torch.Generator().manual_seed(0)
    keep, codes = torch.randn(4, 30, generator=gen), torch.randn(4, 30, 16, generator=gen)
    keep[0, :5] = codes[0, :5].max(-1).values  # ties keep, as argmax takes the first
    joined = torch.cat([keep[..., None], codes], -1)
    temperature = torch.zeros(4, 30)
    temperature[1:, ::2] = 0.7  # some tokens sampled, the others argmax
    hot = temperature > 0
    for t in (torch.zeros(4, 30), temperature):
        choice, prob = _choose_tiles(keep, codes, t, torch.Generator().manual_seed(1))
        want = joined.argmax(-1)
        if bool((t > 0).any()):  # the sampled tokens draw as `_choose` does on them alone
            want[hot] = _choose(joined[hot], t[hot], torch.Generator().manual_seed(1))
        assert torch.equal(choice, want)
        want_p = torch.softmax(joined, -1).gather(-1, choice[..., None])[..., 0]
        assert torch.allclose(prob, want_p, atol=1e-6)
    assert (_choose_tiles(keep, codes, torch.zeros(4, 30), None)[0][0, :5] == 0).all()


def test_new_ground_drawn_from_the_nucleus_never_takes_a_sliver_code() -> None:
    from worldsim.model.tile_rollout import _choose

    # 3 likely codes hold 0.99 of the probability; 60 codes share the last 1% (a HUD tile, a
    # second player): over 20,000 draws at temperature 1 they come up about 200 times.
    logits = torch.full((20_000, 63), math.log(0.01 / 60))
    logits[:, :3] = math.log(0.33)
    free = _choose(logits, 1.0, torch.Generator().manual_seed(0))
    assert 100 < int((free >= 3).sum()) < 300
    kept = _choose(logits, 1.0, torch.Generator().manual_seed(0), top_p=0.98)
    assert int((kept >= 3).sum()) == 0
    share = torch.bincount(kept, minlength=3)[:3] / len(kept)
    assert torch.allclose(share, torch.full((3,), 1 / 3), atol=0.02)  # the nucleus as it was
    x = torch.randn(50, 10, generator=torch.Generator().manual_seed(1))
    assert torch.equal(_choose(x, 0.0, None, top_p=0.5), x.argmax(-1))  # argmax is in it
    for bad in (0.0, 1.5):
        for name in ("reveal_top_p", "move_top_p"):
            with pytest.raises(ValueError, match=name):
                TileSampler(**{name: bad})


def test_the_tile_net_draws_revealed_tiles_from_their_nucleus_and_the_rest_from_all() -> None:
    from worldsim.model.tile_rollout import _choose_tiles

    # Keep and 3 codes hold 0.99; 60 codes share the last 1%. Half the tokens came into view
    # (top_p 0.98), the other half are drawn from every choice.
    keep = torch.full((400, 50), math.log(0.2475))
    codes = torch.full((400, 50, 63), math.log(0.01 / 60))
    codes[..., :3] = math.log(0.2475)
    top_p = torch.ones(400, 50)
    top_p[:, :25] = 0.98
    choice = _choose_tiles(keep, codes, torch.ones(400, 50), torch.Generator().manual_seed(0),
                           with_prob=False, top_p=top_p)[0]  # fmt: skip
    assert int((choice[:, :25] > 3).sum()) == 0
    assert 50 < int((choice[:, 25:] > 3).sum()) < 150  # about 100 of 10,000


def test_the_likeliest_tile_pools_the_codebook_twins_that_draw_it() -> None:
    from worldsim.model.tile_rollout import TileGroups, _choose_tiles
    from worldsim.model.tiles import same_tile_codes

    # Codes 0-2 are twins (within 3 RMS), 3 and 4 a tile each, 5-7 unused zero rows.
    book = torch.zeros(8, 12, dtype=torch.uint8)
    book[:3] = torch.tensor([100, 101, 102], dtype=torch.uint8)[:, None]
    book[3], book[4] = 200, 50
    pairs = same_tile_codes(book, 3.0)
    same = torch.eye(8).index_put((pairs[0], pairs[1]), torch.tensor(1.0), accumulate=True)
    assert torch.equal(same[:3, :3], torch.ones(3, 3)) and same[:3, 3:].sum() == 0
    assert torch.equal(same[3:, 3:], torch.eye(5))  # the zero rows pool with no other
    groups = TileGroups.of(book, 3.0)

    def pick(p: list[float], keep: float | None, shifted: int) -> tuple[int, float]:
        codes = torch.log(torch.tensor(p).clamp(min=1e-9))[None, None]
        k = torch.tensor([[-1e4 if keep is None else math.log(keep)]])
        choice, prob = groups.likeliest(k, codes, torch.tensor([[shifted]]))
        return choice.item(), prob.item()

    # Revealed: by code 3 (0.35) wins, by tile 0-2 (0.65) do.
    assert pick([0.25, 0.2, 0.2, 0.35, 0, 0, 0, 0], None, 8) == (1, pytest.approx(0.65, abs=1e-4))
    # Keep counts with the shifted tile: keep 0.25 + code 4's 0.3 beat tile 0-2's 0.45, though
    # by code code 0 (0.3) beats keep.
    q = [0.3, 0.1, 0.05, 0, 0.3, 0, 0, 0]
    assert pick(q, 0.25, 4) == (0, pytest.approx(0.55, abs=1e-4))
    assert pick(q, 0.25, 1) == (0, pytest.approx(0.7, abs=1e-4))  # shifted from a twin: keep
    assert pick(q, 0.25, 3) == (1, pytest.approx(0.45, abs=1e-4))  # tile 0-2 beats keep of 3
    # Keep holding more than half wins outright; sampled tokens still sample codes.
    assert pick([0.2, 0.1, 0.1, 0, 0, 0, 0, 0], 0.6, 3) == (0, pytest.approx(0.6, abs=1e-4))
    keep = torch.full((2000, 1), -1e4)
    codes = torch.log(torch.tensor([0.25, 0.2, 0.2, 0.35, 0, 0, 0, 0]).clamp(min=1e-9))
    codes = codes.expand(2000, 1, 8).clone()
    hot = torch.ones(2000, 1)
    gen = torch.Generator().manual_seed(0)
    drawn = _choose_tiles(keep, codes, hot, gen, True, groups, torch.full((2000, 1), 8))[0]
    assert abs((drawn == 4).float().mean().item() - 0.35) < 0.04  # code 3 as often as p says


def test_the_last_token_encoding_equals_the_full_encoder_and_trains_the_same() -> None:
    from worldsim.model.tile_net import _encoder, encode_last

    torch.manual_seed(0)
    body = _encoder(32, 2, 4)
    x = torch.randn(3, 11, 32)
    for train in (True, False):
        body.train(train)
        with torch.no_grad():
            assert torch.allclose(encode_last(body, x), body(x)[:, -1], atol=1e-5)
    body.train()
    grads = []
    for f in (lambda: body(x)[:, -1], lambda: encode_last(body, x)):
        body.zero_grad()
        f().square().sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in body.parameters()]))
    assert torch.allclose(grads[0], grads[1], atol=1e-4)


def test_sampled_tile_choices_follow_the_tempered_distribution() -> None:
    from worldsim.model.tile_rollout import _choose_tiles

    gen = torch.Generator().manual_seed(0)
    keep, codes = torch.randn(1, 1, generator=gen), torch.randn(1, 1, 5, generator=gen)
    n = 40_000
    t = torch.full((n, 2), 0.7)
    t[:, 1] = 0.0  # the second token of every row is not sampled: always its argmax
    keep_n, codes_n = keep.expand(n, 2).clone(), codes.expand(n, 2, 5).clone()
    choice = _choose_tiles(keep_n, codes_n, t, gen, with_prob=False)[0]
    joined = torch.cat([keep[0], codes[0, 0]])
    assert (choice[:, 1] == joined.argmax()).all()
    freq = torch.bincount(choice[:, 0], minlength=6).float() / n
    assert torch.allclose(freq, torch.softmax(joined / 0.7, -1), atol=0.01)


def test_context_noise_replaces_only_tiles_the_last_step_revealed(trained) -> None:
    _world, dm, _system, net, _obs, _path = trained
    K = net.config.codebook_size
    batch = dm.batch(dm.train, np.arange(256))
    pix_sh, code_sh, prev_sh = net.shift_inputs(
        batch["pix"], batch["code"], batch["prev_code"], batch["prev_shift"], batch["shift"]
    )
    code, pix = net._noisy_context(code_sh, pix_sh, prev_sh, 1.0, torch.Generator().manual_seed(0))
    last_revealed = (prev_sh == K) & (code_sh != K)
    last_revealed[:, net.moving :] = False
    changed = code != code_sh
    assert changed.any() and not (changed & ~last_revealed).any()  # the rest is untouched
    assert torch.equal(pix[changed], net.codebook[code[changed]])  # a real tile, drawn right
    assert torch.equal(pix[~changed], pix_sh[~changed])
    assert 0.2 < changed.sum() / last_revealed.sum() < 0.6  # half of them on average at share 1
    # The loss trains with it; at share 0 the batch is as it was.
    loss = net.training_loss(batch, loss=TileLoss(context_noise=0.5))
    assert torch.isfinite(loss["loss"])
    same = net._noisy_context(code_sh, pix_sh, prev_sh, 0.0, None)
    assert torch.equal(same[0], code_sh) and torch.equal(same[1], pix_sh)
    with pytest.raises(ValueError, match="context_noise"):
        TileLoss(context_noise=1.5)


def _self_forced(dm, k: int, n: int = 64):
    """A self-forced batch of the training transitions that have k + context steps before
    them, as `TileDataModule(unroll=...)` draws them."""
    eligible = np.flatnonzero(dm.train["pos"] >= dm.hparams.unroll_context + k - 1)
    idx = eligible[np.linspace(0, len(eligible) - 1, n).astype(int)]
    return idx, dm.batch(dm.train, idx, k)


def test_self_forcing_trains_on_the_dream_where_it_agrees_with_the_game(trained) -> None:
    from training.self_forcing import dream_batch
    from worldsim.model.tile_rollout import Given, TileRollout

    _world, _dm, _system, net, _obs, path = trained
    dm = TileDataModule(str(path / "store"), patch=TILE, fixed_rows=1, codebook_size=64,
                        frequent_codes=32, batch_size=16, samples_per_epoch=16 * 4,
                        val_samples=16, val_fraction=0.2, test_fraction=0.0,
                        unroll=3, unroll_context=2)  # fmt: skip
    dm.setup()
    assert torch.equal(torch.as_tensor(dm.codebook), net.codebook[: len(dm.codebook)])
    k = 3
    idx, batch = _self_forced(dm, k)
    # The context is the real frames k and more steps back, the dream's steps the real ones.
    assert torch.equal(batch["past_pix"], dm.batch(dm.train, idx - k)["pix"])
    assert torch.equal(batch["past_shift"][:, -1], dm.batch(dm.train, idx - 1)["shift"])
    sampler = TileSampler(sampler_steps=1)
    dreamed = dream_batch(net, sampler, batch)
    # The dream is what a rollout from the same context, told the same shifts, draws.
    rollout = TileRollout(net, sampler=sampler)
    c = dm.hparams.unroll_context
    context = torch.stack([dm.batch(dm.train, idx - k - c + 1 + j)["code"] for j in range(c)], 1)
    assert torch.equal(batch["past_code"], context)
    state = rollout.start_tokens(batch["past_pix"], context, batch["past_shift"][:, : c - 1])
    for i in range(c - 1, c - 1 + k):
        told = Given(shift=batch["past_shift"][:, i], events=batch["past_events"][:, i])
        action = net.encode_actions(batch["past_action"][:, i])[:, None]
        rollout.next(state, action, given=[told])
    moving = net.moving
    assert torch.equal(dreamed["code"][:, :moving], state.code[:, :moving])
    # The HUD stays teacher-forced: the real rows, always trained.
    assert torch.equal(dreamed["code"][:, moving:], batch["code"][:, moving:].long())
    assert torch.equal(dreamed["pix"][:, moving:], batch["pix"][:, moving:])
    assert dreamed["loss_mask"][:, moving:].all()
    # Trained well, the toy dream mostly agrees with the game, and trains where it does.
    mask = dreamed["loss_mask"]
    assert mask.float().mean() > 0.8
    # An untrained net's dream parts from the game: its tokens in view are trained only where
    # its shifted tile is the real one.
    wild = TileWorldNet(net.config, SPACE, net.codebook, net.reward_values)
    bad = dream_batch(wild, sampler, batch)
    K = net.config.codebook_size
    shift = batch["shift"]
    known = net.shifted(bad["code"], shift, K) != K
    agree = net.same_tile(net.shifted(bad["pix"], shift, 0), net.shifted(batch["pix"], shift, 0))
    assert (~agree & known).any() and not (bad["loss_mask"] & known & ~agree).any()
    # The loss does not see the tokens outside the mask: other targets there change nothing.
    off = ~bad["loss_mask"]
    other = {**bad, "code_next": bad["code_next"].masked_fill(off, 0),
             "pix_next": bad["pix_next"].masked_fill(off[..., None], 0)}  # fmt: skip
    losses = [wild.training_loss(b, torch.Generator().manual_seed(1), loss=TileLoss(parts=("tile",)))
              for b in (bad, other)]  # fmt: skip
    assert torch.isfinite(losses[0]["loss"]) and torch.allclose(
        losses[0]["tile"], losses[1]["tile"]
    )
    # A teacher-forced batch (k = 0) comes back as it was; a fit with unroll runs its dreams.
    plain = dm.batch(dm.train, idx)
    assert dream_batch(net, sampler, plain) is plain
    assert len(dm.draw_weights()) == 4 and (dm.draw_weights()[3][: c + k - 2] == 0).all()
    system = TileWorldSystem(
        overrides=SMALL, loss={"parts": ["tile"]}, sampler={"sampler_steps": 1}
    )
    trainer = L.Trainer(max_steps=4, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, num_sanity_val_steps=0, limit_val_batches=0)  # fmt: skip
    trainer.fit(system, dm)
    assert trainer.global_step == 4
    with pytest.raises(ConfigError, match="unroll"):
        TileDataModule(str(path / "store"), unroll=-1)


def test_an_edge_prior_draws_the_revealed_tiles_and_is_refused_without_one(trained) -> None:
    world, _dm, _system, net, obs, path = trained
    with_edge = TileWorldNet(replace(net.config, edge_prior=True), SPACE, net.codebook,
                             net.reward_values)  # fmt: skip
    missing = with_edge.load_state_dict(net.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("e_prior.") for k in missing)
    with_edge.eval()
    # A prior sure of one code: every revealed tile with nothing remembered shows it.
    X = 5
    torch.nn.init.zeros_(with_edge.e_prior.head.weight)
    with torch.no_grad():
        with_edge.e_prior.head.bias.fill_(-50.0)
        with_edge.e_prior.head.bias[X] = 50.0
    save_release(path / "edge-release", with_edge, observation_space=obs, action_space=SPACE,
                 metadata={"game": "toy"})  # fmt: skip
    loaded = load_release(path / "edge-release")[0]
    assert torch.equal(loaded.e_prior.head.bias, with_edge.e_prior.head.bias)
    pos = next(p for p in sorted(world.pos_of.values())
               if world.step(p, 2) != p and world.step(world.step(p, 2), 2) != world.step(p, 2))  # fmt: skip
    start = world.render(pos)[0][None, None]
    right = np.array([[2, 2]])
    cols = 20 // TILE
    outs = {}
    for reveal in ("net", "edge"):
        sampler = TileSampler(sampler_steps=1, shift_temperature=0.0, reveal=reveal,
                              reveal_temperature=1.0)  # fmt: skip
        wm = WorldModel.from_net(loaded, obs, SPACE, sampler=sampler)
        out = wm.generate(start, np.zeros((1, 0), np.int64), right,
                          generator=torch.Generator().manual_seed(0))["frames"][0]  # fmt: skip
        outs[reveal] = frames_to_patches(out, TILE).view(2, -1, cols, TILE * TILE * 3)
    new = outs["edge"][:, :-1, -1]  # the map's right column, revealed by each step
    assert (new == loaded.codebook[X]).all()
    assert not (outs["net"][:, :-1, -1] == loaded.codebook[X]).all()
    same = (outs["edge"][:, :, :-1] == outs["net"][:, :, :-1]).all(-1)
    assert same.float().mean() > 0.8  # the rest mostly as before (the net sees the new column)
    plain = WorldModel.from_net(net, obs, SPACE, sampler=TileSampler(reveal="edge"))
    with pytest.raises(WorldsimError, match="edge prior"):
        plain.generate(start, np.zeros((1, 0), np.int64), right)
    with pytest.raises(ValueError, match="reveal"):
        TileSampler(reveal="prior")


def _timer_store(
    path, world: ToyWorld, period: int, episodes: int = 16, T: int = 40, phase: bool = True
):
    """The toy game with a HUD counter on a hidden timer, as Crafter's food and water: the
    first inventory tile darkens by one level every `period` steps (4 levels, then over).
    `phase`: the timer starts at a random step of its period; else at the episode's first
    frame, as Crafter's timers start at its reset."""

    def tick(frames, _actions, rng):
        start = int(rng.integers(period)) if phase else 0
        level = (np.arange(T + 1) + start) // period % 4
        frames[:, 3 * TILE :, :TILE] = (60 * (level + 1)).astype(np.uint8)[:, None, None, None]
        return frames, np.zeros(T, np.float32), {}

    return _edited_store(path, world, SPEC, 5, episodes, T, tick)


def _clocked_net(store, clock: int, steps: int = 300, **overrides) -> TileWorldNet:
    """A small tile net with HUD clocks of `clock` steps (0: none), fitted on the toy `store`."""
    dm = TileDataModule(str(store), patch=TILE, fixed_rows=1, codebook_size=32, frequent_codes=16,
                        batch_size=32, samples_per_epoch=32 * steps, val_samples=32,
                        val_fraction=0.2, test_fraction=0.0)  # fmt: skip
    system = TileWorldSystem(overrides={**SMALL, "hud_clock": clock, **overrides}, lr=3e-3,
                             warmup_steps=20, ema_decay=0.9)  # fmt: skip
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, num_sanity_val_steps=0, limit_val_batches=0)  # fmt: skip
    torch.manual_seed(0)
    trainer.fit(system, dm)
    return system.ema.module.eval()


def test_a_hud_clock_ticks_a_hidden_timer_on_time(tmp_path) -> None:
    from worldsim.model.tile_rollout import TileRollout

    # The clock: steps since the code last changed, 0 until a change is seen.
    codes = torch.tensor([[[5, 1], [5, 1], [6, 1], [6, 1], [6, 1], [7, 1]]])
    assert hud_clocks(codes)[0].T.tolist() == [[0, 0, 1, 2, 3, 1], [0] * 6]
    assert tick_clock(torch.tensor([0, 3, 3]), torch.tensor([False, False, True])).tolist() == [
        0,
        4,
        1,
    ]
    with pytest.raises(ValueError, match="hud_clock"):
        TileConfig(height=16, width=20, patch=TILE, hud_clock=8)  # no fixed rows
    # A HUD tile ticks every 5 steps. Two frames cannot tell when (the net without a clock
    # learns "never"); with a clock, a rollout ticks on time once it has seen a tick.
    period, world = 5, ToyWorld()
    _timer_store(tmp_path / "store", world, period)
    rng = np.random.default_rng(1)
    frames, actions, _, _ = world.episode(rng, 30)
    level = np.arange(31) // period % 4
    frames[:, 3 * TILE :, :TILE] = (60 * (level + 1)).astype(np.uint8)[:, None, None, None]
    hud = frames_to_patches(frames[:, 3 * TILE :, :TILE], TILE)[:, 0]  # [31, D]
    on_time = {}
    for clock in (0, 16):
        net = _clocked_net(tmp_path / "store", clock)
        rollout = TileRollout(net)
        K = 8  # the context holds a tick (at step 5)
        state = rollout.start(net.frames_to_x(frames[None, :K]),
                              net.encode_actions(actions[None, : K - 1]))  # fmt: skip
        x = rollout.next(state, net.encode_actions(actions[None, K - 1 :]))[0]
        drawn = frames_to_patches(net.x_to_frames(x)[0, :, 3 * TILE :, :TILE], TILE)[:, 0]
        ticks = np.nonzero(level[K:] != level[K - 1 : -1])[0]  # steps K+i that tick
        right = (drawn.float() - hud[K:].float()).abs().max(-1).values < 8  # [23]
        on_time[clock] = (int(right[ticks].sum()), int(right.sum()))
        assert len(ticks) == 5
    # Without a clock a tick is a guess (right at most by chance); with one, every tick comes
    # on time and the HUD is right at every step.
    assert on_time[0][0] <= 2 and on_time[16] == (5, 23), on_time


def _beat_store(path, world: ToyWorld, delay: int, episodes: int = 16, T: int = 40):
    """The toy game where starting to rest (a noop after another action) is a named event and
    the first inventory tile darkens one level `delay` steps later and every `delay` steps
    after, as Crafter's energy comes back 11 steps after falling asleep and every 11: a beat
    that starts at the event, not at a HUD change."""
    spec = {**SPEC, "arrays": [*SPEC["arrays"], "events"],
            "events": {"names": ["rest"], "reward": 1.0, "pays": "first", "unpaid": ["rest"]}}  # fmt: skip

    def beat(frames, actions, _rng):
        fired = (actions == 0) & (np.concatenate([[1], actions[:-1]]) != 0)
        clock = event_clocks(torch.as_tensor(fired[:, None]))[:, 0].numpy()  # [T + 1]
        beat = (clock[:-1] > 0) & (clock[:-1] % delay == 0)
        level = np.concatenate([[0], np.cumsum(beat)]) % 4
        frames[:, 3 * TILE :, :TILE] = (60 * (level + 1)).astype(np.uint8)[:, None, None, None]
        counts = np.concatenate([[0], np.cumsum(fired)])[:, None].astype(np.int32)
        return frames, np.zeros(len(actions), np.float32), {"events": counts}

    return _edited_store(path, world, spec, 6, episodes, T, beat)


def test_an_event_clock_ticks_a_beat_that_starts_at_an_event(tmp_path) -> None:
    from worldsim.model.tile_rollout import Given, TileRollout

    fired = torch.tensor([[False], [True], [False], [False], [True], [False]])
    assert event_clocks(fired)[:, 0].tolist() == [0, 0, 1, 2, 3, 1, 2]  # 0: not seen yet
    with pytest.raises(ValueError, match="event_clock"):
        TileConfig(height=16, width=20, patch=TILE, event_clock=8)  # no HUD to time
    delay, world = 3, ToyWorld()
    store = _beat_store(tmp_path / "store", world, delay)
    # The HUD ticks 3 steps after each rest starts, and every 3 after: its own last change
    # says nothing of when the next rest moves the beat, the clock of the event does.
    net = _clocked_net(tmp_path / "store", 0, steps=800, event_clock=64)
    assert net.c_event is not None and net.c_event.weight.abs().sum() > 0
    K = 2  # context frames: the episode's first rest comes after them
    counts = [np.asarray(store.episode(i).labels["events"])[:, 0] for i in range(len(store))]
    i = max(range(len(store)), key=lambda i: (counts[i][K - 1] == 0) * counts[i][-1])
    ep, counts = store.episode(i), counts[i]
    frames, actions = np.asarray(ep.frames), np.asarray(ep.actions)
    events = torch.as_tensor(counts[1:] > counts[:-1])[:, None]  # [T, 1]
    hud = frames_to_patches(frames[:, 3 * TILE :, :TILE], TILE)[:, 0]
    rollout = TileRollout(net)
    state = rollout.start(
        net.frames_to_x(frames[None, :K]), net.encode_actions(actions[None, : K - 1])
    )
    assert state.event_clock.tolist() == [[0]]  # a rollout starts with no event seen
    told = [Given(events=events[t][None]) for t in range(K - 1, len(actions))]
    x = rollout.next(state, net.encode_actions(actions[None, K - 1 :]), given=told)[0]
    drawn = frames_to_patches(net.x_to_frames(x)[0, :, 3 * TILE :, :TILE], TILE)[:, 0]
    right = (drawn.float() - hud[K:].float()).abs().max(-1).values < 8
    ticks = np.nonzero((hud[K:] != hud[K - 1 : -1]).any(-1).numpy())[0]
    assert len(ticks) >= 3 and right.all(), (ticks, right)


def test_misses_of_an_action_that_causes_an_event_are_drawn_as_often_as_its_hits(tmp_path) -> None:
    # Resting (noop) is an event only where it starts a rest (after another action), as
    # Crafter's sleep falls asleep only below full energy: the shift net must learn what
    # decides it, so the noops that fire nothing are drawn as often in all as those that do.
    _beat_store(tmp_path / "store", ToyWorld(), 3)
    kw = dict(patch=TILE, fixed_rows=1, codebook_size=64, frequent_codes=32, val_fraction=0.0,
              test_fraction=0.0)  # fmt: skip
    dm = TileDataModule(str(tmp_path / "store"), balance_misses=True, **kw)
    dm.setup()
    noop, hit = dm.train["action"] == 0, dm.train["events"][:, 0]
    p = dm.draw_weights()[0]
    assert hit.any() and (noop & ~hit).any()
    assert p[noop & ~hit].sum() == pytest.approx(p[hit].sum())
    assert np.allclose(dm.weights[~noop], 1.0)  # the other actions are drawn as before
    plain = TileDataModule(str(tmp_path / "store"), **kw)
    plain.setup()
    assert plain.weights[noop & ~hit].max() == 1.0
    # The event prior undoes the extra draws: the net's odds stay the real ones.
    assert dm.event_prior[0] > plain.event_prior[0]


def test_a_rare_event_is_drawn_more_often_with_event_balance(tmp_path) -> None:
    # Crafter's 252 tables beside its 4,298 drinks: the tile net sees a table placed once or
    # twice in a run unless rarer events are drawn more often than common ones.
    spec = {**SPEC, "arrays": [*SPEC["arrays"], "events"],
            "events": {"names": ["often", "rare"], "reward": 1.0, "pays": "first"}}  # fmt: skip

    def two_events(frames, actions, _rng):
        often = actions == 1
        rare = (actions == 2) & (np.arange(len(actions)) % 8 == 0)
        counts = np.cumsum(np.stack([often, rare], 1), 0)
        counts = np.concatenate([np.zeros((1, 2)), counts]).astype(np.int32)
        return frames, np.zeros(len(actions), np.float32), {"events": counts}

    _edited_store(tmp_path / "store", ToyWorld(), spec, 6, 16, 40, two_events)
    kw = dict(patch=TILE, fixed_rows=1, codebook_size=64, frequent_codes=32, val_fraction=0.0,
              test_fraction=0.0)  # fmt: skip
    plain = TileDataModule(str(tmp_path / "store"), **kw)
    plain.setup()
    ev = plain.train["events"]
    often, rare = ev[:, 0] & ~ev[:, 1], ev[:, 1]
    n_often, n_rare = int(ev[:, 0].sum()), int(rare.sum())
    assert n_often > 4 * n_rare > 0
    assert np.allclose(plain.weights[rare | often], 5.0)  # at 0: every event alike
    dm = TileDataModule(str(tmp_path / "store"), event_balance=0.5, **kw)
    dm.setup()
    assert np.allclose(dm.weights[often], plain.weights[often])  # the most frequent: as before
    assert np.allclose(dm.weights[rare], 1 + 4.0 * np.sqrt(n_often / n_rare))
    assert dm.draw_weights()[0][rare].sum() > 1.5 * plain.draw_weights()[0][rare].sum()
    assert dm.event_prior[1] < plain.event_prior[1]  # the prior undoes the extra draws
    with pytest.raises(ConfigError, match="event_balance"):
        TileDataModule(str(tmp_path / "store"), event_balance=-1.0)


def test_a_dream_from_an_episode_start_knows_its_timers_before_it_sees_a_tick(tmp_path) -> None:
    # Crafter's timers start at its reset, so a dream that starts at an episode's first frame
    # knows when food and water fall before it has seen them fall.
    assert hud_clocks(torch.tensor([[[5], [5], [6], [6]]]), episode_start=True)[0, :, 0].tolist() == [
        1, 2, 1, 2
    ]  # fmt: skip
    period, world = 5, ToyWorld()
    store = _timer_store(tmp_path / "store", world, period, phase=False)
    # A context of one frame: the rollout has seen no tick when the first is due.
    net = _clocked_net(tmp_path / "store", 16, context=2)
    obs = gym.spaces.Box(0, 255, (16, 20, 3), np.uint8)
    env = WorldModelEnv(world_model=WorldModel.from_net(net, obs, SPACE))
    clip = store.clip(0, 0, 21)
    real = frames_to_patches(torch.as_tensor(clip.frames[:, 3 * TILE :, :TILE]), TILE)[:, 0]
    ticks = np.nonzero((real[1:] != real[:-1]).any(-1).numpy())[0] + 1
    assert ticks.tolist() == [5, 10, 15, 20]
    on_time = {}
    for name, options in {
        "store start": {"store": store, "episode": 0, "start": 0},
        "frames, said to start the episode": {"frames": clip.frames[:1], "episode_start": True},
        "frames": {"frames": clip.frames[:1]},
    }.items():
        _, info = env.reset(seed=0, options=options)
        assert info["episode_start"] is (name != "frames"), name
        drawn = [env.step(int(a))[0] for a in clip.actions]
        hud = frames_to_patches(torch.as_tensor(np.stack(drawn)[:, 3 * TILE :, :TILE]), TILE)[:, 0]
        right = (hud.float() - real[1:].float()).abs().max(-1).values < 8  # [20]
        on_time[name] = (int(right[ticks - 1].sum()), int(right.sum()))
    # From the episode's start every tick comes on time and the HUD is right at every step;
    # told nothing, the dream does not know when the first one is due.
    assert on_time["store start"] == on_time["frames, said to start the episode"] == (4, 20)
    assert on_time["frames"][1] < 20, on_time
    # The batched dream: each env knows whether its start was its episode's first frame.
    venv = WorldModelVectorEnv(2, world_model=env.world_model)
    _, infos = venv.reset(seed=0, options={"store": store, "episode": [0, 0], "start": [0, 1]})
    assert infos["episode_start"].tolist() == [True, False]
    drawn = [venv.step(np.array([a, b]))[0][0] for a, b in zip(clip.actions[:-1], clip.actions[1:])]
    hud = frames_to_patches(torch.as_tensor(np.stack(drawn)[:, 3 * TILE :, :TILE]), TILE)[:, 0]
    assert ((hud.float() - real[1:-1].float()).abs().max(-1).values < 8).all()
    # A release whose starting contexts begin episodes says so (`worldsim export
    # --episode-starts` takes them from the data module so), and its dreams keep the time.
    from training.data import EpisodeDataModule

    dm = EpisodeDataModule(str(tmp_path / "store"), val_fraction=0.2, test_fraction=0.0)
    ctx = dm.contexts(3, 2, split="train", episode_starts=True)
    firsts = [store.clip(e, 0, 2).frames for e in range(len(store))]
    assert ctx["episode_start"].tolist() == [True] * 3
    assert all(any(np.array_equal(np.asarray(c), f) for f in firsts) for c in ctx["frames"])
    contexts = {"frames": np.stack([clip.frames[:1]] * 2), "actions": np.zeros((2, 0), np.int64),
                "episode_start": [True, False]}  # fmt: skip
    save_release(tmp_path / "release", net, observation_space=obs, action_space=SPACE,
                 contexts=contexts)  # fmt: skip
    env = WorldModelEnv(checkpoint=str(tmp_path / "release"), device="cpu")
    for i in (0, 1):
        _, info = env.reset(seed=0, options={"context": i})
        assert info["episode_start"] is (i == 0)
        drawn = [env.step(int(a))[0] for a in clip.actions]
        hud = frames_to_patches(torch.as_tensor(np.stack(drawn)[:, 3 * TILE :, :TILE]), TILE)[:, 0]
        right = int(((hud.float() - real[1:].float()).abs().max(-1).values < 8).sum())
        assert (right == 20) is (i == 0), (i, right)
