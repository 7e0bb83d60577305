"""A tiny run of the pipeline benchmark (bench/run.py) end to end: no timing is asserted, only that
every part runs and the JSON and markdown carry the expected figures."""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timedelta

import pytest

from bench import landing, report
from bench import run as bench_run


def _data_lines(path) -> int:
    return path.read_bytes().count(b"\n") - 1


def test_landing_batches_merge_into_daily_files(tmp_path):
    info = landing.build(tmp_path / "l", 3000, seed=3, batch=1000, progress=lambda _: None)
    root = tmp_path / "l" / "landing"
    files = sorted(root.rglob("*.csv"))
    assert info["files"] == len(files) and info["data_lines"] == sum(_data_lines(p) for p in files)
    # one file per lab and day (plus re-deliveries, byte-identical to the file they repeat)
    assert all(re.fullmatch(rf"{p.parent.name}_\d{{8}}(_renvoi)?\.csv", p.name) for p in files)
    redelivered = [p for p in files if p.stem.endswith("_renvoi")]
    assert redelivered and all(p.read_bytes() == p.with_name(p.name.replace("_renvoi", "")).read_bytes()
                               for p in redelivered)
    # three batches, one header per file, request numbers of later batches renumbered
    text = "".join(p.read_text(encoding="latin-1") for p in files if not p.stem.endswith("_renvoi"))
    assert text.count("FINESS;N_DEMANDE") == len(files) - len(redelivered)
    assert ";ALP01" in text and ";ALP02" in text
    # a second call with the same parameters reuses the landing
    assert landing.build(tmp_path / "l", 3000, seed=3, batch=1000, progress=lambda _: None) == info
    # the period ends before the run's day: no result is quarantined as collected in the future
    collected = set()
    for line in text.splitlines():
        fields = line.split(";")
        try:  # DATE_PRELEVEMENT; the generator also writes unreadable dates, quarantined for that
            collected.add(datetime.strptime(fields[8][:10], "%d/%m/%Y").date())
        except (IndexError, ValueError):
            pass
    assert len(collected) > 14 and max(collected) < date.today()


def test_landing_period_ends_a_week_before_the_run_day():
    today = date(2026, 11, 24)
    start = landing.default_start(10, 7, today=today)
    assert start.weekday() == 0 and start + timedelta(days=70) <= today - timedelta(days=7)
    assert start + timedelta(days=70 + 7) > today - timedelta(days=7)


@pytest.fixture(scope="module")
def bench_result(prefect_harness, tmp_path_factory):
    work = tmp_path_factory.mktemp("bench")
    return work, bench_run.run([4000], work / "work", work / "results", seed=5, batch=4000, days=2, in_process=True)


def test_bench_reports_every_figure(bench_result):
    work, result = bench_result
    (r,) = result["results"]
    redelivered = sum(_data_lines(p) for p in (work / "work" / "n4000" / "landing").rglob("*_renvoi.csv"))
    assert r["rows_in"] == r["landing"]["data_lines"] - redelivered > 3000
    assert r["plain"]["rows_in"] == r["rows_in"] and r["plain"]["fct_rows"] == r["prefect"]["fct_rows"]
    assert r["floor"]["rows"] == r["landing"]["data_lines"]
    assert r["floor"]["seconds"] > 0 and r["pipeline_seconds"] > 0 and r["plain_seconds"] > 0
    assert r["floor_ratio"] == round(r["pipeline_seconds"] / r["floor"]["seconds"], 2)
    others = sum(v for k, v in r["prefect"]["stage_seconds"].items() if k not in report.STAGES)
    assert 0 < r["stages_seconds"] < r["pipeline_seconds"]
    assert r["stages_seconds"] == pytest.approx(r["pipeline_seconds"] - others, abs=0.01)
    assert set(r["rows_per_second"]) == set(report.STAGES) and all(v > 0 for v in r["rows_per_second"].values())
    assert r["peak_rss_bytes"] > 0 and 0 < r["prefect"]["work_seconds"] < r["pipeline_seconds"]
    assert r["orchestration_seconds"] == pytest.approx(r["pipeline_seconds"] - r["prefect"]["work_seconds"], abs=0.01)
    assert r["vs_plain_seconds"] == pytest.approx(r["pipeline_seconds"] - r["plain_seconds"], abs=0.01)
    assert [t["met"] for t in result["targets"]] == [None, None, None]  # 5 M and 20 M were not run
    saved = json.loads((work / "results" / "latest.json").read_text())
    assert saved["results"][0]["n_results"] == 4000 and saved["machine"]["cpus"] >= 1


def test_bench_markdown_and_readme_block(bench_result, tmp_path):
    work, result = bench_result
    md = (work / "results" / "latest.md").read_text()
    assert "| results | landing | floor" in md and "| 4,000 (" in md and "| target | measured | met |" in md
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n## Benchmarks\n\n{report.README_START}\nold\n{report.README_END}\n\nafter\n")
    report.update_readme(readme, report.readme_table(result))
    text = readme.read_text()
    assert "old" not in text and "| 4,000 (" in text and text.endswith("after\n")
