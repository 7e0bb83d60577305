"""Lab request numbers, message ids and landing file names never reach analysts (QA, HIGH).

A hand-made landing plants identifying request numbers ('<NIR>-<birth date>', 'MARTIN19750303'),
an identifying HL7 message id and patient-named files next to generated data; the pipeline runs
once. The analyst database must not show them in any value, the version flags must settle as
before, and a warehouse built by the previous code (plain version keys) is migrated by the next
run to exactly what a fresh build gives.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import duckdb
import polars as pl
import pytest

from tests.helpers import HEADER, ROOT, line, nir
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


@pytest.fixture(scope="module")
def planted(prefect_harness, tmp_path_factory) -> Path:
    from flows.pipeline import pipeline
    from transforms.synthetic import generate

    home = tmp_path_factory.mktemp("keys") / "home"
    generate(home, n_results=2000, seed=5, days=2)
    plant(home)
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


def test_no_request_number_in_the_analyst_views(planted):
    """QA: version_key was lab|request|test|specimen; it is a keyed hash now."""
    values = analyst_values(planted / "analyst.duckdb")
    needles = (*PLANTED_REQUESTS, PLANTED_HL7_REQUEST)
    found = {col: _hits(v, needles) for col, vs in values.items() for v in vs if _hits(v, needles)}
    assert not found, found
    keys = values["marts.fct_lab_results.version_key"]
    assert keys and all(HEX32.match(k) for k in keys)


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
    """Rewrite the coded and fct partitions as the previous code wrote them (plain version keys)
    and forget the coding fingerprint it recorded (the previous code's was another)."""
    from flows.steps import version_key_expr
    from warehouse.store import Warehouse

    wh = Warehouse(home)
    for t in (cat.STG_RESULTS_CODED, cat.FCT_LAB_RESULTS):
        for fid in wh.partitions(t):
            df = wh.read(t, [fid]).with_columns(version_key_expr().alias("version_key"))
            wh.write_partition(t, fid, [df])
    state_path = wh.root / "state.json"
    state = json.loads(state_path.read_text())
    state["mappings_fingerprint"] = "fingerprint of the previous code"
    state_path.write_text(json.dumps(state))


def test_a_warehouse_of_the_previous_code_is_migrated(planted, tmp_path):
    from flows.pipeline import pipeline
    from warehouse.store import Warehouse

    home = tmp_path / "home"
    shutil.copytree(planted, home, ignore=shutil.ignore_patterns("prefect"))
    age_to_previous_format(home)
    wh = Warehouse(home)
    old_keys = wh.read(cat.FCT_LAB_RESULTS)["version_key"]
    assert old_keys.str.contains(PLANTED_REQUESTS[1], literal=True).any()  # what QA saw

    pipeline(home=str(home))
    key = ["file_id", "result_no"]
    for t in (cat.STG_RESULTS_CODED, cat.FCT_LAB_RESULTS):
        got = Warehouse(home).read(t).sort(key)
        assert got["version_key"].str.contains(r"^[0-9a-f]{32}$").all(), t.qualified
        want = Warehouse(planted).read(t).sort(key)
        assert got.equals(want), t.qualified  # the same rows, keys and flags as a fresh build
    values = analyst_values(home / "analyst.duckdb")
    assert not any(PLANTED_REQUESTS[1] in v for vs in values.values() for v in vs)
