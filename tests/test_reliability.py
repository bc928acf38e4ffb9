"""Nothing a user does corrupts a store or a release: concurrent writers, lost chunks, kill -9."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from worldsim.cli import main
from worldsim.data import EpisodeStore
from worldsim.data.lock import LOCK_NAME, writer_lock
from worldsim.errors import CheckpointError, StoreError

SPACE = gym.spaces.Discrete(3)
OBS = gym.spaces.Box(0, 255, (8, 8, 3), np.uint8)


def small_store(path: Path, episodes: int = 3, T: int = 40) -> EpisodeStore:
    store = EpisodeStore.create(path, game="x", action_space=SPACE, observation_space=OBS, fps=10)
    rng = np.random.default_rng(0)
    for _ in range(episodes):
        frames = rng.integers(0, 256, (T + 1, 8, 8, 3), dtype=np.uint8)
        store.append(
            frames, rng.integers(0, 3, T), np.zeros(T), np.zeros(T, bool), np.zeros(T, bool)
        )
    return store


def collect_cmd(out: Path, seed: int, episodes: int) -> list[str]:
    return [sys.executable, "-m", "worldsim", "collect", "--game", "crafter", "--episodes",
            str(episodes), "--out", str(out), "--max-steps", "30", "--seed", str(seed), "--quiet"]  # fmt: skip


def test_two_collects_into_one_store_never_corrupt_it(tmp_path) -> None:
    pytest.importorskip("crafter")
    out = tmp_path / "s"
    first = subprocess.Popen(
        collect_cmd(out, 2, 150), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    lock = out / LOCK_NAME
    deadline = time.time() + 300  # a fresh virtual environment compiles Crafter first
    while time.time() < deadline and not (lock.is_file() and lock.read_text()):
        time.sleep(0.1)
    assert lock.read_text(), "the first collector never took the lock"
    second = subprocess.run(collect_cmd(out, 3, 5), capture_output=True, text=True, timeout=120)
    assert first.wait(timeout=300) == 0, first.stdout.read().decode()
    assert second.returncode == 2, second.stderr
    assert "another process is writing" in second.stderr and "worldsim collect" in second.stderr
    assert "Traceback" not in second.stderr
    store = EpisodeStore.open(str(out))
    assert len(store) == 150 and not store.incomplete
    for i in range(len(store)):
        assert store.episode(i).frames.shape == (31, 64, 64, 3)
    # With the first one finished, the second one may go ahead and adds its episodes.
    assert subprocess.run(collect_cmd(out, 3, 5), capture_output=True, timeout=120).returncode == 0
    assert len(EpisodeStore.open(str(out))) == 155


def test_the_writer_lock_is_released_by_a_crash(tmp_path) -> None:
    code = (
        "import time\nfrom worldsim.data.lock import writer_lock\n"
        f"with writer_lock({str(tmp_path)!r}):\n    time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code])
    lock, deadline = tmp_path / LOCK_NAME, time.time() + 30
    while time.time() < deadline and not (lock.is_file() and lock.read_bytes()):
        time.sleep(0.05)
    with pytest.raises(StoreError, match="another process is writing"), writer_lock(str(tmp_path)):
        pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with writer_lock(str(tmp_path)):  # the OS dropped the dead process's lock
        pass


def test_lost_and_damaged_chunks_are_named_and_repaired(tmp_path, capsys) -> None:
    store = small_store(tmp_path / "s")
    root = tmp_path / "s" / "episodes"
    os.remove(root / "000001" / "frames" / "c" / "1" / "0" / "0" / "0")  # a lost chunk
    (root / "000002" / "frames" / "c" / "0" / "0" / "0" / "0").write_bytes(b"garbage")
    store = EpisodeStore.open(str(tmp_path / "s"))
    assert store.clip(0, 0, 40).frames.shape == (40, 8, 8, 3)
    with pytest.raises(
        StoreError, match=r"episode 000001 .*chunk 1 is missing.*worldsim data check"
    ):
        store.clip(1, 20, 10)
    with pytest.raises(StoreError, match=r"episode 000002 .*damaged"):
        store.episode(2)
    shutil.rmtree(root / "000000" / "actions")  # marked complete, but an array is gone
    assert main(["data", "check", str(tmp_path / "s")]) == 1
    out = capsys.readouterr().out
    assert all(f"episode {k}" in out for k in ("000000", "000001", "000002"))
    assert main(["data", "check", str(tmp_path / "s"), "--repair", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["quarantined"] == ["000000", "000001", "000002"]
    assert (tmp_path / "s" / "quarantine" / "000001").is_dir()
    assert len(EpisodeStore.open(str(tmp_path / "s"))) == 0
    assert main(["data", "check", str(tmp_path / "s")]) == 0


def test_an_unknown_policy_leaves_nothing_behind(tmp_path, capsys) -> None:
    pytest.importorskip("crafter")
    out = tmp_path / "never"
    assert main(["collect", "--game", "crafter", "--episodes", "1", "--out", str(out),
                 "--policy", "greedy"]) == 2  # fmt: skip
    assert "unknown policy" in capsys.readouterr().err and not out.exists()


def _tiny_net(seed: int):
    from worldsim.model import WorldModelNet, preset

    torch.manual_seed(seed)
    return WorldModelNet(preset("tiny", height=8, width=8, patch_size=4), SPACE)


def test_kill_during_re_export_leaves_a_whole_release(tmp_path) -> None:
    from worldsim.checkpoint import load_release, save_release

    release = tmp_path / "rel"
    save_release(release, _tiny_net(0), observation_space=OBS, action_space=SPACE)
    first = load_release(release)[0].state_dict()
    script = (
        "import gymnasium as gym, numpy as np, torch\n"
        "from worldsim.checkpoint import save_release\n"
        "from worldsim.model import WorldModelNet, preset\n"
        "torch.manual_seed(1)\n"
        "net = WorldModelNet(preset('tiny', height=8, width=8, patch_size=4), gym.spaces.Discrete(3))\n"
        "obs = gym.spaces.Box(0, 255, (8, 8, 3), np.uint8)\n"
        "print('ready', flush=True)\n"
        f"while True: save_release({str(release)!r}, net, observation_space=obs, action_space=net.action_space)\n"
    )
    outcomes = set()
    for delay in (0.0, 0.05, 0.1, 0.2, 0.3, 0.5):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        try:
            state = load_release(release)[0].state_dict()
        except CheckpointError as e:  # killed between the two renames: says where the old one is
            assert ".old-" in str(e)
            old = sorted(tmp_path.glob(".rel.old-*"))[-1]
            os.replace(old, release)
            state = load_release(release)[0].state_dict()
        same = all(torch.equal(state[k], first[k]) for k in first)
        outcomes.add("old" if same else "new")
    assert outcomes <= {"old", "new"}  # a whole release every time, never a mix


def test_a_release_mixing_two_exports_is_refused(tmp_path) -> None:
    from worldsim.checkpoint import load_release, save_release

    save_release(tmp_path / "a", _tiny_net(0), observation_space=OBS, action_space=SPACE)
    save_release(tmp_path / "b", _tiny_net(1), observation_space=OBS, action_space=SPACE)
    shutil.copy(tmp_path / "b" / "model.safetensors", tmp_path / "a" / "model.safetensors")
    with pytest.raises(CheckpointError, match="mixing two exports"):
        load_release(tmp_path / "a")
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="is a file"):
        save_release(tmp_path / "file", _tiny_net(0), observation_space=OBS, action_space=SPACE)
