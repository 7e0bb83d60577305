"""The pandera model accepts good rows and quarantines each defect with its reason and column."""

from __future__ import annotations

from datetime import datetime

import polars as pl
import pytest

from quality.schemas import validate_rows
from transforms.parsers.csv_extract import parse
from tests.helpers import HEADER, bad_nir, line


def rows_of(tmp_path, *lines):
    p = tmp_path / "x.csv"
    p.write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")
    return pl.concat([c.rows for c in parse(p, file_id="f", source="lab")])


NOW = datetime(2026, 12, 1)


def test_good_rows_pass(tmp_path):
    valid, q = validate_rows(rows_of(tmp_path, line(), line(N_DEMANDE="D2", SEXE="", DATE_NAISSANCE="")), now=NOW)
    assert valid.height == 2 and q.is_empty()


@pytest.mark.parametrize(
    ("fields", "reason", "column"),
    [
        ({"NIR": bad_nir("2550999000116")}, "NIR_KEY", "patient_nir"),
        ({"NIR": "2550999"}, "NIR_FORMAT", "patient_nir"),
        ({"DATE_PRELEVEMENT": "32/11/2026 08:00"}, "DATE_INVALID", "collected_at"),
        ({"DATE_PRELEVEMENT": ""}, "MISSING_VALUE", "collected_at"),
        ({"DATE_VALIDATION": "01/11/2026 08:00"}, "DATE_ORDER", "validated_at"),
        ({"DATE_RECEPTION": "01/11/2026 08:00"}, "DATE_ORDER", "received_at"),
        ({"DATE_PRELEVEMENT": "02/11/2027 08:00", "DATE_RECEPTION": "", "DATE_VALIDATION": ""},
         "DATE_ORDER", "collected_at"),
        # QA: a two-digit year was read as year 26, valid; a collection typed ten years early was
        # valid too and stretched the SI-DEP grid over ten years; 1e999 was stored as infinity
        ({"DATE_PRELEVEMENT": "02/11/26 08:30", "DATE_NAISSANCE": "", "DATE_RECEPTION": "", "DATE_VALIDATION": ""},
         "DATE_INVALID", "collected_at"),
        ({"DATE_PRELEVEMENT": "02/11/2016 08:30", "DATE_RECEPTION": ""}, "DATE_ORDER", "collected_at"),
        ({"RESULTAT": "1e999"}, "VALUE_INVALID", "value_num"),
        ({"STATUT": "Z"}, "STATUS_INVALID", "result_status"),
        ({"N_DEMANDE": ""}, "MISSING_VALUE", "request_id"),
        ({"CODE_ANALYSE": ""}, "MISSING_VALUE", "local_code"),
        ({"RESULTAT": ""}, "MISSING_VALUE", "value_raw"),
        ({"NIR": "", "NOM": ""}, "MISSING_VALUE", "patient_nir"),
    ],
)
def test_each_defect_gets_its_reason(tmp_path, fields, reason, column):
    valid, q = validate_rows(rows_of(tmp_path, line(), line(**{"N_DEMANDE": "D9", **fields})), now=NOW)
    assert valid["line_no"].to_list() == [2]
    assert q.select("line_no", "reason_code", "column").rows() == [(3, reason, column)]


def test_a_person_aged_125_at_the_collection_is_kept(tmp_path):
    valid, q = validate_rows(rows_of(tmp_path, line(DATE_NAISSANCE="03/11/1900")), now=NOW)
    assert valid.height == 1 and q.is_empty()
    assert valid["birth_date"].is_not_null().all() and valid["parse_issues"].is_null().all()


