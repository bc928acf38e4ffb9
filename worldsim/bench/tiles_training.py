"""Training the tile model on labelled real frames: `worldsim bench train-tiles` (seconds on a CPU).

The classifier is a tiny MLP over each tile's pixels, trained with AdamW on the map tiles of the
store's train split (rare classes drawn more often) and scored on its held-out episodes. The realism bank holds the most
frequent distinct real tiles (ties drawn at random); its threshold is the `quantile` of held-out tiles' nearest-bank distances
on one half of the held-out episodes, and the share within it is reported on the other half.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from worldsim.bench.tiles import _MLP, TileGrid, TileModel, cut_tiles
from worldsim.errors import StoreError

__all__ = ["train_tile_model"]


def _frames_and_labels(store: Any, indices: list[int], max_bytes: float) -> tuple[Any, Any]:
    frames, labels, total = [], [], 0
    for i in indices:
        ep = store.episode(i)
        frames.append(ep.frames)
        labels.append(ep.labels.get("semantic"))
        total += ep.frames.nbytes
        if total >= max_bytes:
            break
    return frames, labels


def _held_out(store: Any) -> tuple[list[int], list[int]]:
    """Train and held-out episode indices (the store's val + test split, else its last tenth)."""
    train, held = store.split("train"), sorted(store.split("val") + store.split("test"))
    if not held:
        n = max(1, len(store) // 10)
        train, held = list(range(len(store) - n)), list(range(len(store) - n, len(store)))
    if not train:
        raise StoreError(
            f"the store at {store.path} has {len(store)} episode(s): the tile model needs at "
            "least 2 (one to train on, one to check it on)"
        )
    return train, held


def _accuracy(pred: np.ndarray, real: np.ndarray, names: list[str], background: list[int]) -> dict:
    objects = ~np.isin(real, background)
    per_class = {
        names[c]: {
            "accuracy": float((pred[real == c] == c).mean()),
            "tiles": int((real == c).sum()),
        }
        for c in np.unique(real)
    }
    return {
        "accuracy": float((pred == real).mean()),
        "object_accuracy": float((pred[objects] == real[objects]).mean())
        if objects.any()
        else None,
        "tiles": int(real.size),
        "per_class": per_class,
    }


def train_tile_model(
    store: Any,
    *,
    steps: int = 3000,
    batch_size: int = 512,
    lr: float = 2e-3,
    width: int = 256,
    bank_size: int = 20000,
    quantile: float = 0.99,
    tile: tuple[int, int] | None = None,
    max_bytes: float = 1e9,
    seed: int = 0,
    device: str = "cpu",
    log: Callable[[str], None] | None = None,
) -> TileModel:
    """Train a tile model on `store` (an EpisodeStore); returns it with its held-out metrics.

    Args:
        store: real episodes. With Crafter's `semantic` labels the classifier is trained; without
            labels only the realism bank is built, on a lattice of `tile` px from the top-left.
        steps, batch_size, lr, width: the classifier's optimisation and hidden width.
        bank_size: distinct real tiles kept for the nearest-tile distance.
        quantile: share of real held-out tiles the realism threshold admits.
        max_bytes: frames held in memory, per part (train / held out).
    """
    say = log or (lambda _msg: None)
    if not 0 < quantile <= 1 or steps < 1 or batch_size < 1 or bank_size < 1:
        raise StoreError(
            f"quantile must be in (0, 1] (got {quantile}); steps, batch_size and bank_size at "
            f"least 1 (got {steps}, {batch_size}, {bank_size})"
        )
    spec = store.label_spec.get("semantic")
    if spec is not None:
        grid = TileGrid.from_spec(spec)
        names, background = list(spec["names"]), list(spec.get("background", []))
    elif tile is not None:
        h, w = store.frame_shape[:2]
        grid = TileGrid(tuple(tile), (0, 0), (0, w // tile[1]), (h // tile[0], w // tile[1]))
        names, background = [], []
    else:
        raise StoreError(
            f"the store at {store.path} has no tile labels: pass --tile H W to build a realism "
            "bank only, or record Crafter with `worldsim collect` (which writes the labels)"
        )
    grid.check(store.frame_shape)
    tile_px = grid.tile[0] * grid.tile[1] * 3  # values per tile
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    train_idx, held_idx = _held_out(store)
    train_f, train_l = _frames_and_labels(store, train_idx, max_bytes)
    held_f, held_l = _frames_and_labels(store, held_idx, max_bytes)
    labelled = spec is not None and all(x is not None for x in train_l + held_l)
    if spec is not None and not labelled:
        raise StoreError(
            f"some episodes of {store.path} have no `semantic` labels: re-record them with "
            "`worldsim collect` (see `worldsim data info`)"
        )
    metrics: dict[str, Any] = {
        "store": store.path,
        "train_episodes": len(train_f),
        "held_out_episodes": len(held_f),
    }
    classifier = None
    if labelled:
        rows = grid.grid[0]
        x = np.concatenate([cut_tiles(f, grid, rows).reshape(-1, tile_px) for f in train_f])
        y = np.concatenate([lab.reshape(-1) for lab in train_l]).astype(np.int64)
        classifier = _MLP(x.shape[1], len(names), width).to(device)
        opt = torch.optim.AdamW(classifier.parameters(), lr=lr, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.1)
        xt, yt = torch.as_tensor(x), torch.as_tensor(y)
        # Rare classes (a table, a plant) drawn more often: weights ~ 1/sqrt(class frequency).
        freq = np.bincount(y, minlength=len(names)).astype(np.float64)
        weight = 1.0 / np.sqrt(np.maximum(freq, 1))[y]
        cdf = np.cumsum(weight / weight.sum())
        start = time.perf_counter()
        for step in range(1, steps + 1):
            pick = torch.as_tensor(
                np.minimum(np.searchsorted(cdf, rng.random(batch_size)), len(x) - 1)
            )
            loss = torch.nn.functional.cross_entropy(
                classifier(xt[pick].to(device)), yt[pick].to(device)
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if step % 500 == 0 or step == steps:
                say(f"tiles: step {step}/{steps}, loss {loss.item():.4f}")
        metrics["train_seconds"] = time.perf_counter() - start
        metrics["train_tiles"] = len(x)
        classifier.eval()
    # The bank: distinct real tiles of the whole lattice (map and inventory) of train frames.
    every = np.concatenate([cut_tiles(f, grid).reshape(-1, tile_px) for f in train_f])
    rows_as_bytes = np.ascontiguousarray(every).view(np.dtype((np.void, every.shape[1])))
    _, first, counts = np.unique(rows_as_bytes.ravel(), return_index=True, return_counts=True)
    distinct = every[first]
    # The most frequent first (a black inventory slot must be in), ties in random order.
    order = np.lexsort((rng.random(len(counts)), -counts))
    bank = distinct[order[:bank_size]]
    model = TileModel(grid, names, background, classifier, bank, threshold=np.inf, device=device)
    half = max(1, len(held_f) // 2)
    calib, report = held_f[:half], held_f[half:] or held_f[:half]
    d_calib = np.concatenate([model.distances(f).reshape(-1) for f in calib])
    model.threshold = float(np.quantile(d_calib, quantile))
    d_report = np.concatenate([model.distances(f).reshape(-1) for f in report])
    metrics["realism"] = {
        "bank_tiles": len(bank),
        "distinct_train_tiles": len(distinct),
        "quantile": quantile,
        "threshold_rms": model.threshold,
        "held_out_share_real": float((d_report <= model.threshold).mean()),
    }
    if labelled:
        pred = np.concatenate([model.classify(f).reshape(-1) for f in held_f])
        real = np.concatenate([lab.reshape(-1) for lab in held_l])
        metrics["held_out"] = _accuracy(pred, real, names, model.background_ids)
        train_pred = model.classify(train_f[0])
        metrics["train_first_episode_accuracy"] = float((train_pred == train_l[0]).mean())
    model.metrics = metrics
    return model
