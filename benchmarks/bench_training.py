"""Training benchmark: samples/s and achieved TFLOP/s (vs. the device's matmul peak) per preset.

    python benchmarks/bench_training.py                          # tiny and S on the CPU
    python benchmarks/bench_training.py --presets S --steps 5
    python benchmarks/bench_training.py --device cuda --precision bf16-mixed --presets S B --batch 64

Two figures per preset, both on 64x64 Crafter-shaped clips of the preset's context length
(Discrete(17) actions):
- step: one optimizer step of `WorldModelSystem` on an in-memory batch (forward, backward,
  AdamW, EMA update), the median of --steps steps after warmup;
- fit: `Trainer.fit` over a synthetic episode store through the data module (data loading,
  Lightning and logging overhead included), the median time between batches.
Medians, because other processes share this machine's 2 cores and make single steps slow.
FLOPs per frame are `worldsim.model.flops.model_cost(config).train_flops` (what `worldsim
model info` prints: FlopCounterMode over the denoiser's forward + backward; matmuls, convs,
attention), cross-checked against FlopCounterMode over this step's whole training loss
("counted"; lower on a CPU, where FlopCounterMode does not count the fused attention kernel). MFU = achieved / peak; the peak defaults to 0.13 TFLOP/s,
this 2-core CPU's measured fp32 matmul peak (--peak-tflops, or --measure-peak to re-measure).
Prints a Markdown table and writes JSON to --out (default benchmarks/results/training.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import lightning as L
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from training.data import EpisodeDataModule
from training.module import WorldModelSystem
from worldsim.data import EpisodeStore
from worldsim.model import PRESETS
from worldsim.model.flops import model_cost

ACTIONS = gym.spaces.Discrete(17)  # Crafter's
FRAMES = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)


def measure_peak(device: str, dtype: torch.dtype, n: int = 2048, repeat: int = 10) -> float:
    """TFLOP/s of a square matmul, the best of `repeat`."""
    a, b = (
        torch.randn(n, n, device=device, dtype=dtype),
        torch.randn(n, n, device=device, dtype=dtype),
    )
    best = float("inf")
    for _ in range(repeat + 2):
        _sync(device)
        t = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e12


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def make_batch(B: int, T: int, device: str, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    batch = {
        "frames": torch.randint(0, 256, (B, T, 64, 64, 3), dtype=torch.uint8, generator=g),
        "actions": torch.randint(0, ACTIONS.n, (B, T - 1), generator=g),
        "rewards": (torch.rand(B, T - 1, generator=g) < 0.05).float(),
        "terminated": torch.zeros(B, T - 1, dtype=torch.bool),
    }
    return {k: v.to(device) for k, v in batch.items()}


def bench_step(
    preset: str, B: int, T: int, steps: int, device: str, precision: str, overrides: dict
) -> dict:
    """Time optimizer steps of the system outside the Trainer (no data loading)."""
    system = WorldModelSystem(preset=preset, overrides={**overrides, "context": T})
    system.build(ACTIONS, FRAMES)
    system.to(device)
    opt = torch.optim.AdamW(system.net.parameters(), lr=1e-4, fused=device.startswith("cuda"))
    batch = make_batch(B, T, device)
    autocast = torch.autocast(
        device.split(":")[0], dtype=torch.bfloat16, enabled=precision == "bf16-mixed"
    )

    def step() -> None:
        with autocast:
            loss = system.net.training_loss(
                batch["frames"], batch["actions"], batch["rewards"], batch["terminated"]
            )["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        system.ema.update_parameters(system.net)

    with FlopCounterMode(display=False) as counter:
        with autocast:
            loss = system.net.training_loss(
                batch["frames"], batch["actions"], batch["rewards"], batch["terminated"]
            )["loss"]
        loss.backward()
    opt.zero_grad(set_to_none=True)
    counted = counter.get_total_flops() / (B * T)  # this step's training loss, per frame
    # The figure `worldsim model info` prints (the denoiser's forward + backward per frame).
    # The counted one above adds the heads but misses CPU flash attention (not in
    # FlopCounterMode's table), so on a CPU it is lower by the attention FLOPs.
    flops = model_cost(system.net.config, ACTIONS).train_flops * B * T
    for _ in range(2):  # warmup
        step()
    times = []
    for _ in range(steps):
        _sync(device)
        t = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t)
    seconds = float(np.median(times))  # median: robust to other processes sharing the CPU
    params = sum(p.numel() for p in system.net.parameters() if p.requires_grad)
    return {
        "params_M": round(params / 1e6, 2),
        "tokens_per_frame": system.net.config.tokens_per_frame,
        "train_GFLOP_per_frame": round(flops / (B * T) / 1e9, 3),
        "counted_GFLOP_per_frame": round(counted / 1e9, 3),
        "s_per_step": round(seconds, 3),
        "samples_per_s": round(B / seconds, 2),
        "frames_per_s": round(B * T / seconds, 1),
        "TFLOP_per_s": round(flops / seconds / 1e12, 4),
    }


class StepTimer(L.Callback):
    """Wall time of training batches after the first `warmup`."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.times = warmup, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        _sync(str(pl_module.device))
        self.times.append(time.perf_counter())


