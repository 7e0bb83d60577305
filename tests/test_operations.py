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
    run(home)
    assert_same_tables(snapshot(home), snapshot(clean_run[0]))


def _held_lock(home):
    """Hold the home's lock from another thread until the returned release() is called."""
    holding, release = threading.Event(), threading.Event()

    def holder():
        with warehouse_lock(home, timeout=5):
            holding.set()
            release.wait(10)

    th = threading.Thread(target=holder)
    th.start()
    assert holding.wait(5)

    def done():
        release.set()
        th.join()
    return done


def test_one_writer_at_a_time(tmp_path):
    done = _held_lock(tmp_path)
    try:
        with pytest.raises(LockTimeout, match="holds the warehouse lock"):
            with warehouse_lock(tmp_path, timeout=0.3):
                pass
    finally:
        done()
    with warehouse_lock(tmp_path, timeout=1):  # free again
        pass


def test_a_run_waiting_for_the_lock_says_so_and_repeats_it(tmp_path, capsys):
    """QA crash: a run waiting inside the flow said nothing for up to BIOLAKE_LOCK_TIMEOUT."""
    done = _held_lock(tmp_path)
    try:
        with pytest.raises(LockTimeout):
            with warehouse_lock(tmp_path, timeout=4, remind_every=1.5):
                pass
    finally:
        done()
    said = [line for line in capsys.readouterr().err.splitlines() if "another biolake run" in line]
    assert len(said) >= 2, said  # at once, then again
    assert f"pid {os.getpid()}" in said[0] and "at most 4 s in all (BIOLAKE_LOCK_TIMEOUT)" in said[0]
    assert "waited" not in said[0] and "waited 0 s" not in said[-1] and "waited" in said[-1]
    with warehouse_lock(tmp_path, timeout=0.3):  # free again, and silent when free
        pass
    assert capsys.readouterr().err == ""


def test_a_flow_waiting_for_the_lock_writes_it_in_its_run_log(prefect_harness, tmp_path):
    from prefect import flow

    messages = []

    @flow
    def waiting_flow():
        import logging

        class Keep(logging.Handler):
            def emit(self, record):
                messages.append((record.name, record.levelname, record.getMessage()))
        handler = Keep()
        logging.getLogger("prefect.flow_runs").addHandler(handler)
        try:
            with pytest.raises(LockTimeout):
                with warehouse_lock(tmp_path, timeout=0.5):
                    pass
        finally:
            logging.getLogger("prefect.flow_runs").removeHandler(handler)

    done = _held_lock(tmp_path)
    try:
        waiting_flow()
    finally:
        done()
    assert [m for m in messages if m[1] == "WARNING" and "another biolake run" in m[2]], messages


def test_dask_cluster_gives_the_same_warehouse(clean_run, generated, tmp_path, monkeypatch):
    from distributed import LocalCluster

    home = tmp_path / "home"
    shutil.copytree(generated, home)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        monkeypatch.setenv("BIOLAKE_DASK_ADDRESS", cluster.scheduler_address)
        summary = run(home)
    assert summary["files_new"] == clean_run[1]["files_new"]
    assert_same_tables(snapshot(home), snapshot(clean_run[0]))


def test_files_an_interrupted_run_processed_are_published_by_the_next(clean_run, generated, tmp_path):
    """QA: a run killed after logging new files as loaded but before publishing them lost their rows
    for good (the next run skipped them as seen, and only published its own files). Here a first run
    loads all but one lab; the second is stopped after processing that lab (its ingest flow alone,
    the state a kill before the publication leaves, with or without the record of what it owed)."""
    from flows import steps
    from flows.pipeline import ingest_flow
    from flows.settings import Settings

    home = tmp_path / "home"
    shutil.copytree(generated, home)
    held = tmp_path / "held"
    shutil.move(home / "landing" / "labo_beta", held)
    run(home)
    shutil.move(held, home / "landing" / "labo_beta")
    out = ingest_flow(home=str(home))
    assert out["changed"] and out["totals"]["files_new"] == len(out["changed"])
    ctx = steps.Context.create(Settings(home=home), "check")
    assert steps.owed_publication(ctx) == sorted(out["changed"])
    steps.save_owed(ctx, [])  # the record lost too (killed before it was written): found all the same
    assert steps.owed_publication(ctx) == sorted(out["changed"])
    second = run(home)
    assert second["files_new"] == 0 and steps.owed_publication(ctx) == []
    got, want = snapshot(home, drop=("file_seq", "log_id")), snapshot(clean_run[0], drop=("file_seq", "log_id"))
    assert_same_tables(got, want, ["marts.fct_lab_results", "marts.sidep_daily", "quality.quarantine",
                                   "staging.sidep_person_days"])


def test_a_file_gone_before_it_is_read_is_read_when_it_is_back(tmp_path):
    """QA: a landing file moved away mid-run aborted the run; now it is skipped (not logged) and read
    by the next run that finds it."""
    from flows import steps
    from flows.settings import Settings
    from tests.helpers import HEADER, line

    landing = tmp_path / "home" / "landing" / "labo_alpha"
    landing.mkdir(parents=True)
    (landing / "a.csv").write_text(f"{HEADER}\n{line()}\n", encoding="utf-8")
    ctx = steps.Context.create(Settings(home=tmp_path / "home"), "r1")
    [ticket] = steps.discover(ctx)
    shutil.move(landing / "a.csv", tmp_path / "a.csv")
    got = steps.ingest(ctx, ticket)
    assert got["failed"] == "FILE_GONE" and "a.csv" in got["detail"]
    assert ctx.wh.read(steps.cat.FILE_LOG).height == 0
    shutil.move(tmp_path / "a.csv", landing / "a.csv")
    [again] = steps.discover(steps.Context.create(Settings(home=tmp_path / "home"), "r2"))
    assert again.status == "new" and again.file_seq == ticket.file_seq
    assert steps.ingest(ctx, again)["rows_in"] == 1


