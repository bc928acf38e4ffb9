"""The generative tools (worldsim/generate/) on tiny untrained models of both kinds: held
frames come back bit-exact, every tool's shapes and lengths, reproducible under a seed, and
clear errors for bad pictures, clips and action files.

The tile model is built on the toy tile game of test_semantic, its codebook made of the toy
game's own tiles, so a recorded toy frame is exactly a grid of codes.
"""

from __future__ import annotations

import json

import av
import gymnasium as gym
import numpy as np
import pytest
import torch
from PIL import Image
from test_semantic import SPACE, TILE, ToyWorld

from worldsim.checkpoint import save_release
from worldsim.cli import main as cli
from worldsim.generate import (
    GenerateError,
    check_picture,
    path_validity,
    read_actions,
    read_picture,
    side_by_side,
    write_mp4,
)
from worldsim.model import WorldModelNet, preset
from worldsim.model.tile_config import TileConfig, TileSampler
from worldsim.model.tile_net import TileWorldNet
from worldsim.model.tiles import build_codebook, frames_to_patches
from worldsim.world_model import WorldModel

SMALL = {
    "dim": 32,
    "depth": 1,
    "heads": 2,
    "shift_dim": 32,
    "shift_depth": 1,
    "reward_dim": 32,
    "reward_depth": 1,
}
H, W = 16, 20  # the toy game's frames: 3x5 map tiles of 4 px, one inventory row


