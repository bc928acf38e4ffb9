"""`worldsim collect` and `worldsim data info`: parallel, resumable, reproducible, Ctrl-C safe."""

from __future__ import annotations

import dataclasses
import itertools
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from envs.collect import CollectConfig, collect, episode_seed
from envs.policies import StickyPolicy, make_policy
from worldsim.cli import main as worldsim_main
from worldsim.data import EpisodeStore
from worldsim.errors import StoreError, WorldsimError


def test_collect_is_resumable_and_reproducible(tmp_path):
    out = str(tmp_path / "crafter")
    cfg = CollectConfig(
        game="crafter", episodes=3, out=out, policy="sticky", workers=2, seed=7, max_steps=30
    )
    summary = collect(cfg, progress=False)
    assert summary["episodes_added"] == 3 and summary["frames_added"] == 3 * 31
    store = EpisodeStore.open(out)
    assert len(store) == 3 and store.game == "crafter" and store.frame_shape == (64, 64, 3)
    assert sorted(store.info(i)["k"] for i in range(3)) == [0, 1, 2]
    assert store.metadata["action_names"][:2] == ["noop", "move_left"]
    # the same command again plays nothing; a larger --episodes adds only the missing ones
    assert collect(cfg, progress=False)["episodes_added"] == 0
    cfg.episodes = 4
    assert collect(cfg, progress=False)["episodes_added"] == 1
    # same seed, another store: the same starting frames and the same actions, episode by episode
    cfg2 = CollectConfig(
        game="crafter", episodes=2, out=str(tmp_path / "again"), workers=1, seed=7, max_steps=30
    )
    collect(cfg2, progress=False)
    again = EpisodeStore.open(cfg2.out)
    by_k = {store.info(i)["k"]: i for i in range(len(store))}
    for j in range(2):
        k = again.info(j)["k"]
        assert again.info(j)["seed"] == episode_seed(7, k)
        np.testing.assert_array_equal(again.episode(j).frames[0], store.episode(by_k[k]).frames[0])
        np.testing.assert_array_equal(again.episode(j).actions, store.episode(by_k[k]).actions)


def test_collect_refuses_a_store_of_another_game(tmp_path):
    out = str(tmp_path / "s")
    collect(CollectConfig(game="crafter", episodes=1, out=out, max_steps=5), progress=False)
    with pytest.raises(StoreError, match="holds 'crafter' episodes, not 'breakout'"):
        collect(CollectConfig(game="breakout", episodes=1, out=out, max_steps=5), progress=False)
    assert len(EpisodeStore.open(out)) == 1


def test_sticky_policy_holds_actions():
    import gymnasium as gym

    policy = StickyPolicy(gym.spaces.Discrete(17), mean_hold=5)
    policy.reset(3)
    actions = [policy(None) for _ in range(400)]
    changes = sum(a != b for a, b in itertools.pairwise(actions))
    assert 40 < changes < 110  # ~400/5 holds, some of which draw the same action again
    policy.reset(3)
    assert [policy(None) for _ in range(400)] == actions
    with pytest.raises(WorldsimError, match="unknown policy"):
        make_policy("greedy", gym.spaces.Discrete(3))


def test_explorer_walks_in_runs_and_interacts():
    import crafter
    import gymnasium as gym

    names = list(crafter.constants.actions)
    policy = make_policy("explorer", gym.spaces.Discrete(17), names)
    policy.reset(4)
    actions = [int(policy(None)) for _ in range(600)]
    runs = [len(list(g)) for a, g in itertools.groupby(actions) if names[a].startswith("move")]
    assert min(runs) >= 2 and np.mean(runs) > 4  # walks 2-10 steps at a time
    assert actions.count(names.index("do")) > 30  # and interacts
    policy.reset(4)
    assert [int(policy(None)) for _ in range(600)] == actions
    with pytest.raises(WorldsimError, match="--policy sticky"):
        make_policy("explorer", gym.spaces.Discrete(3), None)


def _achievements(policy, episodes: int) -> list[dict]:
    """The achievement counts of `episodes` real Crafter episodes (worlds 0, 1, ...) that
    `policy` plays blind."""
    from envs.games import make_game

    env, out = make_game("crafter"), []
    for k in range(episodes):
        env.reset(seed=k)
        policy.reset(k)
        done, info = False, {}
        while not done:
            _, _, terminated, truncated, info = env.step(policy(None))
            done = terminated or truncated
        out.append(info["achievements"])
    env.close()
    return out


