"""The tile model: reads a frame as tile classes (what a player sees) and says which tiles look real.

A frame is cut along its tile lattice (Crafter: 9x9 tiles of 7x7 px, the 9x7 map above the
9x2 inventory). A tiny MLP, trained on labelled real frames, names the class of each map tile
(grass, tree, cow, ...). A bank of real tiles, with the distance range real held-out tiles
keep to their nearest bank tile, says whether a tile looks like any real one: the long-horizon
realism check. Games without labels get the bank alone (`TileModel(classifier=None)`).

    >>> model = load_tile_model("bench/tiles-crafter.safetensors")
    >>> labels = model.classify(frames)   # uint8 [..., 7, 9] class ids, names in model.names
    >>> real = model.looks_real(frames)   # bool [..., 9, 9]: every tile of the lattice
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from worldsim.errors import WorldsimError

__all__ = ["TileGrid", "TileModel", "cut_tiles", "load_tile_model", "save_tile_model"]

FORMAT = "worldsim-tiles/1"


@dataclass(frozen=True)
class TileGrid:
    """Where tiles sit in a frame: `frame_grid` rows x cols of `tile` px from `origin`.

    The first `grid[0]` rows are the labelled map; the rest (Crafter's inventory) are only
    checked for realism.
    """

    tile: tuple[int, int]  # (h, w) px
    origin: tuple[int, int]  # (y, x) px of the top-left tile
    grid: tuple[int, int]  # labelled (map) tiles: rows, cols
    frame_grid: tuple[int, int]  # every tile row (map first), cols

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> TileGrid:
        """From a store's `label_spec["semantic"]` (or the same keys)."""
        grid = tuple(spec["grid"])
        return cls(
            tuple(spec["tile"]), tuple(spec["origin"]), grid, tuple(spec.get("frame_grid", grid))
        )

    def check(self, frame_shape: tuple[int, ...]) -> None:
        """Raise if the lattice does not fit frames of `frame_shape` (H, W, 3)."""
        h = self.origin[0] + self.frame_grid[0] * self.tile[0]
        w = self.origin[1] + self.frame_grid[1] * self.tile[1]
        if len(frame_shape) != 3 or h > frame_shape[0] or w > frame_shape[1]:
            raise WorldsimError(
                f"a tile lattice of {self.frame_grid} tiles of {self.tile} px from {self.origin} "
                f"needs frames of at least {h}x{w}, not {tuple(frame_shape)}: a tile model of "
                "another game or frame size?"
            )


def cut_tiles(frames: np.ndarray, grid: TileGrid, rows: int | None = None) -> np.ndarray:
    """Tiles of frames [..., H, W, 3] -> [..., rows, cols, th * tw * 3] (uint8, a view if possible).

    Args:
        rows: the first `rows` tile rows (default: all of `frame_grid`).
    """
    rows = grid.frame_grid[0] if rows is None else rows
    (th, tw), (y0, x0), cols = grid.tile, grid.origin, grid.frame_grid[1]
    x = np.asarray(frames)[..., y0 : y0 + rows * th, x0 : x0 + cols * tw, :]
    lead = x.shape[:-3]
    x = x.reshape(*lead, rows, th, cols, tw, 3)
    x = np.moveaxis(x, -3, -4)  # [..., rows, cols, th, tw, 3]
    return x.reshape(*lead, rows, cols, th * tw * 3)


class _MLP(nn.Module):
    """Tile pixels -> class logits: two hidden layers, enough for Crafter's fixed textures."""

    def __init__(self, inputs: int, classes: int, width: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(inputs, width),
            nn.GELU(),
            nn.Linear(width, width),
            nn.GELU(),
            nn.Linear(width, classes),
        )

    def forward(self, tiles: torch.Tensor) -> torch.Tensor:  # uint8 [M, P] -> [M, classes]
        return self.net(tiles.float() / 127.5 - 1.0)


class TileModel:
    """Tile classifier (optional) and bank of real tiles, on one tile lattice.

    Args:
        grid: the lattice.
        names: class names (index = class id), [] without a classifier.
        background: names that are not objects (Crafter: none, grass, sand, path).
        classifier: the MLP, or None (realism only).
        bank: uint8 [M, th*tw*3] real tiles.
        threshold: RMS pixel distance (0..255) within which a tile counts as looking real.
        metrics: how the model scored on held-out real frames when trained.
    """

    def __init__(
        self,
        grid: TileGrid,
        names: list[str],
        background: list[str],
        classifier: nn.Module | None,
        bank: np.ndarray,
        threshold: float,
        metrics: dict[str, Any] | None = None,
        device: str = "cpu",
    ) -> None:
        self.grid, self.names, self.background = grid, list(names), list(background)
        self.classifier = classifier.to(device).eval() if classifier is not None else None
        self.bank = torch.as_tensor(np.ascontiguousarray(bank)).to(device)
        self.threshold = float(threshold)
        self.metrics = dict(metrics or {})
        self.device = device
        self._bank_f = self.bank.float()
        self._bank_sq = (self._bank_f**2).sum(1)

    def describe(self) -> dict[str, Any]:
        """What a report says of this tile model: its grid, classes, threshold and scores."""
        return {
            "grid": asdict(self.grid),
            "names": self.names,
            "background": self.background,
            "threshold_rms": self.threshold,
            "metrics": self.metrics,
        }

    @property
    def background_ids(self) -> list[int]:
        return [self.names.index(n) for n in self.background if n in self.names]

    def _need_classifier(self) -> nn.Module:
        if self.classifier is None:
            raise WorldsimError(
                "this tile model has no classifier (it was trained on a store without tile "
                "labels): only looks_real() is available"
            )
        return self.classifier

    @torch.no_grad()
    def classify(self, frames: np.ndarray, batch: int = 65536) -> np.ndarray:
        """Class ids of the map tiles of frames [..., H, W, 3] -> uint8 [..., rows, cols]."""
        return self.probabilities(frames, batch).argmax(-1).astype(np.uint8)

    @torch.no_grad()
    def probabilities(self, frames: np.ndarray, batch: int = 65536) -> np.ndarray:
        """Class probabilities of the map tiles: float32 [..., rows, cols, classes]."""
        net = self._need_classifier()
        self.grid.check(np.shape(frames)[-3:])
        tiles = cut_tiles(frames, self.grid, rows=self.grid.grid[0])
        flat = torch.as_tensor(np.ascontiguousarray(tiles.reshape(-1, tiles.shape[-1])))
        out = [
            net(flat[i : i + batch].to(self.device)).softmax(-1).cpu()
            for i in range(0, len(flat), batch)
        ]
        probs = torch.cat(out) if out else torch.zeros(0, len(self.names))
        return probs.numpy().reshape(*tiles.shape[:-1], len(self.names))

    @torch.no_grad()
    def distances(self, frames: np.ndarray, batch: int = 4096) -> np.ndarray:
        """RMS pixel distance of every tile to its nearest real tile: float32 [..., R, C]."""
        self.grid.check(np.shape(frames)[-3:])
        tiles = cut_tiles(frames, self.grid)
        flat = torch.as_tensor(np.ascontiguousarray(tiles.reshape(-1, tiles.shape[-1])))
        out = []
        for i in range(0, len(flat), batch):
            x = flat[i : i + batch].to(self.device).float()
            d2 = (x**2).sum(1, keepdim=True) - 2 * x @ self._bank_f.T + self._bank_sq
            out.append((d2.min(1).values.clamp(min=0) / x.shape[1]).sqrt().cpu())
        d = torch.cat(out) if out else torch.zeros(0)
        return d.numpy().reshape(tiles.shape[:-1])

    def looks_real(self, frames: np.ndarray) -> np.ndarray:
        """Whether each tile is within `threshold` of a real tile: bool [..., R, C]."""
        return self.distances(frames) <= self.threshold


def save_tile_model(path: str | Path, model: TileModel) -> None:
    """Write the model as one safetensors file (weights, bank, and its settings as metadata)."""
    tensors = {"bank": model.bank.cpu().contiguous()}
    if model.classifier is not None:
        for k, v in model.classifier.state_dict().items():
            tensors[f"classifier.{k}"] = v.detach().cpu().contiguous()
    meta = {
        "format": FORMAT,
        "grid": asdict(model.grid),
        "names": model.names,
        "background": model.background,
        "threshold": model.threshold,
        "width": model.classifier.net[0].out_features if model.classifier is not None else 0,
        "metrics": model.metrics,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"worldsim": json.dumps(meta)})
    tmp.replace(path)  # atomic: a crash never leaves half a file under the name


