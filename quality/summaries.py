"""Bounded summaries of the warehouse, computed with DuckDB over the Parquet files.

The quality gate (quality/checkpoints.py) and the data-quality report (quality/reports/dq.py)
never look at the large tables row by row: they read these summaries, whose size depends on the
number of files, labs, days or distinct values, not on the number of results. DuckDB does the
heavy part (one pass per query over the columns it needs, or only the Parquet footers for row
counts), so the cost of Great Expectations stays flat as the warehouse grows.

Every function takes an open DuckDB connection and a :class:`Sources` and returns a polars frame.
Nothing here returns a patient-level value: only counts, shares, dates, codes and file paths.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl

from quality.clock import latest_local_time
from transforms.versions import late_replacement_sql
from warehouse import catalog as cat
from warehouse.catalog import Table
from warehouse.store import Warehouse, empty_relation
from warehouse.views import sql_literal

AGE_CLASSES = (0, 9, 19, 29, 39, 49, 59, 69, 79, 89, 90)


def connect(wh: Warehouse) -> duckdb.DuckDBPyConnection:
    """A private in-memory DuckDB (never the hidden default connection), spilling under _tmp."""
    con = duckdb.connect(":memory:")
    tmp = wh.tmp / "duckdb"
    tmp.mkdir(parents=True, exist_ok=True)
    con.execute(f"SET temp_directory = {sql_literal(str(tmp))}")
    return con


# the integer types whose distinct values key_duplicates may count with bitmaps
INTEGER_TYPES = frozenset({"TINYINT", "SMALLINT", "INTEGER", "BIGINT"})
# the most bitmap bits (groups x value range) key_duplicates builds; beyond, a hash DISTINCT.
# 2**28 bits = 32 MiB (each DuckDB thread may hold its own partial bitmaps).
MAX_BITMAP_BITS = 1 << 28


class Sources:
    """SQL ``FROM`` expressions over the warehouse's Parquet files, one per catalog table.

    Given the connection the queries run on, a Sources reads the schemas of each table's files once
    (their Parquet footers) and drops ``union_by_name`` for a table whose files all have the same
    columns with the same types in the same order: binding a query then reads one footer instead of
    every footer again (about 0.15 s per query over a few hundred files). A table whose files differ
    (some written before a column was added) keeps the union. Without a connection, every
    multi-file table is read with the union.

    A Sources is a snapshot: file lists, schemas and footer row counts are read once and kept. Make
    a new one after writing to the warehouse.
    """

    def __init__(self, wh: Warehouse, con: duckdb.DuckDBPyConnection | None = None):
        self.wh = wh
        self.con = con
        self._files: dict[str, list[Path]] = {}
        self._union: dict[str, bool] = {}
        self._types: dict[str, dict[str, str]] = {}
        self._rows: dict[str, pl.DataFrame] = {}
        self._layouts: dict = {}

    def has(self, t: Table) -> bool:
        return bool(self.files(t))

    def files(self, t: Table) -> list[Path]:
        """Every Parquet file of the table (loose partitions and packs)."""
        if t.qualified not in self._files:
            self._files[t.qualified] = self.wh.files(t)
        return self._files[t.qualified]

    def holds(self, t: Table, partitions: list[str]) -> bool:
        """Whether any of these partitions holds a part (possibly of no row)."""
        if t.qualified not in self._layouts:
            self._layouts[t.qualified] = self.wh.layout(t)
        return any(self.wh.holds(t, p, self._layouts[t.qualified]) for p in partitions)

    def needs_union(self, t: Table) -> bool:
        """Whether the files of ``t`` must be read with ``union_by_name`` (their schemas differ, or
        cannot be compared without a connection)."""
        if self.con is None or len(self.files(t)) < 2:
            return True  # one file: the union costs nothing; no connection: as without this check
        if t.qualified not in self._union:
            schemas = self.con.sql(f"""
                SELECT count(DISTINCT columns) FROM (
                    SELECT file_name, list((name, duckdb_type) ORDER BY column_id) AS columns
                    FROM parquet_schema({sql_literal(self.wh.glob(t))}) GROUP BY file_name)""").fetchall()[0][0]
            self._union[t.qualified] = schemas != 1
        return self._union[t.qualified]

    def rel(self, t: Table, partitions: list[str] | None = None) -> str:
        """``read_parquet([...])`` over the table (or some of its partitions); an empty typed
        relation when there is no file, so queries never fail on a young warehouse."""
        if not self.files(t):
            return empty_relation(t)
        # the whole table as a glob (short SQL however many files), some partitions as a list (the
        # store filters the packs: warehouse/store.py); some partitions of a table whose files all
        # have one schema have that schema too
        return self.wh.sql_source(t, partitions, union_by_name=self.needs_union(t))

    def types(self, con: duckdb.DuckDBPyConnection, t: Table) -> dict[str, str]:
        """Column name -> DuckDB type of the table's files (empty when it has none)."""
        if not self.has(t):
            return {}
        if t.qualified not in self._types:
            self._types[t.qualified] = describe(con, self.rel(t))
        return self._types[t.qualified]

    def columns(self, con: duckdb.DuckDBPyConnection, t: Table) -> list[str]:
        return list(self.types(con, t))


def describe(con: duckdb.DuckDBPyConnection, rel: str) -> dict[str, str]:
    """Column name -> DuckDB type of a relation, in its order."""
    return {r[0]: r[1] for r in con.sql(f"DESCRIBE SELECT * FROM {rel}").fetchall()}


