"""WorldModelEnv: a released world model served as a Gymnasium environment (the "dream")."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import gymnasium as gym
import numpy as np
import torch

from envs.keymaps import noop_action
from worldsim.errors import CheckpointError, WorldsimError
from worldsim.validation import (
    ArgumentValueError,
    check_device,
    check_discrete_action,
    check_int,
)

if TYPE_CHECKING:
    from worldsim.world_model import WorldModel

__all__ = [
    "START_OPTIONS",
    "StartContexts",
    "StartError",
    "WorldModelEnv",
    "load_world_model",
    "model_game",
    "stack_actions",
]


# The reset options a dream understands (StartContexts.draw); any other key is a typo.
START_OPTIONS = ("context", "store", "episode", "start", "frames", "actions", "image")


class StartError(WorldsimError, ValueError):
    """A starting context (image, store episode) that does not fit the world model."""


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"``: the GPU when there is one, else the CPU.

    Raises:
        worldsim.validation.DeviceError: a device that is not available here (CUDA on a
            CPU-only torch), with the fix (``device="cpu"``).
    """
    if isinstance(device, torch.device):
        device = str(device)
    if check_device(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


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


def check_sampler_steps(value: Any) -> int:
    """Denoising steps per frame: an integer >= 1 (ArgumentValueError otherwise)."""
    return check_int(value, "sampler_steps")


def check_guidance(value: Any) -> float:
    """A classifier-free guidance scale: a finite number (ArgumentValueError otherwise)."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.number):
        raise ArgumentValueError(f"guidance must be a number, got {value!r}")
    if not np.isfinite(float(value)):
        raise ArgumentValueError(f"guidance must be a finite number, got {value!r}")
    return float(value)


class SamplerSettings:
    """Sampler settings of a dream env (single or vector): the model's defaults, checked and
    settable between steps."""

    def init_sampler(self, world_model: Any, sampler_steps: Any, guidance: Any) -> None:
        """Take `sampler_steps` / `guidance`, or the model config's where None."""
        config = getattr(world_model, "config", None)
        self.sampler = str(getattr(config, "sampler", "euler"))
        self.sampler_steps = (
            getattr(config, "sampler_steps", 2) if sampler_steps is None else sampler_steps
        )
        self.guidance = guidance if guidance is not None else getattr(config, "guidance", 1.0)

    @property
    def sampler_steps(self) -> int:
        """Denoising steps per frame (settable between steps; an integer >= 1)."""
        return self._sampler_steps

    @sampler_steps.setter
    def sampler_steps(self, value: Any) -> None:
        self._sampler_steps = check_sampler_steps(value)

    @property
    def guidance(self) -> float:
        """Classifier-free guidance scale on the action (settable between steps)."""
        return self._guidance

    @guidance.setter
    def guidance(self, value: Any) -> None:
        self._guidance = check_guidance(value)


def model_game(world_model: WorldModel) -> str | None:
    """The game a world model was trained on (its checkpoint metadata), if recorded."""
    return (getattr(world_model, "metadata", None) or {}).get("game")


def load_world_model(
    checkpoint: str | Path, device: str | torch.device = "auto", game: str | None = None
) -> WorldModel:
    """Load a released checkpoint, checking it exists and (if `game` is given) its game.

    Raises:
        CheckpointError: no checkpoint at `checkpoint`, or one for another game.
    """
    from worldsim.world_model import WorldModel

    path = Path(checkpoint).expanduser()
    if not path.exists():
        raise CheckpointError(
            f"no checkpoint at {path}: pass the folder written by `worldsim export` "
            "(or train one with `worldsim fit`)"
        )
    world_model = WorldModel.from_checkpoint(path, device=resolve_device(device))
    if getattr(world_model, "metadata", None) is None:
        # The release's metadata (game, fps, action_names) travels with the model here.
        from worldsim.checkpoint import read_release_config

        world_model.metadata = read_release_config(path).get("metadata") or {}
    check_game(world_model, game, path)
    return world_model


def check_game(world_model: WorldModel, game: str | None, where: Any = "the world model") -> None:
    """Raise CheckpointError if `world_model` was trained on another game than `game`."""
    trained = model_game(world_model)
    if game is not None and trained is not None and trained != game:
        raise CheckpointError(
            f"{where} is a world model of {trained!r}, not {game!r}: pass a {game} checkpoint, "
            f"or ask for game {trained!r}"
        )


def stack_actions(actions: list[Any], space: gym.spaces.Space) -> Any:
    """A list of T actions as one array [T, ...] (a dict of such arrays for Dict spaces)."""
    if isinstance(space, gym.spaces.Dict):
        return {k: stack_actions([a[k] for a in actions], s) for k, s in space.spaces.items()}
    shape = tuple(space.shape or ())
    return np.asarray(actions, dtype=space.dtype).reshape(len(actions), *shape)


def _leading(actions: Any, index: Any) -> Any:
    """actions[index] on every leaf (arrays or a dict of arrays)."""
    if isinstance(actions, Mapping):
        return {k: _leading(v, index) for k, v in actions.items()}
    return np.asarray(actions)[index]


def render_fps(metadata: Mapping[str, Any]) -> int | float:
    """The checkpoint's frame rate (10 if unrecorded), an int where whole (gymnasium's play needs one)."""
    fps = float(metadata.get("fps") or 10)
    return int(fps) if fps.is_integer() else fps


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


class StartContexts:
    """Draws starting contexts: K real frames and the K-1 actions between them.

    Sources, chosen by reset options: the checkpoint's own contexts (default; ``"context"``
    picks one by index), an episode store (``"store"``: path or EpisodeStore, ``"episode"``,
    ``"start"``), given frames (``"frames"``: uint8 [K, H, W, 3], ``"actions"``: [K-1, ...],
    no-ops if left out), or one image (``"image"``: uint8 [H, W, 3], repeated K times with
    no-op actions between the copies, i.e. a world standing still).
    """

    def __init__(self, world_model: WorldModel) -> None:
        self.world_model = world_model
        self.observation_space = world_model.observation_space
        self.action_space = world_model.action_space
        contexts = getattr(world_model, "contexts", None) or {}
        self.frames = contexts.get("frames")  # [N, K, H, W, 3] or None
        self.actions = contexts.get("actions")  # [N, K-1, ...]
        config = getattr(world_model, "config", None)
        window = max(int(getattr(config, "context", 2)) - 1, 1)
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
            return self._given(options["frames"], options.get("actions"))
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
        actions = _leading(self.actions, i) if self.actions is not None else None
        return np.asarray(self.frames[i]), actions, {"start": "checkpoint", "context": i}

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
            actions = stack_actions([noop] * (len(frames) - 1), self.action_space)
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
        actions = stack_actions([noop] * (self.length - 1), self.action_space)
        return frames, actions, {"start": "image"}

    def check_store(self, store: Any) -> None:
        """Raise StartError unless `store` holds episodes of the model's game, size and actions."""
        from worldsim.data.spaces import serialize_space

        where = getattr(store, "path", "the store")
        game, trained = getattr(store, "game", None), model_game(self.world_model)
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
        if serialize_space(store.action_space) != serialize_space(self.action_space):
            raise StartError(
                f"{where} has actions {store.action_space}, the world model takes "
                f"{self.action_space}: use a store of the game it was trained on"
            )

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
        info = {"start": "store", "episode": episode, "step": start}
        return np.asarray(clip.frames), clip.actions, info


def _pick(value: Any, index: int) -> Any:
    """A per-env value: value[index] for lists/arrays, else value itself."""
    if isinstance(value, list | tuple | np.ndarray):
        return value[index]
    return value


class WorldModelEnv(SamplerSettings, gym.Env):
    """A learned world model of a game, played as a Gymnasium environment.

    ## Description
    Every step generates the next frame of the game from the frames so far and the action
    taken, with a few-step diffusion sampler (worldsim's action-conditioned DiT), and
    predicts the reward and whether the episode ended. An agent trained here runs in the
    real game unchanged: the spaces are the real game's.

    ## Action Space
    The real game's, as stored in the checkpoint (Crafter: ``Discrete(17)``, named in
    ``action_names``).

    ## Observation Space
    The real game's frames: ``Box(0, 255, (H, W, 3), uint8)`` (Crafter: 64x64).

    ## Rewards
    The model's predicted reward for the transition (trained on the real game's rewards).

    ## Starting State
    K real context frames and the K-1 actions between them; the observation is the last.
    By default a context from the checkpoint, drawn with ``np_random``. Reset options:
    ``{"context": i}`` picks checkpoint context i; ``{"store": PATH or EpisodeStore,
    "episode": i, "start": t}`` takes frames t..t+K-1 of a recorded episode (a random
    episode, from its first frame, by default); ``{"frames": uint8 [K, H, W, 3], "actions":
    [K-1, ...]}`` gives the context itself; ``{"image": uint8 [H, W, 3]}`` starts from
    any picture (image-to-world): it is repeated K times with no-op actions between the
    copies, a world that has stood still.

    ## Episode End
    ``terminated`` when the model predicts the episode ended (death). Truncation comes
    from ``TimeLimit`` (``max_episode_steps`` of the registered id). Long dreams drift.

    ## Info
    ``sampler_steps``, ``guidance`` and ``sampler`` (the settings that produced the frame);
    after reset also ``start`` (checkpoint, store or image) and the context's index.

    ## Arguments
    ``checkpoint`` (a release folder), or ``world_model`` (a loaded ``WorldModel``; it holds
    this env's rollout state, so give each env its own: batch envs with
    ``WorldModelVectorEnv`` instead); ``game`` (check the checkpoint is of this game); ``device``
    (``"auto"``, ``"cpu"``, ``"cuda"``); ``sampler_steps`` and ``guidance`` (None: the
    checkpoint's defaults; both can be changed between steps); ``render_mode``
    (``"rgb_array"`` or ``"human"``, a pygame window scaled by ``render_scale``).
    Bad values raise at once, naming the argument: ``sampler_steps`` below 1, a device that
    is not here (``device="cuda"`` without CUDA), an unknown reset option, a store of another
    game; Discrete actions must be integers in range (``worldsim.validation``), as in the
    real game's env.

    All randomness comes from ``np_random``: a ``torch.Generator`` seeded from it drives
    the sampler, so the same seed and actions give the same frames.

    ## Version History
    * v0: first version.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array", "human"], "render_fps": 10}

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        *,
        world_model: WorldModel | None = None,
        game: str | None = None,
        device: str | torch.device = "auto",
        sampler_steps: int | None = None,
        guidance: float | None = None,
        render_mode: str | None = None,
        render_scale: int = 8,
    ) -> None:
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(
                f"render_mode must be None, 'rgb_array' or 'human', got {render_mode!r}"
            )
        # Checked before the (slow) model load; None: the checkpoint's default.
        if sampler_steps is not None:
            check_sampler_steps(sampler_steps)
        if guidance is not None:
            check_guidance(guidance)
        if world_model is None:
            if checkpoint is None:
                raise CheckpointError("WorldModelEnv needs checkpoint=PATH (a release folder)")
            world_model = load_world_model(checkpoint, device=device, game=game)
        else:
            check_game(world_model, game)
        self.world_model = world_model
        self.game = model_game(world_model)
        self.observation_space = world_model.observation_space
        self.action_space = world_model.action_space
        meta = getattr(world_model, "metadata", None) or {}
        self.action_names: list[str] | None = meta.get("action_names")
        self.metadata = {**self.metadata, "render_fps": render_fps(meta)}
        self.init_sampler(world_model, sampler_steps, guidance)
        self.render_mode = render_mode
        self.render_scale = check_int(render_scale, "render_scale")
        self.starts = StartContexts(world_model)
        self._generator: torch.Generator | None = None
        self._frame: np.ndarray | None = None
        self._window: Any = None  # pygame display surface (render_mode="human")
        self._clock: Any = None

    def sampler_info(self) -> dict[str, Any]:
        """The sampler settings the next frame is generated with."""
        return {
            "sampler_steps": self.sampler_steps,
            "guidance": self.guidance,
            "sampler": self.sampler,
        }

    def get_keys_to_action(self) -> dict[tuple[int, ...], int]:
        """pygame key codes -> action (Discrete games), so ``gymnasium.utils.play.play`` works."""
        from envs.keymaps import keymap_for

        return keymap_for(self.game or "", self.action_space, self.action_names).keys_to_action()

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        options = check_options(options)
        super().reset(seed=seed)
        device = getattr(self.world_model, "device", "cpu")
        self._generator = torch.Generator(device=device)
        self._generator.manual_seed(int(self.np_random.integers(2**63 - 1)))
        frames, actions, info = self.starts.draw(options, self.np_random)
        if actions is None or len(frames) == 1:
            actions = stack_actions([], self.action_space)
        self.world_model.reset(frames[None], _leading(actions, None))
        self._frame = np.ascontiguousarray(frames[-1])
        if self.render_mode == "human":
            self.render()
        return self._frame.copy(), {**info, **self.sampler_info()}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._frame is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        if isinstance(self.action_space, gym.spaces.Discrete):
            action = check_discrete_action(action, self.action_space, self.action_names)
        frames, rewards, terminated = self.world_model.step(
            _leading(action, None),
            steps=self.sampler_steps,
            guidance=self.guidance,
            generator=self._generator,
        )
        self._frame = np.ascontiguousarray(_numpy(frames)[0])
        if self.render_mode == "human":
            self.render()
        reward, done = float(_numpy(rewards)[0]), bool(_numpy(terminated)[0])
        return self._frame.copy(), reward, done, False, self.sampler_info()

    def render(self) -> np.ndarray | None:
        """rgb_array: the current frame uint8 [H, W, 3]; human: show it in a pygame window."""
        if self._frame is None or self.render_mode is None:
            return None
        if self.render_mode == "rgb_array":
            return self._frame.copy()
        import pygame  # only for human rendering

        H, W = self._frame.shape[:2]
        size = (W * self.render_scale, H * self.render_scale)
        if self._window is None:
            pygame.display.init()
            pygame.display.set_caption(f"worldsim: {self.game or 'world model'}")
            self._window = pygame.display.set_mode(size)
            self._clock = pygame.time.Clock()
        surface = pygame.surfarray.make_surface(self._frame.swapaxes(0, 1))
        self._window.blit(pygame.transform.scale(surface, size), (0, 0))
        pygame.event.pump()
        pygame.display.flip()
        self._clock.tick(self.metadata["render_fps"])
        return None

    def close(self) -> None:
        if self._window is not None:
            import pygame

            pygame.display.quit()
            self._window = None
