"""Test-wide settings: headless SDL, quiet threads on the 2-core CI machine."""

import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import torch

# One thread per test process: the suite's models are tiny, and on a 2-core machine shared with
# DataLoader workers or DDP ranks, extra threads thrash (a 4.5 s test took 36 s).
torch.set_num_threads(1)
