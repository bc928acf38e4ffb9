"""The dream core shared by `WorldModelEnv` and `WorldModelVectorEnv`.

`DreamCore` loads and checks the world model, reads its release info (game, frame rate, action
names, sampler defaults), holds the start contexts and the checked sampler settings, and seeds
the sampler's generator from `np_random`; the two envs add only stepping one or B dreams.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from envs.dream_starts import StartContexts
from worldsim.errors import CheckpointError
from worldsim.validation import ArgumentValueError, check_device, check_int

if TYPE_CHECKING:
    from worldsim.world_model import WorldModel

__all__ = [
    "DreamCore",
    "check_game",
    "check_guidance",
    "check_sampler_steps",
    "load_world_model",
    "model_game",
    "render_fps",
    "resolve_device",
]


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


def model_game(world_model: WorldModel) -> str | None:
    """The game a world model was trained on (its release metadata), if recorded."""
    return world_model.release.game


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


def render_fps(fps: float) -> int | float:
    """A frame rate as an int where whole (gymnasium's play needs one)."""
    return int(fps) if float(fps).is_integer() else float(fps)


def to_numpy(x: Any) -> np.ndarray:
    """A tensor (any device) or array-like as a numpy array."""
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


class DreamCore:
    """The world model of a dream env (single or vector) and what both envs derive from it.

    Sets ``world_model``, ``game``, ``action_names``, ``metadata["render_fps"]``, ``starts``
    (`StartContexts`), ``sampler``, ``sampler_steps`` and ``guidance`` (checked, settable
    between steps); `seed_generator` makes the sampler's ``torch.Generator`` from ``np_random``.
    """

    metadata: dict[str, Any]
    np_random: np.random.Generator

    def init_dream(
        self,
        checkpoint: str | Path | None,
        world_model: WorldModel | None,
        *,
        game: str | None,
        device: str | torch.device,
        sampler_steps: int | None,
        guidance: float | None,
    ) -> None:
        """Load `checkpoint` (or take `world_model`), check it is of `game`, take its settings.

        `sampler_steps` / `guidance`: None takes the release's default.

        Raises:
            ArgumentValueError: bad sampler settings (checked before the slow load).
            CheckpointError: no checkpoint given or found, or one of another game.
        """
        if sampler_steps is not None:
            check_sampler_steps(sampler_steps)
        if guidance is not None:
            check_guidance(guidance)
        if world_model is None:
            if checkpoint is None:
                name = type(self).__name__
                raise CheckpointError(f"{name} needs checkpoint=PATH (a release folder)")
            world_model = load_world_model(checkpoint, device=device, game=game)
        else:
            check_game(world_model, game)
        release = world_model.release
        self.world_model = world_model
        self.game = release.game
        self.action_names: list[str] | None = release.action_names
        self.metadata = {**self.metadata, "render_fps": render_fps(release.fps)}
        self.sampler = release.sampler
        self.sampler_steps = release.sampler_steps if sampler_steps is None else sampler_steps
        self.guidance = release.guidance if guidance is None else guidance
        self.starts = StartContexts(world_model)
        self._generator: torch.Generator | None = None

    def seed_generator(self) -> None:
        """A new sampler generator on the model's device, seeded from ``np_random``
        (so the env's seed fixes every frame)."""
        self._generator = torch.Generator(device=self.world_model.device)
        self._generator.manual_seed(int(self.np_random.integers(2**63 - 1)))

    def sampler_info(self) -> dict[str, Any]:
        """The sampler settings the next frame is generated with."""
        return {
            "sampler_steps": self.sampler_steps,
            "guidance": self.guidance,
            "sampler": self.sampler,
        }

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
