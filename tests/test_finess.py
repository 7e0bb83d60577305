"""The FINESS check (transforms/finess.py): 9 characters and a Luhn check digit, a warning and never a
rejection (QA: a file with FINESS 440000009 loaded with no flag or warning)."""

from __future__ import annotations

import random
from datetime import date, datetime

import polars as pl
import pytest

from transforms import finess

SEEDS = ["690001235", "750045676", "130012347", "330028762", "590034120"]  # seeds/labs.csv


def _luhn_ok(digits: str) -> bool:
    """The reference: Luhn over a string of digits, written the textbook way."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _valid(values: list[str | None]) -> list[bool | None]:
    return pl.DataFrame({"v": values}, schema={"v": pl.Utf8}).select(finess.valid_expr("v"))["v"].to_list()


def test_the_labs_numbers_pass_and_the_qa_number_fails():
    assert _valid(SEEDS) == [True] * len(SEEDS)
    assert _valid(["440000009", "750000001"]) == [False, False]


@pytest.mark.parametrize(("value", "ok"), [
    ("2A0000012", True), ("2B1234567", True),  # Corsica: the shape only (how its key is computed is unknown)
    ("2C0000012", False), ("69000123", False), ("6900012350", False), ("69000123X", False),
    ("690 01235", False), ("", False), ("185057800608436", False), (None, None),
])
def test_shape(value, ok):
    assert _valid([value]) == [ok]


def test_the_vectorised_check_is_luhn():
    rng = random.Random(7)
    values = [f"{rng.randrange(10**9):09d}" for _ in range(5000)]
    assert _valid(values) == [_luhn_ok(v) for v in values]


def test_failures_count_rows_per_invalid_value_and_skip_missing_ones():
    values = pl.Series(["440000009"] * 3 + SEEDS + [None, "12345"])
    assert finess.failures(values) == {"440000009": 3, "12345": 1}
    assert finess.failures(pl.Series(SEEDS + [None])) == {}


def test_the_warning_names_a_finess_but_never_a_value_of_another_shape():
    text = finess.describe({"440000009": 12, "185057800608436": 2, "01/02/1985": 1})
    assert "440000009 (wrong check digit) on 12 row(s)" in text and "FINESS_INVALID" in text
    assert "185057800608436" not in text and "1985" not in text
    assert "15 characters, not shown" in text
    many = finess.describe({f"44000000{i}": 1 for i in range(6)})
    assert many.count("wrong check digit") == 3 and "and 3 other value(s)" in many


def test_staging_flags_the_row_and_keeps_it():
    from flows.steps import with_lineage_keys
    from tests.helpers import nir
    from transforms.canonical import CANONICAL_SCHEMA
    from transforms.staging import to_staging

    base = {c: None for c in CANONICAL_SCHEMA}
    base.update(file_id="f", line_no=1, source="lab", lab_finess="690001235", request_id="D1",
                patient_nir=nir("2800575111001"), family_name="DUPONT", first_name="Marie",
                birth_date=date(1980, 5, 12), sex="F", postal_code="75011",
                collected_at=datetime(2026, 11, 2, 8, 30), local_code="GLY", value_type="NM", value_raw="5",
                value_num=5.0, result_status="F")
    rows = [dict(base), dict(base, line_no=2, lab_finess="440000009"),
            dict(base, line_no=3, lab_finess="440000009", postal_code="7501"), dict(base, line_no=4, lab_finess=None)]
    valid = pl.DataFrame(rows, schema=CANONICAL_SCHEMA).with_columns(result_no=pl.col("line_no"))
    pc = pl.DataFrame({"postal_code": ["75011"], "dep_code": ["75"]})
    secret = b"0123456789abcdef"
    out = to_staging(with_lineage_keys(valid, secret), file_seq=1, postal_codes=pc, secret=secret)
    assert out["lab_finess"].to_list() == ["690001235", "440000009", "440000009", None]
    assert out["dq_flags"].to_list() == [None, "FINESS_INVALID",
                                         "POSTAL_CODE_INVALID;DEP_UNKNOWN;FINESS_INVALID", None]


def test_a_file_with_an_invalid_finess_loads_with_a_warning_naming_it(tmp_path):
    """The file's rows are all kept; the ones with the bad FINESS flagged; the file's accounting carries
    the warning the run logs, prints and hands to the quality gate."""
    from flows import process, steps
    from flows.settings import Settings
    from quality.checkpoints import landing_files_frame
    from tests.helpers import HEADER, line
    from warehouse import catalog as cat

    home = tmp_path / "home"
    lab = home / "landing" / "labo_new"
    lab.mkdir(parents=True)
    lines = [HEADER, line(FINESS="440000009"), line(FINESS="440000009", N_DEMANDE="D2"), line(N_DEMANDE="D3")]
    (lab / "a.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    ctx = steps.Context.create(Settings(home=home), "t")
    steps.load_ref(ctx)
    loinc, mappings, _ = steps.load_terminology(ctx, None)
    work = process.Work(steps.read_ref(ctx, "postal_codes"), loinc, mappings)
    [ticket] = steps.discover(ctx)
    res = process.process_file(ctx, ticket, work)
    assert (res["status"], res["rows_in"], res["rows_valid"], res["finess_invalid"]) == ("loaded", 3, 3, 2)
    assert res["warnings"] == ["FINESS not valid: 440000009 (wrong check digit) on 2 row(s); rows kept, "
                               "flagged FINESS_INVALID"]
    stg = ctx.wh.read(cat.STG_RESULTS).sort("line_no")
    assert stg["dq_flags"].to_list() == ["FINESS_INVALID", "FINESS_INVALID", None]
    frame = landing_files_frame([{"path": "labo_new/a.csv", "status": "loaded", "finess_invalid": 2},
                                 {"path": "labo_new/b.csv", "status": "loaded", "finess_invalid": 0},
                                 {"path": "labo_new/c.csv.gz", "status": "failed", "reason_code": "UNPARSEABLE_FILE"}])
    assert frame.select("path", "reason_code", "failed", "finess_invalid").rows() == [
        ("labo_new/a.csv", "FINESS_INVALID", 0, 2), ("labo_new/b.csv", None, 0, 0),
        ("labo_new/c.csv.gz", "UNPARSEABLE_FILE", 1, 0)]
