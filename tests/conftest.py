"""Test-wide settings: headless SDL, quiet threads on the 2-core CI machine."""

import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import pytest
import torch

# One thread per test process: the suite's models are tiny, and on a 2-core machine shared with
# DataLoader workers or DDP ranks, extra threads thrash (a 4.5 s test took 36 s).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def crafter_release(tmp_path_factory: pytest.TempPathFactory):
    """A tiny, untrained Crafter world-model release: the real spaces and action names, three
    random starting contexts of three frames. Shared by the env, player and RL tests."""
    import crafter
    import gymnasium as gym
    import numpy as np

    from worldsim.checkpoint import save_release
    from worldsim.model import WorldModelNet, preset

    actions = gym.spaces.Discrete(17)
    torch.manual_seed(0)
    net = WorldModelNet(preset("tiny", height=64, width=64, patch_size=8), actions)
    rng = np.random.default_rng(0)
    contexts = {
        "frames": rng.integers(0, 256, (3, 3, 64, 64, 3), dtype=np.uint8),
        "actions": rng.integers(0, 17, (3, 2)),
    }
    metadata = {"game": "crafter", "fps": 10, "action_names": list(crafter.constants.actions)}
    path = tmp_path_factory.mktemp("release") / "crafter-tiny"
    save_release(
        path,
        net,
        observation_space=gym.spaces.Box(0, 255, (64, 64, 3), np.uint8),
        action_space=actions,
        contexts=contexts,
        metadata=metadata,
    )
    return path