def read_table(con: duckdb.DuckDBPyConnection, src: Sources, t: Table) -> pl.DataFrame:
    """A small table with its declared columns, tolerant of files written before a column was
    added (missing columns come back null) or after one was dropped (extra columns ignored)."""
    if not src.has(t):
        return t.empty()
    present = set(src.columns(con, t))
    cols = ", ".join(f'"{c.name}"' if c.name in present else f'NULL AS "{c.name}"' for c in t.columns)
    return frame(con, f"SELECT {cols} FROM {src.rel(t)}").cast(t.schema, strict=False)


def frame(con: duckdb.DuckDBPyConnection, sql: str) -> pl.DataFrame:
    return con.sql(sql).pl()


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> tuple:
    return con.sql(sql).fetchall()[0]


# --------------------------------------------------------------------------------------------
# row accounting per file
# --------------------------------------------------------------------------------------------
def rows_per_partition(con: duckdb.DuckDBPyConnection, src: Sources, t: Table) -> pl.DataFrame:
    """Rows per partition value (file_id) read from the Parquet footers only: O(files), not O(rows).
    Kept by ``src`` (the gate needs staging's twice)."""
    if not src.has(t):
        return pl.DataFrame(schema={"file_id": pl.Utf8, "n": pl.Int64})
    if t.qualified not in src._rows:
        rows = src.wh.partition_rows(t)
        src._rows[t.qualified] = pl.DataFrame({"file_id": list(rows), "n": list(rows.values())},
                                              schema={"file_id": pl.Utf8, "n": pl.Int64})
    return src._rows[t.qualified]


def key_duplicates(con: duckdb.DuckDBPyConnection, rel: str, key: list[str], types: dict[str, str]) -> int:
    """Rows of ``rel`` minus its distinct ``key`` values, nulls equal to each other as in ``SELECT
    DISTINCT`` (0 when the key is unique). Exact whichever way it is counted.

    A key that ends with an integer column (a line or result number after file_id) is counted with
    one bitmap of that column's value range per value of the other key columns (bitstring_agg):
    a few hundred small bitmaps instead of a hash table of millions of keys, several times faster.
    Any other key, or one whose bitmaps would exceed :data:`MAX_BITMAP_BITS`, is counted with a
    ``SELECT DISTINCT`` (which DuckDB may spill to disk).
    """
    if not key:
        raise ValueError("key_duplicates needs at least one key column")
    cols = [f'"{k}"' for k in key]
    last, groups = cols[-1], cols[:-1]
    if types.get(key[-1]) in INTEGER_TYPES:
        # (an upper bound is enough: + 1 for the null value, which count(DISTINCT) leaves out)
        n_groups = (f"count(DISTINCT {groups[0]}) + 1" if len(groups) == 1 else
                    f"count(DISTINCT ({', '.join(groups)}))" if groups else "1")
        lo, hi, n = _one(con, f"SELECT min({last}), max({last}), {n_groups} FROM {rel}")
        if lo is not None and (hi - lo + 1) * n <= MAX_BITMAP_BITS:
            group_by = f"GROUP BY {', '.join(groups)}" if groups else ""
            # distinct values per group = the bits set + 1 when the column is null in some row
            return int(_one(con, f"""
                SELECT coalesce(sum(n - coalesce(bit_count(seen), 0) - has_null), 0) FROM (
                    SELECT count(*) AS n, bitstring_agg({last}, {lo}, {hi}) AS seen,
                           max(CASE WHEN {last} IS NULL THEN 1 ELSE 0 END) AS has_null
                    FROM {rel} {group_by})""")[0])
    return int(_one(con, f"""
        SELECT (SELECT count(*) FROM {rel})
               - (SELECT count(*) FROM (SELECT DISTINCT {', '.join(cols)} FROM {rel}))""")[0])


def file_accounting(con: duckdb.DuckDBPyConnection, src: Sources) -> pl.DataFrame:
    """One row per loaded file: the file log's accounting next to what the warehouse holds.

    ``balance = rows_in - rows_valid - rows_quarantined`` must be 0; ``parse_gap`` compares
    rows_in with the raw rows plus the rejected lines; stg/coded/fct rows must equal rows_valid and
    the quarantined lines rows_quarantined.
    """
    log = frame(con, f"""
        SELECT path, source, file_id, format, run_id, rows_in, rows_valid, rows_quarantined
        FROM {src.rel(cat.FILE_LOG)} WHERE status = 'loaded' ORDER BY path""")
    counts = {
        "raw_rows": rows_per_partition(con, src, cat.RAW_RESULTS),
        "stg_rows": rows_per_partition(con, src, cat.STG_RESULTS),
        "coded_rows": rows_per_partition(con, src, cat.STG_RESULTS_CODED),
        "fct_rows": (rows_per_partition(con, src, cat.FCT_LAB_RESULTS) if cat.FCT_LAB_RESULTS.partition_by == "file_id"
                     else frame(con, f"SELECT file_id, count(*) AS n FROM {src.rel(cat.FCT_LAB_RESULTS)} GROUP BY 1")),
        # polars' n_unique (used when the file was logged) counts a null line_no as one value
        "quarantine_lines": frame(con, f"""
            SELECT file_id, count(DISTINCT line_no) + max(CASE WHEN line_no IS NULL THEN 1 ELSE 0 END) AS n
            FROM {src.rel(cat.QUARANTINE)} GROUP BY 1"""),
        "rejected_lines": frame(con, f"""
            SELECT file_id, count(DISTINCT line_no) AS n FROM {src.rel(cat.RAW_REJECTED)} GROUP BY 1"""),
    }
    out = log
    for name, df in counts.items():
        df = df.select("file_id", pl.col("n").cast(pl.Int64).alias(name))
        out = out.join(df, on="file_id", how="left", maintain_order="left")
    out = out.with_columns(pl.col(list(counts)).fill_null(0))
    return out.with_columns(
        balance=pl.col("rows_in") - pl.col("rows_valid") - pl.col("rows_quarantined"),
        parse_gap=pl.col("rows_in") - pl.col("raw_rows") - pl.col("rejected_lines"),
    )


