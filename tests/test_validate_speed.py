"""validate_rows evaluates the model's checks itself, in one polars query (quality/schemas.py): it
must give exactly what a full pandera pass gives -- same quarantine rows, reasons, columns and
details, same valid rows -- and its shortcuts (checks on entirely null columns computed once, frames
without any problem) must not change a verdict."""

from __future__ import annotations

from datetime import date, datetime

import pandera.polars as pa
import polars as pl
import pytest

from quality.clock import latest_local_time
from quality.schemas import (BUILTIN_CHECKS, QUARANTINE_COLUMNS, CanonicalResult, _compiled, _null_columns,
                             check_detail, validate_rows)
from tests.helpers import HEADER, bad_nir, canonical_rows, defect_lines, line
from transforms.canonical import CANONICAL_SCHEMA

NOW = datetime(2027, 1, 1)


def _pandera_failures(df: pl.DataFrame) -> pl.DataFrame:
    """Every failure pandera reports on ``df``, as quarantine rows with the row's ``_idx``."""
    try:
        CanonicalResult.validate(df, lazy=True)
    except pa.errors.SchemaErrors as err:
        fc = err.failure_cases.select("column", "check", "index")
        assert fc["index"].null_count() == 0
        named = fc["check"].str.contains(":")
        fc = fc.with_columns(
            reason_code=pl.when(named).then(pl.col("check").str.split(":").list.first())
            .otherwise(pl.col("check").replace_strict(BUILTIN_CHECKS, default="MISSING_VALUE")),
            column=pl.when(named).then(pl.col("check").str.split(":").list.last()).otherwise(pl.col("column")),
            detail=pl.col("check").map_elements(check_detail, return_dtype=pl.Utf8),
        )
        return fc.select(pl.col("index").cast(pl.UInt32).alias("_idx"), "reason_code", "column", "detail")
    return pl.DataFrame(schema={"_idx": pl.UInt32, "reason_code": pl.Utf8, "column": pl.Utf8, "detail": pl.Utf8})


def _issues(indexed: pl.DataFrame) -> pl.DataFrame:
    """The parser's issues (``REASON:column[:detail]``) as quarantine rows."""
    rows = []
    for idx, issues in indexed.select("_idx", "parse_issues").iter_rows():
        for issue in (issues or "").split(";") if issues else []:
            reason_code, column, *detail = issue.split(":", 2)
            rows.append((idx, reason_code, column, "partial birth date (the year, or the year and month, only)"
                         if detail == ["partial"] else "value could not be read"))
    return pl.DataFrame(rows, schema={"_idx": pl.UInt32, "reason_code": pl.Utf8, "column": pl.Utf8,
                                      "detail": pl.Utf8}, orient="row")


