"""RL: batched PPO and SB3 PPO in a tiny dream, agent folders, the Crafter score, real-game eval, the loop."""

from __future__ import annotations

import json
import math
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

from training import rl_ppo
from training.rl_common import trainer_main, with_overrides
from training.rl_eval import crafter_score, crafter_score_ci95, evaluate, mean_ci95, success_rates
from worldsim.agents import (
    ActorCritic,
    AgentError,
    AgentPolicy,
    NetworkConfig,
    load_actor_critic,
    load_agent_policy,
    save_agent,
)
from worldsim.cli import main as worldsim_main

ACTIONS = gym.spaces.Discrete(17)
FRAMES = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
TINY_AGENT = NetworkConfig(channels=(8, 16, 16), hidden=64)
# Small batched-PPO runs: 8 dream envs, 16-step rollouts, 12-step episodes, 1 sampler step.
SMALL_PPO = dict(num_envs=8, num_steps=16, channels=(8, 16, 16), hidden=64, device="cpu",
                 sampler_steps=1, max_episode_steps=12)  # fmt: skip


@pytest.fixture(scope="module")
def checkpoint(crafter_release):
    """A tiny, untrained Crafter world model release (spaces and contexts like the real one)."""
    return crafter_release


# ------------------------------------------------------------------------------ batched PPO
def test_batched_ppo_trains_in_the_dream_and_acts_identically_after_load(checkpoint, tmp_path):
    args = rl_ppo.PPOArgs(total_timesteps=384, **SMALL_PPO)
    out = tmp_path / "agent"
    summary = rl_ppo.run(args, out, world="worldsim/WorldModel-v0", checkpoint=checkpoint,
                         verbose=False)  # fmt: skip
    assert summary["global_step"] == 384
    assert summary["episodes"] >= 2 * args.num_envs  # 48 steps per env, episodes of <= 12
    assert all(math.isfinite(r) for r in summary["episodic_returns"])
    assert all(math.isfinite(v) for v in summary["losses"].values()), summary["losses"]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and {"losses/value_loss", "charts/SPS", "charts/env_SPS"} <= set(rows[-1])
    assert (out / "tb").is_dir()

    trained = summary["agent"]
    loaded, config = load_actor_critic(out)
    assert config["algo"] == "ppo" and config["metadata"]["global_step"] == 384
    obs = torch.from_numpy(
        np.random.default_rng(1).integers(0, 256, (6, 64, 64, 3), dtype=np.uint8)
    )
    with torch.no_grad():
        torch.testing.assert_close(loaded(obs), trained(obs), rtol=0, atol=0)

    in_memory = AgentPolicy(lambda o: trained(o)[0])
    policy = load_agent_policy(out, ACTIONS)
    for p in (in_memory, policy):
        p.reset(7)
    frames = obs.numpy()
    assert [policy(f) for f in frames] == [in_memory(f) for f in frames]
    policy.reset(7), in_memory.reset(7)
    assert policy.act(frames).tolist() == in_memory.act(frames).tolist()  # batched, too


class BanditVectorEnv(gym.vector.VectorEnv):
    """B one-frame bandits: action 3 pays 1, the rest 0; 4-step episodes, SAME_STEP autoreset."""

    metadata: ClassVar[dict[str, Any]] = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, num_envs: int) -> None:
        self.num_envs = num_envs
        self.single_observation_space = gym.spaces.Box(0, 255, (36, 36, 3), np.uint8)
        self.single_action_space = gym.spaces.Discrete(5)
        self.observation_space = gym.vector.utils.batch_space(
            self.single_observation_space, num_envs
        )
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self.t = np.zeros(num_envs, np.int64)

    def _obs(self) -> np.ndarray:
        return np.full((self.num_envs, 36, 36, 3), 100, np.uint8)

    def reset(self, *, seed=None, options=None):
        self.t[:] = 0
        return self._obs(), {}

    def step(self, actions):
        self.t += 1
        truncated = self.t >= 4
        infos = {}
        if truncated.any():
            final_obs = np.empty(self.num_envs, dtype=object)  # the frame each episode ended on
            final_obs[:] = list(self._obs())
            infos = {"final_obs": final_obs}
            self.t[truncated] = 0
        rewards = (np.asarray(actions) == 3).astype(np.float64)
        return self._obs(), rewards, np.zeros(self.num_envs, bool), truncated, infos


