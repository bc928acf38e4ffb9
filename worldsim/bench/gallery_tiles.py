"""Tile classes drawn over gallery frames, so a person sees which objects a dream lost.

Every object tile (not background) gets a two-letter code of its class (tr: tree, co: cow, ...);
on the generated panel, tiles whose class differs from the real frame's get a red frame. The
long-horizon videos shade the tiles that no longer look like any real tile.
"""

from __future__ import annotations

import numpy as np

__all__ = ["annotate", "label_codes", "shade_unreal"]

RED = (230, 30, 30)


def label_codes(names: list[str]) -> list[str]:
    """Short distinct codes for class names: the first two letters, else first and another."""
    codes: list[str] = []
    for name in names:
        code = name[:2]
        for c in name[2:]:
            if code not in codes:
                break
            code = name[0] + c
        codes.append(code)
    return codes


def _scaled_grid(grid: dict, scale: int) -> tuple[int, int, int, int]:
    (th, tw), (y0, x0) = grid["tile"], grid["origin"]
    return th * scale, tw * scale, y0 * scale, x0 * scale


def annotate(
    frames: np.ndarray,
    labels: np.ndarray,
    grid: dict,
    scale: int,
    names: list[str],
    background: list[str],
    reference: np.ndarray | None = None,
) -> np.ndarray:
    """Draw class codes (object tiles) and mismatch frames onto scaled-up frames.

    Args:
        frames: uint8 [T, H*scale, W*scale, 3].
        labels: class ids [T, R, C] of the map tiles.
        grid: the tile lattice ({"tile", "origin"}, in unscaled px).
        reference: real labels [T, R, C]: tiles that differ get a red frame.

    Returns:
        The annotated frames (a copy).
    """
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    codes = label_codes(names)
    skip = {i for i, n in enumerate(names) if n in background}
    th, tw, y0, x0 = _scaled_grid(grid, scale)
    out = np.empty_like(frames)
    for t, frame in enumerate(frames):
        image = Image.fromarray(frame)
        draw = ImageDraw.Draw(image)
        for r, c in np.ndindex(*labels.shape[1:]):
            top, left = y0 + r * th, x0 + c * tw
            k = int(labels[t, r, c])
            if reference is not None and k != int(reference[t, r, c]):
                draw.rectangle([left, top, left + tw - 1, top + th - 1], outline=RED, width=2)
            if k not in skip and k < len(codes):
                draw.text((left + 2, top + 1), codes[k], fill=(0, 0, 0), font=font)
                draw.text((left + 1, top), codes[k], fill=(255, 255, 255), font=font)
        out[t] = np.asarray(image)
    return out


def shade_unreal(frames: np.ndarray, real: np.ndarray, grid: dict, scale: int) -> np.ndarray:
    """Tint the tiles marked False in `real` [T, R, C] red on scaled frames [T, H', W', 3]."""
    th, tw, y0, x0 = _scaled_grid(grid, scale)
    out = frames.astype(np.float32)
    for t, r, c in zip(*np.nonzero(~real)):
        tile = out[t, y0 + r * th : y0 + (r + 1) * th, x0 + c * tw : x0 + (c + 1) * tw]
        tile[:] = 0.5 * tile + 0.5 * np.asarray(RED, np.float32)
    return out.astype(np.uint8)