def landing_failures(con: duckdb.DuckDBPyConnection, src: Sources, landing: Path) -> pl.DataFrame:
    """The files still in the landing area whose newest sighting failed to load (path, status,
    reason_code): a failure is logged once, by the run that met it, but the file's results reach no
    table for as long as it stays there, so every gate names it again until it is replaced (loaded
    under the same name, or replaced by a copy of a delivery already loaded: a re-delivery) or
    removed. A name logged escaped (a hostile name, docs/privacy.md) is not
    looked up: it was named by the run that refused it."""
    newest = frame(con, f"""
        SELECT path, arg_max(status, registered_at) AS status, arg_max(reason_code, registered_at) AS reason_code
        FROM {src.rel(cat.FILE_LOG)} GROUP BY path ORDER BY path""")
    failed = newest.filter(pl.col("status") == "failed")
    still = [_in_landing(landing, p) for p in failed["path"].to_list()]
    return failed.filter(pl.Series(still, dtype=pl.Boolean))


def lab_deliveries(con: duckdb.DuckDBPyConnection, src: Sources, now: datetime, min_delivery_days: int
                   ) -> pl.DataFrame:
    """One row per lab (landing folder) that delivered on at least ``min_delivery_days`` distinct
    days (days on which biolake registered a file of it, whatever became of the file: loaded,
    re-delivery or failed): source, last_delivery (text, to the minute), delivery_days,
    days_since_last_delivery (whole days before ``now``). A lab whose files all came in one load (a
    new home, a back-fill, the demo) has one delivery day and is not listed: its rhythm is unknown.
    Files outside a lab folder (source ``_unknown``) belong to no lab."""
    df = frame(con, f"""
        SELECT source, max(registered_at) AS last_at, count(DISTINCT CAST(registered_at AS DATE)) AS delivery_days
        FROM {src.rel(cat.FILE_LOG)} WHERE source IS NOT NULL AND source <> '_unknown'
        GROUP BY source ORDER BY source""")
    return (df.filter(pl.col("delivery_days") >= min_delivery_days)
            .with_columns(days_since_last_delivery=(pl.lit(now, pl.Datetime("us")) - pl.col("last_at"))
                          .dt.total_days().cast(pl.Int64),
                          last_delivery=pl.col("last_at").dt.strftime("%Y-%m-%d %H:%M"),
                          delivery_days=pl.col("delivery_days").cast(pl.Int64))
            .select("source", "last_delivery", "delivery_days", "days_since_last_delivery"))


def _in_landing(landing: Path, rel: str) -> bool:
    try:
        path = landing / rel.rstrip("/")
        # the entry itself, not what a symbolic link points to (QA: a link refused as NOT_A_FILE, whose
        # target is outside the landing, dropped out of the later gates' warnings while still there)
        entry = path.parent.resolve() / path.name
        return entry.is_relative_to(landing.resolve()) and (entry.exists() or entry.is_symlink())
    except (OSError, ValueError):
        return False


# --------------------------------------------------------------------------------------------
# marts.fct_lab_results
# --------------------------------------------------------------------------------------------
def before_collection_sql(col: str, collected: str = "collected_at") -> str:
    """SQL: ``col`` (a reception or validation time) is before the collection, with the rule of the
    row checks (quality.schemas.not_before_collection): a value at exactly 00:00:00 is a date sent
    without its time, before the collection only when its date is."""
    return (f"({col} < {collected} AND NOT ({col} = date_trunc('day', {col}) "
            f"AND CAST({col} AS DATE) >= CAST({collected} AS DATE)) "
            f"AND NOT ({repeated_hour_sql(col)} AND {repeated_hour_sql(collected)}))")


def repeated_hour_sql(ts: str) -> str:
    """SQL: ``ts`` is in the hour repeated when Paris clocks go back (quality.schemas.in_repeated_hour)."""
    return (f"coalesce(month({ts}) = 10 AND day({ts}) >= 25 AND isodow({ts}) = 7 AND hour({ts}) = 2, false)")


def delay_minutes_sql(earlier: str, later: str) -> str:
    """SQL: minutes from ``earlier`` to ``later``; null when ``later`` is a date sent without its
    time (00:00:00) on the day of ``earlier`` and would come out negative only for that reason
    (the hour is unknown: no delay in hours can be told, and none is negative), or when both are
    in the hour repeated as the clocks go back and come out negative (their order is unknown)."""
    return (f"CASE WHEN {later} < {earlier} AND {later} = date_trunc('day', {later}) "
            f"AND CAST({later} AS DATE) >= CAST({earlier} AS DATE) THEN NULL "
            f"WHEN {later} < {earlier} AND {repeated_hour_sql(later)} AND {repeated_hour_sql(earlier)} THEN NULL "
            f"ELSE date_diff('minute', {earlier}, {later}) END")


