"""The audit trail (issue 8, item 5): quality.audit_events, one small Parquet file per event."""

from __future__ import annotations

import hashlib
import json
import re
from concurrent.futures import ThreadPoolExecutor

import polars as pl
import pytest

from flows.privacy import AUDIT_KINDS, audit, audit_file, producer, read_audit
from flows.settings import Settings
from flows.steps import Context
from warehouse import catalog as cat
from warehouse.catalog_privacy import AUDIT_EVENTS


@pytest.fixture
def ctx(tmp_path) -> Context:
    return Context.create(Settings(home=tmp_path / "home"), "run-123")


def test_audit_events_is_declared_in_the_catalog():
    assert cat.table("quality.audit_events") is AUDIT_EVENTS
    assert not AUDIT_EVENTS.identifying and AUDIT_EVENTS.key == ("event_id",)
    assert AUDIT_EVENTS.schema.names() == ["event_id", "at", "run_id", "kind", "subject", "sha256", "producer",
                                          "details"]
    assert {"run_started", "run_finished", "file_ingested", "file_skipped", "export_written", "purge"} <= set(AUDIT_KINDS)


def test_each_event_is_one_row_with_its_producer(ctx):
    first = audit(ctx, "run_started", str(ctx.wh.home), details={"files": 3})
    second = audit(ctx, "file_ingested", "labo_alpha/labo_alpha_20261102.csv", sha256="ab" * 32,
                   details={"rows_in": 10, "format": "csv"})
    events = read_audit(ctx.wh)
    assert events["event_id"].to_list() == [first, second]  # ids sort in time order
    assert events["run_id"].to_list() == ["run-123", "run-123"]
    assert events["kind"].to_list() == ["run_started", "file_ingested"]
    assert json.loads(events["details"][1]) == {"format": "csv", "rows_in": 10}
    assert events["sha256"].to_list() == [None, "ab" * 32]
    prod = events["producer"][0]
    assert re.match(r"biolake \d+\.\d+\.\d+", prod)
    assert len(ctx.wh.files(AUDIT_EVENTS)) == 2  # appended, never rewritten


def test_producer_names_the_code_and_the_flow_and_task(prefect_harness):
    from prefect import flow, task

    from flows.privacy import git_commit

    @task(name="export-things")
    def inner() -> str:
        return producer()

    @flow(name="biolake-test-audit")
    def outer() -> tuple[str, str]:
        return producer(), inner()

    in_flow, in_task = outer()
    assert in_flow.endswith(" biolake-test-audit") and in_task.endswith(" biolake-test-audit/export-things")
    commit = git_commit()
    if commit is not None:  # running from a checkout: the commit is named
        assert re.fullmatch(r"[0-9a-f]{40}", commit) and f"git {commit[:12]}" in in_task
    assert producer(by="purge").endswith(" purge")


def test_audit_file_hashes_the_export(ctx):
    out = ctx.wh.home / "exports" / "sp-pos-quot-dep-covid19.csv"
    out.parent.mkdir(parents=True)
    out.write_bytes(b"dep;jour;P;T;cl_age90;pop\n75;2026-11-02;3;40;0;2100000\n")
    audit_file(ctx, "export_written", out, details={"rows": 1})
    ev = read_audit(ctx.wh).row(0, named=True)
    assert ev["subject"] == "exports/sp-pos-quot-dep-covid19.csv"
    assert ev["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()


def test_unknown_kinds_and_identities_are_refused(ctx):
    with pytest.raises(ValueError):
        audit(ctx, "file_loaded", "x")
    for key in ("patient_nir", "family_name", "birth_date", "raw_text"):
        with pytest.raises(ValueError):
            audit(ctx, "file_ingested", "x", details={key: "whatever"})
    assert read_audit(ctx.wh).is_empty()


def test_concurrent_writers_lose_no_event(ctx):
    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(lambda i: audit(ctx, "file_ingested", f"lab/f{i}.csv", details={"i": i}), range(200)))
    events = read_audit(ctx.wh)
    assert events.height == 200 and events["event_id"].n_unique() == 200 and set(ids) == set(events["event_id"])