def test_builder_crafts_after_it_interacts_and_builds_in_real_crafter():
    import crafter
    import gymnasium as gym

    names = list(crafter.constants.actions)
    policy = make_policy("builder", gym.spaces.Discrete(17), names)
    policy.reset(5)
    actions = [int(policy(None)) for _ in range(800)]
    table = names.index("place_table")
    # a crafting try follows an interaction burst and one move that faces open ground (the
    # explorer's own rare "other" step may also pick place_table, alone)
    at = [
        i for i, a in enumerate(actions)
        if a == table and names[actions[i - 2]] == "do" and names[actions[i - 1]].startswith("move")
    ]  # fmt: skip
    assert len(at) > 10
    assert all(actions[i + 1] == names.index("make_wood_pickaxe") for i in at if i + 1 < 800)
    policy.reset(5)
    assert [int(policy(None)) for _ in range(800)] == actions
    # played blind in the real game, it builds: a table stands in some of 12 episodes
    assert sum(a["place_table"] > 0 for a in _achievements(policy, 12)) >= 2
    with pytest.raises(WorldsimError, match="--policy explorer"):
        make_policy("builder", gym.spaces.Discrete(3), ["noop", "move_left", "do"])


def test_sleeper_sleeps_once_its_energy_can_be_low_and_wakes_in_real_crafter():
    import crafter
    import gymnasium as gym

    names = list(crafter.constants.actions)
    sleep = names.index("sleep")
    policy = make_policy("sleeper", gym.spaces.Discrete(17), names)
    policy.reset(6)
    actions = [int(policy(None)) for _ in range(400)]
    presses = [i for i, a in enumerate(actions) if a == sleep]
    assert len(presses) > 4 and min(presses) >= 25  # not before Crafter's energy can fall
    policy.reset(6)
    assert [int(policy(None)) for _ in range(400)] == actions
    # played blind in the real game, it falls asleep and wakes up (a builder hardly does)
    woke = {spec: sum(a["wake_up"] > 0 for a in _achievements(
        make_policy(spec, gym.spaces.Discrete(17), names), 12)) for spec in ("sleeper", "builder")}  # fmt: skip
    assert woke["sleeper"] >= 4 and woke["sleeper"] >= 2 * woke["builder"], woke
    with pytest.raises(WorldsimError, match="--policy builder"):
        make_policy("sleeper", gym.spaces.Discrete(4), ["noop", "move_left", "do", "place_table"])


def test_achiever_reads_the_screen_and_climbs_the_tech_tree_in_real_crafter(tmp_path):
    import crafter
    import gymnasium as gym

    from envs.collect import play_episode, policy_for
    from envs.games import make_game

    env = make_game("crafter", max_episode_steps=250)
    unlocked = {}
    for spec in ("achiever", "builder"):
        policy = policy_for(spec, env)
        got = [play_episode(env, policy, 100 + k)["final_info"]["achievements"] for k in range(4)]
        unlocked[spec] = {n: sum(a[n] > 0 for a in got) for n in got[0]}
    env.close()
    ach, blind = unlocked["achiever"], unlocked["builder"]
    # what blind play seldom reaches: a pickaxe, then stone mined and placed, in most episodes
    assert min(ach[n] for n in ("make_wood_pickaxe", "collect_stone", "place_stone")) >= 2, ach
    assert sum(ach.values()) >= 2 * sum(blind.values()), unlocked
    # reproducible from the seed, as every collection policy
    cfg = CollectConfig(game="crafter", episodes=2, out=str(tmp_path / "a"), policy="achiever",
                        workers=1, seed=3, max_steps=60)  # fmt: skip
    collect(cfg, progress=False)
    collect(dataclasses.replace(cfg, out=str(tmp_path / "b")), progress=False)
    a, b = EpisodeStore.open(cfg.out), EpisodeStore.open(str(tmp_path / "b"))
    assert (np.asarray(a.episode(1).actions) == np.asarray(b.episode(1).actions)).all()
    with pytest.raises(WorldsimError, match="--policy builder"):
        make_policy("achiever", gym.spaces.Discrete(17), list(crafter.constants.actions))


