"""The retention purge leaves no identity of the purged rows in plain text (QA ledger F3, HIGH).

A hand-made landing: a CSV extract, named after its patient, whose request numbers are built from a
NIR and a birth date and whose results, labels and ranges hold the patient's NIR, name and birth
date; a line too short to parse (a rejected line with the identity in its raw text); and a file
dropped at the root of the landing area (refused unread, NOT_IN_LAB_FOLDER). After one pipeline run
and a purge, every text value of every Parquet file of the home is scanned: the identities of the
purged rows are nowhere, except the landing file's name in the closed quality tables' paths
(docs/privacy.md, "Retention"), and both landing files are gone.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from tests.helpers import HEADER, line, nir
from transforms.identity_text import MASK

# names the generator never draws (transforms/synthetic/vocab.py): this test's landing file is named
# after its patient, and that name reaches the session's Prefect by design (docs/privacy.md), where
# test_privacy_pipeline looks for the generated names
VDS_NIR = nir("2850369123456")
OKK_NIR = nir("2011175111222")
STRAY_NIR = nir("1720513205321")
LAB_FILE = "VANDERSTRAETEN_Ermengarde_12031985.csv"
# (table folder, column) where a landing path may stay after the purge: closed to analysts
# (mode 0700), cleaned in analyst.duckdb
PATH_PLACES = {("quality/file_log", "path"), ("quality/quarantine", "path"), ("quality/audit_events", "subject")}
NEEDLES = ("2850369123456", "2011175111222", "1720513205321", "VANDERSTRAETEN", "Vanderstraeten", "Ermengarde", "ERMENGARDE", "OKONKWO",
           "Okonkwo", "Sidonie", "SIDONIE", "QUILLIVIC", "Theodulphe", "12/03/1985", "1985-03-12", "19850312", "12031985",
           "23/11/2001", "2001-11-23", "20011123", "13/05/1972", "1972-05-13", "19720513")


def _landing(home: Path) -> None:
    lab = home / "landing" / "labo_alpha"
    lab.mkdir(parents=True)
    vds = {"NIR": VDS_NIR, "NOM": "VANDERSTRAETEN", "PRENOM": "Ermengarde", "DATE_NAISSANCE": "12/03/1985"}
    okonkwo = {"NIR": OKK_NIR, "NOM": "OKONKWO", "PRENOM": "Sidonie", "DATE_NAISSANCE": "23/11/2001"}
    lines = [
        HEADER,
        line(N_DEMANDE=f"{VDS_NIR}-19850312", **vds, CODE_ANALYSE="HB", LIBELLE_ANALYSE="Hémoglobine",
             RESULTAT="13,2", UNITE="g/dL"),
        line(N_DEMANDE="VANDERSTRAETEN19850312", **vds, CODE_ANALYSE="COV", LIBELLE_ANALYSE="PCR SARS-CoV-2",
             RESULTAT=f"Positif - patiente VANDERSTRAETEN Ermengarde NIR {VDS_NIR}", UNITE="", VALEURS_REFERENCE=""),
        line(N_DEMANDE="A3", **vds, CODE_ANALYSE="K", LIBELLE_ANALYSE="Potassium", RESULTAT="4,2",
             UNITE="mmol/L", VALEURS_REFERENCE="controle Vanderstraeten Ermengarde 12/03/1985"),
        line(N_DEMANDE="A4", **okonkwo, CODE_ANALYSE="NA", LIBELLE_ANALYSE="Sodium (OKONKWO Sidonie)",
             RESULTAT="140", UNITE="mmol/L"),
        f"750000002;A5;{VDS_NIR};VANDERSTRAETEN;Ermengarde",  # too few fields: a rejected line, its text in raw
    ]
    (lab / LAB_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    stray = [HEADER, line(N_DEMANDE="S1", NIR=STRAY_NIR, NOM="QUILLIVIC", PRENOM="Theodulphe", DATE_NAISSANCE="13/05/1972")]
    (home / "landing" / "stray_at_root.csv").write_text("\n".join(stray) + "\n", encoding="utf-8")


def scan_home(home: Path) -> list[tuple[str, str, str]]:
    """(table folder, column, value) of every text value of every Parquet file under the warehouse
    holding one of the needles."""
    con = duckdb.connect()
    hits = []
    try:
        for f in sorted((home / "warehouse").rglob("*.parquet")):
            rel = f.relative_to(home / "warehouse").parts
            table = "/".join(rel[:2])
            if table.startswith("ref/"):
                continue  # public reference data (Seine-Saint-Denis, ...)
            src = f"read_parquet('{f}')"
            for name, typ, *_ in con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall():
                if typ != "VARCHAR":
                    continue
                for (v,) in con.execute(f'SELECT DISTINCT "{name}" FROM {src} WHERE "{name}" IS NOT NULL').fetchall():
                    if any(n in v for n in NEEDLES):
                        hits.append((table, name, v))
    finally:
        con.close()
    return hits


@pytest.fixture(scope="module")
def purged(prefect_harness, tmp_path_factory):
    from flows.pipeline import pipeline
    from flows.privacy import purge_identities
    from flows.settings import Settings
    from flows.steps import Context

    home = tmp_path_factory.mktemp("purge_text") / "home"
    _landing(home)
    summary = pipeline(home=str(home))
    before = scan_home(home)
    ctx = Context.create(Settings(home=home), "test-purge")
    res = purge_identities(ctx, older_than_days=0, now=datetime.now() + timedelta(seconds=1))
    return home, summary, before, res


def test_the_scanner_finds_the_identities_before_the_purge(purged):
    _, summary, before, _ = purged
    assert summary["rows_valid"] == 4, summary
    raw = {(t, c) for t, c, _ in before if t.startswith("raw/")}
    assert {("raw/results", c) for c in ("request_id", "value_raw", "ref_range", "local_label", "patient_nir",
                                         "family_name")} <= raw
    assert ("raw/rejected_lines", "raw_text") in raw


def test_after_the_purge_no_identity_is_left_but_the_file_name_in_closed_paths(purged):
    home, _, _, res = purged
    assert res["files_purged"] == 1 and res["rows_purged"] == 4 and res["rows_text_masked"] == 4
    assert res["rejected_lines_redacted"] == 1
    left = scan_home(home)
    assert left, "the landing path is expected in the closed quality tables"
    for table, column, value in left:
        assert (table, column) in PATH_PLACES and value == f"labo_alpha/{LAB_FILE}", (table, column, value)


def test_the_purged_rows_keep_their_masked_text_and_lineage(purged):
    home, _, _, _ = purged
    from warehouse import catalog as cat
    from warehouse.store import Warehouse

    wh = Warehouse(home)
    raw = wh.read(cat.RAW_RESULTS).sort("line_no")
    assert raw.select("patient_nir", "family_name", "first_name", "birth_date").null_count().row(0) == (4, 4, 4, 4)
    assert raw.select("line_no", "request_id", "local_label", "value_raw", "ref_range").rows() == [
        (2, MASK, "Hémoglobine", "13,2", "3,9-5,8"),
        (3, MASK, "PCR SARS-CoV-2", f"Positif - patiente {MASK} NIR {MASK}", None),
        (4, "A3", "Potassium", "4,2", f"controle {MASK}"),
        (5, "A4", f"Sodium ({MASK})", "140", "3,9-5,8"),
    ]
    rejected = wh.read(cat.RAW_REJECTED)
    assert rejected["line_no"].to_list() == [6] and rejected["raw_text"].to_list() == [None]


def test_the_landing_files_are_deleted_the_root_one_too(purged):
    home, _, _, res = purged
    assert res["landing_files_deleted"] == 2
    assert [p for p in (home / "landing").rglob("*") if p.is_file()] == []


def test_a_root_file_changed_since_it_was_logged_is_left_alone(tmp_path):
    """A file refused unread at the landing root has no logged hash: the purge deletes it only while
    its name, size and modification time are those logged (another delivery under that name stays)."""
    import os

    from flows import process, steps
    from flows.privacy import purge_identities
    from flows.settings import Settings
    from warehouse import catalog as cat

    landing = tmp_path / "home" / "landing"
    landing.mkdir(parents=True)
    (landing / "a.csv").write_text("x", encoding="utf-8")
    (landing / "b.csv").write_text("y", encoding="utf-8")
    ctx = steps.Context.create(Settings(home=tmp_path / "home"), "t")
    for t in steps.discover(ctx):
        process.record_skipped(ctx, t)
    assert sorted(ctx.wh.read(cat.FILE_LOG)["reason_code"].to_list()) == ["NOT_IN_LAB_FOLDER"] * 2
    (landing / "b.csv").write_text("new delivery", encoding="utf-8")
    st = (landing / "b.csv").stat()
    os.utime(landing / "b.csv", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    res = purge_identities(ctx, older_than_days=0, now=datetime.now() + timedelta(seconds=1))
    assert res["landing_files_deleted"] == 1
    assert sorted(p.name for p in landing.iterdir()) == ["b.csv"]


def test_a_purge_rewrites_an_earlier_hprim_detail_quoting_a_record_type(tmp_path):
    """raw.rejected_lines of an earlier version may quote an unknown HPRIM record type (a family
    name, QA ledger F1): the purge rewrites it with the raw text."""
    from flows.privacy import purge_identities
    from flows.settings import Settings
    from flows.steps import Context
    from transforms.parsers.hprim import UNKNOWN_RECORD_DETAIL
    from warehouse import catalog as cat

    ctx = Context.create(Settings(home=tmp_path / "home"), "t")
    row = {"file_id": "f1", "line_no": 5, "reason_code": "MALFORMED_MESSAGE", "column": None,
           "detail": "line 5: unknown HPRIM record type ZOLA: not read (results travel in OBX records)",
           "raw_text": "ZOLA|Theodulphe|172051320532159"}
    ctx.wh.write_partition(cat.RAW_REJECTED, "f1", [pl.DataFrame([row], schema=cat.RAW_REJECTED.schema)])
    log = {c.name: None for c in cat.FILE_LOG.columns} | {
        "log_id": "l1", "path": "labo_gamma/x.hpr", "source": "labo_gamma", "file_id": "f1", "sha256": "0" * 64,
        "status": "loaded", "registered_at": datetime.now() - timedelta(days=2)}
    ctx.wh.write_partition_file(cat.FILE_LOG, "l1", pl.DataFrame([log], schema=cat.FILE_LOG.schema))
    purge_identities(ctx, older_than_days=1)
    assert ctx.wh.read(cat.RAW_REJECTED).select("detail", "raw_text").rows() == [
        (f"line 5: {UNKNOWN_RECORD_DETAIL}", None)]
