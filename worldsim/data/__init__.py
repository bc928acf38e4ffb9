"""Recorded play: the episode store and the helpers it is built from."""

from worldsim.data.store import Episode, EpisodeStore

__all__ = ["Episode", "EpisodeStore"]
