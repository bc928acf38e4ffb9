"""Rewards and the inventory of a Crafter world model, teacher-forced on every held-out transition.

    python benchmarks/bench_tile_rewards.py --checkpoint worldsim/assets/crafter --data data/crafter-heldout-explore

For every transition t (from the K-th frame on) the model gets the K real frames up to t and
the real action, and generates frame t+1 and its reward. Printed and written as JSON:
- achievement-unlock recall and precision (reward >= 0.5) over all held-out unlocks (the
  fidelity report's clips hold only a few of them);
- how often the dream changes the inventory rows (the bottom two tile rows) when the real
  game does and when it does not;
- for a tile model, the same unlocks scored by its reward head on the *real* next frame: what
  the head can do when the inventory is drawn right.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, required=True, help="release folder")
    p.add_argument("--data", required=True, help="store of held-out Crafter episodes")
    p.add_argument("--context", type=int, default=7, help="real context frames (default 7)")
    p.add_argument(
        "--hud-rows",
        type=int,
        default=14,
        help="pixel rows of the inventory above the 1-px border (default 14)",
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from worldsim.data import EpisodeStore
    from worldsim.model.tile_net import TileWorldNet
    from worldsim.model.tiles import frames_to_patches, nearest_codes, novelty
    from worldsim.world_model import WorldModel

    wm, K = WorldModel.from_checkpoint(args.checkpoint), args.context
    store = EpisodeStore.open(args.data)
    pred, real, hud_real, hud_gen, head_real = [], [], [], [], []
    lo, hi = 63 - args.hud_rows, 63
    for i in range(len(store)):
        ep = store.episode(i)
        fr, ac, r = np.asarray(ep.frames), np.asarray(ep.actions), np.asarray(ep.rewards)
        ts = np.arange(K - 1, len(ac))
        for j in range(0, len(ts), 64):
            t = ts[j : j + 64]
            ctx = np.stack([fr[x - K + 1 : x + 1] for x in t])
            ca = np.stack([ac[x - K + 1 : x] for x in t])
            gen = torch.Generator().manual_seed(i * 100_000 + j)
            o = wm.generate(ctx, ca, ac[t][:, None], generator=gen)
            pred.append(o["rewards"][:, 0])
            real.append(r[t])
            last, nxt, g = fr[t][:, lo:hi], fr[t + 1][:, lo:hi], o["frames"][:, 0, lo:hi]
            hud_real.append((nxt != last).any((1, 2, 3)))
            hud_gen.append((g != last).any((1, 2, 3)))
        if isinstance(wm.net, TileWorldNet):  # the reward head on the real next frames
            net = wm.net
            with torch.no_grad():
                codes = nearest_codes(frames_to_patches(fr, net.config.patch), net.codebook)[0]
                seen = torch.zeros(1, codes.shape[1], net.config.codebook_size, dtype=torch.bool)
                new = torch.stack([novelty(c[None], seen)[0] for c in codes])
                rew, _ = net.predict_reward(
                    codes[:-1], codes[1:], new[1:], net.encode_actions(torch.as_tensor(ac))
                )
            head_real.append(rew.numpy()[K - 1 :])
    pred, real = np.concatenate(pred), np.concatenate(real)
    hr, hg = np.concatenate(hud_real), np.concatenate(hud_gen)

    def pr(p_: np.ndarray) -> dict:
        u, pu = real >= 0.5, p_ >= 0.5
        tp = int((u & pu).sum())
        return {"unlocks": int(u.sum()), "predicted": int(pu.sum()),
                "recall": tp / max(int(u.sum()), 1), "precision": tp / max(int(pu.sum()), 1)}  # fmt: skip

    out = {
        "checkpoint": str(args.checkpoint), "data": args.data, "context": K, "transitions": len(real),
        "teacher_forced": pr(pred),
        "inventory_changes": {"real_share": float(hr.mean()), "dream_share": float(hg.mean()),
                              "dream_when_real_changes": float((hg & hr).sum() / max(hr.sum(), 1)),
                              "dream_when_real_does_not": float((hg & ~hr).sum() / max((~hr).sum(), 1))},
    }  # fmt: skip
    if head_real:
        out["reward_head_on_real_next_frames"] = pr(np.concatenate(head_real))
    print(json.dumps(out, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
