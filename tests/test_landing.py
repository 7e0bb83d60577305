"""The landing area's odd entries (QA): an unreadable file or folder, a file outside any lab folder,
a file with a header and no result, office lock files. Each is either loaded or logged with its
reason, and the run goes on."""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import polars as pl
import pytest

from flows import process, steps
from flows.privacy import read_audit
from flows.settings import Settings
from tests.helpers import HEADER, line
from warehouse import catalog as cat


def _deliver(home: Path, rel: str, text: str) -> Path:
    path = home / "landing" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _ctx(home: Path, run_id: str = "t") -> steps.Context:
    return steps.Context.create(Settings(home=home), run_id)


def _denied(path) -> PermissionError:
    return PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))


@pytest.fixture
def unreadable(monkeypatch):
    """Files (by name) that cannot be read: tests run as root, whom chmod does not stop."""
    names: set[str] = set()
    real = steps.sha256_of

    def sha256_of(path):
        if Path(path).name in names:
            raise _denied(path)
        return real(path)

    monkeypatch.setattr(steps, "sha256_of", sha256_of)
    return names


@pytest.fixture
def unlistable(monkeypatch):
    """Folders that cannot be listed (os.scandir refused, as for a folder without read permission)."""
    folders: set[Path] = set()
    real = os.scandir

    def scandir(path="."):
        if Path(os.fsdecode(path)) in folders:
            raise _denied(path)
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    return folders


class _Warnings(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def flow_warnings():
    """The warnings the flows log (Prefect's run logger)."""
    handler = _Warnings()
    logger = logging.getLogger("prefect.flow_runs")
    logger.addHandler(handler)
    yield handler.messages
    logger.removeHandler(handler)


# --------------------------------------------------------------------------------------------
# an unreadable file
# --------------------------------------------------------------------------------------------
def test_an_unreadable_file_is_logged_failed_and_loaded_once_readable(tmp_path, unreadable):
    """QA: sha256_of raised PermissionError in discover and the whole run stopped (no lab loaded)."""
    home = tmp_path / "home"
    _deliver(home, "labo_alpha/a.csv", f"{HEADER}\n{line()}\n")
    _deliver(home, "labo_beta/locked.csv", f"{HEADER}\n{line(N_DEMANDE='D2')}\n")
    unreadable.add("locked.csv")
    ctx = _ctx(home, "r1")
    tickets = steps.discover(ctx)
    assert [(t.path, t.status) for t in tickets] == [("labo_alpha/a.csv", "new"), ("labo_beta/locked.csv", "unsafe")]
    locked = tickets[1]
    assert locked.reason == "FILE_UNREADABLE" and locked.source == "labo_beta"
    assert "labo_beta/locked.csv" in locked.detail and "Permission denied" in locked.detail
    assert str(home) not in locked.detail  # the OS error without the absolute path
    assert process.record_skipped(ctx, locked) == "FILE_UNREADABLE"
    log = ctx.wh.read(cat.FILE_LOG)
    assert log.select("path", "status", "reason_code").rows() == [("labo_beta/locked.csv", "failed", "FILE_UNREADABLE")]
    assert ctx.wh.read(cat.QUARANTINE)["reason_code"].to_list() == ["FILE_UNREADABLE"]
    assert read_audit(ctx.wh).filter(pl.col("kind") == "file_skipped").height == 1
    # still unreadable, unchanged: tried again, not logged twice
    assert [t.path for t in steps.discover(_ctx(home, "r2"))] == ["labo_alpha/a.csv"]
    # readable again: new, and it loads
    unreadable.clear()
    again = [t for t in steps.discover(_ctx(home, "r3")) if t.path == "labo_beta/locked.csv"]
    assert [(t.status, t.sha256 != "") for t in again] == [("new", True)]
    assert steps.ingest(ctx, again[0])["rows_in"] == 1


def test_a_file_unreadable_when_parsed_is_read_by_the_next_run(tmp_path, monkeypatch):
    """Readable when hashed, refused when parsed (its permissions changed during the run): logged
    as failed under an id of its own, so that the next run registers it again."""
    home = tmp_path / "home"
    _deliver(home, "labo_alpha/a.csv", f"{HEADER}\n{line()}\n")
    ctx = _ctx(home, "r1")
    steps.load_ref(ctx)
    loinc, mappings, _ = steps.load_terminology(ctx, None)
    work = process.Work(steps.read_ref(ctx, "postal_codes"), loinc, mappings)
    [ticket] = steps.discover(ctx)
    real = steps.detect_format

    def refused(p):
        raise _denied(p)

    monkeypatch.setattr(steps, "detect_format", refused)
    res = process.process_file(ctx, ticket, work)
    assert res["status"] == "failed" and res["reason"] == "FILE_UNREADABLE" and "a.csv" in res["detail"]
    log = ctx.wh.read(cat.FILE_LOG)
    assert log.select("path", "status", "reason_code").rows() == [("labo_alpha/a.csv", "failed", "FILE_UNREADABLE")]
    assert log["log_id"][0] != ticket.log_id
    assert not ctx.wh.holds(cat.RAW_RESULTS, ticket.file_id)
    monkeypatch.setattr(steps, "detect_format", real)
    [again] = steps.discover(_ctx(home, "r2"))
    assert (again.status, again.log_id, again.file_seq) == ("new", ticket.log_id, ticket.file_seq)
    res = process.process_file(ctx, again, work)
    assert res["status"] == "loaded" and res["rows_valid"] == 1
    assert ctx.wh.read(cat.QUARANTINE).height == 0  # the failure's quarantine row was replaced


def test_a_disk_error_of_the_warehouse_is_not_blamed_on_the_landing_file(tmp_path, monkeypatch):
    home = tmp_path / "home"
    _deliver(home, "labo_alpha/a.csv", f"{HEADER}\n{line()}\n")
    ctx = _ctx(home)
    [ticket] = steps.discover(ctx)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(ctx.wh.tmp))

    monkeypatch.setattr(ctx.wh, "write_partition", full)
    with pytest.raises(OSError, match="No space"):
        steps.ingest(ctx, ticket)


