"""The Lightning data module: random fixed-length clips from an episode store, split by episode."""

from __future__ import annotations

import logging
from typing import Any

import gymnasium as gym
import lightning as L
import numpy as np
import torch
from torch.utils.data import (
    DataLoader,
    Dataset,
    RandomSampler,
    Subset,
    WeightedRandomSampler,
    default_collate,
)

from worldsim.data import EpisodeStore
from worldsim.errors import StoreError

log = logging.getLogger(__name__)


class ClipDataset(Dataset):
    """Every clip of `clip_length` frames in the given episodes, indexed by (episode, start).

    Index k maps to the k-th valid start position over the episodes in order, so sampling k
    uniformly samples clips uniformly over all valid start positions (long episodes give
    more clips). The store is opened lazily in each process (DataLoader workers included).

    An item is a dict: `frames` uint8 [T, H, W, 3], `actions` [T-1, ...] (array, or dict of
    arrays for Dict spaces), `rewards` float32 [T-1], `terminated` bool [T-1]; with
    `pose_memory`, also `pose`: each frame's reference in the episode (`pose_references`).
    """

    def __init__(
        self,
        path: str,
        episodes: list[int],
        lengths: np.ndarray,
        clip_length: int,
        pose_memory: int = 0,
        pose_degrees_per_unit: float = 15.0,
    ) -> None:
        self.path = path
        self.clip_length = clip_length
        self.pose_memory, self.pose_degrees_per_unit = pose_memory, pose_degrees_per_unit
        self.episodes = np.asarray(episodes, dtype=np.int64)
        # an episode of L transitions has L + 1 frames and L + 2 - T clip starts
        counts = np.maximum(np.asarray(lengths)[self.episodes] + 2 - clip_length, 0)
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._store: EpisodeStore | None = None

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getstate__(self) -> dict[str, Any]:
        # zarr/fsspec handles do not travel to worker processes: each opens its own
        return {**self.__dict__, "_store": None}

    @property
    def store(self) -> EpisodeStore:
        if self._store is None:
            self._store = EpisodeStore.open(self.path)
        return self._store

    def locate(self, index: int) -> tuple[int, int]:
        """(episode index in the store, first frame) of clip `index`."""
        if not 0 <= index < len(self):
            raise IndexError(f"clip {index} out of range: the dataset has {len(self)} clips")
        j = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return int(self.episodes[j]), int(index - self.offsets[j])

    def moving_fractions(self) -> np.ndarray:
        """Per clip [len(self)], the share of its transitions that change the view
        (`worldsim.bench.metrics.moving_mask`, the fidelity benchmark's "moving steps").

        Reads every frame of the episodes once."""
        from worldsim.bench.metrics import moving_mask

        T, parts = self.clip_length, []
        for j, episode in enumerate(self.episodes):
            count = int(self.offsets[j + 1] - self.offsets[j])
            if count == 0:
                continue
            frames = self.store.clip(episode, 0, count + T - 1).frames
            moved = np.concatenate([[0], np.cumsum(moving_mask(frames))])  # [L + 1]
            parts.append((moved[T - 1 : T - 1 + count] - moved[:count]) / max(T - 1, 1))
        return np.concatenate(parts) if parts else np.zeros(0)

    def __getitem__(self, index: int) -> dict[str, Any]:
        episode, start = self.locate(int(index))
        clip = self.store.clip(episode, start, self.clip_length)
        item = {
            "frames": clip.frames,  # uint8 [T, H, W, 3]
            "actions": clip.actions,  # [T-1, ...] or {key: [T-1, ...]}
            "rewards": clip.rewards.astype(np.float32),  # [T-1]
            "terminated": clip.terminated.astype(bool),  # [T-1]
        }
        if self.pose_memory:
            item["pose"] = self._pose_item(episode, start, clip.frames)
        return item

    def _pose_item(self, episode: int, start: int, frames: np.ndarray) -> dict[str, np.ndarray]:
        poses = episode_poses(self.store, episode)
        T = self.clip_length
        refs, delta = pose_references(poses, start, T, self.pose_memory, self.pose_degrees_per_unit)
        lo = int(refs[refs >= 0].min()) if (refs >= 0).any() else start
        window = self.store.clip(episode, lo, start - lo + 1).frames if lo < start else frames[:1]
        ref_frames = np.zeros_like(frames)
        for t, r in enumerate(refs):
            if r >= 0:
                ref_frames[t] = window[r - lo] if r < start else frames[r - start]
        return {
            "ref_frames": ref_frames,
            "ref_delta": delta,
            "ref_valid": refs >= 0,
        }


def episode_poses(store: EpisodeStore, episode: int) -> np.ndarray:
    """The `pose` label of an episode [L+1, 5], or StoreError saying how to do without."""
    poses = store.labels(episode).get("pose")
    if poses is None:
        raise StoreError(
            f"episode {episode} of {store.path} has no `pose` label, which a pose-memory model "
            "trains on: record the store with a game that reports poses (minetest), or set model "
            "overrides {pose_memory: 0} and data.pose_memory 0"
        )
    return np.asarray(poses, np.float32)


