"""Benchmark the world model: rollout frames/s, KV-cache speed-up, training throughput and MFU.

Run:
    python benchmarks/bench_model.py                      # CPU: everything, S at 64x64
    python benchmarks/bench_model.py --only rollout --batches 1 --steps 1 2
    python benchmarks/bench_model.py --device cuda --dtype bf16   # on a GPU
    python benchmarks/bench_model.py --set patch_size=8 --set dim=192  # try a variant of S

Prints one line per measurement. Untrained weights (speed does not depend on them).
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
import torch

from worldsim.model import WorldModelNet, preset
from worldsim.model.flops import model_cost
from worldsim.world_model import WorldModel

SPACE = gym.spaces.Discrete(17)  # Crafter's action space


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device: torch.device, dtype: torch.dtype, seconds: float = 2.0) -> float:
    """Measured dense matmul FLOP/s (the MFU denominator when no spec peak is given)."""
    n = 2048 if device.type == "cpu" else 8192
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    sync(device)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
        sync(device)
    return 2 * n**3 * count / (time.perf_counter() - start)


def parse_overrides(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, value = item.split("=", 1)
        out[key] = type(getattr(preset("S"), key))(value) if key != "autoencoder" else None
    return out


def build(name: str, args: argparse.Namespace, device: torch.device, **extra) -> WorldModelNet:
    config = preset(
        name, height=args.height, width=args.width, **parse_overrides(args.set), **extra
    )
    return WorldModelNet(config, SPACE).to(device)


def autocast(args: argparse.Namespace, device: torch.device):
    dtype = {"fp32": None, "bf16": torch.bfloat16}[args.dtype]
    if dtype is None:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=dtype)


def bench_rollout(args: argparse.Namespace, device: torch.device) -> None:
    net = build(args.preset, args, device)
    obs = gym.spaces.Box(0, 255, (args.height, args.width, 3), np.uint8)
    wm = WorldModel.from_net(net, obs, SPACE)
    rng = np.random.default_rng(0)
    for B in args.batches:
        frames = rng.integers(0, 256, (B, 4, args.height, args.width, 3), dtype=np.uint8)
        actions = rng.integers(0, 17, (B, 3))
        for steps in args.steps:
            with autocast(args, device):
                wm.reset(frames, actions)
                for _ in range(2):
                    wm.step(actions[:, 0], steps=steps)
                sync(device)
                start = time.perf_counter()
                for _ in range(args.frames):
                    wm.step(actions[:, 0], steps=steps)
                sync(device)
            seconds = time.perf_counter() - start
            print(
                f"rollout  {args.preset} {args.height}x{args.width} batch {B:>3} steps {steps}: "
                f"{B * args.frames / seconds:8.1f} frames/s  ({1000 * seconds / args.frames:7.1f} ms/step)"
            )


def bench_cache(args: argparse.Namespace, device: torch.device) -> None:
    net = build(args.preset, args, device, context=16)
    obs = gym.spaces.Box(0, 255, (args.height, args.width, 3), np.uint8)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (1, 15, args.height, args.width, 3), dtype=np.uint8)
    actions = rng.integers(0, 17, (1, 14))
    times = {}
    for use_cache in (True, False):
        wm = WorldModel(net, obs, SPACE, use_cache=use_cache)
        with autocast(args, device):
            wm.reset(frames, actions)
            wm.step(actions[:, 0], steps=1)
            sync(device)
            start = time.perf_counter()
            for _ in range(args.frames):
                wm.step(actions[:, 0], steps=1)
            sync(device)
        times[use_cache] = (time.perf_counter() - start) / args.frames
    print(
        f"cache    {args.preset} context 16, batch 1, 1 step: cached {1000 * times[True]:.1f} ms/step, "
        f"uncached {1000 * times[False]:.1f} ms/step, speed-up {times[False] / times[True]:.1f}x"
    )


def train_step(net: WorldModelNet, opt: torch.optim.Optimizer, batch: tuple, args, device) -> None:
    with autocast(args, device):
        loss = net.training_loss(*batch)["loss"]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def bench_train(args: argparse.Namespace, device: torch.device, peak: float) -> None:
    for name in args.train_presets:
        net = build(name, args, device)
        cfg = net.config
        B, T = args.train_batch, cfg.context
        flops = model_cost(cfg, SPACE).train_flops * T * B
        rng = np.random.default_rng(0)
        frames = torch.from_numpy(
            rng.integers(0, 256, (B, T, cfg.height, cfg.width, 3), dtype=np.uint8)
        )
        actions = torch.from_numpy(rng.integers(0, 17, (B, T - 1)))
        rewards, terminated = torch.zeros(B, T - 1), torch.zeros(B, T - 1, dtype=torch.bool)
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4)

        batch = (frames, actions, rewards, terminated)
        train_step(net, opt, batch, args, device)
        sync(device)
        start, n = time.perf_counter(), 0
        while n < 2 or time.perf_counter() - start < args.train_seconds:
            train_step(net, opt, batch, args, device)
            n += 1
        sync(device)
        seconds = (time.perf_counter() - start) / n
        achieved = flops / seconds
        print(
            f"train    {name:<4} {cfg.height}x{cfg.width} batch {B} x {T} frames: {B / seconds:7.2f} clips/s, "
            f"{B * T / seconds:8.1f} frames/s, {1000 * seconds:7.0f} ms/step, "
            f"{achieved / 1e12:.3f} TFLOP/s = {100 * achieved / peak:.0f}% of {peak / 1e12:.3f} TFLOP/s peak"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["rollout", "cache", "train"], action="append")
    parser.add_argument("--preset", default="S")
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument(
        "--set", action="append", default=[], help="override a config field, key=value"
    )
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--frames", type=int, default=8, help="timed rollout steps")
    parser.add_argument("--train-presets", nargs="+", default=["tiny", "S"])
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--train-seconds", type=float, default=10.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--peak", type=float, default=None,
                        help="peak TFLOP/s for MFU (default: 0.13 on CPU, measured matmul on GPU)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    parts = args.only or ["rollout", "cache", "train"]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}, {args.dtype}"
    )
    with torch.inference_mode():
        if "rollout" in parts:
            bench_rollout(args, device)
        if "cache" in parts:
            bench_cache(args, device)
    if "train" in parts:
        if args.peak is not None:
            peak = args.peak * 1e12
        elif device.type == "cpu":
            peak = 0.13e12
        else:
            peak = matmul_peak(device, torch.bfloat16 if args.dtype == "bf16" else torch.float32)
        measured = matmul_peak(device, torch.float32, 1.0) if device.type == "cpu" else peak
        print(
            f"peak     {peak / 1e12:.3f} TFLOP/s used for MFU; measured fp32 matmul now {measured / 1e12:.3f}"
        )
        bench_train(args, device, peak)


if __name__ == "__main__":
    main()