def test_batched_ppo_learns_the_rewarding_action():
    envs = BanditVectorEnv(16)
    args = rl_ppo.PPOArgs(total_timesteps=2048, num_envs=16, num_steps=16, learning_rate=1e-3,
                          channels=(8, 16, 16), hidden=64, device="cpu", seed=0)  # fmt: skip
    summary = rl_ppo.train(args, envs, verbose=False)
    history = summary["history"]
    assert history[-1]["charts/episodic_return"] > history[0]["charts/episodic_return"] + 1.0
    with torch.no_grad():
        probs = torch.softmax(summary["agent"](torch.from_numpy(envs._obs()[:1]))[0], -1)[0]
    assert probs.argmax() == 3 and probs[3] > 0.6, probs


def test_ppo_refuses_next_step_autoreset(checkpoint):
    from envs.world_model_vector_env import WorldModelVectorEnv

    envs = WorldModelVectorEnv(2, checkpoint, device="cpu")  # NEXT_STEP by default
    with pytest.raises(AgentError, match="SAME_STEP"):
        rl_ppo.train(rl_ppo.PPOArgs(num_envs=2), envs, verbose=False)


def test_hyperparameter_overrides_are_typed_and_checked():
    args = with_overrides(rl_ppo.PPOArgs(), ["learning_rate=1e-3", "channels=[8,16,16]",
                                                    "target_kl=0.02", "anneal_lr=false"])  # fmt: skip
    assert (args.learning_rate, args.channels, args.target_kl, args.anneal_lr) == (
        1e-3,
        (8, 16, 16),
        0.02,
        False,
    )
    assert args.num_envs == rl_ppo.PPOArgs().num_envs  # the rest keep their values
    with pytest.raises(AgentError, match="learning_rate"):
        with_overrides(args, ["learning_rat=1"])
    with pytest.raises(AgentError, match=r"num_envs.*int"):
        with_overrides(args, ["num_envs=many"])


def test_trainer_command_line_reads_options_and_a_yaml_config(tmp_path, capsys):
    """`python -m training.rl_ppo` (jsonargparse): typed options, a --config file, one-line errors."""
    calls = []

    def run(args, out, **kwargs):
        calls.append((args, out, kwargs))
        if args.seed == 13:
            raise AgentError("a bad agent")
        return {"out": out, "global_step": args.total_timesteps}

    config = tmp_path / "ppo.yaml"
    config.write_text("learning_rate: 0.001\nchannels: [8, 16, 16]\nanneal_lr: false\n")
    common = {
        "prog": "python -m training.rl_ppo",
        "description": "",
        "run": run,
        "out": "agents/ppo",
    }
    argv = ["--config", str(config), "--num_envs", "4", "--checkpoint", "rel", "--out", "a"]
    assert trainer_main(argv, args_class=rl_ppo.PPOArgs, **common) == 0
    args, out, kwargs = calls[-1]
    assert (args.learning_rate, args.channels, args.anneal_lr, args.num_envs) == (
        1e-3, (8, 16, 16), False, 4)  # fmt: skip
    assert out == "a" and kwargs["world"] == "worldsim/WorldModel-v0"
    assert kwargs["checkpoint"] == "rel" and kwargs["verbose"] is True
    assert trainer_main(["--seed", "13"], args_class=rl_ppo.PPOArgs, **common) == 2
    assert "python -m training.rl_ppo: error: a bad agent" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a value of the wrong type: jsonargparse's usage error
        trainer_main(["--num_envs", "four"], args_class=rl_ppo.PPOArgs, **common)


# ------------------------------------------------------------------------------ SB3
def test_sb3_ppo_trains_on_the_gymnasium_env_and_loads_as_a_policy(checkpoint, tmp_path):
    from stable_baselines3 import PPO

    out = tmp_path / "sb3"
    argv = ["rl", "train", "--checkpoint", str(checkpoint), "--algo", "sb3-ppo", "--num_envs", "2",
            "--total_timesteps", "256", "--out", str(out), "--device", "cpu", "--sampler_steps",
            "1", "--max_episode_steps", "20", "--n_steps", "64", "--batch_size", "64",
            "--n_epochs", "1", "--features_dim", "64", "--quiet"]  # fmt: skip
    assert worldsim_main(argv) == 0
    assert {"agent.json", "model.safetensors", "sb3_model.zip"} <= {p.name for p in out.iterdir()}
    policy = load_agent_policy(out, ACTIONS, deterministic=True)
    assert policy.config["algo"] == "sb3-ppo" and policy.config["metadata"]["global_step"] == 256
    model = PPO.load(out / "sb3_model.zip", device="cpu")
    frames = np.random.default_rng(2).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    expected = [int(model.predict(f, deterministic=True)[0]) for f in frames]
    assert policy.act(frames).tolist() == expected


