"""Episode store <-> Minari: export opens in Minari's tools, imports come back identical."""

from __future__ import annotations

import gymnasium as gym
import minari
import numpy as np
import pytest
from minari.data_collector import EpisodeBuffer

from envs.minecraft import minerl_action_space
from worldsim.data import EpisodeStore
from worldsim.data.minari_io import DatasetError, export_minari, import_minari
from worldsim.errors import StoreError


@pytest.fixture(autouse=True)
def minari_root(tmp_path, monkeypatch):
    """Every Minari dataset of these tests lives under tmp_path."""
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


def make_store(path, rng, lengths=(5, 8), action_space=None):
    space = action_space or gym.spaces.Discrete(5)
    store = EpisodeStore.create(
        str(path),
        game="toy",
        action_space=space,
        observation_space=gym.spaces.Box(0, 255, (16, 24, 3), np.uint8),
        fps=15.0,
        metadata={"policy": "random", "seed": 3},
    )
    for n, T in enumerate(lengths):
        space.seed(n)
        actions = [space.sample() for _ in range(T)]
        if isinstance(space, gym.spaces.Dict):
            actions = {k: np.stack([a[k] for a in actions]) for k in space.spaces}
        store.append(
            rng.integers(0, 256, (T + 1, 16, 24, 3), dtype=np.uint8),
            actions,
            rng.normal(size=T).astype(np.float32),
            np.arange(T) == T - 1 if n == 0 else np.zeros(T, bool),
            np.arange(T) == T - 1 if n == 1 else np.zeros(T, bool),
            info={"seed": n},
        )
    return EpisodeStore.open(str(path))


def assert_same_episode(a, b):
    np.testing.assert_array_equal(a.frames, b.frames)
    if isinstance(a.actions, dict):
        assert set(a.actions) == set(b.actions)
        for k in a.actions:
            np.testing.assert_array_equal(a.actions[k], b.actions[k])
    else:
        np.testing.assert_array_equal(a.actions, b.actions)
    np.testing.assert_array_equal(a.rewards, b.rewards)
    np.testing.assert_array_equal(a.terminated, b.terminated)
    np.testing.assert_array_equal(a.truncated, b.truncated)


@pytest.mark.parametrize(
    "action_space", [None, minerl_action_space()], ids=["discrete", "minerl-dict"]
)
def test_export_opens_in_minari_and_imports_back_identical(tmp_path, minari_root, action_space):
    store = make_store(tmp_path / "store", np.random.default_rng(0), action_space=action_space)
    export_minari(str(tmp_path / "store"), "worldsim/toy-v0", data_path=minari_root)

    dataset = minari.load_dataset("worldsim/toy-v0")  # Minari's own reader
    assert dataset.total_episodes == 2 and dataset.total_steps == 13
    assert dataset.observation_space == store.observation_space
    assert dataset.action_space == store.action_space
    episodes = list(dataset.iterate_episodes())
    np.testing.assert_array_equal(episodes[1].observations, store.episode(1).frames)
    assert episodes[0].terminations[-1] and episodes[1].truncations[-1]

    n = import_minari("worldsim/toy-v0", str(tmp_path / "back"))
    back = EpisodeStore.open(str(tmp_path / "back"))
    assert n == 2 and len(back) == 2
    assert (back.game, back.fps, back.metadata) == ("toy", 15.0, store.metadata)
    assert back.action_space == store.action_space
    for i in range(2):
        assert_same_episode(back.episode(i), store.episode(i))
        assert back.episode(i).info == {"seed": i}


def test_export_refuses_to_overwrite_and_checks_the_id(tmp_path, minari_root):
    make_store(tmp_path / "store", np.random.default_rng(1), lengths=(3,))
    export_minari(str(tmp_path / "store"), "toy-v0")
    with pytest.raises(DatasetError, match="already exists"):
        export_minari(str(tmp_path / "store"), "toy-v0")
    with pytest.raises(DatasetError, match="name-vN"):
        export_minari(str(tmp_path / "store"), "toy")
    with pytest.raises(StoreError, match="no episode store"):
        export_minari(str(tmp_path / "nowhere"), "toy-v1")
    assert not (minari_root / "toy-v1").exists()


