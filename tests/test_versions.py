"""Which rows sharing a version key (lab, request, test, specimen) are versions of one result
(transforms/versions.py). QA (HIGH, twice): a glucose tolerance test's three measurements, and two
patients given the same request number, replaced each other silently."""

from __future__ import annotations

from datetime import date, datetime

import polars as pl

from transforms.versions import settle

D1, D2 = date(2026, 11, 2), date(2026, 11, 3)


def _rows(*rows: tuple) -> pl.DataFrame:
    """(file_id, result_no, file_seq, validated hour, status, person, day) -> settle's input."""
    return pl.DataFrame(
        [{"version_key": "lab|req|GLY|", "file_id": f, "result_no": n, "file_seq": seq,
          "placed_at": datetime(2026, 11, 4, h), "result_status": st, "person_key": p, "collected_date": d}
         for f, n, seq, h, st, p, d in rows])


def _flags(rows: pl.DataFrame) -> dict:
    out = settle(rows)
    return {f"{f}:{n}": (cur, sup) for f, n, cur, sup in out.iter_rows()}


def test_a_correction_replaces_and_a_deletion_removes():
    got = _flags(_rows(("a", 1, 1, 8, "F", "p", D1), ("b", 1, 2, 9, "C", "p", D1)))
    assert got == {"a:1": (False, "b:1"), "b:1": (True, None)}
    got = _flags(_rows(("a", 1, 1, 8, "F", "p", D1), ("b", 1, 2, 9, "D", "p", D1)))
    assert got == {"a:1": (False, "b:1"), "b:1": (False, None)}


def test_a_final_result_delivered_again_replaces_the_earlier_delivery():
    got = _flags(_rows(("a", 1, 1, 8, "F", "p", D1), ("b", 7, 2, 9, "F", "p", D1)))
    assert got == {"a:1": (False, "b:7"), "b:7": (True, None)}


def test_the_measurements_of_a_tolerance_test_are_three_results():
    rows = _rows(("a", 1, 1, 8, "F", "p", D1), ("a", 2, 1, 8, "F", "p", D1), ("a", 3, 1, 8, "F", "p", D1))
    assert all(cur and sup is None for cur, sup in _flags(rows).values())
    # delivered again whole: the k-th measurement continues the k-th result
    again = pl.concat([rows, _rows(("b", 1, 2, 9, "F", "p", D1), ("b", 2, 2, 9, "F", "p", D1),
                                   ("b", 3, 2, 9, "F", "p", D1))])
    assert _flags(again) == {"a:1": (False, "b:1"), "a:2": (False, "b:2"), "a:3": (False, "b:3"),
                             "b:1": (True, None), "b:2": (True, None), "b:3": (True, None)}


def test_a_request_number_given_to_another_patient_or_day_is_another_result():
    got = _flags(_rows(("a", 1, 1, 8, "F", "p", D1), ("b", 1, 2, 9, "F", "q", D2)))
    assert got == {"a:1": (True, None), "b:1": (True, None)}
    got = _flags(_rows(("a", 1, 1, 8, "F", "p", D1), ("b", 1, 2, 9, "F", "p", D2)))  # a daily counter
    assert got == {"a:1": (True, None), "b:1": (True, None)}
    # and a correction goes to the result of its person and day, not to the latest row
    got = _flags(_rows(("a", 1, 1, 8, "F", "p", D1), ("b", 1, 2, 9, "F", "q", D2), ("c", 1, 3, 10, "C", "p", D1)))
    assert got == {"a:1": (False, "c:1"), "b:1": (True, None), "c:1": (True, None)}


def test_a_correction_of_the_identity_or_of_the_day_still_replaces():
    # the birth date corrected: another person key, the same day
    got = _flags(_rows(("a", 1, 1, 8, "F", "p", D1), ("b", 1, 2, 9, "C", "p2", D1)))
    assert got == {"a:1": (False, "b:1"), "b:1": (True, None)}
    # the collection day corrected: the same person
    got = _flags(_rows(("a", 1, 1, 8, "F", "p", D1), ("b", 1, 2, 9, "C", "p", D2)))
    assert got == {"a:1": (False, "b:1"), "b:1": (True, None)}
    # both changed: nothing to correct with any certainty, it stands alone
    got = _flags(_rows(("a", 1, 1, 8, "F", "p", D1), ("b", 1, 2, 9, "C", "q", D2)))
    assert got == {"a:1": (True, None), "b:1": (True, None)}


def test_order_is_validation_then_delivery():
    # the later validation wins whatever the delivery order (the documented rule)
    got = _flags(_rows(("b", 1, 2, 8, "C", "p", D1), ("a", 1, 1, 9, "F", "p", D1)))
    assert got == {"b:1": (False, "a:1"), "a:1": (True, None)}