def _pandera_validate_rows(df: pl.DataFrame, now: datetime) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The reference: validate_rows as written before the one-query evaluation, pandera judging
    every row and naming every failure; a birth date that fails a birth-date check of the model (on
    the rows as sent) or that the parser could not read is made unknown, then pandera judges again;
    a sex the parser could not read (already null) is flagged SEX_INVALID, and listed only when the
    row is quarantined for another reason."""
    df = df.select(list(CANONICAL_SCHEMA))
    indexed = df.with_row_index("_idx")
    first = _pandera_failures(df)
    birth_fails = first.filter(pl.col("column") == "birth_date")
    issues = _issues(indexed)
    birth_issues = issues.filter(pl.col("column") == "birth_date")
    sex_issues = issues.filter(pl.col("reason_code") == "SEX_INVALID")
    flag = {i: "BIRTH_DATE_INVALID" for i in birth_fails["_idx"].to_list()}
    flag |= {i: ("BIRTH_DATE_PARTIAL" if d.startswith("partial") else "BIRTH_DATE_INVALID")
             for i, d in birth_issues.select("_idx", "detail").iter_rows()}
    others = {i: ";".join(x for x in (p or "").split(";")
                          if not x.startswith("DATE_INVALID:birth_date") and x != "SEX_INVALID:sex") or None
              for i, p in indexed.select("_idx", "parse_issues").iter_rows()}
    flags = {i: ";".join(f for f in (flag.get(i), "SEX_INVALID" if i in set(sex_issues["_idx"].to_list()) else None)
                         if f) or None for i in indexed["_idx"].to_list()}
    eff = indexed.with_columns(
        pl.when(pl.col("_idx").is_in(list(flag))).then(None).otherwise(pl.col("birth_date")).alias("birth_date"),
        pl.Series("parse_issues", [others[i] for i in indexed["_idx"].to_list()], dtype=pl.Utf8))
    failures = [_pandera_failures(eff.drop("_idx")), _issues(eff)]
    failures.append(eff.filter(pl.col("collected_at") > latest_local_time(now)).select(
        "_idx", pl.lit("DATE_ORDER").alias("reason_code"), pl.lit("collected_at").alias("column"),
        pl.lit("collection time in the future").alias("detail")))
    fails = pl.concat(failures, how="vertical_relaxed")
    unreadable = _issues(eff).select("_idx", "column")
    fails = fails.join(unreadable.unique().with_columns(pl.lit(True).alias("_unreadable")),
                       on=["_idx", "column"], how="left")
    fails = fails.filter(~((pl.col("reason_code") == "MISSING_VALUE") & pl.col("_unreadable").fill_null(False)))
    fails = fails.drop("_unreadable")
    out = fails.select("_idx").unique()
    fails = pl.concat([fails, pl.concat([birth_issues, birth_fails, sex_issues]).join(out, on="_idx")])
    fails = fails.unique(["_idx", "reason_code", "column"], keep="first")
    valid = (eff.filter(~pl.col("_idx").is_in(fails["_idx"].unique().implode()))
             .with_columns(pl.col("_idx").replace_strict(flags, default=None, return_dtype=pl.Utf8).alias("parse_issues"))
             .drop("_idx"))
    quarantine = (
        fails.join(indexed.select("_idx", "line_no"), on="_idx")
        .select([pl.col(c).cast(t) for c, t in QUARANTINE_COLUMNS.items()])
        .sort("line_no", "reason_code", "column", nulls_last=True)
    )
    return valid, quarantine


@pytest.fixture(scope="module")
def defects(tmp_path_factory) -> pl.DataFrame:
    """Hand-made rows covering every check of the model, the parser's flags and the clock."""
    path = tmp_path_factory.mktemp("defects") / "defects.csv"
    path.write_text("\n".join([
        *defect_lines(), line(N_DEMANDE="D15", DATE_NAISSANCE="31/02/1955"),
        line(N_DEMANDE="D16", DATE_PRELEVEMENT="32/11/2026 08:00"),
        line(N_DEMANDE="D17", DATE_PRELEVEMENT="02/11/2027 08:00", DATE_RECEPTION="", DATE_VALIDATION=""),
        line(N_DEMANDE="D18", DATE_VALIDATION="01/11/2026 08:00", SEXE="Y", NIR=bad_nir("1840575000116")),
        line(N_DEMANDE="D19", NIR="255092A00011689"), line(N_DEMANDE="D20", STATUT=""),
        line(N_DEMANDE="D21", DATE_PRELEVEMENT="02/11/2016 08:30", DATE_RECEPTION=""),
        line(N_DEMANDE="D22", DATE_PRELEVEMENT="02/11/26 08:30", DATE_NAISSANCE="", DATE_RECEPTION="",
             DATE_VALIDATION=""),
        line(N_DEMANDE="D23", RESULTAT="1e999"), line(N_DEMANDE="D24", RESULTAT=">100"),
    ]) + "\n", encoding="utf-8")
    df = canonical_rows(path)
    # what the CSV parser never hands over (it flags a bad sex itself, reads an empty status as F,
    # has no source LOINC), and
    # what no CSV line can hold: a missing file id, source or line number, a line number below 1,
    # a comparator that is not one
    line_no = pl.col("line_no")
    assert df.filter(pl.col("request_id") == "D24")["value_comparator"].to_list() == [">"]
    return df.with_columns(
        pl.when(pl.col("request_id") == "D24").then(pl.lit("=<")).otherwise(pl.col("value_comparator"))
        .alias("value_comparator"),
        pl.when(line_no == 10).then(pl.lit("Y")).otherwise(pl.col("sex")).alias("sex"),
        pl.when(line_no == 6).then(pl.lit("1234-5")).when(line_no == 7).then(pl.lit("2345-7"))
        .otherwise(pl.col("loinc_code_src")).alias("loinc_code_src"),
        pl.when(line_no == 9).then(None).otherwise(pl.col("result_status")).alias("result_status"),
        pl.when(line_no == 3).then(None).otherwise(pl.col("file_id")).alias("file_id"),
        pl.when(line_no == 4).then(None).otherwise(pl.col("source")).alias("source"),
        pl.when(line_no == 5).then(0).when(line_no == 6).then(None).otherwise(line_no).alias("line_no"),
    )