def test_one_unreadable_file_does_not_stop_the_run(prefect_harness, tmp_path, unreadable):
    from flows.pipeline import ingest_flow

    home = tmp_path / "home"
    _deliver(home, "labo_alpha/a.csv", f"{HEADER}\n{line()}\n")
    _deliver(home, "labo_beta/locked.csv", f"{HEADER}\n{line(N_DEMANDE='D2')}\n")
    unreadable.add("locked.csv")
    first = ingest_flow(home=str(home))
    assert first["totals"]["files_new"] == 1 and first["totals"]["files_failed"] == 1
    assert first["file_reasons"] == {"FILE_UNREADABLE": 1}
    assert "FILE_UNREADABLE" not in first["reasons"]  # rows, not files (QA: a file was counted as a row)
    # the run's file list (what the quality gate's run_files warning names) holds it as failed
    assert {(f["path"], f["status"]) for f in first["files"]} == {("labo_alpha/a.csv", "loaded"),
                                                                ("labo_beta/locked.csv", "failed")}
    unreadable.clear()
    second = ingest_flow(home=str(home))
    assert second["totals"]["files_new"] == 1 and second["totals"]["rows_valid"] == 1
    assert not second["totals"].get("files_failed")
    log = _ctx(home).wh.read(cat.FILE_LOG).sort("path", "status")
    assert log.select("path", "status").rows() == [
        ("labo_alpha/a.csv", "loaded"), ("labo_beta/locked.csv", "failed"), ("labo_beta/locked.csv", "loaded")]


def test_a_copy_of_a_file_unreadable_when_parsed_is_read_by_the_next_run(prefect_harness, tmp_path, monkeypatch):
    """b.csv, a copy of a.csv, is a re-delivery of it; a.csv cannot be read when parsed: the copy is
    not logged as a duplicate of content that was never loaded, and the next run loads it."""
    from flows.pipeline import ingest_flow

    home = tmp_path / "home"
    for name in ("a.csv", "b.csv"):
        _deliver(home, f"labo_alpha/{name}", f"{HEADER}\n{line()}\n")
    real = steps.detect_format

    def refused_a(p):
        if Path(p).name == "a.csv":
            raise _denied(p)
        return real(p)

    monkeypatch.setattr(steps, "detect_format", refused_a)
    first = ingest_flow(home=str(home))
    assert first["totals"] == {"files_failed": 1} and first["file_reasons"] == {"FILE_UNREADABLE": 1}
    assert first["reasons"] == {}
    assert not first["changed"]
    monkeypatch.setattr(steps, "detect_format", real)
    second = ingest_flow(home=str(home))
    assert second["totals"]["files_new"] == 1 and second["totals"]["files_duplicate"] == 1
    assert second["totals"]["rows_valid"] == 1
    log = _ctx(home).wh.read(cat.FILE_LOG).sort("path", "status")
    assert log.select("path", "status", "reason_code").rows() == [
        ("labo_alpha/a.csv", "failed", "FILE_UNREADABLE"), ("labo_alpha/a.csv", "loaded", None),
        ("labo_alpha/b.csv", "duplicate", None)]


