"""Lightning training: data module, system, callbacks, CLI, export and 2-process DDP (tiny, CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from training.callbacks import NonFiniteLossError, NonFiniteLossStop, RolloutVideos
from training.data import ClipDataset, EpisodeDataModule
from training.module import ConfigError, WorldModelSystem
from worldsim.data import EpisodeStore

ROOT = Path(__file__).resolve().parents[1]
H = W = 16
MOVES = np.array([[0, 1], [0, -1], [1, 0], [-1, 0]])


def make_store(
    path: Path, episodes: int = 10, T: int = 24, action_space: gym.Space | None = None
) -> EpisodeStore:
    """A toy game: a white dot on blue that moves one pixel per action; reward for action 0."""
    action_space = action_space or gym.spaces.Discrete(4)
    store = EpisodeStore.create(
        str(path),
        game="dot",
        action_space=action_space,
        observation_space=gym.spaces.Box(0, 255, (H, W, 3), np.uint8),
        fps=10,
    )
    rng = np.random.default_rng(0)
    for e in range(episodes):
        moves = rng.integers(0, 4, T)
        pos = (np.cumsum(MOVES[moves], axis=0) + H // 2) % H
        pos = np.concatenate([[[H // 2, W // 2]], pos])
        frames = np.zeros((T + 1, H, W, 3), np.uint8)
        frames[..., 2] = 80
        frames[np.arange(T + 1), pos[:, 0], pos[:, 1]] = 255
        actions = (
            moves
            if isinstance(action_space, gym.spaces.Discrete)
            else {"move": moves, "camera": rng.uniform(-1, 1, (T, 2)).astype(np.float32)}
        )
        terminated = np.zeros(T, bool)
        terminated[-1] = e % 2 == 0
        store.append(
            frames,
            actions,
            (moves == 0).astype(np.float32),
            terminated,
            ~terminated & (np.arange(T) == T - 1),
        )
    return store


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("data") / "dot"
    make_store(path)
    return str(path)


def datamodule(store_path: str, **kwargs) -> EpisodeDataModule:
    args = dict(
        store=store_path,
        clip_length=4,
        batch_size=4,
        samples_per_epoch=400,
        val_samples=8,
        val_fraction=0.3,
        num_workers=0,
    )
    return EpisodeDataModule(**{**args, **kwargs})


def trainer(tmp_path: Path, **kwargs) -> L.Trainer:
    args = dict(
        default_root_dir=tmp_path,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
    )
    return L.Trainer(**{**args, **kwargs})


# ------------------------------------------------------------------------------- data
def test_clips_cover_every_start_uniformly_and_val_is_fixed(
    store_path: str, tmp_path: Path
) -> None:
    store = EpisodeStore.open(store_path)
    episodes = store.split("train", val=0.3)
    dataset = ClipDataset(store_path, episodes, store.lengths, clip_length=4)
    assert len(dataset) == sum(int(store.lengths[i]) + 2 - 4 for i in episodes)
    starts = [dataset.locate(k) for k in range(len(dataset))]
    assert len(set(starts)) == len(dataset)  # each (episode, start) exactly once
    last_episode = episodes[-1]
    assert starts[-1] == (last_episode, int(store.lengths[last_episode]) + 1 - 4)
    item = dataset[5]
    episode, start = starts[5]
    np.testing.assert_array_equal(item["frames"], store.episode(episode).frames[start : start + 4])

    a, b = datamodule(store_path), datamodule(store_path)
    a.setup("fit"), b.setup("fit")
    assert a.val_set.indices == b.val_set.indices
    assert not set(a.split("val")) & set(a.split("train"))

    dict_store = make_store(
        tmp_path / "dict",
        episodes=3,
        action_space=gym.spaces.Dict(
            {"move": gym.spaces.Discrete(4), "camera": gym.spaces.Box(-1, 1, (2,), np.float32)}
        ),
    )
    dm = datamodule(dict_store.path, val_fraction=0.0)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["frames"].dtype == torch.uint8 and batch["frames"].shape == (4, 4, H, W, 3)
    assert batch["actions"]["move"].shape == (4, 3)
    assert batch["actions"]["camera"].shape == (4, 3, 2)
    assert batch["rewards"].dtype == torch.float32 and batch["terminated"].dtype == torch.bool


def test_moving_weight_oversamples_clips_where_the_view_changes(tmp_path: Path) -> None:
    store = EpisodeStore.create(
        str(tmp_path / "still"),
        game="dot",
        action_space=gym.spaces.Discrete(4),
        observation_space=gym.spaces.Box(0, 255, (H, W, 3), np.uint8),
        fps=10,
    )
    for e in range(4):  # episodes 0 and 2 never change; in 1 and 3 only step 2 does
        frames = np.zeros((9, H, W, 3), np.uint8)
        if e % 2:
            frames[3:, :4] = 255
        none = np.zeros(8, bool)
        store.append(frames, np.zeros(8, np.int64), np.zeros(8, np.float32), none, none)
    dataset = ClipDataset(store.path, [0, 1, 2, 3], store.lengths, clip_length=4)
    fractions = dataset.moving_fractions()  # 6 clips per episode; step 2 is in the first three
    np.testing.assert_allclose(
        fractions, np.tile([1 / 3] * 3 + [0] * 3, 4) * np.repeat([0, 1, 0, 1], 6)
    )

    dm = datamodule(store.path, val_fraction=0.0, moving_weight=9.0, samples_per_epoch=4000)
    dm.setup("fit")
    drawn = np.array(list(dm.train_dataloader().sampler))
    share = (dm.train_set.moving_fractions()[drawn] > 0).mean()
    assert (
        0.53 < share < 0.61
    )  # weight 4 on 6 moving clips, 1 on 18 still ones: 24/42; uniform: 1/4
    with pytest.raises(ValueError, match="moving_weight"):
        datamodule(store.path, moving_weight=-1)


# ------------------------------------------------------------------------------- system
def test_fast_dev_run_with_rollout_videos(store_path: str, tmp_path: Path) -> None:
    system = WorldModelSystem(preset="tiny")
    videos = RolloutVideos(num_videos=2, context_frames=2, rollout_frames=2)
    L.Trainer(
        fast_dev_run=True,
        default_root_dir=tmp_path,
        accelerator="cpu",
        enable_progress_bar=False,
        callbacks=[NonFiniteLossStop(), videos],
    ).fit(system, datamodule=datamodule(store_path))
    assert videos._validations == 1  # the rollout ran (its logging is off in fast_dev_run)
    assert system.ema.n_averaged.item() == 1


class LossRecorder(L.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []
        self.first_step: int | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))
        if self.first_step is None:
            self.first_step = trainer.global_step - 1


def test_loss_falls_on_a_tiny_run(store_path: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    system = WorldModelSystem(preset="tiny", lr=2e-3, warmup_steps=5, validate_ema=False)
    dm = datamodule(store_path, batch_size=8)
    recorder = LossRecorder()
    t = trainer(tmp_path, max_steps=40, callbacks=[recorder], limit_val_batches=0)
    before = trainer(tmp_path).validate(system, datamodule=dm, verbose=False)[0]["val/loss"]
    t.fit(system, datamodule=dm)
    after = trainer(tmp_path).validate(system, datamodule=dm, verbose=False)[0]["val/loss"]
    first, last = np.mean(recorder.losses[:5]), np.mean(recorder.losses[-10:])
    assert last < 0.75 * first, (first, last)
    assert after < 0.75 * before, (before, after)  # the same clips and noise before and after


def test_checkpoint_and_resume_continue_from_the_saved_step(
    store_path: str, tmp_path: Path
) -> None:
    ckpt_dir = tmp_path / "ckpt"
    system = WorldModelSystem(preset="tiny", warmup_steps=2)
    saver = ModelCheckpoint(dirpath=ckpt_dir, every_n_train_steps=3, save_last=True, save_top_k=-1)
    trainer(
        tmp_path, max_steps=6, callbacks=[saver], enable_checkpointing=True, limit_val_batches=0
    ).fit(system, datamodule=datamodule(store_path))
    saved = torch.load(ckpt_dir / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 6 and "worldsim" in saved

    resumed = WorldModelSystem(preset="tiny", warmup_steps=2)
    recorder = LossRecorder()
    saver = ModelCheckpoint(dirpath=ckpt_dir, every_n_train_steps=3, save_last=True, save_top_k=-1)
    t = trainer(
        tmp_path,
        max_steps=9,
        callbacks=[saver, recorder],
        enable_checkpointing=True,
        limit_val_batches=0,
    )
    t.fit(resumed, datamodule=datamodule(store_path), ckpt_path="last")
    assert recorder.first_step == 6 and t.global_step == 9 and len(recorder.losses) == 3
    assert resumed.ema.n_averaged.item() == 9  # the EMA was restored, then updated 3 more times
    assert torch.load(ckpt_dir / "last.ckpt", weights_only=True)["global_step"] == 9


def test_nan_loss_stops_with_the_step_in_the_message(store_path: str, tmp_path: Path) -> None:
    class Poison(L.Callback):
        def on_train_start(self, trainer, pl_module) -> None:
            loss_fn = pl_module.net.training_loss

            def poisoned(*args, **kwargs):
                out = loss_fn(*args, **kwargs)
                if trainer.global_step == 3:
                    out["loss"] = out["loss"] * float("nan")
                return out

            pl_module.net.training_loss = poisoned

    system = WorldModelSystem(preset="tiny")
    with pytest.raises(NonFiniteLossError, match="global step 3"):
        trainer(
            tmp_path, max_steps=10, callbacks=[NonFiniteLossStop(), Poison()], limit_val_batches=0
        ).fit(system, datamodule=datamodule(store_path))
    assert all(
        torch.isfinite(p).all() for p in system.net.parameters()
    )  # the bad step was not applied


def test_autoencoder_run_then_world_model_in_its_latent(store_path: str, tmp_path: Path) -> None:
    from training.autoencoder import AutoencoderSystem

    autoencoder = AutoencoderSystem(channels=(8, 16), latent_channels=4)
    t = trainer(tmp_path, max_steps=2, limit_val_batches=1)
    t.fit(autoencoder, datamodule=datamodule(store_path, clip_length=1))
    t.save_checkpoint(tmp_path / "ae.ckpt")

    system = WorldModelSystem(preset="tiny", autoencoder=str(tmp_path / "ae.ckpt"))
    trainer(tmp_path, max_steps=2, limit_val_batches=1).fit(
        system, datamodule=datamodule(store_path)
    )
    assert system.net.config.latent_factor == 2 and system.net.config.grid == (2, 2)
    for name, weight in autoencoder.autoencoder.state_dict().items():  # loaded and kept frozen
        torch.testing.assert_close(system.net.autoencoder.state_dict()[name], weight)


# ------------------------------------------------------------------------------- export
def test_export_gives_a_release_matching_the_ema_net(store_path: str, tmp_path: Path) -> None:
    from worldsim.cli import main as worldsim_main
    from worldsim.world_model import WorldModel

    ckpt_dir = tmp_path / "ckpt"
    system = WorldModelSystem(preset="tiny", ema_decay=0.5)
    dm = datamodule(store_path)
    saver = ModelCheckpoint(dirpath=ckpt_dir, save_last=True)
    trainer(
        tmp_path, max_steps=4, callbacks=[saver], enable_checkpointing=True, limit_val_batches=0
    ).fit(system, datamodule=dm)
    assert (
        worldsim_main(
            [
                "export",
                str(ckpt_dir / "last.ckpt"),
                "--out",
                str(tmp_path / "release"),
                "--contexts",
                "2",
            ]
        )
        == 0
    )

    released = WorldModel.from_checkpoint(str(tmp_path / "release"), device="cpu")
    in_memory = WorldModel.from_net(system.ema.module.eval(), dm.observation_space, dm.action_space)
    clips = dm.contexts(2, 5)
    outputs = []
    for world_model in (released, in_memory):
        generator = torch.Generator().manual_seed(0)
        out = world_model.generate(
            clips["frames"][:, :2],
            clips["actions"][:, :1],
            clips["actions"][:, 1:],
            generator=generator,
        )
        outputs.append(out["frames"])
    assert outputs[0].shape == (2, 3, H, W, 3)
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)
    tuned = tmp_path / "tuned"
    args = ["export", str(ckpt_dir / "last.ckpt"), "--out", str(tuned), "--contexts", "1"]
    tuning = ["--sampler-steps", "1", "--guidance", "1.5", "--motion-temperature", "0.5"]
    assert worldsim_main([*args, *tuning]) == 0
    sampler = WorldModel.from_checkpoint(str(tuned), device="cpu").sampler
    assert (sampler.sampler_steps, sampler.guidance, sampler.motion_temperature) == (1, 1.5, 0.5)
    assert worldsim_main([*args, "--sampler-steps", "0"]) == 2  # a clear error, no release
    assert worldsim_main([*args, "--motion-temperature", "0"]) == 2
    reloaded = WorldModelSystem.load_from_checkpoint(ckpt_dir / "last.ckpt")  # the Lightning way
    for name, weight in system.ema.module.state_dict().items():
        torch.testing.assert_close(reloaded.ema.module.state_dict()[name], weight)
    ema_state, trained_state = system.ema.module.state_dict(), system.net.state_dict()
    assert any(
        not torch.equal(ema_state[k], trained_state[k]) for k in trained_state
    )  # EMA != trained


# ------------------------------------------------------------------------------- CLI
def test_worldsim_fit_print_config(capsys: pytest.CaptureFixture) -> None:
    from worldsim.cli import main as worldsim_main

    with pytest.raises(SystemExit) as exit_info:
        worldsim_main(
            ["fit", "--config", str(ROOT / "training/configs/tiny.yaml"), "--print_config"]
        )
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "class_path: training.module.WorldModelSystem" in printed and "clip_length: 4" in printed


def test_worldsim_fit_runs_and_resumes_from_last(store_path: str, tmp_path: Path) -> None:
    from training.cli import check_checkpoint_file, main
    from worldsim.cli import main as worldsim_main
    from worldsim.errors import WorldsimError

    args = [
        "--config",
        str(ROOT / "training/configs/tiny.yaml"),
        "--data.store",
        store_path,
        "--data.val_fraction",
        "0.3",
        "--checkpoint.dirpath",
        str(tmp_path / "ckpt"),
        "--checkpoint.every_n_train_steps",
        "2",
        "--trainer.logger.init_args.save_dir",
        str(tmp_path),
        "--trainer.val_check_interval",
        "2",
        "--trainer.limit_val_batches",
        "1",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        "--trainer.log_every_n_steps",
        "1",
    ]
    assert main([*args, "--trainer.max_steps", "2"]) == 0
    assert main([*args, "--trainer.max_steps", "4", "--ckpt_path", "last"]) == 0
    assert torch.load(tmp_path / "ckpt/last.ckpt", weights_only=True)["global_step"] == 4
    release = tmp_path / "release"
    assert worldsim_main(["export", str(tmp_path / "ckpt/last.ckpt"), "--out", str(release)]) == 0
    assert (release / "config.json").exists()
    # Contexts from a store of another game: refused, the release is left as it was.
    other = EpisodeStore.create(tmp_path / "other", game="other", action_space=gym.spaces.Discrete(2),
                                observation_space=EpisodeStore.open(store_path).observation_space,
                                fps=10)  # fmt: skip
    before = (release / "config.json").read_text()
    bad = ["export", str(tmp_path / "ckpt/last.ckpt"), "--out", str(release), "--store"]
    assert worldsim_main([*bad, other.path]) == 2
    assert (release / "config.json").read_text() == before
    # A last.ckpt cut short by a crash: the error names the step checkpoints to resume from.
    last = tmp_path / "ckpt/last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    with pytest.raises(WorldsimError, match=r"truncated or corrupt.*--ckpt_path .*step"):
        check_checkpoint_file(last)
    assert main([*args, "--trainer.max_steps", "6", "--ckpt_path", "last"]) == 2
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logs = EventAccumulator(str(tmp_path / "tiny/version_0"))
    logs.Reload()
    assert {
        "train/loss",
        "val/loss",
        "val/loss_noise_q1",
        "val/reward_acc",
        "val/rollout_psnr",
    } <= set(logs.Tags()["scalars"])
    assert "rollouts/real_vs_generated" in logs.Tags()["images"]  # the animated rollout video


def test_bad_options_are_clear_errors(
    store_path: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from training.cli import main

    base = ["--config", str(ROOT / "training/configs/tiny.yaml"), "--trainer.logger", "false"]
    base += ["--trainer.default_root_dir", str(tmp_path)]  # where config.yaml is saved
    for extra, expected in (
        (["--data.store", str(tmp_path / "nowhere")], "worldsim collect"),
        (["--data.store", store_path, "--model.preset", "XL"], "unknown model preset 'XL'"),
        (
            ["--data.store", store_path, "--data.clip_length", "8"],
            "exceeds the model's context of 4",
        ),
        (["--data.store", store_path, "--data.batch_size", "0"], "--data.batch_size must be"),
        (["--data.store", store_path, "--data.val_fraction", "1.5"], "--data.val_fraction"),
        (
            ["--data.store", store_path, "--model.overrides", "{clean_reference: true}"],
            "under model.loss",
        ),
        (["--data.store", store_path, "--model.sampler", "{sampler_steps: 0}"], "model.sampler"),
    ):
        assert main([*base, *extra]) == 2
        assert expected in capsys.readouterr().err


# ------------------------------------------------------------------------------- DDP
DDP_SCRIPT = """
import json, sys, torch, lightning as L
sys.path.insert(0, {tests!r})
from test_training import datamodule
from training.module import ConfigError, WorldModelSystem
system = WorldModelSystem(preset="tiny", warmup_steps=2)
trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_steps=3, logger=False,
                    enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                    num_sanity_val_steps=0, limit_val_batches=1, val_check_interval=3, default_root_dir={root!r})