def _perturb(net: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return net.eval()


@pytest.fixture(scope="module")
def toy():
    world = ToyWorld()
    rng = np.random.default_rng(0)
    frames, actions, labels, views = world.episode(rng, 30)
    return world, frames, actions, labels, views


@pytest.fixture(scope="module")
def tile_wm(toy):
    _, frames, *_ = toy
    book = build_codebook(
        frames_to_patches(frames, TILE).reshape(-1, TILE * TILE * 3).numpy(), size=32, frequent=32
    )
    cfg = TileConfig(
        height=H,
        width=W,
        patch=TILE,
        fixed_rows=1,
        codebook_size=32,
        frequent_codes=32,
        **SMALL,
    )
    net = _perturb(TileWorldNet(cfg, SPACE, book, np.zeros(cfg.reward_classes)))
    sampler = TileSampler(sampler_steps=2, temperature=1.0, reveal_temperature=1.0)
    obs = gym.spaces.Box(0, 255, (H, W, 3), np.uint8)
    return WorldModel.from_net(net, obs, SPACE, sampler=sampler)


@pytest.fixture(scope="module")
def diffusion_wm():
    net = _perturb(WorldModelNet(preset("tiny", height=H, width=W, patch_size=4, context=6), SPACE))
    return WorldModel.from_net(net, gym.spaces.Box(0, 255, (H, W, 3), np.uint8), SPACE)


@pytest.fixture(params=["tiles", "diffusion"])
def wm(request, tile_wm, diffusion_wm):
    return tile_wm if request.param == "tiles" else diffusion_wm


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------ every tool, both kinds
def test_extend_holds_the_clip_and_adds_frames(wm, toy) -> None:
    _, frames, actions, *_ = toy
    gen = wm.extend(frames[:5], actions[:4], actions[4:11], generator=seeded())
    assert gen.frames.shape == (12, H, W, 3) and gen.frames.dtype == np.uint8
    assert gen.generated.tolist() == [False] * 5 + [True] * 7
    assert np.array_equal(gen.frames[:5], frames[:5])  # held clean: bit-exact
    assert len(gen.actions) == 11 and len(gen.rewards) == 11
    assert np.isnan(gen.rewards[:4]).all() and np.isfinite(gen.rewards[4:]).all()
    again = wm.extend(frames[:5], actions[:4], actions[4:11], generator=seeded())
    assert np.array_equal(gen.frames, again.frames)  # reproducible under a seed
    played = wm.extend(frames[:1], [], policy=lambda f: 2, n=3, generator=seeded())
    assert len(played) == 4 and played.actions.tolist() == [2, 2, 2]


def test_backward_needs_a_model_trained_on_reversed_clips(wm, toy) -> None:
    _, frames, actions, *_ = toy
    with pytest.raises(GenerateError, match="time-reversed"):
        wm.extend(frames[:4], actions[:3], actions[:5], backward=True)
    wm.metadata["reversed"] = True
    try:
        gen = wm.extend(
            frames[10:14], actions[10:13], actions[5:10], backward=True, generator=seeded()
        )
    finally:
        del wm.metadata["reversed"]
    assert gen.generated.tolist() == [True] * 5 + [False] * 4  # the new frames come first
    assert np.array_equal(gen.frames[5:], frames[10:14])
    assert np.array_equal(gen.actions[-3:], actions[10:13])


def test_animate_a_picture_then_play(wm) -> None:
    picture = np.random.default_rng(1).integers(0, 256, (H, W, 3), dtype=np.uint8)
    gen = wm.animate(picture, 0.5, np.array([2, 2, 0, 1]), generator=seeded())
    assert gen.frames.shape == (5, H, W, 3) and gen.generated.all()
    assert np.array_equal(gen.reference[0], picture) and len(gen.rewards) == 4
    again = wm.animate(picture, 0.5, np.array([2, 2, 0, 1]), generator=seeded())
    assert np.array_equal(gen.frames, again.frames)
    assert len(wm.animate(picture, 0.3)) == 1  # no actions: the first frame only


def test_edit_keeps_the_frames_before_k(wm, toy) -> None:
    _, frames, actions, *_ = toy
    cf = wm.edit(frames[:12], actions[:11], 6, new_actions=np.ones(8, int), generator=seeded())
    assert cf.frames.shape == (14, H, W, 3) and cf.tool == "counterfactual"
    assert np.array_equal(cf.frames[:6], frames[:6]) and cf.generated.sum() == 8
    assert np.array_equal(cf.reference, frames[:12])
    sd = wm.edit(frames[:12], actions[:11], 6, strength=0.5, generator=seeded())
    assert sd.frames.shape == (12, H, W, 3) and np.array_equal(sd.frames[:6], frames[:6])
    assert sd.generated.tolist() == [False] * 6 + [True] * 6
    again = wm.edit(frames[:12], actions[:11], 6, strength=0.5, generator=seeded())
    assert np.array_equal(sd.frames, again.frames)


def test_bridge_holds_both_ends(wm, toy) -> None:
    _, frames, *_ = toy
    method = "plan" if isinstance(wm.net, TileWorldNet) else "sample"
    gen = wm.bridge(
        frames[3], frames[9], 5, method=method, offset=(0, 1), candidates=3, generator=seeded()
    )
    assert gen.frames.shape == (7, H, W, 3) and len(gen.actions) == 6
    assert np.array_equal(gen.frames[0], frames[3]) and np.array_equal(gen.frames[-1], frames[9])
    assert gen.generated.tolist() == [False] + [True] * 5 + [False]
    again = wm.bridge(
        frames[3], frames[9], 5, method=method, offset=(0, 1), candidates=3, generator=seeded()
    )
    assert np.array_equal(gen.frames, again.frames)


# ------------------------------------------------------------------ what each kind does
def test_tile_animate_draws_the_picture_with_real_tiles(tile_wm, toy) -> None:
    _, frames, *_ = toy
    book = {bytes(b) for b in tile_wm.net.codebook.numpy()}
    picture = np.random.default_rng(2).integers(0, 256, (H, W, 3), dtype=np.uint8)
    for s in (0.0, 0.5, 1.0):
        first = tile_wm.animate(picture, s, generator=seeded()).frames[0]
        tiles = frames_to_patches(first, TILE).numpy()
        assert all(bytes(t) in book for t in tiles)  # every tile a real one
    # A frame of the game is its own codebook grid: at strength 0 it comes back exactly.
    assert np.array_equal(tile_wm.animate(frames[4], 0.0).frames[0], frames[4])


def test_tile_animate_uses_the_maps_tiles_and_a_real_status_bar(tile_wm, toy) -> None:
    _, frames, actions, *_ = toy
    contexts = {"frames": frames[None, 5:8], "actions": actions[None, 5:7]}
    wm = WorldModel.from_net(
        tile_wm.net, tile_wm.observation_space, SPACE, contexts, sampler=tile_wm.sampler
    )
    map_tiles = {
        bytes(t) for t in frames_to_patches(frames[5:8], TILE)[:, :15].reshape(-1, 48).numpy()
    }
    picture = np.random.default_rng(3).integers(0, 256, (H, W, 3), dtype=np.uint8)
    for s in (0.0, 1.0):
        first = wm.animate(picture, s, generator=seeded()).frames[0]
        assert np.array_equal(first[12:], frames[5][12:])  # the HUD row of a real context
        assert all(bytes(t) in map_tiles for t in frames_to_patches(first, TILE)[:15].numpy())


def test_tile_sdedit_at_strength_zero_is_the_recording(tile_wm, toy) -> None:
    _, frames, actions, *_ = toy
    gen = tile_wm.edit(frames[:15], actions[:14], 3, strength=0.0, generator=seeded())
    assert np.array_equal(gen.frames, frames[:15])  # every tile and shift given


def test_tile_bridge_walks_the_offset_and_finds_it(tile_wm, toy) -> None:
    _, frames, _, _, views = toy
    t0 = next(t for t in range(20) if (views[t + 6] != views[t]).any())
    offset = tuple(int(v) for v in views[t0 + 6] - views[t0])
    gen = tile_wm.bridge(frames[t0], frames[t0 + 6], 5, generator=seeded())
    assert tuple(gen.info["offset"]) == offset  # read off the tiles both show
    assert tuple(np.sum(gen.info["plan"], 0)) == offset
    with pytest.raises(GenerateError, match="one tile"):
        tile_wm.bridge(frames[0], frames[0], 1, offset=(0, 4))
    with pytest.raises(GenerateError, match="sample"):
        tile_wm.bridge(frames[0], frames[1], 2, method="other")


def test_diffusion_animate_at_strength_zero_keeps_the_picture(diffusion_wm) -> None:
    picture = np.random.default_rng(4).integers(0, 256, (H, W, 3), dtype=np.uint8)
    assert np.array_equal(diffusion_wm.animate(picture, 0.0).frames[0], picture)
    redrawn = diffusion_wm.animate(picture, 1.0, generator=seeded()).frames[0]
    assert not np.array_equal(redrawn, picture)


def test_diffusion_refuses_a_planned_bridge(diffusion_wm, toy) -> None:
    _, frames, *_ = toy
    with pytest.raises(GenerateError, match="method='sample'"):
        diffusion_wm.bridge(frames[0], frames[5], 3, method="plan")


def test_path_validity_accepts_real_walks_and_rejects_jumps(toy) -> None:
    _, _, _, labels, _ = toy
    assert path_validity(labels[:20], threshold=0.9, anchor=(1, 2))["valid"]
    jumbled = labels[[0, 15, 3, 28]]
    out = path_validity(jumbled, threshold=0.9, anchor=(1, 2))
    assert not out["valid"] and len(out["steps"]) == 3


# ------------------------------------------------------------------ bad input
def test_bad_pictures_clips_and_action_files_get_clear_errors(tile_wm, toy, tmp_path) -> None:
    _, frames, actions, *_ = toy
    shape = (H, W, 3)
    with pytest.raises(GenerateError, match="dtype float64"):
        check_picture(np.zeros(shape), shape)
    with pytest.raises(GenerateError, match=f"needs {H}x{W}x3"):
        tile_wm.animate(np.zeros((32, 32, 3), np.uint8), 0.5)
    with pytest.raises(GenerateError, match="a path"):
        tile_wm.animate("picture.png", 0.5)
    with pytest.raises(GenerateError, match="strength"):
        tile_wm.animate(frames[0], 1.5)
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(GenerateError, match="cannot read the picture"):
        read_picture(tmp_path / "notes.png", shape)
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "big.png")
    assert read_picture(tmp_path / "big.png", shape).shape == shape  # resized
    with pytest.raises(GenerateError, match="empty clip"):
        tile_wm.extend(frames[:0], actions[:0], actions[:3])
    with pytest.raises(GenerateError, match="another game or size"):
        tile_wm.extend(np.zeros((3, 8, 8, 3), np.uint8), actions[:2], actions[:3])
    with pytest.raises(GenerateError, match="clip's actions"):
        tile_wm.extend(frames[:4], actions[:2], actions[:3])
    with pytest.raises(GenerateError, match="empty"):
        tile_wm.extend(frames[:4], actions[:3], actions[:0])
    with pytest.raises(GenerateError, match="start 9"):
        tile_wm.edit(frames[:6], actions[:5], 9, strength=0.5)
    with pytest.raises(GenerateError, match="either"):
        tile_wm.edit(frames[:6], actions[:5], 2)
    np.save(tmp_path / "a.npy", np.array([1, 2, 3]))
    with pytest.raises(GenerateError, match="holds 3 actions; this needs 5"):
        read_actions(tmp_path / "a.npy", SPACE, 5)
    (tmp_path / "a.txt").write_text("1\njump\n")
    with pytest.raises(GenerateError, match="'jump' is not an integer or one of noop"):
        read_actions(tmp_path / "a.txt", SPACE, 2, ["noop", "left", "right", "up", "down"])
    (tmp_path / "a.json").write_text(json.dumps([0, 9]))
    with pytest.raises(GenerateError, match="actions in"):
        read_actions(tmp_path / "a.json", SPACE, 2)
    (tmp_path / "b.txt").write_text("left\nup\n0\n")
    names = ["noop", "left", "right", "up", "down"]
    assert read_actions(tmp_path / "b.txt", SPACE, 3, names).tolist() == [1, 3, 0]


