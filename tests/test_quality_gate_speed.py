"""The shortcuts that keep the quality gate cheap on a large warehouse give the answers of the plain
queries they replace: key duplicates counted with bitmaps, versions grouped by hash, reference lists
as relations, Parquet files read without union_by_name, repeated checks validated once.

Small data written under pytest's temporary directories; no pipeline run.
"""

from __future__ import annotations

import json

from datetime import datetime, timedelta

import duckdb
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quality import summaries as S
from warehouse import catalog as cat
from warehouse.store import Warehouse


def _distinct_reference(con, rel: str, key: list[str]) -> int:
    """What the gate computed before key_duplicates: rows minus SELECT DISTINCT key."""
    cols = ", ".join(f'"{k}"' for k in key)
    return con.sql(f"SELECT (SELECT count(*) FROM {rel}) - "
                   f"(SELECT count(*) FROM (SELECT DISTINCT {cols} FROM {rel}))").fetchall()[0][0]


rows = st.lists(st.tuples(st.sampled_from(["a", "b", "c", None]),
                          st.one_of(st.none(), st.integers(-3, 4)),
                          st.sampled_from(["x", "y", None])), max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows)
def test_key_duplicates_equals_select_distinct(rows, monkeypatch):
    df = pl.DataFrame(rows, schema={"g": pl.Utf8, "n": pl.Int64, "s": pl.Utf8}, orient="row")
    con = duckdb.connect()
    try:
        con.register("t", df)
        types = S.describe(con, "t")
        for key in (["g", "n"], ["n"], ["g", "s", "n"], ["g", "s"]):  # integer last (bitmaps), string last
            expected = _distinct_reference(con, "t", key)
            assert S.key_duplicates(con, "t", key, types) == expected, key
            with monkeypatch.context() as m:  # bitmaps too large: the hash DISTINCT
                m.setattr(S, "MAX_BITMAP_BITS", 0)
                assert S.key_duplicates(con, "t", key, types) == expected, key
    finally:
        con.close()


def test_key_duplicates_on_an_empty_relation_and_a_wide_range():
    con = duckdb.connect()
    try:
        con.execute("CREATE TABLE e (f VARCHAR, n BIGINT)")
        assert S.key_duplicates(con, "e", ["f", "n"], S.describe(con, "e")) == 0
        # numbers far apart (a range of 2**40) fall back to the hash DISTINCT, with the same answer
        con.execute("CREATE TABLE w AS SELECT * FROM (VALUES ('a', 1), ('a', 1099511627776), ('a', 1)) v(f, n)")
        assert S.key_duplicates(con, "w", ["f", "n"], S.describe(con, "w")) == 1
        with pytest.raises(ValueError):
            S.key_duplicates(con, "w", [], {})
    finally:
        con.close()


def _write(wh: Warehouse, t, file_id: str, rows: list[dict]) -> None:
    df = pl.DataFrame(rows)
    df = df.with_columns([pl.lit(None, dtype).alias(n) for n, dtype in t.schema.items() if n not in df.columns])
    wh.write_partition(t, file_id, [df])


def _fct(file_id: str, line_no, version_key, is_current=True, dep="75", loinc="94500-6", cls="POS") -> dict:
    return {"file_id": file_id, "line_no": line_no, "result_no": line_no, "version_key": version_key,
            "is_current": is_current, "dep": dep, "loinc_code": loinc, "result_class": cls, "age": 40,
            "person_key": "p", "collected_at": datetime(2026, 11, 2, 8), "collected_date": datetime(2026, 11, 2).date()}


@pytest.fixture
def small_fct(tmp_path) -> Warehouse:
    """Two files of fct_lab_results with a repeated line, two null lines, versions with several
    current rows (one of them a null version key) and départements in and out of the reference."""
    wh = Warehouse(tmp_path / "home")
    _write(wh, cat.FCT_LAB_RESULTS, "A", [_fct("A", 1, "v1"), _fct("A", 2, "v2"), _fct("A", 2, "v3", dep="99"),
                                          _fct("A", 3, "v2", is_current=False), _fct("A", 4, None)])
    _write(wh, cat.FCT_LAB_RESULTS, "B", [_fct("B", 1, "v1", dep=None), _fct("B", 2, "v3"), _fct("B", 3, "v3"),
                                          _fct("B", None, None, loinc="x"), _fct("B", None, "v4", cls="NEG")])
    _write(wh, cat.STG_RESULTS, "A", [{"file_id": "A", "result_no": i} for i in range(5)])
    return wh


