"""The canonical result table: one row per lab result, whatever format it arrived in.

Declared once here; parsers produce it, the pandera model checks it (quality/schemas.py), the
warehouse stores it as ``raw.results`` (warehouse/catalog.py) and every later layer derives from it.
Identity columns (names, NIR, birth date, postal code) exist only in the raw layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl


@dataclass(frozen=True)
class Column:
    name: str
    dtype: pl.DataType
    description: str
    identifying: bool = False  # True: health identity, never leaves the raw layer


CANONICAL_COLUMNS: tuple[Column, ...] = (
    # lineage
    Column("file_id", pl.Utf8(), "sha256 of the input file's bytes (first 16 hex digits)"),
    Column("line_no", pl.Int64(), "1-based line (CSV, HPRIM) or segment line (HL7) where the result starts"),
    Column("message_id", pl.Utf8(), "message or document id when the format has one (MSH-10, CDA id)"),
    Column("source", pl.Utf8(), "landing folder the file came from (one per sending lab)"),
    Column("lab_finess", pl.Utf8(), "FINESS of the performing laboratory"),
    # request
    Column("request_id", pl.Utf8(), "lab request / accession number"),
    # patient (identifying)
    Column("patient_nir", pl.Utf8(), "INS/NIR, 13 characters + 2-digit key", identifying=True),
    Column("ins_oid", pl.Utf8(), "OID qualifying the INS (1.2.250.1.213.1.4.8 NIR, .9 NIA, .10/.11 test)"),
    Column("family_name", pl.Utf8(), "birth family name", identifying=True),
    Column("first_name", pl.Utf8(), "first name(s)", identifying=True),
    Column("birth_date", pl.Date(), "date of birth", identifying=True),
    Column("sex", pl.Utf8(), "F, M or null when unknown"),
    Column("postal_code", pl.Utf8(), "postal code of residence", identifying=True),
    # times: event time (collection) kept apart from report times
    Column("collected_at", pl.Datetime("us"), "specimen collection time (event time)"),
    Column("received_at", pl.Datetime("us"), "reception at the lab"),
    Column("validated_at", pl.Datetime("us"), "biological validation (report time)"),
    # result
    Column("local_code", pl.Utf8(), "the lab's own test code"),
    Column("local_label", pl.Utf8(), "the lab's own test label"),
    Column("loinc_code_src", pl.Utf8(), "LOINC code given by the source itself, if any"),
    Column("value_type", pl.Utf8(), "NM numeric, ST/TX text, CE/CWE coded, SN structured numeric"),
    Column("value_raw", pl.Utf8(), "result as sent"),
    Column("value_num", pl.Float64(), "numeric value when the result is numeric; a bound when value_comparator "
                                      "is set (filter value_comparator IS NULL for exact values)"),
    Column("value_comparator", pl.Utf8(), "'<', '<=', '>' or '>=' when the result is a bound ('<0,5', '>100', "
                                          "SN '<^0.5'): value_num is then the bound; null for an exact value"),
    Column("unit_raw", pl.Utf8(), "unit as sent"),
    Column("ref_range", pl.Utf8(), "reference range as sent"),
    Column("abnormal_flag", pl.Utf8(), "abnormal flag as sent (H, L, N, A...)"),
    Column("result_status", pl.Utf8(), "F final, C correction, X not obtained, D deleted"),
    Column("specimen", pl.Utf8(), "specimen type as sent"),
    # what tells apart repeated measurements of one test in one order (QA fmt F1: an antibiogram's
    # isolates, a tolerance test's time points were merged into one result)
    Column("observation_sub_id", pl.Utf8(), "observation sub-ID as sent (HL7/HPRIM OBX-4): tells apart the results "
                                            "of one test in one order (isolate 1 and 2 of an antibiogram)"),
    Column("observed_at", pl.Datetime("us"), "the observation's own time as sent (HL7/HPRIM OBX-14, CDA observation "
                                             "effectiveTime): a timed series' point, or the analysis time; not the "
                                             "collection time, which collected_at holds"),
    Column("parse_issues", pl.Utf8(), "';'-joined REASON:column found while parsing, null when clean"),
)

COMPARATORS: tuple[str, ...] = ("<", "<=", ">", ">=")  # the values of value_comparator

CANONICAL_SCHEMA: pl.Schema = pl.Schema({c.name: c.dtype for c in CANONICAL_COLUMNS})
IDENTIFYING_COLUMNS: frozenset[str] = frozenset(c.name for c in CANONICAL_COLUMNS if c.identifying)


def empty_canonical() -> pl.DataFrame:
    return pl.DataFrame(schema=CANONICAL_SCHEMA)


def conform(df: pl.DataFrame) -> pl.DataFrame:
    """Return ``df`` with exactly the canonical columns, in order, with their dtypes.

    Missing columns become nulls; extra columns are an error (a parser bug, not bad input).
    """
    extra = set(df.columns) - set(CANONICAL_SCHEMA)
    if extra:
        raise ValueError(f"not canonical columns: {sorted(extra)}")
    return df.select(
        [
            (pl.col(n) if n in df.columns else pl.lit(None)).cast(t, strict=True).alias(n)
            for n, t in CANONICAL_SCHEMA.items()
        ]
    )
