"""The pandera model of the canonical result table, and row-level validation into quarantine.

Each check is named ``REASON:column`` (reason codes from quality/reasons.py), so every failure
pandera reports maps straight to a quarantine row with its reason and offending column. Pandera
runs on collected polars DataFrames (on a LazyFrame it would check only names and types).
Failure cases hold cell values (health data): they are dropped before anything is logged or stored.

Speed: pandera runs each check as its own polars query (about 50 per call), a fixed cost of about
25 ms per call whatever the number of rows. ``validate_rows`` therefore first evaluates every
check of the model -- the same check functions, through pandera's own check backend, with the same
null handling -- in one polars query, and hands pandera only the rows that fail at least one
(usually a few percent, often none): pandera still names every reason, and a row no check rejects
is valid either way.
"""

from __future__ import annotations

from datetime import date, datetime

import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData
from pandera.backends.polars.checks import PolarsCheckBackend
from pandera.backends.polars.register import register_polars_backends
from pandera.constants import CHECK_OUTPUT_KEY

from quality.reasons import check as reason
from transforms.canonical import CANONICAL_SCHEMA
from transforms.identity import nir_format_ok_expr, nir_key_ok_expr
from transforms.terminology.loinc import loinc_valid_expr

STATUSES = ("F", "C", "X", "D")
OLDEST_BIRTH = date(1890, 1, 1)


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
    collected_at: datetime = pa.Field(nullable=False)
    received_at: datetime = pa.Field(nullable=True)
    validated_at: datetime = pa.Field(nullable=True)
    local_code: str = pa.Field(nullable=True)
    local_label: str = pa.Field(nullable=True)
    loinc_code_src: str = pa.Field(nullable=True)
    value_type: str = pa.Field(nullable=True)
    value_raw: str = pa.Field(nullable=True)
    value_num: float = pa.Field(nullable=True)
    unit_raw: str = pa.Field(nullable=True)
    ref_range: str = pa.Field(nullable=True)
    abnormal_flag: str = pa.Field(nullable=True)
    result_status: str = pa.Field(nullable=False)
    specimen: str = pa.Field(nullable=True)
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

    @pa.check("postal_code", name=_named("POSTAL_CODE_INVALID", "postal_code"))
    def postal_code_format(cls, data: pa.PolarsData) -> pl.LazyFrame:
        c = pl.col(data.key)
        return data.lazyframe.select(c.is_null() | c.str.contains(r"^[0-9]{5}$"))

    @pa.check("result_status", name=_named("STATUS_INVALID", "result_status"))
    def status_values(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col(data.key).is_in(STATUSES))

    @pa.check("loinc_code_src", name=_named("LOINC_CHECK", "loinc_code_src"))
    def loinc_src(cls, data: pa.PolarsData) -> pl.LazyFrame:
        c = pl.col(data.key)
        return data.lazyframe.select(c.is_null() | loinc_valid_expr(data.key).fill_null(False))

    @pa.check("birth_date", name=_named("DATE_INVALID", "birth_date"))
    def birth_plausible(cls, data: pa.PolarsData) -> pl.LazyFrame:
        c = pl.col(data.key)
        return data.lazyframe.select(c.is_null() | (c >= OLDEST_BIRTH))

    @pa.dataframe_check(name=_named("DATE_ORDER", "birth_date"))
    def born_before_collection(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            (pl.col("birth_date") <= pl.col("collected_at").dt.date()).fill_null(True))

    @pa.dataframe_check(name=_named("DATE_ORDER", "received_at"))
    def received_after_collection(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select((pl.col("received_at") >= pl.col("collected_at")).fill_null(True))

    @pa.dataframe_check(name=_named("DATE_ORDER", "validated_at"))
    def validated_after_collection(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select((pl.col("validated_at") >= pl.col("collected_at")).fill_null(True))

    @pa.dataframe_check(name=_named("MISSING_VALUE", "local_code"))
    def some_test_code(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("local_code").is_not_null() | pl.col("loinc_code_src").is_not_null())

    @pa.dataframe_check(name=_named("MISSING_VALUE", "value_raw"))
    def some_value(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            pl.col("value_raw").is_not_null() | pl.col("result_status").is_in(["X", "D"]))

    @pa.dataframe_check(name=_named("MISSING_VALUE", "patient_nir"))
    def identifiable(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            pl.col("patient_nir").is_not_null()
            | (pl.col("family_name").is_not_null() & pl.col("first_name").is_not_null()
               & pl.col("birth_date").is_not_null()))


QUARANTINE_COLUMNS = {"line_no": pl.Int64, "reason_code": pl.Utf8, "column": pl.Utf8, "detail": pl.Utf8}
BUILTIN_CHECKS = {"not_nullable": "MISSING_VALUE", "greater_than_or_equal_to(1)": "MALFORMED_LINE"}


_SCHEMAS_OK: set[tuple] = set()  # frame schemas pandera accepted (columns, dtypes) in this process


def _check_output(check, lf: pl.LazyFrame, key: str, name: str) -> pl.LazyFrame:
    """One check's row-wise verdict as pandera computes it (its backend, its null handling)."""
    builtin = getattr(check._check_fn, "__name__", None)
    if builtin is not None and check.is_builtin_check(builtin):
        # as pandera's Check.__call__ does: the schema holds a copy of the built-in check's
        # dispatcher, made before the polars implementations were registered
        check._check_fn = check.get_builtin_check_fn(builtin)
    out = PolarsCheckBackend(check).apply(PolarsData(lf, key))
    if isinstance(out, bool):
        return lf.select(pl.lit(out).alias(name))
    verdict = pl.col(CHECK_OUTPUT_KEY)
    verdict = (verdict | verdict.is_null()) if check.ignore_na else verdict.fill_null(False)
    return out.select(verdict.alias(name))


def passes_every_check(df: pl.DataFrame) -> pl.Series:
    """True for the rows that no check of the model rejects (nullability, column and frame checks),
    all evaluated in one polars query. ``df`` must have the model's columns and dtypes."""
    register_polars_backends()  # pandera's polars check functions (cached: registers once)
    schema = CanonicalResult.to_schema()
    lf = df.lazy()
    verdicts: list[pl.LazyFrame] = []
    for name, column in schema.columns.items():
        if not column.nullable:
            present = pl.col(name).is_not_null()
            if df.schema[name].is_float():
                present = present & pl.col(name).is_not_nan()
            verdicts.append(lf.select(present.alias(f"not_nullable:{name}")))
        verdicts += [_check_output(c, lf, name, f"{i}:{name}") for i, c in enumerate(column.checks)]
    verdicts += [_check_output(c, lf, "*", f"{i}:*") for i, c in enumerate(schema.checks)]
    if not verdicts:
        return pl.Series("ok", [True] * df.height, dtype=pl.Boolean)
    return pl.concat(verdicts, how="horizontal").select(pl.all_horizontal(pl.all()).alias("ok")).collect()["ok"]


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


def validate_rows(df: pl.DataFrame, now: datetime | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split canonical rows into (valid rows, quarantine rows: line_no, reason_code, column, detail).

    A row fails for every reason it has; one quarantine row per (row, reason, column).
    """
    df = df.select(list(CANONICAL_SCHEMA))
    indexed = df.with_row_index("_idx")
    failures: list[pl.DataFrame] = []
    # pandera sees the rows some check rejects (all rows when the dtypes are not the model's:
    # it then reports the schema error)
    suspects = indexed.filter(~passes_every_check(df)) if _schema_accepted(df) else indexed
    try:
        if suspects.height:
            CanonicalResult.validate(suspects.drop("_idx"), lazy=True)
    except pa.errors.SchemaErrors as err:
        fc = err.failure_cases.select("column", "check", "index")
        if fc["index"].null_count():
            schema_level = fc.filter(pl.col("index").is_null())
            raise ValueError(f"canonical table does not match its model: {schema_level.to_dicts()}") from None
        fc = fc.with_columns(index=suspects["_idx"].gather(fc["index"].cast(pl.UInt32)))
        named = fc["check"].str.contains(":")
        fc = fc.with_columns(
            reason_code=pl.when(named).then(pl.col("check").str.split(":").list.first())
            .otherwise(pl.col("check").replace_strict(BUILTIN_CHECKS, default="MISSING_VALUE")),
            column=pl.when(named).then(pl.col("check").str.split(":").list.last()).otherwise(pl.col("column")),
            detail=pl.lit("failed check ") + pl.col("check"),
        )
        failures.append(fc.select(pl.col("index").cast(pl.UInt32).alias("_idx"), "reason_code", "column", "detail"))
    # problems the parser already found (unreadable dates, codes...)
    issues = (
        indexed.filter(pl.col("parse_issues").is_not_null())
        .select("_idx", pl.col("parse_issues").str.split(";").alias("issue"))
        .explode("issue")
        .select("_idx", pl.col("issue").str.split(":").list.first().alias("reason_code"),
                pl.col("issue").str.split(":").list.get(1, null_on_oob=True).alias("column"),
                pl.lit("value could not be read").alias("detail"))
    )
    failures.append(issues)
    # collection in the future (relative to this run): a wrong clock or a wrong column
    now = now or datetime.now()
    future = indexed.filter(pl.col("collected_at") > now).select(
        "_idx", pl.lit("DATE_ORDER").alias("reason_code"), pl.lit("collected_at").alias("column"),
        pl.lit("collection time in the future").alias("detail"))
    failures.append(future)
    fails = pl.concat(failures, how="vertical_relaxed")
    # an unreadable value is reported as such, not again as a missing one
    unreadable = fails.filter(pl.col("detail") == "value could not be read").select("_idx", "column")
    fails = fails.join(unreadable.with_columns(pl.lit(True).alias("_unreadable")), on=["_idx", "column"], how="left")
    fails = fails.filter(~((pl.col("reason_code") == "MISSING_VALUE") & pl.col("_unreadable").fill_null(False)))
    fails = fails.unique(["_idx", "reason_code", "column"], keep="first").drop("_unreadable")
    bad_idx = fails["_idx"].unique()
    valid = indexed.filter(~pl.col("_idx").is_in(bad_idx.implode())).drop("_idx")
    quarantine = (
        fails.join(indexed.select("_idx", "line_no"), on="_idx")
        .select([pl.col(c).cast(t) for c, t in QUARANTINE_COLUMNS.items()])
        .sort("line_no", "reason_code", "column", nulls_last=True)
    )
    return valid, quarantine