def fct_summary(con: duckdb.DuckDBPyConnection, src: Sources, departements: list[str],
                covid_loincs: list[str], now: datetime, reference: list[str] | None = None) -> pl.DataFrame:
    """One row of whole-table measures of marts.fct_lab_results (keys, ranges, reconciliation).

    ``departements``: the SI-DEP geography (results elsewhere are in no geographic count);
    ``reference``: every code of the départements reference (default: ``departements``)."""
    fct = src.rel(cat.FCT_LAB_RESULTS)
    types = src.types(con, cat.FCT_LAB_RESULTS)
    # the reference lists as one-column relations: DuckDB probes a hash table for each row, where a
    # literal IN list of 101 départements costs a comparison per value and row (twice the scan)
    def one_column(codes: list[str]) -> str:
        return f"(SELECT unnest([{', '.join(sql_literal(d) for d in codes) or 'NULL'}]))"
    deps = one_column(departements)
    known = one_column(departements if reference is None else reference)
    versions_ok = {"version_key", "superseded_by", "link_key"} <= set(types)
    inconsistent = f"{_versions_inconsistent(con, fct)}::BIGINT" if versions_ok else "0::BIGINT"
    # the keys are counted apart (key_duplicates: per-file bitmaps), the rest in one scan below; the
    # key is (file_id, result_no): the results of a one-line CDA document, or of a CDA embedded in
    # one HL7 segment, share their line (docs/formats.md; QA: the gate blocked such files)
    n_key_duplicates = key_duplicates(con, fct, ["file_id", "result_no"], types)
    stg_total = sum(f_n for f_n in rows_per_partition(con, src, cat.STG_RESULTS)["n"].to_list())
    loincs = f"(SELECT unnest([{', '.join(sql_literal(c) for c in covid_loincs) or 'NULL'}]))"
    # the row-level conditions on what is published (current rows: a version a correction replaced
    # is history, and QA saw a lab's corrected birth date keep blocking every export); each failing
    # one is located by ``_where`` (file and line, never a value)
    # in the future: later than the row checks' limit (UTC now + 14 h, the latest local time
    # anywhere: quality.clock.latest_local_time, whatever the host's zone) plus a day
    future = latest_local_time(now) + timedelta(days=1)
    now_sql = f"{sql_literal(future.isoformat(sep=' '))}::TIMESTAMP"
    current = {
        "n_collected_in_future": f"collected_at > {now_sql}",
        "n_validated_before_collected": before_collection_sql("validated_at"),
        "n_received_before_collected": before_collection_sql("received_at"),
        "n_age_out_of_range": "(age < 0 OR age > 125)",
        "n_dep_not_in_reference": f"dep IS NOT NULL AND dep NOT IN {known}",
        "n_dep_outside_sidep": f"dep IS NOT NULL AND dep NOT IN {deps}",
    }
    if versions_ok:  # a lab giving one request number to several patients (transforms/versions.py)
        # grouped on 64-bit hashes, not on the key strings: the aggregate's table holds integers
        # (5 M current results: about 0.1 GB instead of 0.8 GB, the gate's memory peak); two persons'
        # keys colliding would hide one shared request, at odds of about 1 in 10^19
        person = "coalesce(link_key, person_key)"
        current["n_requests_shared_by_persons"] = f"""hash(version_key) IN (
            SELECT hash(version_key) FROM {fct} WHERE is_current GROUP BY 1
            HAVING min(CASE WHEN {person} IS NOT NULL THEN hash({person}) END)
                   IS DISTINCT FROM max(CASE WHEN {person} IS NOT NULL THEN hash({person}) END))"""
    everywhere = {
        "n_person_key_null": "person_key IS NULL",
        # a late correction (validated over a year after its collection) that found no result of
        # its collection day to correct: not current, its date may be a mistyped year (transforms/
        # versions.py, QA regr F1); a late deletion that deleted nothing is n_deletions_unmatched's
        "n_corrections_unmatched": "result_status = 'C' AND superseded_by IS NULL AND NOT is_current",
        # a deletion may come without a collection date (quality/schemas.py): it is never current
        "n_collected_null": "result_status IS DISTINCT FROM 'D' AND (collected_at IS NULL OR collected_date IS NULL)",
    }
    # a deletion that deleted nothing (transforms/versions.py: no result it could name, or several
    # for a deletion without a date): the head of its own result, replacing no version other than
    # deletions (a warning: the result it meant may still be counted). Counted by a query of its
    # own, which reads the few deletions only (in the scan below it cost a key string per row)
    unmatched = f"""result_status = 'D' AND superseded_by IS NULL
        AND (file_id || ':' || result_no) NOT IN (
            SELECT superseded_by FROM {fct}
            WHERE superseded_by IS NOT NULL AND result_status IS DISTINCT FROM 'D')"""
    n_unmatched = _one(con, f"SELECT count(*) FROM {fct} WHERE {unmatched}")[0] if versions_ok else 0
    # a correction or deletion that moved a result to another collection day (or replaced another
    # day's result: transforms/versions.py, QA regr2 F1): the head of a result whose versions hold
    # several collection days and a C or D, counted over the few replaced rows (a warning)
    moved = f"""(file_id || ':' || result_no) IN (
        SELECT head FROM (
            SELECT superseded_by AS head, collected_date, result_status FROM {fct} WHERE superseded_by IS NOT NULL
            UNION ALL
            SELECT file_id || ':' || result_no, collected_date, result_status FROM {fct}
            WHERE (file_id || ':' || result_no) IN (SELECT superseded_by FROM {fct} WHERE superseded_by IS NOT NULL))
        GROUP BY head HAVING count(DISTINCT collected_date) > 1 AND bool_or(result_status IN ('C', 'D')))"""
    n_moved = _one(con, f"SELECT count(*) FROM {fct} WHERE {moved}")[0] if versions_ok else 0
    conditions = everywhere | {k: f"is_current AND {c}" for k, c in current.items()}
    counts = ",\n               ".join(f"count(*) FILTER (WHERE {c}) AS {k}" for k, c in conditions.items())
    row = frame(con, f"""
        SELECT count(*) AS n_rows,
               {n_key_duplicates}::BIGINT AS n_key_duplicates,
               count(*) FILTER (WHERE is_current) AS n_current,
               {counts},
               coalesce(avg(CASE WHEN dep IS NULL THEN 1.0 ELSE 0.0 END), 0.0) AS share_dep_unknown,
               coalesce(avg(CASE WHEN loinc_code IS NOT NULL THEN 1.0 ELSE 0.0 END), 0.0) AS share_mapped,
               count(*) FILTER (WHERE is_current AND loinc_code IN {loincs}
                                AND result_class IN ('POS', 'NEG')
                                AND result_status IS DISTINCT FROM 'X') AS n_covid_results_usable,
               {inconsistent} AS n_versions_inconsistent,
               {int(n_unmatched)}::BIGINT AS n_deletions_unmatched,
               {int(n_moved)}::BIGINT AS n_versions_moved_day,
               max(collected_date) AS newest_collection
        FROM {fct}""")
    failing = {k: c for k, c in conditions.items() if row[k][0]}
    if n_unmatched:
        failing["n_deletions_unmatched"] = unmatched
    if n_moved:
        failing["n_versions_moved_day"] = moved
    row = row.with_columns(where=pl.lit(json.dumps(_where(con, src, fct, failing)), pl.Utf8))
    newest = row["newest_collection"][0]
    return row.with_columns(
        n_staging_rows_missing=pl.lit(stg_total, pl.Int64) - pl.col("n_rows"),
        days_since_newest_collection=pl.lit((now.date() - newest).days if newest else None, pl.Int64),
    )


