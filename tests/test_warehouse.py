"""Parquet storage with atomic swaps, and the DuckDB catalog of views."""

from __future__ import annotations

import duckdb
import polars as pl
import pytest

from warehouse import catalog as cat
from warehouse.store import Warehouse
from warehouse.views import build_views


def quarantine_rows(n, file_id="f1"):
    return pl.DataFrame({"file_id": [file_id] * n, "path": ["lab/x.csv"] * n, "source": ["lab"] * n,
                         "line_no": list(range(2, n + 2)), "result_no": list(range(1, n + 1)), "reason_code": ["NIR_KEY"] * n,
                         "column": ["patient_nir"] * n, "detail": ["x"] * n})


def test_partition_write_replaces_and_leaves_no_temp(tmp_path):
    wh = Warehouse(tmp_path)
    wh.write_partition(cat.QUARANTINE, "f1", [quarantine_rows(3)])
    wh.write_partition(cat.QUARANTINE, "f1", [quarantine_rows(2), quarantine_rows(1)])
    assert wh.read(cat.QUARANTINE).height == 3
    assert wh.partitions(cat.QUARANTINE) == ["f1"]
    assert list(wh.tmp.iterdir()) == []


def test_a_failing_writer_leaves_the_old_partition(tmp_path):
    wh = Warehouse(tmp_path)
    wh.write_partition(cat.QUARANTINE, "f1", [quarantine_rows(3)])

    def broken():
        yield quarantine_rows(1)
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        wh.write_partition(cat.QUARANTINE, "f1", broken())
    assert wh.read(cat.QUARANTINE).height == 3


def test_partition_values_cannot_escape(tmp_path):
    wh = Warehouse(tmp_path)
    for bad in ("../x", ".hidden", ""):
        with pytest.raises(ValueError):
            wh.partition_dir(cat.QUARANTINE, bad)


def test_views_expose_every_table_read_only(tmp_path):
    wh = Warehouse(tmp_path)
    wh.write_partition(cat.QUARANTINE, "f1", [quarantine_rows(4)])
    db = build_views(wh)
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM quality.quarantine").fetchone() == (4,)
        # tables with no file yet are empty views with the declared columns
        cols = [r[0] for r in con.execute("DESCRIBE marts.sidep_daily").fetchall()]
        assert cols == ["jour", "dep", "cl_age90", "P_f", "P_h", "P", "T_f", "T_h", "T"]
        assert con.execute("SELECT count(*) FROM marts.sidep_daily").fetchone() == (0,)
        names = {f"{s}.{n}" for s, n in con.execute(
            "SELECT schema_name, view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
        assert {t.qualified for t in cat.TABLES} <= names
        with pytest.raises(duckdb.Error):
            con.execute("CREATE TABLE marts.x AS SELECT 1")
    finally:
        con.close()


def test_rebuilding_views_while_a_reader_holds_the_file(tmp_path):
    wh = Warehouse(tmp_path)
    db = build_views(wh)
    reader = duckdb.connect(str(db), read_only=True)
    try:
        wh.write_partition(cat.QUARANTINE, "f1", [quarantine_rows(2)])
        build_views(wh)  # must not fail on the reader's lock
    finally:
        reader.close()
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM quality.quarantine").fetchone() == (2,)
    con.close()