def test_relabel_reads_the_falls_asleep_of_an_older_store_off_its_frames(tmp_path, capsys):
    # A store as recorded before falling asleep was counted: 22 event counters.
    cfg = CollectConfig(game="crafter", episodes=3, out=str(tmp_path / "new"), policy="sleeper",
                        workers=1, seed=0, max_steps=150)  # fmt: skip
    collect(cfg, progress=False)
    new = EpisodeStore.open(cfg.out)
    spec = new.label_spec
    old_spec = {**spec, "events": {k: v for k, v in spec["events"].items() if k != "unpaid"}}
    old_spec["events"]["names"] = spec["events"]["names"][:-1]
    old = EpisodeStore.create(str(tmp_path / "old"), game="crafter", action_space=new.action_space,
                              observation_space=new.observation_space, fps=new.fps,
                              metadata=new.metadata, label_spec=old_spec)  # fmt: skip
    for i in range(len(new)):
        ep = new.episode(i)
        labels = {**ep.labels, "events": ep.labels["events"][:, :-1]}
        old.append(ep.frames, ep.actions, ep.rewards, ep.terminated, ep.truncated, info=ep.info,
                   labels=labels)  # fmt: skip
    assert worldsim_main(["data", "relabel", str(tmp_path / "old"), "--out",
                          str(tmp_path / "relabelled")]) == 0  # fmt: skip
    assert "3 episodes" in capsys.readouterr().out
    back = EpisodeStore.open(str(tmp_path / "relabelled"))
    assert back.label_spec["events"] == spec["events"]
    falls = 0
    for i in range(len(new)):  # the counts read off the frames are the game's own
        got, want = back.episode(i), new.episode(i)
        np.testing.assert_array_equal(got.labels["events"], want.labels["events"])
        np.testing.assert_array_equal(got.frames, want.frames)
        assert got.info["k"] == want.info["k"]
        falls += int(want.labels["events"][-1, -1])
    assert falls >= 1
    # the copy never writes into an existing store
    assert worldsim_main(["data", "relabel", str(tmp_path / "old"), "--out", cfg.out]) != 0
    assert "exists" in capsys.readouterr().err
    assert len(EpisodeStore.open(cfg.out)) == 3


def test_ctrl_c_keeps_finished_episodes(tmp_path):
    out = tmp_path / "s"
    cmd = [
        sys.executable,
        "-m",
        "worldsim",
        "collect",
        "--game",
        "crafter",
        "--episodes",
        "100000",  # far more than it can play before the signal: the run must not finish first
        "--out",
        str(out),
        "--max-steps",
        "40",
        "--quiet",
    ]
    import minari.serialization  # noqa: F401  (the poll below opens stores: import it first)

    # A test run started in the background of a non-interactive shell ignores SIGINT, and
    # children inherit that: give the collector Ctrl-C back.
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    # Generous: on a fresh virtual environment the first run compiles Crafter's world
    # generation (numba) and every module's bytecode, on both cores at once.
    deadline, started = time.time() + 300, False
    while time.time() < deadline and not started:
        time.sleep(0.5)
        started = EpisodeStore.exists(str(out)) and len(EpisodeStore.open(str(out))) >= 2
    assert started, "the collector did not record 2 episodes within 300 s"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130, proc.stdout.read().decode()
    store = EpisodeStore.open(str(out))
    assert 2 <= len(store) < 100000
    for i in range(len(store)):
        assert store.episode(i).frames.shape == (41, 64, 64, 3)


def test_data_info_cli(tmp_path, capsys):
    out = str(tmp_path / "s")
    collect(CollectConfig(game="crafter", episodes=2, out=out, max_steps=20), progress=False)
    assert worldsim_main(["data", "info", out, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["episodes"] == 2 and info["frames"] == 42 and info["transitions"] == 40
    assert sum(info["action_histogram"].values()) == 40
    assert 0 < info["bytes_per_frame"] < info["raw_bytes_per_frame"]
    assert worldsim_main(["data", "info", out]) == 0
    assert "bytes/frame" in capsys.readouterr().out
    assert worldsim_main(["data", "info", str(tmp_path / "missing")]) == 2
    assert "no episode store at" in capsys.readouterr().err


def test_first_person_explorer_presses_every_walking_key_and_comes_back():
    from envs.minecraft_minerl import minerl_action_space

    policy = make_policy("explorer", minerl_action_space())
    policy.reset(0)
    plans = [policy._segment() for _ in range(200)]
    walking = ("forward", "back", "left", "right")

    def key(action):  # the walking key an action holds, or None
        return next((k for k in walking if int(action[k])), None)

    held = {k: sum(int(a[k]) for p in plans for a in p) for k in (*walking, "sneak")}
    assert all(held.values()), held

    def comes_back(plan):  # one walking key held out, its opposite held as long back
        out, back = plan[: len(plan) // 2], plan[len(plan) // 2 :]
        keys = {key(a) for a in out}
        return (
            len(plan) % 2 == 0
            and len(keys) == 1
            and None not in keys
            and [policy.OPPOSITE[key(a)] for a in out] == [key(a) for a in back]
        )

    assert sum(map(comes_back, plans)) >= 10  # walks out and back the same way
    turns = [sum(float(a["camera"][1]) for a in p) for p in plans if any(a["camera"][1] for a in p)]
    assert sum(abs(t) < 1e-3 for t in turns) >= 5  # turns that turn back
