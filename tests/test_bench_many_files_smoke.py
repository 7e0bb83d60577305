"""The many-small-files benchmark runs end to end on a tiny landing (no timing asserted)."""

from __future__ import annotations


def test_bench_many_files_smoke(tmp_path, monkeypatch):
    from bench.many_files import run, summary_text

    monkeypatch.setenv("BIOLAKE_COMPACT_MIN_FILES", "4")  # packs the dozen files' partitions
    result = run(12, 30, tmp_path / "home", reports=False, seed=3, out=tmp_path / "out")
    runs = result["runs"]
    assert [runs[k]["files_new"] for k in ("first load", "no-op", "one new file")] == [12, 0, 1]
    assert result["figures"]["files_loaded"] == 12
    # each file leaves a Parquet file in each per-file table; packed, one or two per table
    by_folder = runs["first load"]["warehouse"]["parquet_files_by_folder"]
    per_file = ("raw/results", "raw/rejected_lines", "staging/stg_results", "staging/stg_results_coded",
                "marts/fct_lab_results", "quality/quarantine", "quality/file_log")
    assert all(0 < by_folder[f] <= 2 for f in per_file), by_folder
    assert all(r["quality_gate_ok"] for r in runs.values())
    text = summary_text(result)
    assert "no-op" in text and "one new file" in text and "compact" in text
    assert (tmp_path / "out" / "many_files-latest.json").exists()
