"""Agents in the REAL game: return, and for Crafter the official score and achievement success rates.

    worldsim rl eval --agent agents/ppo --game crafter --episodes 20 --out report.json
    worldsim rl eval --agent random --game crafter --episodes 20

The Crafter score (Hafner, 2021) is the geometric mean of the 22 achievements' success rates
s_i (percent of episodes in which achievement i was unlocked at least once), computed as
exp(mean_i ln(1 + s_i)) - 1 so that an achievement never unlocked does not zero it. Episode k
of an evaluation with seed S is played in the world of seed `episode_seed(S, k)`, so agents
evaluated with the same seed meet the same worlds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from envs.collect import episode_seed
from envs.policies import Policy, make_policy
from worldsim.validation import check_int

__all__ = [
    "PUBLISHED_CRAFTER_SCORES",
    "crafter_achievements",
    "crafter_score",
    "crafter_score_ci95",
    "evaluate",
    "evaluate_agent",
    "format_reports",
    "mean_ci95",
    "success_rates",
]

# Published Crafter scores (percent) to place ours against (Hafner 2021; Hafner et al. 2023).
PUBLISHED_CRAFTER_SCORES = {
    "random": 1.6,
    "PPO (SB3), 1M real steps": 4.6,
    "DreamerV2": 10.0,
    "DreamerV3": 14.5,
    "human experts": 50.5,
}


def crafter_achievements() -> list[str]:
    """The 22 Crafter achievements, in crafter's order."""
    from crafter import constants

    return list(constants.achievements)


def crafter_score(rates: Mapping[str, float] | Sequence[float]) -> float:
    """The Crafter score (percent) from success rates in percent: exp(mean ln(1 + s_i)) - 1.

    Args:
        rates: success rate of each achievement in percent, as a sequence or a name -> rate map.

    Returns:
        0 when nothing was ever unlocked, 100 when every achievement always was.
    """
    values = np.asarray(list(rates.values()) if isinstance(rates, Mapping) else rates, float)
    if values.size == 0 or (values < 0).any() or (values > 100).any():
        raise ValueError(f"success rates must be percentages in [0, 100], got {values.tolist()}")
    return float(math.exp(np.log1p(values).mean()) - 1.0)


def success_rates(
    achievements: Sequence[Mapping[str, int]], names: Sequence[str] | None = None
) -> dict[str, float]:
    """Percent of episodes that unlocked each achievement at least once.

    Args:
        achievements: per episode, its final ``info["achievements"]`` (name -> times unlocked).
        names: the achievements to rate (default: Crafter's 22).
    """
    names = list(names) if names is not None else crafter_achievements()
    n = max(len(achievements), 1)
    return {name: 100.0 * sum(a.get(name, 0) > 0 for a in achievements) / n for name in names}


def mean_ci95(values: Sequence[float]) -> list[float]:
    """The 95% confidence interval of a mean (normal approximation): [low, high]."""
    x = np.asarray(values, float)
    if x.size < 2:
        return [float(x.mean()), float(x.mean())] if x.size else [math.nan, math.nan]
    half = 1.96 * x.std(ddof=1) / math.sqrt(x.size)
    return [float(x.mean() - half), float(x.mean() + half)]


def crafter_score_ci95(
    achievements: Sequence[Mapping[str, int]], seed: int = 0, resamples: int = 2000
) -> list[float]:
    """The 95% percentile-bootstrap interval of the Crafter score over episodes: [low, high].

    Args:
        achievements: per episode, its final ``info["achievements"]``.
        seed: seeds the resampling.
        resamples: bootstrap resamples.
    """
    names = crafter_achievements()
    got = np.array([[a.get(n, 0) > 0 for n in names] for a in achievements], float)
    if not len(got):
        return [math.nan, math.nan]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(got), (resamples, len(got)))
    scores = [crafter_score(rates) for rates in 100.0 * got[idx].mean(1)]  # [resamples]
    return [float(np.percentile(scores, 2.5)), float(np.percentile(scores, 97.5))]


def _check_counts(episodes: int, max_steps: int | None) -> None:
    check_int(episodes, "episodes (--episodes)")
    if max_steps is not None:
        check_int(max_steps, "max_steps (--max-steps)")