def test_analysts_see_the_trail_without_landing_file_names(ctx):
    from warehouse.analyst import build_analyst_db, connect_analyst

    audit(ctx, "file_ingested", "labo_alpha/DUPONT_Marie_20261102.hl7", sha256="cd" * 32)
    audit(ctx, "export_written", "exports/sp-pos-quot-dep-covid19.csv", sha256="ef" * 32)
    con = connect_analyst(build_analyst_db(ctx.wh))
    try:
        rows = con.execute("SELECT kind, subject, sha256 FROM quality.audit_events ORDER BY event_id").fetchall()
    finally:
        con.close()
    assert rows == [("file_ingested", None, "cd" * 32),
                    ("export_written", "exports/sp-pos-quot-dep-covid19.csv", "ef" * 32)]


def test_analyst_quality_tables_hide_file_names(ctx):
    """quality.file_log / quarantine: path and duplicate_of hidden, the file name cut out of details."""
    from warehouse.analyst import build_analyst_db, connect_analyst

    row = {c.name: None for c in cat.FILE_LOG.columns} | {
        "log_id": "l1", "path": "labo_alpha/DUPONT_Marie.csv", "source": "labo_alpha", "file_id": "f1",
        "status": "failed", "reason_code": "HEADER_INVALID", "detail": "DUPONT_Marie.csv: line 1: header lacks NIR"}
    # QA: a re-delivery's detail names the first copy, which is in duplicate_of, not in path
    dup = row | {"log_id": "l2", "path": "labo_alpha/resent.csv", "file_id": "f2", "status": "duplicate",
                 "reason_code": None, "duplicate_of": "labo_alpha/DUPONT_Marie_bis.csv",
                 "detail": "same content as labo_alpha/DUPONT_Marie_bis.csv"}
    ctx.wh.write_partition_file(cat.FILE_LOG, "l1", pl.DataFrame([row, dup], schema=cat.FILE_LOG.schema))
    con = connect_analyst(build_analyst_db(ctx.wh))
    try:
        cols = [r[0] for r in con.execute("DESCRIBE quality.file_log").fetchall()]
        details = [r[0] for r in con.execute("SELECT detail FROM quality.file_log ORDER BY log_id").fetchall()]
    finally:
        con.close()
    assert "path" not in cols and "duplicate_of" not in cols and "source" in cols
    assert details == ["<file>: line 1: header lacks NIR", "same content as labo_alpha/<file>"]


