"""A copy of an episode store with every episode played backwards: frames and per-frame labels
reversed, each action kept on the transition it labels, rewards and ends dropped. Held-out
play for measuring a backward (time-reversed) world model with `worldsim bench fidelity`.

    python benchmarks/reverse_store.py data/crafter-heldout-explore data/crafter-heldout-reversed
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    from worldsim.data import EpisodeStore
    from worldsim.spaces import tree_index

    src = EpisodeStore.open(args[0])
    dst = EpisodeStore.create(args[1], game=src.game, action_space=src.action_space,
                              observation_space=src.observation_space, fps=src.fps,
                              metadata=dict(src.metadata), label_spec=src.label_spec)  # fmt: skip
    for i in range(len(src)):
        ep = src.episode(i)
        T = len(ep.rewards)
        labels = {k: np.asarray(v)[::-1].copy() for k, v in (ep.labels or {}).items()}
        dst.append(np.asarray(ep.frames)[::-1].copy(), tree_index(ep.actions, np.arange(T)[::-1]),
                   np.zeros(T, np.float32), np.zeros(T, bool), np.zeros(T, bool), labels=labels)  # fmt: skip
    print(f"{len(dst)} episodes of {args[0]} played backwards into {args[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
