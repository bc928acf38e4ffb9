"""Rewards and the inventory of a Crafter world model, teacher-forced on every held-out transition.

    python benchmarks/bench_tile_rewards.py --checkpoint worldsim/assets/crafter --data data/crafter-heldout-explore

For every transition t (from the K-th frame on) the model gets the K real frames up to t and
the real action, and generates frame t+1 and its reward. Printed and written as JSON:
- achievement-unlock recall and precision (reward >= 0.5) over all held-out unlocks (the
  fidelity report's clips hold only a few of them);
- how often the dream changes the inventory rows (the bottom two tile rows) when the real
  game does and when it does not, and how often it draws them exactly as the real next frame;
  with the store's `events` labels, apart for the changes in a step where an event happened
  (wood collected, water drunk) and the others (Crafter's food, water, energy and health
  timers, which the frames do not show);
- with the store's `events` labels (Crafter's achievements), the recall of each kind of unlock;
- for a tile model, the same unlocks scored by its reward head on the *real* next frame: what
  the head can do when the inventory is drawn right.

A tile model with named events pays only the first time an event fires in the episode: its
record of what it paid follows its own calls on the episode's transitions so far, as in a
dream.
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
    from worldsim.model.tiles import (
        first_events,
        frames_to_patches,
        nearest_codes,
        novelty,
        paying_events,
    )
    from worldsim.world_model import WorldModel

    wm, K = WorldModel.from_checkpoint(args.checkpoint), args.context
    net = wm.net
    store = EpisodeStore.open(args.data)
    eps = [store.episode(i) for i in range(len(store))]
    fr = [np.asarray(e.frames) for e in eps]
    ac = [np.asarray(e.actions) for e in eps]
    tile = isinstance(net, TileWorldNet)
    E = len(net.config.events) if tile else 0
    # Lockstep over the episodes: transition t of every episode long enough, each from its K
    # real frames; a tile model's record of the events it has paid follows its own calls.
    paid = torch.zeros(len(eps), E, dtype=torch.bool)
    paying = paying_events(store.label_spec.get("events", {}))
    gen_r = [np.zeros(len(a), np.float32) for a in ac]
    gen_hud = [np.zeros(len(a), bool) for a in ac]
    gen_hud_right = [np.zeros(len(a), bool) for a in ac]  # drawn as the real next frame's
    lo, hi = 63 - args.hud_rows, 63
    for t in range(K - 1, max(len(a) for a in ac)):
        alive = [i for i in range(len(eps)) if t < len(ac[i])]
        for j in range(0, len(alive), 64):
            rows = alive[j : j + 64]
            x, enc = wm._context(
                np.stack([fr[i][t - K + 1 : t + 1] for i in rows]),
                np.stack([ac[i][t - K + 1 : t] for i in rows]),
            )
            gen = torch.Generator().manual_seed(t * 1_000 + j)
            with torch.no_grad():
                state = wm.rollout.start(x, enc)
                if tile:
                    state.paid = paid[rows]
                out, r, _ = wm.rollout.next(
                    state, net.encode_actions(np.stack([ac[i][t] for i in rows])[:, None]),
                    generator=gen,
                )  # fmt: skip
            if tile:
                paid[rows] = state.paid
            g = net.x_to_frames(out)[:, 0].cpu().numpy()
            for k, i in enumerate(rows):
                gen_r[i][t] = float(r[k, 0])
                gen_hud[i][t] = (g[k, lo:hi] != fr[i][t, lo:hi]).any()
                gen_hud_right[i][t] = (g[k, lo:hi] == fr[i][t + 1, lo:hi]).all()
    pred, real, hud_real, hud_gen, head_real, kinds = [], [], [], [], [], []
    hud_right, evented = [], []
    for i, e in enumerate(eps):
        ts = np.arange(K - 1, len(ac[i]))
        pred.append(gen_r[i][ts])
        real.append(np.asarray(e.rewards)[ts])
        hud_real.append((fr[i][ts + 1, lo:hi] != fr[i][ts, lo:hi]).any((1, 2, 3)))
        hud_gen.append(gen_hud[i][ts])
        hud_right.append(gen_hud_right[i][ts])
        counts = (e.labels or {}).get("events")
        if counts is not None:
            # Whether an event happened in the step (any counter goes up), and which event
            # each real unlock is (the first counter to leave 0).
            evented.append((np.diff(np.asarray(counts), axis=0) > 0).any(1)[ts])
            first = first_events(counts) & paying  # what pays (not Crafter's falling asleep)
            kinds.append(np.where(first.any(1), first.argmax(1), -1)[ts])
        if tile:  # the reward head on the real next frames, paying from its own record
            with torch.no_grad():
                codes = nearest_codes(frames_to_patches(fr[i], net.config.patch), net.codebook)[0]
                seen = torch.zeros(1, codes.shape[1], net.config.codebook_size, dtype=torch.bool)
                new = torch.stack([novelty(c[None], seen)[0] for c in codes])
                act = net.encode_actions(torch.as_tensor(ac[i]))
                pix = frames_to_patches(fr[i][:-1], net.config.patch)
                fired = net.fire_events(net.step_logits(codes[:-1], pix, act)[1])
                before = torch.cumsum(fired.int(), 0) - fired.int() > 0
                rew = net.predict_reward(codes[:-1], codes[1:], new[1:], act, fired, before)[0]
            head_real.append(rew.numpy()[K - 1 :])
    pred, real = np.concatenate(pred), np.concatenate(real)
    hr, hg = np.concatenate(hud_real), np.concatenate(hud_gen)
    right = np.concatenate(hud_right)

    def pr(p_: np.ndarray) -> dict:
        u, pu = real >= 0.5, p_ >= 0.5
        tp = int((u & pu).sum())
        return {"unlocks": int(u.sum()), "predicted": int(pu.sum()),
                "recall": tp / max(int(u.sum()), 1), "precision": tp / max(int(pu.sum()), 1)}  # fmt: skip

    names = store.label_spec.get("events", {}).get("names", [])
    kind = np.concatenate(kinds) if len(kinds) == len(eps) else None

    def by_event(p_: np.ndarray) -> dict:
        if kind is None:
            return {}
        return {names[k]: f"{int((p_[kind == k] >= 0.5).sum())}/{int((kind == k).sum())}"
                for k in np.unique(kind[kind >= 0])}  # fmt: skip

    out = {
        "checkpoint": str(args.checkpoint), "data": args.data, "context": K, "transitions": len(real),
        "teacher_forced": pr(pred),
        "recall_by_event": by_event(pred),
        "inventory_changes": {"real_share": float(hr.mean()), "dream_share": float(hg.mean()),
                              "dream_when_real_changes": float((hg & hr).sum() / max(hr.sum(), 1)),
                              "dream_when_real_does_not": float((hg & ~hr).sum() / max((~hr).sum(), 1)),
                              "drawn_right_when_real_changes": float((right & hr).sum() / max(hr.sum(), 1)),
                              "drawn_right_when_real_does_not": float((right & ~hr).sum() / max((~hr).sum(), 1))},
    }  # fmt: skip
    if len(evented) == len(eps):  # the real changes apart: in a step with an event, or not
        ev = np.concatenate(evented)
        out["inventory_changes"]["by_cause"] = {
            cause: {"real_changes": int((hr & m).sum()),
                    "dream_changes": float((hg & hr & m).sum() / max((hr & m).sum(), 1)),
                    "drawn_right": float((right & hr & m).sum() / max((hr & m).sum(), 1))}
            for cause, m in (("event", ev), ("no_event", ~ev))
        }  # fmt: skip
    if head_real:
        on_real = np.concatenate(head_real)
        out["reward_head_on_real_next_frames"] = {**pr(on_real), "by_event": by_event(on_real)}
    print(json.dumps(out, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
