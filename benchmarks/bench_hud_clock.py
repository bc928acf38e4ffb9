"""Does a tile world model tell when its HUD's counters tick? Teacher-forced, with the clocks.

    python benchmarks/bench_hud_clock.py --checkpoint RELEASE --data data/crafter-heldout-explore

Over every transition of the store, one step from the real frames: which HUD (fixed-row)
tokens the model changes, against the real changes. With a model that reads HUD clocks
(`TileConfig.hud_clock`) the step is told the episode's clocks (steps since each token's
code last changed), and again with them withheld. Also the timers the data shows: for each
HUD token, the clock at which most of its changes come (its beat, Crafter's food at 26), if
at least half do; the "beats" row counts the steps where a timed token's clock is its beat.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def beats(clock: np.ndarray, changed: np.ndarray) -> dict[int, tuple[int, int, int]]:
    """Per HUD token j whose changes mostly come at one clock > 0: (that clock, changes at
    it, all its changes). clock long [n, F], changed bool [n, F]."""
    out = {}
    for j in range(clock.shape[1]):
        at = clock[changed[:, j], j]
        at = at[at > 0]
        if len(at):
            value, count = np.unique(at, return_counts=True)
            k = int(count.argmax())
            if count[k] * 2 >= changed[:, j].sum():
                out[j] = (int(value[k]), int(count[k]), int(changed[:, j].sum()))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, required=True, help="release folder")
    p.add_argument("--data", required=True, help="store of held-out episodes")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from training.tile_data import TileDataModule
    from worldsim.model.tile_net import tile_choice
    from worldsim.world_model import WorldModel

    net = WorldModel.from_checkpoint(args.checkpoint).net
    cfg, M = net.config, net.moving
    dm = TileDataModule(args.data, patch=cfg.patch, fixed_rows=cfg.fixed_rows,
                        motion_radius=cfg.motion_radius, codebook_size=cfg.codebook_size,
                        val_fraction=0.0, test_fraction=0.0, codebook_from=str(args.checkpoint))  # fmt: skip
    dm.setup()
    part, n = dm.train, len(dm.train["last"])
    modes = ("with clocks", "clocks withheld") if net.c_clock is not None else ("no clocks",)
    drawn = {m: [] for m in modes}
    real, clock = [], []
    for s in range(0, n, args.batch_size):
        b = dm.batch(part, np.arange(s, min(n, s + args.batch_size)))
        pix_sh, code_sh, prev_sh = net.shift_inputs(
            b["pix"], b["code"], b["prev_code"], b["prev_shift"], b["shift"]
        )
        action = net.encode_actions(b["action"])
        for m in modes:
            with torch.no_grad():
                keep, codes, _ = net.tile_logits(
                    code_sh, pix_sh, prev_sh, b["mem_code"], b["mem_age"],
                    torch.zeros_like(code_sh), action, b["shift"], b["events"],
                    b["clock"] if m == "with clocks" else None,
                )  # fmt: skip
            drawn[m].append((tile_choice(keep, codes)[:, M:] != 0).numpy())
        real.append((~net.same_tile(pix_sh[:, M:], b["pix_next"][:, M:])).numpy())
        clock.append(b["clock"].numpy())
    real, clock = np.concatenate(real), np.concatenate(clock)
    timers = beats(clock, real)
    on_beat = np.zeros_like(real)
    for j, (value, _, _) in timers.items():
        on_beat[:, j] = clock[:, j] == value
    result: dict = {"checkpoint": str(args.checkpoint), "data": args.data, "transitions": n,
                    "timers": {str(j): v for j, v in timers.items()}}  # fmt: skip
    print(f"{n} transitions; HUD tokens on a timer (token: beat, changes at it, changes):")
    for j, (value, hits, total) in timers.items():
        print(f"  {j}: {value}, {hits} of {total}")
    for m in modes:
        d = np.concatenate(drawn[m])
        row = {
            "changes_told": round(float(d[real].mean()), 3),
            "false_changes": round(float(d[~real].mean()), 4),
            "beat_changes_told": [int(d[real & on_beat].sum()), int((real & on_beat).sum())],
            "beat_false": [int(d[~real & on_beat].sum()), int((~real & on_beat).sum())],
        }
        result[m] = row
        print(f"{m}: HUD changes told {row['changes_told']} of {int(real.sum())}, false "
              f"{row['false_changes']}; at the beats told {row['beat_changes_told'][0]} of "
              f"{row['beat_changes_told'][1]}, false {row['beat_false'][0]} of {row['beat_false'][1]}")  # fmt: skip
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
