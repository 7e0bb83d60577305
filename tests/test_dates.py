"""Dates as labs send them (QA, tester "time"): partial birth dates in every format, the clock of
the "collection in the future" check, and what the quarantine says of an unreadable date."""

from __future__ import annotations

import os
from datetime import date, datetime

import polars as pl
import pytest

from flows.steps import with_lineage_keys
from quality.schemas import validate_rows
from tests.helpers import HEADER, canonical_rows, line, nir
from transforms.canonical import CANONICAL_SCHEMA
from transforms.parsers.detect import get_parser
from transforms.staging import to_staging
from transforms.synthetic import formats

NOW = datetime(2026, 12, 1)
BORN = date(1980, 3, 15)


def _typed_rows(tmp_path) -> pl.DataFrame:
    """One result of a patient born 15/03/1980 with an INS, as the parsers make it."""
    p = tmp_path / "one.csv"
    p.write_text("\n".join([HEADER, line(DATE_NAISSANCE="15/03/1980", NIR=nir("2800375111001"))]) + "\n")
    return canonical_rows(p).with_columns(ins_oid=pl.lit("1.2.250.1.213.1.4.8"), loinc_code_src=pl.lit(None, pl.Utf8))


def _parsed(path, fmt: str) -> pl.DataFrame:
    parse = get_parser(fmt)
    return pl.concat([c.rows for c in parse(path, file_id="f", source="lab", chunk_rows=1000)]).select(
        list(CANONICAL_SCHEMA))


def _file(tmp_path, fmt: str, birth: str):
    """The result written in ``fmt`` with its birth date replaced by the text ``birth``."""
    rows = _typed_rows(tmp_path)
    if fmt == "csv":
        path = tmp_path / "in.csv"
        path.write_text("\n".join([HEADER, line(DATE_NAISSANCE=birth, NIR=nir("2800375111001"))]) + "\n")
        return path
    path = tmp_path / f"in.{fmt}"
    {"hl7v2": formats.write_hl7v2, "cda": formats.write_cda, "hprim": formats.write_hprim}[fmt](rows, path)
    text = path.read_text(encoding="utf-8")
    assert text.count("19800315") == 1, fmt
    path.write_text(text.replace("19800315", birth), encoding="utf-8")
    return path


def _staged(valid: pl.DataFrame) -> pl.DataFrame:
    secret = os.environ["BIOLAKE_PSEUDONYM_SECRET"].encode()
    pc = pl.DataFrame({"postal_code": ["75011"], "dep_code": ["75"]})
    return to_staging(with_lineage_keys(valid.with_columns(result_no=pl.col("line_no")), secret),
                      file_seq=1, postal_codes=pc, secret=secret)


PARTIAL = [("csv", "00/00/1980"), ("csv", "00/03/1980"), ("hl7v2", "1980"), ("hl7v2", "198003"),
           ("cda", "1980"), ("cda", "198003"), ("hprim", "19800000"), ("hprim", "19800300")]


@pytest.mark.parametrize(("fmt", "birth"), PARTIAL)
def test_a_partial_birth_date_keeps_the_result_with_an_unknown_age(tmp_path, fmt, birth):
    """QA F3: a birth date known to its year, or year and month (HL7/CDA TS 1980 or 198003, CSV
    00/00/1980, HPRIM 19800000) quarantined the result, while an empty one kept it. Now: kept, birth
    date unknown (null), age unknown (counted in cl_age90 = 0 only), flagged BIRTH_DATE_PARTIAL."""
    rows = _parsed(_file(tmp_path, fmt, birth), fmt)
    assert rows["birth_date"].to_list() == [None]
    assert rows["parse_issues"].to_list() == ["DATE_INVALID:birth_date:partial"]
    valid, q = validate_rows(rows, now=NOW)
    assert q.is_empty() and valid.height == 1
    staged = _staged(valid)
    assert staged["age"].to_list() == [None] and staged["cl_age90"].to_list() == [None]
    assert staged["dq_flags"].to_list() == ["AGE_UNKNOWN;BIRTH_DATE_PARTIAL"]
    # the person key is the INS's; a partial birth date gives the link key of an empty one (none)
    empty = _staged(validate_rows(_parsed(_file(tmp_path, "csv", ""), "csv"), now=NOW)[0])
    assert staged["person_key"].to_list() == empty["person_key"].to_list()
    assert staged["link_key"].to_list() == empty["link_key"].to_list() == [None]


@pytest.mark.parametrize(("fmt", "birth"), [("csv", "31/02/1980"), ("csv", "n/a"), ("hl7v2", "19800230"),
                                            ("cda", "inconnue"), ("hprim", "1980XX15"), ("csv", "01/01/2027")])
def test_a_birth_date_that_gives_no_age_keeps_the_result_flagged_invalid(tmp_path, fmt, birth):
    """Unreadable, not a date, or impossible for this result (born after the collection): the
    result is kept with an unknown age, flagged BIRTH_DATE_INVALID; the quarantine never sees it."""
    valid, q = validate_rows(_parsed(_file(tmp_path, fmt, birth), fmt), now=NOW)
    assert q.is_empty() and valid["birth_date"].to_list() == [None]
    assert _staged(valid)["dq_flags"].to_list() == ["AGE_UNKNOWN;BIRTH_DATE_INVALID"]


def test_a_usable_birth_date_is_not_flagged(tmp_path):
    for fmt in ("csv", "hl7v2", "cda", "hprim"):
        valid, q = validate_rows(_parsed(_file(tmp_path, fmt, "19800315" if fmt != "csv" else "15/03/1980"), fmt),
                                 now=NOW)
        staged = _staged(valid)
        assert q.is_empty() and staged["age"].to_list() == [46] and staged["dq_flags"].to_list() == [None], fmt
