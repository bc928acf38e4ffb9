"""Read a world model's motion kernels back by action: where does each move send the view?

    python benchmarks/probe_motion.py --checkpoint worldsim/assets/crafter --data data/crafter-heldout

For held-out transitions of each movement action (Crafter: noop, left, right, up, down), one
next frame is denoised from pure noise at sigma_max (as a 1-step rollout does) after the real
previous frame, and the motion head's taps are averaged over the tokens and transitions. It
prints the weight on "stay" (the centre tap) and on the taps one tile (--shift px) away along
each axis. A model that scrolls with the keys puts "right" on +shift horizontally (content
moves left), "up" on -shift vertically, and "noop" on the centre.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from worldsim.checkpoint import load_release
from worldsim.data import EpisodeStore

NAMES = ["noop", "left", "right", "up", "down"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="release folder")
    p.add_argument("--data", required=True, help="held-out episode store")
    p.add_argument("--episodes", type=int, default=12)
    p.add_argument("--per-episode", type=int, default=20, help="transitions drawn per episode")
    p.add_argument("--shift", type=int, default=7, help="one tile, in pixels (Crafter: 7)")
    p.add_argument("--temperature", type=float, default=None, help="override the release's")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    release = load_release(args.checkpoint)
    net, sp = release.net.eval(), release.sampler
    cfg, motion = net.config, net.backbone.motion
    if motion is None:
        raise SystemExit(f"{args.checkpoint} has no motion head (motion_radius 0)")
    temperature = sp.motion_temperature if args.temperature is None else args.temperature
    r, s = cfg.motion_radius, args.shift
    kernels: list[tuple[torch.Tensor, torch.Tensor]] = []
    motion.register_forward_hook(lambda module, inputs, out: kernels.append(out))
    store, rng = EpisodeStore.open(args.data), np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)  # the noise each probed frame is denoised from
    taps: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {a: [] for a in range(len(NAMES))}
    for ep in range(min(args.episodes, len(store))):
        episode = store.episode(ep)
        frames, actions = episode.frames, episode.actions
        for t in rng.choice(len(actions), min(args.per_episode, len(actions)), replace=False):
            a = int(actions[t])
            if a >= len(NAMES):
                continue
            x = net.frames_to_x(torch.as_tensor(frames[t : t + 2][None]))  # [1, 2, c, h, w]
            prev = torch.cat([torch.zeros_like(x[:, :1]), x[:, :1]], dim=1)
            noisy = torch.cat([x[:, :1], torch.randn_like(x[:, 1:]) * sp.sigma_max], dim=1)
            enc = net.encode_actions(torch.as_tensor(actions[t : t + 1][None])).float()
            enc = torch.cat([torch.zeros_like(enc), enc], dim=1)
            sigma = torch.tensor([[sp.sigma_max, sp.sigma_max]])
            prev_sigma = torch.tensor([[1e4, sp.sigma_stab]])
            kernels.clear()
            with torch.no_grad():
                mask = torch.tensor([[False, True]])
                net.denoise(noisy, sigma, prev, prev_sigma, enc, mask, None, temperature)
            ky, kx = kernels[0]
            taps[a].append((ky[0, 1].mean(0).numpy(), kx[0, 1].mean(0).numpy()))
    print(f"| action | n | vertical: stay / -{s} / +{s} | horizontal: stay / -{s} / +{s} |")
    print("|---|---|---|---|")
    for a, rows in taps.items():
        if rows:
            ky, kx = (np.mean([row[i] for row in rows], axis=0) for i in (0, 1))
            print(
                f"| {NAMES[a]} | {len(rows)} | {ky[r]:.2f} / {ky[r - s]:.2f} / {ky[r + s]:.2f} "
                f"| {kx[r]:.2f} / {kx[r - s]:.2f} / {kx[r + s]:.2f} |"
            )


if __name__ == "__main__":
    main()