# --------------------------------------------------------------------------------------------
# an unreadable folder
# --------------------------------------------------------------------------------------------
def test_an_unreadable_folder_is_logged_not_skipped_in_silence(tmp_path, unlistable):
    """QA: rglob passed over a folder it could not list: its files appeared nowhere."""
    home = tmp_path / "home"
    _deliver(home, "labo_alpha/a.csv", f"{HEADER}\n{line()}\n")
    _deliver(home, "labo_beta/2026/b.csv", f"{HEADER}\n{line(N_DEMANDE='D2')}\n")
    unlistable.add(home / "landing" / "labo_beta" / "2026")
    ctx = _ctx(home, "r1")
    tickets = steps.discover(ctx)
    assert [(t.path, t.status, t.reason) for t in tickets if t.status == "unsafe"] == [
        ("labo_beta/2026/", "unsafe", "FOLDER_UNREADABLE")]
    folder = tickets[[t.path for t in tickets].index("labo_beta/2026/")]
    assert folder.source == "labo_beta" and "Permission denied" in folder.detail and str(home) not in folder.detail
    assert [t.path for t in tickets if t.status == "new"] == ["labo_alpha/a.csv"]
    assert process.record_skipped(ctx, folder) == "FOLDER_UNREADABLE"
    log = ctx.wh.read(cat.FILE_LOG)
    assert log.select("path", "status", "reason_code").rows() == [("labo_beta/2026/", "failed", "FOLDER_UNREADABLE")]
    assert read_audit(ctx.wh).filter(pl.col("kind") == "file_skipped")["subject"].to_list() == ["labo_beta/2026/"]
    assert [t.path for t in steps.discover(_ctx(home, "r2"))] == ["labo_alpha/a.csv"]  # logged once
    unlistable.clear()
    assert [t.path for t in steps.discover(_ctx(home, "r3"))] == ["labo_alpha/a.csv", "labo_beta/2026/b.csv"]


def test_an_unreadable_landing_area_is_logged(tmp_path, unlistable):
    home = tmp_path / "home"
    _deliver(home, "labo_alpha/a.csv", f"{HEADER}\n{line()}\n")
    unlistable.add(home / "landing")
    [ticket] = steps.discover(_ctx(home))
    assert (ticket.path, ticket.reason, ticket.source) == ("./", "FOLDER_UNREADABLE", "_unknown")


