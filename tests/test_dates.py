"""Dates as labs send them (QA, tester "time"): partial birth dates in every format, the clock of
the "collection in the future" check, and what the quarantine says of an unreadable date."""

from __future__ import annotations

import os
import re
from datetime import date, datetime, timedelta, timezone

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


# ------------------------------------------------------------------------------------------------
# F1: the clock of "collection in the future"
# ------------------------------------------------------------------------------------------------
RUN = datetime(2026, 11, 24, 11, 32, tzinfo=timezone.utc)  # 12:32 in Paris, 15:32 in Réunion


def test_a_collection_is_in_the_future_only_after_the_latest_local_time_anywhere(tmp_path):
    """QA F1: on a UTC host, a Paris collection of 25 minutes ago (12:07 wall clock) and a Réunion
    one of 40 minutes ago (14:53) were "in the future" and quarantined for good. The limit is the
    latest local time anywhere, UTC now + 14 h (2026-11-25 01:32 here), whatever the host's zone."""
    at = {"D1": "24/11/2026 12:07", "D2": "24/11/2026 14:53", "D3": "25/11/2026 01:32",
          "D4": "25/11/2026 01:33", "D5": "26/11/2026 08:00"}
    p = tmp_path / "now.csv"
    p.write_text("\n".join([HEADER, *(line(N_DEMANDE=r, DATE_PRELEVEMENT=t, DATE_RECEPTION="", DATE_VALIDATION="")
                                      for r, t in at.items())]) + "\n")
    rows = canonical_rows(p)
    for now in (RUN, RUN.astimezone(timezone(timedelta(hours=-10))), RUN.astimezone(timezone(timedelta(hours=4)))):
        valid, q = validate_rows(rows, now=now)
        assert valid["request_id"].to_list() == ["D1", "D2", "D3"]
        assert q.select("line_no", "reason_code", "column", "detail").rows() == [
            (5, "DATE_ORDER", "collected_at", "collection time in the future"),
            (6, "DATE_ORDER", "collected_at", "collection time in the future")]


def test_the_clock_is_utc_plus_14_hours_whatever_the_host_zone(monkeypatch):
    import time

    from quality.clock import latest_local_time

    assert latest_local_time(RUN) == datetime(2026, 11, 25, 1, 32)
    for zone in ("UTC", "Europe/Paris", "Indian/Reunion", "America/Los_Angeles"):
        monkeypatch.setenv("TZ", zone)
        time.tzset()
        try:
            # a naive time is the host's: datetime.now() on that host, the same instant
            naive_host_now = RUN.astimezone().replace(tzinfo=None)
            assert latest_local_time(naive_host_now) == datetime(2026, 11, 25, 1, 32), zone
            got = latest_local_time()
            assert abs(got - (datetime.now(timezone.utc).replace(tzinfo=None) + timedelta(hours=14))) < timedelta(seconds=5)
        finally:
            monkeypatch.delenv("TZ")
            time.tzset()


def test_the_gate_counts_a_collection_in_the_future_on_the_same_clock(tmp_path):
    """The gate's n_collected_in_future: after UTC now + 14 h, plus a day (quality/summaries.py)."""
    from quality import summaries as S
    from warehouse import catalog as cat
    from warehouse.store import Warehouse

    wh = Warehouse(tmp_path / "home")
    rows = [{"file_id": "F", "line_no": i, "result_no": i, "is_current": True, "person_key": "p", "source": "labo",
             "collected_at": t, "collected_date": t.date()}
            for i, t in enumerate([datetime(2026, 11, 24, 14, 53), datetime(2026, 11, 26, 1, 32),
                                   datetime(2026, 11, 26, 1, 33)], start=1)]
    df = pl.DataFrame(rows)
    df = df.with_columns([pl.lit(None, dt).alias(n) for n, dt in cat.FCT_LAB_RESULTS.schema.items() if n not in df.columns])
    wh.write_partition(cat.FCT_LAB_RESULTS, "F", [df])
    con = S.connect(wh)
    try:
        for now in (RUN, RUN.astimezone(timezone(timedelta(hours=-10)))):
            row = S.fct_summary(con, S.Sources(wh, con), ["75"], [], now).row(0, named=True)
            assert row["n_collected_in_future"] == 1
    finally:
        con.close()


def test_an_invalid_collection_date_gives_no_reason_derived_from_it(tmp_path):
    """QA F6: a two-digit year (29/03/26 00:30, read as year 0026) is DATE_INVALID:collected_at, and
    was also "born after the collection" and "collected more than 366 days before its validation"."""
    p = tmp_path / "yy.csv"
    p.write_text("\n".join([HEADER, line(DATE_PRELEVEMENT="29/03/26 00:30", DATE_RECEPTION="29/03/2026 08:00",
                                         DATE_VALIDATION="29/03/2026 18:00")]) + "\n")
    valid, q = validate_rows(canonical_rows(p), now=NOW)
    assert valid.is_empty()
    assert q.select("reason_code", "column").rows() == [("DATE_INVALID", "collected_at")]


