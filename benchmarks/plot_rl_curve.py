"""Crafter score against real steps: the world-model loop next to SB3 PPO on the same real steps.

    python benchmarks/plot_rl_curve.py \
        --series "worldsim loop" 20480=runs/eval-loop-0.json 40960=runs/eval-loop-1.json \
        --series "SB3 PPO" 20480=runs/eval-sb3-1.json 40960=runs/eval-sb3-2.json \
        --out docs/rl_curve.png

Each point is a `worldsim rl eval --out` report (its Crafter score and 95% interval), placed at
the real steps its agent was trained with. Writes the figure and a JSON of the points beside it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def read_series(items: list[str]) -> tuple[str, list[dict]]:
    name, points = items[0], []
    for item in items[1:]:
        steps, sep, path = item.partition("=")
        if not sep:
            raise SystemExit(f"{item!r}: expected REAL_STEPS=EVAL.json")
        agent = json.loads(Path(path).read_text())["agent"]
        points.append({
            "real_steps": int(steps),
            "crafter_score": agent["crafter_score"],
            "crafter_score_ci95": agent["crafter_score_ci95"],
            "return_mean": agent["return_mean"],
            "return_ci95": agent["return_ci95"],
            "episodes": agent["episodes"],
            "report": path,
        })  # fmt: skip
    return name, points


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--series", nargs="+", action="append", required=True,
                   metavar="NAME STEPS=EVAL.json", help="a curve: its name, then its points")  # fmt: skip
    p.add_argument("--random", type=float, default=None, help="random policy's score, a line")
    p.add_argument("--out", required=True, help="the figure (.png); the points go to .json")
    args = p.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = dict(read_series(items) for items in args.series)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, points in series.items():
        x = [q["real_steps"] for q in points]
        y = [q["crafter_score"] for q in points]
        lo = [q["crafter_score"] - q["crafter_score_ci95"][0] for q in points]
        hi = [q["crafter_score_ci95"][1] - q["crafter_score"] for q in points]
        ax.errorbar(x, y, yerr=[lo, hi], marker="o", capsize=3, label=name)
    if args.random is not None:
        ax.axhline(args.random, color="grey", ls="--", lw=1, label="random")
    ax.set_xlabel("real Crafter steps")
    ax.set_ylabel("Crafter score % (50 real episodes, 95% CI)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    out.with_suffix(".json").write_text(json.dumps(series, indent=1))
    print(f"wrote {out} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