def _where(con: duckdb.DuckDBPyConnection, src: Sources, fct: str, conditions: dict[str, str],
           limit: int = 3) -> dict[str, str]:
    """For each condition: where its first rows are, as ``labo_x file 3f2a... line 4, ...`` (the
    lab, the file's content id and the line; never a value, nor the landing file's name, which a lab
    may have made of the patient's and which quality.expectation_results would show analysts:
    quality.file_log gives the name from the file id)."""
    out = {}
    for name, cond in conditions.items():
        rows = con.execute(f"""
            SELECT source, file_id, line_no FROM {fct} WHERE {cond}
            ORDER BY file_id, line_no LIMIT {limit}""").fetchall()
        out[name] = ", ".join(f"{source} file {file_id} line {line}" for source, file_id, line in rows)
    return out


def _versions_inconsistent(con: duckdb.DuckDBPyConnection, fct: str) -> str:
    """SQL (aggregates of the summary's scan plus one join over the few replaced rows) counting the
    rows whose version flags contradict each other: a replaced version that does not name a head
    (a row replaced by nothing) of its own version key, a head neither current nor a deletion, a
    current row that names a replacement (transforms/versions.py)."""
    dangling = _one(con, f"""
        WITH sup AS (SELECT version_key, split_part(superseded_by, ':', 1) AS f,
                            TRY_CAST(split_part(superseded_by, ':', 2) AS BIGINT) AS n
                     FROM {fct} WHERE superseded_by IS NOT NULL AND NOT is_current)
        SELECT count(*) FROM sup LEFT JOIN (
            SELECT file_id, result_no, version_key, superseded_by FROM {fct}
            WHERE file_id IN (SELECT DISTINCT f FROM sup)) h ON h.file_id = sup.f AND h.result_no = sup.n
        WHERE h.file_id IS NULL OR h.superseded_by IS NOT NULL OR h.version_key IS DISTINCT FROM sup.version_key""")[0]
    # a head that is not current is a deletion, or a late correction that corrected nothing
    return (f"({int(dangling)} + count(*) FILTER (WHERE superseded_by IS NULL AND NOT is_current "
            f"AND result_status IS DISTINCT FROM 'D' AND NOT {late_replacement_sql()}) "
            "+ count(*) FILTER (WHERE is_current AND superseded_by IS NOT NULL))")


FCT_DOMAIN_COLUMNS = ("sex", "cl_age90", "result_status", "mapping_status", "result_class",
                      "conversion_status", "is_current")


def fct_domains(con: duckdb.DuckDBPyConnection, src: Sources) -> pl.DataFrame:
    """The distinct combinations of the categorical columns of fct_lab_results, with counts
    (bounded by the product of small vocabularies)."""
    cols = ", ".join(f'"{c}"' for c in FCT_DOMAIN_COLUMNS)
    # equal counts in the order of the values, so that the frame (and the examples of unexpected
    # values GX reports) is the same from run to run
    return frame(con, f"SELECT {cols}, count(*) AS n FROM {src.rel(cat.FCT_LAB_RESULTS)} "
                    f"GROUP BY ALL ORDER BY n DESC, {cols}")


