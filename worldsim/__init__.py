"""worldsim: learn interactive game worlds from recorded play."""

from typing import TYPE_CHECKING, Any

from worldsim.data import EpisodeStore

if TYPE_CHECKING:
    from worldsim.world_model import WorldModel

__all__ = ["EpisodeStore", "WorldModel"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # WorldModel pulls in torch (~1 s): imported on first use, so `import worldsim` stays cheap.
    if name == "WorldModel":
        from worldsim.world_model import WorldModel

        return WorldModel
    raise AttributeError(f"module 'worldsim' has no attribute {name!r}")
