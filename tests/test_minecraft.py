"""Minecraft recordings (VPT contractor format, MineRL v0.4) written in their real formats, imported."""

from __future__ import annotations

import json
from pathlib import Path

import av
import gymnasium as gym
import numpy as np
import pytest

from envs.minecraft import (
    BUTTONS,
    RecordingError,
    decode_video,
    import_minecraft,
    minerl_action_space,
    read_minerl_v04,
    read_vpt,
    vpt_actions,
)
from worldsim.data import EpisodeStore
from worldsim.errors import StoreError

DEG = 2400.0 / 360.0  # mouse counts per degree


def gray(i: int) -> int:
    """The grey level of test frame i: far enough apart to survive lossy coding."""
    return 8 + 12 * i


def write_mp4(path: Path, n: int, fps: int = 20, codec: str = "mpeg4", size: int = 64) -> None:
    """A real mp4 (PyAV) of n solid grey frames, frame i at level gray(i), a white corner mark."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        if codec == "mpeg4":
            stream.options = {"qscale": "2"}
        for i in range(n):
            image = np.full((size, size, 3), gray(i), np.uint8)
            image[:16, :16] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def frame_ids(frames: np.ndarray) -> list[int]:
    """Which test frame each decoded frame is, from its grey level (away from the corner mark)."""
    h, w = frames.shape[1:3]
    levels = frames[:, h // 2 :, w // 2 :].reshape(len(frames), -1).mean(axis=1)
    return [round((v - 8) / 12) for v in levels]


def tick(keys=(), dx=0.0, dy=0.0, buttons=(), new_buttons=(), hotbar=0, gui=False, t=0) -> dict:
    """One VPT jsonl line with the recorder's real field names."""
    return {
        "mouse": {
            "x": 640.0, "y": 360.0, "dx": dx, "dy": dy, "scaledX": dx, "scaledY": dy,
            "dwheel": 0.0, "buttons": list(buttons), "newButtons": list(new_buttons),
        },
        "keyboard": {"keys": list(keys), "newKeys": list(keys), "chars": ""},
        "isGuiOpen": gui, "isGuiInventory": False, "hotbar": hotbar,
        "yaw": 0.0, "pitch": 0.0, "xpos": 10.5, "ypos": 64.0, "zpos": -3.5,
        "tick": t, "milli": 1650000000000 + 50 * t, "inventory": [],
        "serverTick": t, "serverTickDurationMs": 12.0, "stats": {},
    }  # fmt: skip