@pytest.mark.parametrize(
    ("birth", "flag"),
    [
        # QA: a partial birth date (INS style 00/00/1980, HL7/CDA TS 1980 or 198003, HPRIM 19800000)
        # quarantined the result, an empty one kept it with an unknown age
        ("00/00/1980", "BIRTH_DATE_PARTIAL"), ("00/03/1980", "BIRTH_DATE_PARTIAL"), ("1980", "BIRTH_DATE_PARTIAL"),
        ("19800000", "BIRTH_DATE_PARTIAL"), ("198003", "BIRTH_DATE_PARTIAL"),
        # impossible for this result: a result does not stop being positive because its birth date is wrong
        ("31/02/1955", "BIRTH_DATE_INVALID"),  # not a date
        ("01/01/2027", "BIRTH_DATE_INVALID"),  # born after the collection (02/11/2026)
        ("01/01/1850", "BIRTH_DATE_INVALID"),  # before 1890
        # QA: born in 1890, 136 at the collection: the quality gate (ages 0 to 125) blocked every
        # export; 126 at the collection is no age, 125 is one (above)
        ("01/01/1890", "BIRTH_DATE_INVALID"), ("02/11/1900", "BIRTH_DATE_INVALID"),
        ("né en 80", "BIRTH_DATE_INVALID"),  # unreadable text
    ],
)
def test_a_birth_date_that_gives_no_age_keeps_the_result_flagged(tmp_path, birth, flag):
    """domain.md: a person whose age is unknown counts in the all-ages row; missing age is a
    data-quality flag, not a reason to drop the result. The row is kept, its birth date unknown
    (null, as an empty one), its flag in parse_issues for staging."""
    valid, q = validate_rows(rows_of(tmp_path, line(), line(N_DEMANDE="D9", DATE_NAISSANCE=birth)), now=NOW)
    assert q.is_empty()
    assert valid["line_no"].to_list() == [2, 3]
    assert valid["birth_date"].is_null().to_list() == [False, True]
    assert valid["parse_issues"].to_list() == [None, flag]


def test_a_row_quarantined_for_another_reason_also_names_its_birth_date(tmp_path):
    """Without a NIR, a person is identified by names and birth date: an unusable birth date leaves
    the row as unidentifiable as an empty one (MISSING_VALUE:patient_nir), and the quarantine says
    why the birth date did not count, without quoting it."""
    valid, q = validate_rows(rows_of(tmp_path, line(NIR="", DATE_NAISSANCE="00/00/1980"),
                                     line(N_DEMANDE="D2", NIR="", DATE_NAISSANCE="01/01/2027"),
                                     line(N_DEMANDE="D3", NIR="", DATE_NAISSANCE="")), now=NOW)
    assert valid.is_empty()
    assert q.rows() == [
        (2, "DATE_INVALID", "birth_date", "partial birth date (the year, or the year and month, only)"),
        (2, "MISSING_VALUE", "patient_nir", "neither a NIR nor family name, first name and birth date"),
        (3, "DATE_ORDER", "birth_date", "born after the collection"),
        (3, "MISSING_VALUE", "patient_nir", "neither a NIR nor family name, first name and birth date"),
        (4, "MISSING_VALUE", "patient_nir", "neither a NIR nor family name, first name and birth date"),
    ]
    assert not any("1980" in d or "2027" in d for d in q["detail"])


def test_comparator_values_pass_and_a_bad_comparator_is_quarantined(tmp_path):
    rows = rows_of(tmp_path, line(RESULTAT=">100"), line(N_DEMANDE="D2", RESULTAT="<0,5"),
                   line(N_DEMANDE="D3"), line(N_DEMANDE="D4"))
    assert rows["value_comparator"].to_list() == [">", "<", None, None]
    # a parser bug or a hand-made frame: '=<' is not a comparator, '<' without its bound is nothing
    rows = rows.with_columns(value_comparator=pl.Series([">", "<", "=<", "<"]),
                             value_num=pl.Series([100.0, 0.5, 1.0, None]))
    valid, q = validate_rows(rows, now=NOW)
    assert valid["value_comparator"].to_list() == [">", "<"]
    assert q.select("line_no", "reason_code", "column").rows() == [
        (4, "VALUE_INVALID", "value_comparator"), (5, "VALUE_INVALID", "value_comparator")]


@pytest.mark.parametrize("sent", ["X", "Y", "?", "inconnu?"])
def test_an_unreadable_sex_keeps_the_result_flagged(tmp_path, sent):
    """QA F5: 'X' (or any sex the parser cannot read) quarantined the whole result as SEX_INVALID and a
    positive was lost from P and T. It is kept with an unknown sex, flagged SEX_INVALID."""
    valid, q = validate_rows(rows_of(tmp_path, line(), line(N_DEMANDE="D9", SEXE=sent)), now=NOW)
    assert q.is_empty()
    assert valid.select("line_no", "sex", "parse_issues").rows() == [(2, "F", None), (3, None, "SEX_INVALID")]


