"""The HL7 benchmark script runs end to end on a tiny input (no timing asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_hl7_smoke():
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_hl7.py"), "--messages", "200", "--sample", "50"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "generated 200 messages" in out
    assert "biolake hl7v2" in out and "python-hl7" in out and "ratio" in out
    assert "50/50 sampled messages identical" in out


def test_work_time_of_parallel_steps_is_the_union_of_their_intervals():
    """Two worker threads working at once count once against the wall time (overlaps merged)."""
    from bench.timers import WorkTimer

    w = WorkTimer()
    w.intervals = [(0.0, 2.0), (1.0, 3.0), (5.0, 6.0), (5.5, 5.7), (10.0, 10.0)]
    assert w.covered_seconds() == 4.0
    w.intervals = []
    assert w.covered_seconds() == 0.0
