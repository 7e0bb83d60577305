"""Compaction: small per-file partitions packed into few Parquet files, with every read unchanged.

The store's two rules (warehouse/store.py): a loose folder wins over every pack, and a newer pack
over an older one. Each step of a compaction, and a run killed between two of them, must leave
every partition readable exactly once.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import polars as pl
import pytest

from warehouse import catalog as cat
from warehouse.store import DELETED, Warehouse
from tests.helpers import query

T = cat.QUARANTINE


def rows(fid: str, n: int, detail: str = "d") -> pl.DataFrame:
    return pl.DataFrame({"file_id": [fid] * n, "path": [f"lab/{fid}.csv"] * n, "source": ["lab"] * n,
                         "line_no": list(range(1, n + 1)), "result_no": list(range(1, n + 1)),
                         "reason_code": ["MISSING_VALUE"] * n, "column": ["value"] * n, "detail": [detail] * n},
                        schema=T.schema)


def counts_polars(wh: Warehouse) -> dict[str, int]:
    return dict(wh.read(T).group_by("file_id").len().iter_rows())


def counts_duckdb(wh: Warehouse, partitions=None) -> dict[str, int]:
    with duckdb.connect() as con:
        return dict(con.sql(f"SELECT file_id, count(*) FROM {wh.sql_source(T, partitions)} GROUP BY 1").fetchall())


def every_read(wh: Warehouse) -> dict:
    """What each way of reading the table returns, per partition."""
    parts = {v: sum(df.height for df in wh.parts(T, v)) for v in wh.partitions(T)}
    return {"partitions": wh.partitions(T), "polars": counts_polars(wh), "duckdb": counts_duckdb(wh),
            "parts": {v: n for v, n in parts.items() if n}, "rows": {v: n for v, n in wh.partition_rows(T).items() if n}}


@pytest.fixture
def wh(tmp_path) -> Warehouse:
    wh = Warehouse(tmp_path / "home")
    for i in range(6):
        wh.write_partition(T, f"f{i}", [rows(f"f{i}", i)])  # f0: a part of no row
    wh.write_partition(T, "empty", [])  # a partition with no part at all
    return wh


def test_compaction_packs_small_partitions_and_reads_the_same(wh):
    before = every_read(wh)
    assert before["polars"] == {f"f{i}": i for i in range(1, 6)}
    files_before = len(wh.files(T))
    done = wh.compact(T, min_loose=2)
    assert done["packed"] == 6 and done["packs_written"] == 1
    assert every_read(wh) == before
    assert len(wh.files(T)) == 1 < files_before  # the empty partition is a folder, no file
    assert wh.holds(T, "f0") and not wh.holds(T, "empty") and not wh.holds(T, "nope")
    assert wh.read_partition(T, "f3")["line_no"].to_list() == [1, 2, 3]
    assert wh.partition_columns(T, "f3") == set(T.schema)
    # below the threshold nothing happens
    wh.write_partition(T, "g1", [rows("g1", 2)])
    assert wh.compact(T, min_loose=2)["packs_written"] == 0


def test_a_rewritten_or_deleted_packed_partition_is_read_once(wh):
    wh.compact(T, min_loose=2)
    wh.write_partition(T, "f3", [rows("f3", 7, detail="new")])  # a re-coding, a purge...
    wh.delete_partition(T, "f4")
    assert (wh.partition_dir(T, "f4") / DELETED).exists()  # the pack still lists it: a tombstone
    expected = {"f1": 1, "f2": 2, "f3": 7, "f5": 5}
    assert counts_polars(wh) == expected == counts_duckdb(wh)
    assert counts_duckdb(wh, ["f3", "f4", "f5"]) == {"f3": 7, "f5": 5}
    assert "f4" not in wh.partitions(T) and not wh.holds(T, "f4")
    assert set(wh.read(T, ["f3"])["detail"]) == {"new"}
    # the next compaction rewrites the pack without the stale rows, and drops the tombstone
    done = wh.compact(T, min_loose=100)
    assert done["packs_removed"] == 1 and done["tombstones"] == 1
    assert not wh.partition_dir(T, "f4").exists()
    assert counts_polars(wh) == expected == counts_duckdb(wh)
    assert wh.layout(T).clean and len(wh.files(T)) == 1
    # deleting a partition no pack lists removes its folder
    wh.write_partition(T, "h", [rows("h", 1)])
    wh.delete_partition(T, "h")
    assert not wh.partition_dir(T, "h").exists()


def test_a_compaction_killed_between_its_steps_loses_and_doubles_nothing(wh, tmp_path):
    """The new pack is in place, the loose copies and the old pack are not yet removed (a run
    killed there): every partition is still read once, and the next compaction finishes."""
    wh.compact(T, min_loose=2)
    for v in ("g1", "g2"):
        wh.write_partition(T, v, [rows(v, 3)])
    wh.write_partition(T, "f2", [rows("f2", 9)])
    expected = counts_polars(wh)
    saved = tmp_path / "saved"
    shutil.copytree(wh.table_dir(T), saved)
    wh.compact(T, min_loose=2)
    # put the state back as it was just after the new pack's rename: old pack and loose folders too
    for p in saved.rglob("*"):
        dest = wh.table_dir(T) / p.relative_to(saved)
        if p.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
        elif not dest.exists():
            shutil.copy2(p, dest)
    lay = wh.layout(T)
    assert len(lay.packs) == 2 and {"g1", "g2", "f2"} <= set(lay.loose)
    assert every_read(wh)["polars"] == expected == counts_duckdb(wh)
    wh.compact(T, min_loose=1)
    assert counts_polars(wh) == expected == counts_duckdb(wh)
    assert wh.layout(T).clean and len(wh.layout(T).packs) == 1 and not wh.layout(T).loose.keys() - {"empty"}


def test_partitions_that_cannot_be_packed_stay_loose(tmp_path):
    wh = Warehouse(tmp_path / "home")
    for i in range(3):
        wh.write_partition(T, f"f{i}", [rows(f"f{i}", 2)])
    wh.write_partition(T, "big", [rows("big", 50)])
    stray = tmp_path / "stray"
    stray.mkdir()
    rows("other", 2).write_parquet(stray / "part-00000.parquet")  # rows of another file id
    shutil.rmtree(wh.partition_dir(T, "f2"))
    shutil.copytree(stray, wh.partition_dir(T, "f2"))
    old = wh.partition_dir(T, "old")
    old.mkdir()
    rows("old", 2).drop("detail").write_parquet(old / "part-00000.parquet")  # an earlier format
    done = wh.compact(T, min_loose=1, small_rows=10)
    assert done["packed"] == 2  # f0 and f1
    assert set(wh.layout(T).loose) == {"big", "f2", "old"}
    assert wh.read(T).height == 2 + 2 + 50 + 2 + 2


def test_pack_is_few_files_and_one_row_group_per_many_partitions(tmp_path):
    import pyarrow.parquet as pq

    wh = Warehouse(tmp_path / "home")
    for i in range(200):
        wh.write_partition(T, f"f{i:03d}", [rows(f"f{i:03d}", 10)])
    assert len(wh.files(T)) == 200
    wh.compact(T, min_loose=32, pack_rows=1_000)
    packs = wh.layout(T).packs
    assert len(packs) == 2 and len(wh.files(T)) == 2
    assert all(pq.read_metadata(p.path).num_row_groups == 1 for p in packs)
    assert sum(len(p.rows) for p in packs) == 200 and wh.read(T).height == 2_000


def test_pipeline_on_a_compacted_home_gives_the_same_warehouse(prefect_harness, generated, tmp_path, monkeypatch):
    """Two homes fed the same deliveries in three runs, one compacted after every run, one never:
    every table reads the same, through polars and through the DuckDB views, with far fewer
    Parquet files. The second run's corrections reach files already packed; the purge and the
    re-coding after a mapping change rewrite packed partitions."""
    from flows.pipeline import pipeline
    from flows.privacy import purge_identities
    from flows.steps import Context
    from flows.settings import Settings

    landing = sorted(p.relative_to(generated) for p in (generated / "landing").rglob("*") if p.is_file())
    first, second = landing[::2], landing[1::2]
    homes = {"never": tmp_path / "never", "always": tmp_path / "always"}

    def deliver(home: Path, files) -> None:
        for rel in files:
            (home / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(generated / rel, home / rel)

    def run(name: str) -> dict:
        monkeypatch.setenv("BIOLAKE_COMPACT_MIN_FILES", "0" if name == "never" else "1")
        return pipeline(home=str(homes[name]), reports=False)

    for name, home in homes.items():
        home.mkdir()
        deliver(home, first)
        packed = run(name)["compaction"]
        assert (packed["parquet_files_after"] < packed["parquet_files_before"]) == (name == "always"), packed
        deliver(home, second)
        run(name)
    always = Warehouse(homes["always"])
    assert any(always.layout(cat.FCT_LAB_RESULTS).packs)
    for name, home in homes.items():  # identities purged, then a mapping change re-codes every file
        monkeypatch.setenv("BIOLAKE_COMPACT_MIN_FILES", "0" if name == "never" else "1")
        ctx = Context.create(Settings(home=home), "test-purge")
        assert purge_identities(ctx, 0, delete_landing=False)["files_purged"] > 0
        # no Parquet file keeps an identity: the packs that held purged partitions were rewritten
        identifying = [c.name for c in cat.RAW_RESULTS.columns if c.identifying]
        for f in Warehouse(home).files(cat.RAW_RESULTS):
            ids = pl.read_parquet(f, columns=identifying)
            assert ids.null_count().sum_horizontal().item() == ids.height * len(identifying), f
        assert all(pl.read_parquet(f, columns=["raw_text"])["raw_text"].null_count() == pl.read_parquet(f).height
                   for f in Warehouse(home).files(cat.RAW_REJECTED))
        # the engineers' database reads the raw layer the purge left (QA regr F2: its views named
        # the packs the purge's compaction removed, and raw.results failed until the next run)
        n_raw = sum(pl.scan_parquet(f).select(pl.len()).collect().item() for f in Warehouse(home).files(cat.RAW_RESULTS))
        assert query(home, "SELECT count(*) AS n, count(family_name) AS named FROM raw.results").row(0) == (n_raw, 0)
        query(home, "SELECT count(*) FROM raw.rejected_lines")
        mappings = home / "mappings"
        mappings.mkdir()
        (mappings / "labo_alpha.csv").write_text(
            "local_code,local_label,unit,specimen,loinc_num,valid_from,valid_to\nGB,Leucocytes,G/L,Sang,6690-2,2021-01-01,\n",
            encoding="utf-8")
        again = run(name)
        assert again["files_new"] == 0 and again["incremental"]["fct_files_rewritten"] > 0
    never = Warehouse(homes["never"])
    files = {name: sum(len(Warehouse(h).files(t)) for t in cat.TABLES if t.partition_by == "file_id" or t.file_key)
             for name, h in homes.items()}
    assert files["always"] * 4 < files["never"], files
    compared = 0
    for t in cat.TABLES:
        if t.layer == "ref" or t.qualified in ("quality.run_log", "quality.audit_events",
                                               "quality.expectation_results", "quality.publications",
                                               "quality.epi_revisions"):
            continue  # run ids and times differ between homes
        a, b = never.read(t), always.read(t)
        drop = [c for c in ("ingested_at", "registered_at", "computed_at", "published_at", "run_id") if c in t.schema]
        a, b = a.drop(drop), b.drop(drop)
        assert a.height == b.height, t.qualified
        assert a.sort(a.columns, nulls_last=True).equals(b.sort(b.columns, nulls_last=True)), t.qualified
        compared += a.height > 0
    assert compared >= 10
    for name, home in homes.items():
        with duckdb.connect(str(home / "biolake.duckdb"), read_only=True) as con:
            homes[name] = [con.execute(f"SELECT count(*) FROM {t.qualified}").fetchone()[0]
                           for t in cat.TABLES if t.partition_by == "file_id"]
    assert homes["never"] == homes["always"]


def test_logs_kept_as_a_file_per_value_are_packed_and_a_rewritten_value_wins(tmp_path):
    """quality.file_log is written a row at a time, one file per log id; a log id written again
    (a failed file read again by a later run) replaces its row, packed or not."""
    t = cat.FILE_LOG
    wh = Warehouse(tmp_path / "home")

    def log_row(i: int, status: str) -> pl.DataFrame:
        return pl.DataFrame([{"log_id": f"log{i:03d}", "path": f"lab/{i}.csv", "status": status}],
                            schema={c: t.schema[c] for c in ("log_id", "path", "status")}).with_columns(
            [pl.lit(None, dtype=d).alias(c) for c, d in t.schema.items() if c not in ("log_id", "path", "status")])

    for i in range(40):
        wh.write_partition_file(t, f"log{i:03d}", log_row(i, "failed"))
    assert len(wh.files(t)) == 40
    assert wh.compact(t, min_loose=32)["packed"] == 40
    assert len(wh.files(t)) == 1
    wh.write_partition_file(t, "log007", log_row(7, "loaded"))
    for read in (lambda: wh.read(t), lambda: duckdb.sql(f"SELECT * FROM {wh.sql_source(t)}").pl()):
        got = read()
        assert got.height == 40 and got["log_id"].n_unique() == 40
        assert got.filter(pl.col("log_id") == "log007")["status"].to_list() == ["loaded"]
    wh.compact(t, min_loose=32)  # the stale row's pack is rewritten
    assert wh.layout(t).clean and len(wh.files(t)) == 1  # once it runs, the small loose files go in too
    assert wh.read(t).filter(pl.col("status") == "loaded")["log_id"].to_list() == ["log007"]


def test_an_under_full_pack_is_merged_with_new_partitions_sorted(tmp_path):
    """A pack under half full is rewritten with the next small partitions: every partition reads
    the same, and the new pack is sorted by file id again (reading one skips the others' row groups)."""
    wh = Warehouse(tmp_path / "home")
    for i in range(0, 80, 2):  # even ids first, packed
        wh.write_partition(T, f"f{i:03d}", [rows(f"f{i:03d}", 3)])
    wh.compact(T, min_loose=32)
    for i in range(1, 80, 2):  # odd ids later: they fall between the packed ones
        wh.write_partition(T, f"f{i:03d}", [rows(f"f{i:03d}", 2)])
    before = counts_polars(wh)
    done = wh.compact(T, min_loose=32)
    assert done["packs_written"] == 1 and done["packs_removed"] == 1 and done["packed"] == 40
    [pack] = wh.layout(T).packs
    assert len(pack.rows) == 80
    ids = pl.read_parquet(pack.path, columns=["file_id"])["file_id"]
    assert ids.is_sorted()
    assert counts_polars(wh) == before == counts_duckdb(wh)
    assert [df["line_no"].to_list() for df in wh.parts(T, "f010")] == [[1, 2, 3]]


def test_a_view_built_before_a_rewrite_reads_each_row_once(wh):
    """QA crash F3: a purge killed between rewriting packed partitions (loose, without identities) and
    compacting them left the views of biolake.duckdb reading both copies (raw.results 385,888 rows
    for 300,007): a view over a clean table was a glob. A view names its files: it reads the table
    as it was built, each row once, until the next run or `biolake views` rebuilds it."""
    wh.compact(T, min_loose=2)
    assert wh.layout(T).clean
    pinned = wh.sql_source(T, pinned=True)
    assert "**" not in pinned and "**" in wh.sql_source(T)
    before = counts_duckdb(wh)
    wh.write_partition(T, "f3", [rows("f3", 7, detail="new")])  # the purge's rewrite, then a kill
    with duckdb.connect() as con:
        assert dict(con.sql(f"SELECT file_id, count(*) FROM {pinned} GROUP BY 1").fetchall()) == before
    assert counts_duckdb(wh)["f3"] == 7  # read now, the table holds the rewrite once
