"""The pandera model of the canonical result table, and row-level validation into quarantine.

Each check is named ``REASON:column`` (reason codes from quality/reasons.py), so every failure
pandera reports maps straight to a quarantine row with its reason and offending column. Pandera
runs on collected polars DataFrames (on a LazyFrame it would check only names and types).
Failure cases hold cell values (health data): they are dropped before anything is logged or stored.

Speed: pandera runs each check as its own polars query (about 50 per call, more to gather the
failure cases), a fixed cost of 25 to 70 ms per call whatever the number of rows. ``validate_rows``
therefore compiles the model's checks once per frame schema (``_compiled``: the same check
functions, with pandera's null handling) into polars expressions and evaluates them all in one
query per call, together with the parser's flags and the clock; only the rows with a problem come
out of it, and each failed check gives the reason and column pandera reports for it
(tests/test_validate_speed.py compares the two). Pandera itself still judges the frame's columns
and dtypes, once per frame schema.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from datetime import date, datetime

import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData
from pandera.backends.polars.register import register_polars_backends

from quality.clock import latest_local_time
from quality.reasons import check as reason
from transforms.canonical import CANONICAL_SCHEMA, COMPARATORS
from transforms.parsers.sex import SEX_INVALID, SEX_ISSUE
from transforms.identity import nir_format_ok_expr, nir_key_ok_expr
from transforms.versions import MAX_VALIDATION_DELAY  # the slowest cultures take weeks; a year more is an error
from transforms.terminology.loinc import loinc_valid_expr

STATUSES = ("F", "C", "X", "D")
OLDEST_BIRTH = date(1890, 1, 1)
MAX_AGE = 125  # years at the collection; the quality gate's age range (quality/checkpoints.py) is the same
# a collection before 2000 is a typing error (a two-digit year read as 0026, 2016 for 2026): such a
# date would also stretch the SI-DEP grid (every day x département x age class) over the years between
OLDEST_COLLECTION = datetime(2000, 1, 1)


# what a quarantine row's detail says of each failed check (pandera's name of the check as key):
# words an engineer reads without the model's source at hand
CHECK_DETAILS = {
    "not_nullable": "a required value is missing",
    "greater_than_or_equal_to(1)": "line number below 1",
    "DATE_INVALID:birth_date": f"birth date before {OLDEST_BIRTH.year}, or more than {MAX_AGE} years before the collection",
    "DATE_INVALID:collected_at": f"collection before {OLDEST_COLLECTION.year}: a two-digit year or a typing error",
    "DATE_ORDER:birth_date": "born after the collection",
    "DATE_ORDER:collected_at": f"collected more than {MAX_VALIDATION_DELAY.days} days before its validation",
    "DATE_ORDER:received_at": "received before the collection",
    "DATE_ORDER:validated_at": "validated before the collection",
    "LOINC_CHECK:loinc_code_src": "not a LOINC code (shape or check digit)",
    "MISSING_VALUE:collected_at": "no collection date, and the status is not D (deleted)",
    "MISSING_VALUE:local_code": "no test code, neither local nor LOINC",
    "MISSING_VALUE:patient_nir": "neither a NIR nor family name, first name and birth date",
    "MISSING_VALUE:value_raw": "no value, and the status is neither X (not obtained) nor D (deleted)",
    "NIR_FORMAT:patient_nir": "not shaped like a NIR (15 characters)",
    "NIR_KEY:patient_nir": "the NIR's key does not match its number",
    "SEX_INVALID:sex": "sex is neither F, M nor null (the parsers read every sex into these)",
    "STATUS_INVALID:result_status": "status is not F, C, X or D",
    "VALUE_INVALID:value_num": "the number is not finite",
    "VALUE_INVALID:value_comparator": "a comparator that is not <, <=, > or >=, or without its bound",
}


def day_precision(col: str) -> pl.Expr:
    """True where the time of ``col`` is exactly 00:00:00: a date sent without its time (CSV
    ``29/03/2026``, HL7 ``20260329``) reads as midnight, and means "that day", not "at midnight"."""
    c = pl.col(col)
    return c == c.dt.truncate("1d")


def not_before_collection(col: str) -> pl.Expr:
    """``col`` (a reception or validation time) is not before the collection. A value at exactly
    00:00:00 is compared at day precision: it is before the collection only when its *date* is
    (QA: a validation dated 29/03/2026 without a time, of a specimen taken at 10:00 that day, was
    quarantined as "validated before the collection"). Two times in the hour repeated when the
    clocks go back cannot be ordered (``in_repeated_hour``). The quality gate (quality/summaries.py,
    ``before_collection_sql``) and the delays of the reports apply the same rules."""
    later, collected = pl.col(col), pl.col("collected_at")
    return ((later >= collected) | (day_precision(col) & (later.dt.date() >= collected.dt.date()))
            | (in_repeated_hour(later) & in_repeated_hour(collected)))


def in_repeated_hour(ts: pl.Expr) -> pl.Expr:
    """``ts`` (a lab's wall-clock time) is in the hour that happens twice when Paris clocks go back,
    02:00 to 02:59 on the last Sunday of October: two such times cannot be ordered once the offsets
    that told them apart are dropped (transforms/parsers/resultrows.py keeps the lab's wall clock).
    QA cal F4: collected 02:45+0200 and validated 02:15+0100, in order, were quarantined."""
    return ((ts.dt.month() == 10) & (ts.dt.day() >= 25) & (ts.dt.weekday() == 7) & (ts.dt.hour() == 2)).fill_null(False)


def collection_unusable() -> pl.Expr:
    """The collection is before 2000 (a two-digit year read as 0026: ``DATE_INVALID:collected_at``):
    the checks that compare another date with it pass, so that an invalid date does not also give
    reasons derived from it (QA: "born after the collection" and "collected more than 366 days
    before its validation" for a collection typed 29/03/26)."""
    return (pl.col("collected_at") < OLDEST_COLLECTION).fill_null(False)


def check_detail(check_name: str) -> str:
    return CHECK_DETAILS.get(check_name, "failed check " + check_name)


def _named(code: str, column: str) -> str:
    return f"{reason(code)}:{column}"


class CanonicalResult(pa.DataFrameModel):
    """One lab result as parsed from any input format (see transforms/canonical.py)."""

    file_id: str = pa.Field(nullable=False)
    line_no: int = pa.Field(nullable=False, ge=1)
    message_id: str = pa.Field(nullable=True)
    source: str = pa.Field(nullable=False)
    lab_finess: str = pa.Field(nullable=True)
    request_id: str = pa.Field(nullable=False)
    patient_nir: str = pa.Field(nullable=True)
    ins_oid: str = pa.Field(nullable=True)
    family_name: str = pa.Field(nullable=True)
    first_name: str = pa.Field(nullable=True)
    birth_date: date = pa.Field(nullable=True)
    sex: str = pa.Field(nullable=True)
    postal_code: str = pa.Field(nullable=True)
    collected_at: datetime = pa.Field(nullable=True)  # required but on a deletion: dated_unless_deleted
    received_at: datetime = pa.Field(nullable=True)
    validated_at: datetime = pa.Field(nullable=True)
    local_code: str = pa.Field(nullable=True)
    local_label: str = pa.Field(nullable=True)
    loinc_code_src: str = pa.Field(nullable=True)
    value_type: str = pa.Field(nullable=True)
    value_raw: str = pa.Field(nullable=True)
    value_num: float = pa.Field(nullable=True)
    value_comparator: str = pa.Field(nullable=True)
    unit_raw: str = pa.Field(nullable=True)
    ref_range: str = pa.Field(nullable=True)
    abnormal_flag: str = pa.Field(nullable=True)
    result_status: str = pa.Field(nullable=False)
    specimen: str = pa.Field(nullable=True)
    observation_sub_id: str = pa.Field(nullable=True)
    observed_at: datetime = pa.Field(nullable=True)
    parse_issues: str = pa.Field(nullable=True)

    class Config:
        strict = True
        coerce = False

    @pa.check("patient_nir", name=_named("NIR_FORMAT", "patient_nir"))
    def nir_format(cls, data: pa.PolarsData) -> pl.LazyFrame:
        c = pl.col(data.key)
        return data.lazyframe.select(c.is_null() | nir_format_ok_expr(data.key))

    @pa.check("patient_nir", name=_named("NIR_KEY", "patient_nir"))
    def nir_key(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(nir_key_ok_expr(data.key).fill_null(True))

    @pa.check("sex", name=_named("SEX_INVALID", "sex"))
    def sex_values(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col(data.key).is_null() | pl.col(data.key).is_in(["F", "M"]))

    @pa.check("result_status", name=_named("STATUS_INVALID", "result_status"))
    def status_values(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col(data.key).is_in(STATUSES))

    @pa.check("loinc_code_src", name=_named("LOINC_CHECK", "loinc_code_src"))
    def loinc_src(cls, data: pa.PolarsData) -> pl.LazyFrame:
        c = pl.col(data.key)
        return data.lazyframe.select(c.is_null() | loinc_valid_expr(data.key).fill_null(False))

    @pa.dataframe_check(name=_named("DATE_INVALID", "birth_date"))
    def birth_plausible(cls, data: pa.PolarsData) -> pl.LazyFrame:
        # QA: a birth date of 1890 passed here (age 136) and then blocked every export at the
        # quality gate (ages 0 to 125), even after the lab corrected it
        c = pl.col("birth_date")
        oldest = pl.col("collected_at").dt.date().dt.offset_by(f"-{MAX_AGE + 1}y")
        return data.lazyframe.select(
            c.is_null() | ((c >= OLDEST_BIRTH) & ((c > oldest).fill_null(True) | collection_unusable())))

    @pa.check("collected_at", name=_named("DATE_INVALID", "collected_at"))
    def collection_plausible(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col(data.key) >= OLDEST_COLLECTION)

    @pa.check("value_num", name=_named("VALUE_INVALID", "value_num"))
    def value_finite(cls, data: pa.PolarsData) -> pl.LazyFrame:
        c = pl.col(data.key)
        return data.lazyframe.select(c.is_null() | c.is_finite())

    @pa.dataframe_check(name=_named("VALUE_INVALID", "value_comparator"))
    def comparator_with_bound(cls, data: pa.PolarsData) -> pl.LazyFrame:
        c = pl.col("value_comparator")
        return data.lazyframe.select(c.is_null() | (c.is_in(COMPARATORS) & pl.col("value_num").is_not_null()))

    @pa.dataframe_check(name=_named("DATE_ORDER", "collected_at"))
    def validated_within_a_year(cls, data: pa.PolarsData) -> pl.LazyFrame:
        """Guards a new result against a mistyped collection year. A correction or deletion (C, D)
        is validated when it is made, and may retract a result of more than a year ago: it passes
        (QA cal F5: a lab could not delete a false positive of 14 months ago, which kept counting),
        and corrects only a result of its own collection day, or nothing and is not current
        (transforms/versions.py: its date may be the mistyped one, QA regr F1)."""
        return data.lazyframe.select(
            ((pl.col("validated_at") - pl.col("collected_at")) <= MAX_VALIDATION_DELAY).fill_null(True)
            | pl.col("result_status").is_in(["C", "D"]).fill_null(False)
            | collection_unusable())

    @pa.dataframe_check(name=_named("DATE_ORDER", "birth_date"))
    def born_before_collection(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            (pl.col("birth_date") <= pl.col("collected_at").dt.date()).fill_null(True) | collection_unusable())

    @pa.dataframe_check(name=_named("DATE_ORDER", "received_at"))
    def received_after_collection(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(not_before_collection("received_at").fill_null(True) | collection_unusable())

    @pa.dataframe_check(name=_named("DATE_ORDER", "validated_at"))
    def validated_after_collection(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(not_before_collection("validated_at").fill_null(True) | collection_unusable())

    @pa.dataframe_check(name=_named("MISSING_VALUE", "local_code"))
    def some_test_code(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("local_code").is_not_null() | pl.col("loinc_code_src").is_not_null())

    @pa.dataframe_check(name=_named("MISSING_VALUE", "value_raw"))
    def some_value(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            pl.col("value_raw").is_not_null() | pl.col("result_status").is_in(["X", "D"]))

    @pa.dataframe_check(name=_named("MISSING_VALUE", "collected_at"))
    def dated_unless_deleted(cls, data: pa.PolarsData) -> pl.LazyFrame:
        # a deletion names its result by lab, request, test and person (transforms/versions.py):
        # QA saw one without a date quarantined, and the positive it deleted kept counting
        return data.lazyframe.select(
            pl.col("collected_at").is_not_null() | pl.col("result_status").eq(pl.lit("D")).fill_null(False))

    @pa.dataframe_check(name=_named("MISSING_VALUE", "patient_nir"))
    def identifiable(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            pl.col("patient_nir").is_not_null()
            | (pl.col("family_name").is_not_null() & pl.col("first_name").is_not_null()
               & pl.col("birth_date").is_not_null()))


QUARANTINE_COLUMNS = {"line_no": pl.Int64, "reason_code": pl.Utf8, "column": pl.Utf8, "detail": pl.Utf8}
BUILTIN_CHECKS = {"not_nullable": "MISSING_VALUE", "greater_than_or_equal_to(1)": "MALFORMED_LINE"}


class _SelectRecorder:
    """Stands in for the LazyFrame a check function receives. Every check of the model (and each
    pandera built-in check it uses) is written ``data.lazyframe.select(<one boolean expression>)``:
    called on this recorder, the check hands back that expression instead of a query."""

    def select(self, *exprs):
        if len(exprs) != 1 or not isinstance(exprs[0], pl.Expr):
            raise TypeError("a check of CanonicalResult must select exactly one boolean expression")
        return exprs[0]


@dataclass(frozen=True)
class _Verdict:
    """One check of the model, compiled: ``ok`` is True where a row passes, with null outputs
    resolved as pandera resolves them; the other fields are the quarantine row of a failure."""

    ok: pl.Expr
    reason_code: str
    column: str
    detail: str


def _pandera_name(check) -> str:
    """The name pandera's failure cases give a check: its error text, else its name."""
    if check.error is not None:
        return str(check.error)
    return check.name if check.name is not None else str(check)


def _verdict(ok: pl.Expr, check_name: str, column: str) -> _Verdict:
    """The quarantine row of a failed check, as pandera's failure case (check, column) reads:
    named checks say REASON:column, built-in ones are mapped by ``BUILTIN_CHECKS``."""
    if ":" in check_name:
        parts = check_name.split(":")
        reason_code, column = parts[0], parts[-1]
    else:
        reason_code = BUILTIN_CHECKS.get(check_name, "MISSING_VALUE")
    return _Verdict(ok, reason_code, column, check_detail(check_name))


def _compile_check(check, key: str) -> pl.Expr:
    """A check's row-wise verdict as pandera computes it: the check function's expression, then
    pandera's null handling (a null output passes when the check ignores nulls, else fails)."""
    builtin = getattr(check._check_fn, "__name__", None)
    if builtin is not None and check.is_builtin_check(builtin):
        # as pandera's Check.__call__ does: the schema holds a copy of the built-in check's
        # dispatcher, made before the polars implementations were registered
        check._check_fn = check.get_builtin_check_fn(builtin)
    out = check._check_fn(PolarsData(_SelectRecorder(), key), **check._check_kwargs)
    return (out | out.is_null()) if check.ignore_na else out.fill_null(False)


@functools.lru_cache(maxsize=64)
def _compiled(frame_schema: tuple, null_columns: frozenset[str] = frozenset()) -> tuple[_Verdict, ...]:
    """Every check of the model for a frame of this (name, dtype) schema, in pandera's order:
    per column its nullability then its checks, then the frame-wide checks.

    The checks are row-wise (a row's verdict depends on that row only), so a check that reads only
    ``null_columns`` (columns entirely null in the frame, like the source LOINC of a CSV extract)
    gives every row the verdict of one row of nulls: it is computed here, once, and becomes a
    constant -- polars then has no expression to plan for it (the LOINC check digit alone costs
    a few milliseconds of planning per query).
    """
    register_polars_backends()  # pandera's polars check functions (cached: registers once)
    dtypes = dict(frame_schema)
    schema = CanonicalResult.to_schema()
    verdicts: list[_Verdict] = []
    for name, column in schema.columns.items():
        if not column.nullable:
            present = pl.col(name).is_not_null()
            if dtypes[name].is_float():  # pandera counts NaN as null
                present = present & pl.col(name).is_not_nan()
            verdicts.append(_verdict(present, "not_nullable", name))
        verdicts += [_verdict(_compile_check(c, name), _pandera_name(c), name)
                     for c in column.checks if not c.raise_warning]  # a warning never rejects a row
    verdicts += [_verdict(_compile_check(c, "*"), _pandera_name(c), schema.name)
                 for c in schema.checks if not c.raise_warning]
    if null_columns:
        null_row = pl.DataFrame([pl.Series(name, [None], dtype=dtype) for name, dtype in frame_schema])
        verdicts = [
            dataclasses.replace(v, ok=pl.lit(null_row.select(v.ok).item(), dtype=pl.Boolean))
            if _reads_only(v.ok, null_columns) else v
            for v in verdicts
        ]
    return tuple(verdicts)


def _reads_only(expr: pl.Expr, columns: frozenset[str]) -> bool:
    roots = expr.meta.root_names()
    return bool(roots) and set(roots) <= columns


def _null_columns(df: pl.DataFrame) -> frozenset[str]:
    """The columns of ``df`` that hold only nulls (a count polars keeps: no scan)."""
    return frozenset(s.name for s in df.get_columns() if s.null_count() == df.height)


_SCHEMAS_OK: set[tuple] = set()  # frame schemas pandera accepted (columns, dtypes) in this process


def _schema_accepted(df: pl.DataFrame) -> bool:
    """Whether pandera accepts the frame's columns and dtypes (checked once per frame schema)."""
    key = tuple(df.schema.items())
    if key not in _SCHEMAS_OK:
        try:
            CanonicalResult.validate(df.head(0), lazy=True)
        except pa.errors.SchemaErrors:
            return False
        _SCHEMAS_OK.add(key)
    return True


def passes_every_check(df: pl.DataFrame) -> pl.Series:
    """True for the rows that no check of the model rejects (nullability, column and frame checks),
    all evaluated in one polars query. ``df`` must have the model's columns and dtypes."""
    verdicts = _compiled(tuple(df.schema.items()))
    if not verdicts:
        return pl.Series("ok", [True] * df.height, dtype=pl.Boolean)
    return df.lazy().select(pl.all_horizontal([v.ok for v in verdicts]).alias("ok")).collect()["ok"]


def _raise_schema_error(df: pl.DataFrame) -> None:
    """Raise the schema-level errors (columns, dtypes) pandera reports for ``df``."""
    try:
        CanonicalResult.validate(df, lazy=True)
    except pa.errors.SchemaErrors as err:
        schema_level = err.failure_cases.select("column", "check", "index").filter(pl.col("index").is_null())
        raise ValueError(f"canonical table does not match its model: {schema_level.to_dicts()}") from None
    raise AssertionError("pandera refused the frame's schema, then accepted the frame")


# A birth date that gives no age for this result -- partial (year, or year and month: the parser's
# ``DATE_INVALID:birth_date:partial``), unreadable, not a real date, before 1890, more than 125 years
# before the collection or after it -- does not cost the result (domain: a missing age is a
# data-quality flag, not a reason to drop the result): the row is kept with its birth date unknown
# (null, as an empty one: no age, the pseudonym of a person without birth date), flagged
# BIRTH_DATE_PARTIAL or BIRTH_DATE_INVALID. A row quarantined for another reason lists these too.
BIRTH_DATE_PARTIAL = "BIRTH_DATE_PARTIAL"
BIRTH_DATE_INVALID = "BIRTH_DATE_INVALID"
_BIRTH_ISSUE = r"DATE_INVALID:birth_date(?::partial)?"
# A sex the parser could not read (``SEX_INVALID:sex``, transforms/parsers/sex.py: neither F, M nor
# a code or word for an unknown sex; the parser made it null) does not cost the result either: it is
# kept with an unknown sex (staging flags it SEX_UNKNOWN: counted in P and T, not in _f/_h), flagged
# SEX_INVALID; a row quarantined for another reason lists it too ("value could not be read").
_KEPT_ISSUES = rf"{_BIRTH_ISSUE}|{SEX_ISSUE}"
PARTIAL_BIRTH_DETAIL = "partial birth date (the year, or the year and month, only)"
UNREADABLE_DETAIL = "value could not be read"
# the detail of a parser's ``REASON:column:detail`` issue, by its detail word (else UNREADABLE_DETAIL)
ISSUE_DETAILS = {
    "partial": PARTIAL_BIRTH_DETAIL,
    # CDA (transforms/parsers/cda_content.py): the value was sent, but its text is elsewhere and was
    # not found (QA fmt F2: quarantined as "no value", which the lab had sent)
    "text_reference": "coded value without a code or label: its originalText refers to the document's "
                      "narrative (reference #id), and that text was not found there",
}


def _birth_flag(issue: pl.Expr, implausible: pl.Expr) -> pl.Expr:
    """BIRTH_DATE_PARTIAL / BIRTH_DATE_INVALID from the parser's birth-date issue and the model's
    birth-date checks, null for a usable (or empty) birth date."""
    return (pl.when(issue.str.ends_with(":partial")).then(pl.lit(BIRTH_DATE_PARTIAL))
            .when(issue.is_not_null() | implausible).then(pl.lit(BIRTH_DATE_INVALID))
            .otherwise(pl.lit(None, dtype=pl.Utf8)))


def _without_kept_issues(issues: pl.Expr) -> pl.Expr:
    """``parse_issues`` without its birth-date and sex entries (null when nothing else is left)."""
    rest = issues.str.replace_all(_KEPT_ISSUES, "").str.replace_all(";;+", ";").str.strip_chars(";")
    return pl.when(rest != "").then(rest)


def _issue_rows(frame: pl.DataFrame, column: str = "parse_issues") -> pl.DataFrame:
    """One quarantine row per ``REASON:column[:detail]`` entry of ``column`` (rows with ``_idx``)."""
    parts = pl.col("issue").str.splitn(":", 3)
    detail = parts.struct.field("field_2")
    return (
        frame.filter(pl.col(column).is_not_null())
        .select("_idx", pl.col(column).str.split(";").alias("issue"))
        .explode("issue")
        .select("_idx", parts.struct.field("field_0").alias("reason_code"),
                parts.struct.field("field_1").alias("column"),
                detail.replace_strict(ISSUE_DETAILS, default=UNREADABLE_DETAIL, return_dtype=pl.Utf8)
                .alias("detail"),
                pl.lit(True).alias("_unreadable"))
    )


def validate_rows(df: pl.DataFrame, now: datetime | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split canonical rows into (valid rows, quarantine rows: line_no, reason_code, column, detail).

    A row fails for every reason it has; one quarantine row per (row, reason, column). ``now``: the
    run's time, aware (or naive in the host's zone); a collection after ``latest_local_time(now)``
    is in the future. A birth date
    that gives no age (above) is no reason: the valid row has a null ``birth_date`` and, in
    ``parse_issues``, its flag (BIRTH_DATE_PARTIAL or BIRTH_DATE_INVALID), which staging adds to
    ``dq_flags``. Nor is a sex the parser could not read: the valid row (its sex already null) has
    SEX_INVALID in ``parse_issues`` (after the birth-date flag, ``;``-joined). The other valid rows
    have a null ``parse_issues``.
    """
    df = df.select(list(CANONICAL_SCHEMA))
    if not _schema_accepted(df):
        _raise_schema_error(df)
    verdicts = _compiled(tuple(df.schema.items()), _null_columns(df))
    birth = [v for v in verdicts if v.column == "birth_date"]  # judged on the birth date as sent
    main = [v for v in verdicts if v.column != "birth_date"]   # judged with the birth date usable
    checks = [f"_check{i}" for i in range(len(main))]
    births = [f"_birth{i}" for i in range(len(birth))]
    latest = latest_local_time(now)
    # One query: every check of the model, plus the rows the parser flagged (parse_issues) and the
    # collections in the future (relative to this run: a wrong clock or a wrong column); only the
    # rows with a problem come out (usually a few percent, often none). The in-memory engine is the
    # quicker one on a file's rows. The birth-date checks are judged first; a birth date that fails
    # one (or that the parser could not read) is unknown for the other checks.
    birth_issue = pl.col("parse_issues").str.extract(f"({_BIRTH_ISSUE})", 1)
    sex_issue = pl.when(pl.col("parse_issues").str.contains(SEX_ISSUE, literal=True)).then(pl.lit(SEX_ISSUE))
    flagged = (
        df.lazy()
        .with_columns(*[v.ok.alias(name) for v, name in zip(birth, births, strict=True)],
                      birth_issue.alias("_bissue"), sex_issue.alias("_sissue"))
        .with_columns(_birth_flag(pl.col("_bissue"), ~pl.all_horizontal(births) if births else pl.lit(False))
                      .alias("_bflag"),
                      pl.when(pl.col("_sissue").is_not_null()).then(pl.lit(SEX_INVALID)).alias("_sflag"))
        .with_columns(pl.when(pl.col("_bflag").is_null()).then(pl.col("birth_date")).alias("birth_date"),
                      pl.when(pl.col("_bissue").is_null() & pl.col("_sissue").is_null()).then(pl.col("parse_issues"))
                      .otherwise(_without_kept_issues(pl.col("parse_issues"))).alias("parse_issues"))
        .select(
            pl.int_range(pl.len(), dtype=pl.UInt32).alias("_idx"), "line_no", "parse_issues", "_bissue", "_bflag",
            "_sissue", "_sflag", *births,
            (pl.col("collected_at") > latest).fill_null(False).alias("_future"),
            *[v.ok.alias(name) for v, name in zip(main, checks, strict=True)],
        )
        .filter(~pl.all_horizontal(checks) | pl.col("parse_issues").is_not_null() | pl.col("_future")
                | pl.col("_bflag").is_not_null() | pl.col("_sflag").is_not_null())
        .collect(engine="in-memory")
    )
    if flagged.is_empty():
        return df, pl.DataFrame(schema=QUARANTINE_COLUMNS)

    def failed_checks(vs: list[_Verdict], names: list[str]) -> pl.DataFrame:
        """Failed checks, in the order pandera reports them (check by check, rows in order)."""
        reasons = pl.DataFrame(
            [(name, v.reason_code, v.column, v.detail) for v, name in zip(vs, names, strict=True)],
            schema={"_check": pl.Utf8, "reason_code": pl.Utf8, "column": pl.Utf8, "detail": pl.Utf8},
            orient="row",
        )
        return (
            flagged.unpivot(names, index="_idx", variable_name="_check", value_name="_ok")
            .filter(~pl.col("_ok"))
            .join(reasons, on="_check", how="left", maintain_order="left")
            .select("_idx", "reason_code", "column", "detail", pl.lit(False).alias("_unreadable"))
        )

    # problems the parser already found (unreadable dates, codes...)
    issues = _issue_rows(flagged)
    future = flagged.filter(pl.col("_future")).select(
        "_idx", pl.lit("DATE_ORDER").alias("reason_code"), pl.lit("collected_at").alias("column"),
        pl.lit("collection time in the future").alias("detail"), pl.lit(False).alias("_unreadable"))
    fails = pl.concat([failed_checks(main, checks), issues, future], how="vertical_relaxed")
    # an unreadable value is reported as such, not again as a missing one
    unreadable = fails.filter(pl.col("_unreadable")).select("_idx", "column").unique()
    fails = fails.drop("_unreadable").join(unreadable.with_columns(pl.lit(True).alias("_unreadable")),
                                           on=["_idx", "column"], how="left")
    fails = fails.filter(~((pl.col("reason_code") == "MISSING_VALUE") & pl.col("_unreadable").fill_null(False)))
    fails = fails.drop("_unreadable")
    # a row quarantined for another reason also lists what is wrong with its birth date and sex
    out = fails.select("_idx").unique()
    birth_fails = pl.concat(
        [_issue_rows(flagged, "_bissue"), *([failed_checks(birth, births)] if births else []),
         _issue_rows(flagged, "_sissue")],
        how="vertical_relaxed").join(out, on="_idx").drop("_unreadable")
    fails = pl.concat([fails, birth_fails], how="vertical_relaxed")
    fails = fails.unique(["_idx", "reason_code", "column"], keep="first", maintain_order=True)
    keep = pl.repeat(True, df.height, eager=True).scatter(fails["_idx"], False)
    # the rows kept with an unknown birth date or sex: null birth date (the parser already made an
    # unreadable sex null), their flags in parse_issues
    unknown = (flagged.filter(pl.col("_bflag").is_not_null() | pl.col("_sflag").is_not_null())
               .select("_idx", "_bflag", pl.concat_str(["_bflag", "_sflag"], separator=";", ignore_nulls=True)
                       .alias("_flags")))
    if unknown.height:
        no_birth = unknown.filter(pl.col("_bflag").is_not_null())["_idx"]
        df = df.with_columns(df["birth_date"].scatter(no_birth, None),
                             pl.Series("parse_issues", [None] * df.height, dtype=pl.Utf8)
                             .scatter(unknown["_idx"], unknown["_flags"]))
    valid = df.filter(keep)
    quarantine = (
        fails.join(flagged.select("_idx", "line_no"), on="_idx")
        .select([pl.col(c).cast(t) for c, t in QUARANTINE_COLUMNS.items()])
        .sort("line_no", "reason_code", "column", nulls_last=True)
    )
    return valid, quarantine
