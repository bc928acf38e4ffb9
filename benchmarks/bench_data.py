"""Data benchmark: collection frames/s per game and worker count, store bytes/frame, clip reads.

    python benchmarks/bench_data.py                 # all figures (a few minutes on 2 cores)
    python benchmarks/bench_data.py --games crafter --workers 1 2 --episodes 4

Prints a Markdown table per figure and writes them as JSON to --out (default
benchmarks/results/data.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from envs.collect import CollectConfig, collect
from worldsim.data import EpisodeStore
from worldsim.data.summary import disk_bytes


def bench_collect(game: str, workers: int, episodes: int, max_steps: int, root: Path) -> dict:
    out = root / f"{game}-{workers}"
    shutil.rmtree(out, ignore_errors=True)
    cfg = CollectConfig(
        game=game,
        episodes=episodes,
        out=str(out),
        policy="sticky",
        workers=workers,
        max_steps=max_steps,
    )
    s = collect(cfg, progress=False)
    store = EpisodeStore.open(str(out))
    return {
        "game": game,
        "workers": workers,
        "episodes": s["episodes_added"],
        "frames": s["frames_added"],
        "frames_per_second": round(s["frames_per_second"], 1),
        "bytes_per_frame": round(disk_bytes(str(out)) / store.num_frames, 1),
        "raw_bytes_per_frame": int(np.prod(store.frame_shape)),
        "store": str(out),
    }


class RandomClips(Dataset):
    """Random 16-frame clips, as training reads them."""

    def __init__(self, path: str, length: int, n: int) -> None:
        self.path, self.length, self.n = path, length, n
        self.store: EpisodeStore | None = None

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k: int) -> torch.Tensor:
        if self.store is None:  # opened in each worker process
            self.store = EpisodeStore.open(self.path)
        rng = np.random.default_rng(k)
        valid = np.flatnonzero(self.store.lengths + 1 >= self.length)
        i = int(rng.choice(valid))
        start = int(rng.integers(0, self.store.lengths[i] + 2 - self.length))
        return torch.from_numpy(self.store.clip(i, start, self.length).frames)


def bench_clips(path: str, length: int = 16, n: int = 3000) -> list[dict]:
    rows = []
    ds = RandomClips(path, length, n)
    ds[0]  # open and warm up
    cpu, wall = time.process_time(), time.perf_counter()
    for k in range(n):
        ds[k]
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    rows.append(
        {
            "mode": "single process",
            "clips_per_second": round(n / wall),
            "cpu_ms_per_clip": round(1e3 * cpu / n, 3),
        }
    )
    for workers in (2,):
        loader = DataLoader(
            RandomClips(path, length, n),
            batch_size=32,
            num_workers=workers,
            persistent_workers=False,
        )
        it = iter(loader)
        next(it)  # worker start-up is not clip reading
        wall = time.perf_counter()
        got = 32
        for batch in it:
            got += len(batch)
        wall = time.perf_counter() - wall
        rows.append(
            {
                "mode": f"DataLoader, {workers} workers, batch 32",
                "clips_per_second": round((got - 32) / wall),
                "cpu_ms_per_clip": None,
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += [
        "| " + " | ".join("-" if r[k] is None else str(r[k]) for k in keys) + " |" for r in rows
    ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--games", nargs="+", default=["crafter", "doom-health", "breakout"])
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--episodes", type=int, default=4)
    p.add_argument("--max-steps", type=int, default=500)
    p.add_argument("--out", default="benchmarks/results/data.json")
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="worldsim-bench-"))
    try:
        collect_rows = [
            bench_collect(g, w, args.episodes, args.max_steps, root)
            for g in args.games
            for w in args.workers
        ]
        print(
            f"## Collection (sticky policy, episodes of at most {args.max_steps} steps; {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)\n"
        )
        print(table([{k: v for k, v in r.items() if k != "store"} for r in collect_rows]))
        crafter = next((r["store"] for r in collect_rows if r["game"] == "crafter"), None)
        clip_rows = []
        if crafter:
            clip_rows = bench_clips(crafter)
            print("\n## Random 16-frame Crafter clips\n")
            print(table(clip_rows))
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(
            json.dumps({"collect": collect_rows, "clips": clip_rows}, indent=2)
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
