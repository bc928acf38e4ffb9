"""Figures of the generative tools on a world model (docs/generate.md): one example of each
tool, the strength plot of image-to-world, and the bridge validity table.

    OMP_NUM_THREADS=1 python benchmarks/bench_generate.py --checkpoint worldsim/assets/crafter \\
        --data data/crafter-heldout-explore --tiles bench/tiles-crafter.safetensors \\
        --out benchmarks/results/generate.json --figures docs/generate

Pictures for the strength plot are not Crafter frames: a photo (matplotlib's sample
grace_hopper.jpg and crops of it), drawings made here, and real frames of two other games
(Breakout, Doom). Bridges join real held-out frames t and t + N + 1 whose view offset the
store records; a step is valid when one tile scroll (or none) explains at least the
threshold share of its tile classes, the threshold being the 1st percentile of real
held-out transitions (so 99% of real steps pass).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from worldsim.bench.metrics import psnr
from worldsim.bench.semantic import scroll_agreement
from worldsim.bench.tiles import load_tile_model
from worldsim.data import EpisodeStore
from worldsim.generate import path_validity
from worldsim.world_model import WorldModel

STRENGTHS = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0]


def drawings(n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Child's drawings of a Crafter-ish world: a field, trees, a lake, rocks."""
    out = []
    for _ in range(n):
        im = Image.new("RGB", (64, 64), tuple(int(v) for v in rng.integers(60, 140, 3)))
        d = ImageDraw.Draw(im)
        for _ in range(rng.integers(3, 8)):
            x, y, r = *rng.integers(0, 64, 2), rng.integers(3, 9)
            colour = [(20, 110, 30), (40, 70, 200), (120, 120, 120), (140, 90, 40)][rng.integers(4)]
            d.ellipse([x - r, y - r, x + r, y + r], fill=colour)
        out.append(np.asarray(im))
    return out


def other_games(rng: np.random.Generator) -> list[np.ndarray]:
    import envs  # noqa: F401  (registers the real games)
    from envs.games import make_game

    out = []
    for game, n in (("breakout", 4), ("doom-health", 4)):
        env = make_game(game)
        frame, _ = env.reset(seed=0)
        for _ in range(n):
            for _ in range(int(rng.integers(5, 30))):
                frame, _, term, trunc, _ = env.step(env.action_space.sample())
                if term or trunc:
                    frame, _ = env.reset()
            out.append(np.asarray(Image.fromarray(frame).resize((64, 64), Image.BILINEAR)))
        env.close()
    return out


