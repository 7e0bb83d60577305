"""Transcoding: canonical results -> LOINC, coded qualitative results and canonical units.

``transcode`` is pure polars (joins and expressions, no per-row Python): the mapping join is
done on (source, local_code) and then narrowed by specimen, unit and the validity at the date of
collection; the most specific row wins (specimen and unit given > specimen given > unit given >
neither). Row order and row count of the input are kept.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from transforms.terminology.loinc import loinc_valid_expr
from transforms.terminology.mappings import specimen_key_expr
from transforms.terminology.qualitative import normalise_qualitative
from transforms.terminology.units import UnitTables, convert_units, default_unit_tables, unit_match_key

MAPPED, SOURCE_LOINC, UNMAPPED = "mapped", "source_loinc", "unmapped"

TRANSCODE_COLUMNS = pl.Schema(
    {
        "loinc_code": pl.Utf8(),
        "mapping_status": pl.Utf8(),
        "result_qual": pl.Utf8(),
        "result_class": pl.Utf8(),
        "unit_ucum": pl.Utf8(),
        "value_canonical": pl.Float64(),
        "unit_canonical": pl.Utf8(),
        "conversion_status": pl.Utf8(),
    }
)

_IDX = "__row"
_MIN_DAY, _MAX_DAY = dt.date(1, 1, 1), dt.date(9999, 12, 31)


def _distinct_keys(df: pl.DataFrame, col: str, key_expr) -> pl.Expr:
    """``key_expr`` computed on the distinct values of ``col`` only, mapped back (cheap on 5 M rows)."""
    uniq = df.select(pl.col(col).unique().drop_nulls())
    keys = uniq.with_columns(key_expr(col).alias("_k"))
    mapping = dict(zip(keys[col].to_list(), keys["_k"].to_list(), strict=True))
    return pl.col(col).replace_strict(mapping, default=None, return_dtype=pl.Utf8)


def map_local_codes(df: pl.DataFrame, mappings: pl.DataFrame, units: UnitTables | None = None) -> pl.Series:
    """LOINC from the lab mappings for every row of ``df`` (null when no mapping applies).

    Candidates are the mapping rows of the row's (source, local_code) valid on its collection day.
    A candidate *matches* when its specimen and unit are empty or equal to the row's (specimens
    without case/accents, units through UCUM); the most specific match wins. A row with no match
    still gets a LOINC when it has candidates that all give the same LOINC and differ from it only
    by unit, or by a specimen the row does not state: the unit is converted later (dimension
    checked), while a specimen that contradicts the mapping (Urine vs Sang) never maps. A row
    without collection date takes the version still in force (empty valid_to).
    """
    m = mappings.select(
        pl.col("source").cast(pl.Utf8),
        pl.col("local_code").cast(pl.Utf8),
        pl.col("loinc_num").alias("_loinc"),
        specimen_key_expr("specimen").alias("_mspec"),
        unit_match_key(mappings["unit"], units).alias("_munit"),
        pl.col("valid_from").fill_null(_MIN_DAY).alias("_from"),
        pl.col("valid_to").fill_null(_MAX_DAY).alias("_to"),
    ).with_columns(
        _prio=pl.col("_mspec").is_not_null().cast(pl.Int8) * 2 + pl.col("_munit").is_not_null().cast(pl.Int8),
        _multi=pl.len().over("source", "local_code") > 1,
    )
    cand = df.select(
        pl.int_range(pl.len(), dtype=pl.UInt32).alias(_IDX),
        pl.col("source").cast(pl.Utf8),
        pl.col("local_code").cast(pl.Utf8),
    ).join(m, on=["source", "local_code"], how="inner")
    # Each key is computed only where a mapping needs it, on distinct values.
    if (m["_from"] > _MIN_DAY).any() or (m["_to"] < _MAX_DAY).any():
        # no collection date: the version still in force (open valid_to) applies
        day = df["collected_at"].cast(pl.Date).gather(cand[_IDX]).fill_null(_MAX_DAY)
        cand = cand.with_columns(_day=day).filter((pl.col("_day") >= pl.col("_from")) & (pl.col("_day") <= pl.col("_to")))
    strict = pl.lit(True)
    if m["_mspec"].is_not_null().any():
        spec = df["specimen"].cast(pl.Utf8).gather(cand[_IDX]).to_frame("specimen")
        cand = cand.with_columns(_dspec=spec.select(_distinct_keys(spec, "specimen", specimen_key_expr)).to_series())
        same = pl.col("_mspec").is_null() | (pl.col("_mspec") == pl.col("_dspec")).fill_null(False)
        cand = cand.filter(same | pl.col("_dspec").is_null())  # a contradicting specimen never maps
        strict = strict & same
    if m["_munit"].is_not_null().any():
        unit_raw = df["unit_raw"].cast(pl.Utf8).gather(cand[_IDX])
        cand = cand.with_columns(_dunit=unit_match_key(unit_raw, units))
        strict = strict & (pl.col("_munit").is_null() | (pl.col("_munit") == pl.col("_dunit")).fill_null(False))
    cand = cand.with_columns(_strict=strict)
    # Codes with a single mapping row (the common case): the surviving candidate is the answer.
    single = cand.filter(~pl.col("_multi")).select(_IDX, "_loinc")
    multi = cand.filter(pl.col("_multi"))
    picked = [single]
    if multi.height:
        # One match per row: the most specific, then the latest version (validated mappings cannot
        # overlap for a key, so remaining ties only come from hand-built frames).
        exact = (
            multi.filter(pl.col("_strict"))
            .sort([_IDX, "_prio", "_from"], descending=[False, True, True])
            .filter(pl.col(_IDX).is_first_distinct())
            .select(_IDX, "_loinc")
        )
        loose = (
            multi.filter(~pl.col("_strict") & ~pl.col(_IDX).is_in(exact[_IDX].implode()))
            .group_by(_IDX)
            .agg(pl.col("_loinc").unique())
            .filter(pl.col("_loinc").list.len() == 1)
            .select(_IDX, pl.col("_loinc").list.first())
        )
        picked += [exact, loose]
    picked_df = pl.concat(picked)
    out = pl.Series("loinc_code", [None], dtype=pl.Utf8).extend_constant(None, df.height - 1)
    return out.scatter(picked_df[_IDX], picked_df["_loinc"])


def transcode(
    df: pl.DataFrame,
    mappings: pl.DataFrame,
    loinc: pl.DataFrame,
    units: UnitTables | None = None,
) -> pl.DataFrame:
    """Add ``TRANSCODE_COLUMNS`` to ``df`` (all its columns kept, row order kept).

    * loinc_code / mapping_status: the lab mapping valid at the collection date ('mapped'), else
      the source's own LOINC when it has a valid check digit and is in ``loinc``
      ('source_loinc'), else null ('unmapped');
    * result_qual / result_class: SNOMED CT qualifier and POS/NEG/INVALID for non-numeric results;
    * unit_ucum, value_canonical, unit_canonical, conversion_status: see units.convert_units.

    ``units`` defaults to the tables shipped in seeds/terminology.
    """
    if df.height == 0:
        return df.with_columns([pl.lit(None, dtype=t).alias(c) for c, t in TRANSCODE_COLUMNS.items()])
    units = units or default_unit_tables()
    mapped = map_local_codes(df, mappings, units)
    # the source's own LOINC when valid and known: checked once per distinct code, and not at all
    # when the file sends none (most extracts: the check-digit expression alone costs milliseconds)
    codes = df.select(pl.col("loinc_code_src").drop_nulls().unique())
    if codes.height:
        good = codes.filter(loinc_valid_expr("loinc_code_src")
                            & pl.col("loinc_code_src").is_in(loinc["loinc_num"].implode()))["loinc_code_src"]
        src_ok = pl.when(pl.col("loinc_code_src").is_in(good.implode())).then(pl.col("loinc_code_src"))
    else:
        src_ok = pl.lit(None, dtype=pl.Utf8)
    # qualitative words: normalised once per distinct text among non-numeric results
    texts = df.select(pl.col("value_raw").filter(pl.col("value_num").is_null()).unique().drop_nulls())
    words = texts.with_columns(*normalise_qualitative(pl.col("value_raw")))
    text_result = pl.col("value_num").is_null()
    out = df.with_columns(
        loinc_code=pl.coalesce(pl.lit(mapped), src_ok),
        mapping_status=pl.when(pl.lit(mapped).is_not_null())
        .then(pl.lit(MAPPED))
        .when(src_ok.is_not_null())
        .then(pl.lit(SOURCE_LOINC))
        .otherwise(pl.lit(UNMAPPED)),
        result_qual=pl.when(text_result).then(
            pl.col("value_raw").replace_strict(words["value_raw"], words["result_qual"], default=None,
                                               return_dtype=pl.Utf8)
        ),
        result_class=pl.when(text_result).then(
            pl.col("value_raw").replace_strict(words["value_raw"], words["result_class"], default=None,
                                               return_dtype=pl.Utf8)
        ),
    )
    # the unit conversion reads three columns: it runs on those only (its join then carries no
    # other column) and its four columns are added back, in row order
    converted = convert_units(out.select("loinc_code", "unit_raw", "value_num"), loinc, units,
                              loinc_col="loinc_code")
    return out.with_columns(
        converted.select("unit_ucum", "value_canonical", "unit_canonical", "conversion_status").get_columns())


def coverage(df: pl.DataFrame) -> pl.DataFrame:
    """Per source, on transcoded rows: results, how many got a LOINC (by mapping or from the
    source) and the share, plus the distinct local codes still unmapped."""
    return (
        df.group_by("source")
        .agg(
            n_results=pl.len(),
            n_mapped=(pl.col("mapping_status") == MAPPED).sum(),
            n_source_loinc=(pl.col("mapping_status") == SOURCE_LOINC).sum(),
            n_unmapped=(pl.col("mapping_status") == UNMAPPED).sum(),
            n_unmapped_codes=pl.col("local_code").filter(pl.col("mapping_status") == UNMAPPED).n_unique(),
        )
        .with_columns(share_coded=((pl.col("n_mapped") + pl.col("n_source_loinc")) / pl.col("n_results")).round(4))
        .sort("source")
    )
