"""One writer per episode store: an exclusive lock held while a collector adds episodes.

Two collectors adding to one store would pick the same episode keys and overwrite each
other's half-written episodes (and the second would delete the first's "incomplete" ones as
crash leftovers). `writer_lock(path)` takes an OS lock (fcntl.flock) on `STORE/.writer.lock`:
the operating system drops it when the process ends, even by kill -9, so a crash never leaves
a store locked. A second writer is refused at once with a message naming the first. Stores
on object storage (fsspec URLs) cannot be locked this way; there, one writer is up to you.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

from worldsim.errors import StoreError

__all__ = ["LOCK_NAME", "writer_lock"]

LOCK_NAME = ".writer.lock"


@contextlib.contextmanager
def writer_lock(path: str, what: str = "worldsim collect") -> Iterator[None]:
    """Hold the store's writer lock for the `with` block (creates the store folder if needed).

    Raises:
        StoreError: another process holds it.
    """
    if "://" in str(path) and not str(path).startswith("file://"):
        yield  # object stores: no OS lock to take
        return
    import fcntl

    folder = Path(str(path).removeprefix("file://"))
    if folder.exists() and not folder.is_dir():
        raise StoreError(f"{folder} is a file, not an episode store: choose another --out")
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "{}"
            try:
                who = json.loads(holder)
                since = time.strftime("%H:%M:%S", time.localtime(who.get("since", 0)))
                holder = f"{who.get('what', 'a writer')} (pid {who.get('pid')}, since {since})"
            except json.JSONDecodeError:
                pass
            raise StoreError(
                f"another process is writing to the store at {folder}: {holder}. Wait for it "
                "to finish, or write to another --out directory"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(
            fd, json.dumps({"pid": os.getpid(), "since": time.time(), "what": what}).encode(), 0
        )
        yield
    finally:
        os.close(fd)  # releases the lock
