"""What a Crafter dream pays an agent, next to what the real game pays the same agent.

    python benchmarks/bench_agent_in_dream.py --checkpoint releases/stage12-hud0.5 \
        --agent agents/real-sb3-184k --store data/crafter-sleep

One agent, played in the dream (batched, `--envs` envs, starts from the first frames of the
store's episodes, as `worldsim rl train --start_store` starts them) and in the real game, each
episode cut at `--max-steps` so that both count over the same horizon. An agent trained in the
real game is the yardstick: a dream that pays it what the game pays it is one an agent can
learn the game in. Where the dream pays less (or more), the per-achievement rows say which
part of the world is wrong. Printed and written as JSON, for the dream and the real game:

- episodes, mean length, mean return, reward a step, share of episodes ended by death;
- `unlocks`: per named event, the share of episodes in which it happened (the dream's from
  the world model's record of the events it fired, `WorldModel.paid`; the real game's from
  Crafter's achievements). fall_asleep is the dream's own unpaid event.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def dream_episodes(
    checkpoint: str, agent: str, store: str, episodes: int, envs: int, max_steps: int, seed: int
) -> tuple[list[str], list[dict]]:
    """Play `agent` in the dream until `episodes` episodes have ended; one dict per episode."""
    import gymnasium as gym
    from gymnasium.vector import AutoresetMode

    from envs.world_model_registry import register_world_model_envs
    from worldsim.agents import load_agent_policy

    register_world_model_envs()
    venv = gym.make_vec(
        "worldsim/WorldModel-v0", num_envs=envs, vectorization_mode="vector_entry_point",
        checkpoint=checkpoint, max_episode_steps=max_steps, device="cpu",
        autoreset_mode=AutoresetMode.NEXT_STEP, tensors=True,
    )  # fmt: skip
    policy = load_agent_policy(agent, venv.single_action_space)
    policy.reset(seed)
    wm = venv.unwrapped.world_model
    names = list(wm.config.events)
    if not names:
        raise SystemExit(f"{checkpoint}: the model has no named events to count")
    obs, _ = venv.reset(seed=seed, options={"store": store})
    start = wm.paid
    ret, length = np.zeros(envs), np.zeros(envs, np.int64)
    done = np.zeros(envs, np.bool_)
    out: list[dict] = []
    while len(out) < episodes:
        obs, reward, term, trunc, _ = venv.step(policy.act(obs))
        paid = wm.paid
        start[done] = paid[done]  # envs that ended last step started again now
        ret[done], length[done] = 0.0, 0
        live = ~done
        ret[live] += reward[live]
        length[live] += 1
        done = term | trunc
        for i in np.flatnonzero(done):
            events = [n for n, e in zip(names, paid[i] & ~start[i]) if e]
            out.append({"return": float(ret[i]), "length": int(length[i]),
                        "death": bool(term[i]), "events": events})  # fmt: skip
    venv.close()
    return names, out[:episodes]


def real_episodes(agent: str, episodes: int, max_steps: int, seed: int) -> list[dict]:
    """Play `agent` in real Crafter; one dict per episode, as `dream_episodes`."""
    from training.rl_eval import evaluate_agent

    report = evaluate_agent(
        agent, "crafter", episodes=episodes, seed=seed, max_steps=max_steps, baseline=False
    )["agent"]
    out = []
    for r, n, a in zip(report["returns"], report["lengths"], report["achievements"]):
        events = [k for k, v in a.items() if v > 0]
        out.append({"return": r, "length": n, "death": n < max_steps, "events": events})
    return out


def summary(eps: list[dict], names: list[str]) -> dict:
    steps = sum(e["length"] for e in eps)
    return {
        "episodes": len(eps),
        "length": float(np.mean([e["length"] for e in eps])),
        "return": float(np.mean([e["return"] for e in eps])),
        "reward_per_step": sum(e["return"] for e in eps) / max(steps, 1),
        "deaths": float(np.mean([e["death"] for e in eps])),
        "unlocks": {n: float(np.mean([n in e["events"] for e in eps])) for n in names},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="release folder of a Crafter dream")
    p.add_argument("--agent", required=True, help="agent folder")
    p.add_argument("--store", required=True, help="store whose episodes start the dreams")
    p.add_argument("--episodes", type=int, default=64, help="episodes in each world")
    p.add_argument("--envs", type=int, default=32, help="dream envs stepped together")
    p.add_argument("--max-steps", type=int, default=200, help="cut episodes at this length")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    names, dream = dream_episodes(args.checkpoint, args.agent, args.store, args.episodes,
                                  args.envs, args.max_steps, args.seed)  # fmt: skip
    real = real_episodes(args.agent, args.episodes, args.max_steps, args.seed)
    result = {"checkpoint": args.checkpoint, "agent": args.agent, "max_steps": args.max_steps,
              "dream": summary(dream, names), "real": summary(real, names)}  # fmt: skip
    d, r = result["dream"], result["real"]
    print(f"{'':22s} {'dream':>8s} {'real':>8s}")
    for k in ("episodes", "length", "return", "reward_per_step", "deaths"):
        print(f"{k:22s} {d[k]:8.3f} {r[k]:8.3f}")
    for n in names:
        if d["unlocks"][n] or r["unlocks"][n]:
            print(f"  {n:20s} {d['unlocks'][n]:8.2f} {r['unlocks'][n]:8.2f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