def load_tile_model(path: str | Path, device: str = "cpu") -> TileModel:
    """Read a tile model written by `save_tile_model` (`worldsim bench train-tiles`)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise WorldsimError(
            f"no tile model at {path}: train one with `worldsim bench train-tiles --data STORE "
            f"--out {path}`"
        )
    try:
        with safe_open(str(path), "pt") as f:
            meta = json.loads((f.metadata() or {}).get("worldsim", "{}"))
        tensors = load_file(str(path))
    except Exception as e:  # safetensors raises its own error types for bad files
        raise WorldsimError(f"{path} is not a readable tile model ({e})") from None
    if meta.get("format") != FORMAT:
        raise WorldsimError(
            f"{path} is not a worldsim tile model (format {meta.get('format')!r}): train one "
            "with `worldsim bench train-tiles`"
        )
    g = meta["grid"]
    grid = TileGrid(tuple(g["tile"]), tuple(g["origin"]), tuple(g["grid"]), tuple(g["frame_grid"]))
    classifier = None
    if meta["width"]:
        classifier = _MLP(grid.tile[0] * grid.tile[1] * 3, len(meta["names"]), meta["width"])
        classifier.load_state_dict(
            {k.removeprefix("classifier."): v for k, v in tensors.items() if k != "bank"}
        )
    return TileModel(
        grid,
        meta["names"],
        meta["background"],
        classifier,
        tensors["bank"].numpy(),
        meta["threshold"],
        meta.get("metrics"),
        device=device,
    )