def test_a_copy_of_a_file_gone_mid_run_is_read_by_the_next_run(prefect_harness, tmp_path, monkeypatch):
    """QA: b.csv, a copy of a.csv, was logged as its duplicate; a.csv then left the landing area
    before it was read, and the content was never loaded."""
    from flows import steps
    from flows.pipeline import ingest_flow
    from tests.helpers import HEADER, line

    home = tmp_path / "home"
    landing = home / "landing" / "labo_alpha"
    landing.mkdir(parents=True)
    for name in ("a.csv", "b.csv"):
        (landing / name).write_text(f"{HEADER}\n{line()}\n", encoding="utf-8")
    real_ingest = steps.ingest

    def ingest_after_a_leaves(ctx, t, keep=None):
        if t.path.endswith("a.csv") and (landing / "a.csv").exists():
            shutil.move(landing / "a.csv", tmp_path / "a.csv")
        return real_ingest(ctx, t, keep=keep)

    monkeypatch.setattr(steps, "ingest", ingest_after_a_leaves)
    first = ingest_flow(home=str(home))
    assert first["totals"].get("files_failed") == 1 and not first["changed"]
    assert "FILE_GONE" not in first["reasons"] and "FILE_GONE" not in first["file_reasons"]
    assert not first["totals"].get("files_duplicate")
    monkeypatch.setattr(steps, "ingest", real_ingest)
    second = ingest_flow(home=str(home))
    assert second["totals"]["files_new"] == 1 and second["totals"]["rows_valid"] == 1
    log = steps.Context.create(steps.Settings(home=home), "check").wh.read(steps.cat.FILE_LOG)
    assert log.select("path", "status").rows() == [("labo_alpha/b.csv", "loaded")]


def _children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of the processes whose parent is ``pid`` (Linux /proc)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            out.append((int(d.name), cmd))
    return out


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from Linux /proc")
def test_a_killed_run_leaves_no_prefect_server_behind(tmp_path):
    """QA: each `kill -9` of `biolake run` left its embedded Prefect server running, an orphan."""
    from tests.helpers import HEADER, line

    home = tmp_path / "home"
    (home / "landing" / "labo_alpha").mkdir(parents=True)
    (home / "landing" / "labo_alpha" / "day1.csv").write_text(HEADER + "\n" + line() + "\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_HOME")}
    env.update(BIOLAKE_HOME=str(home), PREFECT_HOME=str(tmp_path / "prefect"))
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "run"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = None
    try:
        deadline = time.monotonic() + 180
        while server is None and time.monotonic() < deadline and proc.poll() is None:
            server = next((pid for pid, cmd in _children(proc.pid) if "create_app" in cmd), None)
            time.sleep(0.05)
        assert server is not None, f"no embedded Prefect server seen (run ended with {proc.poll()})"
        proc.kill()  # the run only: its children are not signalled
        proc.wait(timeout=30)
        deadline = time.monotonic() + 20
        while _alive(server) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(server), "the embedded Prefect server outlived its killed run"
    finally:
        if proc.poll() is None:
            proc.kill()
        if server is not None and _alive(server):
            os.kill(server, signal.SIGKILL)


def test_analyst_db_waits_for_a_run_holding_the_lock(clean_run, tmp_path, monkeypatch):
    """A run moves files (rewrites, compaction) and rebuilds analyst.duckdb itself: `biolake
    analyst-db` built meanwhile could name files that are gone. It takes the lock, like purge."""
    from typer.testing import CliRunner

    from flows.cli import app

    home = copy_home(clean_run[0], tmp_path / "home")
    assert CliRunner().invoke(app, ["analyst-db", "--home", str(home)]).exit_code == 0
    db = home / "analyst.duckdb"
    before = db.stat().st_mtime_ns
    monkeypatch.setenv("BIOLAKE_LOCK_TIMEOUT", "0.5")
    with warehouse_lock(home.resolve(), timeout=1):  # a run writing to the home
        out = CliRunner().invoke(app, ["analyst-db", "--home", str(home)])
    assert isinstance(out.exception, LockTimeout), out.output
    assert db.stat().st_mtime_ns == before
    out = CliRunner().invoke(app, ["analyst-db", "--home", str(home)])
    assert out.exit_code == 0, out.output
    assert db.stat().st_mtime_ns > before


def test_reports_wait_for_a_run_holding_the_lock(clean_run, tmp_path, monkeypatch):
    """`biolake report` reads the marts a run rewrites and writes quality tables (the suppression
    cache, the gate's results): outside a run it takes the lock, and gives up in one line."""
    from typer.testing import CliRunner

    from flows.cli import app

    home = copy_home(clean_run[0], tmp_path / "home")
    monkeypatch.setenv("BIOLAKE_LOCK_TIMEOUT", "0.5")
    reports = home / "reports"
    before = {p: p.stat().st_mtime_ns for p in reports.glob("*.html")}
    with warehouse_lock(home.resolve(), timeout=1):  # a run writing to the home
        for cmd in (["weekly"], ["dq"], ["all"], ["gate"]):
            out = CliRunner().invoke(app, ["report", *cmd, "--home", str(home)])
            assert isinstance(out.exception, LockTimeout), (cmd, out.output)
    assert {p: p.stat().st_mtime_ns for p in reports.glob("*.html")} == before
    out = CliRunner().invoke(app, ["report", "dq", "--home", str(home)])
    assert out.exit_code == 0, out.output
    assert (reports / "data_quality.html").stat().st_mtime_ns > before[reports / "data_quality.html"]
