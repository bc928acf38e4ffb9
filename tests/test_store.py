"""The episode store: round trips, clips, splits, crash safety, fsspec URLs and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from worldsim.data import EpisodeStore
from worldsim.errors import StoreError

OBS = gym.spaces.Box(0, 255, (16, 24, 3), np.uint8)


def make_episode(T: int, seed: int = 0, space: gym.Space | None = None):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (T + 1, 16, 24, 3), dtype=np.uint8)
    space = space or gym.spaces.Discrete(5)
    space.seed(seed)
    actions = [space.sample() for _ in range(T)]
    rewards = rng.normal(size=T).astype(np.float32)
    terminated = np.zeros(T, bool)
    terminated[-1] = True
    return frames, actions, rewards, terminated, np.zeros(T, bool)


def new_store(path, space=None, game="toy") -> EpisodeStore:
    return EpisodeStore.create(
        str(path),
        game=game,
        action_space=space or gym.spaces.Discrete(5),
        observation_space=OBS,
        fps=15,
    )


def test_round_trip_and_clip(tmp_path):
    store = new_store(tmp_path / "s")
    eps = [make_episode(T, seed=T) for T in (40, 7, 33)]
    for ep in eps:
        store.append(*ep, info={"seed": 1, "return": np.float32(2.5)})
    reopened = EpisodeStore.open(str(tmp_path / "s"))
    assert len(reopened) == 3 and reopened.lengths.tolist() == [40, 7, 33]
    assert reopened.num_frames == 41 + 8 + 34
    assert (
        reopened.fps == 15
        and reopened.game == "toy"
        and reopened.action_space == gym.spaces.Discrete(5)
    )
    for i, (frames, actions, rewards, _, _) in enumerate(eps):
        ep = reopened.episode(i)
        np.testing.assert_array_equal(ep.frames, frames)
        np.testing.assert_array_equal(ep.actions, actions)
        np.testing.assert_array_equal(ep.rewards, rewards)
        assert ep.terminated.dtype == bool and ep.terminated[-1]
    assert reopened.info(0) == {"seed": 1, "return": 2.5}
    # clips across chunk borders (16 frames per chunk) equal slices of the episode
    frames, actions, rewards, *_ = eps[0]
    for start, length in [(0, 16), (10, 16), (15, 2), (16, 16), (25, 16), (0, 41), (40, 1)]:
        clip = reopened.clip(0, start, length)
        np.testing.assert_array_equal(clip.frames, frames[start : start + length])
        np.testing.assert_array_equal(clip.actions, np.asarray(actions)[start : start + length - 1])
        np.testing.assert_array_equal(clip.rewards, rewards[start : start + length - 1])
    with pytest.raises(IndexError, match="outside episode 0"):
        reopened.clip(0, 30, 16)
    with pytest.raises(IndexError, match="out of range"):
        reopened.episode(3)


def test_fast_clip_path_equals_zarr_indexing(tmp_path):
    store = new_store(tmp_path / "s")
    frames, *rest = make_episode(50)
    frames[16:32] = 0  # an all-zero chunk: zarr does not write it
    store.append(frames, *rest)
    z = store._group(0)["frames"]
    for start in range(0, 40, 3):
        np.testing.assert_array_equal(store.clip(0, start, 11).frames, z[start : start + 11])
    assert store._reader._layouts["episodes/000000/frames"] is not None  # the fast path was used


def test_dict_actions(tmp_path):
    space = gym.spaces.Dict(
        {"forward": gym.spaces.Discrete(2), "camera": gym.spaces.Box(-180, 180, (2,), np.float32)}
    )
    store = new_store(tmp_path / "s", space=space, game="minecraft")
    frames, actions, *rest = make_episode(20, space=space)
    store.append(frames, actions, *rest)
    clip = store.clip(0, 3, 5)
    assert set(clip.actions) == {"forward", "camera"}
    assert clip.actions["camera"].shape == (4, 2)
    np.testing.assert_allclose(
        clip.actions["camera"], np.stack([a["camera"] for a in actions])[3:7]
    )


def test_splits_are_stable_under_appends(tmp_path):
    store = new_store(tmp_path / "s")
    for s in range(30):
        store.append(*make_episode(2, seed=s))
    before = {name: store.split(name, val=0.2, test=0.2) for name in ("train", "val", "test")}
    assert sorted(i for idx in before.values() for i in idx) == list(range(30))
    assert all(before[name] for name in before)
    for s in range(30, 40):
        store.append(*make_episode(2, seed=s))
    for name, idx in before.items():
        assert set(idx) <= set(store.split(name, val=0.2, test=0.2))


def test_crash_while_writing_loses_only_that_episode(tmp_path):
    store = new_store(tmp_path / "s")
    store.append(*make_episode(10))
    # a writer that died mid-episode: a group without the `complete` flag, with a torn array
    half = store._root["episodes"].create_group("000001")
    half.attrs.update({"length": 10, "complete": False})
    half.create_array("frames", shape=(11, 16, 24, 3), dtype="uint8")
    torn = tmp_path / "s" / "episodes" / "000002"
    torn.mkdir()
    (torn / "zarr.json").write_text('{"zarr_format": 3, "node_type": "gro')  # torn metadata
    reopened = EpisodeStore.open(str(tmp_path / "s"), mode="a")
    assert len(reopened) == 1 and reopened.incomplete == ["000001", "000002"]
    assert reopened.remove_incomplete() == ["000001", "000002"]
    assert reopened.append(*make_episode(5)) == 1
    assert EpisodeStore.open(str(tmp_path / "s")).lengths.tolist() == [10, 5]


def test_fsspec_url(tmp_path):
    url = "memory://worldsim-test/store"
    store = new_store(url)
    frames, *rest = make_episode(20)
    store.append(frames, *rest)
    reopened = EpisodeStore.open(url)
    np.testing.assert_array_equal(reopened.clip(0, 2, 16).frames, frames[2:18])


def test_bad_input_is_rejected_and_nothing_is_damaged(tmp_path):
    store = new_store(tmp_path / "s")
    good = make_episode(10)
    store.append(*good)
    frames, actions, rewards, terminated, truncated = make_episode(10)
    cases = [
        ((frames.astype(np.float32), actions, rewards, terminated, truncated), "uint8"),
        ((frames[:, :8], actions, rewards, terminated, truncated), "expected"),
        ((frames, actions[:-1], rewards, terminated, truncated), "shape"),
        ((frames, actions, rewards[:-1], terminated, truncated), "rewards has shape"),
        ((frames, [7] * 10, rewards, terminated, truncated), "outside the action space"),
        ((frames, actions, rewards, np.full(10, 3), truncated), "booleans"),
    ]
    for args, message in cases:
        with pytest.raises(StoreError, match=message):
            store.append(*args)
    reopened = EpisodeStore.open(str(tmp_path / "s"))
    assert len(reopened) == 1 and reopened.incomplete == []
    np.testing.assert_array_equal(reopened.episode(0).frames, good[0])
    with pytest.raises(StoreError, match="read-only"):
        reopened.append(*good)


def test_missing_corrupt_and_mismatched_stores(tmp_path):
    with pytest.raises(StoreError, match="no episode store at"):
        EpisodeStore.open(str(tmp_path / "nothing"))
    new_store(tmp_path / "s")
    with pytest.raises(StoreError, match="already exists"):
        new_store(tmp_path / "s")
    with pytest.raises(StoreError, match="holds 'toy' episodes, not 'pong'"):
        EpisodeStore.create(
            str(tmp_path / "s"),
            game="pong",
            action_space=gym.spaces.Discrete(5),
            observation_space=OBS,
            fps=15,
            exist_ok=True,
        )
    with pytest.raises(StoreError, match="action space"):
        EpisodeStore.create(
            str(tmp_path / "s"),
            game="toy",
            action_space=gym.spaces.Discrete(6),
            observation_space=OBS,
            fps=15,
            exist_ok=True,
        )
    # exist_ok with the same game and spaces opens it
    assert (
        len(
            EpisodeStore.create(
                str(tmp_path / "s"),
                game="toy",
                action_space=gym.spaces.Discrete(5),
                observation_space=OBS,
                fps=15,
                exist_ok=True,
            )
        )
        == 0
    )
    meta = Path(tmp_path / "s" / "zarr.json")
    doc = json.loads(meta.read_text())
    del doc["attributes"]["action_space"]
    meta.write_text(json.dumps(doc))
    with pytest.raises(StoreError, match="corrupt"):
        EpisodeStore.open(str(tmp_path / "s"))
    meta.write_text("{not json")
    with pytest.raises(StoreError):
        EpisodeStore.open(str(tmp_path / "s"))
    with pytest.raises(StoreError, match="RGB image"):
        EpisodeStore.create(
            str(tmp_path / "t"),
            game="x",
            action_space=gym.spaces.Discrete(2),
            observation_space=gym.spaces.Box(0, 1, (4,)),
            fps=1,
        )
