"""Generative tools for playable world models (Sora's, on a world you can play): extend a clip
forward or backward, animate a picture, edit a clip (counterfactual replay, SDEdit), bridge two
frames. Frames given are held clean and come back bit-exact. Docs: docs/generate.md.

    >>> from worldsim import WorldModel
    >>> from worldsim.generate import animate, write_mp4
    >>> wm = WorldModel.from_checkpoint("worldsim/assets/crafter")
    >>> gen = animate(wm, picture, strength=0.6, actions=[0] * 32)   # gen.frames [33, 64, 64, 3]
    >>> write_mp4("out.mp4", gen)
"""

from worldsim.generate.bridge import bridge
from worldsim.generate.clip import (
    GenerateError,
    Generation,
    check_clip,
    check_picture,
    read_actions,
    read_picture,
    read_video,
    side_by_side,
    write_mp4,
)
from worldsim.generate.paths import path_validity
from worldsim.generate.tools import REVERSED_KEY, animate, edit, extend

__all__ = [
    "REVERSED_KEY",
    "GenerateError",
    "Generation",
    "animate",
    "bridge",
    "check_clip",
    "check_picture",
    "edit",
    "extend",
    "path_validity",
    "read_actions",
    "read_picture",
    "read_video",
    "side_by_side",
    "write_mp4",
]
