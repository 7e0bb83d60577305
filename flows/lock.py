"""One writer at a time: an exclusive lock on <home>/.biolake.lock held for a whole run.

Several runs (a schedule, a manual re-run, a second worker on the same machine) may start at
once; the second waits for the first (up to a timeout) instead of interleaving writes to the
warehouse and the DuckDB file. The lock is released by the kernel if the holder dies, even by
SIGKILL.
"""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path


class LockTimeout(RuntimeError):
    pass


class HomeNotWritable(RuntimeError):
    """The home cannot hold the lock: a file, a read-only file system, no permission (QA: a
    traceback ending in 'OSError: [Errno 30] Read-only file system' on every writing command)."""


def _open_lock(home: Path) -> int:
    path = home / ".biolake.lock"
    if home.exists() and not home.is_dir():
        raise HomeNotWritable(f"{home} is a file, not a data home (check --home or BIOLAKE_HOME)")
    try:
        home.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as err:
        raise HomeNotWritable(f"cannot write to {home} ({err.strerror or err}): biolake needs write access to its "
                              "home (its lock, its warehouse); check --home or BIOLAKE_HOME and the mount") from None


@contextmanager
def warehouse_lock(home: Path, timeout: float = 600, poll: float = 0.2):
    path = home / ".biolake.lock"
    fd = _open_lock(home)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                    raise LockTimeout(f"{path}: another biolake run (pid {holder}) holds the warehouse "
                                      f"lock; gave up after {timeout:.0f} s") from None
                time.sleep(poll)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)



def wait_until_free(home: Path, timeout: float = 600, on_wait=None) -> None:
    """Wait (up to ``timeout``) until no run holds the lock, without keeping it: the command line
    calls it before starting Prefect, so that a busy warehouse is a one-line message, not a failed
    flow run (``on_wait(holder pid)`` is told once when it has to wait). The run itself still takes
    the lock: another run starting in between makes it wait, as before."""
    path = home / ".biolake.lock"
    if on_wait is not None and path.exists():
        fd = _open_lock(home)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except BlockingIOError:
            on_wait(os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown")
        finally:
            os.close(fd)
    with warehouse_lock(home, timeout=timeout):
        pass
