"""Training the inverse-dynamics model: a plain AdamW loop over real transitions (it is small)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from worldsim.bench.idm import InverseDynamics, action_targets, save_idm
from worldsim.errors import StoreError

__all__ = ["fit_idm", "score_episodes", "train_idm_on_store"]


def fit_idm(
    episodes: Sequence[tuple[np.ndarray, Any]],
    action_space: gym.Space,
    *,
    steps: int = 2000,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    device: str = "cpu",
    width: int = 32,
    log: Callable[[str], None] | None = None,
    log_every: int = 100,
) -> InverseDynamics:
    """Train an IDM on real transitions with AdamW (a plain loop: the model is small).

    Args:
        episodes: (frames uint8 [T+1, H, W, 3], actions [T, ...] or dict) per episode.
        action_space: their action space.
        steps / batch_size / lr: optimisation; transitions are drawn uniformly at random.

    Returns:
        The trained model in eval mode.
    """
    if not episodes:
        raise StoreError("no episodes to train the inverse-dynamics model on")
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    model = InverseDynamics(action_space, episodes[0][0].shape[1:], width=width).to(device)
    targets = [torch.as_tensor(action_targets(action_space, a)) for _, a in episodes]
    index = np.concatenate(
        [np.stack([np.full(len(t), e), np.arange(len(t))], 1) for e, t in enumerate(targets)]
    )
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    model.train()
    start, running = time.perf_counter(), 0.0
    for step in range(1, steps + 1):
        pick = index[rng.integers(len(index), size=batch_size)]
        f0 = np.stack([episodes[e][0][t] for e, t in pick])
        f1 = np.stack([episodes[e][0][t + 1] for e, t in pick])
        y = torch.stack([targets[e][t] for e, t in pick])
        loss = model.loss(model(torch.as_tensor(f0), torch.as_tensor(f1)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        running += loss.item()
        if log and (step % log_every == 0 or step == steps):
            n = log_every if step % log_every == 0 else step % log_every
            log(f"step {step}/{steps}  loss {running / n:.4f}  {time.perf_counter() - start:.0f}s")
            running = 0.0
    return model.eval()


def score_episodes(
    model: InverseDynamics, episodes: Sequence[tuple[np.ndarray, Any]]
) -> dict[str, Any]:
    """`InverseDynamics.evaluate` on every transition of (frames [T+1], actions [T]) episodes."""
    f0 = np.concatenate([f[:-1] for f, _ in episodes])
    f1 = np.concatenate([f[1:] for f, _ in episodes])
    if isinstance(episodes[0][1], dict):
        actions = {k: np.concatenate([a[k] for _, a in episodes]) for k in episodes[0][1]}
    else:
        actions = np.concatenate([a for _, a in episodes])
    return model.evaluate(f0, f1, actions)


def train_idm_on_store(
    store: Any,
    out: str | Path,
    *,
    steps: int = 3000,
    batch_size: int = 64,
    lr: float = 1e-3,
    width: int = 32,
    max_bytes: float = 1e9,
    seed: int = 0,
    device: str = "cpu",
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Train an IDM on a store's train split (episodes up to `max_bytes` of frames), score it
    on the train split and on held-out episodes (val, else test), and save it to `out`.

    Returns:
        The metrics saved with the model: {"train", "held_out" (if any), "steps", "data"}.
    """
    from worldsim.bench.data import load_episodes, store_fingerprint

    train = store.split("train")
    if not train:
        raise StoreError(f"the store at {store.path} has no train episodes: collect more episodes")
    held = store.split("val") or store.split("test")
    episodes = [(f, a) for _, f, a in load_episodes(store, train, max_bytes=max_bytes, seed=seed)]
    if log:
        log(
            f"training the IDM on {sum(len(f) - 1 for f, _ in episodes):,} transitions of "
            f"{len(episodes)} train episodes, {steps} steps"
        )
    model = fit_idm(
        episodes,
        store.action_space,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        device=device,
        width=width,
        log=log,
    )
    metrics = {
        "train": score_episodes(model, episodes[:8]),
        "steps": steps,
        "data": store_fingerprint(store, []),
    }
    if held:
        held_eps = [(f, a) for _, f, a in load_episodes(store, held, max_bytes=2e8, seed=seed)]
        metrics["held_out"] = score_episodes(model, held_eps)
    save_idm(model, out, metrics=metrics)
    return metrics
