"""The data engineers' DuckDB database: one schema per layer, one view per table.

The file ``<home>/biolake.duckdb`` holds no data, only views over the Parquet files, every view and
column commented from the catalog (analysts get ``analyst.duckdb``, warehouse/analyst.py, built
with the same helpers for the reason codes and the ref tables). It is rebuilt
in a temporary file and moved into place in one rename, so a reader holding it open read-only
never blocks a run and never sees a half-built catalog.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import duckdb

from warehouse.catalog import LAYERS, REASON_CODES, REF_TABLES, TABLES, Table
from warehouse.store import Warehouse, empty_relation
from quality.reasons import REASONS

DUCKDB_TYPES = {
    "String": "VARCHAR", "Int32": "INTEGER", "Int64": "BIGINT", "Float64": "DOUBLE", "Boolean": "BOOLEAN",
    "Date": "DATE", "Datetime": "TIMESTAMP",
}
# how a seed writes a yes/no column (seeds/build_seeds.py): read as BOOLEAN by the ref views
SEED_BOOLEANS = {"yes": True, "no": False}


def sql_literal(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def duckdb_type(c) -> str:
    return DUCKDB_TYPES[type(c.dtype).__name__]


def _source(wh: Warehouse, t: Table) -> str:
    """The table's true rows: its files named (a view outlives the moment it is built: a glob
    would also read partitions rewritten after it, beside their packed copy), or, while a pack holds
    stale rows (between a partition's rewrite and the next compaction, warehouse/store.py), the
    files with those filtered."""
    return wh.sql_source(t, pinned=True)


def view_sql(wh: Warehouse, t: Table, present: set[str] | None = None) -> str:
    """The SELECT of a table's view. With ``present`` (the columns its files hold, see
    :func:`columns_in_files`), a column none of them holds reads as null: raw.results of files
    loaded by an earlier biolake, before value_comparator existed (docs/operations.md)."""
    if not wh.files(t):
        return f"SELECT * FROM {empty_relation(t)}"
    cols = ", ".join(
        f'"{c.name}"' if present is None or c.name in present
        else f'CAST(NULL AS {duckdb_type(c)}) AS "{c.name}"' for c in t.columns)
    return f"SELECT {cols} FROM {_source(wh, t)}"


def columns_in_files(con: duckdb.DuckDBPyConnection, wh: Warehouse, t: Table) -> set[str]:
    return {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {_source(wh, t)}").fetchall()}


def create_over_files(con: duckdb.DuckDBPyConnection, wh: Warehouse, t: Table, statement) -> None:
    """Run ``statement(view_sql)``; when the files lack a column of the table (a binder error: files
    written by an earlier biolake), again with that column read as null. The columns are looked
    up only then, so the usual case binds the files once."""
    try:
        con.execute(statement(view_sql(wh, t)))
    except duckdb.BinderException:
        con.execute(statement(view_sql(wh, t, columns_in_files(con, wh, t))))


def ref_path(wh: Warehouse, name: str) -> Path:
    """The Parquet file of a ref table (flows/steps.load_ref writes it at each run)."""
    return wh.root / "ref" / name / "data.parquet"


def ref_view_sql(wh: Warehouse, t: Table) -> str:
    """The ref table ``t`` (catalog.REF_TABLES) typed as declared. The Parquet file keeps the seed's
    text, which the pipeline's own code reads ('yes'/'no', counts as text): BOOLEAN columns are read
    from yes/no (any other value fails the query rather than turning into NULL), other columns cast."""
    cols = []
    for c in t.columns:
        col = f'"{c.name}"'
        kind = duckdb_type(c)
        if kind == "BOOLEAN":
            whens = " ".join(f"WHEN {col} = {sql_literal(k)} THEN {str(v).lower()}" for k, v in SEED_BOOLEANS.items())
            expr = (f"CASE WHEN {col} IS NULL THEN NULL {whens} "
                    f"ELSE error('ref.{t.name}.{c.name}: not yes or no: ' || {col}) END")
        elif kind == "VARCHAR":
            expr = col
        else:
            expr = f"CAST({col} AS {kind})"
        cols.append(f"{expr} AS {col}")
    return f"SELECT {', '.join(cols)} FROM read_parquet({sql_literal(str(ref_path(wh, t.name)))})"


def comment_on(con: duckdb.DuckDBPyConnection, kind: str, t: Table, columns: list[str] | None = None) -> None:
    """COMMENT ON the view (or table) ``t`` and on its ``columns`` (default: all) from the catalog."""
    described = {c.name: c.description for c in t.columns}
    statements = [f"COMMENT ON {kind} {t.qualified} IS {sql_literal(t.description)}"] + [
        f'COMMENT ON COLUMN {t.qualified}."{name}" IS {sql_literal(described[name])}'
        for name in (columns if columns is not None else list(described))]
    con.execute(";\n".join(statements))  # one call: a call per statement costs more than the statement


def create_reference_views(con: duckdb.DuckDBPyConnection, wh: Warehouse) -> None:
    """quality.reason_codes (from quality/reasons.py) and the ref views whose Parquet file exists,
    with their comments: the same in biolake.duckdb and analyst.duckdb."""
    values = ", ".join(f"({sql_literal(k)}, {sql_literal(v)})" for k, v in REASONS.items())
    names = ", ".join(f'"{c.name}"' for c in REASON_CODES.columns)
    con.execute(f"CREATE OR REPLACE VIEW {REASON_CODES.qualified} AS "
                f"SELECT * FROM (VALUES {values}) AS r({names})")
    comment_on(con, "VIEW", REASON_CODES)
    for name, t in REF_TABLES.items():
        if ref_path(wh, name).exists():
            con.execute(f"CREATE OR REPLACE VIEW {t.qualified} AS {ref_view_sql(wh, t)}")
            comment_on(con, "VIEW", t)


def build_views(wh: Warehouse, db_path: Path | None = None) -> Path:
    db_path = Path(db_path or wh.home / "biolake.duckdb")
    tmp = db_path.with_name(f".{db_path.name}.{uuid.uuid4().hex}.tmp")
    con = duckdb.connect(str(tmp))
    try:
        for layer in LAYERS:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {layer}")
        for t in TABLES:
            if t.qualified == REASON_CODES.qualified:
                continue
            create_over_files(con, wh, t, lambda sql: f"CREATE OR REPLACE VIEW {t.qualified} AS {sql}")
            comment_on(con, "VIEW", t)
        create_reference_views(con, wh)
        con.execute("CHECKPOINT")
    finally:
        con.close()
    os.replace(tmp, db_path)
    wal = tmp.with_name(tmp.name + ".wal")
    if wal.exists():
        wal.unlink()
    return db_path
