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


def test_bench_formats_smoke(tmp_path, capsys):
    """The per-format parsing benchmark runs end to end on a tiny input (no timing asserted)."""
    import json

    from bench import bench_formats

    assert bench_formats.main(["--results", "3000", "--repeat", "1", "--json", str(tmp_path / "f.json")]) == 0
    figures = json.loads((tmp_path / "f.json").read_text(encoding="utf-8"))
    assert [f["format"] for f in figures] == ["csv", "hl7v2", "cda", "hprim"]
    # the same logical content: the same files, about the same results (CSV-only defects aside)
    assert len({f["files"] for f in figures}) == 1
    lo, hi = min(f["results"] for f in figures), max(f["results"] for f in figures)
    assert lo > 2900 and hi - lo < 0.01 * hi
    out = capsys.readouterr().out
    assert "| CR-BIO CDA |" in out and "time per result vs CSV" in out


def test_one_pass_lower_bound_smoke(tmp_path):
    """The single-pass lower bound runs on a tiny landing: every row kept, checks that find something."""
    from bench import landing, one_pass

    landing.build(tmp_path / "l", 3000, seed=3, batch=1000, progress=lambda _: None)
    res = one_pass.run(tmp_path / "l" / "landing", tmp_path / "work", repeat=1, log=lambda _: None)
    assert set(res["x_floor"]) == set(one_pass.VARIANTS) and all(v > 0 for v in res["x_floor"].values())
    assert res["rows"]["core"] == res["rows"]["core + duplicate rows"] == res["rows"]["floor"] > 3000
    found = res["found"]
    assert found["coded"] > 0.9 * res["rows"]["floor"]
    assert found["NIR_KEY"] > 0 and found["DATE_ORDER"] > 0 and found["duplicate_rows"] > 0
