"""Operations: incremental runs, a run killed by SIGKILL, the warehouse lock, a Dask cluster."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import polars as pl
import pytest

from flows.lock import LockTimeout, warehouse_lock
from tests.helpers import assert_same_tables, copy_home, query, snapshot

REPO = Path(__file__).resolve().parent.parent


def run(home: Path) -> dict:
    from flows.pipeline import pipeline

    return pipeline(home=str(home))


def landing_files(home: Path) -> list[Path]:
    return sorted(p for p in (home / "landing").rglob("*") if p.is_file())


def test_late_files_recompute_only_what_they_touch(clean_run, generated, tmp_path):
    """Hold back the last three delivery days, run, then deliver them: the warehouse equals a clean
    run, and only the files and SI-DEP days the late files touch were recomputed."""
    home = tmp_path / "home"
    shutil.copytree(generated, home)
    files = landing_files(home)
    last_days = sorted({p.stem.split("_")[2] for p in files})[-3:]
    late = [p for p in files if p.stem.split("_")[2] in last_days]
    held = tmp_path / "held"
    held.mkdir()
    for p in late:
        (held / p.parent.name).mkdir(exist_ok=True)
        shutil.move(p, held / p.parent.name / p.name)
    first = run(home)
    daily_before = query(home, "SELECT * FROM marts.sidep_daily")
    for p in late:
        shutil.move(held / p.parent.name / p.name, p)
    second = run(home)
    assert second["files_new"] + second["files_duplicate"] == len(late)
    inc = second["incremental"]
    total_files = first["files_new"] + second["files_new"]
    assert 0 < inc["fct_files_rewritten"] < total_files, inc
    days = pl.read_csv(home / "truth" / "sidep_daily.csv", separator=";", infer_schema=False)["jour"].n_unique()
    # the days whose counts moved were recomputed, and not every day was
    daily_after = query(home, "SELECT * FROM marts.sidep_daily")
    moved = daily_after.join(daily_before, on=daily_after.columns, how="anti", nulls_equal=True)["jour"].n_unique()
    assert 0 < moved <= inc["sidep_days_recomputed"] < days, (moved, inc)
    # same content as processing everything at once (file_seq differs: files arrived in another order)
    got, want = snapshot(home, drop=("file_seq", "log_id")), snapshot(clean_run[0], drop=("file_seq", "log_id"))
    assert_same_tables(got, want, ["marts.fct_lab_results", "marts.sidep_daily", "quality.quarantine",
                                   "staging.sidep_person_days", "quality.unmapped_backlog"])


def test_a_run_killed_midway_then_rerun_equals_a_clean_run(clean_run, generated, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(generated, home)
    env = dict(os.environ, BIOLAKE_HOME=str(home), PREFECT_HOME=str(tmp_path / "prefect"))
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "run"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    log_dir = home / "warehouse" / "quality" / "file_log"
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            if log_dir.exists() and len(list(log_dir.glob("*.parquet"))) >= 15:
                break
            if proc.poll() is not None:
                pytest.fail(f"the run ended (code {proc.returncode}) before it could be killed")
            time.sleep(0.05)
        else:
            pytest.fail("the run did not register 15 files in time")
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (home / "biolake.duckdb").exists() or True  # may or may not exist: nothing relies on it
    run(home)
    assert_same_tables(snapshot(home), snapshot(clean_run[0]))


def test_one_writer_at_a_time(tmp_path):
    holding, release = threading.Event(), threading.Event()

    def holder():
        with warehouse_lock(tmp_path, timeout=5):
            holding.set()
            release.wait(10)

    th = threading.Thread(target=holder)
    th.start()
    holding.wait(5)
    try:
        with pytest.raises(LockTimeout, match="holds the warehouse lock"):
            with warehouse_lock(tmp_path, timeout=0.3):
                pass
    finally:
        release.set()
        th.join()
    with warehouse_lock(tmp_path, timeout=1):  # free again
        pass


def test_dask_cluster_gives_the_same_warehouse(clean_run, generated, tmp_path, monkeypatch):
    from distributed import LocalCluster

    home = tmp_path / "home"
    shutil.copytree(generated, home)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        monkeypatch.setenv("BIOLAKE_DASK_ADDRESS", cluster.scheduler_address)
        summary = run(home)
    assert summary["files_new"] == clean_run[1]["files_new"]
    assert_same_tables(snapshot(home), snapshot(clean_run[0]))