# the collection 2026-11-02 08:30 (Paris winter time, UTC+1) as different senders stamp it
STAMPS = [("20261102083000", datetime(2026, 11, 2, 8, 30)),  # no offset: the lab's wall clock
          ("20261102073000Z", datetime(2026, 11, 2, 8, 30)),  # UTC: converted to Paris time
          ("20261102073000+0000", datetime(2026, 11, 2, 8, 30)),
          ("20261101233000Z", datetime(2026, 11, 2, 0, 30)),  # 00:30 in Paris is 23:30 the day before in UTC
          ("20260701223000Z", datetime(2026, 7, 2, 0, 30)),  # summer: UTC+2
          ("20261102083000+0100", datetime(2026, 11, 2, 8, 30)),  # the lab's own offset: kept as written
          ("20261102083000+0200", datetime(2026, 11, 2, 8, 30)),  # the wrong season's: the lab's clock still
          ("20261102083000+0400", datetime(2026, 11, 2, 8, 30)),  # a Réunion lab's wall clock
          ("20261102083000-0400", datetime(2026, 11, 2, 8, 30))]  # Antilles


@pytest.mark.parametrize("fmt", ["hl7v2", "cda", "hprim"])
@pytest.mark.parametrize(("stamp", "expected"), STAMPS, ids=[s for s, _ in STAMPS])
def test_a_time_stamped_in_utc_is_read_as_paris_wall_clock_time(tmp_path, fmt, stamp, expected):
    """QA F4 (tester "time"): the offset was dropped without being applied, so a CDA producer's
    23:30Z (00:30 in Paris) counted on the day before, and one specimen sent as +0100 by the HL7 feed
    and as Z by a CDA counted on two days. A UTC time is now converted to Paris wall-clock time; any
    other offset is the lab's own and its wall clock is kept, even when the offset is wrong."""
    rows = _typed_rows(tmp_path)
    path = tmp_path / f"in.{fmt}"
    {"hl7v2": formats.write_hl7v2, "cda": formats.write_cda, "hprim": formats.write_hprim}[fmt](rows, path)
    text = path.read_text(encoding="utf-8")
    assert text.count("20261102083000") == 1, fmt
    path.write_text(text.replace("20261102083000", stamp), encoding="utf-8")
    parsed = _parsed(path, fmt)
    assert parsed["collected_at"].to_list() == [expected]
    assert parsed["parse_issues"].to_list() == [None]


@pytest.mark.parametrize("fmt", ["hl7v2", "hprim"])
@pytest.mark.parametrize("offset", ["+0000", "Z", "-0000"])
def test_a_date_without_its_time_stays_that_day_whatever_its_offset(tmp_path, fmt, offset):
    """QA regr2 F3 (MEDIUM): a reception and validation sent as '20261102+0000' (a DTM may carry an
    offset at any precision) became 01:00 Paris time: no longer a date without its time, the
    positive collected at 08:30 that day was quarantined DATE_ORDER."""
    rows = _typed_rows(tmp_path).with_columns(received_at=pl.lit(datetime(2026, 11, 2)),
                                              validated_at=pl.lit(datetime(2026, 11, 2)))
    path = tmp_path / f"in.{fmt}"
    {"hl7v2": formats.write_hl7v2, "hprim": formats.write_hprim}[fmt](rows, path)
    text = path.read_text(encoding="utf-8")
    text, n = re.subn(r"\|20261102(?:000000)?(?=[|\r\n])", f"|20261102{offset}", text)
    assert n >= 2, text
    path.write_text(text, encoding="utf-8")
    parsed = _parsed(path, fmt)
    assert parsed["received_at"].to_list() == [datetime(2026, 11, 2)]
    assert parsed["validated_at"].to_list() == [datetime(2026, 11, 2)]
    assert parsed["collected_at"].to_list() == [datetime(2026, 11, 2, 8, 30)]
    valid, quarantined = validate_rows(parsed, now=NOW)
    assert valid.height == 1 and quarantined.is_empty(), quarantined


LAB_STAMPS = [("970400016", "20261114210000Z", datetime(2026, 11, 15, 1)),  # La Réunion, UTC+4
              ("970400016", "20261115010000+0400", datetime(2026, 11, 15, 1)),
              ("970211207", "20261115030000Z", datetime(2026, 11, 14, 23)),  # Martinique, UTC-4
              ("970302022", "20261115020000Z", datetime(2026, 11, 14, 23)),  # Guyane, UTC-3
              ("690001235", "20261114233000Z", datetime(2026, 11, 15, 0, 30))]  # Lyon: Paris time


@pytest.mark.parametrize("fmt", ["hl7v2", "cda", "hprim"])
@pytest.mark.parametrize(("finess", "stamp", "expected"), LAB_STAMPS, ids=[f"{f}-{s}" for f, s, _ in LAB_STAMPS])
def test_a_utc_time_of_an_overseas_lab_is_read_on_its_own_clock(tmp_path, fmt, finess, stamp, expected):
    """QA regr2 F4 (MEDIUM): a Réunion lab's specimen sent as +0400 by one feed and as Z by another
    was converted to Paris time, two results on two days counted twice in T. A UTC time is read on
    the clock of the lab's FINESS (its département); a mainland lab's stays Paris time."""
    rows = _typed_rows(tmp_path).with_columns(lab_finess=pl.lit(finess))
    path = tmp_path / f"in.{fmt}"
    {"hl7v2": formats.write_hl7v2, "cda": formats.write_cda, "hprim": formats.write_hprim}[fmt](rows, path)
    text = path.read_text(encoding="utf-8")
    assert text.count("20261102083000") == 1, fmt
    path.write_text(text.replace("20261102083000", stamp), encoding="utf-8")
    parsed = _parsed(path, fmt)
    assert parsed["lab_finess"].to_list() == [finess]
    assert parsed["collected_at"].to_list() == [expected]
