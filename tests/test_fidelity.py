"""The fidelity benchmark: metrics on cases with known answers, the IDM, the protocol, the command."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from worldsim.bench.fidelity import evaluate_rollouts
from worldsim.bench.idm import InverseDynamics, load_idm, save_idm
from worldsim.bench.idm_training import fit_idm
from worldsim.bench.loops import find_loops, loop_actions, loop_consistency
from worldsim.bench.metrics import (
    PSNR_CAP_DB,
)
from worldsim.bench.perceptual import load_i3d

SIZE = 16
SPACE = gym.spaces.Discrete(5)
MOVES = np.array([[0, 0], [0, -1], [0, 1], [-1, 0], [1, 0]])  # noop, left, right, up, down


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add contention on the 2-core machine
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------ a toy game: the action is visible
def draw(pos: np.ndarray) -> np.ndarray:
    frame = np.zeros((SIZE, SIZE, 3), np.uint8)
    frame[pos[0] : pos[0] + 2, pos[1] : pos[1] + 2] = 255
    return frame


def move(pos: np.ndarray, action: int) -> np.ndarray:
    return np.clip(pos + MOVES[action], 0, SIZE - 2)


def dot_episode(rng: np.random.Generator, T: int = 30, actions: np.ndarray | None = None):
    """A 2x2 dot moved by the action; reward 1 for moving up. frames [T+1], actions, rewards."""
    pos = rng.integers(3, SIZE - 4, size=2)
    actions = rng.integers(0, 5, size=T) if actions is None else np.asarray(actions)
    frames = [draw(pos)]
    for a in actions:
        pos = move(pos, a)
        frames.append(draw(pos))
    return np.stack(frames), actions, (actions == 3).astype(np.float32)


class DotOracle:
    """A perfect world model of the dot game (knows the rules): the protocol's upper bound."""

    action_space = SPACE

    def generate(
        self,
        context_frames,
        context_actions,
        future_actions,
        *,
        steps=None,
        guidance=None,
        generator=None,
        chunk=1,
    ):
        future_actions = np.asarray(future_actions)
        B, N = future_actions.shape
        frames = np.zeros((B, N, SIZE, SIZE, 3), np.uint8)
        for b in range(B):
            pos = np.argwhere(context_frames[b, -1, :, :, 0] == 255).min(axis=0)
            for n in range(N):
                pos = move(pos, future_actions[b, n])
                frames[b, n] = draw(pos)
        return {
            "frames": frames,
            "rewards": (future_actions == 3).astype(np.float32),
            "terminated": np.zeros((B, N), bool),
        }


@pytest.fixture(scope="module")
def dot_idm() -> InverseDynamics:
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    episodes = [dot_episode(rng)[:2] for _ in range(100)]
    return fit_idm(episodes, SPACE, steps=200, batch_size=32, width=8)


class _FakeI3D(torch.nn.Module):
    def forward(
        self, x: torch.Tensor, rescale: bool, resize: bool, return_features: bool
    ) -> torch.Tensor:
        pooled = torch.nn.functional.adaptive_avg_pool3d(
            x, (4, 2, 2)
        )  # [B, 3, 4, 2, 2]: sees motion
        return pooled.flatten(1)  # [B, 48]


