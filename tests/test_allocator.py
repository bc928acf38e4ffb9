"""keep_freed_memory: a world model's large step temporaries come from malloc's heap."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import ctypes, torch
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
def mapped_for(n):  # bytes malloc serves by mmap while a tensor of n floats lives
    before = libc.mallinfo2().hblkhd
    x = torch.empty(n)
    return libc.mallinfo2().hblkhd - before
n = 5_000_000  # 20 MB: the size of the tile head's logits at B=32
print(mapped_for(n))
from worldsim.allocator import keep_freed_memory
print(int(keep_freed_memory()), int(keep_freed_memory()))
print(mapped_for(n))
"""


def test_large_step_temporaries_come_from_the_heap_once_a_world_model_asks() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc's malloc settings: Linux only")
    run = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True)
    if "mallinfo2" in run.stderr:
        pytest.skip("not glibc 2.33+ (no mallinfo2 to read the heap with)")
    assert run.returncode == 0, run.stderr
    before, done, after = run.stdout.split("\n")[:3]
    assert int(before) >= 20_000_000  # glibc's default: a fresh mapping, unmapped when freed
    assert done == "1 1"  # set, and a second call is a no-op that says so
    assert int(after) == 0  # served from the heap, kept for the next step
