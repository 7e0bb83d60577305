"""One writer at a time: an exclusive lock on <home>/.biolake.lock held for a whole run.

Several runs (a schedule, a manual re-run, a second worker on the same machine) may start at
once; the second waits for the first (up to a timeout) instead of interleaving writes to the
warehouse and the DuckDB file. The lock is released by the kernel if the holder dies, even by
SIGKILL.
"""

from __future__ import annotations

import fcntl
import os
import sys
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


def _holder(fd: int) -> str:
    return os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"


def say_waiting(message: str) -> None:
    """Tell whoever watches the run that it waits: the run's log inside a Prefect flow or task (the
    UI shows it), standard error otherwise (QA crash: a run waiting inside the flow said nothing for
    up to BIOLAKE_LOCK_TIMEOUT)."""
    try:
        from prefect import get_run_logger
        from prefect.exceptions import MissingContextError

        try:
            get_run_logger().warning(message)
            return
        except MissingContextError:
            pass
    except ImportError:  # pragma: no cover - prefect is a dependency
        pass
    print(message, file=sys.stderr, flush=True)


@contextmanager
def warehouse_lock(home: Path, timeout: float = 600, poll: float = 0.2, on_wait=say_waiting,
                   remind_every: float = 60):
    """Hold the home's lock for the block. When another run holds it, ``on_wait(message)`` is told
    at once (naming the holder's pid and the time limit), then every ``remind_every`` seconds;
    ``on_wait=None`` waits silently."""
    path = home / ".biolake.lock"
    fd = _open_lock(home)
    started = time.monotonic()
    deadline = started + timeout
    next_word = started
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                now = time.monotonic()
                if now >= deadline:
                    raise LockTimeout(f"{path}: another biolake run (pid {_holder(fd)}) holds the warehouse "
                                      f"lock; gave up after {timeout:.0f} s") from None
                if on_wait is not None and timeout > 0 and now >= next_word:
                    waited = f"waited {now - started:.0f} s; " if next_word > started else ""
                    on_wait(f"another biolake run (pid {_holder(fd)}) is writing to {home}: {waited}waiting "
                            f"for it, at most {timeout:.0f} s in all (BIOLAKE_LOCK_TIMEOUT)")
                    next_word = now + remind_every
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
            on_wait(_holder(fd))
        finally:
            os.close(fd)
    with warehouse_lock(home, timeout=timeout, on_wait=None):
        pass
