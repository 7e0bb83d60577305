"""Collect parsed results as plain tuples and turn them into canonical chunks, vectorised.

The HL7 v2, CDA and HPRIM parsers walk their input in Python and append one tuple per result in
the :data:`RAW_COLUMNS` layout: canonical columns as *text as sent* (timestamps and birth date
still in their ``YYYYMMDD[HHMM[SS[.S]]][+/-ZZZZ]`` form, no ``value_num``). Everything that can be
done column-wise is done here, once per batch, with polars:

* timestamps -> naive ``Datetime("us")``: the digits are read as written (the labs' local time
  is what the indicators count by); a time stamped in UTC (``Z``, ``+0000``) is converted to
  Paris wall-clock time, any other offset (the lab's own) is dropped without being applied;
  a value that is not such a timestamp, or not a real date, becomes null plus
  ``DATE_INVALID:<column>`` in ``parse_issues`` (a birth date of year or month precision,
  ``1980`` / ``198003`` / ``19800000``: ``DATE_INVALID:birth_date:partial``);
* ``value_num`` from ``value_raw`` when ``value_type`` is NM, or SN holding a plain number
  (``^12``, ``=^12``, ``12``); a decimal comma and an exponent (``1e3``) are accepted; an NM
  value that is not a number (and not a comparator such as ``<0.5``) gives
  ``VALUE_INVALID:value_num``;
* a comparator and a number, NM or SN (``<0,5``, ``< 0.5``, ``<^0.5``, ``>=^10``, ``≤3``, ``inf. à 5``; CDA
  IVL_PQ with one bound arrives as ``<^x`` / ``<=^x`` / ``>^x`` / ``>=^x``): ``value_comparator``
  is ``<``, ``<=``, ``>`` or ``>=`` and ``value_num`` the bound;
* a value without its type (empty OBX-2, a CDA ``value`` without ``xsi:type``) is typed from the
  value: ``NM`` when it is a number, ``SN`` when a comparator and a number (``<0,5``, ``>=^10``)
  or ``^12`` / ``=^12``; any other value keeps a null type;
* empty strings become nulls;
* the INS loses its blanks, dots and dashes and is upper-cased when that makes it a NIR
  (``2 79 07 29 100 851 43``: ``transforms.identity.with_normalised_ins``, as in the CSV extract);
* the issues found in Python (the last tuple item) and the ones found here are ``;``-joined.

:class:`ResultSink` batches tuples into DataFrames every :data:`BATCH_ROWS` rows so that Python
objects never pile up, and hands a :class:`~transforms.parsers.base.Chunk` back when
``chunk_rows`` rows (or rejects) are ready.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import polars as pl

from quality.reasons import check
from transforms.canonical import conform
from transforms.identity import with_normalised_ins
from transforms.parsers.base import (PARTIAL_BIRTH_TS, REJECT_SCHEMA, Chunk, birth_date_issue, comparator_of,
                                     comparator_pattern)
from transforms.parsers.sex import sex_columns

RAW_COLUMNS: tuple[str, ...] = (
    "line_no",
    "message_id",
    "lab_finess",
    "request_id",
    "patient_nir",
    "ins_oid",
    "family_name",
    "first_name",
    "birth_date",
    "sex",
    "postal_code",
    "collected_at",
    "received_at",
    "validated_at",
    "local_code",
    "local_label",
    "loinc_code_src",
    "value_type",
    "value_raw",
    "unit_raw",
    "ref_range",
    "abnormal_flag",
    "result_status",
    "specimen",
    "observation_sub_id",
    "observed_at",
    "parse_issues",
)
RAW_SCHEMA = pl.Schema({n: (pl.Int64() if n == "line_no" else pl.Utf8()) for n in RAW_COLUMNS})
# positions, for parsers that build tuples piecewise
IDX = {n: i for i, n in enumerate(RAW_COLUMNS)}
PATIENT_SLICE = slice(IDX["patient_nir"], IDX["postal_code"] + 1)
TIMESTAMP_COLUMNS = ("collected_at", "received_at", "validated_at")
# a timestamp read like the others but never a reason to refuse the result: the observation's own
# time (OBX-14) was ignored before it was kept (QA fmt F1), and some senders write junk there; an
# unreadable one is null
_QUIET_TIMESTAMPS = ("observed_at",)
BATCH_ROWS = 16_384
RAW_TEXT_CAP = 1 << 20  # characters of raw_text kept in a reject

_TS_PATTERN = (
    r"^\s*(\d{8})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:[.,](\d{1,6}))?)?)?)?\s*([+-]\d{2,4}|Z)?\s*$"
)
# the offsets of a time written in UTC (Z, +0000): such a time is not a lab's wall clock, it is
# converted to Paris wall-clock time (UTC stamps come from interface engines and CDA producers: a
# specimen taken at 00:30 in Paris, stamped 23:30Z, counted on the day before, and the same specimen
# sent by two feeds, +0100 and Z, on two days). Any other offset is the lab's own (+0100/+0200 in
# Paris, -0400 Antilles, +0400 Réunion...): its wall-clock time is kept as written, even when the
# offset is the wrong season's (a lab's clock is what the indicators count by)
PARIS_ZONE = "Europe/Paris"
_CONVERTED_OFFSETS = ("Z", "+00", "-00", "+0000", "-0000")
# ... to the lab's own wall-clock time when its FINESS says it is overseas (a FINESS starts with its
# département: 9701 Guadeloupe, 9702 Martinique, 9703 Guyane, 9704 La Réunion). QA regr2 F4: a Réunion
# lab's specimen sent as +0400 by one feed and as Z by another was two results on two days. Other
# FINESS (Mayotte, Saint-Pierre-et-Miquelon, the COM: numbering not checked) and rows without one
# get Paris time (docs/formats.md)
LAB_ZONES = {"9701": "America/Guadeloupe", "9702": "America/Martinique", "9703": "America/Cayenne",
             "9704": "Indian/Reunion"}
# HL7's NM has no exponent, but labs' systems write one ('1e3', '2.5E-2'): read as a number
_NUMBER = r"[-+]?(?:\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][-+]?\d+)?"
_NUM_RE = rf"^{_NUMBER}$"
_BOUND_RE = comparator_pattern(_NUMBER)
# a comparator and a number, read as a bound or not ('<>5', '=5'): not an unreadable NM value
_COMPARATOR_RE = rf"^(?:<>|=)\s*\^?\s*{_NUMBER}$|{_BOUND_RE}"
_SN_PLAIN_RE = rf"^=?\^{_NUMBER}$"
_TYPED_BY_VALUE = ((re.compile(_NUM_RE), "NM"), (re.compile(_BOUND_RE), "SN"), (re.compile(_SN_PLAIN_RE), "SN"))


def type_of_value(value: str) -> str:
    """The value type a value sent without one reads as: ``NM`` for a number, ``SN`` for a
    comparator and a number (``<0,5``, ``>=^10``) or ``^12`` / ``=^12``, else '' (what
    :func:`finish` infers column-wise, for parsers that type values themselves)."""
    v = value.strip()
    for pattern, vt in _TYPED_BY_VALUE:
        if pattern.match(v):
            return vt
    return ""


def _timestamp_from_groups(g: pl.Expr, with_offsets: bool = True) -> pl.Expr:
    """Datetime from the struct of :data:`_TS_PATTERN` groups (null when it did not match); with
    ``with_offsets``, a time in UTC is converted to the lab's wall-clock time (:data:`LAB_ZONES` by
    the row's ``lab_finess``, else Paris: :data:`_CONVERTED_OFFSETS`), any other offset is dropped. A
    date without its time (``20261114+0000``) stays that day at 00:00, whatever its offset: it says
    "that day" (docs/formats.md; QA regr2 F3: it became 01:00 and lost the day-precision rule)."""
    digits = pl.concat_str(
        [
            g.struct.field("1"),
            g.struct.field("2").fill_null("00"),
            g.struct.field("3").fill_null("00"),
            g.struct.field("4").fill_null("00"),
        ]
    )
    micros = g.struct.field("5").str.pad_end(6, "0").cast(pl.Int64).fill_null(0)
    written = digits.str.strptime(pl.Datetime("us"), "%Y%m%d%H%M%S", strict=False) + pl.duration(
        microseconds=micros
    )
    if not with_offsets:
        return written
    offset = g.struct.field("6")
    sign = pl.when(offset.str.starts_with("-")).then(-1).otherwise(1)
    hours = offset.str.slice(1, 2).cast(pl.Int64, strict=False).fill_null(0)
    minutes = offset.str.slice(3, 2).cast(pl.Int64, strict=False).fill_null(0)
    utc = written - pl.duration(minutes=sign * (hours * 60 + minutes))
    def wall_clock(zone: str) -> pl.Expr:
        return utc.dt.replace_time_zone("UTC").dt.convert_time_zone(zone).dt.replace_time_zone(None)

    local = wall_clock(PARIS_ZONE)
    lab_prefix = pl.col("lab_finess").str.strip_chars().str.slice(0, 4)
    for prefix, zone in LAB_ZONES.items():
        local = pl.when(lab_prefix == prefix).then(wall_clock(zone)).otherwise(local)
    timed = g.struct.field("2").is_not_null()
    return pl.when(offset.is_in(_CONVERTED_OFFSETS) & timed).then(local).otherwise(written)


def _issue(cond: pl.Expr, text: str) -> pl.Expr:
    return pl.when(cond).then(pl.lit(text)).otherwise(pl.lit(None, dtype=pl.Utf8))


def finish(raw: pl.DataFrame, file_id: str, source: str) -> pl.DataFrame:
    """Canonical rows from a :data:`RAW_SCHEMA` frame (see the module docstring).

    Work is staged (regex groups, then conversions, then issues) so that no regex runs twice.
    """
    text_cols = [n for n in RAW_COLUMNS if n != "line_no"]
    dated = (*TIMESTAMP_COLUMNS, *_QUIET_TIMESTAMPS, "birth_date")
    df = raw.with_columns(
        [pl.when(pl.col(n) == "").then(None).otherwise(pl.col(n)).alias(n) for n in text_cols]
    )
    v = pl.col("value_raw").str.strip_chars()
    sn_body = v.str.replace(r"^=?\^", "")
    # fast path: plain YYYYMMDD[HH[MM[SS]]] digits go straight to strptime; the regex (offsets,
    # fractions, blanks) only runs on a column where some value is not in that form
    plain = {
        n: pl.col(n).str.len_bytes().is_in([8, 10, 12, 14]) & pl.col(n).str.contains(r"^\d+$")
        for n in dated
    }
    needs_regex = df.select(
        [(pl.col(n).is_not_null() & ~plain[n]).any().alias(n) for n in dated]
    ).row(0, named=True)
    df = df.with_columns(
        [
            (
                pl.col(n).str.extract_groups(_TS_PATTERN)
                if needs_regex[n]
                else pl.struct(pl.lit(None, pl.Utf8).alias("1"))
            ).alias(f"__g_{n}")
            for n in dated
        ]
        + [
            pl.when(plain[n])
            .then(pl.col(n).str.pad_end(14, "0").str.strptime(pl.Datetime("us"), "%Y%m%d%H%M%S", strict=False))
            .alias(f"__f_{n}")
            for n in dated
        ]
        + [
            pl.col("value_type").str.strip_chars().str.to_uppercase().alias("__vt"),
            v.alias("__v"),
            v.str.contains(_NUM_RE).alias("__v_num"),
            v.str.contains(_COMPARATOR_RE).alias("__v_cmp"),
            v.str.extract_groups(_BOUND_RE).alias("__b"),
            sn_body.alias("__sn"),
            sn_body.str.contains(_NUM_RE).alias("__sn_num"),
        ]
    )
    df = df.with_columns(
        [
            (
                pl.coalesce(pl.col(f"__f_{n}"), _timestamp_from_groups(pl.col(f"__g_{n}"), n != "birth_date"))
                if needs_regex[n]
                else pl.col(f"__f_{n}")
            ).alias(f"__t_{n}")
            for n in dated
        ]
        + [
            pl.when(pl.col("__v_num"))
            .then(pl.col("__v").str.replace(",", ".", literal=True).cast(pl.Float64))
            .alias("__nm"),
            pl.when(pl.col("__sn_num"))
            .then(pl.col("__sn").str.replace(",", ".", literal=True).cast(pl.Float64))
            .alias("__snv"),
            comparator_of(pl.col("__b").struct.field("1")).alias("__cmp"),
            pl.col("__b").struct.field("2").str.replace(",", ".", literal=True).cast(pl.Float64).alias("__bound"),
            # a value sent without its type (empty OBX-2, a CDA value without xsi:type): NM when it
            # is a number, SN when a comparator and a number ('<0,5', '>=^10') or '^12' / '=^12'
            pl.when(pl.col("__vt").is_not_null() & (pl.col("__vt") != ""))
            .then(pl.col("__vt"))
            .when(pl.col("__v_num"))
            .then(pl.lit("NM"))
            .when(pl.col("__b").struct.field("2").is_not_null() | pl.col("__sn_num"))
            .then(pl.lit("SN"))
            .alias("__vt"),
        ]
    )
    vt = pl.col("__vt")
    # F, M, or null: unknown, or unreadable and flagged (one vocabulary for every format)
    sex, sex_issue = sex_columns(df["sex"])
    issues: list[pl.Expr] = [pl.col("parse_issues")]
    for n in dated:
        if n in _QUIET_TIMESTAMPS:
            continue
        unread = pl.col(n).is_not_null() & pl.col(f"__t_{n}").is_null()
        if n == "birth_date":  # a year or year-month birth date is partial, not unreadable
            issues.append(pl.when(unread).then(birth_date_issue(pl.col(n), PARTIAL_BIRTH_TS)))
        else:
            issues.append(_issue(unread, f"DATE_INVALID:{n}"))
    issues.append(
        _issue(
            (vt == "NM") & (pl.col("__v").str.len_chars() > 0) & ~pl.col("__v_num") & ~pl.col("__v_cmp"),
            "VALUE_INVALID:value_num",
        )
    )
    issues.append(sex_issue)
    joined = pl.concat_str(issues, separator=";", ignore_nulls=True)
    df = df.with_columns(
        [pl.col(f"__t_{n}").alias(n) for n in (*TIMESTAMP_COLUMNS, *_QUIET_TIMESTAMPS)]
        + [
            pl.col("__t_birth_date").dt.date().alias("birth_date"),
            sex.alias("sex"),
            pl.when(vt == "NM").then(pl.coalesce("__nm", "__bound"))
            .when(vt == "SN").then(pl.coalesce("__snv", "__bound")).alias("value_num"),
            pl.when(vt.is_in(["NM", "SN"])).then(pl.col("__cmp")).alias("value_comparator"),
            pl.when(pl.col("value_type").str.strip_chars().fill_null("") == "").then(vt)
            .otherwise(pl.col("value_type")).alias("value_type"),
            pl.when(joined == "").then(None).otherwise(joined).alias("parse_issues"),
            pl.lit(file_id).alias("file_id"),
            pl.lit(source).alias("source"),
        ]
    )
    # the INS read by the rule of every format ('2 79 07 29 100 851 43': transforms/identity.py)
    return conform(with_normalised_ins(df.drop([c for c in df.columns if c.startswith("__")])))


SEP = "\x1f"  # joins packed fields; never left in parsed text
_PACKED_FIELDS = len(RAW_COLUMNS) - 1


def raw_frame(rows: list[tuple]) -> pl.DataFrame:
    """A :data:`RAW_SCHEMA` frame from row tuples ``(line_no, text, text, ...)``.

    Fast path: the text fields of each row are joined with U+001F into one string and polars
    splits them back, which is several times cheaper than building 24 string Series from Python
    objects. Rows holding a None, or text holding U+001F itself, take the plain path.
    """
    if not rows:
        return pl.DataFrame(schema=RAW_SCHEMA)
    join = SEP.join
    try:
        packed = [join(r[1:]) for r in rows]
    except TypeError:  # a None among the fields
        packed = None
    if packed is not None:
        frame = pl.DataFrame(
            [pl.Series("line_no", [r[0] for r in rows], dtype=pl.Int64), pl.Series("p", packed, dtype=pl.Utf8)]
        )
        if frame.select((pl.col("p").str.count_matches(SEP, literal=True) == _PACKED_FIELDS - 1).all()).item():
            names = list(RAW_COLUMNS[1:])
            return frame.select(
                "line_no", pl.col("p").str.split_exact(SEP, _PACKED_FIELDS - 1).struct.rename_fields(names)
            ).unnest("p")
    cols = list(zip(*rows, strict=True))
    return pl.DataFrame(
        [pl.Series(n, c, dtype=RAW_SCHEMA[n]) for n, c in zip(RAW_COLUMNS, cols, strict=True)]
    )


def cap_text(text: str) -> str:
    """``text`` cut to :data:`RAW_TEXT_CAP` characters, saying how long it was."""
    if len(text) <= RAW_TEXT_CAP:
        return text
    return text[:RAW_TEXT_CAP] + f"...[cut, {len(text)} characters in all]"


class ResultSink:
    """Accumulates rows and rejects of one file and cuts them into chunks.

    Parsers append tuples to :attr:`rows` (hot path: no method call), call :meth:`reject` for
    rejects, bump :attr:`units` per message/line consumed, and after each unit ask
    :meth:`ready` whether to ``yield sink.take()``. :meth:`mark` and :meth:`rollback` let a
    parser drop what a unit appended when the unit turns out broken.

    A parser may also hand rows over *unparsed*: the raw text of a result in :attr:`packed`, its
    line number in :attr:`packed_nos` and the index of its context (a packed string shared by
    the results of one order) in :attr:`packed_ctx` / :attr:`contexts`; ``packed_builder``
    turns them into a :data:`RAW_SCHEMA` frame with vectorised expressions (the HL7 parser does
    so for plain OBX segments). Both kinds are merged back in line order.
    """

    def __init__(
        self,
        file_id: str,
        source: str,
        chunk_rows: int,
        packed_builder: Callable[[list[int], list[str], list[int], list[str]], pl.DataFrame] | None = None,
    ):
        self.file_id = file_id
        self.source = source
        self.chunk_rows = max(1, chunk_rows)
        self.rows: list[tuple] = []
        self.packed: list[str] = []
        self.packed_nos: list[int] = []
        self.packed_ctx: list[int] = []
        self.contexts: list[str] = []
        self._builder = packed_builder
        self._frames: list[pl.DataFrame] = []
        self._framed = 0
        self._rejects: list[tuple] = []
        self.units = 0
        self.total_units = 0

    def reject(self, line_no: int, reason: str, column: str | None, detail: str, raw_text: str) -> None:
        """Record one reject; ``detail`` must not hold patient data."""
        self._rejects.append((self.file_id, line_no, check(reason), column, detail, cap_text(raw_text)))

    def mark(self) -> tuple[int, int, int]:
        return len(self.rows), len(self.packed), len(self.contexts)

    def rollback(self, mark: tuple[int, int, int]) -> None:
        """Forget the rows appended since ``mark``."""
        rows, packed, contexts = mark
        del self.rows[rows:]
        del self.packed[packed:], self.packed_nos[packed:], self.packed_ctx[packed:]
        del self.contexts[contexts:]

    def compact(self) -> None:
        """Turn the pending rows into a canonical frame (bounded Python memory)."""
        n = len(self.rows) + len(self.packed)
        if not n:
            return
        raw = raw_frame(self.rows) if self.rows else None
        if self.packed:
            assert self._builder is not None
            built = self._builder(self.packed_nos, self.packed, self.packed_ctx, self.contexts)
            raw = built if raw is None else pl.concat([raw, built]).sort("line_no", maintain_order=True)
        self._frames.append(finish(raw, self.file_id, self.source))
        self._framed += n
        self.rows, self.packed, self.packed_nos, self.packed_ctx, self.contexts = [], [], [], [], []

    def ready(self) -> bool:
        pending = len(self.rows) + len(self.packed)
        if pending >= BATCH_ROWS:
            self.compact()
            pending = 0
        return self._framed + pending >= self.chunk_rows or len(self._rejects) >= self.chunk_rows

    def pending(self) -> bool:
        return bool(self.rows or self.packed or self._frames or self._rejects or self.units)

    def take(self) -> Chunk:
        """The chunk of everything collected since the last call."""
        self.compact()
        if self._frames:
            rows = pl.concat(self._frames, how="vertical") if len(self._frames) > 1 else self._frames[0]
        else:
            rows = finish(raw_frame([]), self.file_id, self.source)
        rejects = (
            pl.DataFrame(self._rejects, schema=REJECT_SCHEMA, orient="row")
            if self._rejects
            else pl.DataFrame(schema=REJECT_SCHEMA)
        )
        chunk = Chunk(rows=rows, rejects=rejects, units_seen=self.units)
        self.total_units += self.units
        self._frames, self._framed, self._rejects, self.units = [], 0, [], 0
        return chunk


@contextmanager
def relaxed_gc(threshold: int = 100_000) -> Iterator[None]:
    """Run the young-generation garbage collector less often while a parser runs.

    Parsing allocates millions of short-lived lists (split fields) that hold no cycles; with the
    default threshold (700) the collector runs every few messages and costs about 10% of the
    parse time. The previous thresholds are restored on exit.
    """
    old = gc.get_threshold()
    gc.set_threshold(max(old[0], threshold), old[1], old[2])
    try:
        yield
    finally:
        gc.set_threshold(*old)
