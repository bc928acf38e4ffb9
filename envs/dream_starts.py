"""Where a dream starts: K real context frames and the K-1 actions between them (reset options).

Shared by `WorldModelEnv` and `WorldModelVectorEnv`; the sources are the release's own
contexts, an episode store, given frames, or one image (see `StartContexts`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from worldsim.errors import WorldsimError
from worldsim.spaces import check_compatible, noop_action, stack_actions, tree_index

if TYPE_CHECKING:
    from worldsim.world_model import WorldModel

__all__ = ["START_OPTIONS", "StartContexts", "StartError", "check_options"]


# The reset options a dream understands (StartContexts.draw); any other key is a typo.
START_OPTIONS = ("context", "store", "episode", "start", "frames", "actions", "episode_start",
                 "image")  # fmt: skip


class StartError(WorldsimError, ValueError):
    """A starting context (image, store episode) that does not fit the world model."""


def check_options(options: Mapping[str, Any] | None, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """`options` as a dict, refusing keys that no start source reads (typos like "episodes").

    Raises:
        StartError: an unknown key; the message lists the accepted ones.
    """
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise StartError(f"reset options must be a dict, got {type(options).__name__}")
    unknown = sorted(str(k) for k in options if k not in START_OPTIONS + extra)
    if unknown:
        raise StartError(
            f"unknown reset option(s) {', '.join(map(repr, unknown))}: the accepted keys are "
            f"{', '.join(START_OPTIONS + extra)}"
        )
    return dict(options)


class StartContexts:
    """Draws starting contexts: K real frames and the K-1 actions between them.

    Sources, chosen by reset options: the checkpoint's own contexts (default; ``"context"``
    picks one by index), an episode store (``"store"``: path or EpisodeStore, ``"episode"``,
    ``"start"``: a frame index; a start in the middle of an episode is told the named events
    the player had had by then, in ``info["paid"]``, so they do not pay again), given frames
    (``"frames"``: uint8 [K, H, W, 3], ``"actions"``: [K-1, ...], no-ops if left out;
    ``"episode_start": True`` where the first is the game's reset frame), or one image
    (``"image"``: uint8 [H, W, 3], repeated K times with no-op actions between the copies,
    i.e. a world standing still). The info says in ``"episode_start"`` whether the context
    starts at its episode's first frame (a store start at step 0, a checkpoint context the
    release marks so: `worldsim export --episode-starts`, or so given), where the
    game's timers start: a model with HUD clocks then knows when food and water fall.
    """

    def __init__(self, world_model: WorldModel) -> None:
        self.world_model = world_model
        self.observation_space = world_model.observation_space
        self.action_space = world_model.action_space
        contexts = world_model.contexts or {}
        self.frames = contexts.get("frames")  # [N, K, H, W, 3] or None
        self.actions = contexts.get("actions")  # [N, K-1, ...]
        self.episode_starts = contexts.get("episode_start")  # bool [N] or None
        window = max(world_model.release.context - 1, 1)
        self.length = int(self.frames.shape[1]) if self.frames is not None else window
        self._stores: dict[str, Any] = {}

    def draw(
        self, options: Mapping[str, Any], rng: np.random.Generator, index: int = 0
    ) -> tuple[np.ndarray, Any, dict[str, Any]]:
        """One context: (frames uint8 [K, H, W, 3], actions [K-1, ...], info).

        `index` picks the element of per-env option lists (``"episode": [3, 5]``).
        """
        if options.get("image") is not None:
            return self._image(options["image"])
        if options.get("frames") is not None:
            frames, actions, info = self._given(options["frames"], options.get("actions"))
            return frames, actions, {**info, "episode_start": bool(options.get("episode_start"))}
        if options.get("store") is not None:
            return self._store(options, rng, index)
        if self.frames is None or len(self.frames) == 0:
            raise StartError(
                "this checkpoint carries no starting contexts: reset with "
                "options={'store': PATH} or options={'image': frame}"
            )
        i = _pick(options.get("context"), index)
        i = int(rng.integers(len(self.frames))) if i is None else int(i)
        if not 0 <= i < len(self.frames):
            raise StartError(f"context {i} out of range: the checkpoint has {len(self.frames)}")
        actions = tree_index(self.actions, i) if self.actions is not None else None
        starts = self.episode_starts
        info = {"start": "checkpoint", "context": i,
                "episode_start": bool(starts is not None and starts[i])}  # fmt: skip
        return np.asarray(self.frames[i]), actions, info

    def _given(self, frames: Any, actions: Any) -> tuple[np.ndarray, Any, dict[str, Any]]:
        frames = np.asarray(frames)
        shape = self.observation_space.shape
        if (
            frames.dtype != np.uint8
            or frames.ndim != 4
            or frames.shape[1:] != shape
            or not len(frames)
        ):
            raise StartError(
                f"context frames have shape {frames.shape} and dtype {frames.dtype}; the world "
                f"model needs uint8 [K, {', '.join(map(str, shape))}]"
            )
        if actions is None:
            noop = noop_action(self.action_space)
            actions = stack_actions(self.action_space, [noop] * (len(frames) - 1))
        return frames, actions, {"start": "frames"}

    def _image(self, image: Any) -> tuple[np.ndarray, Any, dict[str, Any]]:
        image = np.asarray(image)
        shape = self.observation_space.shape
        if image.dtype != np.uint8 or image.shape != shape:
            raise StartError(
                f"start image has shape {image.shape} and dtype {image.dtype}; the world model "
                f"needs uint8 {shape} (resize it, e.g. with PIL, to {shape[1]}x{shape[0]})"
            )
        frames = np.repeat(image[None], self.length, axis=0)
        noop = noop_action(self.action_space)
        actions = stack_actions(self.action_space, [noop] * (self.length - 1))
        return frames, actions, {"start": "image", "episode_start": False}

    def check_store(self, store: Any) -> None:
        """Raise StartError unless `store` holds episodes of the model's game, size and actions."""
        where = getattr(store, "path", "the store")
        game, trained = getattr(store, "game", None), self.world_model.release.game
        if game is not None and trained is not None and game != trained:
            raise StartError(
                f"{where} holds {game!r} episodes but the world model is of {trained!r}: "
                f"start it from a store of {trained} episodes"
            )
        if tuple(store.observation_space.shape) != tuple(self.observation_space.shape):
            raise StartError(
                f"{where} holds {tuple(store.observation_space.shape)} frames, the world model's "
                f"are {tuple(self.observation_space.shape)}: use a store of the game it was "
                "trained on, at its frame size"
            )
        check_compatible(self.action_space, store.action_space, f"the action space of {where}",
                         error=StartError, fix="use a store of the game the world model was "
                         "trained on")  # fmt: skip

    def _store(
        self, options: Mapping[str, Any], rng: np.random.Generator, index: int
    ) -> tuple[np.ndarray, Any, dict[str, Any]]:
        store = options["store"]
        if isinstance(store, str | Path):
            from worldsim.data import EpisodeStore

            key = str(store)
            if key not in self._stores:
                self._stores[key] = EpisodeStore.open(key)
            store = self._stores[key]
        self.check_store(store)
        if len(store) == 0:
            raise StartError("the episode store is empty: collect episodes first")
        episode = _pick(options.get("episode"), index)
        episode = int(rng.integers(len(store))) if episode is None else int(episode)
        if not 0 <= episode < len(store):
            raise StartError(f"episode {episode} out of range: the store has {len(store)}")
        start = int(_pick(options.get("start"), index) or 0)
        frames_in_episode = int(store.lengths[episode]) + 1
        length = min(self.length, frames_in_episode - start)
        if length < 1:
            raise StartError(f"start {start} is past the end of episode {episode}")
        clip = store.clip(episode, start, length)
        info: dict[str, Any] = {
            "start": "store",
            "episode": episode,
            "step": start,
            "episode_start": start == 0,
        }
        paid = self._paid_before(store, clip, length)
        if paid is not None:
            info["paid"] = paid
        return np.asarray(clip.frames), clip.actions, info

    def _paid_before(self, store: Any, clip: Any, length: int) -> np.ndarray | None:
        """Which of the model's named events (a tile model's `config.events`) the episode had
        by the clip's last frame, bool [E], from the store's `events` counters; None for a
        model without events or a store without the label. A dream started in the middle of
        an episode so does not pay again for what the player had already done."""
        names = list(getattr(self.world_model.config, "events", None) or [])
        spec = (getattr(store, "label_spec", None) or {}).get("events") or {}
        counts = (clip.labels or {}).get("events")
        if not names or counts is None or "names" not in spec:
            return None
        from worldsim.model.tiles import events_had

        return events_had(np.asarray(counts)[length - 1], spec["names"], names)


def _pick(value: Any, index: int) -> Any:
    """A per-env value: value[index] for lists/arrays, else value itself."""
    if isinstance(value, list | tuple | np.ndarray):
        return value[index]
    return value
