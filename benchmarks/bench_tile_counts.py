"""How many players, zombies, skeletons, cows... a Crafter dream draws per frame over open-loop rollouts.

    python benchmarks/bench_tile_counts.py --checkpoint worldsim/assets/crafter \
        --data data/crafter-heldout-explore --tiles bench/tiles-crafter.safetensors

Clips of `--context` real frames are cut from the start and the middle of every held-out
episode long enough for `--horizon` more; the model rolls each out open loop with the real
actions, and the tile classifier (`worldsim bench train-tiles`) names every map tile of the
real and the generated continuations. Printed and written as JSON: the mean number of tiles
of each class per frame at a few steps, real against generated. A dream whose objects
multiply or vanish shows it here before it shows in a share of tiles right. Also how often
a cow steps to a neighbouring tile where the view holds still (`moves`): real cows wander,
a dream's may stand still. And how many HUD tiles (Crafter's inventory: food, water, energy
and health tick down on hidden timers) change a step, in the first and second half of the
rollouts (`hud_changes`): a dream that cannot keep time ticks them too seldom or too often. And
whether the dream changes the HUD tiles the real game changes at the same step (`hud_on_time`:
recall of the real changes, precision of the dream's), for the clips from an episode's first
frame (the model is told so: its HUD clocks then know Crafter's timers from the first step)
and those from the middle. To compare sampler settings, make a release of each
(`worldsim model sampler --set twin_rms=0 ...`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CLASSES = ("player", "zombie", "skeleton", "cow", "tree", "water", "stone", "sand", "grass")


def _still(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether the view holds still from tile classes a to b [n, rows, cols]: b agrees with a
    in place about as well as with a moved one tile in any direction (scrolled), within the
    2 tiles a step changes (on plain grass a step looks like a scroll)."""
    from worldsim.bench.semantic import scroll_agreement

    agree = scroll_agreement(a, b)  # [n, 5]: in place, then the 4 one-tile shifts
    return agree[:, 0] + 2.5 / a[0].size >= agree[:, 1:].max(-1)


def hud_changes(frames: np.ndarray, grid) -> np.ndarray:
    """Which HUD tiles (the tile rows below the map) change from each frame to the next, by
    more than 3 RMS (0-255): frames [n, T, H, W, 3] -> bool [n, T-1, rows, cols]."""
    from worldsim.bench.tiles import cut_tiles

    hud = cut_tiles(frames, grid)[..., grid.grid[0] :, :, :].astype(np.float32)
    return np.sqrt(((hud[:, 1:] - hud[:, :-1]) ** 2).mean(-1)) > 3