def minari_dataset(dataset_id, observation_space, observations, T=6, episodes=2):
    """A dataset written directly with Minari's API (as any Minari user would)."""
    action_space = gym.spaces.Discrete(3)
    buffers = [
        EpisodeBuffer(
            observations=observations(T),
            actions=np.arange(T) % 3,
            rewards=np.ones(T, np.float32) * e,
            terminations=np.arange(T) == T - 1,
            truncations=np.zeros(T, bool),
        )
        for e in range(episodes)
    ]
    with pytest.warns(UserWarning):  # Minari's warnings about optional fields left empty
        return minari.create_dataset_from_buffers(
            dataset_id, buffers, observation_space=observation_space, action_space=action_space
        )


def test_import_a_minari_dataset_with_dict_pixels(tmp_path):
    rng = np.random.default_rng(2)
    space = gym.spaces.Dict(
        {
            "pixels": gym.spaces.Box(0, 255, (40, 40, 3), np.uint8),
            "state": gym.spaces.Box(-1, 1, (4,), np.float32),
        }
    )
    colours = rng.integers(0, 256, (7, 2, 2, 3), dtype=np.uint8)
    smooth = np.kron(colours, np.ones((1, 20, 20, 1), np.uint8))  # 2x2 flat blocks

    def observations(T):
        return {"pixels": smooth[: T + 1], "state": np.zeros((T + 1, 4), np.float32)}

    ds = minari_dataset("cartoon/pixels-v0", space, observations)  # JPEG-encoded, Minari's default
    n = import_minari(ds.spec.data_path, str(tmp_path / "store"), frame_size=(20, 20))
    store = EpisodeStore.open(str(tmp_path / "store"))
    assert n == 2 and store.game == "cartoon/pixels-v0" and store.frame_shape == (20, 20, 3)
    ep = store.episode(1)
    assert ep.frames.shape == (7, 20, 20, 3) and ep.actions.tolist() == [0, 1, 2, 0, 1, 2]
    assert ep.rewards.tolist() == [1.0] * 6 and ep.terminated[-1]
    assert ep.info == {"minari_dataset": "cartoon/pixels-v0", "minari_episode": 1}
    # the inside of each block (10x10 after resizing) keeps its colour through JPEG and resizing
    centres = ep.frames[:, 3:7, 3:7].mean(axis=(1, 2)), ep.frames[:, 13:17, 13:17].mean(axis=(1, 2))
    np.testing.assert_allclose(centres[0], colours[:, 0, 0], atol=6)
    np.testing.assert_allclose(centres[1], colours[:, 1, 1], atol=6)


def test_import_grey_images_and_errors(tmp_path):
    grey = gym.spaces.Box(0, 255, (36, 36), np.uint8)
    minari_dataset("grey-v0", grey, lambda T: np.full((T + 1, 36, 36), 77, np.uint8))
    assert import_minari("grey-v0", str(tmp_path / "grey")) == 2
    assert (EpisodeStore.open(str(tmp_path / "grey")).episode(0).frames == 77).all()
    with pytest.raises(StoreError, match="holds 'grey-v0' episodes"):  # the store's own check
        import_minari("grey-v0", str(tmp_path / "grey"), game="other")

    vector = gym.spaces.Box(-1, 1, (4,), np.float32)
    minari_dataset("vector-v0", vector, lambda T: np.zeros((T + 1, 4), np.float32))
    with pytest.raises(DatasetError, match="no image"):
        import_minari("vector-v0", str(tmp_path / "vector"))
    with pytest.raises(DatasetError, match="minari download"):
        import_minari("missing/dataset-v0", str(tmp_path / "x"))
    with pytest.raises(DatasetError, match="image_key"):
        import_minari("grey-v0", str(tmp_path / "x"), image_key="pixels")
    assert not EpisodeStore.exists(str(tmp_path / "vector"))


def test_data_import_command_reads_a_minari_dataset(tmp_path, minari_root):
    from worldsim.cli import main

    make_store(tmp_path / "store", np.random.default_rng(4), lengths=(4,))
    assert main(["data", "export", str(tmp_path / "store"), "--dataset-id", "worldsim/cli-v0"]) == 0
    args = ["data", "import", "--format", "minari", "worldsim/cli-v0", "--out"]
    assert main([*args, str(tmp_path / "back"), "--data-path", str(minari_root)]) == 0
    assert len(EpisodeStore.open(str(tmp_path / "back"))) == 1