# ------------------------------------------------------------------ outputs and the command
def test_mp4_side_by_side(tile_wm, toy, tmp_path) -> None:
    _, frames, actions, *_ = toy
    gen = tile_wm.edit(frames[:8], actions[:7], 4, new_actions=actions[3:7], generator=seeded())
    video = side_by_side(gen, scale=2)
    assert video.shape == (8, H * 2 + 2, W * 2 * 2 + 2, 3)  # bar on top; two panes and a gap
    write_mp4(tmp_path / "out.mp4", gen, fps=10, scale=2)
    with av.open(str(tmp_path / "out.mp4")) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == 8 and decoded[0].shape == (34, 82, 3)


def test_worldsim_generate_commands(tile_wm, toy, tmp_path, capsys) -> None:
    _, frames, *_ = toy
    release = tmp_path / "release"
    save_release(
        release,
        tile_wm.net,
        observation_space=tile_wm.observation_space,
        action_space=SPACE,
        metadata={"game": "toy"},
    )
    Image.fromarray(frames[3]).save(tmp_path / "pic.png")
    (tmp_path / "acts.txt").write_text("2\n2\n0\n")
    base = [
        "generate",
        "animate",
        "--checkpoint",
        str(release),
        "--image",
        str(tmp_path / "pic.png"),
        "--strength",
        "0.5",
        "--out",
        str(tmp_path / "a.mp4"),
        "--npz",
        str(tmp_path / "a.npz"),
    ]
    assert cli([*base, "--actions", str(tmp_path / "acts.txt")]) == 0
    out = np.load(tmp_path / "a.npz")
    assert out["frames"].shape == (4, H, W, 3) and (tmp_path / "a.mp4").stat().st_size > 0
    assert cli([*base, "--actions", str(tmp_path / "acts.txt"), "--frames", "5"]) == 2
    assert "holds 3 actions; this needs 5" in capsys.readouterr().err
    Image.fromarray(frames[9]).save(tmp_path / "end.png")
    assert (
        cli(
            [
                "generate",
                "bridge",
                "--checkpoint",
                str(release),
                "--start-image",
                str(tmp_path / "pic.png"),
                "--end-image",
                str(tmp_path / "end.png"),
                "--frames",
                "6",
                "--offset",
                "0",
                "1",
                "--out",
                str(tmp_path / "b.mp4"),
            ]
        )
        == 0
    )
    assert "bridge: 8 frames (6 generated, 2 held)" in capsys.readouterr().out


