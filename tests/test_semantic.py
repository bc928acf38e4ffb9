"""Semantic fidelity: tile labels, the tile model, tile accuracy, scroll control, long-horizon realism.

A toy tile game with known rules (a view of 3x5 tiles of 4x4 px over a world map, moves
blocked by trees and water) gives cases with exact answers: a model that knows the rules
scores 1.0, one that freezes the last frame scrolls never.
"""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from worldsim.bench.fidelity import evaluate_rollouts
from worldsim.bench.scoring import events
from worldsim.bench.semantic import (
    SHIFTS,
    classify_scroll,
    in_view_mask,
    shift_labels,
    tile_scores,
)
from worldsim.bench.semantic_eval import terrain
from worldsim.bench.tiles import cut_tiles, load_tile_model, save_tile_model
from worldsim.bench.tiles_training import train_tile_model
from worldsim.data import EpisodeStore
from worldsim.errors import StoreError, WorldsimError

TILE, R, C = 4, 3, 5  # map tiles of the toy view; one inventory row below
NAMES = ["none", "grass", "tree", "water", "cow", "player"]
COLOURS = np.array(
    [[127, 127, 127], [40, 180, 40], [30, 90, 20], [40, 60, 220], [240, 240, 240], [250, 220, 0]]
)
MOVES = {1: (0, -1), 2: (0, 1), 3: (-1, 0), 4: (1, 0)}  # left, right, up, down
SPACE = gym.spaces.Discrete(5)
SPEC = {
    "arrays": ["semantic", "view_pos"],
    "semantic": {
        "names": NAMES,
        "grid": [R, C],
        "frame_grid": [R + 1, C],
        "tile": [TILE, TILE],
        "origin": [0, 0],
        "background": ["none", "grass"],
        "anchor": [R // 2, C // 2],
    },
    "moves": {str(k): list(v) for k, v in MOVES.items()},
}


class ToyWorld:
    """A world map of tile classes; the player sits at the view's centre tile."""

    def __init__(self, seed: int = 0, size: tuple[int, int] = (14, 18)) -> None:
        rng = np.random.default_rng(seed)
        self.map = rng.choice([1, 2, 3, 4], size=size, p=[0.6, 0.15, 0.1, 0.15])
        self.pos_of = {}
        for top in range(size[0] - R + 1):
            for left in range(size[1] - C + 1):
                self.pos_of[self.render((top, left))[0].tobytes()] = (top, left)

    def labels(self, view_pos) -> np.ndarray:
        top, left = view_pos
        out = self.map[top : top + R, left : left + C].copy()
        out[R // 2, C // 2] = 5
        return out

    def render(self, view_pos) -> tuple[np.ndarray, np.ndarray]:
        labels = self.labels(view_pos)
        frame = np.zeros(((R + 1) * TILE, C * TILE, 3), np.uint8)
        tex = (np.indices((TILE, TILE)).sum(0) % 2 * 12)[..., None]  # a little checker texture
        for r, c in np.ndindex(R, C):
            frame[r * TILE : (r + 1) * TILE, c * TILE : (c + 1) * TILE] = np.clip(
                COLOURS[labels[r, c]] - tex, 0, 255
            )
        return frame, labels

    def step(self, view_pos, action: int):
        d = MOVES.get(int(action), (0, 0))
        top, left = view_pos[0] + d[0], view_pos[1] + d[1]
        inside = 0 <= top <= self.map.shape[0] - R and 0 <= left <= self.map.shape[1] - C
        if not inside or self.map[top + R // 2, left + C // 2] in (2, 3):
            return tuple(view_pos)  # blocked by a tree, water or the edge
        return (top, left)

    def episode(self, rng: np.random.Generator, T: int):
        free = np.argwhere(self.map[R // 2 : -R // 2 - 1, C // 2 : -C // 2 - 1] == 1)
        pos = tuple(int(v) for v in free[rng.integers(len(free))])
        actions = np.repeat(rng.integers(0, 5, size=T // 3 + 1), 3)[:T]  # runs of 3
        frames, labels, views = [], [], []
        for t in range(T + 1):
            f, lab = self.render(pos)
            frames.append(f), labels.append(lab), views.append(pos)
            if t < T:
                pos = self.step(pos, actions[t])
        return np.stack(frames), actions, np.stack(labels), np.array(views, np.int32)


class ToyOracle:
    """Knows the toy world's rules: the best any world model can do."""

    action_space = SPACE

    def __init__(self, world: ToyWorld) -> None:
        self.world = world

    def generate(self, context_frames, context_actions, future_actions, **_):
        future_actions = np.asarray(future_actions)
        B, N = future_actions.shape
        frames = np.zeros((B, N, *context_frames.shape[2:]), np.uint8)
        for b in range(B):
            pos = self.world.pos_of[np.ascontiguousarray(context_frames[b, -1]).tobytes()]
            for n in range(N):
                pos = self.world.step(pos, future_actions[b, n])
                frames[b, n] = self.world.render(pos)[0]
        zeros = np.zeros((B, N), np.float32)
        return {"frames": frames, "rewards": zeros, "terminated": zeros.astype(bool)}


class Frozen(ToyOracle):
    """Repeats the last context frame: never scrolls."""

    def generate(self, context_frames, context_actions, future_actions, **_):
        out = super().generate(context_frames, context_actions, future_actions)
        out["frames"][:] = np.asarray(context_frames)[:, -1:]
        return out


class TwoAvatars(ToyOracle):
    """Knows the rules, but draws a second player in the view's top-left tile."""

    def generate(self, context_frames, context_actions, future_actions, **_):
        out = super().generate(context_frames, context_actions, future_actions)
        centre = out["frames"][:, :, TILE * (R // 2) : TILE * (R // 2 + 1), TILE * (C // 2) :]
        out["frames"][:, :, :TILE, :TILE] = centre[:, :, :, :TILE]
        return out


class FrozenUnlessTold(Frozen):
    """Never scrolls by itself; told the view motion (as a tile model can be), follows it."""

    takes_view_motion = True

    def generate(self, context_frames, context_actions, future_actions, view_motion=None, **_):
        out = super().generate(context_frames, context_actions, future_actions)
        if view_motion is not None:
            for b in range(len(out["frames"])):
                pos = self.world.pos_of[np.ascontiguousarray(context_frames[b, -1]).tobytes()]
                for n, d in enumerate(view_motion[b]):
                    pos = (pos[0] + int(d[0]), pos[1] + int(d[1]))
                    out["frames"][b, n] = self.world.render(pos)[0]
        return out


def toy_store(path, world: ToyWorld, episodes: int = 12, T: int = 40, seed: int = 0):
    obs = gym.spaces.Box(0, 255, ((R + 1) * TILE, C * TILE, 3), np.uint8)
    store = EpisodeStore.create(
        path, game="toy", action_space=SPACE, observation_space=obs, fps=10, label_spec=SPEC
    )
    rng = np.random.default_rng(seed)
    for _ in range(episodes):
        frames, actions, labels, views = world.episode(rng, T)
        store.append(frames, actions, np.zeros(T), np.zeros(T, bool), np.zeros(T, bool),
                     labels={"semantic": labels, "view_pos": views})  # fmt: skip
    return store


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    world = ToyWorld()
    path = tmp_path_factory.mktemp("toy")
    store = toy_store(path / "store", world)
    tiles = train_tile_model(store, steps=300, batch_size=256, bank_size=5000)
    return world, store, tiles, path


# ------------------------------------------------------------------ metrics on labels alone
def test_metrics_on_constructed_labels() -> None:
    # A world of vertical stripes (the class is the column): every column differs.
    world = (np.arange(40) % 19)[None].repeat(12, 0)
    views = np.array([[2, 3 + h] for h in range(8)])  # the view walks right one tile a step
    labels = np.stack([world[t : t + R, left : left + C] for t, left in views])[
        None
    ]  # [1, 8, R, C]
    K, H = 2, 6
    ctx, fut = labels[:, :K], labels[:, K:]
    background = [0]
    # A generated clip equal to the real one scores 1.0 everywhere.
    same = tile_scores(fut[None], fut, ctx, views[None, :K], views[None, K:], background)
    for subset in same.values():
        assert all(m == 1.0 for m in subset["model"]["mean"] if m is not None)
    # Lagging one tile behind (the model never moved after the context): copy-last's score, 0.
    lag = tile_scores(np.repeat(ctx[:, -1:], H, 1)[None], fut, ctx, views[None, :K],
                      views[None, K:], background)  # fmt: skip
    assert lag["map"]["model"]["mean"] == lag["map"]["copy_last"]["mean"] == [0.0] * H
    # The oracle scroller knows every tile but the h columns that came into view.
    assert np.allclose(lag["map"]["oracle"]["mean"], [max(C - h, 0) / C for h in range(1, H + 1)])
    # Tiles seen in the context: the oracle gets them all right.
    assert all(m == 1.0 for m in lag["seen"]["oracle"]["mean"] if m is not None)
    # A clip of uniform grass scores 0 on object tiles.
    grass = np.full_like(fut, 1)
    obj = tile_scores(grass[None], fut, ctx, views[None, :K], views[None, K:], background=[1])
    assert obj["objects"]["model"]["mean"] == [0.0] * H


def test_terrain_tells_stripes_and_speckle_from_real_ground() -> None:
    # Real ground: blobs of 3x3 tiles of one class each, seen by 16 clips of 10 steps.
    rng = np.random.default_rng(0)
    N, T, K, classes = 16, 10, 2, 4
    blobs = rng.integers(0, classes, size=(N, T, 3, 3))
    real = blobs.repeat(3, 2).repeat(3, 3)[:, :, :R, :C]  # [N, T, R, C]
    same = terrain(real[None, :, K:], real, K, classes)
    for q in same["by_quarter"]:
        assert q["class_tv"] == q["across_tv"] == q["down_tv"] == 0.0
        assert q["same_across"]["generated"] == q["same_across"]["real"] > 0.5
    # Stripes: each row one class, right across; the same classes, in the wrong pattern.
    rows = rng.integers(0, classes, size=(1, N, T - K, R, 1)).repeat(C, -1)
    stripes = terrain(rows, real, K, classes)["by_quarter"][-1]
    assert stripes["same_across"]["generated"] == 1.0
    assert stripes["down_tv"] > 0.3 and stripes["class_tv"] < stripes["down_tv"]
    # Speckle: every tile drawn on its own.
    speckle = terrain(rng.integers(0, classes, size=(1, N, T - K, R, C)), real, K, classes)
    last = speckle["by_quarter"][-1]
    assert last["same_across"]["generated"] < 0.35 and last["across_tv"] > 0.3
    # The floor (two halves of the real clips) is a real distance, below the wrong patterns'.
    assert 0 < last["floor"]["across_tv"] < last["across_tv"]


def test_scroll_classifier_recovers_known_shifts_and_blocked() -> None:
    rng = np.random.default_rng(0)
    world = rng.integers(1, 6, size=(20, 20))
    top, left = 8, 8
    prev = world[top : top + R, left : left + C]
    for j, (dr, dc) in enumerate(SHIFTS):
        nxt = world[top + dr : top + dr + R, left + dc : left + dc + C]
        assert classify_scroll(prev, nxt, anchor=(1, 2)) == j  # 0: no scroll (blocked)
        moved = shift_labels(prev, (dr, dc))
        known = moved >= 0
        assert (moved[known] == nxt[known]).all() and known.sum() == (R - abs(dr)) * (C - abs(dc))
    flat = np.ones((R, C), int)  # plain grass: nobody can tell
    assert classify_scroll(flat, flat) == -1
    # A cow (class 7) that steps left in a field of grass looks like the view scrolling right,
    # unless the classes that move by themselves are left out: then nobody can tell either.
    cow, stepped = flat.copy(), flat.copy()
    cow[0, 3], stepped[0, 2] = 7, 7
    assert classify_scroll(cow, stepped) > 0
    assert classify_scroll(cow, stepped, movers=[7]) == -1
    nxt = world[top : top + R, left + 1 : left + 1 + C].copy()
    nxt[2, 0] = 7  # a cow walks into a view that really scrolled: the scroll still reads
    assert classify_scroll(prev, nxt, anchor=(1, 2), movers=[7]) == int(
        np.flatnonzero((SHIFTS == (0, 1)).all(-1))[0]
    )


def test_tiles_seen_in_context_count_after_walking_away_and_back() -> None:
    context = np.array([[[0, 0], [0, 1]]])  # [N=1, K=2, 2]
    later = np.array([[[0, 6], [0, 1]]])  # out of sight to the right, then back
    seen = in_view_mask(context, later, (R, C))
    assert not seen[0, 0].any() and seen[0, 1].all()


def test_reward_events_split_unlocks_and_health() -> None:
    real = np.array([[0.0, 1.0, -0.1, 0.9, 0.0, 1.1]])
    ev = events(real.copy(), np.zeros_like(real, bool), real, np.zeros_like(real, bool), 0.05)
    assert ev["reward_unlock"]["support"] == 3 and ev["reward_unlock"]["recall"] == 1.0
    assert ev["reward_health"]["support"] == 3 and ev["reward_health"]["precision"] == 1.0
    none = events(np.zeros_like(real), np.zeros_like(real, bool), real, real < 0, 0.05)
    assert none["reward_unlock"]["recall"] == 0.0 and none["reward_unlock"]["precision"] is None


# ------------------------------------------------------------------ the tile model
def test_tile_model_learns_round_trips_and_judges_realism(toy, tmp_path) -> None:
    world, _, tiles, _ = toy
    assert tiles.metrics["held_out"]["accuracy"] == 1.0
    frames, _, labels, _ = world.episode(np.random.default_rng(5), 10)
    assert (tiles.classify(frames) == labels).all()
    assert tiles.looks_real(frames).all()
    noise = np.random.default_rng(0).integers(0, 256, frames.shape, dtype=np.uint8)
    assert tiles.looks_real(noise).mean() < 0.05
    t = cut_tiles(frames[:1], tiles.grid)  # [1, R+1, C, 48]
    assert t.shape == (1, R + 1, C, TILE * TILE * 3)
    assert (
        t[0, 1, 2].reshape(TILE, TILE, 3) == frames[0, TILE : 2 * TILE, 2 * TILE : 3 * TILE]
    ).all()
    save_tile_model(tmp_path / "tiles.safetensors", tiles)
    again = load_tile_model(tmp_path / "tiles.safetensors")
    assert (again.classify(noise) == tiles.classify(noise)).all()
    assert np.allclose(again.distances(noise), tiles.distances(noise))
    assert again.names == NAMES and again.threshold == tiles.threshold
    with pytest.raises(WorldsimError, match="train-tiles"):
        load_tile_model(tmp_path / "missing.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not a model")
    with pytest.raises(WorldsimError, match="not a readable tile model"):
        load_tile_model(tmp_path / "bad.safetensors")
    with pytest.raises(WorldsimError, match="another game"):
        tiles.classify(np.zeros((2, 8, 8, 3), np.uint8))


def test_store_without_labels_gets_a_realism_bank_only(tmp_path) -> None:
    obs = gym.spaces.Box(0, 255, (8, 8, 3), np.uint8)
    store = EpisodeStore.create(tmp_path / "s", game="x", action_space=SPACE,
                                observation_space=obs, fps=10)  # fmt: skip
    rng = np.random.default_rng(0)
    for _ in range(3):
        store.append(rng.integers(0, 4, (6, 8, 8, 3), dtype=np.uint8) * 60, np.zeros(5, int),
                     np.zeros(5), np.zeros(5, bool), np.zeros(5, bool))  # fmt: skip
    assert store.labels(0) == {}
    with pytest.raises(StoreError, match="--tile"):
        train_tile_model(store)
    bank = train_tile_model(store, tile=(4, 4))
    assert bank.classifier is None and bank.looks_real(store.episode(0).frames).mean() > 0.9
    with pytest.raises(WorldsimError, match="no classifier"):
        bank.classify(store.episode(0).frames)
    # Labels without the store's label spec, or of the wrong length: clear errors, nothing written.
    with pytest.raises(StoreError, match="label_spec"):
        store.append(np.zeros((3, 8, 8, 3), np.uint8), [0, 0], [0, 0], [0, 0], [0, 0],
                     labels={"semantic": np.zeros((3, 2, 2))})  # fmt: skip
    store.set_label_spec(SPEC)
    with pytest.raises(StoreError, match="one entry per frame"):
        store.append(np.zeros((3, 8, 8, 3), np.uint8), [0, 0], [0, 0], [0, 0], [0, 0],
                     labels={"semantic": np.zeros((2, 2, 2))})  # fmt: skip
    with pytest.raises(StoreError, match=r"another layout \(they differ in \[.arrays.*relabel"):
        store.set_label_spec({"arrays": ["other"]})
    assert len(store) == 3


# ------------------------------------------------------------------ the protocol
def _run(model, store, tiles, **kw):
    clips = [store.clip(i, 0, 30) for i in range(len(store))]
    return evaluate_rollouts(
        model,
        np.stack([c.frames for c in clips]),
        np.stack([c.actions for c in clips]),
        rewards=np.stack([c.rewards for c in clips]),
        terminated=np.stack([c.terminated for c in clips]),
        context=3,
        horizon=20,
        labels={k: np.stack([c.labels[k] for c in clips]) for k in ("semantic", "view_pos")},
        label_spec=store.label_spec,
        tiles=tiles,
        **kw,
    )


def test_a_model_that_knows_the_rules_scores_perfectly(toy) -> None:
    world, store, tiles, _ = toy
    r = _run(ToyOracle(world), store, tiles, long_horizon=40, long_horizon_clips=4)
    sem = r.semantic
    assert set(sem["applies"]) == {"realism", "semantic", "scroll"}
    for subset in sem["tiles"]["curves"].values():
        assert all(m == 1.0 for m in subset["model"]["mean"] if m is not None)
    sc = sem["scroll"]
    assert sc["agreement"]["all"]["n"] > 20 and sc["agreement"]["all"]["share"] == 1.0
    assert sc["false_scroll"]["all"]["n"] > 5 and sc["false_scroll"]["all"]["share"] == 0.0
    assert sc["opposite_real_way"]["all"]["share"] == 0.0
    assert sem["long_horizon"]["noop"]["min_map_real"] == 1.0
    for block in sem["long_horizon"].values():  # one player, at the centre, all along
        assert block["avatars"] == [1.0] * len(block["steps"]) and not any(block["avatar_missing"])
    two = _run(TwoAvatars(world), store, tiles, long_horizon=40, long_horizon_clips=4).semantic
    assert two["long_horizon"]["random"]["avatars"] == [2.0] * len(block["steps"])
    assert sem["walk"]["n"] > 10 and sem["walk"]["all"] == 1.0  # the open-loop walk walks on
    assert all(q["class_tv"] == 0.0 for q in sem["terrain"]["by_quarter"])  # the real ground
    assert sem["static_frames"]["n"] > 5 and sem["static_frames"]["median_db"] >= 40
    assert sem["verdict"]["checks"]["walk_keeps_scrolling"]
    assert sem["verdict"]["checks"]["static_frames"]
    assert (
        sem["verdict"]["checks"]["false_scroll"] and sem["verdict"]["checks"]["long_horizon_noop"]
    )
    assert r.long_gallery["noop"]["frames"].shape[:2] == (
        4,
        len(sem["long_horizon"]["noop"]["steps"]),
    )
    json.dumps(r.to_dict())  # no arrays left in what goes to report.json


def test_a_frozen_model_is_seen_to_fail(toy) -> None:
    world, store, tiles, _ = toy
    r = _run(Frozen(world), store, tiles)
    sem = r.semantic
    assert sem["scroll"]["agreement"]["all"]["share"] == 0.0
    assert (
        sem["tiles"]["curves"]["map"]["model"]["mean"]
        == sem["tiles"]["curves"]["map"]["copy_last"]["mean"]
    )
    assert sem["verdict"]["checks"]["scroll_agreement"] is False
    assert any("Scroll" in t and "NOT" in t for t in sem["verdict"]["text"])
    assert sem["walk"]["all"] == 0.0 and sem["verdict"]["checks"]["walk_keeps_scrolling"] is False
    assert "tiles_view_given" not in sem  # it cannot be told the view motion
    # Told where the view went, a model with a perfect memory keeps every object seen.
    told = _run(FrozenUnlessTold(world), store, tiles).semantic
    seen = told["tiles_view_given"]["curves"]["seen_objects"]["model"]["mean"]
    assert all(m == 1.0 for m in seen if m is not None)
    assert min(m for m in told["tiles"]["curves"]["seen_objects"]["model"]["mean"] if m) < 0.9
    assert any("real view motion given" in t for t in told["verdict"]["text"])
    # Without a tile model the report says why the semantic metrics are missing.
    bare = _run(Frozen(world), store, None)
    assert "train-tiles" in bare.semantic["skipped"] and "tiles" not in bare.semantic


def test_commands_train_tiles_and_report_semantics(toy, tmp_path, capsys) -> None:
    from worldsim.checkpoint import save_release
    from worldsim.cli import main
    from worldsim.model import WorldModelNet, preset

    _, store, _, _ = toy
    tiles = tmp_path / "tiles.safetensors"
    assert main(["bench", "train-tiles", "--data", store.path, "--out", str(tiles),
                 "--steps", "200", "--bank-size", "2000"]) == 0  # fmt: skip
    assert "held-out tile accuracy 1.0000" in capsys.readouterr().out
    torch.manual_seed(0)
    save_release(
        tmp_path / "ck",
        WorldModelNet(preset("tiny", height=(R + 1) * TILE, width=C * TILE), SPACE),
        observation_space=store.observation_space,
        action_space=SPACE,
    )
    out = tmp_path / "bench"
    assert main(["bench", "fidelity", "--checkpoint", str(tmp_path / "ck"), "--data", store.path,
                 "--split", "all", "--episodes", "3", "--context", "3", "--horizon", "4",
                 "--samples", "1", "--tiles", str(tiles), "--long-horizon", "8",
                 "--long-horizon-clips", "2", "--gallery", "2", "--no-loops",
                 "--out", str(out)]) == 0  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    assert {"tiles", "scroll", "long_horizon", "verdict"} <= set(report["semantic"])
    md = (out / "report.md").read_text()
    verdict = md.split("## Verdict")[1]
    assert verdict.index("Object tiles") < verdict.index("PSNR, all frames")  # semantics lead
    assert "## Scroll control" in md and "## Long play" in md
    assert "tile accuracy, scroll control" in verdict and "Not applicable" not in verdict
    videos = {v.name for v in (out / "gallery").glob("*.mp4")}
    assert {"clip_000.mp4", "long_noop_000.mp4", "long_random_001.mp4"} <= videos
    with pytest.raises(SystemExit) as bad:  # refused at parse time, naming the flag
        main(["bench", "train-tiles", "--data", store.path, "--out", str(tiles), "--quantile", "2"])
    assert bad.value.code == 2 and "--quantile" in capsys.readouterr().err


# ------------------------------------------------------------------ real Crafter recordings
def constants_achievements() -> list[str]:
    from crafter import constants

    return list(constants.achievements)


def test_crafter_records_tile_labels(tmp_path, capsys) -> None:
    pytest.importorskip("crafter")
    from envs.collect import CollectConfig, collect
    from worldsim.cli import main

    out = str(tmp_path / "c")
    collect(CollectConfig(game="crafter", episodes=1, out=out, policy="explorer", max_steps=60),
            progress=False)  # fmt: skip
    store = EpisodeStore.open(out)
    spec = store.label_spec
    names = spec["semantic"]["names"]
    ep = store.episode(0)
    sem, views = ep.labels["semantic"], ep.labels["view_pos"]
    assert sem.shape == (61, 7, 9) and views.shape == (61, 2)
    assert (sem[:, 3, 4] == names.index("player")).all()  # the player is always at the centre
    moves = {int(k): tuple(v) for k, v in spec["moves"].items()}
    for t, a in enumerate(ep.actions):
        d = tuple(views[t + 1] - views[t])
        assert d == (0, 0) or d == moves[int(a)]  # the view moves only as the key says
    assert any(d != (0, 0) for d in map(tuple, np.diff(views, axis=0)))
    clip = store.clip(0, 10, 5)
    assert (clip.labels["semantic"] == sem[10:15]).all()
    # Achievement counters: a step pays its +1 exactly where one of them first leaves 0; the
    # last counter, falling asleep, pays nothing.
    counts = ep.labels["events"]
    assert counts.shape == (61, 23) and (np.diff(counts, axis=0) >= 0).all()
    first = ((counts[:-1, :22] == 0) & (counts[1:, :22] > 0)).any(1)
    assert ((np.asarray(ep.rewards) >= 0.5) == first).all()
    assert spec["events"]["names"] == [*sorted(constants_achievements()), "fall_asleep"]
    assert spec["events"]["unpaid"] == ["fall_asleep"]
    assert main(["data", "info", out]) == 0
    assert "semantic, view_pos, events (1 episodes)" in capsys.readouterr().out