def photos() -> list[np.ndarray]:
    import matplotlib.cbook

    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")) as im:
        im = im.convert("RGB")
        w, h = im.size
        boxes = [(0, 0, w, h), (0, 0, w // 2, h // 2), (w // 2, h // 2, w, h), (w // 4, 0, w, h)]
        return [np.asarray(im.crop(b).resize((64, 64), Image.BILINEAR)) for b in boxes]


def calibrate(store, tiles, anchor, episodes) -> tuple[float, np.ndarray]:
    """The 1st percentile of real transitions' best scroll agreement (classified tiles)."""
    best = []
    for i in episodes:
        lab = tiles.classify(store.episode(i).frames)
        best.append(scroll_agreement(lab[:-1], lab[1:], anchor).max(-1))
    best = np.concatenate(best)
    return float(np.quantile(best, 0.01)), best


def strength_curve(wm, tiles, threshold, anchor, pictures, kinds, frames_after, seed):
    rows = []
    space = wm.action_space
    for s in STRENGTHS:
        for k, (pic, kind) in enumerate(zip(pictures, kinds, strict=True)):
            space.seed(seed + k)
            acts = np.array([space.sample() for _ in range(frames_after)])
            g = torch.Generator().manual_seed(seed + k)
            gen = wm.animate(pic, s, acts, generator=g)
            first = gen.frames[0]
            probs = tiles.probabilities(gen.frames)  # [T, 7, 9, classes]
            valid = path_validity(tiles.classify(gen.frames), threshold, anchor)
            rows.append(
                {
                    "strength": s,
                    "kind": kind,
                    "picture": k,
                    "psnr": float(psnr(first[None], pic[None], cap_db=60.0)[0]),
                    "confidence": float(probs[0].max(-1).mean()),
                    "looks_real": float(tiles.looks_real(first[None]).mean()),
                    "valid_steps": float(valid["steps"].mean()),
                    "confidence_after": float(probs[1:].max(-1).mean()),
                }
            )
    return rows


def bridges(wm, store, tiles, threshold, anchor, episodes, ns, per_episode, seed):
    """Validity of bridges of N frames between real frames t and t + N + 1, per method."""
    methods = {
        "plan, end in memory, pulled in": {"method": "plan"},
        "plan, end in memory": {"method": "plan", "pull": False},
        "plan, no memory": {"method": "plan", "remember_end": False, "pull": False},
        "sample (random actions)": {"method": "sample"},
    }
    rng = np.random.default_rng(seed)
    out = []
    for n in ns:
        pairs = []
        for i in episodes:
            ep = store.episode(i)
            T = len(ep.frames)
            if n + 2 >= T:
                continue
            for t in rng.choice(T - n - 1, size=min(per_episode, T - n - 1), replace=False):
                pairs.append((ep, int(t)))
        res = {name: [] for name in ["real path", *methods]}
        for j, (ep, t) in enumerate(pairs):
            a, b = ep.frames[t], ep.frames[t + n + 1]
            vp = ep.labels["view_pos"]
            offset = tuple(int(v) for v in vp[t + n + 1] - vp[t])
            real = path_validity(tiles.classify(ep.frames[t : t + n + 2]), threshold, anchor)
            res["real path"].append((real["valid"], bool(real["steps"][-1])))
            for name, kw in methods.items():
                g = torch.Generator().manual_seed(seed + j)
                gen = wm.bridge(a, b, n, offset=offset, candidates=4, generator=g, **kw)
                v = path_validity(tiles.classify(gen.frames), threshold, anchor)
                res[name].append((v["valid"], bool(v["steps"][-1])))
        for name, vals in res.items():
            arr = np.array(vals)
            out.append(
                {
                    "n": n,
                    "method": name,
                    "pairs": len(vals),
                    "valid": float(arr[:, 0].mean()),
                    "last_step": float(arr[:, 1].mean()),
                }
            )
    return out


def strip(rows: list[tuple[str, np.ndarray]], scale: int = 2) -> Image.Image:
    """A PNG of labelled rows of frames [n, H, W, 3]."""
    H, W = rows[0][1].shape[1:3]
    cols = max(len(f) for _, f in rows)
    label_w = 150
    im = Image.new("RGB", (label_w + cols * (W * scale + 2), len(rows) * (H * scale + 4)), "white")
    d = ImageDraw.Draw(im)
    for r, (label, frames) in enumerate(rows):
        y = r * (H * scale + 4)
        d.text((4, y + H * scale // 2 - 6), label, fill="black")
        for c, f in enumerate(frames):
            tile = Image.fromarray(f).resize((W * scale, H * scale), Image.NEAREST)
            im.paste(tile, (label_w + c * (W * scale + 2), y))
    return im


def gallery(wm, store, out: Path, pictures, seed: int) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    g = lambda: torch.Generator().manual_seed(seed)  # noqa: E731
    ep = store.episode(3)
    fr, ac = ep.frames, ep.actions
    names = []
    ext = wm.extend(fr[:6], ac[:5], ac[5:17], generator=g())
    strip([("recorded", fr[:18]), ("extended (6 held)", ext.frames)]).save(out / "extend.png")
    left = np.full(10, 1)  # move_left
    cf = wm.edit(fr[:16], ac[:15], 6, new_actions=left, generator=g())
    strip([("recorded", fr[:16]), ("what if: left x10", cf.frames)]).save(
        out / "counterfactual.png"
    )
    sd = wm.edit(fr[:16], ac[:15], 6, strength=0.5, generator=g())
    strip([("recorded", fr[:16]), ("SDEdit s=0.5 from 6", sd.frames)]).save(out / "sdedit.png")
    vp = ep.labels["view_pos"]
    t0 = next(t for t in range(len(fr) - 10) if np.abs(vp[t + 9] - vp[t]).sum() >= 3)
    off = tuple(int(v) for v in vp[t0 + 9] - vp[t0])
    br = wm.bridge(fr[t0], fr[t0 + 9], 8, offset=off, candidates=4, generator=g())
    strip([("recorded path", fr[t0 : t0 + 10]), (f"bridge, offset {off}", br.frames)]).save(
        out / "bridge.png"
    )
    rows = []
    for k in (0, 5, 9):
        pic = pictures[k]
        rows.append(("picture", pic[None]))
        for s in (0.3, 0.6, 1.0):
            gen = wm.animate(pic, s, np.array([2] * 5 + [3] * 5), generator=g())
            rows.append((f"  s={s}, then right/up", gen.frames))
    strip(rows).save(out / "animate.png")
    names += ["extend.png", "counterfactual.png", "sdedit.png", "bridge.png", "animate.png"]
    return names


def plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for kind in sorted({r["kind"] for r in rows}):
        sub = [r for r in rows if r["kind"] == kind]
        for ax, key in zip(axes, ("psnr", "confidence", "valid_steps"), strict=True):
            ax.plot(
                STRENGTHS,
                [np.mean([r[key] for r in sub if r["strength"] == s]) for s in STRENGTHS],
                marker="o",
                label=kind,
            )
    for ax, title in zip(
        axes,
        (
            "PSNR of the first frame to the picture (dB)",
            "tile classifier confidence, first frame",
            "share of the next 16 steps that are valid scrolls",
        ),
        strict=True,
    ):
        ax.set_xlabel("strength s")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--checkpoint", default="worldsim/assets/crafter")
    p.add_argument("--data", default="data/crafter-heldout-explore")
    p.add_argument("--tiles", default="bench/tiles-crafter.safetensors")
    p.add_argument("--episodes", type=int, default=24, help="held-out episodes for bridges")
    p.add_argument("--pairs-per-episode", type=int, default=2)
    p.add_argument("--bridge-n", type=int, nargs="+", default=[2, 4, 8, 16])
    p.add_argument("--frames-after", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--parts",
        nargs="+",
        default=["gallery", "strength", "bridges"],
        choices=["gallery", "strength", "bridges"],
        help="what to measure",
    )
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/generate.json"))
    p.add_argument("--figures", type=Path, default=Path("docs/generate"))
    args = p.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    wm = WorldModel.from_checkpoint(args.checkpoint)
    store = EpisodeStore.open(args.data)
    tiles = load_tile_model(args.tiles)
    anchor = tuple(store.label_spec["semantic"].get("anchor", (3, 4)))
    episodes = list(range(min(args.episodes, len(store))))
    threshold, real_best = calibrate(store, tiles, anchor, episodes)
    print(f"step threshold {threshold:.3f} (1st percentile of {len(real_best)} real transitions)")
    rng = np.random.default_rng(args.seed)
    pictures = photos() + drawings(6, rng) + other_games(rng)
    kinds = ["photo"] * 4 + ["drawing"] * 6 + ["other game"] * 8
    names, curve, table = [], [], []
    if "gallery" in args.parts:
        names = gallery(wm, store, args.figures, pictures, args.seed)
    if "strength" in args.parts:
        curve = strength_curve(
            wm, tiles, threshold, anchor, pictures, kinds, args.frames_after, args.seed
        )
        plot(curve, args.figures / "strength.png")
        names.append("strength.png")
    if "bridges" in args.parts:
        table = bridges(
            wm,
            store,
            tiles,
            threshold,
            anchor,
            episodes,
            args.bridge_n,
            args.pairs_per_episode,
            args.seed,
        )
    report = {
        "threshold": threshold,
        "strength": curve,
        "bridges": table,
        "figures": names,
        "seconds": time.time() - t0,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(
        "\n| s | PSNR to picture (dB) | classifier confidence | tiles look real | valid next steps |"
    )
    print("|---|---|---|---|---|")
    for s in STRENGTHS if curve else []:
        sub = [r for r in curve if r["strength"] == s]
        m = {
            k: np.mean([r[k] for r in sub])
            for k in ("psnr", "confidence", "looks_real", "valid_steps")
        }
        print(
            f"| {s} | {m['psnr']:.1f} | {m['confidence']:.3f} | {m['looks_real']:.3f} | {m['valid_steps']:.3f} |"
        )
    print("\n| N | method | pairs | valid path | last step into the end valid |")
    print("|---|---|---|---|---|")
    for r in table:
        print(
            f"| {r['n']} | {r['method']} | {r['pairs']} | {r['valid']:.2f} | {r['last_step']:.2f} |"
        )
    print(f"\n{time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