def test_analysts_never_see_a_folder_below_the_lab_folder(ctx, monkeypatch):
    """QA ledger F2 (HIGH): a sub-folder named after a patient (``labo_alpha/ROUX Denis 05-05-1972/``)
    reached analyst.duckdb through ``detail``: only the last path component was replaced by
    ``<file>``, and a folder path ending in ``/`` (FOLDER_UNREADABLE) was kept whole. Every path
    below the lab folder is hidden now: a symbolic link in a patient-named folder, an unreadable
    file and an unreadable folder there, and a patient-named file at the landing root."""
    from flows import process, steps
    from warehouse.analyst import build_analyst_db, connect_analyst

    landing = ctx.settings.landing
    sub = landing / "labo_alpha" / "ROUX Denis 05-05-1972"
    (sub / "MARTIN Bernard").mkdir(parents=True)
    (sub / "resultats.csv").symlink_to(ctx.wh.home / "elsewhere.csv")
    (sub / "LEFEBVRE_Chloe.csv").write_text("x", encoding="utf-8")
    (landing / "DURAND_Alice_12031985.csv").write_text("x", encoding="utf-8")
    # the pipeline runs as its own account; as root nothing is unreadable, so the OS errors are made
    real_walk, real_digest = steps.walk_landing, steps.LandingHashes.digest

    def walk(root):
        entries, errors = real_walk(root)
        return entries, [*errors, PermissionError(13, "Permission denied", str(sub / "MARTIN Bernard"))]

    def digest(self, path, rel):
        if path.name == "LEFEBVRE_Chloe.csv":
            raise PermissionError(13, "Permission denied", str(path))
        return real_digest(self, path, rel)

    monkeypatch.setattr(steps, "walk_landing", walk)
    monkeypatch.setattr(steps.LandingHashes, "digest", digest)
    tickets = steps.discover(ctx)
    assert sorted(t.reason for t in tickets) == ["FILE_UNREADABLE", "FOLDER_UNREADABLE", "NOT_A_FILE",
                                                 "NOT_IN_LAB_FOLDER"]
    for t in tickets:
        process.record_skipped(ctx, t)
    # the private side names them (the engineer's lead)
    assert any("ROUX Denis" in d for d in ctx.wh.read(cat.QUARANTINE)["detail"])
    con = connect_analyst(build_analyst_db(ctx.wh))
    try:
        details = {t: sorted(r[0] for r in con.execute(f"SELECT detail FROM quality.{t}").fetchall())
                   for t in ("file_log", "quarantine")}
        seen = [v for t in ("file_log", "quarantine", "audit_events")
                for row in con.execute(f"SELECT * FROM quality.{t}").fetchall() for v in row if isinstance(v, str)]
    finally:
        con.close()
    for value in seen:
        for word in ("ROUX", "Denis", "1972", "MARTIN", "Bernard", "LEFEBVRE", "Chloe", "DURAND", "Alice",
                     "resultats"):
            assert word not in value, value
    assert details["file_log"] == details["quarantine"]
    assert [d.split(":")[0] for d in details["quarantine"]] == [
        "<file>", "labo_alpha/<file>", "labo_alpha/<file>", "labo_alpha/<folder>/"]
    assert any("symbolic link" in d for d in details["quarantine"])
    assert any("the folder cannot be listed" in d for d in details["quarantine"])


def test_analysts_see_lab_folders_and_no_record_type_of_an_earlier_hprim_reject(ctx):
    """A lab folder that cannot be listed is named (the lab, no patient); an HPRIM reject written by
    an earlier version, quoting an unknown record type (a family name, QA ledger F1), is rewritten
    in the analysts' copy."""
    from transforms.parsers.hprim import UNKNOWN_RECORD_DETAIL
    from warehouse.analyst import build_analyst_db, connect_analyst

    row = {c.name: None for c in cat.FILE_LOG.columns} | {
        "log_id": "l1", "path": "labo_beta/", "source": "labo_beta", "file_id": "l1", "status": "failed",
        "reason_code": "FOLDER_UNREADABLE", "detail": "labo_beta/: the folder cannot be listed ([Errno 13])"}
    ctx.wh.write_partition_file(cat.FILE_LOG, "l1", pl.DataFrame([row], schema=cat.FILE_LOG.schema))
    q = {"file_id": "f9", "path": "labo_gamma/gamma_x.hpr", "source": "labo_gamma", "line_no": 5, "result_no": None,
         "reason_code": "MALFORMED_MESSAGE", "column": None,
         "detail": "line 5: unknown HPRIM record type ROUX: not read (results travel in OBX records)"}
    ctx.wh.write_partition(cat.QUARANTINE, "f9", [pl.DataFrame([q], schema=cat.QUARANTINE.schema)])
    con = connect_analyst(build_analyst_db(ctx.wh))
    try:
        log = con.execute("SELECT detail FROM quality.file_log").fetchall()
        quarantine = con.execute("SELECT detail FROM quality.quarantine").fetchall()
    finally:
        con.close()
    assert log == [("labo_beta/: the folder cannot be listed ([Errno 13])",)]
    assert quarantine == [(f"line 5: {UNKNOWN_RECORD_DETAIL}",)]
