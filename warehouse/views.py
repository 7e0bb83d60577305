"""The DuckDB database analysts open: one schema per layer, one view per table.

The file ``<home>/biolake.duckdb`` holds no data, only views over the Parquet files. It is rebuilt
in a temporary file and moved into place in one rename, so an analyst holding it open read-only
never blocks a run and never sees a half-built catalog.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import duckdb

from warehouse.catalog import LAYERS, REF_SEEDS, TABLES, Table
from warehouse.store import Warehouse
from quality.reasons import REASONS

DUCKDB_TYPES = {
    "String": "VARCHAR", "Int64": "BIGINT", "Float64": "DOUBLE", "Boolean": "BOOLEAN", "Date": "DATE",
    "Datetime": "TIMESTAMP",
}


def sql_literal(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _empty_select(t: Table) -> str:
    cols = ", ".join(
        f"CAST(NULL AS {DUCKDB_TYPES[type(c.dtype).__name__]}) AS \"{c.name}\"" for c in t.columns
    )
    return f"SELECT {cols} WHERE false"


def _source(wh: Warehouse, t: Table) -> str:
    return f"read_parquet({sql_literal(wh.glob(t))}, union_by_name = true, hive_partitioning = false)"


def view_sql(wh: Warehouse, t: Table, present: set[str] | None = None) -> str:
    """The SELECT of a table's view. With ``present`` (the columns its files hold, see
    :func:`columns_in_files`), a column none of them holds reads as null: raw.results of files
    loaded by an earlier biolake, before value_comparator existed (docs/operations.md)."""
    if not wh.files(t):
        return _empty_select(t)
    cols = ", ".join(
        f'"{c.name}"' if present is None or c.name in present
        else f'CAST(NULL AS {DUCKDB_TYPES[type(c.dtype).__name__]}) AS "{c.name}"' for c in t.columns)
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


def build_views(wh: Warehouse, db_path: Path | None = None) -> Path:
    db_path = Path(db_path or wh.home / "biolake.duckdb")
    tmp = db_path.with_name(f".{db_path.name}.{uuid.uuid4().hex}.tmp")
    con = duckdb.connect(str(tmp))
    try:
        for layer in LAYERS:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {layer}")
        for t in TABLES:
            if t.qualified == "quality.reason_codes":
                continue
            create_over_files(con, wh, t, lambda sql: f"CREATE OR REPLACE VIEW {t.qualified} AS {sql}")
            con.execute(f"COMMENT ON VIEW {t.qualified} IS {sql_literal(t.description)}")
        values = ", ".join(f"({sql_literal(k)}, {sql_literal(v)})" for k, v in REASONS.items())
        con.execute(
            "CREATE OR REPLACE VIEW quality.reason_codes AS "
            f"SELECT * FROM (VALUES {values}) AS r(reason_code, description)"
        )
        for name in REF_SEEDS:
            path = wh.root / "ref" / name / "data.parquet"
            if path.exists():
                con.execute(f"CREATE OR REPLACE VIEW ref.{name} AS SELECT * FROM read_parquet({sql_literal(str(path))})")
        con.execute("CHECKPOINT")
    finally:
        con.close()
    os.replace(tmp, db_path)
    wal = tmp.with_name(tmp.name + ".wal")
    if wal.exists():
        wal.unlink()
    return db_path
