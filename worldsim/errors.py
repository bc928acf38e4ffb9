"""Exceptions for mistakes a user can fix; their messages name the problem and the fix."""

from __future__ import annotations


class WorldsimError(Exception):
    """Base class: printed by the `worldsim` command without a traceback."""


class StoreError(WorldsimError, ValueError):
    """A missing, corrupt or mismatched episode store, or data that does not fit it."""


class CheckpointError(WorldsimError, ValueError):
    """A missing or unusable checkpoint, or one made for another game."""


class ActionError(WorldsimError, ValueError):
    """An action out of range or of the wrong shape for the action space."""
