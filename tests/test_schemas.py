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
        ({"DATE_NAISSANCE": "31/02/1955"}, "DATE_INVALID", "birth_date"),
        ({"DATE_PRELEVEMENT": "32/11/2026 08:00"}, "DATE_INVALID", "collected_at"),
        ({"DATE_PRELEVEMENT": ""}, "MISSING_VALUE", "collected_at"),
        ({"DATE_VALIDATION": "01/11/2026 08:00"}, "DATE_ORDER", "validated_at"),
        ({"DATE_RECEPTION": "01/11/2026 08:00"}, "DATE_ORDER", "received_at"),
        ({"DATE_NAISSANCE": "01/01/2027"}, "DATE_ORDER", "birth_date"),
        ({"DATE_NAISSANCE": "01/01/1850"}, "DATE_INVALID", "birth_date"),
        # QA: born in 1890, 136 at the collection (02/11/2026): valid here, then the quality gate
        # (ages 0 to 125) blocked every export; 126 at the collection is refused, 125 kept (below)
        ({"DATE_NAISSANCE": "01/01/1890"}, "DATE_INVALID", "birth_date"),
        ({"DATE_NAISSANCE": "02/11/1900"}, "DATE_INVALID", "birth_date"),
        ({"DATE_PRELEVEMENT": "02/11/2027 08:00", "DATE_RECEPTION": "", "DATE_VALIDATION": ""},
         "DATE_ORDER", "collected_at"),
        # QA: a two-digit year was read as year 26, valid; a collection typed ten years early was
        # valid too and stretched the SI-DEP grid over ten years; 1e999 was stored as infinity
        ({"DATE_PRELEVEMENT": "02/11/26 08:30", "DATE_NAISSANCE": "", "DATE_RECEPTION": "", "DATE_VALIDATION": ""},
         "DATE_INVALID", "collected_at"),
        ({"DATE_PRELEVEMENT": "02/11/2016 08:30", "DATE_RECEPTION": ""}, "DATE_ORDER", "collected_at"),
        ({"RESULTAT": "1e999"}, "VALUE_INVALID", "value_num"),
        ({"SEXE": "X"}, "SEX_INVALID", "sex"),
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
