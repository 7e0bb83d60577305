"""Batches of files per Prefect task, ingest reuse after a crash, fct published by links."""

from __future__ import annotations

import os
import shutil

import duckdb
import polars as pl
import pytest

from flows import process, steps
from flows.settings import Settings
from warehouse import catalog as cat


def ticket(i: int, size: int) -> steps.FileTicket:
    return steps.FileTicket(f"log{i}", f"lab/f{i:03d}.csv", "lab", f"{i:064x}", f"{i:016x}", i, size, "new")


@pytest.mark.parametrize("sizes,limit,min_batches", [
    ([5] * 20, 12, 1),
    ([1, 50, 1, 1, 30, 2, 2, 2], 10, 1),
    ([5] * 20, 1000, 4),
    ([100], 10, 3),
    ([3, 3, 3], 1000, 10),
])
def test_batches_keep_every_file_once_in_order_and_respect_the_limits(sizes, limit, min_batches):
    tickets = [ticket(i, s) for i, s in enumerate(sizes)]
    groups = process.batches(tickets, limit, min_batches=min_batches)
    assert [t for g in groups for t in g] == tickets  # each once, landing order kept
    assert all(g for g in groups)
    effective = min(limit, -(-sum(sizes) // min_batches))
    for g in groups:  # a batch over the limit is one big file
        assert sum(t.size_bytes for t in g) <= effective or len(g) == 1
    assert len(groups) >= min(min_batches, len(tickets))
    assert process.batches([], limit) == []


def test_batch_label_names_the_first_file_and_the_count():
    assert process.batch_label(["lab/f001.csv"]) == "lab/f001.csv"
    assert process.batch_label(["lab/f001.csv", "lab/f002.csv", "lab/f003.csv"]) == "lab/f001.csv (+2 files)"


def test_batches_of_items_counted_one_each():
    ids = [f"f{i}" for i in range(7)]
    assert process.batches(ids, 3, size=lambda _: 1) == [["f0", "f1", "f2"], ["f3", "f4", "f5"], ["f6"]]
    assert [len(g) for g in process.batches(ids, 50, min_batches=2, size=lambda _: 1)] == [4, 3]


def test_an_ingested_file_is_not_parsed_again_while_its_raw_partitions_are_there(fresh_home, monkeypatch):
    ctx = steps.Context.create(Settings(home=fresh_home), "test-run")
    steps.load_ref(ctx)
    t = next(t for t in steps.discover(ctx) if t.status == "new")
    assert steps.ingested(ctx, t) is None
    got = steps.ingest(ctx, t)
    assert got["rows_in"] > 0
    assert steps.ingested(ctx, t) == got

    def no_parse(*a, **k):
        raise AssertionError("parsed again")

    # the pipeline's per-file step takes the earlier ingest and goes on with validation
    monkeypatch.setattr(steps, "ingest", no_parse)
    loinc, mappings, _ = steps.load_terminology(ctx, None)
    work = process.Work(steps.read_ref(ctx, "postal_codes"), loinc, mappings)
    res = process.process_file(ctx, t, work)
    assert res["status"] == "loaded" and res["rows_in"] == got["rows_in"]
    monkeypatch.undo()

    # another content under the same id, another parser version, or a lost partition: parse again
    other = steps.FileTicket(**{**t.__dict__, "sha256": "0" * 64})
    assert steps.ingested(ctx, other) is None
    monkeypatch.setattr(steps, "PARSER_VERSION", "test-next")
    assert steps.ingested(ctx, t) is None
    monkeypatch.undo()
    ctx.wh.delete_partition(cat.RAW_RESULTS, t.file_id)
    assert steps.ingested(ctx, t) is None


def test_fct_flags_equal_a_window_over_every_version_and_unchanged_files_are_links(prefect_harness, generated,
                                                                                   tmp_path, monkeypatch):
    """The publication settles the version flags from exceptions only: check it against the plain
    definition (a window over every coded row), and that files without a correction were linked,
    not rewritten (compaction off: it packs the partitions, links and all, at the end of the run)."""
    from flows.pipeline import pipeline

    home = tmp_path / "home"
    shutil.copytree(generated, home)
    monkeypatch.setenv("BIOLAKE_COMPACT_MIN_FILES", "0")
    pipeline(home=str(home), reports=False)
    wh = steps.Context.create(Settings(home=home), "check").wh
    coded = wh.glob(cat.STG_RESULTS_CODED)
    con = duckdb.connect()
    want = con.sql(f"""
        SELECT file_id, result_no,
               (file_id || ':' || result_no = first_value(file_id || ':' || result_no) OVER w
                AND first_value(result_status) OVER w IS DISTINCT FROM 'D') AS is_current,
               CASE WHEN file_id || ':' || result_no <> first_value(file_id || ':' || result_no) OVER w
                    THEN first_value(file_id || ':' || result_no) OVER w END AS superseded_by
        FROM (SELECT *, CASE WHEN validated_at IS NOT NULL THEN validated_at
                             WHEN result_status IN ('C', 'D') THEN greatest(
                                 max(validated_at) OVER d,
                                 max(validated_at) FILTER (WHERE result_status = 'F') OVER k)
                             WHEN result_status = 'F' THEN
                                 max(validated_at) FILTER (WHERE result_status NOT IN ('C', 'D')) OVER d
                             ELSE max(validated_at) OVER d END AS placed_at,
                        validated_at IS NULL AND result_status IN ('C', 'D') AS late
              FROM read_parquet('{coded}', hive_partitioning = false)
              WINDOW k AS (PARTITION BY source, request_key, coalesce(local_code, loinc_code_src, ''),
                           coalesce(specimen, '')),
                     d AS (k ORDER BY file_seq))
        WINDOW w AS (PARTITION BY source, request_key, coalesce(local_code, loinc_code_src, ''),
                     coalesce(specimen, '')
                     ORDER BY placed_at DESC NULLS LAST, late DESC, file_seq DESC, result_no DESC)""").pl()
    got = wh.read(cat.FCT_LAB_RESULTS).select("file_id", "result_no", "is_current", "superseded_by")
    key = ["file_id", "result_no"]
    assert got.sort(key).equals(want.sort(key))
    assert (~got["is_current"]).sum() > 0  # the generated data has corrections and deletions

    corrected = set(want.join(wh.read(cat.STG_RESULTS_CODED).select(*key, "is_current", "superseded_by"), on=key)
                    .filter((pl.col("is_current") != pl.col("is_current_right")) | pl.col("superseded_by").is_not_null())
                    ["file_id"].unique().to_list())
    linked = rewritten = 0
    for fid in wh.partitions(cat.FCT_LAB_RESULTS):
        pairs = list(zip(wh.files_of(cat.FCT_LAB_RESULTS, fid), wh.files_of(cat.STG_RESULTS_CODED, fid)))
        same = all(os.path.samefile(a, b) for a, b in pairs)
        assert same == (fid not in corrected), fid
        linked += same
        rewritten += not same
    assert linked > 0 and rewritten > 0



def test_a_version_without_validation_time_comes_after_those_delivered_before_it(tmp_path):
    """QA: a deletion (D) sent later without a validation time never replaced the positive it
    deleted (NULLS LAST); an undated version delivered first still loses to a dated later one."""
    from tests.epi_support import run_steps
    from tests.helpers import HEADER, line, with_request_ids

    def covid(req, status, validated, value="Positif"):
        return line(N_DEMANDE=req, CODE_ANALYSE="COVPCR", LIBELLE_ANALYSE="SARS-CoV-2 RT-PCR", RESULTAT=value,
                    UNITE="", VALEURS_REFERENCE="", STATUT=status, DATE_VALIDATION=validated)

    landing = tmp_path / "home" / "landing" / "labo_alpha"
    landing.mkdir(parents=True)
    (landing / "a_first.csv").write_text("\n".join(
        [HEADER, covid("Q1", "F", "02/11/2026 18:00"), covid("Q2", "F", "")]) + "\n", encoding="utf-8")
    (landing / "b_later.csv").write_text("\n".join(
        [HEADER, covid("Q1", "D", "", value=""), covid("Q2", "C", "02/11/2026 19:00", value="Négatif")]) + "\n",
        encoding="utf-8")
    ctx, _ = run_steps(tmp_path / "home")
    fct = with_request_ids(ctx.wh, ctx.wh.read(cat.FCT_LAB_RESULTS).sort("file_seq"))
    current = {(r["request_id"], r["result_status"]) for r in fct.filter("is_current").iter_rows(named=True)}
    assert current == {("Q2", "C")}  # Q1 deleted by its later, undated D; Q2 corrected
    assert fct.filter(pl.col("request_id") == "Q1")["is_current"].to_list() == [False, False]


def test_kept_frames_hold_small_partitions_once_written_and_give_up_on_large_ones(tmp_path):
    from warehouse.store import KeptFrames, Warehouse

    wh = Warehouse(tmp_path)
    t = cat.STG_RESULTS

    def rows(n: int) -> pl.DataFrame:
        return pl.DataFrame({c: [None] * n for c in t.schema}, schema=t.schema)

    small, large, unused = KeptFrames(10), KeptFrames(10), KeptFrames(10)
    assert small.frames is None  # nothing written yet: read the partition
    wh.write_partition(t, "f1", [rows(4), rows(6)], keep=small)
    assert [f.height for f in small.frames] == [4, 6]
    wh.write_partition(t, "f2", [rows(6), rows(5)], keep=large)
    assert large.frames is None  # over the limit: nothing is kept

    # parts: the kept frames without reading the files, else one frame per part file
    os.remove(wh.files_of(t, "f1")[0])
    assert [f.height for f in wh.parts(t, "f1", small)] == [4, 6]
    assert [f.height for f in wh.parts(t, "f1")] == [6]
    assert [f.height for f in wh.parts(t, "f1", unused)] == [6]  # never written to: the files are read
    assert [f.height for f in wh.parts(t, "f2", large)] == [6, 5]


def test_rows_handed_on_in_memory_equal_rows_read_back_from_the_partitions(fresh_home, tmp_path):
    """A file of one parsing chunk goes from ingest to transcode in memory; a file of several is read
    back from its partitions: both give the same staging and coded rows, part by part."""
    outputs = {}
    for chunk_rows in (1000, 500_000):  # the largest generated file has a few thousand rows
        home = tmp_path / f"home-{chunk_rows}"
        shutil.copytree(fresh_home, home)
        ctx = steps.Context.create(Settings(home=home, chunk_rows=chunk_rows), f"run-{chunk_rows}")
        steps.load_ref(ctx)
        t = max((t for t in steps.discover(ctx) if t.status == "new"), key=lambda t: t.size_bytes)
        loinc, mappings, _ = steps.load_terminology(ctx, None)
        work = process.Work(steps.read_ref(ctx, "postal_codes"), loinc, mappings)
        res = process.process_file(ctx, t, work)
        assert res["status"] == "loaded"
        parts = len(ctx.wh.files_of(cat.STG_RESULTS_CODED, t.file_id))
        outputs[chunk_rows] = (parts, ctx.wh.read(cat.STG_RESULTS, [t.file_id]),
                               ctx.wh.read(cat.STG_RESULTS_CODED, [t.file_id]), res)
    (parts_small, stg_small, coded_small, res_small), (parts_big, stg_big, coded_big, res_big) = outputs.values()
    assert parts_small > 1 and parts_big == 1  # the small chunk size did cut the file (read back)
    assert stg_small.height == res_small["rows_valid"] > 0
    assert stg_small.equals(stg_big) and coded_small.equals(coded_big)
    assert (res_small["rows_in"], res_small["rows_quarantined"]) == (res_big["rows_in"], res_big["rows_quarantined"])