def _assert_same_as_pandera(df: pl.DataFrame) -> pl.DataFrame:
    valid, quarantine = validate_rows(df, now=NOW)
    ref_valid, ref_quarantine = _pandera_validate_rows(df, NOW)
    assert valid.equals(ref_valid)
    assert quarantine.equals(ref_quarantine)
    return quarantine


def test_every_reason_as_pandera_gives_it(defects):
    df = defects.select(list(CANONICAL_SCHEMA))
    never = [v for v in _compiled(tuple(df.schema.items())) if df.select(v.ok)[:, 0].all()]
    assert never == []  # every check of the model rejects some row
    q = _assert_same_as_pandera(defects)
    got = set(q.select("reason_code", "column").unique().rows())
    assert {("NIR_KEY", "patient_nir"), ("NIR_FORMAT", "patient_nir"), ("DATE_INVALID", "birth_date"),
            ("DATE_ORDER", "birth_date"), ("DATE_ORDER", "received_at"), ("DATE_ORDER", "validated_at"),
            ("DATE_ORDER", "collected_at"), ("SEX_INVALID", "sex"),
            ("STATUS_INVALID", "result_status"), ("MISSING_VALUE", "request_id"), ("MISSING_VALUE", "local_code"),
            ("MISSING_VALUE", "value_raw"), ("MISSING_VALUE", "patient_nir"), ("MISSING_VALUE", "file_id"),
            ("MISSING_VALUE", "source"), ("MISSING_VALUE", "line_no"), ("MALFORMED_LINE", "line_no"),
            ("DATE_INVALID", "collected_at"), ("LOINC_CHECK", "loinc_code_src"), ("VALUE_INVALID", "value_num"),
            ("VALUE_INVALID", "value_comparator")} <= got


def test_generated_files_as_pandera_gives_them(generated):
    files = sorted((generated / "landing").rglob("*.csv"), key=lambda p: -p.stat().st_size)[:6]
    quarantined = 0
    for path in files:
        quarantined += _assert_same_as_pandera(canonical_rows(path, path.parent.name)).height
    assert quarantined > 20  # the generator's defects were there


def test_checks_on_entirely_null_columns_give_the_same_verdicts(defects):
    # request_id null everywhere: every row misses it; patient_nir and birth_date null everywhere:
    # their own checks pass, the frame-wide ones still see the names and dates
    df = defects.with_columns(
        *[pl.lit(None, dtype=pl.Utf8).alias(c) for c in ("request_id", "patient_nir", "loinc_code_src")],
        pl.lit(None, dtype=pl.Date).alias("birth_date"),
    )
    assert {"request_id", "patient_nir", "loinc_code_src", "birth_date"} <= _null_columns(df)
    q = _assert_same_as_pandera(df)
    assert q.filter(pl.col("column") == "request_id").height == df.height
    folded = _compiled(tuple(df.schema.items()), _null_columns(df))
    assert sum(v.ok.meta.is_literal() for v in folded) >= 4  # the shortcut was taken


def test_compiled_checks_are_row_wise(defects):
    """Folding a check on null columns into a constant relies on this: a row's verdict is the same
    whether the row is checked alone or among others."""
    df = defects.select(list(CANONICAL_SCHEMA))
    for v in _compiled(tuple(df.schema.items())):
        together = df.select(v.ok)[:, 0].to_list()
        alone = [df.slice(i, 1).select(v.ok).item() for i in range(df.height)]
        assert together == alone, v.detail


def test_clean_and_empty_frames(tmp_path):
    path = tmp_path / "clean.csv"
    path.write_text("\n".join([HEADER, line(), line(N_DEMANDE="D2", SEXE="", DATE_NAISSANCE="")]) + "\n",
                    encoding="utf-8")
    df = canonical_rows(path)
    valid, q = validate_rows(df, now=NOW)
    assert valid.equals(df) and q.is_empty() and q.schema == pl.Schema(QUARANTINE_COLUMNS)
    _assert_same_as_pandera(df)
    _assert_same_as_pandera(df.clear())


def test_a_frame_of_the_wrong_dtypes_is_refused(defects):
    with pytest.raises(ValueError, match="does not match its model"):
        validate_rows(defects.with_columns(pl.col("line_no").cast(pl.Utf8)), now=NOW)
    with pytest.raises(ValueError, match="does not match its model"):
        validate_rows(defects.with_columns(pl.lit(date(2020, 1, 1)).alias("collected_at")), now=NOW)