def test_an_unreadable_sex_and_birth_date_give_both_flags_and_another_defect_lists_the_sex(tmp_path):
    valid, q = validate_rows(rows_of(tmp_path, line(DATE_NAISSANCE="31/02/1955", SEXE="X"),
                                     line(N_DEMANDE="D2", SEXE="X", STATUT="Z")), now=NOW)
    assert valid.select("line_no", "sex", "birth_date", "parse_issues").rows() == [
        (2, None, None, "BIRTH_DATE_INVALID;SEX_INVALID")]
    # quarantined for its status, the row also says its sex could not be read (never quoting it)
    assert q.select("line_no", "reason_code", "column", "detail").rows() == [
        (3, "SEX_INVALID", "sex", "value could not be read"),
        (3, "STATUS_INVALID", "result_status", "status is not F, C, X or D")]


def test_a_row_with_two_defects_gets_both(tmp_path):
    _, q = validate_rows(rows_of(tmp_path, line(NIR=bad_nir("2550999000116"), SEXE="Y")), now=NOW)
    assert sorted(q.select("reason_code", "column").rows()) == [("NIR_KEY", "patient_nir"), ("SEX_INVALID", "sex")]


def test_status_x_needs_no_value(tmp_path):
    valid, q = validate_rows(rows_of(tmp_path, line(RESULTAT="", STATUT="X")), now=NOW)
    assert valid.height == 1 and q.is_empty()


def test_quarantine_holds_no_cell_values(tmp_path):
    _, q = validate_rows(rows_of(tmp_path, line(NIR=bad_nir("2550999000116"))), now=NOW)
    assert set(q.columns) == {"line_no", "reason_code", "column", "detail"}
    assert "2550999000116" not in q.write_csv()


def test_every_check_of_the_model_explains_itself_in_words(tmp_path):
    """QA: an empty HL7 status came out as MISSING_VALUE with "failed check not_nullable". Every
    check now has a sentence an engineer reads without the model's source."""
    from quality.schemas import _compiled
    from transforms.canonical import CANONICAL_SCHEMA

    verdicts = _compiled(tuple(pl.Schema(CANONICAL_SCHEMA).items()))
    assert verdicts and not [v for v in verdicts if v.detail.startswith("failed check")]
    _, q = validate_rows(rows_of(tmp_path, line(DATE_PRELEVEMENT="02/11/2016 08:30", DATE_RECEPTION="")), now=NOW)
    assert q["detail"].to_list() == ["collected more than 366 days before its validation"]


def test_a_correction_or_deletion_may_retract_a_result_of_more_than_a_year_ago(tmp_path):
    """QA cal F5: a C or D validated 14 months after the collection was quarantined 'collected more
    than 366 days before its validation', and the result it retracted kept counting. A new result
    (F) with such dates is still refused: a mistyped collection year."""
    old = dict(DATE_PRELEVEMENT="01/10/2025 08:30", DATE_RECEPTION="01/10/2025 10:00",
               DATE_VALIDATION="20/11/2026 09:00")
    rows = rows_of(tmp_path, *(line(N_DEMANDE=f"R{s}", STATUT=s, **old) for s in ("C", "D", "F")))
    valid, q = validate_rows(rows, now=NOW)
    assert valid["result_status"].to_list() == ["C", "D"]
    assert q.select("line_no", "reason_code", "column").rows() == [(4, "DATE_ORDER", "collected_at")]


@pytest.mark.parametrize("column", ["DATE_RECEPTION", "DATE_VALIDATION"])
def test_a_reception_or_validation_without_its_time_is_compared_at_day_precision(tmp_path, column):
    """QA: a reception or validation sent with day precision (29/03/2026, 20260329) reads as 00:00
    and a same-day timed collection was quarantined as "received/validated before the collection".
    A value at exactly 00:00:00 violates the order only when its date is before the collection's."""
    other = {"DATE_RECEPTION": "", "DATE_VALIDATION": ""}
    rows = rows_of(tmp_path,
                   line(**{**other, column: "02/11/2026"}),
                   line(**{**other, "N_DEMANDE": "D2", column: "20261102"}),
                   line(**{**other, "N_DEMANDE": "D3", column: "01/11/2026"}),        # the day before
                   line(**{**other, "N_DEMANDE": "D4", column: "02/11/2026 08:29"}),  # a minute before
                   line(**{**other, "N_DEMANDE": "D5", column: "02/11/2026 00:00"}))  # read as a day too
    valid, q = validate_rows(rows, now=NOW)
    assert valid["request_id"].to_list() == ["D1", "D2", "D5"]
    col = {"DATE_RECEPTION": "received_at", "DATE_VALIDATION": "validated_at"}[column]
    assert q.select("line_no", "reason_code", "column").rows() == [(4, "DATE_ORDER", col), (5, "DATE_ORDER", col)]