def moves(labels: np.ndarray, cls: int) -> tuple[int, int]:
    """(tiles of class `cls` that step to a neighbouring tile, all such tile-steps) over tile
    classes [n, T, rows, cols], counting only steps where the view holds still. A tile steps
    when its place loses the class and a neighbour that did not show it gains it."""
    a, b = (
        labels[:, :-1].reshape(-1, *labels.shape[2:]),
        labels[:, 1:].reshape(-1, *labels.shape[2:]),
    )
    keep = _still(a, b)
    a, b = a[keep] == cls, b[keep] == cls
    gained = np.pad(b & ~a, ((0, 0), (1, 1), (1, 1)))
    near = gained[:, :-2, 1:-1] | gained[:, 2:, 1:-1] | gained[:, 1:-1, :-2] | gained[:, 1:-1, 2:]
    return int((a & ~b & near).sum()), int(a.sum())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, required=True, help="release folder")
    p.add_argument("--data", required=True, help="store of held-out Crafter episodes")
    p.add_argument("--tiles", type=Path, required=True, help="tile classifier (train-tiles)")
    p.add_argument("--context", type=int, default=7)
    p.add_argument("--horizon", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from worldsim.bench.tiles import load_tile_model
    from worldsim.data import EpisodeStore
    from worldsim.world_model import WorldModel

    wm, K, H = WorldModel.from_checkpoint(args.checkpoint), args.context, args.horizon
    tiles = load_tile_model(args.tiles)
    store = EpisodeStore.open(args.data)
    clips = []
    for i in range(len(store)):
        ep = store.episode(i)
        frames, actions = np.asarray(ep.frames), np.asarray(ep.actions)
        room = len(frames) - (K + H)
        for start in sorted({0, room // 2}) if room >= 0 else []:
            clips.append((frames[start : start + K + H], actions[start : start + K + H - 1],
                          start == 0))  # fmt: skip
    if not clips:
        raise SystemExit(f"no episode of {args.data} holds {K + H} frames: lower --horizon")
    first = np.array([c[2] for c in clips])  # clips from an episode's first frame
    real, dream, hud_real, hud_dream = [], [], [], []
    gen = torch.Generator().manual_seed(args.seed)
    for b in range(0, len(clips), args.batch_size):
        fr = np.stack([c[0] for c in clips[b : b + args.batch_size]])
        ac = np.stack([c[1] for c in clips[b : b + args.batch_size]])
        out = wm.generate(fr[:, :K], ac[:, : K - 1], ac[:, K - 1 :], generator=gen,
                          episode_start=first[b : b + args.batch_size])["frames"]  # fmt: skip
        real.append(tiles.classify(fr[:, K:]))
        dream.append(tiles.classify(out))
        hud_real.append(hud_changes(fr[:, K - 1 :], tiles.grid))
        hud_dream.append(hud_changes(np.concatenate([fr[:, K - 1 : K], out], 1), tiles.grid))
    steps = [s for s in (1, 16, 32, 48, 64) if s <= H]
    result: dict = {"checkpoint": str(args.checkpoint), "data": args.data, "clips": len(clips),
                    "context": K, "horizon": H, "sampler": dataclasses.asdict(wm.sampler),
                    "steps": steps}  # fmt: skip
    print(f"{len(clips)} clips, tiles per frame at steps {steps}: real | generated")
    for name in CLASSES:
        if name not in tiles.names:
            continue
        c = tiles.names.index(name)
        per = {}
        for label, labs in (("real", real), ("generated", dream)):
            n = np.concatenate(labs) == c  # [clips, H, rows, cols]
            per[label] = [round(float(n[:, s - 1].sum((-1, -2)).mean()), 2) for s in steps]
        result[name] = per
        print(f"{name:>9}: {per['real']} | {per['generated']}")
    if "cow" in tiles.names:
        c = tiles.names.index("cow")
        for label, labs in (("real", real), ("generated", dream)):
            moved, total = moves(np.concatenate(labs), c)
            result.setdefault("cow_moves", {})[label] = [moved, total]
            print(f"cows that step where the view holds still, {label}: {moved} of {total} "
                  f"({moved / max(total, 1):.2f})")  # fmt: skip
    if tiles.grid.frame_grid[0] > tiles.grid.grid[0]:
        half = H // 2
        hud_real, hud_dream = np.concatenate(hud_real), np.concatenate(hud_dream)
        for label, ch in (("real", hud_real), ("generated", hud_dream)):
            ch = ch.sum((-1, -2))
            rate = [round(float(ch[:, :half].mean()), 3), round(float(ch[:, half:].mean()), 3)]
            result.setdefault("hud_changes", {})[label] = rate
            print(f"HUD tiles that change a step, steps 1-{half} / {half + 1}-{H}, {label}: "
                  f"{rate[0]} / {rate[1]}")  # fmt: skip
        on = hud_real & hud_dream
        for label, rows in (("episode_start", first), ("middle", ~first)):
            hit, n_real, n_dream = (int(a[rows].sum()) for a in (on, hud_real, hud_dream))
            result.setdefault("hud_on_time", {})[label] = [hit, n_real, n_dream]
            print(f"HUD changes on time, clips from the {label.replace('_', ' ')} "
                  f"({int(rows.sum())}): {hit} of {n_real} real (recall {hit / max(n_real, 1):.2f}), "
                  f"of {n_dream} drawn (precision {hit / max(n_dream, 1):.2f})")  # fmt: skip
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