# ------------------------------------------------------------------ the protocol, on plain arrays
def _dot_clips(n: int, T: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    eps = [dot_episode(rng, T - 1) for _ in range(n)]
    return (
        np.stack([e[0] for e in eps]),
        np.stack([e[1] for e in eps]),
        np.stack([e[2] for e in eps]),
    )


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_perfect_model_gets_the_known_scores(dot_idm, tmp_path) -> None:
    frames, actions, rewards = _dot_clips(6, 16)
    torch.jit.script(_FakeI3D()).save(str(tmp_path / "i3d.pt"))
    result = evaluate_rollouts(
        DotOracle(),
        frames,
        actions,
        rewards=rewards,
        terminated=np.zeros_like(rewards, bool),
        context=6,
        horizon=10,
        samples=2,
        batch_size=4,
        idm=dot_idm,
        fvd=load_i3d(tmp_path / "i3d.pt"),
        gallery=2,
    )
    psnr_model = result.summary["psnr"]["model"]
    assert psnr_model["all"]["mean"] == PSNR_CAP_DB and psnr_model["moving"]["1"] == PSNR_CAP_DB
    assert result.summary["ssim"]["model"]["all"]["mean"] == pytest.approx(1.0)
    assert result.summary["psnr"]["copy_last"]["moving"]["mean"] < 30  # copying misses every move
    assert result.summary["psnr"]["teacher_forced"]["all"]["mean"] == PSNR_CAP_DB
    assert result.verdict["beats_copy_last"]["psnr"]["moving"]["1"] is True
    assert not any("NOT" in line for line in result.verdict["text"])
    assert (
        result.controllability["delta_psnr"]["at"]["4"] > 5
    )  # random actions put the dot elsewhere
    idm = result.controllability["idm"]
    assert idm["generated"]["accuracy"] == pytest.approx(idm["real"]["accuracy"])  # same frames
    assert idm["real"]["accuracy"] > 0.85
    assert result.events["open_loop"]["reward_positive"]["f1"] == 1.0
    assert result.fvd["model"] == pytest.approx(0.0, abs=1e-6) and result.fvd["copy_last"] > 0
    assert len(result.gallery) == 2 and result.gallery[0]["generated"].shape == (16, SIZE, SIZE, 3)
    json.dumps(result.to_dict())  # all plain JSON


def test_tiny_world_model_runs_the_protocol() -> None:
    from worldsim.model import WorldModelNet, preset
    from worldsim.world_model import WorldModel

    torch.manual_seed(0)
    obs = gym.spaces.Box(0, 255, (SIZE, SIZE, 3), np.uint8)
    wm = WorldModel.from_net(
        WorldModelNet(preset("tiny", height=SIZE, width=SIZE), SPACE), obs, SPACE
    )
    frames, actions, _ = _dot_clips(3, 9)
    kwargs = {"context": 3, "horizon": 6, "samples": 1, "batch_size": 2, "seed": 3}
    a = evaluate_rollouts(wm, frames, actions, **kwargs)
    b = evaluate_rollouts(wm, frames, actions, **kwargs)
    assert (
        a.curves["psnr"]["model"]["all"]["mean"] == b.curves["psnr"]["model"]["all"]["mean"]
    )  # seeded
    assert len(a.curves["ssim"]["teacher_forced"]["all"]["mean"]) == 6
    assert a.speed["open_loop_frames_per_s"] > 0


# ------------------------------------------------------------------ the inverse-dynamics model
def test_idm_learns_the_dot_game(dot_idm, tmp_path) -> None:
    frames, actions, _ = _dot_clips(8, 21, seed=5)  # unseen episodes
    f0, f1 = frames[:, :-1].reshape(-1, SIZE, SIZE, 3), frames[:, 1:].reshape(-1, SIZE, SIZE, 3)
    scores = dot_idm.evaluate(f0, f1, actions.reshape(-1))
    assert scores["accuracy"] > 0.85 and scores["f1"] > 0.8
    save_idm(dot_idm, tmp_path / "idm.safetensors", metrics={"accuracy": scores["accuracy"]})
    loaded, metrics = load_idm(tmp_path / "idm.safetensors")
    assert metrics["accuracy"] == scores["accuracy"]
    np.testing.assert_array_equal(loaded.predict_targets(f0, f1), dot_idm.predict_targets(f0, f1))


# ------------------------------------------------------------------ loops
def test_loops_found_in_recordings_and_scored() -> None:
    pattern = loop_actions("crafter", None, 2)["left-right"]  # move_left x2, move_right x2
    rng = np.random.default_rng(2)
    frames, actions, _ = dot_episode(rng, actions=[2, 4, 0, *pattern, 0])
    cases = find_loops([(frames, actions, "toy")], pattern, context=3, limit=5)
    assert len(cases) == 1 and cases[0].frames.shape == (3 + 4, SIZE, SIZE, 3)
    scores = loop_consistency(DotOracle(), {"left-right": cases}, context=3)["left-right"]
    assert (
        scores["model"]["psnr"] == scores["real"]["psnr"] == PSNR_CAP_DB
    )  # both come back exactly
    assert scores["model_vs_real_at_return"]["psnr"] == PSNR_CAP_DB


def test_loops_played_in_real_crafter() -> None:
    pytest.importorskip("crafter")
    from envs.loops import play_loops

    pattern = loop_actions("crafter", None, 2)["up-down"]
    cases = play_loops("crafter", pattern, context=2, count=1, frame_shape=(64, 64, 3), seed=0)
    assert len(cases) == 1 and cases[0].returned is True
    assert (
        cases[0].frames.shape == (2 + 4, 64, 64, 3)
        and cases[0].actions.tolist()[-4:] == pattern.tolist()
    )


# ------------------------------------------------------------------ the command, end to end
def test_bench_commands_end_to_end(tmp_path, capsys) -> None:
    from worldsim.checkpoint import save_release
    from worldsim.cli import main
    from worldsim.data import EpisodeStore
    from worldsim.model import WorldModelNet, preset

    obs = gym.spaces.Box(0, 255, (SIZE, SIZE, 3), np.uint8)
    store = EpisodeStore.create(
        tmp_path / "store", game="dot", action_space=SPACE, observation_space=obs, fps=10
    )
    rng = np.random.default_rng(0)
    for _ in range(8):
        frames, actions, rewards = dot_episode(rng, T=20)
        store.append(frames, actions, rewards, np.zeros(20, bool), np.zeros(20, bool))
    torch.manual_seed(0)
    save_release(
        tmp_path / "ck",
        WorldModelNet(preset("tiny", height=SIZE, width=SIZE), SPACE),
        observation_space=obs,
        action_space=SPACE,
    )
    idm = tmp_path / "idm.safetensors"
    assert (
        main(
            [
                "bench",
                "train-idm",
                "--data",
                str(tmp_path / "store"),
                "--out",
                str(idm),
                "--steps",
                "20",
                "--batch-size",
                "16",
                "--width",
                "8",
            ]
        )
        == 0
    )
    out = tmp_path / "bench"
    args = [
        "bench",
        "fidelity",
        "--checkpoint",
        str(tmp_path / "ck"),
        "--data",
        str(tmp_path / "store"),
        "--split",
        "train",
        "--episodes",
        "3",
        "--context",
        "3",
        "--horizon",
        "5",
        "--samples",
        "1",
        "--idm",
        str(idm),
        "--gallery",
        "2",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    for key in (
        "command",
        "provenance",
        "settings",
        "curves",
        "summary",
        "verdict",
        "controllability",
        "events",
        "speed",
        "skipped",
        "files",
    ):
        assert key in report
    assert report["command"].startswith("worldsim bench fidelity --checkpoint")
    assert set(report["provenance"]["checkpoint"]["files"]) >= {"model.safetensors", "config.json"}
    assert len(report["provenance"]["data"]["metadata_sha256"]) == 64
    assert report["summary"]["psnr"]["copy_last"]["all"]["1"] is not None
    assert {"lpips", "fvd", "loops"} <= set(report["skipped"])
    assert "Verdict" in (out / "report.md").read_text()
    for name in (
        "plot_psnr.png",
        "plot_ssim.png",
        "plot_delta_psnr.png",
        "plot_idm.png",
        "index.html",
    ):
        assert (out / name).stat().st_size > 0
    videos = sorted((out / "gallery").glob("*.mp4"))
    assert len(videos) == 2 and all(v.stat().st_size > 0 for v in videos)
    assert "clip_000.mp4" in (out / "index.html").read_text()
    # A preset whose frame size the data does not have: a clear error, no traceback.
    assert main([*args[:-2], "--out", str(tmp_path / "mw"), "--protocol", "mineworld"]) == 2
    assert "224 384" in capsys.readouterr().err
