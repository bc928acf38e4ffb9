"""Inverse-dynamics model: a small CNN that reads the action from (frame_t, frame_t+1).

Trained on real transitions of a game (`worldsim bench train-idm`), it labels the transitions a
world model generates; its accuracy there, next to its accuracy on real transitions, says how
well the generated frames follow the actions (the metric of MineWorld and Matrix-Game).
Every action space works: each component of the action is one output head, a classification
for Discrete / MultiDiscrete components, a binary one for MultiBinary bits, and a regression
(on the [-1, 1]-scaled value) for Box dimensions. Saved as safetensors + JSON metadata.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.functional.classification import binary_f1_score, multiclass_f1_score

from worldsim.errors import CheckpointError, StoreError

__all__ = [
    "ActionHead",
    "InverseDynamics",
    "action_heads",
    "action_targets",
    "load_idm",
    "save_idm",
    "score_targets",
]

FORMAT = "worldsim-idm/1"
MAX_SIDE = 128  # frames are shrunk (area) until the longer side fits: the IDM needs no detail


@dataclass(frozen=True)
class ActionHead:
    """One component of an action: `kind` "class" (size classes), "binary" or "box"."""

    name: str
    kind: str
    size: int = 1
    offset: float = 0.0  # class = value - offset; box: scaled = (value - offset) / scale
    scale: float = 1.0


def _leaves(space: gym.Space, name: str = "action") -> list[tuple[str, gym.Space]]:
    if isinstance(space, gym.spaces.Dict):
        return [leaf for k, sub in space.spaces.items() for leaf in _leaves(sub, k)]
    return [(name, space)]


def action_heads(space: gym.Space) -> list[ActionHead]:
    """The output heads for an action space, one per scalar component."""
    heads = []
    for name, leaf in _leaves(space):
        if isinstance(leaf, gym.spaces.Discrete):
            heads.append(ActionHead(name, "class", int(leaf.n), float(leaf.start)))
        elif isinstance(leaf, gym.spaces.MultiDiscrete):
            nvec, start = np.asarray(leaf.nvec).reshape(-1), np.asarray(leaf.start).reshape(-1)
            heads += [
                ActionHead(f"{name}[{i}]", "class", int(n), float(s))
                for i, (n, s) in enumerate(zip(nvec, start))
            ]
        elif isinstance(leaf, gym.spaces.MultiBinary):
            heads += [ActionHead(f"{name}[{i}]", "binary") for i in range(int(np.prod(leaf.shape)))]
        elif isinstance(leaf, gym.spaces.Box):
            low, high = leaf.low.reshape(-1).astype(float), leaf.high.reshape(-1).astype(float)
            for i, (lo, hi) in enumerate(zip(low, high)):
                ok = np.isfinite(lo) and np.isfinite(hi) and hi > lo
                heads.append(
                    ActionHead(
                        f"{name}[{i}]",
                        "box",
                        1,
                        (lo + hi) / 2 if ok else 0.0,
                        (hi - lo) / 2 if ok else 1.0,
                    )
                )
        else:
            raise StoreError(f"the IDM cannot read actions of space {leaf}")
    return heads


def action_targets(space: gym.Space, actions: np.ndarray | dict[str, np.ndarray]) -> np.ndarray:
    """Actions [M, ...] (or a dict of such) -> float64 targets [M, heads] (class index, 0/1, scaled)."""
    cols = []
    for name, _ in _leaves(space):
        a = np.asarray(actions[name] if isinstance(actions, dict) else actions, dtype=np.float64)
        cols.append(a.reshape(len(a), -1))
    values = np.concatenate(cols, axis=1)
    heads = action_heads(space)
    offset = np.array([h.offset for h in heads])
    scale = np.array([h.scale for h in heads])
    return (values - offset) / scale


def score_targets(
    heads: Sequence[ActionHead], preds: np.ndarray, target: np.ndarray
) -> dict[str, Any]:
    """Accuracy / macro-F1 of class and binary heads, mean absolute error of box heads.

    Args:
        preds, target: [M, heads] from `action_targets` (predictions: rounded classes).

    Returns:
        {"accuracy", "f1", "exact" (all categorical heads right), "box_mae", "n", "heads": {name:
        {"accuracy", "f1", and for class heads "recall" and "support" per class} or {"mae"}}};
        a summary is None when no head of its kind exists.
    """
    preds, target = np.asarray(preds), np.asarray(target)
    per_head, accs, f1s = {}, [], []
    exact = np.ones(len(target), dtype=bool)
    maes = []
    for j, h in enumerate(heads):
        p, t = preds[:, j], target[:, j]
        if h.kind == "box":
            maes.append(float(np.abs(p - t).mean()) if len(t) else None)
            per_head[h.name] = {"mae": maes[-1]}
            continue
        pi, ti = (
            torch.as_tensor(p.round().astype(np.int64)),
            torch.as_tensor(t.round().astype(np.int64)),
        )
        correct = (pi == ti).numpy()
        exact &= correct
        if h.kind == "class":
            f1 = multiclass_f1_score(
                pi.clamp(0, h.size - 1), ti, num_classes=h.size, average="macro"
            )
        else:
            f1 = binary_f1_score(pi.clamp(0, 1), ti)
        accs.append(float(correct.mean()) if len(t) else None)
        f1s.append(float(f1) if len(t) else None)
        per_head[h.name] = {"accuracy": accs[-1], "f1": f1s[-1]}
        if h.kind == "class":  # which actions can be read at all (in Crafter: the moves)
            support = np.bincount(ti.numpy(), minlength=h.size)
            hits = np.bincount(ti.numpy()[correct], minlength=h.size)
            per_head[h.name]["support"] = support.tolist()
            per_head[h.name]["recall"] = [
                float(k / n) if n else None for k, n in zip(hits, support)
            ]

    def mean(v: list) -> float | None:
        v = [x for x in v if x is not None]
        return float(np.mean(v)) if v else None

    return {
        "accuracy": mean(accs),
        "f1": mean(f1s),
        "exact": float(exact.mean()) if accs and len(target) else None,
        "box_mae": mean(maes),
        "n": len(target),
        "heads": per_head,
    }


def _size(frame_shape: Sequence[int]) -> tuple[int, int]:
    H, W = int(frame_shape[0]), int(frame_shape[1])
    f = max(1, -(-max(H, W) // MAX_SIDE))
    return H // f, W // f


class InverseDynamics(nn.Module):
    """CNN over (frame_t, frame_t+1, their difference) -> one output per action component.

    Args:
        action_space: the game's action space.
        frame_shape: (H, W, 3) of the game's frames.
        width: channels of the first conv layer (doubling twice).
        hidden: width of the MLP before the heads.
    """

    def __init__(
        self,
        action_space: gym.Space,
        frame_shape: Sequence[int],
        width: int = 32,
        hidden: int = 256,
    ) -> None:
        super().__init__()
        self.action_space, self.frame_shape = action_space, tuple(int(s) for s in frame_shape)
        self.width, self.hidden = width, hidden
        self.size = _size(frame_shape)
        self.heads = action_heads(action_space)
        widths = (width, 2 * width, 4 * width, 4 * width)
        layers, c_in = [], 9
        for c in widths:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.GroupNorm(8, c), nn.SiLU()]
            c_in = c
        self.convs = nn.Sequential(*layers, nn.AdaptiveAvgPool2d((4, 4)), nn.Flatten())
        outputs = sum(h.size if h.kind == "class" else 1 for h in self.heads)
        self.mlp = nn.Sequential(
            nn.Linear(c_in * 16, hidden), nn.SiLU(), nn.Linear(hidden, outputs)
        )

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, frames0: Tensor, frames1: Tensor) -> Tensor:
        """frames0, frames1 uint8 [B, H, W, 3] -> raw outputs [B, outputs]."""
        a = frames0.to(self.device).permute(0, 3, 1, 2).float() / 127.5 - 1  # [B, 3, H, W]
        b = frames1.to(self.device).permute(0, 3, 1, 2).float() / 127.5 - 1
        x = torch.cat([a, b, b - a], dim=1)  # [B, 9, H, W]
        if tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="area")
        return self.mlp(self.convs(x))

    def _split(self, out: Tensor) -> list[Tensor]:
        return list(out.split([h.size if h.kind == "class" else 1 for h in self.heads], dim=1))

    def loss(self, out: Tensor, targets: Tensor) -> Tensor:
        """Mean over heads of cross-entropy / BCE / MSE against targets [B, heads]."""
        losses = []
        for j, (h, o) in enumerate(zip(self.heads, self._split(out))):
            t = targets[:, j].to(o.device)
            if h.kind == "class":
                losses.append(F.cross_entropy(o, t.long()))
            elif h.kind == "binary":
                losses.append(F.binary_cross_entropy_with_logits(o[:, 0], t.float()))
            else:
                losses.append(F.mse_loss(o[:, 0], t.float()))
        return torch.stack(losses).mean()

    @torch.no_grad()
    def predict_targets(
        self, frames0: np.ndarray, frames1: np.ndarray, batch_size: int = 256
    ) -> np.ndarray:
        """Predicted targets [M, heads] for transitions frames0 -> frames1, uint8 [M, H, W, 3]."""
        self.eval()
        rows = []
        for i in range(0, len(frames0), batch_size):
            out = self(
                torch.as_tensor(frames0[i : i + batch_size]),
                torch.as_tensor(frames1[i : i + batch_size]),
            )
            cols = []
            for h, o in zip(self.heads, self._split(out)):
                if h.kind == "class":
                    cols.append(o.argmax(dim=1).double())
                elif h.kind == "binary":
                    cols.append((o[:, 0] > 0).double())
                else:
                    cols.append(o[:, 0].double())
            rows.append(torch.stack(cols, dim=1).cpu())
        return torch.cat(rows).numpy() if rows else np.zeros((0, len(self.heads)))

    def evaluate(self, frames0: np.ndarray, frames1: np.ndarray, actions: Any) -> dict[str, Any]:
        """`score_targets` of this IDM on transitions frames0 -> frames1 driven by `actions`."""
        target = action_targets(self.action_space, actions)
        return score_targets(self.heads, self.predict_targets(frames0, frames1), target)


def save_idm(
    model: InverseDynamics, path: str | Path, metrics: dict[str, Any] | None = None
) -> Path:
    """Write the IDM as one safetensors file with its spaces and config in the metadata."""
    from safetensors.torch import save_file

    from worldsim.data.spaces import serialize_space

    meta = {
        "format": FORMAT,
        "action_space": serialize_space(model.action_space),
        "config": json.dumps(
            {"frame_shape": model.frame_shape, "width": model.width, "hidden": model.hidden}
        ),
        "metrics": json.dumps(metrics or {}),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata=meta)
    return path


def load_idm(path: str | Path, device: str = "cpu") -> tuple[InverseDynamics, dict[str, Any]]:
    """Load an IDM written by `save_idm`; returns (model in eval mode, its saved metrics)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from worldsim.data.spaces import deserialize_space

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"no inverse-dynamics model at {path}: train one with "
            f"`worldsim bench train-idm --data STORE --out {path}`"
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if meta.get("format") != FORMAT:
            raise CheckpointError(f"{path} is not a worldsim IDM (format {meta.get('format')!r})")
        config = json.loads(meta["config"])
        model = InverseDynamics(
            deserialize_space(meta["action_space"]),
            config["frame_shape"],
            config["width"],
            config["hidden"],
        )
        model.load_state_dict(load_file(str(path)))
    except (OSError, KeyError, ValueError, RuntimeError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(
            f"cannot load the IDM at {path} ({e}); retrain it with train-idm"
        ) from None
    return model.to(device).eval(), json.loads(meta.get("metrics", "{}"))