trainer.fit(system, datamodule=datamodule({store!r}))
flat = torch.cat([p.detach().flatten() for p in system.net.parameters()])
sums = [torch.zeros(2) for _ in range(2)]
torch.distributed.all_gather(sums, torch.stack([flat.sum(), flat.abs().sum()]))
if trainer.is_global_zero:
    json.dump({{"world_size": trainer.world_size, "step": trainer.global_step,
               "sums": [s.tolist() for s in sums], "val": float(trainer.callback_metrics["val/loss"])}},
              open({out!r}, "w"))
"""


def test_two_process_ddp_on_cpu(store_path: str, tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    script = tmp_path / "ddp_run.py"
    script.write_text(
        textwrap.dedent(DDP_SCRIPT).format(
            tests=str(ROOT / "tests"), root=str(tmp_path), store=store_path, out=str(out)
        )
    )
    env = {**os.environ, "PL_DISABLE_FORK": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["world_size"] == 2 and result["step"] == 3 and np.isfinite(result["val"])
    # the ranks stayed in sync: the same weights on both after 3 steps
    np.testing.assert_allclose(result["sums"][0], result["sums"][1], rtol=1e-6)


# ------------------------------------------------------------------------------- fine-tuning
def test_init_from_a_release_starts_from_its_weights(crafter_release: Path) -> None:
    from worldsim.checkpoint import load_release
    from worldsim.errors import CheckpointError

    net, observation_space, action_space = load_release(crafter_release)[:3]
    system = WorldModelSystem(
        preset="tiny", overrides={"patch_size": 8}, init_from=str(crafter_release)
    )
    system.build(action_space, observation_space)
    for name, weight in net.state_dict().items():
        torch.testing.assert_close(system.net.state_dict()[name], weight)
        torch.testing.assert_close(system.ema.module.state_dict()[name], weight)

    # Adding the motion head to a release without one: every other weight is copied and the
    # head starts as the identity, so the reference is (almost) the unmoved previous frame.
    moving = WorldModelSystem(
        preset="tiny",
        overrides={"patch_size": 8, "motion_radius": 3},
        init_from=str(crafter_release),
    )
    moving.build(action_space, observation_space)
    for name, weight in net.state_dict().items():
        torch.testing.assert_close(moving.net.state_dict()[name], weight)
    ky, kx = moving.net.backbone.motion(torch.randn(1, 1, 2, moving.net.config.dim))
    assert ky[..., 3].min() > 0.98 and kx[..., 3].min() > 0.98

    wider = WorldModelSystem(
        preset="tiny", overrides={"patch_size": 8, "dim": 32}, init_from=str(crafter_release)
    )
    with pytest.raises(ConfigError, match=r"init_from .*dim, depth"):
        wider.build(action_space, observation_space)
    other_game = WorldModelSystem(
        preset="tiny", overrides={"patch_size": 8}, init_from=str(crafter_release)
    )
    with pytest.raises(CheckpointError, match="another game"):
        other_game.build(gym.spaces.Discrete(5), observation_space)


def test_progress_bar_counts_steps_towards_max_steps(tmp_path: Path) -> None:
    from training.callbacks import StepProgressBar

    bar = StepProgressBar()
    bar._trainer = trainer(tmp_path, max_steps=12, enable_progress_bar=True, callbacks=[bar])
    assert bar.total_train_batches == 12  # not the batches of one epoch
    assert bar._get_train_description(1).strip() == "Steps (Epoch 1)"  # not "Epoch 1/-2"
