"""Minetest figures: env speed, replay determinism, and 3D consistency of a world model in pose loops.

Run:
    OMP_NUM_THREADS=1 python benchmarks/bench_minetest.py --speed-steps 400 --replay-steps 64 \
        --out benchmarks/results/minetest.json
    OMP_NUM_THREADS=1 python benchmarks/bench_minetest.py --checkpoint models/minetest \
        --loops 4 --out benchmarks/results/minetest_loops.json
    python benchmarks/bench_minetest.py --store data/minetest-explore   # the controls the game saw
    python benchmarks/bench_minetest.py --checkpoint worldsim/assets/minetest --still-steps 100  # left alone

Loops start from a real context (reset, then K-1 no-op steps) and play a pose loop in the
real game and in the dream with the same actions: a full turn in place (24 steps of 15
degrees), and walking forward n steps then back n, sneaking (n = 4, 8, 16, 32; the view keeps its
direction). At the return the real frame is the one at that pose (turning is exact; walking
returns to within a few hundredths of a node), so the dream's frame there measures its 3D
memory, next to copy-last-frame (the last context frame, which is the start pose).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worldsim.bench.metrics import psnr
from worldsim.spaces import noop_action


def action(space: Any, camera: tuple[float, float] = (0.0, 0.0), **buttons: int) -> dict:
    out = noop_action(space)
    for key, value in buttons.items():
        out[key] = np.int64(value)
    out["camera"] = np.array(camera, np.float32)
    return out


def loops(space: Any) -> dict[str, list[dict]]:
    """The pose loops: name -> actions."""
    out = {"turn360": [action(space, (0.0, 15.0)) for _ in range(24)]}
    for n in (4, 8, 16, 32):  # sneaking: the player cannot fall off a ledge, so the way back
        # retraces the way out (a drop could not be walked back up)
        out[f"walk{n}"] = [action(space, forward=1, sneak=1)] * n + [
            action(space, back=1, sneak=1)
        ] * n
    return out


def speed(env: Any, steps: int) -> dict[str, float]:
    """Env steps/s with no-op actions and with the explorer's actions."""
    from envs.policies import make_policy

    out = {}
    for name in ("noop", "explorer"):
        policy = make_policy("explorer", env.action_space)
        policy.reset(0)
        obs, _ = env.reset(seed=0)
        start = time.perf_counter()
        for _ in range(steps):
            a = noop_action(env.action_space) if name == "noop" else policy(obs)
            obs, *_ = env.step(a)
        out[f"{name}_steps_per_s"] = steps / (time.perf_counter() - start)
    start = time.perf_counter()
    for seed in range(5):
        env.reset(seed=seed)
    out["reset_s"] = (time.perf_counter() - start) / 5
    return out


def replay(env: Any, steps: int, seeds: int = 2) -> dict[str, dict[str, float]]:
    """Same seed, same actions, twice: the share of identical frames and the mean abs difference."""
    from envs.policies import make_policy

    out = {}
    for name in ("camera", "sticky", "explorer"):
        same, mae, pose = [], [], []
        for seed in range(seeds):
            runs = []
            for _ in range(2):
                policy = make_policy(
                    "explorer" if name == "explorer" else "sticky", env.action_space
                )
                policy.reset(seed)
                obs, info = env.reset(seed=seed)
                frames, poses = [obs], [info["pose"]]
                for _ in range(steps):
                    a = policy(obs)
                    if name == "camera":  # only the sticky policy's camera moves
                        a = {k: v if k == "camera" else np.zeros_like(v) for k, v in a.items()}
                    obs, *_, info = env.step(a)
                    frames.append(obs)
                    poses.append(info["pose"])
                runs.append((np.stack(frames).astype(np.int16), np.stack(poses)))
            (fa, pa), (fb, pb) = runs
            same += [bool(np.array_equal(x, y)) for x, y in zip(fa, fb)]
            mae.append(float(np.abs(fa - fb).mean()))
            pose.append(float(np.abs(pa[:, :3] - pb[:, :3]).max()))
        out[name] = {
            "identical_frames": float(np.mean(same)),
            "mean_abs_diff": float(np.mean(mae)),
            "max_position_diff_nodes": float(np.max(pose)),
        }
    return out


# MineRL button -> the control the game reports for it (labels/controls fields).
SEEN_AS = {"forward": "up", "back": "down", "left": "left", "right": "right", "jump": "jump",
           "sneak": "sneak", "attack": "dig", "use": "place"}  # fmt: skip


def controls(store_path: str) -> dict[str, dict[str, float]]:
    """Per button: precision, recall and F1 of the control the game saw at the end of a step
    (labels/controls of frame t+1) against the button the action of step t held."""
    from worldsim.data import EpisodeStore

    store = EpisodeStore.open(store_path)
    fields = store.label_spec["controls"]["fields"]
    counts = {b: np.zeros(3) for b in SEEN_AS}  # true positives, commanded, seen
    for i in range(len(store)):
        ep, seen = store.episode(i), store.labels(i)["controls"][1:]
        for button, control in SEEN_AS.items():
            held, saw = np.asarray(ep.actions[button]) == 1, seen[:, fields.index(control)] == 1
            counts[button] += [np.sum(held & saw), held.sum(), saw.sum()]
    out = {}
    for button, (tp, held, saw) in counts.items():
        if held or saw:
            p, r = tp / max(saw, 1), tp / max(held, 1)
            out[button] = {"precision": p, "recall": r, "f1": 2 * p * r / max(p + r, 1e-9),
                           "steps_held": int(held)}  # fmt: skip
    return out