def test_agent_folder_errors_are_clear(tmp_path):
    with pytest.raises(AgentError, match="not an agent folder"):
        load_agent_policy(tmp_path, ACTIONS)
    save_agent(tmp_path / "a", ActorCritic(FRAMES, ACTIONS, TINY_AGENT))
    with pytest.raises(AgentError, match="another game"):
        load_agent_policy(tmp_path / "a", gym.spaces.Discrete(6))
    with pytest.raises(AgentError, match="Discrete"):
        ActorCritic(FRAMES, gym.spaces.Box(-1, 1, (2,)))
    assert worldsim_main(["rl", "eval", "--agent", str(tmp_path), "--episodes", "1"]) == 2


# ------------------------------------------------------------------------------ evaluation
def test_crafter_score_formula():
    assert crafter_score([0.0] * 22) == 0.0
    assert crafter_score([100.0] * 22) == pytest.approx(100.0)
    # half never, half always: exp(ln(101) / 2) - 1 = sqrt(101) - 1
    assert crafter_score([0.0] * 11 + [100.0] * 11) == pytest.approx(math.sqrt(101) - 1)
    assert crafter_score({"a": 3.0, "b": 15.0}) == pytest.approx(math.sqrt(4 * 16) - 1)
    with pytest.raises(ValueError):
        crafter_score([120.0])
    rates = success_rates([{"collect_wood": 2, "wake_up": 0}, {"collect_wood": 0}])
    assert len(rates) == 22 and rates["collect_wood"] == 50.0 and rates["wake_up"] == 0.0


def test_confidence_intervals_cover_the_estimate_and_shrink_with_agreement():
    same = [{"collect_wood": 1, "wake_up": 1}] * 20
    lo, hi = crafter_score_ci95(same)
    assert lo == hi == pytest.approx(crafter_score(success_rates(same)))  # no spread: no doubt
    mixed = [{"collect_wood": k % 2, "wake_up": k % 3 == 0} for k in range(40)]
    lo, hi = crafter_score_ci95(mixed, seed=1)
    assert lo < crafter_score(success_rates(mixed)) < hi
    assert crafter_score_ci95(mixed, seed=1) == [lo, hi]  # seeded
    assert mean_ci95([2.0, 2.0, 2.0]) == [2.0, 2.0]
    lo, hi = mean_ci95([0.0, 1.0] * 50)
    assert lo == pytest.approx(0.5 - 1.96 * np.std([0.0, 1.0] * 50, ddof=1) / 10) and hi > 0.5


def test_rl_eval_runs_an_agent_in_the_real_crafter(tmp_path):
    save_agent(tmp_path / "agent", ActorCritic(FRAMES, ACTIONS, TINY_AGENT))
    report_path = tmp_path / "report.json"
    argv = ["rl", "eval", "--agent", str(tmp_path / "agent"), "--game", "crafter", "--episodes",
            "2", "--max-steps", "40", "--out", str(report_path), "--quiet"]  # fmt: skip
    assert worldsim_main(argv) == 0
    reports = json.loads(report_path.read_text())
    assert set(reports) == {"agent", "random"}
    for report in reports.values():
        assert report["episodes"] == 2 and all(n <= 40 for n in report["lengths"])
        assert 0.0 <= report["crafter_score"] <= 100.0 and len(report["success_rates"]) == 22
        lo, hi = report["crafter_score_ci95"]
        assert lo <= report["crafter_score"] <= hi and len(report["achievements"]) == 2
        assert report["return_ci95"][0] <= report["return_mean"] <= report["return_ci95"][1]
    # the same seed, the same worlds: a random policy's evaluation repeats exactly
    from envs.policies import make_policy

    again = evaluate(make_policy("random", ACTIONS), "crafter", episodes=2, max_steps=40)
    assert again["returns"] == reports["random"]["returns"]