def test_links_to_folders_are_refused_and_hidden_folders_skipped(tmp_path):
    home = tmp_path / "home"
    _deliver(home, "labo_alpha/a.csv", f"{HEADER}\n{line()}\n")
    _deliver(home, "labo_alpha/.upload/b.csv", f"{HEADER}\n{line(N_DEMANDE='D2')}\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "c.csv").write_text(f"{HEADER}\n{line(N_DEMANDE='D3')}\n", encoding="utf-8")
    (home / "landing" / "labo_alpha" / "linked").symlink_to(outside)
    tickets = steps.discover(_ctx(home))
    assert [(t.path, t.status, t.reason if t.status == "unsafe" else None) for t in tickets] == [
        ("labo_alpha/a.csv", "new", None), ("labo_alpha/linked", "unsafe", "NOT_A_FILE")]


# --------------------------------------------------------------------------------------------
# a file outside any lab folder, office lock files
# --------------------------------------------------------------------------------------------
def test_a_file_at_the_landing_root_is_refused_not_loaded_as_a_lab(tmp_path, monkeypatch):
    """QA: landing/rootlevel.csv was loaded as the lab '_unknown' and counted in the marts."""
    home = tmp_path / "home"
    root_file = _deliver(home, "rootlevel.csv", f"{HEADER}\n{line()}\n")
    _deliver(home, "labo_alpha/a.csv", f"{HEADER}\n{line(N_DEMANDE='D2')}\n")
    opened: list[str] = []
    real = steps.sha256_of
    monkeypatch.setattr(steps, "sha256_of", lambda p: opened.append(Path(p).name) or real(p))
    ctx = _ctx(home, "r1")
    tickets = steps.discover(ctx)
    assert opened == ["a.csv"]
    assert [(t.path, t.status) for t in tickets] == [("labo_alpha/a.csv", "new"), ("rootlevel.csv", "unsafe")]
    refused = tickets[1]
    assert refused.reason == "NOT_IN_LAB_FOLDER" and "landing/<lab>/" in refused.detail
    assert "rootlevel.csv" in refused.detail
    assert process.record_skipped(ctx, refused) == "NOT_IN_LAB_FOLDER"
    log = ctx.wh.read(cat.FILE_LOG)
    assert log.select("path", "status", "reason_code").rows() == [("rootlevel.csv", "failed", "NOT_IN_LAB_FOLDER")]
    assert ctx.wh.partitions(cat.RAW_RESULTS) == []
    assert [t.path for t in steps.discover(_ctx(home, "r2"))] == ["labo_alpha/a.csv"]  # logged once
    root_file.write_text(f"{HEADER}\n{line()}\n{line(N_DEMANDE='D3')}\n", encoding="utf-8")  # a new delivery
    assert [(t.path, t.reason) for t in steps.discover(_ctx(home, "r3")) if t.status == "unsafe"] == [
        ("rootlevel.csv", "NOT_IN_LAB_FOLDER")]


@pytest.mark.parametrize("name", ["~$resultats.xlsx", "~$resultats.csv"])
def test_office_lock_files_are_skipped_like_hidden_files(tmp_path, name):
    home = tmp_path / "home"
    _deliver(home, "labo_alpha/a.csv", f"{HEADER}\n{line()}\n")
    (home / "landing" / "labo_alpha" / name).write_bytes(b"\x0bmarie  \x00\x00\x00")
    (home / "landing" / name).write_bytes(b"\x0bmarie  \x00\x00\x00")
    ctx = _ctx(home)
    assert [t.path for t in steps.discover(ctx)] == ["labo_alpha/a.csv"]
    assert ctx.wh.read(cat.FILE_LOG).height == 0


# --------------------------------------------------------------------------------------------
# a file with a header and no result
# --------------------------------------------------------------------------------------------
def test_a_header_only_file_is_not_owed_by_every_later_run(prefect_harness, tmp_path, flow_warnings):
    """QA: a file of a header and no row got a coded partition and no fact partition, and every
    later run warned that it was processed by an interrupted run and published it again."""
    from flows.pipeline import ingest_flow, publish_flow

    home = tmp_path / "home"
    _deliver(home, "labo_alpha/a.csv", f"{HEADER}\n{line()}\n")
    _deliver(home, "labo_alpha/nothing_today.csv", f"{HEADER}\n")
    first = ingest_flow(home=str(home))
    assert first["totals"]["files_new"] == 2 and first["totals"]["rows_in"] == 1
    warned = {f["path"]: f["warnings"] for f in first["files"]}
    assert warned["labo_alpha/a.csv"] is None and warned["labo_alpha/nothing_today.csv"].startswith("no result")
    publish_flow(home=str(home), changed=first["changed"])
    assert steps.owed_publication(_ctx(home)) == []
    flow_warnings.clear()
    second = ingest_flow(home=str(home))
    assert second["changed"] == [] and second["totals"] == {}
    assert not [m for m in flow_warnings if "interrupted run" in m], flow_warnings
    log = _ctx(home).wh.read(cat.FILE_LOG).sort("path")
    assert log.select("path", "status", "rows_in").rows() == [
        ("labo_alpha/a.csv", "loaded", 1), ("labo_alpha/nothing_today.csv", "loaded", 0)]


def test_purge_keeps_a_landing_file_it_cannot_read(prefect_harness, tmp_path, monkeypatch):
    """`biolake purge` deletes the landing files whose bytes are still the logged ones; one it cannot
    read (FILE_UNREADABLE rows made that reachable) is kept, not a crash."""
    from datetime import datetime, timedelta

    from flows import privacy
    from flows.pipeline import ingest_flow

    home = tmp_path / "home"
    kept = _deliver(home, "labo_alpha/a.csv", f"{HEADER}\n{line()}\n")
    gone = _deliver(home, "labo_beta/b.csv", f"{HEADER}\n{line(N_DEMANDE='D2')}\n")
    ingest_flow(home=str(home))
    real = privacy.file_sha256

    def file_sha256(path):
        if Path(path).name == kept.name:
            raise _denied(path)
        return real(path)

    monkeypatch.setattr(privacy, "file_sha256", file_sha256)
    out = privacy.purge_identities(_ctx(home), older_than_days=0, now=datetime.now() + timedelta(days=1))
    assert out["landing_files_deleted"] == 1
    assert kept.exists() and not gone.exists()


def test_a_file_still_being_written_is_left_for_the_next_run(tmp_path, monkeypatch):
    """QA: a file still being copied was loaded half-written, then again once complete. With
    BIOLAKE_LANDING_SETTLE_SECONDS, a file modified too recently is neither read nor logged."""
    import time

    home = tmp_path / "home"
    old = _deliver(home, "labo_alpha/done.csv", f"{HEADER}\n{line()}\n")
    os.utime(old, (time.time() - 600, time.time() - 600))
    _deliver(home, "labo_alpha/copying.csv", f"{HEADER}\n{line(N_DEMANDE='D2')}\n")
    monkeypatch.setenv("BIOLAKE_LANDING_SETTLE_SECONDS", "120")
    tickets = steps.discover(_ctx(home))
    assert {(t.path, t.status) for t in tickets} == {("labo_alpha/done.csv", "new"),
                                                     ("labo_alpha/copying.csv", "settling")}
    settling = next(t for t in tickets if t.status == "settling")
    assert "copying.csv" in settling.detail and "next run" in settling.detail and not settling.log_id
    monkeypatch.setenv("BIOLAKE_LANDING_SETTLE_SECONDS", "0")  # the default: every file is read
    assert {t.status for t in steps.discover(_ctx(home))} == {"new"}


def test_settling_leaves_files_already_loaded_alone(prefect_harness, tmp_path, monkeypatch):
    """QA: on a landing area copied with fresh times, every file already loaded was named as 'still
    being written'. A file logged at its size is hashed as usual (and skipped)."""
    from flows.pipeline import ingest_flow

    home = tmp_path / "home"
    _deliver(home, "labo_alpha/done.csv", f"{HEADER}\n{line()}\n")
    ingest_flow(home=str(home))
    monkeypatch.setenv("BIOLAKE_LANDING_SETTLE_SECONDS", "120")
    assert steps.discover(_ctx(home)) == []  # loaded before, modified just now: neither settling nor new
    grown = _deliver(home, "labo_alpha/done.csv", f"{HEADER}\n{line()}\n{line(N_DEMANDE='D9')}\n")
    [t] = steps.discover(_ctx(home))  # the same name growing: being written again
    assert t.status == "settling" and t.path == "labo_alpha/done.csv" and grown.exists()


def test_the_run_summary_counts_files_not_loaded_apart_from_quarantined_rows(prefect_harness, tmp_path, capsys):
    """QA: the summary's "quarantine by reason" table (rows) counted a refused file as a row."""
    from flows.cli import print_summary
    from flows.pipeline import pipeline

    home = tmp_path / "home"
    _deliver(home, "rootlevel.csv", f"{HEADER}\n{line()}\n")
    _deliver(home, "labo_alpha/a.csv", f"{HEADER}\n{line(N_DEMANDE='D2')}\n{line(N_DEMANDE='D3', STATUT='Z')}\n")
    summary = pipeline(home=str(home), reports=False)
    assert summary["failed_file_reasons"] == {"NOT_IN_LAB_FOLDER": 1}
    assert "NOT_IN_LAB_FOLDER" not in summary["quarantine_reasons"] and summary["quarantine_reasons"]
    print_summary(summary)
    out = capsys.readouterr().out
    assert "files not loaded, by reason" in out and "NOT_IN_LAB_FOLDER" in out


def test_files_loaded_with_a_warning_are_named_by_the_run(prefect_harness, tmp_path, capsys, flow_warnings):
    """QA: a CSV of a header alone was "loaded" with 0 rows and no warning, and a file with FINESS
    440000009 (fails its Luhn check) loaded with no flag. Both load; the run's log, its summary and
    the quality gate name them."""
    from flows.artifacts import summary_markdown
    from flows.cli import print_summary
    from flows.pipeline import pipeline

    home = tmp_path / "home"
    _deliver(home, "labo_alpha/a.csv", f"{HEADER}\n{line()}\n")
    _deliver(home, "labo_alpha/nothing_today.csv", f"{HEADER}\n")
    _deliver(home, "labo_new/b.csv", f"{HEADER}\n{line(FINESS='440000009', N_DEMANDE='D2')}\n")
    summary = pipeline(home=str(home), reports=False)
    assert (summary["files_new"], summary["rows_in"], summary["rows_valid"]) == (3, 2, 2)
    warned = {f["path"]: f["warnings"] for f in summary["files"] if f.get("warnings")}
    assert set(warned) == {"labo_alpha/nothing_today.csv", "labo_new/b.csv"}
    assert warned["labo_alpha/nothing_today.csv"].startswith("no result")
    assert "440000009 (wrong check digit) on 1 row(s)" in warned["labo_new/b.csv"]
    assert [m for m in flow_warnings if "nothing_today.csv: no result" in m]
    assert [m for m in flow_warnings if "labo_new/b.csv: FINESS not valid" in m]
    gate = summary["quality_gate"]
    assert gate["ok"]
    named = " | ".join(w for w in gate["warnings"] if w.startswith("landing_files"))
    assert "path=labo_alpha/nothing_today.csv, reason_code=NO_RESULT" in named, gate["warnings"]
    assert "path=labo_new/b.csv, reason_code=FINESS_INVALID" in named, gate["warnings"]
    print_summary(summary)
    out = capsys.readouterr().out
    assert "files loaded with a warning" in out and "nothing_today.csv" in out and "440000009" in out
    assert "labo_new/b.csv" in summary_markdown(summary, {}, {})
    stg = _ctx(home).wh.read(cat.STG_RESULTS)
    assert dict(zip(stg["lab_finess"], stg["dq_flags"])) == {"750000002": None, "440000009": "FINESS_INVALID"}


def test_a_run_hashes_again_only_the_landing_files_that_changed(tmp_path, monkeypatch):
    """The landing area was hashed whole at every run (minutes a run for years of deliveries).
    A file whose size, times, inode and device are unchanged keeps its digest; a file rewritten in
    place, even with its size and modification time put back, is read again (its change time moved)."""
    home = tmp_path / "home"
    a = _deliver(home, "labo_alpha/a.csv", f"{HEADER}\n{line(N_DEMANDE='D1')}\n")
    _deliver(home, "labo_alpha/b.csv", f"{HEADER}\n{line(N_DEMANDE='D2')}\n")
    reads: list[str] = []
    real = steps.sha256_of
    monkeypatch.setattr(steps, "sha256_of", lambda p: reads.append(Path(p).name) or real(p))

    def new_files():
        return {t.path: t.file_id for t in steps.discover(_ctx(home)) if t.status == "new"}

    first = new_files()  # just written: not kept yet (a write in the same clock tick could hide)
    assert sorted(reads) == ["a.csv", "b.csv"] and len(first) == 2
    assert new_files() == first and sorted(reads) == ["a.csv", "a.csv", "b.csv", "b.csv"]
    monkeypatch.setattr(steps.LandingHashes, "FRESH_NS", 0)  # as if they were written long ago
    reads.clear()
    new_files()
    assert sorted(reads) == ["a.csv", "b.csv"]
    reads.clear()
    assert new_files() == first and reads == []  # nothing changed: nothing read
    st = a.stat()
    a.write_text(f"{HEADER}\n{line(N_DEMANDE='D3')}\n", encoding="utf-8")  # same size, another result
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))  # the modification time put back
    assert a.stat().st_size == st.st_size and a.stat().st_mtime_ns == st.st_mtime_ns
    again = new_files()
    assert reads == ["a.csv"] and again["labo_alpha/a.csv"] != first["labo_alpha/a.csv"]
    assert again["labo_alpha/b.csv"] == first["labo_alpha/b.csv"]
    (home / "warehouse" / "landing_hashes.json").write_text("{not json")  # a damaged cache is no cache
    reads.clear()
    assert new_files() == again and sorted(reads) == ["a.csv", "b.csv"]
