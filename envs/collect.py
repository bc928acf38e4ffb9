"""Record real play into an episode store, in parallel worker processes.

`worldsim collect --game crafter --episodes 100 --out data/crafter --policy sticky --workers 2`

Episode k of a run with seed S is played with its own seed, derived from (S, k), and written
under its own key by the worker that played it, so:
- a run is reproducible for a given seed, as far as the game itself is;
- Ctrl-C or a crash loses at most the episodes in progress; and running the same command
  again plays only the missing episodes (the store then holds N episodes of that policy and
  seed). A larger --episodes, or another --seed, adds episodes.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from worldsim.data import EpisodeStore
from worldsim.data.lock import writer_lock
from worldsim.errors import StoreError


@dataclass
class CollectConfig:
    """What to record. Fields match the `worldsim collect` options."""

    game: str = "crafter"  # a name known to envs.games.make_game
    episodes: int = 10  # episodes of this policy and seed the store holds when done
    out: str = "data/crafter"  # store directory or fsspec URL
    # random | sticky | explorer | builder | sleeper | achiever | the path of a saved agent
    policy: str = "sticky"
    workers: int = 1  # worker processes, each with its own game instance
    seed: int = 0  # run seed: episode k is played with a seed derived from (seed, k)
    # cut episodes at this many steps (truncated); default: the game's limit
    max_steps: int | None = None
    game_kwargs: dict[str, Any] = field(default_factory=dict)  # extra arguments for make_game


def episode_seed(run_seed: int, k: int) -> int:
    """The seed of episode k of a run (independent streams for every (run seed, k))."""
    return int(np.random.SeedSequence([run_seed, k]).generate_state(1)[0])


_WORKER: dict[str, Any] = {}  # per worker process: its env, policy and open store


def _worker_state(cfg: CollectConfig) -> tuple[Any, Any, EpisodeStore]:
    if "env" not in _WORKER:
        from envs.games import make_game

        kwargs = dict(cfg.game_kwargs)
        if cfg.max_steps is not None:
            kwargs["max_episode_steps"] = cfg.max_steps
        env = make_game(cfg.game, **kwargs)
        _WORKER.update(
            env=env,
            policy=policy_for(cfg.policy, env),
            store=EpisodeStore.open(cfg.out, mode="a"),
        )
    return _WORKER["env"], _WORKER["policy"], _WORKER["store"]


def policy_for(spec: str, env: Any) -> Any:
    """The behaviour policy `spec` for this env (told its action names and labels)."""
    from envs.policies import make_policy

    game = env.unwrapped
    return make_policy(
        spec,
        env.action_space,
        getattr(game, "action_names", None),
        getattr(game, "label_spec", None),
    )


def play_episode(env: Any, policy: Any, seed: int) -> dict[str, Any]:
    """Play one episode; returns its arrays (frames [T+1,H,W,3], actions [T,...], ...) and info.

    Per-frame labels the game puts in its info (the names in its `label_spec["arrays"]`, e.g.
    Crafter's `semantic` tiles) come back as `labels`: name -> [T+1, ...].
    """
    policy.reset(seed)
    obs, info = env.reset(seed=seed)
    see = getattr(policy, "see", lambda info: None)
    see(info)
    label_names = getattr(env.unwrapped, "label_spec", {}).get("arrays", [])
    labels = {k: [info[k]] for k in label_names}
    frames, actions, rewards, terminated, truncated = [obs], [], [], [], []
    while True:
        action = policy(obs)
        obs, reward, term, trunc, info = env.step(action)
        see(info)
        for k in label_names:
            labels[k].append(info[k])
        frames.append(obs)
        actions.append(action)
        rewards.append(reward)
        terminated.append(term)
        truncated.append(trunc)
        if term or trunc:
            break
    final = {k: info[k] for k in ("achievements",) if k in info}
    return dict(
        frames=np.stack(frames),
        actions=actions,
        rewards=np.asarray(rewards, np.float32),
        terminated=np.asarray(terminated, bool),
        truncated=np.asarray(truncated, bool),
        labels={k: np.stack(v) for k, v in labels.items()},
        final_info=final,
    )


def _collect_one(cfg: CollectConfig, k: int, key: int) -> tuple[int, int, float]:
    env, policy, store = _worker_state(cfg)
    seed = episode_seed(cfg.seed, k)
    ep = play_episode(env, policy, seed)
    info = {
        "policy": cfg.policy,
        "run_seed": cfg.seed,
        "k": k,
        "seed": seed,
        "return": float(ep["rewards"].sum()),
        **ep.pop("final_info"),
    }
    store.append(
        ep["frames"],
        ep["actions"],
        ep["rewards"],
        ep["terminated"],
        ep["truncated"],
        info=info,
        labels=ep["labels"],
        index=key,
    )
    return k, len(ep["rewards"]) + 1, info["return"]


def open_store_for(cfg: CollectConfig) -> EpisodeStore:
    """Create the store for this game (or open it, checking it holds the same game)."""
    from envs.games import make_game

    env = make_game(cfg.game, **cfg.game_kwargs)
    try:
        names = getattr(env.unwrapped, "action_names", None)
        metadata = {
            "policy": cfg.policy,
            "seed": cfg.seed,
            "action_names": list(names) if names else None,
        }
        return EpisodeStore.create(
            cfg.out,
            game=cfg.game,
            action_space=env.action_space,
            observation_space=env.observation_space,
            fps=float(env.metadata.get("render_fps") or 30),
            metadata=metadata,
            label_spec=getattr(env.unwrapped, "label_spec", None),
            exist_ok=True,
        )
    finally:
        env.close()


def missing_episodes(store: EpisodeStore, cfg: CollectConfig) -> list[int]:
    """Episode numbers k < cfg.episodes of this policy and seed the store does not hold yet."""
    done = set()
    for i in range(len(store)):
        info = store.info(i)
        if info.get("policy") == cfg.policy and info.get("run_seed") == cfg.seed:
            done.add(int(info["k"]))
    return [k for k in range(cfg.episodes) if k not in done]


def collect(cfg: CollectConfig, progress: bool = True) -> dict[str, Any]:
    """Record `cfg.episodes` episodes into `cfg.out`; returns a summary with frames/s."""
    if cfg.episodes < 0 or cfg.workers < 1:
        raise StoreError("--episodes must be >= 0 and --workers >= 1")
    from envs.games import make_game

    env = make_game(cfg.game, **cfg.game_kwargs)  # a bad game or policy: nothing is created
    try:
        policy_for(cfg.policy, env)
    finally:
        env.close()
    with writer_lock(cfg.out, f"worldsim collect --policy {cfg.policy} --seed {cfg.seed}"):
        return _collect_locked(cfg, progress)


def _collect_locked(cfg: CollectConfig, progress: bool) -> dict[str, Any]:
    store = open_store_for(cfg)
    store.remove_incomplete()  # leftovers of an interrupted run: no other writer holds the lock
    todo = missing_episodes(store, cfg)
    first_key = store.next_index()
    start = time.perf_counter()
    frames = 0
    returns: list[float] = []
    bar = _progress(progress, len(todo), cfg)
    try:
        if cfg.workers == 1:
            for j, k in enumerate(todo):
                _, n, ret = _collect_one(cfg, k, first_key + j)
                frames += n
                returns.append(ret)
                bar.update(n, time.perf_counter() - start)
        else:
            ctx = mp.get_context("spawn")  # zarr's I/O thread does not survive fork
            with cf.ProcessPoolExecutor(cfg.workers, mp_context=ctx) as pool:
                futures = [
                    pool.submit(_collect_one, cfg, k, first_key + j) for j, k in enumerate(todo)
                ]
                try:
                    for fut in cf.as_completed(futures):
                        _, n, ret = fut.result()
                        frames += n
                        returns.append(ret)
                        bar.update(n, time.perf_counter() - start)
                except BaseException:
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
    finally:
        bar.close()
        _WORKER.clear()
    seconds = time.perf_counter() - start
    store.refresh()
    return {
        "episodes_added": len(returns),
        "frames_added": frames,
        "seconds": seconds,
        "frames_per_second": frames / seconds if seconds > 0 else 0.0,
        "mean_return": float(np.mean(returns)) if returns else float("nan"),
        "episodes_in_store": len(store),
    }


class _progress:
    """A rich progress bar of episodes with frames and frames/s (silent when disabled)."""

    def __init__(self, enabled: bool, total: int, cfg: CollectConfig) -> None:
        self.bar = None
        self.frames = 0
        if enabled and total:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self.bar = Progress(
                TextColumn(f"collect {cfg.game} ({cfg.policy}, {cfg.workers} workers)"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[frames]} frames, {task.fields[fps]:.0f} frames/s"),
                TimeElapsedColumn(),
            )
            self.task = self.bar.add_task("episodes", total=total, frames=0, fps=0.0)
            self.bar.start()

    def update(self, frames: int, elapsed: float) -> None:
        self.frames += frames
        if self.bar is not None:
            self.bar.update(
                self.task, advance=1, frames=self.frames, fps=self.frames / max(elapsed, 1e-9)
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
