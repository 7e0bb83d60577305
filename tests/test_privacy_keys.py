"""Lab request numbers, message ids and landing file names never reach analysts (QA, HIGH).

A hand-made landing plants identifying request numbers ('<NIR>-<birth date>', 'MARTIN19750303'),
an identifying HL7 message id and patient-named files next to generated data; the pipeline runs
once. The analyst database must not show them in any value, the version flags must settle as
before, and a warehouse built by the previous code (plain version keys) is migrated by the next
run to exactly what a fresh build gives.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest

from tests.helpers import HEADER, ROOT, line, nir, no_compaction
from warehouse import catalog as cat

PLANTED_REQUESTS = ("280057511100116-19800512", "MARTIN19750303")
PLANTED_MESSAGE = "MSGDURANDPAUL19620101"
PLANTED_HL7_REQUEST = "DEMLEROUXANNE19911231"
PLANTED_FILES = ("labo_alpha/DUPONT_Marie_19550912.csv", "labo_alpha/MARTIN_Jeanne_suite.csv",
                 "labo_hl7/DURAND_Paul.hl7")
# words of the planted file names that must appear nowhere an analyst can read
FILE_WORDS = ("DUPONT_Marie", "MARTIN_Jeanne", "DURAND_Paul")
HEX32 = re.compile(r"^[0-9a-f]{32}$")


def covid(req: str, status: str, validated: str, value: str) -> str:
    return line(N_DEMANDE=req, NIR=nir("2800575111001"), CODE_ANALYSE="COVPCR", LIBELLE_ANALYSE="SARS-CoV-2 RT-PCR",
                RESULTAT=value, UNITE="", VALEURS_REFERENCE="", STATUT=status, DATE_VALIDATION=validated)


def plant(home: Path) -> None:
    """Patient-named files whose request numbers and message id carry identities; a correction
    (C) and a deletion (D) in the second file settle versions of the first."""
    landing = home / "landing"
    (landing / "labo_alpha").mkdir(parents=True, exist_ok=True)
    (landing / PLANTED_FILES[0]).write_text("\n".join([
        HEADER, covid(PLANTED_REQUESTS[0], "F", "02/11/2026 18:00", "Positif"),
        covid(PLANTED_REQUESTS[1], "F", "02/11/2026 18:00", "Positif")]) + "\n", encoding="utf-8")
    (landing / PLANTED_FILES[1]).write_text("\n".join([
        HEADER, covid(PLANTED_REQUESTS[0], "C", "02/11/2026 19:00", "Négatif"),
        covid(PLANTED_REQUESTS[1], "D", "02/11/2026 19:00", "")]) + "\n", encoding="utf-8")
    hl7 = (ROOT / "tests/fixtures/hl7/fr_oru_batch.hl7").read_text(encoding="utf-8")
    hl7 = hl7.replace("MSG-0001", PLANTED_MESSAGE).replace("DEM-2024-0042", PLANTED_HL7_REQUEST)
    (landing / "labo_hl7").mkdir(parents=True, exist_ok=True)
    (landing / PLANTED_FILES[2]).write_text(hl7, encoding="utf-8")


def pipeline(home: str) -> None:
    """`biolake run` in its own process and its own embedded Prefect: the landing paths this module
    plants (patient-named files) reach Prefect's task names and artifacts, which are for engineers
    (docs/privacy.md); kept out of the session's Prefect database, which test_privacy_pipeline
    scans for the identities of its own data."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_HOME")}
    env["PREFECT_HOME"] = str(Path(home) / "prefect")
    done = subprocess.run([sys.executable, "-m", "flows.cli", "run", "--home", str(home)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    from transforms.synthetic import generate

    home = tmp_path_factory.mktemp("keys") / "home"
    generate(home, n_results=2000, seed=5, days=2)
    plant(home)
    with no_compaction():  # age_to_previous_format rewrites its partitions as the previous code's
        pipeline(home=str(home))
    return home


def secrets_to_find() -> tuple[str, ...]:
    return (*PLANTED_REQUESTS, PLANTED_MESSAGE, PLANTED_HL7_REQUEST, *FILE_WORDS)


def _hits(text: str, needles: tuple[str, ...]) -> set[str]:
    return {n for n in needles if n in text}


def analyst_values(db: Path) -> dict[str, set[str]]:
    """Every distinct text value of every column of every analyst view: {view.column: values}."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        cols = con.execute("SELECT table_schema, table_name, column_name FROM information_schema.columns "
                           "WHERE data_type = 'VARCHAR' ORDER BY 1, 2, 3").fetchall()
        return {f"{s}.{t}.{c}": {r[0] for r in con.execute(
            f'SELECT DISTINCT "{c}" FROM {s}.{t} WHERE "{c}" IS NOT NULL').fetchall()} for s, t, c in cols}
    finally:
        con.close()


# --------------------------------------------------------------------------------------------
def test_keyed_hashes_keep_equality_and_hide_the_value():
    from transforms.identity import keyed_hashes

    s = pl.Series("x", ["R1", "R2", "R1", None])
    a = keyed_hashes(s, b"k" * 20, "REQUEST")
    assert a[0] == a[2] and a[0] != a[1] and a[3] is None
    assert all(HEX32.match(v) for v in a.drop_nulls())
    assert keyed_hashes(s, b"k" * 20, "MESSAGE")[0] != a[0]  # domains apart
    assert keyed_hashes(s, b"j" * 20, "REQUEST")[0] != a[0]  # keyed
    with pytest.raises(ValueError):
        keyed_hashes(s, b"", "REQUEST")


def test_the_planted_values_are_where_engineers_need_them(planted):
    """The scanner finds what it looks for: the raw layer holds the planted values."""
    con = duckdb.connect(str(planted / "biolake.duckdb"), read_only=True)
    try:
        raw = {r[0] for r in con.execute("SELECT DISTINCT request_id FROM raw.results").fetchall()}
        msgs = {r[0] for r in con.execute("SELECT DISTINCT message_id FROM raw.results").fetchall()}
        paths = {r[0] for r in con.execute("SELECT path FROM quality.file_log").fetchall()}
    finally:
        con.close()
    assert set(PLANTED_REQUESTS) | {PLANTED_HL7_REQUEST} <= raw and PLANTED_MESSAGE in msgs
    assert set(PLANTED_FILES) <= paths
    raw_texts = parquet_texts(planted / "warehouse" / "raw")  # the file scanner finds them too
    assert any(PLANTED_MESSAGE in v for vs in raw_texts.values() for v in vs)


def test_no_request_number_in_the_analyst_views(planted):
    """QA: version_key was lab|request|test|specimen with the plain request number; the request
    part is its keyed hash now."""
    values = analyst_values(planted / "analyst.duckdb")
    needles = (*PLANTED_REQUESTS, PLANTED_HL7_REQUEST)
    found = {col: _hits(v, needles) for col, vs in values.items() for v in vs if _hits(v, needles)}
    assert not found, found
    keys = values["marts.fct_lab_results.version_key"]
    assert keys and all(HEX32.match(k.split("|")[1]) for k in keys)  # lab|request_key|test|specimen


def test_no_message_id_or_file_name_in_the_analyst_views(planted):
    values = analyst_values(planted / "analyst.duckdb")
    needles = (PLANTED_MESSAGE, *FILE_WORDS)
    found = {col: _hits(v, needles) for col, vs in values.items() for v in vs if _hits(v, needles)}
    assert not found, found


def test_versions_of_planted_results_settle(planted):
    """The correction replaces the first positive, the deletion leaves no current version."""
    con = duckdb.connect(str(planted / "biolake.duckdb"), read_only=True)
    try:
        fids = [r[0] for r in con.execute("SELECT file_id FROM quality.file_log WHERE path IN (?, ?)",
                                          list(PLANTED_FILES[:2])).fetchall()]
    finally:
        con.close()
    assert len(fids) == 2
    con = duckdb.connect(str(planted / "analyst.duckdb"), read_only=True)
    try:
        rows = con.execute("""SELECT version_key, result_status, is_current FROM marts.fct_lab_results
                              WHERE file_id IN (?, ?) ORDER BY file_seq""", fids).fetchall()
    finally:
        con.close()
    by_key: dict[str, list[tuple[str, bool]]] = {}
    for key, status, cur in rows:
        by_key.setdefault(key, []).append((status, cur))
    assert sorted(by_key.values()) == [[("F", False), ("C", True)], [("F", False), ("D", False)]]


# --------------------------------------------------------------------------------------------
# a warehouse built by the previous code is migrated
# --------------------------------------------------------------------------------------------
def age_to_previous_format(home: Path) -> None:
    """Rewrite staging, coded and fct as the previous code wrote them: the plain request_id and
    message_id (from raw.results) instead of request_key and message_key, the plain version key;
    and forget the coding fingerprint and staging format it recorded (the previous code's were others).
    The previous code wrote every partition loose: ``home`` must have no pack."""
    from warehouse.store import Warehouse

    wh = Warehouse(home)
    assert not any(wh.layout(t).packs for t in cat.TABLES if t.partition_by)
    raw = wh.read(cat.RAW_RESULTS).select("file_id", "result_no", "request_id", "message_id")
    plain_version_key = pl.concat_str(
        [pl.col("source"), pl.col("request_id"), pl.coalesce("local_code", "loinc_code_src", pl.lit("")),
         pl.col("specimen").fill_null("")], separator="|", ignore_nulls=True)
    for t in (cat.STG_RESULTS, cat.STG_RESULTS_CODED, cat.FCT_LAB_RESULTS):
        for f in wh.files(t):
            df = pl.read_parquet(f).join(raw, on=["file_id", "result_no"], how="left", maintain_order="left")
            df = df.drop("request_key", "message_key")
            if "version_key" in df.columns:
                df = df.with_columns(plain_version_key.alias("version_key"))
            f.unlink()  # fct files may be hard links to coded ones
            df.write_parquet(f)
    state_path = wh.root / "state.json"
    state = json.loads(state_path.read_text())
    state["mappings_fingerprint"] = "fingerprint of the previous code"
    state.pop("staging_format", None)  # the previous code did not record it
    state_path.write_text(json.dumps(state))


def assert_same_as_fresh(home: Path, fresh: Path) -> None:
    from warehouse.store import Warehouse

    key = ["file_id", "result_no"]
    for t in (cat.STG_RESULTS, cat.STG_RESULTS_CODED, cat.FCT_LAB_RESULTS):
        files = Warehouse(home).files(t)
        assert all(set(pl.read_parquet_schema(f)) == set(t.schema) for f in files), t.qualified
        got = Warehouse(home).read(t).sort(key)
        assert got["request_key"].str.contains(r"^[0-9a-f]{32}$").all(), t.qualified
        want = Warehouse(fresh).read(t).sort(key)
        assert got.equals(want), t.qualified  # the same rows, keys and flags as a fresh build
    values = analyst_values(home / "analyst.duckdb")
    assert not any(n in v for vs in values.values() for v in vs for n in PLANTED_REQUESTS)


def test_a_warehouse_of_the_previous_code_is_migrated(planted, tmp_path):
    from warehouse.store import Warehouse

    home = tmp_path / "home"
    shutil.copytree(planted, home, ignore=shutil.ignore_patterns("prefect"))
    age_to_previous_format(home)
    wh = Warehouse(home)
    old = pl.read_parquet(wh.files(cat.FCT_LAB_RESULTS))
    assert old["version_key"].str.contains(PLANTED_REQUESTS[1], literal=True).any()  # what QA saw
    assert PLANTED_MESSAGE in old["message_id"].to_list()

    pipeline(home=str(home))
    assert_same_as_fresh(home, planted)


def test_a_migration_interrupted_before_re_coding_is_finished_by_the_next_run(planted, tmp_path):
    """Staging migrated, then the run killed: the coded partitions still hold the plain values, and
    are re-coded even when the fingerprint was somehow saved."""
    from flows import steps
    from flows.settings import Settings

    home = tmp_path / "home"
    shutil.copytree(planted, home, ignore=shutil.ignore_patterns("prefect"))
    fingerprint = json.loads((home / "warehouse" / "state.json").read_text())["mappings_fingerprint"]
    age_to_previous_format(home)
    ctx = steps.Context.create(Settings(home=home), "interrupted")
    first = steps.migrate_staging(ctx)
    assert first == ctx.wh.partitions(cat.STG_RESULTS)
    assert steps.migrate_staging(ctx) == first  # staging done; the coded partitions still owe it
    steps.save_mappings_fingerprint(ctx, fingerprint)

    pipeline(home=str(home))
    assert_same_as_fresh(home, planted)
    assert steps.migrate_staging(ctx) == []


def parquet_texts(folder: Path) -> dict[str, set[str]]:
    """Every distinct text value of every Parquet file under ``folder``: {file: values}."""
    out = {}
    con = duckdb.connect()
    try:
        for f in sorted(folder.rglob("*.parquet")):
            cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet('{f}')").fetchall()]
            values: set[str] = set()
            for c in cols:
                values |= {r[0] for r in con.execute(
                    f'SELECT DISTINCT CAST("{c}" AS VARCHAR) FROM read_parquet(\'{f}\') WHERE "{c}" IS NOT NULL'
                ).fetchall()}
            out[str(f.relative_to(folder))] = values
    finally:
        con.close()
    return out


@pytest.mark.parametrize("layer", ["staging", "marts", "ref"])
def test_no_request_number_or_message_id_in_the_analyst_readable_files(planted, layer):
    """Analysts can read_parquet() any file the OS lets them read: the files themselves must be clean."""
    texts = parquet_texts(planted / "warehouse" / layer)
    assert texts or layer == "ref"
    needles = (*PLANTED_REQUESTS, PLANTED_HL7_REQUEST, PLANTED_MESSAGE)
    found = {f: {n for v in vs for n in needles if n in v} for f, vs in texts.items()}
    assert not {f: n for f, n in found.items() if n}


def test_no_landing_file_name_in_the_analyst_readable_files(planted):
    """Every Parquet file an analyst may read (staging, marts, ref, quality outside the folders
    closed like raw) is free of the planted file names; those folders are closed (0700) and the
    analyst database's cleaned copies of their tables hold no file name either."""
    import stat

    from warehouse.analyst import PRIVATE_QUALITY_TABLES, private_dirs
    from warehouse.store import Warehouse

    wh = Warehouse(planted)
    closed = private_dirs(wh)
    assert all(stat.S_IMODE(d.stat().st_mode) == 0o700 for d in closed)
    needles = (*FILE_WORDS, PLANTED_MESSAGE, *PLANTED_REQUESTS, PLANTED_HL7_REQUEST)
    found, scanned, seen_in_closed = {}, 0, set()
    for layer in ("staging", "marts", "quality", "ref"):
        for rel, values in parquet_texts(wh.root / layer).items():
            path = wh.root / layer / rel
            hits = {n for v in values for n in needles if n in v}
            if any(d in path.parents for d in closed):
                seen_in_closed |= hits
                continue
            scanned += 1
            if hits:
                found[f"{layer}/{rel}"] = hits
    assert scanned > 10 and not found, found
    assert set(FILE_WORDS) <= seen_in_closed  # the scanner finds them where they are kept
    values = analyst_values(planted / "analyst.duckdb")
    copies = {c: vs for c, vs in values.items() if c.rsplit(".", 1)[0] in PRIVATE_QUALITY_TABLES}
    assert "quality.file_log.source" in copies and "quality.quarantine.detail" in copies
    assert not {c for c, vs in copies.items() for v in vs for n in needles if n in v}


def test_gate_results_naming_landing_files_are_masked_for_analysts():
    """quality.expectation_results is in analyst.duckdb; the suites that name failing landing files
    (a lab may name a file after the patient) show analysts that they do, not the names."""
    from warehouse import catalog as cat
    from warehouse.analyst import analyst_columns

    t = cat.table("quality.expectation_results")
    expr = dict(analyst_columns(t))["observed"]
    con = duckdb.connect()
    try:
        con.execute("CREATE TABLE r (suite VARCHAR, success BOOLEAN, observed VARCHAR)")
        con.execute("INSERT INTO r VALUES ('landing_files', false, '1 of 2 rows unexpected, e.g. path=lab/DURAND_Paul.hl7'),"
                    " ('file_accounting', false, 'e.g. path=lab/DURAND_Paul.csv'),"
                    " ('fct_lab_results_summary', false, '1 of 1 rows unexpected; first at lab file 3f2a line 4'),"
                    " ('landing_files', true, '0 of 2 rows unexpected')")
        got = [r[0] for r in con.execute(f"SELECT {expr} FROM r").fetchall()]
    finally:
        con.close()
    assert not any("DURAND" in g for g in got)
    assert got[2].endswith("first at lab file 3f2a line 4") and got[3] == "0 of 2 rows unexpected"