def test_the_committed_dream_agent_plays_real_crafter():
    from pathlib import Path

    from envs.policies import make_policy

    folder = Path(__file__).resolve().parents[1] / "worldsim/assets/agents/crafter-dream-ppo"
    config = json.loads((folder / "agent.json").read_text())
    assert config["metadata"]["trained_in"] == "dream" and config["metadata"]["recipe"]
    report = evaluate(make_policy(str(folder), ACTIONS), "crafter", episodes=1, max_steps=30)
    assert report["lengths"] == [30] and math.isfinite(report["return_mean"])


# ------------------------------------------------------------------------------ the loop
def test_loop_completes_and_resumes(tmp_path):
    from envs.policies import make_policy
    from worldsim.data import EpisodeStore

    run = tmp_path / "run"
    argv = ["loop", "--game", "crafter", "--iterations", "1", "--real-steps-per-iteration", "250",
            "--out", str(run), "--world-model-config", "tiny", "--fit-steps-per-iteration", "4",
            "--fit-arg=--trainer.limit_val_batches=0", "--dream-steps-per-iteration", "128",
            "--num-envs", "8", "--device", "cpu", "--quiet"]  # fmt: skip
    argv += [a for kv in ("num_steps=16", "channels=[8,16,16]", "hidden=64", "sampler_steps=1",
                          "max_episode_steps=12") for a in ("--hp", kv)]  # fmt: skip
    assert worldsim_main(argv) == 0
    state = json.loads((run / "loop.json").read_text())
    first = state["iterations"][0]
    assert first["done"] == ["collect", "fit", "export", "agent"] and first["real_steps"] == 250
    assert first["world_model_step"] == 4 and first["dream_steps"] == 128

    argv[argv.index("--iterations") + 1] = "2"  # resume: iteration 0 is kept, iteration 1 added
    assert worldsim_main(argv) == 0
    state = json.loads((run / "loop.json").read_text())
    assert state["iterations"][0] == first
    second = state["iterations"][1]
    assert second["policy"] == str(run / "agents" / "iter_000")  # the agent collected the data
    assert second["world_model_step"] == 8  # the fit resumed from last.ckpt
    store = EpisodeStore.open(str(run / "data"))
    assert int(store.lengths.sum()) == 500
    assert {store.info(i)["policy"] for i in range(len(store))} == {"random", second["policy"]}
    policy = make_policy(str(run / "agents" / "iter_001"), ACTIONS)
    assert ACTIONS.contains(policy(np.zeros((64, 64, 3), np.uint8)))

    mtime = (run / "world_model" / "checkpoints" / "last.ckpt").stat().st_mtime
    assert worldsim_main(argv) == 0  # nothing left to do
    assert (run / "world_model" / "checkpoints" / "last.ckpt").stat().st_mtime == mtime


def test_a_tile_model_loop_keeps_its_codebook_while_the_store_grows(tmp_path):
    import torch

    from worldsim.checkpoint import load_release

    run = tmp_path / "run"
    argv = ["loop", "--game", "crafter", "--iterations", "1", "--real-steps-per-iteration", "200",
            "--out", str(run), "--world-model-config", "tiles_tiny", "--fit-steps-per-iteration",
            "4", "--fit-arg=--trainer.limit_val_batches=0", "--dream-steps-per-iteration", "64",
            "--num-envs", "8", "--device", "cpu", "--quiet"]  # fmt: skip
    argv += [a for kv in ("num_steps=8", "channels=[8,16,16]", "hidden=64", "max_episode_steps=12",
                          "start_store=" + str(run / "data")) for a in ("--hp", kv)]  # fmt: skip
    assert worldsim_main(argv) == 0
    book = load_release(run / "world_model" / "release")[0].codebook.clone()
    argv[argv.index("--iterations") + 1] = "2"  # more play, the same tokens: the fit resumes
    assert worldsim_main(argv) == 0
    state = json.loads((run / "loop.json").read_text())
    assert state["iterations"][1]["world_model_step"] == 8
    config = (run / "world_model" / "config.yaml").read_text()
    assert f"codebook_from: {run / 'world_model' / 'release'}" in config
    assert torch.equal(load_release(run / "world_model" / "release")[0].codebook, book)


def test_loop_from_a_missing_release_fails_before_collecting(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["loop", "--game", "crafter", "--iterations", "1", "--out", str(run),
            "--init-from", str(tmp_path / "no-such-release"), "--quiet"]  # fmt: skip
    assert worldsim_main(argv) != 0
    assert "--init-from worldsim/assets/crafter" in capsys.readouterr().err
    assert not (run / "data").exists()
