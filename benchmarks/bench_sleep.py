"""Whether a Crafter dream falls asleep, sleeps as long as the game and pays the wake-up.

    python benchmarks/bench_sleep.py --checkpoint worldsim/assets/crafter \
        --data data/crafter-heldout-sleep

Crafter's player falls asleep on "sleep" when its energy is below the maximum: the map turns
grey (the game desaturates it and tints it blue), every action is ignored, and the player
wakes once its energy is full, which pays the wake_up achievement (+1). Random play wakes
up in most episodes; an agent can learn it in a dream only if the dream sleeps.

For every "sleep" the held-out store's player pressed while awake (record the store with
`worldsim collect --policy sleeper`), the model starts from the `--context` real frames up to
the press and rolls out open loop with the real actions for `--horizon` steps. A frame is
asleep where its map's pixels are grey (`envs.crafter_env.sleeping_view`: R = G, B = G + 8
within a few levels; real frames separate by a margin of 19 levels). Printed and written as
JSON:

- `falls_asleep`: presses that put the real player to sleep, and of those, how many the
  dream follows within 2 steps (recall); `false_sleep`: presses that did nothing in the game
  (full energy), and how many the dream slept on anyway.
- `asleep_frames`: frames asleep in the real and the dreamed continuation, and in both
  (recall / precision of the dream's asleep frames).
- `wake_ups`: real wake-ups (the wake_up achievement's first time in the episode, from the
  store's `events` labels) within the horizon, and how many the dream paid (a reward of at
  least 0.9 within 3 steps of the real one); `dream_unlocks_asleep`: such rewards the dream
  paid on a step it shows asleep; `paid_after_sleeping`: clips where the dream paid an unlock
  (+1) at any step after it fell asleep, among those where the game paid a wake-up within the
  horizon and among the others (a dream that wakes late still pays).
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, required=True, help="release folder")
    p.add_argument("--data", required=True, help="store of held-out Crafter sleeper episodes")
    p.add_argument("--context", type=int, default=4)
    p.add_argument("--horizon", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-clips", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from envs.crafter_env import sleeping_view as asleep
    from worldsim.data import EpisodeStore
    from worldsim.model.tiles import events_had, first_events
    from worldsim.world_model import WorldModel

    wm, K, H = WorldModel.from_checkpoint(args.checkpoint), args.context, args.horizon
    store = EpisodeStore.open(args.data)
    names = list(store.metadata.get("action_names") or [])
    event_names = store.label_spec.get("events", {}).get("names", [])
    if "sleep" not in names or "wake_up" not in event_names:
        raise SystemExit(f"{args.data} is not a Crafter store with events labels: record one "
                         "with worldsim collect --game crafter --policy sleeper")  # fmt: skip
    sleep, wake = names.index("sleep"), event_names.index("wake_up")
    model_events = list(getattr(wm.config, "events", None) or [])
    clips = []  # (frames, actions, paid, woke at step or -1)
    for i in range(len(store)):
        ep = store.episode(i)
        frames, actions = np.asarray(ep.frames), np.asarray(ep.actions)
        firsts = first_events(np.asarray(ep.labels["events"]))  # [T, E]: per transition
        real_asleep = asleep(frames)
        for t in np.flatnonzero(actions == sleep):
            if t < K - 1 or t + H >= len(frames) or real_asleep[t]:
                continue
            s = t - (K - 1)
            woke = np.flatnonzero(firsts[t : t + H, wake])  # index into the future steps
            paid = events_had(np.asarray(ep.labels["events"])[s], event_names, model_events)
            clips.append((frames[s : t + 1 + H], actions[s : t + H], paid,
                          int(woke[0]) if len(woke) else -1))  # fmt: skip
    clips = clips[: args.max_clips]
    if not clips:
        raise SystemExit(f"no sleep press in {args.data} has {K} frames before it and {H} after")
    gen = torch.Generator().manual_seed(args.seed)
    real, dream, rewards = [], [], []
    for b in range(0, len(clips), args.batch_size):
        part = clips[b : b + args.batch_size]
        fr, ac = np.stack([c[0] for c in part]), np.stack([c[1] for c in part])
        out = wm.generate(fr[:, :K], ac[:, : K - 1], ac[:, K - 1 :], generator=gen,
                          paid=np.stack([c[2] for c in part]) if model_events else None)  # fmt: skip
        real.append(asleep(fr[:, K:]))
        dream.append(asleep(out["frames"]))
        rewards.append(out["rewards"])
    real, dream, rewards = np.concatenate(real), np.concatenate(dream), np.concatenate(rewards)
    onset = real[:, 0]
    followed = dream[:, :2].any(1)
    woke = np.array([c[3] for c in clips])
    paid_near = [
        bool((rewards[i, max(0, w - 3) : w + 4] >= 0.9).any()) for i, w in enumerate(woke) if w >= 0
    ]
    # any unlock the dream pays once it has slept (its own wake-up, whenever it comes)
    slept = np.maximum.accumulate(dream, axis=1)
    paid_after = (
        (rewards >= 0.9) & np.concatenate([np.zeros_like(slept[:, :1]), slept[:, :-1]], 1)
    ).any(1)
    result = {
        "checkpoint": str(args.checkpoint), "data": args.data, "clips": len(clips),
        "context": K, "horizon": H, "sampler": dataclasses.asdict(wm.sampler),
        "falls_asleep": [int((onset & followed).sum()), int(onset.sum())],
        "false_sleep": [int((~onset & dream[:, 0]).sum()), int((~onset).sum())],
        "asleep_frames": {"real": int(real.sum()), "dream": int(dream.sum()),
                          "both": int((real & dream).sum())},
        "wake_ups": [int(sum(paid_near)), len(paid_near)],
        "paid_after_sleeping": [int(paid_after[woke >= 0].sum()), int((woke >= 0).sum()),
                                int(paid_after[woke < 0].sum()), int((woke < 0).sum())],
        "dream_unlocks_asleep": int(((rewards >= 0.9) & dream).sum()),
    }  # fmt: skip
    f, fs, af, w = (result[k] for k in ("falls_asleep", "false_sleep", "asleep_frames", "wake_ups"))
    print(f"{len(clips)} sleep presses, {K} context frames, {H} steps open loop")
    print(f"falls asleep with the game: {f[0]} of {f[1]} ({f[0] / max(f[1], 1):.2f})")
    print(f"sleeps where the game did not: {fs[0]} of {fs[1]} ({fs[0] / max(fs[1], 1):.2f})")
    print(f"asleep frames: real {af['real']}, dream {af['dream']}, both {af['both']} "
          f"(recall {af['both'] / max(af['real'], 1):.2f}, "
          f"precision {af['both'] / max(af['dream'], 1):.2f})")  # fmt: skip
    print(
        f"wake-ups paid within 3 steps of the game's: {w[0]} of {w[1]}; "
        f"unlock rewards the dream paid while asleep: {result['dream_unlocks_asleep']}"
    )
    pa = result["paid_after_sleeping"]
    print(f"an unlock paid after the dream fell asleep: in {pa[0]} of the {pa[1]} clips where "
          f"the game paid a wake-up, in {pa[2]} of the {pa[3]} others")  # fmt: skip
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
