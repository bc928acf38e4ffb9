"""`worldsim data check STORE [--repair]`: find incomplete, missing or damaged episodes.

Every episode is read whole (its small arrays, its labels and every frame chunk), and its
array lengths are checked against each other. With `repair`, each bad episode's folder is
moved to `STORE/quarantine/KEY`, where nothing reads it and from where it can be moved back
by hand; the rest of the store is not touched. Repair takes the store's writer lock, so it
never sets aside the episode a running collector is writing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from worldsim.data.lock import writer_lock
from worldsim.data.store import EpisodeStore
from worldsim.errors import DamagedEpisodeError

__all__ = ["CheckReport", "check_store"]


@dataclass
class CheckReport:
    path: str
    episodes: int  # complete episodes found
    problems: dict[str, str] = field(default_factory=dict)  # episode key -> what is wrong
    quarantined: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "episodes": self.episodes,
            "ok": self.ok,
            "problems": self.problems,
            "quarantined": self.quarantined,
        }


def _episode_problem(store: EpisodeStore, i: int) -> str | None:
    try:
        ep = store.episode(i)
    except DamagedEpisodeError as e:
        return e.reason
    T = int(store.lengths[i])
    lengths = {"frames": len(ep.frames) - 1, "rewards": len(ep.rewards)}
    lengths["terminated"], lengths["truncated"] = len(ep.terminated), len(ep.truncated)
    if isinstance(ep.actions, dict):
        lengths.update({f"actions[{k}]": len(v) for k, v in ep.actions.items()})
    else:
        lengths["actions"] = len(ep.actions)
    lengths.update({f"labels[{k}]": len(v) - 1 for k, v in ep.labels.items()})
    wrong = {k: n for k, n in lengths.items() if n != T}
    if wrong:
        return f"length {T} recorded, but " + ", ".join(f"{k} has {n}" for k, n in wrong.items())
    return None


def check_store(path: str, repair: bool = False) -> CheckReport:
    """Check every episode of the store at `path`; with `repair`, quarantine the bad ones."""
    store = EpisodeStore.open(path, mode="a" if repair else "r")
    report = CheckReport(path=str(path), episodes=len(store))
    for key in store.incomplete:
        report.problems[key] = "incomplete: its writing never finished (a crash or Ctrl-C)"
    for i, key in enumerate(store.keys):
        problem = _episode_problem(store, i)
        if problem:
            report.problems[key] = problem
    if repair and report.problems:
        with writer_lock(path, "worldsim data check --repair"):
            fs, root = store._reader.fs, store._reader.root
            for key in sorted(report.problems):
                fs.mv(f"{root}/episodes/{key}", f"{root}/quarantine/{key}", recursive=True)
                report.quarantined.append(key)
        store.refresh()
    return report
