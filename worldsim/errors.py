"""Exceptions for mistakes a user can fix; their messages name the problem and the fix."""

from __future__ import annotations


class WorldsimError(Exception):
    """Base class: printed by the `worldsim` command without a traceback."""


class StoreError(WorldsimError, ValueError):
    """A missing, corrupt or mismatched episode store, or data that does not fit it."""


class DamagedEpisodeError(StoreError):
    """An episode whose arrays or frame chunks are missing or cannot be decoded."""

    def __init__(self, root: str, episode: str, reason: object) -> None:
        self.episode, self.reason = episode, str(reason)
        super().__init__(
            f"episode {episode or '?'} of the store at {root} is damaged ({reason}): run "
            f"`worldsim data check {root}` to list damaged episodes, and `--repair` to set "
            "them aside"
        )


class CheckpointError(WorldsimError, ValueError):
    """A missing or unusable checkpoint, or one made for another game."""


class ActionError(WorldsimError, ValueError):
    """An action out of range or of the wrong shape for the action space."""