def pose_references(
    poses: np.ndarray, start: int, length: int, memory: int, degrees_per_unit: float
) -> tuple[np.ndarray, np.ndarray]:
    """What a pose-memory model is told about clip frames start..start+length-1 of an episode
    with poses [L+1, 5]: for each, the frame of the `memory` before it nearest in pose, as a
    rollout finds it (`worldsim.model.pose.nearest`).

    Returns:
        ref index int64 [length] (-1: none, the episode's first frame) and the frame's pose
        seen from its reference's float32 [length, 5] (`worldsim.model.pose.local_delta`;
        zeros where none).
    """
    from worldsim.model.pose import local_delta, nearest

    p = torch.as_tensor(np.asarray(poses, np.float32))
    refs = np.full(length, -1, np.int64)
    delta = torch.zeros(length, 5)
    for t in range(length):
        g = start + t
        lo = max(0, g - memory)
        if g > lo:
            index, _ = nearest(p[None, lo:g], torch.ones(1, g - lo, dtype=torch.bool), p[g][None],
                               degrees_per_unit)  # fmt: skip
            refs[t] = lo + int(index)
            delta[t] = local_delta(p[refs[t]], p[g])
    return refs, delta.numpy()


def collate_clips(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack clips into a batch of tensors; dict actions become a dict of tensors.

    Returns:
        `frames` uint8 [B, T, H, W, 3], `actions` [B, T-1, ...] (or {key: [B, T-1, ...]}),
        `rewards` float32 [B, T-1], `terminated` bool [B, T-1].
    """
    return default_collate(items)  # numpy arrays -> tensors, recursing into dicts


class StoreFacts:
    """What a data module knows of its episode store (`self.path`), opened on first use;
    the split fractions are `self.val_fraction` / `self.test_fraction`."""

    path: str
    val_fraction: float
    test_fraction: float
    _store: EpisodeStore | None = None

    @property
    def store(self) -> EpisodeStore:
        """The episode store, opened on first use (reads only its metadata and index)."""
        if self._store is None:
            self._store = EpisodeStore.open(self.path)
        return self._store

    @property
    def action_space(self) -> gym.Space:
        """The store's action space (what the model's action encoder is built from)."""
        return self.store.action_space

    @property
    def observation_space(self) -> gym.Space:
        """The store's observation space, Box(0, 255, (H, W, 3), uint8)."""
        return self.store.observation_space

    def split(self, name: str) -> list[int]:
        """Episode indices of split `name` ("train", "val" or "test")."""
        return self.store.split(name, val=self.val_fraction, test=self.test_fraction)