def test_fct_summary_matches_the_plain_queries(small_fct):
    con = S.connect(small_fct)
    try:
        for src in (S.Sources(small_fct), S.Sources(small_fct, con)):
            fct = src.rel(cat.FCT_LAB_RESULTS)
            row = S.fct_summary(con, src, ["75"], ["94500-6"], datetime(2026, 11, 3)).row(0, named=True)
            # the formulations the summary had before, on the same files
            key_dup, inconsistent, dep_out, usable = con.sql(f"""
                SELECT count(*) - count(DISTINCT (file_id, result_no)),
                       count(*) FILTER (WHERE superseded_by IS NULL AND NOT is_current
                                        AND result_status IS DISTINCT FROM 'D'),
                       count(*) FILTER (WHERE dep IS NOT NULL AND dep NOT IN ('75')),
                       count(*) FILTER (WHERE is_current AND loinc_code IN ('94500-6')
                                        AND result_class IN ('POS', 'NEG'))
                FROM {fct}""").fetchall()[0]
            # A:3 is not current, replaced by nothing and not a deletion: inconsistent
            assert (row["n_key_duplicates"], row["n_versions_inconsistent"]) == (key_dup, inconsistent) == (2, 1)
            assert (row["n_dep_not_in_reference"], row["n_covid_results_usable"]) == (dep_out, usable) == (1, 8)
            assert row["n_rows"] == 10 and row["n_staging_rows_missing"] == 5 - 10
            # a code of the reference outside the SI-DEP geography (a COM without a population) is a
            # different count from a code outside the reference
            com = S.fct_summary(con, src, ["75"], ["94500-6"], datetime(2026, 11, 3),
                                reference=["75", "99"]).row(0, named=True)
            assert (com["n_dep_not_in_reference"], com["n_dep_outside_sidep"], row["n_dep_outside_sidep"]) == (0, 1, 1)
            # empty reference lists count nothing, as `NOT IN (NULL)` did
            empty = S.fct_summary(con, src, [], [], datetime(2026, 11, 3)).row(0, named=True)
            assert empty["n_dep_not_in_reference"] == 0 and empty["n_covid_results_usable"] == 0
    finally:
        con.close()


def _summary(wh: Warehouse) -> dict:
    con = S.connect(wh)
    try:
        return S.fct_summary(con, S.Sources(wh, con), ["75"], ["94500-6"], datetime(2026, 11, 3)).row(0, named=True)
    finally:
        con.close()


def test_row_checks_count_current_results_and_say_where(tmp_path):
    """QA: a birth date giving age 136 blocked every export, and still did once the lab had
    corrected it (the superseded version was counted); the message named no file. The row-level
    counts are on current results, and each failing one says where its first rows are."""
    wh = Warehouse(tmp_path / "home")
    old = {**_fct("F1", 4, "v1", is_current=False), "age": 136, "superseded_by": "F1:9"}  # corrected by line 9
    rows = [old, _fct("F1", 9, "v1"), {**_fct("F1", 12, "v2"), "age": 130}, {**_fct("F1", 15, "v3"), "age": 126},
            {**_fct("F1", 20, "v4"), "age": 127}, {**_fct("F1", 21, "v5"), "age": 128}]
    _write(wh, cat.FCT_LAB_RESULTS, "F1", [{**r, "source": "labo_zeta"} for r in rows])
    row = _summary(wh)
    assert row["n_age_out_of_range"] == 4 and row["n_collected_in_future"] == 0
    assert row["n_versions_inconsistent"] == 0 and row["n_requests_shared_by_persons"] == 0
    where = json.loads(row["where"])
    # the lab, the file's id and the line; never the file's name (labs name files after patients)
    assert where == {"n_age_out_of_range": "labo_zeta file F1 line 12, labo_zeta file F1 line 15, "
                                           "labo_zeta file F1 line 20"}


