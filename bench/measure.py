"""Run a command as a child process and measure its wall time and peak resident memory.

Two memory figures: the peak of the child itself (``ru_maxrss`` from ``wait4``: the largest of the
child and of the processes it waited for) and the peak of the sum over the child's process tree,
sampled every 0.1 s with psutil (the embedded Prefect API server is a second process).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass
class Measured:
    returncode: int
    seconds: float
    peak_rss_bytes: int  # the child process (ru_maxrss)
    peak_tree_rss_bytes: int  # the child and its descendants, summed, sampled


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_measured(cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
                 log: Path | None = None, interval: float = 0.1) -> Measured:
    out = log.open("wb") if log is not None else subprocess.DEVNULL
    try:
        t0 = time.perf_counter()
        # its own process group, so that an interrupted benchmark stops the child and what it started
        # (the embedded Prefect server)
        child = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        peak = [0]
        done = threading.Event()

        def sample() -> None:
            try:
                proc = psutil.Process(child.pid)
            except psutil.Error:
                return
            while not done.is_set():
                peak[0] = max(peak[0], _tree_rss(proc))
                done.wait(interval)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            _, status, usage = os.wait4(child.pid, 0)
        except BaseException:
            done.set()
            os.killpg(child.pid, signal.SIGTERM)
            child.wait()
            raise
        seconds = time.perf_counter() - t0
        done.set()
        sampler.join()
        child.returncode = os.waitstatus_to_exitcode(status)
    finally:
        if log is not None:
            out.close()
    return Measured(child.returncode, seconds, usage.ru_maxrss * 1024, max(peak[0], usage.ru_maxrss * 1024))