class EpisodeDataModule(StoreFacts, L.LightningDataModule):
    """Clips from an episode store: random clips for training, a fixed set for validation.

    Episodes are split into train/val by the store (a hash of each episode's key, so the
    split never changes as episodes are added). An epoch is `samples_per_epoch` clips drawn
    uniformly over all valid start positions of the train episodes (with replacement). The
    validation set is `val_samples` clips chosen once with `seed`, the same in every run.

    Args:
        store: Episode store directory or fsspec URL (record one with `worldsim collect`).
        clip_length: Frames per training clip (T); the model sees T-1 actions between them.
        batch_size: Clips per batch, per process (the global batch is this times the world size).
        samples_per_epoch: Clips drawn per training epoch (fixes what "an epoch" means).
        val_samples: Clips in the fixed validation set (fewer if the val episodes hold fewer).
        val_fraction: Share of episodes in the validation split (chosen by key hash).
        test_fraction: Share of episodes held out for testing (never used for training).
        num_workers: DataLoader worker processes per training process (0 reads in the main process).
        seed: Seed for choosing the validation clips.
        moving_weight: Oversample clips in which the view changes: a clip is drawn with weight
            1 + moving_weight x (share of its steps that change the view). 0: uniform. Static
            steps are easy ("copy the frame"); the steps where the player moves are where the
            model learns what the action does.
        pose_memory: Give each clip frame its reference found by pose among the frames of its
            episode this many before it, for a model with the same `pose_memory` (a store with
            a `pose` label, e.g. Minetest). 0: off.
        pose_degrees_per_unit: The model's `pose_degrees_per_unit` (how references are found).
    """

    def __init__(
        self,
        store: str = "data/crafter",
        clip_length: int = 16,
        batch_size: int = 32,
        samples_per_epoch: int = 100_000,
        val_samples: int = 512,
        val_fraction: float = 0.05,
        test_fraction: float = 0.05,
        num_workers: int = 2,
        seed: int = 0,
        moving_weight: float = 0.0,
        pose_memory: int = 0,
        pose_degrees_per_unit: float = 15.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.pose_memory, self.pose_degrees_per_unit = pose_memory, pose_degrees_per_unit
        self.path = store
        self.clip_length = clip_length
        self.batch_size = batch_size
        self.samples_per_epoch = samples_per_epoch
        self.val_samples = val_samples
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.num_workers = num_workers
        self.seed = seed
        from training.module import ConfigError

        for name, value, low in (
            ("clip_length", clip_length, 1),
            ("batch_size", batch_size, 1),
            ("samples_per_epoch", samples_per_epoch, 1),
            ("val_samples", val_samples, 0),
            ("num_workers", num_workers, 0),
            ("pose_memory", pose_memory, 0),
        ):
            if int(value) != value or value < low:
                raise ConfigError(f"--data.{name} must be an integer >= {low}, got {value}")
        for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0 <= value < 1:
                raise ConfigError(f"--data.{name} must be in [0, 1), got {value}")
        if moving_weight < 0:
            raise ConfigError(f"--data.moving_weight must be >= 0, got {moving_weight}")
        self.moving_weight = moving_weight
        self.train_weights: np.ndarray | None = None
        self._store: EpisodeStore | None = None
        self.train_set: ClipDataset | None = None
        self.val_set: Subset | None = None

    # -------------------------------------------------------------- Lightning hooks
    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        store = self.store
        pose = (self.pose_memory, self.pose_degrees_per_unit)
        train = ClipDataset(self.path, self.split("train"), store.lengths, self.clip_length, *pose)
        if len(train) == 0:
            longest = int(store.lengths.max()) + 1 if len(store) else 0
            raise StoreError(
                f"no train clips of {self.clip_length} frames in {self.path} ({len(store)} episodes, "
                f"longest {longest} frames): lower data.clip_length or record more episodes"
            )
        self.train_set = train
        if self.moving_weight > 0:
            self.train_weights = 1.0 + self.moving_weight * train.moving_fractions()
        val = ClipDataset(self.path, self.split("val"), store.lengths, self.clip_length, *pose)
        if len(val) == 0:
            log.warning("no validation clips in %s: raise data.val_fraction to validate", self.path)
        rng = np.random.default_rng(self.seed)
        picked = rng.choice(len(val), size=min(self.val_samples, len(val)), replace=False)
        self.val_set = Subset(val, np.sort(picked).tolist())

    def odometry_pairs(self) -> tuple[list[Any], np.ndarray]:
        """The train split's actions (one array, or dict of arrays, per episode) and the pose
        step each took, float32 [N, 5] (`worldsim.model.pose.local_delta`), for a pose-memory
        model's odometry. StoreError if an episode has no `pose` label."""
        from worldsim.model.pose import local_delta

        actions, steps = [], []
        for i in self.split("train"):
            p = torch.as_tensor(episode_poses(self.store, i))
            actions.append(self.store.episode_actions(i))
            steps.append(local_delta(p[:-1], p[1:]).numpy())
        return actions, np.concatenate(steps)

    def _loader(self, dataset: Dataset, **kwargs: Any) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            collate_fn=collate_clips,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            **kwargs,
        )

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None, "call setup() first"
        if self.train_weights is not None:
            sampler: Any = WeightedRandomSampler(
                self.train_weights.tolist(), self.samples_per_epoch, replacement=True
            )
        else:
            sampler = RandomSampler(
                self.train_set, replacement=True, num_samples=self.samples_per_epoch
            )
        return self._loader(self.train_set, sampler=sampler, drop_last=True)

    def val_dataloader(self) -> DataLoader | list:
        assert self.val_set is not None, "call setup() first"
        if len(self.val_set) == 0:
            return []
        return self._loader(self.val_set, shuffle=False)

    def contexts(
        self, n: int, length: int, split: str = "val", episode_starts: bool = False
    ) -> dict[str, Any]:
        """`n` real clips of `length` frames, evenly spread over a split's episodes; with
        `episode_starts`, each from an episode's first frame (a stored episode starts at the
        game's reset) and marked so.

        Falls back to the train split when `split` has no episode of `length` frames.

        Returns:
            {"frames": uint8 tensor [n, length, H, W, 3], "actions": [n, length-1, ...]}
            (fewer than n if the split holds fewer clips), and with `episode_starts`
            "episode_start": bool [n], all True.
        """
        store = self.store
        dataset = ClipDataset(self.path, self.split(split), store.lengths, length)
        if len(dataset) == 0:
            dataset = ClipDataset(self.path, self.split("train"), store.lengths, length)
        if len(dataset) == 0:
            raise StoreError(
                f"no episode in {self.path} has {length} frames: record longer episodes or ask for shorter clips"
            )
        starts = np.arange(len(dataset))
        if episode_starts:  # the first clip of every episode long enough
            starts = dataset.offsets[:-1][np.diff(dataset.offsets) > 0]
        picks = starts[np.linspace(0, len(starts) - 1, num=min(n, len(starts))).round().astype(int)]
        batch = collate_clips([dataset[int(k)] for k in picks])
        out = {"frames": batch["frames"], "actions": batch["actions"]}
        if episode_starts:
            out["episode_start"] = np.ones(len(picks), np.bool_)
        return out