def lab_day(con: duckdb.DuckDBPyConnection, src: Sources, since: date | None = None) -> pl.DataFrame:
    """Volumes and delays per lab and collection day (delays in hours, quantiles per day; the
    validation delay of first versions only, not of corrections and deletions)."""
    # a deletion without a collection date (quality/schemas.py) belongs to no day
    where = (f"WHERE collected_date >= {sql_literal(since.isoformat())}::DATE" if since
             else "WHERE collected_date IS NOT NULL")
    return frame(con, f"""
        WITH r AS (
            SELECT source, collected_date, loinc_code,
                   {delay_minutes_sql("collected_at", "received_at")} / 60.0 AS h_reception,
                   -- a correction or deletion is validated when it is made, days later by nature (QA:
                   -- ordinary corrections raised the validation-delay warning)
                   CASE WHEN result_status IN ('C', 'D') THEN NULL
                        ELSE {delay_minutes_sql("received_at", "validated_at")} / 60.0 END AS h_validation
            FROM {src.rel(cat.FCT_LAB_RESULTS)} {where}
        )
        SELECT source, collected_date,
               count(*) AS n_results,
               count(*) FILTER (WHERE loinc_code IS NOT NULL) AS n_mapped,
               count(*) FILTER (WHERE loinc_code IS NOT NULL) / count(*) AS share_mapped,
               quantile_cont(h_reception, 0.5) AS reception_h_p50,
               quantile_cont(h_reception, 0.9) AS reception_h_p90,
               quantile_cont(h_validation, 0.5) AS validation_h_p50,
               quantile_cont(h_validation, 0.9) AS validation_h_p90,
               count(*) FILTER (WHERE h_reception < 0 OR h_validation < 0) AS n_negative_delays
        FROM r GROUP BY 1, 2 ORDER BY 1, 2""")


def lab_delays(con: duckdb.DuckDBPyConnection, src: Sources, since: date | None = None) -> pl.DataFrame:
    """Per lab: quantiles (p10, p50, p90) of collection -> reception -> validation -> delivery
    (delivery = when biolake registered the file), in hours; reception to validation of first
    versions only (a correction is validated when it is made)."""
    where = f"WHERE f.collected_date >= {sql_literal(since.isoformat())}::DATE" if since else ""
    legs = {
        "collection_to_reception": delay_minutes_sql("f.collected_at", "f.received_at"),
        "reception_to_validation": "CASE WHEN f.result_status IN ('C', 'D') THEN NULL "
                                   f"ELSE {delay_minutes_sql('f.received_at', 'f.validated_at')} END",
        "validation_to_delivery": "date_diff('minute', f.validated_at, l.registered_at)",
    }
    parts = []
    for leg, expr in legs.items():
        parts.append(f"""
            SELECT f.source, {sql_literal(leg)} AS leg, count({expr}) AS n,
                   quantile_cont({expr} / 60.0, 0.1) AS h_p10,
                   quantile_cont({expr} / 60.0, 0.5) AS h_p50,
                   quantile_cont({expr} / 60.0, 0.9) AS h_p90
            FROM {src.rel(cat.FCT_LAB_RESULTS)} f
            LEFT JOIN (SELECT file_id, min(registered_at) AS registered_at FROM {src.rel(cat.FILE_LOG)}
                       WHERE status = 'loaded' GROUP BY 1) l USING (file_id)
            {where} GROUP BY 1""")
    return frame(con, " UNION ALL ".join(parts) + " ORDER BY source, leg")


def conversion_by_lab(con: duckdb.DuckDBPyConnection, src: Sources) -> pl.DataFrame:
    """Per lab and unit-conversion outcome: numeric results (qualitative results excluded)."""
    return frame(con, f"""
        SELECT source, conversion_status, count(*) AS n
        FROM {src.rel(cat.FCT_LAB_RESULTS)}
        WHERE conversion_status IS DISTINCT FROM 'not_numeric'
        GROUP BY 1, 2 ORDER BY 1, 2""")


# --------------------------------------------------------------------------------------------
# quarantine
# --------------------------------------------------------------------------------------------
def quarantine_reasons(con: duckdb.DuckDBPyConnection, src: Sources) -> pl.DataFrame:
    """Rows in quarantine per lab, reason and column."""
    return frame(con, f"""
        SELECT source, reason_code, "column", count(*) AS n_rows
        FROM {src.rel(cat.QUARANTINE)} GROUP BY ALL ORDER BY n_rows DESC, source, reason_code""")


CUT_LAST_LINE = "truncated delivery"  # the start of the quarantine detail of a CSV file's cut last line


def cut_last_lines(con: duckdb.DuckDBPyConnection, src: Sources, last_files: int) -> pl.DataFrame:
    """Per lab with CSV files: among its ``last_files`` most recent loaded CSV files, how many, and
    how many whose last line was quarantined as a truncated delivery (transforms/parsers/csv_extract:
    a last line without its line break). ``systematic`` is 1 when there are at least two and every
    one ended so: a lab whose export omits the final line break loses its last line at every file."""
    return frame(con, f"""
        WITH recent AS (
            SELECT file_id, source FROM (
                SELECT file_id, source,
                       row_number() OVER (PARTITION BY source ORDER BY file_seq DESC) AS k
                FROM {src.rel(cat.FILE_LOG)}
                WHERE status = 'loaded' AND format = 'csv' AND source IS NOT NULL AND source <> '_unknown')
            WHERE k <= {int(last_files)}),
        cut AS (SELECT DISTINCT file_id FROM {src.rel(cat.QUARANTINE)}
                WHERE starts_with(detail, {sql_literal(CUT_LAST_LINE)}))
        SELECT r.source, count(*) AS n_recent_files, count(c.file_id) AS n_ending_cut,
               CAST(count(*) >= 2 AND count(c.file_id) = count(*) AS BIGINT) AS systematic
        FROM recent r LEFT JOIN cut c USING (file_id)
        GROUP BY r.source ORDER BY r.source""")


