"""worldsim: learn interactive game worlds from recorded play."""

from worldsim.data import EpisodeStore

__all__ = ["EpisodeStore"]
__version__ = "0.1.0"