def evaluate(
    policy: Policy,
    game: str = "crafter",
    episodes: int = 10,
    seed: int = 0,
    max_steps: int | None = None,
    verbose: bool = False,
) -> dict[str, Any]:
    """Play `episodes` episodes of the real `game` with `policy`; returns a JSON-ready report.

    Args:
        policy: a behaviour policy (`envs.policies.make_policy`, or a loaded agent).
        game: a name for `envs.games.make_game`.
        episodes: episodes to play.
        seed: episode k uses the world of `episode_seed(seed, k)`.
        max_steps: cut episodes at this many steps (default: the game's own limit).
        verbose: print a line per episode.

    Returns:
        policy, game, episodes, returns and lengths (per episode and mean/std), steps/s, and for
        games that report achievements (Crafter): crafter_score and success_rates (percent).

    Raises:
        worldsim.validation.ArgumentValueError: episodes or max_steps below 1.
    """
    from envs.games import make_game

    _check_counts(episodes, max_steps)

    env = make_game(game, **({"max_episode_steps": max_steps} if max_steps else {}))
    returns, lengths, achievements, steps, start = [], [], [], 0, time.perf_counter()
    try:
        for k in range(episodes):
            s = episode_seed(seed, k)
            policy.reset(s)
            obs, info = env.reset(seed=s)
            total, length, done = 0.0, 0, False
            while not done:
                obs, reward, terminated, truncated, info = env.step(policy(obs))
                total, length = total + float(reward), length + 1
                done = terminated or truncated
            returns.append(total)
            lengths.append(length)
            steps += length
            if "achievements" in info:
                achievements.append(dict(info["achievements"]))
            if verbose:
                print(
                    f"{policy.name} episode {k + 1}/{episodes}: return {total:.2f}, {length} steps"
                )
    finally:
        env.close()
    report: dict[str, Any] = {
        "policy": policy.name,
        "game": game,
        "episodes": episodes,
        "seed": seed,
        "max_steps": max_steps,
        "return_mean": float(np.mean(returns)) if returns else None,
        "return_std": float(np.std(returns)) if returns else None,
        "return_ci95": mean_ci95(returns) if returns else None,
        "length_mean": float(np.mean(lengths)) if lengths else None,
        "returns": returns,
        "lengths": lengths,
        "steps_per_second": steps / max(time.perf_counter() - start, 1e-9),
    }
    if achievements:
        rates = success_rates(achievements)
        report["crafter_score"] = crafter_score(rates)
        report["crafter_score_ci95"] = crafter_score_ci95(achievements, seed=seed)
        report["success_rates"] = rates
        report["achievements"] = achievements
    return report


def evaluate_agent(
    agent: str,
    game: str = "crafter",
    episodes: int = 10,
    seed: int = 0,
    max_steps: int | None = None,
    baseline: bool = True,
    deterministic: bool = False,
    verbose: bool = False,
) -> dict[str, dict[str, Any]]:
    """Evaluate an agent folder (or "random") and, if `baseline`, a random policy on the same worlds.

    Returns:
        {"agent": report, "random": report} (one key if the agent is "random" or no baseline).
    """
    from envs.games import make_game

    _check_counts(episodes, max_steps)  # before loading the agent

    env = make_game(game)
    action_space = env.action_space
    env.close()
    if agent in ("random", "sticky"):
        policy = make_policy(agent, action_space)
    else:
        from worldsim.agents import load_agent_policy

        policy = load_agent_policy(agent, action_space, deterministic=deterministic)
    args = dict(game=game, episodes=episodes, seed=seed, max_steps=max_steps, verbose=verbose)
    reports = {"agent" if agent != "random" else "random": evaluate(policy, **args)}
    if baseline and agent != "random":
        reports["random"] = evaluate(make_policy("random", action_space), **args)
    return reports


def format_reports(reports: Mapping[str, Mapping[str, Any]]) -> str:
    """A text table of reports (one row each); Crafter adds the score and the anchors."""
    lines = [
        f"{'':10} {'policy':28} {'episodes':>8} {'return (95% CI)':>20} {'length':>8} "
        f"{'score % (95% CI)':>22}"
    ]
    crafter = False
    for key, r in reports.items():
        score = r.get("crafter_score")
        crafter |= score is not None
        ci = r.get("return_ci95")
        ret = "-" if r["return_mean"] is None else f"{r['return_mean']:.2f}"
        if ci is not None and r["return_mean"] is not None:
            ret += f" [{ci[0]:.2f}, {ci[1]:.2f}]"
        length = f"{r['length_mean']:.0f}" if r["length_mean"] is not None else "-"
        sc = "-" if score is None else f"{score:.2f}"
        if score is not None and r.get("crafter_score_ci95"):
            lo, hi = r["crafter_score_ci95"]
            sc += f" [{lo:.2f}, {hi:.2f}]"
        lines.append(
            f"{key:10} {r['policy'][:28]:28} {r['episodes']:>8} {ret:>20} {length:>8} {sc:>22}"
        )
    if crafter:
        for key, r in reports.items():
            rates = r.get("success_rates") or {}
            top = sorted(((v, k) for k, v in rates.items() if v > 0), reverse=True)
            lines.append(
                f"{key}: " + (", ".join(f"{k} {v:.0f}%" for v, k in top) or "nothing unlocked")
            )
        anchors = ", ".join(f"{k} {v}" for k, v in PUBLISHED_CRAFTER_SCORES.items())
        lines.append(f"published Crafter scores (%): {anchors}")
    return "\n".join(lines)