def flag_counts(con: duckdb.DuckDBPyConnection, src: Sources) -> pl.DataFrame:
    """Current results kept with a data-quality flag (dq_flags), per lab and flag."""
    return frame(con, f"""
        SELECT source, flag, count(*) AS n_results
        FROM (SELECT source, unnest(string_split(dq_flags, ';')) AS flag
              FROM {src.rel(cat.FCT_LAB_RESULTS)} WHERE is_current AND coalesce(dq_flags, '') <> '')
        WHERE flag <> '' GROUP BY ALL ORDER BY n_results DESC, source, flag""")


def unreadable_shares(con: duckdb.DuckDBPyConnection, src: Sources) -> pl.DataFrame:
    """Per lab: its current results, and the share whose sex, or birth date, was sent but could not
    be read (dq_flags SEX_INVALID, BIRTH_DATE_INVALID: kept, without sex or age)."""
    return frame(con, f"""
        SELECT source, count(*) AS n_results,
               count(*) FILTER (WHERE dq_flags LIKE '%SEX_INVALID%') AS n_sex_unreadable,
               count(*) FILTER (WHERE dq_flags LIKE '%BIRTH_DATE_INVALID%') AS n_birth_date_unreadable,
               n_sex_unreadable / count(*) AS share_sex_unreadable,
               n_birth_date_unreadable / count(*) AS share_birth_date_unreadable
        FROM {src.rel(cat.FCT_LAB_RESULTS)} WHERE is_current GROUP BY source ORDER BY source""")


# --------------------------------------------------------------------------------------------
# marts.sidep_daily
# --------------------------------------------------------------------------------------------
def sidep_bounds(con: duckdb.DuckDBPyConnection, src: Sources) -> tuple[date | None, date | None]:
    first, last = _one(con, f"SELECT min(jour), max(jour) FROM {src.rel(cat.SIDEP_DAILY)}")
    return first, last


def sidep_window(con: duckdb.DuckDBPyConnection, src: Sources, days: int) -> pl.DataFrame:
    """The last ``days`` days of marts.sidep_daily, as stored (the mart itself, bounded)."""
    _, last = sidep_bounds(con, src)
    if last is None:
        return cat.SIDEP_DAILY.empty()
    since = last - timedelta(days=days - 1)
    cols = ", ".join(f'"{c.name}"' for c in cat.SIDEP_DAILY.columns)
    return frame(con, f"""SELECT {cols} FROM {src.rel(cat.SIDEP_DAILY)}
                        WHERE jour >= {sql_literal(since.isoformat())}::DATE ORDER BY jour, dep, cl_age90""")


def sidep_summary(con: duckdb.DuckDBPyConnection, src: Sources, departements: list[str]) -> pl.DataFrame:
    """One row of whole-table invariants of marts.sidep_daily (each a count that must be 0)."""
    s = src.rel(cat.SIDEP_DAILY)
    deps = ", ".join(sql_literal(d) for d in departements) or "NULL"
    n_classes = len(AGE_CLASSES)
    return frame(con, f"""
        WITH d AS (SELECT * FROM {s}),
        classes AS (
            SELECT jour, dep,
                   sum(P) FILTER (WHERE cl_age90 <> 0) AS p_classes, sum(T) FILTER (WHERE cl_age90 <> 0) AS t_classes,
                   sum(P) FILTER (WHERE cl_age90 = 0) AS p_all, sum(T) FILTER (WHERE cl_age90 = 0) AS t_all
            FROM d GROUP BY 1, 2)
        SELECT (SELECT count(*) FROM d) AS n_rows,
               (SELECT count(*) - count(DISTINCT (jour, dep, cl_age90)) FROM d) AS n_key_duplicates,
               (SELECT count(*) FROM d WHERE P > T OR P_f > T_f OR P_h > T_h) AS n_positive_above_tested,
               (SELECT count(*) FROM d WHERE least(P_f, P_h, P, T_f, T_h, T) < 0) AS n_negative_counts,
               (SELECT count(*) FROM d WHERE P_f + P_h > P OR T_f + T_h > T) AS n_sex_split_above_total,
               (SELECT count(*) FROM classes WHERE p_classes > p_all OR t_classes > t_all) AS n_age_classes_above_all_ages,
               (SELECT count(*) FROM d WHERE dep NOT IN ({deps})) AS n_dep_not_in_reference,
               (SELECT count(*) FROM d WHERE cl_age90 NOT IN ({", ".join(map(str, AGE_CLASSES))})) AS n_bad_age_class,
               (SELECT CASE WHEN count(*) = 0 THEN 0 ELSE
                   (date_diff('day', min(jour), max(jour)) + 1) * {len(departements)} * {n_classes} - count(*) END
                FROM d) AS n_grid_cells_missing,
               (SELECT coalesce(sum(P), 0)::BIGINT FROM d WHERE cl_age90 = 0) AS p_total,
               (SELECT coalesce(sum(T), 0)::BIGINT FROM d WHERE cl_age90 = 0) AS t_total""")


