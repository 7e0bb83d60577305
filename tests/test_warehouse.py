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


@pytest.fixture
def both_databases(tmp_path):
    """A warehouse with the ref tables of the shipped seeds and one quarantine partition; both DuckDB
    files built over it."""
    from flows import steps
    from flows.settings import Settings
    from warehouse.analyst import build_analyst_db

    ctx = steps.Context.create(Settings(home=tmp_path / "home"), "test-views")
    steps.load_ref(ctx)
    ctx.wh.write_partition(cat.QUARANTINE, "f1", [quarantine_rows(2)])
    return ctx, build_views(ctx.wh), build_analyst_db(ctx.wh)


def _objects(con) -> set[tuple[str, str, str | None]]:
    return set(con.execute(
        "SELECT schema_name, view_name, comment FROM duckdb_views() WHERE NOT internal "
        "UNION ALL SELECT schema_name, table_name, comment FROM duckdb_tables() WHERE NOT internal").fetchall())


def test_every_view_and_column_of_both_databases_has_a_description(both_databases):
    _, *dbs = both_databases
    for db in dbs:
        con = duckdb.connect(str(db), read_only=True)
        try:
            objects = _objects(con)
            columns = con.execute("SELECT schema_name, table_name, column_name, comment FROM duckdb_columns() "
                                  "WHERE NOT internal").fetchall()
        finally:
            con.close()
        names = {f"{s}.{n}" for s, n, _ in objects}
        assert {"quality.reason_codes"} | {f"ref.{n}" for n in cat.REF_SEEDS} <= names, db.name
        assert len(columns) > 100
        assert [o for o in objects if not (o[2] or "").strip()] == [], db.name
        assert [c for c in columns if not (c[3] or "").strip()] == [], db.name
        comments = {(s, t, c): text for s, t, c, text in columns}
        assert comments["ref", "postal_codes", "multi_dep"] == "true when the postal code spans two départements"


def test_ref_views_follow_the_seeds_typed(both_databases):
    import csv

    ctx, *dbs = both_databases
    assert set(cat.REF_TABLES) == set(cat.REF_SEEDS)
    seeds = {}
    for name, rel in cat.REF_SEEDS.items():
        with (ctx.settings.seeds_dir / rel).open(encoding="utf-8", newline="") as fh:
            seeds[name] = list(csv.DictReader(fh))
        assert [c.name for c in cat.REF_TABLES[name].columns] == list(seeds[name][0]), name
    deps = {r["dep_code"]: r["is_com"] == "yes" for r in seeds["departements"]}
    pcs = {r["postal_code"]: (int(r["n_communes"]), r["multi_dep"] == "yes") for r in seeds["postal_codes"]}
    assert sum(deps.values()) == 8 and sum(m for _, m in pcs.values()) > 0
    for db in dbs:
        con = duckdb.connect(str(db), read_only=True)
        try:
            types = dict(((t, c), d) for t, c, d in con.execute(
                "SELECT table_name, column_name, data_type FROM duckdb_columns() WHERE schema_name = 'ref'").fetchall())
            assert (types["departements", "is_com"], types["postal_codes", "n_communes"],
                    types["postal_codes", "multi_dep"]) == ("BOOLEAN", "INTEGER", "BOOLEAN")
            assert dict(con.execute("SELECT dep_code, is_com FROM ref.departements").fetchall()) == deps
            assert {pc: (n, m) for pc, n, m in con.execute(
                "SELECT postal_code, n_communes, multi_dep FROM ref.postal_codes").fetchall()} == pcs
            assert con.execute("SELECT count(*) FROM ref.population").fetchall() == [(len(seeds["population"]),)]
            # what the marts count, for an analyst to check them from the fact table (QA recompute F4)
            assert (types["mdo_rules", "active"], types["mdo_rules", "episode_days"]) == ("BOOLEAN", "INTEGER")
            assert con.execute("SELECT count(*) FILTER (WHERE active), count(*) FILTER (WHERE NOT active) "
                               "FROM ref.mdo_rules").fetchall() == [(
                sum(r["active"] == "yes" for r in seeds["mdo_rules"]), sum(r["active"] == "no" for r in seeds["mdo_rules"]))]
            assert sorted(con.execute("SELECT disease, loinc_num FROM ref.test_definitions").fetchall()) == sorted(
                (r["disease"], r["loinc_num"]) for r in seeds["test_definitions"])
        finally:
            con.close()
    # the pipeline's own code keeps reading the seeds' text from the Parquet files
    from flows import steps

    assert steps.read_ref(ctx, "departements")["is_com"].unique().sort().to_list() == ["no", "yes"]


def test_a_ref_value_that_is_not_yes_or_no_fails_the_query(both_databases):
    ctx, db, _ = both_databases
    path = ctx.wh.root / "ref" / "departements" / "data.parquet"
    pl.read_parquet(path).with_columns(pl.lit("oui").alias("is_com")).write_parquet(path)
    con = duckdb.connect(str(db), read_only=True)
    try:
        with pytest.raises(duckdb.Error, match="not yes or no"):
            con.execute("SELECT count(*) FROM ref.departements WHERE is_com").fetchall()
    finally:
        con.close()