def test_a_deletion_needs_no_collection_date_and_other_statuses_do(tmp_path):
    """QA F3: a deletion (D) without a collection date was quarantined MISSING_VALUE, and the
    positive it deleted kept counting. A deletion names its result by lab, request, test and person."""
    rows = rows_of(tmp_path, line(DATE_PRELEVEMENT="", DATE_RECEPTION="", RESULTAT="", STATUT="D"),
                   *(line(N_DEMANDE=f"D{i}", DATE_PRELEVEMENT="", DATE_RECEPTION="", STATUT=s)
                     for i, s in ((2, "F"), (3, "C"), (4, "X"))))
    valid, q = validate_rows(rows, now=NOW)
    assert valid["line_no"].to_list() == [2]
    assert q.select("line_no", "reason_code", "column").rows() == [
        (3, "MISSING_VALUE", "collected_at"), (4, "MISSING_VALUE", "collected_at"), (5, "MISSING_VALUE", "collected_at")]
    assert q["detail"][0] == "no collection date, and the status is not D (deleted)"
    # an unreadable date is still an unreadable date, deletion or not
    valid, q = validate_rows(rows_of(tmp_path, line(DATE_PRELEVEMENT="32/11/2026", RESULTAT="", STATUT="D")), now=NOW)
    assert valid.is_empty() and q.select("reason_code", "column").rows() == [("DATE_INVALID", "collected_at")]


def test_times_in_the_hour_repeated_as_the_clocks_go_back_are_not_out_of_order(tmp_path):
    """QA cal F4: on 2026-10-25 Paris clocks go back at 03:00 (CEST) to 02:00 (CET). Collected
    02:45+0200, received 02:05+0100, validated 02:15+0100 is in order, but the offsets are dropped
    and the result was quarantined 'validated before the collection'. Outside that hour, or on
    another day, the order is still checked."""
    def row(req, day, collected, received, validated):
        return line(N_DEMANDE=req, DATE_PRELEVEMENT=f"{day} {collected}", DATE_RECEPTION=f"{day} {received}",
                    DATE_VALIDATION=f"{day} {validated}")

    rows = rows_of(tmp_path, row("R1", "25/10/2026", "02:45", "02:05", "02:15"),
                   row("R2", "25/10/2026", "03:10", "02:05", "03:30"),   # 03:10 is after the repeated hour
                   row("R3", "18/10/2026", "02:45", "02:05", "02:15"),   # an ordinary Sunday
                   row("R4", "25/10/2025", "02:45", "02:05", "02:15"))   # a Saturday (2025's change: the 26th)
    valid, q = validate_rows(rows, now=NOW)
    assert valid["line_no"].to_list() == [2]
    assert sorted(set(q.select("line_no", "reason_code").rows())) == [
        (3, "DATE_ORDER"), (4, "DATE_ORDER"), (5, "DATE_ORDER")]


def test_the_gate_and_the_delays_read_the_repeated_hour_as_the_row_checks():
    import duckdb

    from quality.summaries import before_collection_sql, delay_minutes_sql

    con = duckdb.connect()
    got = con.sql(f"""
        SELECT {before_collection_sql('v', 'c')}, {delay_minutes_sql('c', 'v')}
        FROM (VALUES (TIMESTAMP '2026-10-25 02:45', TIMESTAMP '2026-10-25 02:15'),
                     (TIMESTAMP '2026-10-18 02:45', TIMESTAMP '2026-10-18 02:15'),
                     (TIMESTAMP '2026-10-25 02:15', TIMESTAMP '2026-10-25 02:45')) t(c, v)""").fetchall()
    assert got == [(False, None), (True, -30), (False, 30)]