def test_play_starts_from_an_animated_picture(crafter_release, tmp_path) -> None:
    import play

    png = tmp_path / "start.png"
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(png)

    def player(*extra):
        argv = ["--checkpoint", str(crafter_release), "--start-image", str(png), "--scale", "1"]
        p = play.Player(play.build_parser().parse_args([*argv, *extra]))
        p.reset()
        return p.panes[0].frame

    assert (player("--strength", "0") == 200).all()  # strength 0 keeps the picture
    assert not (player("--strength", "1", "--seed", "3") == 200).all()  # 1 re-draws it
    with pytest.raises(play.PlayError, match="--strength animates the --start-image"):
        play.Player(
            play.build_parser().parse_args(
                ["--checkpoint", str(crafter_release), "--strength", "0.5"]
            )
        )


def test_worldsim_generate_from_a_video(tile_wm, toy, tmp_path, capsys) -> None:
    from worldsim.bench.gallery import write_video

    _, frames, actions, *_ = toy
    release = tmp_path / "release"
    save_release(
        release,
        tile_wm.net,
        observation_space=tile_wm.observation_space,
        action_space=SPACE,
        metadata={"game": "toy"},
    )
    write_video(tmp_path / "clip.mp4", frames[:6], fps=10)
    np.save(tmp_path / "clip.npy", actions[:5])
    base = [
        "generate",
        "extend",
        "--checkpoint",
        str(release),
        "--video",
        str(tmp_path / "clip.mp4"),
        "--frames",
        "4",
        "--out",
        str(tmp_path / "e.mp4"),
        "--npz",
        str(tmp_path / "e.npz"),
    ]
    assert cli([*base, "--clip-actions", str(tmp_path / "clip.npy")]) == 0
    out = np.load(tmp_path / "e.npz")
    assert out["frames"].shape == (10, H, W, 3) and out["generated"].sum() == 4
    np.save(tmp_path / "short.npy", actions[:3])
    assert cli([*base, "--clip-actions", str(tmp_path / "short.npy")]) == 2
    assert "holds 3 actions; this needs 5" in capsys.readouterr().err
    assert cli([*base, "--backward"]) == 2
    assert "time-reversed" in capsys.readouterr().err
