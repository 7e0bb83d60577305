"""The Great Expectations quality gate, its kept results, Data Docs, and the Prefect artifacts.

The pipeline runs once per session (conftest's ``clean_run``); the gate runs on a private copy of
that home so that the shared one stays untouched.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import duckdb
import polars as pl
import pytest

from warehouse import catalog as cat

RUN_ID = "test-gate-run"
_CACHE: dict = {}


def copy_home(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("prefect", "landing", "*.duckdb*"))
    return dst


def context(home: Path, run_id: str = RUN_ID):
    from flows.settings import Settings
    from flows.steps import Context

    return Context.create(Settings(home=home), run_id)


@pytest.fixture(scope="session")
def gated(clean_run, tmp_path_factory):
    """(home, gate, report paths, pipeline summary): the gate and the reports run once on a copy of
    the clean run. Shared with tests/test_reports.py (cached: computed once per session)."""
    if "gated" not in _CACHE:
        from flows.quality_gate import run_quality_gate
        from flows.reports import build_reports

        home = copy_home(clean_run[0], tmp_path_factory.mktemp("gated") / "home")
        ctx = context(home)
        gate = run_quality_gate(ctx)
        paths = build_reports(ctx)
        _CACHE["gated"] = (home, gate, paths, clean_run[1])
    return _CACHE["gated"]


def results(home: Path) -> pl.DataFrame:
    con = duckdb.connect()
    try:
        t = cat.table("quality.expectation_results")
        return con.sql(f"SELECT * FROM read_parquet('{home}/warehouse/{t.layer}/{t.name}/*.parquet')").pl()
    finally:
        con.close()


def test_gate_passes_on_a_clean_run_and_keeps_its_results(gated):
    home, gate, _, _ = gated
    assert gate["ok"], gate["failures"]
    assert gate["failures"] == [] and gate["failed_critical"] == 0
    expected_suites = {"file_accounting", "quarantine_reasons", "fct_lab_results_summary", "fct_lab_results_domains",
                       "lab_day", "sidep_daily", "sidep_daily_summary", "sidep_weekly_rates", "mapping_coverage",
                       "grain"}
    assert expected_suites <= set(gate["suites"])
    stored = results(home).filter(pl.col("run_id") == RUN_ID)  # (the pipeline may have run the gate too)
    assert stored.height == gate["evaluated"] >= 60
    assert set(stored["severity"]) == {"critical", "warning"}
    assert stored.filter(pl.col("critical") & ~pl.col("success")).is_empty()
    # the reconciliation and P <= T expectations are among the critical ones, and they held
    keys = set(zip(stored["suite"], stored["expectation_id"]))
    assert ("file_accounting", "balance_is_zero") in keys
    assert ("sidep_daily", "T_ge_P") in keys
    assert ("sidep_weekly_rates", "positivity_between") in keys
    assert stored.filter(pl.col("suite") == "file_accounting")["element_count"].max() > 10  # one row per file
    # Data Docs: built under the data home, one page per suite of this run
    docs = Path(gate["data_docs"])
    assert docs == home / "reports" / "data_docs" / "index.html" and docs.exists()
    pages = list((home / "reports" / "data_docs" / "validations").rglob("*.html"))
    assert {p.relative_to(home / "reports" / "data_docs" / "validations").parts[0] for p in pages} >= expected_suites
    assert RUN_ID in docs.read_text(encoding="utf-8")


def test_each_suite_is_saved_whole_and_the_datasource_kept(gated):
    """The GX project holds every expectation of each suite (saved in one write, each with its id)
    and one asset per suite in the biolake datasource, kept for the next runs."""
    import json

    import yaml

    from quality.checkpoints import DATASOURCE, _distinct_checks, build_suites, gx_root

    home, gate, _, _ = gated
    for name, counts in gate["suites"].items():
        stored = json.loads((gx_root(home) / "expectations" / f"{name}.json").read_text(encoding="utf-8"))
        assert len(stored["expectations"]) == counts["evaluated"], name
        assert all(e.get("id") for e in stored["expectations"]), name
    config = yaml.safe_load((gx_root(home) / "great_expectations.yml").read_text(encoding="utf-8"))
    assert set(gate["suites"]) <= set(config["fluent_datasources"][DATASOURCE]["assets"])
    # no suite declares the same expectation twice (GX would keep one: the results would lack a row)
    ctx = context(home)
    for s in build_suites(ctx.wh, ctx.settings.seeds_dir, run_id=RUN_ID):
        assert _distinct_checks(s.checks) == s.checks, s.name
        assert len({c.name for c in s.checks}) == len(s.checks), s.name


def test_a_critical_failure_blocks_exports_with_its_reason(gated, tmp_path):
    """Break the warehouse twice, run the gate through `biolake report gate`: exit 1, the reason
    names the failures, the results are kept next to the clean run's."""
    from typer.testing import CliRunner

    from flows.quality_gate import (
        GateBlocked,
        QualityGateFailed,
        block_reason,
        final_state,
        raise_if_blocked,
        summarize,
        summary_of,
    )
    from flows.reports import reports_app

    home = copy_home(gated[0], tmp_path / "home")
    wh = context(home).wh
    # 1. a file whose accounting no longer balances: one valid row more than it holds
    log = wh.read(cat.FILE_LOG)
    victim = log.filter(pl.col("status") == "loaded").sort("path").row(0, named=True)
    wh.write_partition_file(cat.FILE_LOG, victim["log_id"], pl.DataFrame(
        [{**victim, "rows_valid": victim["rows_valid"] + 1}], schema=cat.FILE_LOG.schema))
    # 2. a SI-DEP cell with more positive than tested persons
    daily = wh.read(cat.SIDEP_DAILY)
    last = daily["jour"].max()
    broken = daily.with_columns(P=pl.when((pl.col("jour") == last) & (pl.col("dep") == "75") & (pl.col("cl_age90") == 0))
                                .then(pl.col("T") + 1).otherwise(pl.col("P")))
    wh.write_table(cat.SIDEP_DAILY, broken)

    before = set(results(home)["run_id"])
    res = CliRunner().invoke(reports_app, ["gate", "--home", str(home)])
    assert res.exit_code == 1, res.output
    assert "The data-quality gate failed, so no publication goes out" in res.output
    stored = results(home)
    assert len(set(stored["run_id"]) - before) == 1, "the CLI run kept no result"
    cli_run = (set(stored["run_id"]) - before).pop()
    gate = summarize(stored.filter(pl.col("run_id") == cli_run).drop("run_id", "validated_at").to_dicts())
    assert not gate["ok"]
    text = " | ".join(gate["failures"])
    assert "file_accounting: rows_in = rows_valid + rows_quarantined" in text
    assert victim["path"] in text  # the failing file is named
    assert "sidep_daily" in text and "P <= T" in text
    reason = block_reason(gate)
    assert reason.startswith("The data-quality gate failed, so no publication goes out") and victim["path"] in reason
    with pytest.raises(QualityGateFailed, match="no publication goes out"):
        raise_if_blocked(gate)
    state = final_state({"run_id": "x"}, gate)
    assert state.is_failed() and state.message == reason
    # the summary is kept, inside an exception: Prefect raises a failed state's result when a served
    # deployment's run ends (QA: a dict there gave "TypeError: dict cannot be resolved into an exception")
    assert summary_of(state) == {"run_id": "x"}
    with pytest.raises(GateBlocked, match="no publication goes out") as raised:
        state.result()
    assert str(raised.value) == reason and pickle.loads(pickle.dumps(raised.value)).summary == {"run_id": "x"}
    ok_state = final_state({"run_id": "x"}, {"ok": True})
    assert ok_state.is_completed() and block_reason({"ok": True}) is None

    # `biolake epi export` runs the gate first (QA: it published marts the gate had blocked)
    from flows.cli import app
    from flows.privacy import read_audit

    publication = home / "publication"
    refused = CliRunner().invoke(app, ["epi", "export", "--home", str(home), "--issue-date", "2026-11-20"])
    assert refused.exit_code == 1, refused.output
    assert "no publication goes out" in refused.output and "--ignore-gate" in refused.output
    assert not (publication / "2026-11-20").exists()
    forced = CliRunner().invoke(app, ["epi", "export", "--home", str(home), "--issue-date", "2026-11-20",
                                      "--ignore-gate", "known accounting defect, ticket 42"])
    assert forced.exit_code == 0, forced.output
    assert (publication / "2026-11-20" / "manifest.csv").exists()
    manifest = json.loads((publication / "2026-11-20" / "manifest.json").read_text())
    assert manifest["quality_gate"]["overridden"] and "ticket 42" in manifest["quality_gate"]["why"]
    overridden = read_audit(wh).filter(pl.col("kind") == "gate_overridden")
    assert overridden.height == 1 and "ticket 42" in overridden["details"][0]
    assert victim["path"] in overridden["details"][0]  # what was overridden, kept with the why
    # both runs' results are kept, each in its own file
    bad = stored.filter((pl.col("run_id") == cli_run) & ~pl.col("success") & pl.col("critical"))
    assert {"file_accounting", "sidep_daily", "sidep_daily_summary"} <= set(bad["suite"])
    assert stored.filter(pl.col("run_id") == RUN_ID)["success"].all()
    # the Data Docs' offline list marks the failed suites of the CLI run, the others met
    from quality.data_docs_offline import validation_runs

    docs = home / "reports" / "data_docs"
    listed = {(r["run_name"], r["suite"]): r["success"]
              for r in validation_runs(docs, home / "gx")}
    assert {"file_accounting", "sidep_daily"} <= {s for (run, s), ok in listed.items() if run == cli_run and not ok}
    assert all(listed[(RUN_ID, s)] for (run, s) in listed if run == RUN_ID)
    index = (docs / "index.html").read_text(encoding="utf-8")
    assert index.count("&#10008; failed") == sum(not ok for ok in listed.values()) > 0
    missing = CliRunner().invoke(reports_app, ["gate", "--home", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2


def test_a_landing_file_that_failed_to_load_is_a_warning_naming_it(gated, tmp_path):
    """QA: a lab whose files became gzip archives fed nothing, and the gate passed without a word."""
    from flows.quality_gate import run_quality_gate

    home = copy_home(gated[0], tmp_path / "home")
    files = [{"path": "labo_alpha/labo_alpha_20261110.csv.gz", "status": "failed"},
             {"path": "labo_beta/labo_beta_20261110.csv", "status": "loaded"}]
    gate = run_quality_gate(context(home, "run-with-a-failed-file"), run_files=files)
    assert gate["ok"], gate["failures"]  # a warning: the files that did load are published
    named = [w for w in gate["warnings"] if "landing_files" in w]
    assert len(named) == 1 and "labo_alpha/labo_alpha_20261110.csv.gz" in named[0], gate["warnings"]
    assert "labo_beta" not in named[0]
    clean = run_quality_gate(context(home, "run-without"), run_files=[files[1]])
    assert not [w for w in clean["warnings"] if "landing_files" in w]


def test_a_loaded_file_with_an_invalid_finess_is_a_warning_naming_it(gated, tmp_path):
    """QA: a file with FINESS 440000009 (fails the Luhn check) loaded with no flag or warning. Its rows
    are kept (flagged FINESS_INVALID); the gate of the run that loaded it names it, as a warning."""
    from flows.quality_gate import run_quality_gate

    home = copy_home(gated[0], tmp_path / "home")
    files = [{"path": "labo_alpha/bad_finess.csv", "status": "loaded", "rows_in": 3, "finess_invalid": 2},
             {"path": "labo_beta/labo_beta_20261110.csv", "status": "loaded", "rows_in": 5, "finess_invalid": 0}]
    gate = run_quality_gate(context(home, "run-with-a-bad-finess"), run_files=files)
    assert gate["ok"], gate["failures"]
    named = [w for w in gate["warnings"] if "landing_files" in w and "FINESS" in w]
    assert len(named) == 1, gate["warnings"]
    assert "path=labo_alpha/bad_finess.csv, reason_code=FINESS_INVALID" in named[0] and "labo_beta" not in named[0]


def _log_deliveries(home: Path, lab: str, days_ago: list[float], now) -> None:
    """File-log rows of re-deliveries of ``lab`` registered these many days before ``now`` (as the
    15-minute runs of `biolake serve` register a lab's daily files)."""
    from datetime import timedelta

    wh = context(home).wh
    for i, d in enumerate(days_ago):
        log_id = f"{lab}-{i}"
        row = {c: None for c in cat.FILE_LOG.schema}
        row |= {"log_id": log_id, "path": f"{lab}/{lab}_{i}.csv", "source": lab, "sha256": "0" * 64,
                "file_id": f"{i:016x}", "status": "duplicate", "registered_at": now - timedelta(days=d),
                "run_id": f"earlier-{i}"}
        wh.write_partition_file(cat.FILE_LOG, log_id, pl.DataFrame([row], schema=cat.FILE_LOG.schema))


def test_a_lab_that_delivered_regularly_and_went_silent_is_a_warning_naming_it(gated, tmp_path, monkeypatch):
    """QA N9: "which labs are late?". A lab that sent files on 3 days and nothing for 12 is named, with its
    days; a lab seen on one day only (a back-fill, a new home, the demo: every file registered by one
    run) is not; the threshold is BIOLAKE_LAB_LATE_DAYS."""
    from datetime import datetime

    from flows.quality_gate import run_quality_gate

    home, gate, _, _ = gated
    # the session's run registered every file at once: no lab has a rhythm, no lateness warning
    assert not [w for w in gate["warnings"] if "lab_deliveries" in w], gate["warnings"]
    home = copy_home(home, tmp_path / "home")
    now = datetime.now()
    _log_deliveries(home, "labo_silent", [20, 18, 12.3], now)  # 3 dates at any hour (19.2: 20's date before 04:48)
    _log_deliveries(home, "labo_once", [40], now)
    _log_deliveries(home, "labo_weekly", [14, 7, 0.5], now)
    late = run_quality_gate(context(home, "late-labs"), now=now)
    assert late["ok"], late["failures"]  # a warning, not a blocking failure
    named = [w for w in late["warnings"] if "lab_deliveries" in w]
    assert len(named) == 1, late["warnings"]
    assert "1 of 2 rows unexpected" in named[0] and "source=labo_silent, days_since_last_delivery=12" in named[0]
    assert "labo_once" not in named[0] and "labo_weekly" not in named[0]
    monkeypatch.setenv("BIOLAKE_LAB_LATE_DAYS", "14")
    later = run_quality_gate(context(home, "late-labs-14"), now=now)
    assert not [w for w in later["warnings"] if "lab_deliveries" in w], later["warnings"]
    monkeypatch.setenv("BIOLAKE_LAB_LATE_DAYS", "0")  # never checked
    assert "lab_deliveries" not in run_quality_gate(context(home, "late-labs-0"), now=now)["suites"]


def test_data_docs_read_offline(gated):
    """Every Data Docs page links biolake's offline stylesheet and starts marked offline; the index
    lists every validation result page on disk, with GX's own status, in place of the table its
    CDN scripts would draw; a second pass changes nothing."""
    import json
    import os
    import re

    from quality.data_docs_offline import CSS, MARK, STYLESHEET, make_offline, suite_pages, validation_runs

    home, gate, _, _ = gated
    docs = home / "reports" / "data_docs"
    gx_dir = home / "gx"
    store = gx_dir / "uncommitted" / "validations"
    assert (docs / STYLESHEET).read_text(encoding="utf-8") == CSS
    pages = sorted(docs.rglob("*.html"))
    assert len(pages) > len(gate["suites"])
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert text.count(MARK) == 1, page
        assert re.search(r'<html class="biolake-offline"', text), page
        href = re.search(r'<link rel="stylesheet" href="([^"]+biolake-offline\.css)"', text).group(1)
        assert (page.parent / href).resolve() == (docs / STYLESHEET).resolve(), page
        assert 'if (window.jQuery) document.documentElement.classList.remove("biolake-offline")' in text
    # the index's static list: exactly the result pages on disk, each link resolving, newest run first
    index = (docs / "index.html").read_text(encoding="utf-8")
    listed = re.findall(r'<td><a href="(validations/[^"]+)">([^<]+)</a></td>', index)
    for page in (docs / "validations").rglob("*.html"):  # the link to the suite's page resolves
        suite_link = re.search(r'Expectation Suite:</span> <a href="([^"]+)"', page.read_text(encoding="utf-8"))
        assert (page.parent / suite_link.group(1)).exists(), page
    on_disk = {p.relative_to(docs).as_posix() for p in (docs / "validations").rglob("*.html")}
    assert {href for href, _ in listed} == on_disk and len(listed) == len(on_disk)
    runs = validation_runs(docs, gx_dir)
    assert [(r["page"], r["suite"]) for r in runs] == listed
    assert [r["run_time"] for r in runs] == sorted((r["run_time"] for r in runs), reverse=True)
    mine = {r["suite"]: r for r in runs if r["run_name"] == RUN_ID}
    assert set(mine) == set(gate["suites"])
    for suite, counts in gate["suites"].items():
        stored = json.loads((store / os.path.relpath(docs / mine[suite]["page"], docs / "validations"))
                            .with_suffix(".json").read_text(encoding="utf-8"))
        assert mine[suite]["success"] == stored["success"]
        assert mine[suite]["evaluated"] == counts["evaluated"]
        assert mine[suite]["failed"] == counts["failed"]
    # every suite has its page (each validation page links to it), listed with its size
    suites = suite_pages(docs, gx_dir)
    assert {s["suite"] for s in suites} >= set(gate["suites"])
    for s in suites:
        assert (docs / s["page"]).exists() and f'<a href="{s["page"]}">{s["suite"]}</a>' in index
        if s["suite"] in gate["suites"]:
            assert s["expectations"] == gate["suites"][s["suite"]]["evaluated"]
    assert make_offline(docs, gx_dir) == 0
    assert (docs / "index.html").read_text(encoding="utf-8") == index


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(),
                    reason="Debian's chromium is not installed (apt-get install -y chromium)")
def test_data_docs_index_offline_in_chromium(gated, tmp_path):
    """Chromium with every host name unresolvable (no CDN): the page keeps its offline mark after
    its scripts ran, and the static list of validation results is in the page."""
    import subprocess

    from flows.reports import _chromium_args, chromium

    home = gated[0]
    index = home / "reports" / "data_docs" / "index.html"
    dom = subprocess.run(
        [*_chromium_args(chromium(), str(tmp_path / "profile")), "--host-resolver-rules=MAP * ~NOTFOUND",
         "--dump-dom", index.resolve().as_uri()], check=True, capture_output=True, text=True, timeout=120).stdout
    assert '<html class="biolake-offline">' in dom
    assert dom.count("&#10004; met") + dom.count("✔ met") >= len(gated[1]["suites"])


def test_data_docs_index_tells_warnings_only_from_a_blocking_failure(tmp_path):
    """QA N10: the offline index marked a suite that failed only warnings "failed", like the ones whose
    critical failures blocked the export. Three results as GX stores them: met, warnings only, blocked."""
    import json
    import re

    from quality.data_docs_offline import make_offline

    docs, gx_dir = tmp_path / "reports" / "data_docs", tmp_path / "gx"

    def result(success: bool, severity: str) -> dict:
        return {"success": success, "exception_info": {"raised_exception": False},
                "expectation_config": {"type": "expect_column_values_to_be_between", "severity": severity}}

    cases = {"grain": [result(True, "critical")],
             "lab_day": [result(True, "critical"), result(False, "warning"), result(False, "warning")],
             "file_accounting": [result(False, "critical"), result(False, "warning")]}
    for suite, res in cases.items():
        rel = f"{suite}/run-1/20261101T000000.000000Z/batch"
        doc = {"suite_name": suite, "success": all(r["success"] for r in res), "results": res,
               "meta": {"run_id": {"run_name": "run-1", "run_time": "2026-11-01T00:00:00+00:00"}},
               "statistics": {"evaluated_expectations": len(res),
                              "unsuccessful_expectations": sum(not r["success"] for r in res)}}
        (gx_dir / "uncommitted" / "validations" / rel).parent.mkdir(parents=True)
        (gx_dir / "uncommitted" / "validations" / f"{rel}.json").write_text(json.dumps(doc))
        (docs / "validations" / rel).parent.mkdir(parents=True)
        (docs / "validations" / f"{rel}.html").write_text("<html><head></head><body>result</body></html>")
    (docs / "index.html").write_text('<html><head></head><body><table class="ge-index-page-validation-'
                                     'results-table"></table></body></html>')
    make_offline(docs, gx_dir)
    index = (docs / "index.html").read_text(encoding="utf-8")
    rows = {m.group(3): (m.group(1), m.group(2)) for m in re.finditer(
        r'<tr class="(\w+)"><td>([^<]+)</td>.*?<a href="[^"]+">([^<]+)</a>', index)}
    assert rows == {"grain": ("met", "&#10004; met"),
                    "lab_day": ("warning", "! warnings only"),
                    "file_accounting": ("failed", "&#10008; failed (blocks publication)")}, rows


def test_history_is_pruned_to_a_bounded_number_of_runs(tmp_path):
    from quality.checkpoints import prune_history

    for store in (tmp_path / "gx" / "uncommitted" / "validations", tmp_path / "reports" / "data_docs" / "validations"):
        for i in range(5):
            run = store / "grain" / f"run-{i}" / f"20261101T00000{i}.000000Z"
            run.mkdir(parents=True)
            (run / "batch.json").write_text("{}")
    assert prune_history(tmp_path, keep=2) == 6
    left = sorted(p.name for p in (tmp_path / "gx" / "uncommitted" / "validations" / "grain").iterdir())
    assert left == ["run-3", "run-4"]


def _read_artifacts(keys: list[str]) -> list[dict]:
    """Every version of the artifacts with these keys, newest first, from the harness's API.

    Plain HTTP: the client's read_artifacts sends nulls this server version rejects, and an empty
    task-run filter would drop the artifacts created by a flow outside any task."""
    import httpx
    from prefect.settings import PREFECT_API_URL

    body = {"artifacts": {"key": {"any_": keys}}, "limit": 200, "offset": 0, "sort": "CREATED_DESC"}
    r = httpx.post(f"{PREFECT_API_URL.value()}/artifacts/filter", json=body, timeout=60)
    r.raise_for_status()
    return r.json()


def test_the_gate_and_reports_as_tasks_and_the_artifacts_of_two_runs(gated, prefect_harness, tmp_path):
    """In a flow: the gate and the reports as Prefect tasks, the artifacts under stable keys (one
    version per run), and a blocked run ending Failed with the reason (what the UI shows)."""
    from prefect import flow

    from flows.artifacts import KEYS, publish_artifacts
    from flows.quality_gate import final_state, quality_gate_task, summary_of
    from flows.reports import build_reports_task

    home = copy_home(gated[0], tmp_path / "home")
    runs_before = set(results(home)["run_id"])
    summary = gated[3]
    blocked = {"ok": False, "failures": ["file_accounting: rows_in = rows_valid + rows_quarantined - 1 of 3 rows"],
               "warnings": [], "evaluated": 3, "failed_critical": 1, "failed_warning": 0, "suites": {}}

    @flow(name="artifacts-under-test")
    def run_with(forced_gate: dict | None) -> dict:
        gate = forced_gate or quality_gate_task(str(home))
        paths = build_reports_task(str(home)) if forced_gate is None else gated[2]
        publish_artifacts(summary, paths, gate)
        return final_state(summary, gate)

    first = run_with(None)  # a passing gate: the flow completes and its call returns the summary
    assert first["rows_in"] == summary["rows_in"]
    second = run_with(blocked, return_state=True)
    assert second.is_failed() and "file_accounting" in second.message  # the reason shown in the UI
    kept = summary_of(second)  # how the CLI gets the summary of a blocked run
    assert isinstance(kept, dict) and kept["rows_in"] == summary["rows_in"]
    new_runs = set(results(home)["run_id"]) - runs_before
    assert len(new_runs) == 1 and new_runs.pop() != RUN_ID  # the task kept its results under the flow run id
    paths = {k: str(home / "reports" / f) for k, f in (("weekly", Path(gated[2]["weekly"]).name),
                                                       ("data_quality", "data_quality.html"),
                                                       ("data_docs", "data_docs/index.html"))}
    wanted = [KEYS[k] for k in ("summary", "gate", "files", "counts", "reasons", "coverage", "suites", "weekly",
                                "data_quality", "data_docs")]
    by_key: dict[str, list[dict]] = {}
    for a in _read_artifacts(wanted):  # newest first
        by_key.setdefault(a["key"], []).append(a)
    assert set(wanted) <= set(by_key), set(wanted) - set(by_key)
    assert len(by_key[KEYS["summary"]]) >= 2  # one version per run: the UI keeps the history
    latest_gate = by_key[KEYS["gate"]][0]["data"]
    assert "FAILED" in latest_gate and "file_accounting" in latest_gate
    assert "passed" in by_key[KEYS["gate"]][1]["data"]
    for name in ("weekly", "data_quality", "data_docs"):  # the first run linked its own reports
        assert Path(paths[name]).resolve().as_uri() in by_key[KEYS[name]][1]["data"]
    assert "FAILED" in by_key[KEYS["summary"]][0]["data"]
    for name in ("weekly", "data_quality", "data_docs"):
        link = by_key[KEYS[name]][0]["data"]
        assert Path(gated[2][name]).resolve().as_uri() in link, link
    counts = {r["what"]: r["count"] for r in _table(by_key[KEYS["counts"]][0]["data"])}
    assert counts["rows_in"] == summary["rows_in"] and counts["rows_valid"] == summary["rows_valid"]
    files = _table(by_key[KEYS["files"]][0]["data"])
    assert len(files) == len(summary["files"])


def _table(data) -> list[dict]:
    import json

    return json.loads(data) if isinstance(data, str) else data


def _run_artifacts(state) -> dict[str, str]:
    """{key: data} of the artifacts a flow run created (its final state given)."""
    import httpx
    from prefect.settings import PREFECT_API_URL

    body = {"artifacts": {"flow_run_id": {"any_": [str(state.state_details.flow_run_id)]}}, "limit": 200,
            "offset": 0, "sort": "CREATED_DESC"}
    r = httpx.post(f"{PREFECT_API_URL.value()}/artifacts/filter", json=body, timeout=60)
    r.raise_for_status()
    return {a["key"]: a["data"] for a in r.json()}


def test_the_scheduled_publication_and_reports_runs_publish_their_artifacts(gated, prefect_harness, tmp_path):
    """QA N7: under `biolake serve` the daily publication and the weekly reports runs left no artifact
    (no gate result, no link to the publication), and the data-quality report was a week old. The
    flows the deployments serve, run here under the embedded Prefect, and their artifacts read back."""
    import json
    import os

    from flows.artifacts import KEYS
    from flows.scheduled import publication_flow, reports_flow

    home = copy_home(gated[0], tmp_path / "home")
    dq = home / "reports" / "data_quality.html"
    os.utime(dq, (0, 0))  # as a week-old report
    state = publication_flow(home=str(home), issue_date="2026-11-20", return_state=True)
    assert state.is_completed(), state.message
    got = _run_artifacts(state)
    assert {KEYS[k] for k in ("summary", "gate", "suites", "publication", "data_quality", "data_docs")} <= set(got)
    assert "passed" in got[KEYS["gate"]]
    folder = home / "publication" / "2026-11-20"
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    pub = got[KEYS["publication"]]
    assert pub.startswith("# Publication 2026-11-20") and folder.resolve().as_uri() in pub
    assert (folder / "manifest.json").resolve().as_uri() in pub
    assert {f["file"] for f in manifest["files"]} == {f for f in manifest_names(pub)} and manifest["files"]
    assert any(f["dataset"] == "mdo" for f in manifest["files"])  # SI-DEP and MDO in the daily issue
    assert f"publication 2026-11-20: {len(manifest['files'])} files" in got[KEYS["summary"]]
    assert dq.stat().st_mtime > 0 and str(state.state_details.flow_run_id) in dq.read_text(encoding="utf-8")
    assert dq.resolve().as_uri() in got[KEYS["data_quality"]]

    # blocked: the gate artifact names the failure, the publication artifact says none was written
    wh = context(home).wh
    log = wh.read(cat.FILE_LOG)
    victim = log.filter(pl.col("status") == "loaded").sort("path").row(0, named=True)
    wh.write_partition_file(cat.FILE_LOG, victim["log_id"], pl.DataFrame(
        [{**victim, "rows_valid": victim["rows_valid"] + 1}], schema=cat.FILE_LOG.schema))
    blocked = publication_flow(home=str(home), issue_date="2026-11-21", return_state=True)
    assert blocked.is_failed() and "file_accounting" in blocked.message
    got = _run_artifacts(blocked)
    assert "FAILED" in got[KEYS["gate"]] and victim["path"] in got[KEYS["gate"]]
    not_written = got[KEYS["publication"]]
    assert not_written.startswith("# Publication: not written") and "file_accounting" in not_written
    assert "**not written**" in got[KEYS["summary"]]
    assert not (home / "publication" / "2026-11-21").exists()

    # the weekly reports: links to both reports, and no gate artifact (it does not run the gate)
    weekly = reports_flow(home=str(home), return_state=True)
    assert weekly.is_completed(), weekly.message
    got = _run_artifacts(weekly)
    paths = weekly.result()
    assert {KEYS["summary"], KEYS["weekly"], KEYS["data_quality"]} <= set(got) and KEYS["gate"] not in got
    assert Path(paths["weekly"]).resolve().as_uri() in got[KEYS["weekly"]]
    assert "not run by this flow" in got[KEYS["summary"]]


def manifest_names(markdown: str) -> list[str]:
    """The file names of a publication artifact's table."""
    return [line.split("|")[1].strip() for line in markdown.splitlines()
            if line.startswith("| ") and not line.startswith("| file |")]


def test_a_failed_file_still_in_the_landing_is_named_by_every_gate(gated, clean_run, tmp_path):
    """A failure is logged once, by the run that met the file; its results stay out of every table
    for as long as it stays there. Later gates (a later run's, `biolake report gate`) name it again,
    with its reason, until it is removed or loaded under its name."""
    import gzip

    from typer.testing import CliRunner

    from flows.pipeline import ingest_flow
    from flows.quality_gate import run_quality_gate
    from flows.reports import reports_app

    home = copy_home(gated[0], tmp_path / "home")  # copied without its landing area
    delivered = next(p for p in sorted((clean_run[0] / "landing").iterdir()) if p.is_dir())
    lab = home / "landing" / delivered.name
    lab.mkdir(parents=True)
    broken = lab / "switched_to_gzip.csv.gz"
    broken.write_bytes(gzip.compress(sorted(delivered.iterdir())[0].read_bytes()))
    ran = ingest_flow(home=str(home))
    assert [f["reason_code"] for f in ran["files"] if f["status"] == "failed"] == ["UNPARSEABLE_FILE"]
    shown = f"{lab.name}/{broken.name}"

    def named(gate):
        return [w for w in gate["warnings"] if "landing_files" in w]

    later = run_quality_gate(context(home, "a-later-run"), run_files=[])  # this run met no new file
    assert len(named(later)) == 1 and shown in named(later)[0] and "UNPARSEABLE_FILE" in named(later)[0], later
    assert later["ok"]  # a warning: the files that did load are published
    cli = CliRunner().invoke(reports_app, ["gate", "--home", str(home)])
    assert cli.exit_code == 0 and shown in cli.output, cli.output
    broken.unlink()  # the operator removes it
    assert not named(run_quality_gate(context(home, "after-removal"), run_files=[]))
    # or replaces it by a readable delivery, here one already loaded (QA: a re-delivery left the
    # failure named for ever)
    broken.write_bytes(gzip.compress(b"again"))
    ingest_flow(home=str(home))
    assert named(run_quality_gate(context(home, "failed-again"), run_files=[]))
    broken.write_bytes(sorted(delivered.iterdir())[0].read_bytes())
    assert ingest_flow(home=str(home))["totals"]["files_duplicate"] == 1
    assert not named(run_quality_gate(context(home, "after-redelivery"), run_files=[]))