def consistency(
    env: Any, checkpoint: str, episodes: int, device: str, gallery: Path | None = None
) -> dict[str, Any]:
    """Per loop: PSNR (capped at 60 dB) of the dream's and of copy-last-frame's return frame
    against the real one, the share of loops whose real return frame is the start frame, and
    how far the real return is from the start pose."""
    from envs.world_model_env import WorldModelEnv

    dream = WorldModelEnv(checkpoint, device=device)
    K = dream.starts.length
    table: dict[str, Any] = {}
    strips = []  # per loop, first start pose: start | real return | dream return
    for name, actions in loops(env.action_space).items():
        rows = []
        for seed in range(episodes):
            frame, info = env.reset(seed=seed)
            frames = [frame]
            for _ in range(K - 1):
                frames.append(env.step(noop_action(env.action_space))[0])
            start_pose = env.step(noop_action(env.action_space))[-1]["pose"]
            dreamed, _ = dream.reset(seed=seed, options={"frames": np.stack(frames)})
            for a in actions:
                real, *_, info = env.step(a)
                dreamed, *_ = dream.step(a)
            rows.append({
                "dream_psnr": float(psnr(dreamed, real, cap_db=60)),
                "copy_last_psnr": float(psnr(frames[-1], real, cap_db=60)),
                "real_return_identical": float(np.array_equal(frames[-1], real)),
                "pose_error_nodes": float(np.abs(info["pose"][:3] - start_pose[:3]).max()),
            })  # fmt: skip
            if seed == 0:
                strips.append(np.concatenate([frames[-1], real, dreamed], axis=1))
        table[name] = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    if gallery is not None:
        from PIL import Image

        gallery.parent.mkdir(parents=True, exist_ok=True)
        grid = np.concatenate(strips, axis=0)
        Image.fromarray(grid).resize((grid.shape[1] * 3, grid.shape[0] * 3), 0).save(gallery)
    return {"checkpoint": checkpoint, "context": K, "episodes": episodes, "loops": table}


def stillness(checkpoint: str, steps: int, device: str) -> dict[str, Any]:
    """A dream left alone: from each of the release's contexts, `steps` no-op steps; the PSNR
    of the dreamed frame to the last context frame at steps 10, 50 and `steps`. A player at
    rest in the real game sees that frame throughout (a context that ends mid-walk slides on a
    little first). No game needed."""
    import gymnasium as gym

    env = gym.make("worldsim/WorldModel-v0", checkpoint=checkpoint, device=device).unwrapped
    at = sorted({t for t in (10, 50, steps) if t <= steps})
    per_context = []
    for i in range(len(env.starts.frames)):
        start, _ = env.reset(seed=0, options={"context": i})
        out = {}
        for t in range(1, steps + 1):
            obs, *_ = env.step(noop_action(env.action_space))
            if t in at:
                out[t] = float(psnr(obs, start, cap_db=60.0))
        per_context.append(out)
    env.close()
    return {
        "steps": at,
        "psnr": [float(np.mean([c[t] for c in per_context])) for t in at],
        "per_context": [[c[t] for t in at] for c in per_context],
    }


def main(argv: list[str] | None = None) -> int:
    import gymnasium as gym

    import envs  # noqa: F401

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--speed-steps", type=int, default=0, help="steps per speed run (0: skip)")
    p.add_argument("--replay-steps", type=int, default=0, help="steps per replay (0: skip)")
    p.add_argument("--checkpoint", help="a Minetest world-model release: run the pose loops")
    p.add_argument("--loops", type=int, default=4, help="start poses per loop")
    p.add_argument("--device", default="cpu")
    p.add_argument("--gallery", type=Path, help="PNG: per loop, start | real return | dream return")
    p.add_argument("--store", help="a collected Minetest store: score the controls the game saw")
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    p.add_argument("--still-steps", type=int, default=0,
                   help="with --checkpoint: only the dream left alone this many no-op steps from "
                   "each of its contexts (no game needed)")  # fmt: skip
    args = p.parse_args(argv)
    if args.still_steps and not args.checkpoint:
        p.error("--still-steps needs --checkpoint (the dream to leave alone)")
    if args.still_steps or (
        args.store and not (args.speed_steps or args.replay_steps or args.checkpoint)
    ):  # no game needed
        report = (
            {"still": stillness(args.checkpoint, args.still_steps, args.device)}
            if args.still_steps
            else {"controls": controls(args.store)}
        )
        print(json.dumps(report, indent=2))
        if args.out:
            args.out.write_text(json.dumps(report, indent=2) + "\n")
        return 0
    env = gym.make("worldsim/RealMinetest-v0").unwrapped  # no TimeLimit: loops run long
    report: dict[str, Any] = {"size": list(env.size), "tick_s": env.tick}
    try:
        if args.speed_steps:
            report["speed"] = speed(env, args.speed_steps)
        if args.replay_steps:
            report["replay"] = {"steps": args.replay_steps, **replay(env, args.replay_steps)}
        if args.store:
            report["controls"] = controls(args.store)
        if args.checkpoint:
            report["consistency"] = consistency(
                env, args.checkpoint, args.loops, args.device, args.gallery
            )
    finally:
        env.close()
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