def make_store(path: Path, episodes: int = 4, T: int = 100) -> None:
    store = EpisodeStore.create(
        str(path), game="synthetic", action_space=ACTIONS, observation_space=FRAMES, fps=10
    )
    rng = np.random.default_rng(0)
    for _ in range(episodes):
        base = rng.integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
        # a view scrolling one pixel per step
        frames = np.concatenate([np.roll(base, t, axis=2) for t in range(T + 1)])
        store.append(
            frames,
            rng.integers(0, 17, T),
            np.zeros(T, np.float32),
            np.zeros(T, bool),
            np.zeros(T, bool),
        )


def bench_fit(
    preset: str,
    B: int,
    T: int,
    steps: int,
    device: str,
    precision: str,
    store: Path,
    workers: int,
    overrides: dict,
) -> dict:
    """samples/s of Trainer.fit through the data module (everything included)."""
    system = WorldModelSystem(preset=preset, overrides={**overrides, "context": T}, warmup_steps=1)
    data = EpisodeDataModule(
        store=str(store),
        clip_length=T,
        batch_size=B,
        samples_per_epoch=B * (steps + 2),
        val_fraction=0.0,
        test_fraction=0.0,
        num_workers=workers,
    )
    timer = StepTimer(warmup=2)
    with tempfile.TemporaryDirectory() as root:
        L.Trainer(
            accelerator="gpu" if device.startswith("cuda") else "cpu",
            devices=1,
            precision=precision,
            max_steps=steps + 2,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,
            default_root_dir=root,
            callbacks=[timer],
        ).fit(system, datamodule=data)
    seconds = float(np.median(np.diff(timer.times[timer.warmup - 1 :])))
    return {"fit_samples_per_s": round(B / seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "S"])
    parser.add_argument(
        "--batch",
        type=int,
        nargs="+",
        default=None,
        help="batch per preset (default: tiny 32, others 2 on a CPU, 32 on a GPU)",
    )
    parser.add_argument(
        "--clip", type=int, default=None, help="frames per clip (default: the preset's context)"
    )
    parser.add_argument("--steps", type=int, default=7, help="timed steps (the median is reported)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="32", choices=["32", "bf16-mixed"])
    parser.add_argument("--peak-tflops", type=float, default=0.13, help="device peak for MFU")
    parser.add_argument(
        "--measure-peak", action="store_true", help="measure the matmul peak instead"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="DataLoader workers in the fit figure"
    )
    parser.add_argument("--no-fit", action="store_true", help="skip the Trainer.fit figure")
    parser.add_argument(
        "--overrides",
        type=json.loads,
        default={},
        help='ModelConfig fields for every preset, as JSON, e.g. \'{"dim": 192, "motion_radius": 8}\'',
    )
    parser.add_argument("--out", default="benchmarks/results/training.json")
    args = parser.parse_args()

    dtype = torch.bfloat16 if args.precision == "bf16-mixed" else torch.float32
    peak = measure_peak(args.device, dtype) if args.measure_peak else args.peak_tflops
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        if not args.no_fit:
            make_store(store, T=100 + (args.clip or 0))
        for i, preset in enumerate(args.presets):
            B = args.batch[min(i, len(args.batch) - 1)] if args.batch else None
            B = B or (32 if preset == "tiny" or args.device != "cpu" else 2)
            T = args.clip or PRESETS[preset].context
            row = {
                "preset": preset,
                "batch": B,
                "clip": T,
                "device": args.device,
                "precision": args.precision,
            }
            if args.overrides:
                row["overrides"] = args.overrides
            row |= bench_step(preset, B, T, args.steps, args.device, args.precision, args.overrides)
            if not args.no_fit:
                row |= bench_fit(
                    preset,
                    B,
                    T,
                    args.steps,
                    args.device,
                    args.precision,
                    store,
                    args.workers,
                    args.overrides,
                )
            row["MFU_%"] = round(100 * row["TFLOP_per_s"] / peak, 1)
            rows.append(row)
            print(json.dumps(row), flush=True)

    keys = list(rows[0])
    print(
        f"\npeak {peak:.3f} TFLOP/s ({'measured' if args.measure_peak else 'given'}), "
        f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}\n"
    )
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row.get(k, "")) for k in keys) + " |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"peak_tflops": peak, "threads": torch.get_num_threads(), "rows": rows}, indent=1
        )
    )


if __name__ == "__main__":
    main()