def test_version_flags_that_contradict_each_other_are_counted(tmp_path):
    wh = Warehouse(tmp_path / "home")
    rows = [{**_fct("F1", 1, "v1", is_current=False), "superseded_by": "F1:2"},  # fine: F1:2 is v1's head
            _fct("F1", 2, "v1"),
            {**_fct("F1", 3, "v2", is_current=False), "superseded_by": "F1:9"},  # names no row
            {**_fct("F1", 4, "v3", is_current=False), "superseded_by": "F1:2"},  # another key's head
            {**_fct("F1", 5, "v4"), "superseded_by": "F1:2"},  # current yet replaced
            _fct("F1", 6, "v5", is_current=False),  # a head neither current nor deleted
            {**_fct("F1", 7, "v6", is_current=False), "result_status": "D"},  # a deletion: fine
            {**_fct("F1", 8, "v7"), "person_key": "q"}, {**_fct("F1", 9, "v7"), "person_key": "r"},  # shared
            # not shared: a row without a person key, and two person keys with one link key
            {**_fct("F1", 10, "v8"), "person_key": "s"}, {**_fct("F1", 11, "v8"), "person_key": None},
            {**_fct("F1", 12, "v9"), "person_key": "t", "link_key": "L"},
            {**_fct("F1", 13, "v9"), "person_key": "u", "link_key": "L"}]
    _write(wh, cat.FCT_LAB_RESULTS, "F1", [{**r, "source": "labo"} for r in rows])
    row = _summary(wh)
    assert row["n_versions_inconsistent"] == 4
    assert row["n_requests_shared_by_persons"] == 2
    assert json.loads(row["where"])["n_requests_shared_by_persons"] == "labo file F1 line 8, labo file F1 line 9"


def test_union_by_name_only_when_the_files_differ(small_fct):
    wh = small_fct
    con = S.connect(wh)
    try:
        same = S.Sources(wh, con)
        assert not same.needs_union(cat.FCT_LAB_RESULTS)
        union = "union_by_name = true"
        assert union not in same.rel(cat.FCT_LAB_RESULTS)
        assert union not in same.rel(cat.FCT_LAB_RESULTS, ["A"])
        assert union in S.Sources(wh).rel(cat.FCT_LAB_RESULTS)  # no connection: as before
        assert union in same.rel(cat.STG_RESULTS)  # a single file: nothing to gain
        before = same.columns(con, cat.FCT_LAB_RESULTS)
        assert before == [c.name for c in cat.FCT_LAB_RESULTS.columns]
        # a file written before a column existed (and with its columns in another order)
        old = wh.partition_dir(cat.FCT_LAB_RESULTS, "C")
        old.mkdir(parents=True)
        pl.DataFrame({"line_no": [1], "file_id": ["C"]}).write_parquet(old / "part-00000.parquet")
        changed = S.Sources(wh, con)
        assert changed.needs_union(cat.FCT_LAB_RESULTS)
        assert union in changed.rel(cat.FCT_LAB_RESULTS)
        assert changed.columns(con, cat.FCT_LAB_RESULTS) == before
        n, dep_null = con.sql(f"SELECT count(*), count(*) FILTER (WHERE dep IS NULL) "
                              f"FROM {changed.rel(cat.FCT_LAB_RESULTS)}").fetchall()[0]
        assert (n, dep_null) == (11, 2)
    finally:
        con.close()


def test_checks_repeated_in_a_suite_are_validated_once():
    from quality.checkpoints import Check, _distinct_checks

    a = Check("a", "ExpectColumnValuesToNotBeNull", {"column": "x"}, "x is set")
    b = Check("b", "ExpectColumnValuesToNotBeNull", {"column": "x"}, "x is set")  # equal to a: GX keeps one
    c = Check("c", "ExpectColumnValuesToNotBeNull", {"column": "x"}, "x is set", critical=False)
    assert _distinct_checks([a, b, c]) == [a, c]


def test_the_validation_delay_is_that_of_first_versions(tmp_path):
    """QA: ordinary late corrections raised the warning "90% of results are validated within 10
    days of reception"; a correction is validated when it is made."""
    wh = Warehouse(tmp_path / "home")
    got = datetime(2026, 11, 2, 9)

    def row(n, status, days):
        return {**_fct("F1", n, f"v{n}"), "source": "labo", "result_status": status, "received_at": got,
                "validated_at": got + timedelta(days=days)}

    _write(wh, cat.FCT_LAB_RESULTS, "F1", [row(1, "F", 0.5), row(2, "F", 0.5), row(3, "C", 20), row(4, "D", 30)])
    con = S.connect(wh)
    try:
        day = S.lab_day(con, S.Sources(wh, con)).row(0, named=True)
        legs = {r["leg"]: r for r in S.lab_delays(con, S.Sources(wh, con)).iter_rows(named=True)}
    finally:
        con.close()
    assert day["n_results"] == 4 and day["validation_h_p90"] == 12.0
    assert legs["reception_to_validation"]["n"] == 2 and legs["reception_to_validation"]["h_p90"] == 12.0


