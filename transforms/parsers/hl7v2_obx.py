"""Read plain OBX segments with polars expressions instead of a Python loop.

The HL7 parser hands over, for each OBX of a default-delimited message that holds neither an
escape nor a repetition character and is not of type ED, the raw segment and the index of its
order's context (:data:`CTX_COLUMNS` joined with U+001F, one string per OBR). :func:`obx_frame`
splits them column-wise and applies the same rules as :func:`~transforms.parsers.er7.result_columns`
(LOINC detection, trailing empty components of composite values, unit component, FINESS in
OBX-23, OBX-14/OBX-19 first component, OBX-4 as it is). The equivalence is property-tested
(tests/test_parser_properties.py); it is what makes the parser several times faster than a
per-field Python loop on large files.
"""

from __future__ import annotations

import polars as pl

from transforms.parsers.er7 import FINESS_RE, LOINC_SYSTEMS, STRUCTURED_TYPES
from transforms.parsers.resultrows import SEP

CTX_COLUMNS: tuple[str, ...] = (
    "message_id", "__base_lab", "request_id", "patient_nir", "ins_oid", "family_name", "first_name",
    "birth_date", "sex", "postal_code", "__coll", "received_at", "__obr22", "specimen",
)
CTX_FIELDS = len(CTX_COLUMNS)


def obx_frame(nos: list[int], segments: list[str], ctx_index: list[int], contexts: list[str]) -> pl.DataFrame:
    """RAW rows from raw OBX segments and the packed contexts of their orders, vectorised.

    Only OBX segments of default-delimited messages holding neither an escape nor a repetition
    character (nor type ED) are packed, so this gives exactly what :func:`result_columns` gives
    (the equivalence is property-tested).
    """
    ctx = pl.DataFrame([pl.Series("p", contexts, dtype=pl.Utf8)]).select(
        pl.col("p").str.split_exact(SEP, CTX_FIELDS - 1).struct.rename_fields(list(CTX_COLUMNS))
    ).unnest("p")
    df = pl.concat(
        [
            pl.DataFrame([pl.Series("line_no", nos, dtype=pl.Int64), pl.Series("__obx", segments, dtype=pl.Utf8)]),
            ctx[pl.Series(ctx_index, dtype=pl.UInt32)],
        ],
        how="horizontal",
    )
    df = df.with_columns(
        pl.col("__obx").str.split_exact("|", 23).struct.rename_fields([f"__f{i}" for i in range(24)])
    ).unnest("__obx")
    f = {i: pl.col(f"__f{i}").fill_null("") for i in range(24)}
    df = df.with_columns(
        f[2].str.strip_chars(" \t").str.to_uppercase().alias("value_type"),
        f[3].str.split_exact("^", 5).struct.rename_fields([f"__c{i}" for i in range(6)]).alias("__c"),
        f[6].str.split_exact("^", 1).struct.rename_fields(["__u0", "__u1"]).alias("__u"),
        f[23].str.split_exact("^", 9).struct.rename_fields([f"__x{i}" for i in range(10)]).alias("__x"),
        f[5].alias("__v"),
        f[4].alias("observation_sub_id"),
        f[7].alias("ref_range"),
        f[8].alias("abnormal_flag"),
        f[11].alias("result_status"),
        f[14].str.extract(r"^([^\^&]*)").fill_null("").alias("__o14"),
        f[19].str.extract(r"^([^\^&]*)").fill_null("").alias("__o19"),
    ).unnest("__c", "__u", "__x")
    c = {i: pl.col(f"__c{i}").fill_null("") for i in range(6)}
    systems = list(LOINC_SYSTEMS)
    df = df.with_columns(
        c[2].str.to_uppercase().is_in(systems).alias("__ln1"),
        c[5].str.to_uppercase().is_in(systems).alias("__ln2"),
    )
    ln1, ln2 = pl.col("__ln1"), pl.col("__ln2")
    alt_local = ln1 & (c[3] != "") & ~ln2
    finess = pl.lit("")
    for k in (0, 1, 2, 9):  # lowest priority first: the last match wins
        x = pl.col(f"__x{k}").fill_null("").str.strip_chars(" \t")
        finess = pl.when(x.str.contains(f"^(?:{FINESS_RE.pattern})$")).then(x).otherwise(finess)
    u0, u1 = pl.col("__u0").fill_null(""), pl.col("__u1").fill_null("")
    return df.select(
        pl.col("line_no"),
        pl.col("message_id"),
        pl.when(finess != "").then(finess).otherwise(pl.col("__base_lab")).alias("lab_finess"),
        *[pl.col(n) for n in CTX_COLUMNS[2:10]],
        pl.when(pl.col("__coll") != "").then(pl.col("__coll")).otherwise(pl.col("__o14")).alias("collected_at"),
        pl.col("received_at"),
        pl.when(pl.col("__o19") != "").then(pl.col("__o19")).otherwise(pl.col("__obr22")).alias("validated_at"),
        pl.when(alt_local).then(c[3]).otherwise(c[0]).alias("local_code"),
        pl.when(alt_local & (c[4] != "")).then(c[4]).otherwise(c[1]).alias("local_label"),
        pl.when(ln1).then(c[0]).when((c[3] != "") & ln2).then(c[3]).otherwise(pl.lit("")).alias("loinc_code_src"),
        pl.col("value_type"),
        pl.when(pl.col("value_type").is_in(list(STRUCTURED_TYPES)))
        .then(pl.col("__v").str.replace(r"\^+$", ""))
        .otherwise(pl.col("__v"))
        .alias("value_raw"),
        pl.when(u0 != "").then(u0).otherwise(u1).alias("unit_raw"),
        pl.col("ref_range"),
        pl.col("abnormal_flag"),
        pl.col("result_status"),
        pl.col("specimen"),
        pl.col("observation_sub_id"),
        pl.col("__o14").alias("observed_at"),
        pl.lit("").alias("parse_issues"),
    )
