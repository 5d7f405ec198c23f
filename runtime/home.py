"""The embedded home: private on disk, and written by one process at a time.

The home holds pseudonymized data and the HMAC key, so it is 0700 and its files 0600 (SQLite
creates ``-wal``/``-shm`` with the database file's mode; the umask covers the moment before).
Writers take an exclusive ``flock`` on ``home/lock`` and record who they are there, so a second
writer gets an error naming the holder; readers take no lock (SQLite WAL: they never block).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from pathlib import Path
from typing import IO

from lineage.errors import LineageError

OLD_CHECKPOINT = "graph.pickle"


class HomeLockedError(LineageError):
    """Another process is writing this home."""


def prepare(home: Path) -> Path:
    """Create the home private; tighten modes of what an older version left readable."""
    os.umask(0o077)
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o700)
    for path in home.iterdir():
        if path.is_file():
            path.chmod(0o600)
    return home


def database(home: Path) -> Path:
    path = home / "events.db"
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    return path


class WriterLock:
    """Held for the life of a writing service; released by close or by the process's death."""

    def __init__(self, home: Path, wait_seconds: float = 30.0) -> None:
        self.path = home / "lock"
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        self._handle: IO[str] | None = os.fdopen(fd, "r+")
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(self._handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = self._holder()
                    self._handle.close()
                    self._handle = None
                    raise HomeLockedError(
                        f"{home} is being written by another process ({holder}); "
                        "wait for it to finish or stop it, then retry"
                    ) from None
                time.sleep(0.05)
        self._handle.seek(0)
        self._handle.truncate()
        command = " ".join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv[:2]))
        self._handle.write(f"pid {os.getpid()}: {command}\n")
        self._handle.flush()

    def _holder(self) -> str:
        assert self._handle is not None
        self._handle.seek(0)
        return self._handle.read().strip() or "unknown process"

    def release(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