def test_a_reception_or_validation_sent_without_its_time_is_compared_at_day_precision(tmp_path):
    """QA: a reception or validation dated 29/03/2026 without a time (read as 00:00) of a specimen
    collected at 10:00 that day counted as "before the collection" at the gate, and its delay was
    negative in the data-quality report. A value at exactly 00:00:00 is before the collection only
    when its date is; a same-day delay it would make negative is unknown (null)."""
    wh = Warehouse(tmp_path / "home")
    coll = datetime(2026, 11, 2, 10)
    day, day_before = datetime(2026, 11, 2), datetime(2026, 11, 1)

    def row(n, received, validated):
        return {**_fct("F1", n, f"v{n}"), "source": "labo", "result_status": "F", "collected_at": coll,
                "received_at": received, "validated_at": validated}

    _write(wh, cat.FCT_LAB_RESULTS, "F1", [
        row(1, day, datetime(2026, 11, 2, 18)),                      # received "that day": fine
        row(2, datetime(2026, 11, 2, 11), day),                      # validated "that day": fine
        row(3, day_before, datetime(2026, 11, 2, 9, 59)),            # both before: counted
        row(4, datetime(2026, 11, 2, 12), datetime(2026, 11, 3, 12)),  # 2 h and 24 h
    ])
    summary = _summary(wh)
    assert summary["n_received_before_collected"] == 1 and summary["n_validated_before_collected"] == 1
    assert json.loads(summary["where"]) == {"n_received_before_collected": "labo file F1 line 3",
                                            "n_validated_before_collected": "labo file F1 line 3"}
    con = S.connect(wh)
    try:
        lab_day = S.lab_day(con, S.Sources(wh, con)).row(0, named=True)
        legs = {r["leg"]: r for r in S.lab_delays(con, S.Sources(wh, con)).iter_rows(named=True)}
    finally:
        con.close()
    # row 1's reception and row 2's validation have no delay in hours; row 3's are negative (a
    # real inversion, counted), row 4's 2 h and 24 h
    assert legs["collection_to_reception"]["n"] == 3 and legs["reception_to_validation"]["n"] == 3
    assert lab_day["n_negative_delays"] == 1


def test_deletions_without_a_date_or_a_result_are_counted_apart(tmp_path):
    """QA F3: a deletion (D) may come without a collection date; it is never current, so it does
    not fail ``n_collected_null`` (critical), which still counts any other row without one. A
    deletion that deleted nothing is counted by ``n_deletions_unmatched`` (a warning); lab_day
    gives no day to a row without one."""
    wh = Warehouse(tmp_path / "home")
    undated = {"collected_at": None, "collected_date": None, "result_status": "D", "is_current": False}
    rows = [{**_fct("F1", 1, "v1", is_current=False), "superseded_by": "F1:2"},
            {**_fct("F1", 2, "v1"), **undated},  # deleted F1:1
            {**_fct("F1", 3, "v2"), **undated},  # deleted nothing
            {**_fct("F1", 4, "v3", is_current=False), "result_status": "D", "superseded_by": "F1:5"},
            {**_fct("F1", 5, "v3"), **undated},  # replaced only a deletion: deleted nothing either
            {**_fct("F1", 6, "v4"), "collected_at": None, "collected_date": None}]  # an F without a date
    _write(wh, cat.FCT_LAB_RESULTS, "F1", [{**r, "source": "labo"} for r in rows])
    row = _summary(wh)
    assert row["n_collected_null"] == 1 and row["n_versions_inconsistent"] == 0
    assert row["n_deletions_unmatched"] == 2
    assert json.loads(row["where"])["n_deletions_unmatched"] == "labo file F1 line 3, labo file F1 line 5"
    con = S.connect(wh)
    try:
        days = S.lab_day(con, S.Sources(wh, con))
    finally:
        con.close()
    assert days["collected_date"].to_list() == [datetime(2026, 11, 2).date()]


def test_a_failed_entry_is_in_the_landing_by_its_own_path_not_its_target(tmp_path):
    """QA: a symbolic link refused as NOT_A_FILE, pointing outside the landing, was not found there
    again, so only the run that refused it named it; a path leaving the landing is never in it."""
    landing = tmp_path / "landing"
    (landing / "labo").mkdir(parents=True)
    outside = tmp_path / "elsewhere.csv"
    outside.write_text("x")
    (landing / "labo" / "link.csv").symlink_to(outside)
    (landing / "labo" / "dangling.csv").symlink_to(tmp_path / "gone.csv")
    assert S._in_landing(landing, "labo/link.csv") and S._in_landing(landing, "labo/dangling.csv")
    assert S._in_landing(landing, "labo/") and not S._in_landing(landing, "labo/removed.csv")
    assert not S._in_landing(landing, "../elsewhere.csv")
