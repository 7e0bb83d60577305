"""Transcoding: canonical results -> LOINC, coded qualitative results and canonical units.

``transcode`` is pure polars (joins and expressions, no per-row Python): the mapping join is
done on (source, local_code) and then narrowed by specimen, unit and the validity at the date of
collection; the most specific row wins (specimen and unit given > specimen given > unit given >
neither). Row order and row count of the input are kept.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import polars as pl

from transforms.terminology.loinc import loinc_valid_expr
from transforms.terminology.mappings import specimen_key_expr
from transforms.terminology.qualitative import DEFAULT_READER, QualitativeReader, reader_for
from transforms.terminology.units import (
    NOT_NUMERIC,
    UnitTables,
    conversion_columns,
    conversion_factors,
    default_unit_tables,
    loinc_unit_table,
    normalise_unit_text,
    resolver,
    unit_match_key,
)

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


@dataclass(frozen=True, eq=False)
class PreparedMappings:
    """A mapping table ready for joining (``prepare_mappings``), with the checks each call needs."""

    table: pl.DataFrame = field(repr=False)  # source, local_code, _loinc, _mspec, _munit, _from, _to, _prio, _multi
    dated: bool  # some row has a validity bound: the collection day is compared
    by_specimen: bool  # some row names a specimen
    by_unit: bool  # some row names a unit
    multi: bool  # some (source, local_code) has several rows


def prepare_mappings(mappings: pl.DataFrame, units: UnitTables | None = None) -> PreparedMappings:
    """The per-table half of ``map_local_codes``: keys, validity bounds and priorities."""
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
    flags = m.select(
        dated=(pl.col("_from") > _MIN_DAY).any() | (pl.col("_to") < _MAX_DAY).any(),
        by_specimen=pl.col("_mspec").is_not_null().any(),
        by_unit=pl.col("_munit").is_not_null().any(),
        multi=pl.col("_multi").any(),
    ).row(0, named=True)
    return PreparedMappings(table=m, **{k: bool(v) for k, v in flags.items()})


def _picked_codes(df: pl.DataFrame, pm: PreparedMappings, spec_keys: dict, unit_keys: dict) -> pl.Series:
    """``map_local_codes`` on a prepared table (one query up to the candidates). ``spec_keys`` / ``unit_keys``
    give the specimen and unit key of every distinct specimen / unit_raw text of ``df``."""
    cols = [
        pl.int_range(pl.len(), dtype=pl.UInt32).alias(_IDX),
        pl.col("source").cast(pl.Utf8),
        pl.col("local_code").cast(pl.Utf8),
    ]
    if pm.dated:  # no collection date: the version still in force (open valid_to) applies
        cols.append(pl.col("collected_at").cast(pl.Date).fill_null(_MAX_DAY).alias("_day"))
    if pm.by_specimen:
        cols.append(pl.col("specimen").cast(pl.Utf8).replace_strict(spec_keys, default=None, return_dtype=pl.Utf8)
                    .alias("_dspec"))
    if pm.by_unit:
        cols.append(pl.col("unit_raw").cast(pl.Utf8).replace_strict(unit_keys, default=None, return_dtype=pl.Utf8)
                    .alias("_dunit"))
    cand = df.lazy().select(cols).join(pm.table.lazy(), on=["source", "local_code"], how="inner")
    if pm.dated:
        cand = cand.filter((pl.col("_day") >= pl.col("_from")) & (pl.col("_day") <= pl.col("_to")))
    strict = pl.lit(True)
    if pm.by_specimen:
        same = pl.col("_mspec").is_null() | (pl.col("_mspec") == pl.col("_dspec")).fill_null(False)
        cand = cand.filter(same | pl.col("_dspec").is_null())  # a contradicting specimen never maps
        strict = strict & same
    if pm.by_unit:
        strict = strict & (pl.col("_munit").is_null() | (pl.col("_munit") == pl.col("_dunit")).fill_null(False))
    # one query up to the candidates; the rest works on the few rows of multi-row codes, if any
    cand = cand.select(_IDX, "_loinc", "_prio", "_from", "_multi", _strict=strict).collect(engine="in-memory")
    out = pl.Series("loinc_code", [None], dtype=pl.Utf8).extend_constant(None, df.height - 1)
    if not cand["_multi"].any():
        # Codes with a single mapping row (the common case): the surviving candidate is the answer.
        return out.scatter(cand[_IDX], cand["_loinc"])
    single = cand.filter(~pl.col("_multi")).select(_IDX, "_loinc")
    multi = cand.filter(pl.col("_multi"))
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
    # each row index appears at most once across the three: their order does not matter
    picked = pl.concat([single, exact, loose])
    return out.scatter(picked[_IDX], picked["_loinc"])


def _key_map(values: list[str], key_expr) -> dict[str, str | None]:
    """``key_expr`` (a function of a column name) computed on ``values``, as a dict."""
    keys = pl.DataFrame({"v": values}, schema={"v": pl.Utf8}).select("v", key_expr("v").alias("k"))
    return dict(zip(keys["v"].to_list(), keys["k"].to_list(), strict=True))


def _unit_key_maps(values: list[str], units: UnitTables | None) -> tuple[dict, dict]:
    """(to_ucum, unit_match_key) of each of ``values`` (the resolver caches the UCUM lookups)."""
    r = resolver(units or default_unit_tables())
    ucum, match = {}, {}
    for u in values:
        ucum[u] = code = r.resolve(u)
        text = normalise_unit_text(u).casefold()
        match[u] = code if code is not None else (("?" + text) if text else None)
    return ucum, match


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
    pm = prepare_mappings(mappings, units)
    spec_keys = unit_keys = {}
    if pm.by_specimen:
        spec_keys = _key_map(df["specimen"].cast(pl.Utf8).drop_nulls().unique().to_list(), specimen_key_expr)
    if pm.by_unit:
        unit_keys = _unit_key_maps(df["unit_raw"].cast(pl.Utf8).drop_nulls().unique().to_list(), units)[1]
    return _picked_codes(df, pm, spec_keys, unit_keys)


# --- prepared terminology ---------------------------------------------------------------------------
class PreparedTerminology:
    """What ``transcode`` derives from the terminology tables alone, built once and reused across
    calls (files): the prepared mapping table, the LOINC codes a source may send (known, valid
    check digit), the per-LOINC canonical units, plus memos of the per-text keys met so far
    (specimen keys; the qualitative readers keep their own)."""

    def __init__(self, mappings: pl.DataFrame, loinc: pl.DataFrame, units: UnitTables):
        self.units = units
        self.mappings = prepare_mappings(mappings, units)
        self.source_loinc = loinc.filter(loinc_valid_expr("loinc_num"))["loinc_num"]
        self.per_code = loinc_unit_table(loinc, units).rename({"loinc_num": "_loinc"})
        self.specimen_keys: dict[str, str | None] = {}

    # the memos are emptied past this many texts (free-text results could otherwise grow them
    # with every file)
    MEMO_MAX = 100_000

    def specimen_keys_of(self, values: list[str]) -> dict[str, str | None]:
        """Specimen key (``specimen_key_expr``) of each of ``values``."""
        new = [v for v in values if v not in self.specimen_keys]
        if new:
            if len(self.specimen_keys) + len(new) > self.MEMO_MAX:
                self.specimen_keys.clear()
            self.specimen_keys.update(_key_map(new, specimen_key_expr))
        return {v: self.specimen_keys[v] for v in values}

    def words_of(self, values: list[str], reader: QualitativeReader | None = None) -> tuple[dict, dict]:
        """(result_qual, result_class) of each of ``values`` as two dicts (``reader``: the
        operator's words, default the shipped vocabulary; it memoises what it read)."""
        reader = reader or DEFAULT_READER
        got = {v: reader.classify(v) for v in values}
        return {v: c[0] for v, c in got.items()}, {v: c[1] for v, c in got.items()}


_PREPARED_MAX = 4
_prepared: list[tuple[tuple[pl.DataFrame, ...], UnitTables, PreparedTerminology]] = []


def _frames_equal(a: pl.DataFrame, b: pl.DataFrame) -> bool:
    return a is b or (a.schema == b.schema and a.equals(b, null_equal=True))


def prepared_terminology(mappings: pl.DataFrame, loinc: pl.DataFrame, units: UnitTables) -> PreparedTerminology:
    """The ``PreparedTerminology`` of these tables, from a small cache keyed on their *content*.

    A frame's identity is no key (frames can be changed in place, and ids are reused once a frame
    is freed), so each entry keeps a snapshot (``clone``: the same immutable buffers, which an
    in-place change replaces rather than alters) and is only served when every table still equals
    its snapshot; comparing a few hundred rows costs microseconds.
    """
    frames = (mappings, loinc, units.aliases, units.loinc_units, units.molar_masses)
    for i, (snap, snap_units, prep) in enumerate(_prepared):
        if snap_units is units and all(_frames_equal(a, b) for a, b in zip(snap, frames, strict=True)):
            if i:  # most recently used first
                _prepared.insert(0, _prepared.pop(i))
            return prep
    prep = PreparedTerminology(mappings, loinc, units)
    _prepared.insert(0, (tuple(f.clone() for f in frames), units, prep))
    del _prepared[_PREPARED_MAX:]
    return prep


def transcode(
    df: pl.DataFrame,
    mappings: pl.DataFrame,
    loinc: pl.DataFrame,
    units: UnitTables | None = None,
    words: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Add ``TRANSCODE_COLUMNS`` to ``df`` (all its columns kept, row order kept).

    * loinc_code / mapping_status: the lab mapping valid at the collection date ('mapped'), else
      the source's own LOINC when it has a valid check digit and is in ``loinc``
      ('source_loinc'), else null ('unmapped');
    * result_qual / result_class: SNOMED CT qualifier and POS/NEG/INVALID for non-numeric results
      (qualitative.py; ``words``: the operator's extra words, ``load_qualitative_words``);
    * unit_ucum, value_canonical, unit_canonical, conversion_status: see units.convert_units.

    ``units`` defaults to the tables shipped in seeds/terminology. What depends on the tables
    only is prepared once (``prepared_terminology``); a call then costs a few polars queries.
    """
    if df.height == 0:
        return df.with_columns([pl.lit(None, dtype=t).alias(c) for c, t in TRANSCODE_COLUMNS.items()])
    units = units or default_unit_tables()
    prep = prepared_terminology(mappings, loinc, units)
    pm = prep.mappings
    # the distinct texts the per-text keys are computed on, in one query
    text_result = pl.col("value_num").is_null()
    distinct = df.lazy().select(
        units=pl.col("unit_raw").cast(pl.Utf8).drop_nulls().unique().implode(),
        specimens=(pl.col("specimen").cast(pl.Utf8) if pm.by_specimen else pl.lit(None, dtype=pl.Utf8))
        .drop_nulls().unique().implode(),
        texts=pl.col("value_raw").filter(text_result).drop_nulls().unique().implode(),
    ).collect(engine="in-memory").row(0, named=True)
    ucum_of, unit_key_of = _unit_key_maps(distinct["units"], units)
    spec_key_of = prep.specimen_keys_of(distinct["specimens"])
    mapped = _picked_codes(df, pm, spec_key_of, unit_key_of)
    # the source's own LOINC when valid and known (the valid known codes are prepared once)
    src_ok = pl.when(pl.col("loinc_code_src").is_in(prep.source_loinc.implode())).then(pl.col("loinc_code_src"))
    # qualitative words: normalised once per distinct text (memoised across files)
    qual_of, class_of = prep.words_of(distinct["texts"], reader_for(words))
    coded = df.lazy().with_columns(
        loinc_code=pl.coalesce(pl.lit(mapped), src_ok),
        mapping_status=pl.when(pl.lit(mapped).is_not_null())
        .then(pl.lit(MAPPED))
        .when(src_ok.is_not_null())
        .then(pl.lit(SOURCE_LOINC))
        .otherwise(pl.lit(UNMAPPED)),
        result_qual=pl.when(text_result).then(
            pl.col("value_raw").replace_strict(qual_of, default=None, return_dtype=pl.Utf8)),
        result_class=pl.when(text_result).then(
            pl.col("value_raw").replace_strict(class_of, default=None, return_dtype=pl.Utf8)),
        unit_ucum=pl.col("unit_raw").replace_strict(ucum_of, default=None, return_dtype=pl.Utf8),
    ).collect(engine="in-memory")
    # unit conversion (see units.convert_units): one factor per distinct (LOINC, unit) pair, joined
    # back on a frame of the columns it reads (the join then carries no other column)
    conv = coded.select(pl.col("loinc_code").alias("_loinc"), "unit_ucum", "unit_raw", "value_num")
    factors = conversion_factors(conv.select("_loinc", "unit_ucum").unique(), prep.per_code)
    converted = (
        conv.lazy()
        .join(factors.lazy(), on=["_loinc", "unit_ucum"], how="left", nulls_equal=True, maintain_order="left")
        .select(**conversion_columns())
        .collect(engine="in-memory")
    )
    coded = coded.with_columns(converted.get_columns())
    # no value at all (status X, not obtained, or D): not a number that failed to convert (QA: it
    # counted as text_on_quantitative and inflated a lab's share of results not converted)
    return coded.with_columns(conversion_status=pl.when(pl.col("value_raw").is_null())
                              .then(pl.lit(NOT_NUMERIC)).otherwise(pl.col("conversion_status")))


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