def write_vpt(directory: Path, name: str, ticks: list[dict], n_frames: int | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    write_mp4(directory / f"{name}.mp4", len(ticks) if n_frames is None else n_frames)
    (directory / f"{name}.jsonl").write_text("".join(json.dumps(t) + "\n" for t in ticks))
    return directory / f"{name}.mp4"


def walking_ticks(n: int) -> list[dict]:
    """Tick t walks forward iff t is even, and turns right by t degrees."""
    return [tick(keys=["key.keyboard.w"] if t % 2 == 0 else [], dx=t * DEG, t=t) for t in range(n)]


def test_vpt_actions_convert_keys_mouse_and_hotbar():
    ticks = [
        tick(keys=["key.keyboard.w"], dx=10 * DEG, dy=-5 * DEG, buttons=[0]),
        tick(
            keys=["key.keyboard.space", "key.keyboard.left.shift", "key.keyboard.1"],
            buttons=[1, 2],
            new_buttons=[1, 2],
        ),
        tick(hotbar=4),  # scroll wheel: the recorder sees only the hotbar change
        tick(
            keys=["key.keyboard.t", "key.keyboard.escape", "key.keyboard.e"],
            dx=5000 * DEG,
            hotbar=4,
        ),
        tick(
            keys=[
                "key.keyboard.q",
                "key.keyboard.f",
                "key.keyboard.left.control",
                "key.keyboard.s",
            ],
            hotbar=4,
        ),
    ]
    a = vpt_actions(ticks)
    assert set(a) == set(minerl_action_space().spaces)
    on = [{k for k in BUTTONS if a[k][t]} for t in range(len(ticks))]
    assert on[0] == {"forward", "attack"}
    assert on[1] == {"jump", "sneak", "hotbar.1", "use", "pickItem"}
    assert on[2] == {"hotbar.5"}
    assert on[3] == {"ESC", "inventory"}  # key.keyboard.t (chat) is no action
    assert on[4] == {"drop", "swapHands", "sprint", "back"}
    np.testing.assert_allclose(a["camera"][0], [-5.0, 10.0], atol=1e-4)  # [pitch, yaw] degrees
    np.testing.assert_allclose(a["camera"][3], [0.0, 180.0])  # clipped to the Box
    assert a["camera"].dtype == np.float32 and a["forward"].dtype == np.int64
    assert minerl_action_space().contains({k: v[0] for k, v in a.items()})


def test_vpt_attack_held_from_the_start_is_ignored_until_pressed_again():
    ticks = [
        tick(buttons=[0], new_buttons=[0]),
        tick(buttons=[0]),
        tick(buttons=[0], new_buttons=[0]),
        tick(buttons=[0]),
    ]
    assert vpt_actions(ticks)["attack"].tolist() == [0, 0, 1, 1]


def test_vpt_bad_tick_names_the_problem():
    with pytest.raises(RecordingError, match="tick 1"):
        vpt_actions([tick(), {"mouse": {"dx": 0}, "keyboard": {"keys": []}}])


def test_read_vpt_aligns_frame_t_with_action_t(tmp_path):
    mp4 = write_vpt(tmp_path, "rec", walking_ticks(12))
    ep = read_vpt(mp4, size=(32, 48))
    assert ep.frames.shape == (12, 32, 48, 3) and ep.frames.dtype == np.uint8
    assert frame_ids(ep.frames) == list(range(12))
    assert len(ep.rewards) == 11 and not ep.rewards.any()
    assert ep.actions["forward"].tolist() == [1 - t % 2 for t in range(11)]  # last tick dropped
    np.testing.assert_allclose(ep.actions["camera"][:, 1], np.arange(11), atol=1e-4)
    assert not ep.terminated.any() and ep.truncated.tolist() == [False] * 10 + [True]
    assert ep.info["format"] == "vpt" and ep.info["jsonl_ticks"] == 12


def test_read_vpt_cuts_a_length_mismatch_with_a_warning(tmp_path):
    mp4 = write_vpt(tmp_path, "rec", walking_ticks(8), n_frames=10)
    with pytest.warns(UserWarning, match=r"10 frames but .* 8 ticks"):
        ep = read_vpt(mp4)
    assert len(ep.frames) == 8 and len(ep.rewards) == 7


def test_decode_video_samples_a_faster_video_at_20hz(tmp_path):
    write_mp4(tmp_path / "fast.mp4", 20, fps=40, codec="h264")
    frames = decode_video(tmp_path / "fast.mp4", size=(64, 64))
    assert frame_ids(frames) == list(range(0, 20, 2))


def write_minerl(directory: Path, T: int, extra_frames: int = 2, success: bool = True) -> None:
    """A MineRL v0.4 demonstration folder: recording.mp4, rendered.npz, metadata.json."""
    directory.mkdir(parents=True)
    write_mp4(directory / "recording.mp4", T + 1 + extra_frames)
    t = np.arange(T)
    place = np.array(["none"] * T, dtype="<U13")
    place[3] = "crafting_table"
    np.savez_compressed(
        directory / "rendered.npz",
        **{
            "action$forward": (t % 3 == 0).astype(np.int64),
            "action$attack": (t >= 5).astype(np.int64),
            "action$jump": np.zeros(T, np.int64),
            "action$camera": np.stack([-t, 2 * t], axis=1).astype(np.float32),
            "action$place": place,
            "action$craft": np.array(["none"] * T, dtype="<U13"),
            "reward": (t == 6).astype(np.float32),
            "observation$inventory$dirt": t,
        },
    )
    meta = {"success": success, "duration_steps": T, "true_video_frame_count": T + 1 + extra_frames}
    (directory / "metadata.json").write_text(json.dumps(meta))


def test_read_minerl_v04_uses_the_last_T_plus_1_frames(tmp_path):
    write_minerl(tmp_path / "demo", T=9, extra_frames=2)
    ep = read_minerl_v04(tmp_path / "demo", size=(64, 64))
    assert ep.frames.shape == (10, 64, 64, 3)
    assert frame_ids(ep.frames) == list(range(2, 12))  # the 2 leading video frames are skipped
    assert ep.actions["forward"].tolist() == [1, 0, 0, 1, 0, 0, 1, 0, 0]
    assert ep.actions["attack"].tolist() == [0] * 5 + [1] * 4
    assert ep.actions["use"].tolist() == [0, 0, 0, 1, 0, 0, 0, 0, 0]  # place -> use
    np.testing.assert_array_equal(ep.actions["camera"][4], [-4.0, 8.0])
    assert ep.actions["hotbar.3"].sum() == 0
    assert ep.rewards.tolist() == [0, 0, 0, 0, 0, 0, 1, 0, 0]
    assert ep.terminated[-1] and not ep.truncated.any()
    assert ep.info["unmapped_actions"] == ["craft"] and ep.info["skipped_leading_frames"] == 2


def test_read_minerl_v04_with_too_few_frames_is_an_error(tmp_path):
    write_minerl(tmp_path / "demo", T=9, extra_frames=-3, success=False)
    with pytest.raises(RecordingError, match=r"7 frames .* 9 steps"):
        read_minerl_v04(tmp_path / "demo")


def test_import_vpt_skips_broken_recordings_and_round_trips(tmp_path):
    src = tmp_path / "vpt"
    write_vpt(src, "a", walking_ticks(12))
    write_vpt(src / "day2", "b", walking_ticks(9))
    (src / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    (src / "corrupt.jsonl").write_text(json.dumps(tick()) + "\n")
    write_vpt(src, "badjson", walking_ticks(5))
    with open(src / "badjson.jsonl", "a") as f:
        f.write("{not json\n")
    write_mp4(src / "orphan.mp4", 4)  # no .jsonl
    out = str(tmp_path / "store")
    with pytest.warns(UserWarning) as record:
        added = import_minecraft(src, out, format="vpt", size=(32, 32))
    assert added == 2
    messages = " ".join(str(w.message) for w in record)
    for name in ("corrupt.mp4", "badjson", "orphan.mp4"):
        assert name in messages

    store = EpisodeStore.open(out)
    assert len(store) == 2 and store.game == "minecraft" and store.fps == 20.0
    assert store.lengths.tolist() == [11, 8]
    assert store.action_space == minerl_action_space()
    assert store.observation_space == gym.spaces.Box(0, 255, (32, 32, 3), np.uint8)
    expected = read_vpt(src / "a.mp4", size=(32, 32))
    got = store.episode(0)
    np.testing.assert_array_equal(got.frames, expected.frames)
    for key, values in expected.actions.items():
        np.testing.assert_array_equal(got.actions[key], values)
    np.testing.assert_array_equal(got.truncated, expected.truncated)
    assert got.info["source"].endswith("a.mp4")
    clip = store.clip(0, 2, 4)
    assert frame_ids(clip.frames) == [2, 3, 4, 5] and clip.actions["forward"].tolist() == [1, 0, 1]

    assert import_minecraft(src / "a.mp4", out, format="vpt", size=(32, 32)) == 1  # appends
    assert len(EpisodeStore.open(out)) == 3


def test_import_minerl_and_store_mismatches(tmp_path):
    src = tmp_path / "MineRLTreechop-v0"
    write_minerl(src / "v3_demo_a", T=9)
    write_minerl(src / "v3_demo_b", T=6, success=False)
    out = str(tmp_path / "store")
    assert import_minecraft(src, out, format="minerl", size=(64, 64)) == 2
    store = EpisodeStore.open(out)
    assert store.lengths.tolist() == [9, 6]
    assert store.episode(1).truncated[-1] and store.metadata["source_format"] == "minerl"

    with pytest.raises(StoreError, match="minecraft"):  # the store's own check
        import_minecraft(src, out, format="minerl", size=(64, 64), game="minecraft-basalt")
    with pytest.raises(StoreError):  # another frame size
        import_minecraft(src, out, format="minerl", size=(32, 32))
    assert len(EpisodeStore.open(out)) == 2  # nothing damaged


def test_import_with_nothing_to_import_is_a_clear_error(tmp_path):
    with pytest.raises(RecordingError, match="no vpt recordings"):
        import_minecraft(tmp_path, str(tmp_path / "out"), format="vpt")
    with pytest.raises(RecordingError, match="unknown Minecraft format"):
        import_minecraft(tmp_path, str(tmp_path / "out"), format="mp4")
    assert not EpisodeStore.exists(str(tmp_path / "out"))
