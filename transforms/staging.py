"""From validated canonical rows to staging rows: pseudonymised, aged, placed; no identity left.

Pure polars: the caller passes the reference tables and the pseudonymisation secret.
"""

from __future__ import annotations

import polars as pl

from transforms import finess
from transforms.identity import IDENTITY_COLUMNS, link_keys, person_keys
from transforms.identity_text import FLAG, MASKED_COLUMN, STAGING_MASKED_COLUMNS, mask_identities_in_text
from transforms.parsers.sex import SEX_INVALID
from warehouse.catalog import STG_RESULTS


def age_years(birth: pl.Expr, on: pl.Expr) -> pl.Expr:
    """Full years between two dates (birthday not yet reached this year -> one less)."""
    years = on.dt.year() - birth.dt.year()
    before_birthday = (on.dt.month() < birth.dt.month()) | (
        (on.dt.month() == birth.dt.month()) & (on.dt.day() < birth.dt.day()))
    return (years - before_birthday.cast(pl.Int32)).cast(pl.Int64)


def cl_age90(age: pl.Expr) -> pl.Expr:
    """SI-DEP 10-year age class: 9 for 0-9, 19 for 10-19, ... 89 for 80-89, 90 for 90 and over."""
    return pl.when(age.is_null()).then(None).when(age >= 90).then(90).otherwise((age // 10) * 10 + 9).cast(pl.Int64)


POSTAL_CODE_PADDED = "POSTAL_CODE_PADDED"


def postal_code_read(sent: pl.Expr, known: pl.Series) -> tuple[pl.Expr, pl.Expr]:
    """(the postal code a département is looked up by, whether a leading zero was put back).

    A spreadsheet that opens an extract reads the postal code column as numbers and saves ``01000``
    as ``1000`` (QA fmt F5: Excel-saved CSV files of labs in the Ain, Alpes-Maritimes, Aisne...). A
    code of four digits can only be such a code (French postal codes have five, and only those of
    départements 01 to 09 start with 0), so ``0`` + code is read when that is a postal code of
    ``known``; the result is flagged POSTAL_CODE_PADDED so the data-quality report shows the lab's
    extract. Any other code is looked up as sent."""
    padded = sent.str.contains(r"^[0-9]{4}$") & (pl.lit("0") + sent).is_in(known.implode())
    padded = padded.fill_null(False)
    return pl.when(padded).then(pl.lit("0") + sent).otherwise(sent), padded


def to_staging(valid: pl.DataFrame, *, file_seq: int, postal_codes: pl.DataFrame, secret: bytes) -> pl.DataFrame:
    """Staging rows for one file's valid canonical rows.

    ``postal_codes`` has columns postal_code, dep_code (one row per postal code; seeds resolve
    postal codes spanning two départements).
    """
    # the pseudonyms first (once per distinct identity), then one polars query to the staging rows
    # (the in-memory engine: on a file's rows its joins are about twice as fast as the streaming one)
    # a NIR, name or birth date typed into free text or into the lab's codes
    valid = mask_identities_in_text(valid, STAGING_MASKED_COLUMNS)
    keys = person_keys(valid, secret)
    keys = keys.with_columns(link_keys(keys, secret))
    pc = postal_codes.select(pl.col("postal_code").alias("__postal_code"), pl.col("dep_code").alias("dep"))
    postal_code, padded = postal_code_read(pl.col("postal_code"), postal_codes["postal_code"])
    bad_finess = finess.invalid_values(valid["lab_finess"])
    age = age_years(pl.col("birth_date"), pl.col("collected_at").dt.date())
    # the validator's flags (quality/schemas.py): BIRTH_DATE_PARTIAL or BIRTH_DATE_INVALID, and
    # SEX_INVALID (a sex sent that could not be read), ';'-joined in that order
    issues = pl.col("parse_issues") if "parse_issues" in valid.columns else pl.lit(None, pl.Utf8)
    sex_invalid = issues.str.contains(SEX_INVALID, literal=True).fill_null(False)
    birth_flags = issues.str.replace(SEX_INVALID, "", literal=True).str.strip_chars(";").replace("", None)
    df = (
        valid.lazy()
        .join(keys.lazy(), on=IDENTITY_COLUMNS, how="left", nulls_equal=True, maintain_order="left")
        .with_columns(postal_code.alias("__postal_code"), padded.alias("__padded"))
        .join(pc.lazy(), on="__postal_code", how="left", maintain_order="left")
        .with_columns(
            age.alias("age"),
            pl.col("collected_at").dt.date().alias("collected_date"),
            pl.lit(file_seq, dtype=pl.Int64).alias("file_seq"),
        ).with_columns(
            pl.when(pl.col("age") < 0).then(None).otherwise(pl.col("age")).alias("age"),
        ).with_columns(
            cl_age90(pl.col("age")).alias("cl_age90"),
            pl.concat_str(
                [
                    pl.when(pl.col("age").is_null()).then(pl.lit("AGE_UNKNOWN")),
                    # why the age is unknown when a birth date was sent: BIRTH_DATE_PARTIAL or
                    # BIRTH_DATE_INVALID, which the validator leaves in parse_issues (quality/schemas.py)
                    birth_flags,
                    pl.when(pl.col("sex").is_null()).then(pl.lit("SEX_UNKNOWN")),
                    # why the sex is unknown when one was sent: it could not be read (never quoted)
                    pl.when(sex_invalid).then(pl.lit(SEX_INVALID)),
                    # a malformed postal code is a flag, not a reason to drop the result (as a
                    # missing one): the result is kept, in no département (docs/epidemiology.md)
                    pl.when(~pl.col("__postal_code").str.contains(r"^[0-9]{5}$")).then(pl.lit("POSTAL_CODE_INVALID")),
                    # '1000' read as 01000: a leading zero a spreadsheet dropped (postal_code_read)
                    pl.when(pl.col("__padded")).then(pl.lit(POSTAL_CODE_PADDED)),
                    pl.when(pl.col("dep").is_null()).then(pl.lit("DEP_UNKNOWN")),
                    pl.when(pl.col(MASKED_COLUMN)).then(pl.lit(FLAG)),
                    # a FINESS of the wrong shape or check digit: a warning, the result is kept
                    # (checked on the file's few distinct values: transforms/finess.py)
                    pl.when(pl.col("lab_finess").is_in(bad_finess.implode())).then(pl.lit(finess.FLAG)),
                ],
                separator=";", ignore_nulls=True,
            ).replace("", None).alias("dq_flags"),
        )
    )
    df = df.with_columns(finess_kept(pl.col("lab_finess")).alias("lab_finess"))
    return df.select([pl.col(c.name).cast(c.dtype) for c in STG_RESULTS.columns]).collect(engine="in-memory")


def finess_kept(sent: pl.Expr) -> pl.Expr:
    """The FINESS staging keeps: the value sent when it has a FINESS's shape (9 characters, even with a
    wrong check digit: an establishment's number, nothing personal), else null. QA priv F1: the row's
    own NIR, name or birth date typed in the FINESS column reached analysts verbatim; the row keeps its
    FINESS_INVALID flag, and raw.results the value as sent, for the engineers."""
    return pl.when(sent.str.contains(finess.SHAPE)).then(sent).otherwise(pl.lit(None, pl.Utf8))
