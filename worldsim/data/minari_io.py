"""Interchange with Minari (Farama's offline-RL datasets): export a store, import image datasets.

Both layouts are Gymnasium's: an episode has T+1 observations and T actions, rewards,
terminations and truncations, so episodes map one to one. Exports are written by Minari's own
writer (`minari.create_dataset_from_buffers`, hdf5, lossless unless `jpeg=True`) and open in
Minari's tools (`minari.load_dataset`, `iterate_episodes`, `minari show`). The store's game,
fps and metadata travel in the dataset metadata under "worldsim", each episode's info in its
episode metadata, so an export imports back unchanged.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from worldsim.data.store import EpisodeStore
from worldsim.errors import StoreError, WorldsimError

IMAGE_KEYS = ("pixels", "image", "pov", "rgb", "observation", "obs", "frame")  # preferred Dict keys
DEFAULT_FPS = 30.0  # Minari records no frame rate; used when the dataset is not one of ours
_INFO_KEY = "worldsim_info"


class DatasetError(WorldsimError, ValueError):
    """A Minari dataset that is missing, malformed, or has no image observations."""


@contextlib.contextmanager
def _datasets_root(data_path: str | os.PathLike | None) -> Iterator[None]:
    """Point Minari at `data_path` (its MINARI_DATASETS_PATH) for the duration of the block."""
    if data_path is None:
        yield
        return
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(data_path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def _check_dataset_id(dataset_id: str) -> None:
    from minari.dataset.minari_dataset import DATASET_ID_RE

    match = DATASET_ID_RE.fullmatch(dataset_id)
    if not match or match.group("version") is None:
        raise DatasetError(
            f"{dataset_id!r} is not a Minari dataset id: use (namespace/)name-vN, e.g. 'worldsim/crafter-v0'"
        )


def export_minari(
    store_path: str,
    dataset_id: str,
    *,
    data_path: str | os.PathLike | None = None,
    jpeg: bool = False,
    author: str | None = None,
) -> Any:
    """Write every episode of the store at `store_path` as the Minari dataset `dataset_id`.

    Observations are the frames uint8 [T+1, H, W, 3] under the store's observation space,
    actions use the store's action space (Dict spaces such as MineRL's included).

    Args:
        store_path: an episode store.
        dataset_id: Minari id, `(namespace/)name-vN`.
        data_path: the Minari datasets root to write under (default: $MINARI_DATASETS_PATH,
            else ~/.minari/datasets); the dataset lands in `data_path/dataset_id/data`.
        jpeg: store frames JPEG-encoded (Minari's default: ~10x smaller, lossy).
        author: recorded in the dataset metadata.

    Returns:
        The `minari.MinariDataset` written.

    Example:
        >>> ds = export_minari("data/crafter", "worldsim/crafter-v0", data_path="minari_datasets")
        >>> ds.total_episodes, next(ds.iterate_episodes()).observations.shape
        (100, (101, 64, 64, 3))
    """
    import minari
    from minari.data_collector import EpisodeBuffer
    from minari.storage.datasets_root_dir import get_dataset_path

    _check_dataset_id(dataset_id)
    store = EpisodeStore.open(store_path)
    if len(store) == 0:
        raise StoreError(f"the store at {store_path} has no episodes to export")

    infos: list[dict[str, str]] = []  # filled as Minari consumes the buffers

    def buffers() -> Iterator[EpisodeBuffer]:  # one episode in memory at a time
        for i in range(len(store)):
            ep = store.episode(i)
            infos.append({_INFO_KEY: json.dumps(ep.info)})
            yield EpisodeBuffer(
                id=i,
                observations=ep.frames,
                actions=ep.actions,
                rewards=ep.rewards,
                terminations=ep.terminated,
                truncations=ep.truncated,
            )

    with _datasets_root(data_path):
        target = get_dataset_path(dataset_id)
        if target.exists():
            raise DatasetError(
                f"a Minari dataset {dataset_id} already exists at {target}: choose another id or version, "
                f"or delete it with `minari delete {dataset_id}`"
            )
        try:
            with warnings.catch_warnings():  # Minari warns about every optional field left empty
                warnings.filterwarnings("ignore", category=UserWarning, module=r"minari(\.|$)")
                dataset = minari.create_dataset_from_buffers(
                    dataset_id,
                    buffers(),
                    action_space=store.action_space,
                    observation_space=store.observation_space,
                    algorithm_name=str(store.metadata.get("policy", "recorded play")),
                    author=author,
                    description=f"{store.game} episodes exported from a worldsim episode store",
                    data_format="hdf5",
                    jpeg_encoding=jpeg,
                )
            dataset.storage.update_metadata(
                {"worldsim": {"game": store.game, "fps": store.fps, "metadata": store.metadata}}
            )
            dataset.storage.update_episode_metadata(infos, range(len(infos)))
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)  # no half-written dataset left behind
            raise
    return dataset


def _image_key(space: gym.Space, image_key: str | None, name: str) -> str | None:
    """The Dict key holding the image (None: the observation is the image)."""

    def is_image(s: gym.Space) -> bool:
        shape = getattr(s, "shape", None) or ()
        return (
            isinstance(s, gym.spaces.Box)
            and s.dtype == np.uint8
            and (len(shape) == 2 or (len(shape) == 3 and shape[2] in (1, 3)))
        )

    if isinstance(space, gym.spaces.Dict):
        candidates = [k for k, s in space.spaces.items() if is_image(s)]
        if image_key is not None:
            if image_key not in candidates:
                raise DatasetError(
                    f"{name}: observation key {image_key!r} is not an image Box(0, 255, (H, W, 3), uint8); "
                    f"image keys: {candidates or 'none'}"
                )
            return image_key
        if len(candidates) == 1:
            return candidates[0]
        preferred = [k for k in IMAGE_KEYS if k in candidates]
        if preferred:
            return preferred[0]
        if candidates:
            raise DatasetError(
                f"{name} has several image observations {candidates}: choose one with image_key="
            )
    elif image_key is not None:
        raise DatasetError(
            f"{name}: image_key={image_key!r} needs a Dict observation space, not {space}"
        )
    elif is_image(space):
        return None
    raise DatasetError(
        f"{name} has observation space {space}, with no image Box(0, 255, (H, W, 3), uint8): "
        "worldsim learns from pixels, so record the env with pixel observations "
        "(e.g. a render_mode='rgb_array' wrapper) and import that dataset"
    )


def _load(dataset_id_or_path: str | os.PathLike, data_path: str | os.PathLike | None) -> Any:
    import minari

    path = Path(dataset_id_or_path)
    if path.is_dir():
        for candidate in (path, path / "data"):
            if (candidate / "metadata.json").is_file():
                try:
                    return minari.MinariDataset(candidate)
                except (ValueError, KeyError, OSError) as e:
                    raise DatasetError(f"cannot read the Minari dataset at {candidate}: {e}") from e
        raise DatasetError(
            f"{path} is not a Minari dataset folder (no metadata.json in it or in data/)"
        )
    _check_dataset_id(str(dataset_id_or_path))
    with _datasets_root(data_path):
        try:
            return minari.load_dataset(str(dataset_id_or_path))
        except FileNotFoundError as e:
            raise DatasetError(
                f"{e}. Download it once with `minari download {dataset_id_or_path}`, "
                "or point MINARI_DATASETS_PATH (or data_path=) at the folder holding it"
            ) from None
        except (ValueError, KeyError, OSError) as e:
            raise DatasetError(f"cannot read the Minari dataset {dataset_id_or_path}: {e}") from e


def import_minari(
    dataset_id_or_path: str | os.PathLike,
    out_store: str,
    *,
    game: str | None = None,
    frame_size: tuple[int, int] | None = None,
    image_key: str | None = None,
    fps: float | None = None,
    data_path: str | os.PathLike | None = None,
) -> int:
    """Append every episode of a Minari dataset with image observations to an episode store.

    The image is the observation itself (Box uint8 (H, W, 3), (H, W, 1) or (H, W); grey is
    repeated to RGB) or one key of a Dict observation: `image_key`, else the only image key,
    else the first of "pixels", "image", "pov", "rgb", ... Actions, rewards, terminations and
    truncations are copied as they are. The store is created if missing; an existing one must
    hold the same game, action space and frame size (the store raises StoreError otherwise).

    Args:
        dataset_id_or_path: a Minari id (found under data_path / $MINARI_DATASETS_PATH /
            ~/.minari/datasets; nothing is downloaded) or a dataset folder.
        out_store: the episode store path.
        game: the store's game; default: the exporting store's game, else the dataset's env
            id, else the dataset id.
        frame_size: (H, W) to resize frames to (PIL bilinear); default: as recorded.
        image_key: which Dict observation key holds the image.
        fps: the store's frame rate; default: the exporting store's, else 30.
        data_path: the Minari datasets root to look in.

    Returns:
        The number of episodes added.

    Example:
        >>> import_minari("atari/breakout/expert-v0", "data/breakout", frame_size=(64, 64))
        10
    """
    dataset = _load(dataset_id_or_path, data_path)
    name = f"Minari dataset {dataset.id}"
    key = _image_key(dataset.observation_space, image_key, name)
    image_space = dataset.observation_space if key is None else dataset.observation_space[key]
    H, W = (
        (int(image_space.shape[0]), int(image_space.shape[1])) if frame_size is None else frame_size
    )
    ours = dataset.storage.metadata.get("worldsim") or {}
    env_id = dataset.env_spec.id if dataset.env_spec is not None else None
    store = EpisodeStore.create(
        out_store,
        game=game or ours.get("game") or env_id or dataset.id,
        action_space=dataset.action_space,
        observation_space=gym.spaces.Box(0, 255, (H, W, 3), np.uint8),
        fps=float(fps or ours.get("fps") or DEFAULT_FPS),
        metadata=ours.get("metadata") or {"source": "minari", "dataset_id": dataset.id},
        exist_ok=True,
    )
    indices = [int(i) for i in dataset.episode_indices]
    episode_meta = dict(zip(indices, dataset.storage.get_episode_metadata(indices)))
    added = 0
    for ep in dataset.iterate_episodes():
        observations = ep.observations if key is None else ep.observations[key]
        frames = _to_rgb(np.asarray(observations), (H, W))  # [T+1, H, W, 3]
        meta = episode_meta.get(int(ep.id), {})
        if _INFO_KEY in meta:
            info = json.loads(meta[_INFO_KEY])
        else:
            info = {"minari_dataset": dataset.id, "minari_episode": int(ep.id)}
            if meta.get("seed") is not None:
                info["seed"] = int(meta["seed"])
        store.append(frames, ep.actions, ep.rewards, ep.terminations, ep.truncations, info=info)
        added += 1
    return added


def _to_rgb(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [N, h, w(, 1 or 3)] -> uint8 [N, H, W, 3], resized with PIL when sizes differ."""
    if frames.ndim == 3:
        frames = frames[..., None]
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    H, W = size
    if frames.shape[1:3] == (H, W):
        return np.ascontiguousarray(frames, dtype=np.uint8)
    from PIL import Image

    return np.stack(
        [np.asarray(Image.fromarray(f).resize((W, H), Image.Resampling.BILINEAR)) for f in frames]
    )