def population(seeds_dir: Path) -> pl.DataFrame:
    """dep, cl_age90, pop from seeds/reference/population.csv (codes keep their leading zeros)."""
    df = pl.read_csv(Path(seeds_dir) / cat.REF_SEEDS["population"], infer_schema=False)
    return df.select(dep=pl.col("dep_code"), cl_age90=pl.col("cl_age90").cast(pl.Int64),
                     pop=pl.col("pop").cast(pl.Float64))


def departements(seeds_dir: Path, everywhere: bool = False) -> pl.DataFrame:
    """The SI-DEP geography (the 101 départements and the COM with a population, see
    ``indicators.in_geography``) with their name and region; ``everywhere``: every code of the
    reference."""
    from transforms.epi.indicators import in_geography

    df = pl.read_csv(Path(seeds_dir) / cat.REF_SEEDS["departements"], infer_schema=False)
    if not everywhere:
        pop = pl.read_csv(Path(seeds_dir) / cat.REF_SEEDS["population"], infer_schema=False)
        df = in_geography(df, pop)
    return df.select(dep=pl.col("dep_code"), dep_name="dep_name", region_name="region_name",
                     zone="zone").sort("dep")


def sidep_weekly_rates(con: duckdb.DuckDBPyConnection, src: Sources, pop: pl.DataFrame,
                       weeks: int) -> pl.DataFrame:
    """Per ISO week and département (all ages): P, T, population, positivity and incidence per
    100,000 over the last ``weeks`` weeks of marts.sidep_daily."""
    _, last = sidep_bounds(con, src)
    if last is None:
        return pl.DataFrame(schema={"week": pl.Utf8, "dep": pl.Utf8, "P": pl.Int64, "T": pl.Int64,
                                    "pop": pl.Float64, "positivity": pl.Float64, "incidence": pl.Float64})
    since = last - timedelta(days=7 * weeks - 1)
    weekly = frame(con, f"""
        SELECT strftime(jour, '%G-W%V') AS week, dep, sum(P)::BIGINT AS P, sum(T)::BIGINT AS T
        FROM {src.rel(cat.SIDEP_DAILY)}
        WHERE cl_age90 = 0 AND jour >= {sql_literal(since.isoformat())}::DATE
        GROUP BY 1, 2 ORDER BY 1, 2""")
    p = pop.filter(pl.col("cl_age90") == 0).select("dep", "pop")
    return weekly.join(p, on="dep", how="left", maintain_order="left").with_columns(
        positivity=pl.when(pl.col("T") > 0).then(pl.col("P") / pl.col("T")),
        incidence=pl.col("P") / pl.col("pop") * 100_000,
    )


# --------------------------------------------------------------------------------------------
# grain of every analysts' table (declared key, uniqueness, declared columns present)
# --------------------------------------------------------------------------------------------
GRAIN_LAYERS = ("staging", "marts", "quality")


def grain(con: duckdb.DuckDBPyConnection, src: Sources, run_partitions: list[str] | None,
          skip: tuple[str, ...] = ()) -> pl.DataFrame:
    """One row per catalog table of the analysts' layers that has files: rows, key duplicates,
    null key values (marts), declared columns missing from the files, and P > T rows when both exist.

    Tables partitioned per file are checked on the partitions written by this run only
    (``run_partitions``; None = all), so the cost follows the run, not the warehouse; the others
    (marts, aggregates) as a whole.
    """
    rows = []
    for t in cat.TABLES:
        if t.layer not in GRAIN_LAYERS or t.qualified in skip or not t.key:
            continue
        parts = run_partitions if t.partition_by == "file_id" else None
        if not (src.holds(t, parts) if parts is not None else src.has(t)):
            continue
        rel = src.rel(t, parts)
        types = describe(con, rel)
        present = list(types)
        declared = [c.name for c in t.columns]
        missing = [c for c in declared if c not in present]
        key = [k for k in t.key if k in present]
        # null key values are checked in the marts only: elsewhere some key columns are nullable by
        # design (a quarantine row for a whole file has no line number, a whole-line reason no column)
        nulls = (" OR ".join(f'"{k}" IS NULL' for k in key) or "false") if t.layer == "marts" else "false"
        pt = "count(*) FILTER (WHERE P > T)" if {"P", "T"} <= set(present) else "0"
        n, null, p_gt_t = _one(con, f"SELECT count(*), count(*) FILTER (WHERE {nulls}), {pt} FROM {rel}")
        # a key that may be null (quarantine rows of a whole file have no line number) is
        # compared null-safe: count(DISTINCT) would ignore such rows
        dup = key_duplicates(con, rel, key, types)
        rows.append({"table": t.qualified, "layer": t.layer, "key": ",".join(t.key), "n_rows": n,
                     "n_key_duplicates": dup, "n_null_key": null, "missing_columns": ",".join(missing),
                     "n_missing_columns": len(missing), "n_positive_above_tested": p_gt_t,
                     "scope": "this run's partitions" if parts is not None else "whole table"})
    return pl.DataFrame(rows, schema={
        "table": pl.Utf8, "layer": pl.Utf8, "key": pl.Utf8, "n_rows": pl.Int64, "n_key_duplicates": pl.Int64,
        "n_null_key": pl.Int64, "missing_columns": pl.Utf8, "n_missing_columns": pl.Int64,
        "n_positive_above_tested": pl.Int64, "scope": pl.Utf8})
