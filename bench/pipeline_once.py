"""Run the biolake pipeline once on a data home and write its timings as JSON (one process per run).

    python -m bench.pipeline_once --home DIR --out timings.json [--plain] [--profile out.prof]

Prefect (default): the embedded Prefect is started first by a trivial flow (timed apart: a
deployment with a running Prefect server does not pay it), then ``flows.pipeline.pipeline(home)``
runs (without its reports: ingest, validate, transcode, publish, views and the quality gate) with
the step functions timed (bench/timers.py): the wall time beyond the timed work is the
orchestration overhead.

``--plain``: the same step functions, in the same order, called directly without Prefect (the new files
in the flow's batches, on as many threads as the flow's task runner has). The
difference of the two wall times also counts the work slowed down by Prefect's API server, which
competes for the same cores.

The parent (bench/run.py) measures this process's peak memory.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def _configure(home: Path) -> None:
    from flows.cli import configure_prefect
    from flows.settings import Settings

    os.environ["BIOLAKE_DEMO"] = "1"  # synthetic data: the built-in pseudonym secret
    configure_prefect(Settings(home=home, demo=True))


def run(home: Path, profile: Path | None = None, configure: bool = True) -> dict:
    """The pipeline under Prefect; ``configure=False`` keeps the caller's Prefect and environment."""
    home = Path(home).resolve()
    if configure:
        _configure(home)
    from prefect import flow

    from bench.timers import WorkTimer
    from flows.pipeline import pipeline
    from flows.quality_gate import summary_of

    @flow(name="biolake-bench-warmup")
    def warmup() -> int:
        return 1

    t0 = time.perf_counter()
    warmup()
    startup = time.perf_counter() - t0

    timer = WorkTimer().install()
    prof = None
    if profile is not None:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    # the reports (weekly PDF/HTML) are not part of the benchmarked pipeline: ingest, validate,
    # transcode, publish (and the quality gate, which always runs)
    kwargs = {"reports": False} if "reports" in inspect.signature(pipeline.fn).parameters else {}
    try:
        t0 = time.perf_counter()
        state = pipeline(home=str(home), return_state=True, **kwargs)
        wall = time.perf_counter() - t0
        summary = summary_of(state)
        if isinstance(summary, BaseException):
            raise summary
    finally:
        if prof is not None:
            prof.disable()
            prof.dump_stats(str(profile))
        timer.uninstall()
    timings = timer.report()
    return {
        "prefect_startup_seconds": round(startup, 3),
        "pipeline_seconds": round(wall, 3),
        "stage_seconds": summary["stage_seconds"],
        "rows_in": summary["rows_in"],
        "rows_valid": summary["rows_valid"],
        "rows_quarantined": summary["rows_quarantined"],
        "files_new": summary["files_new"],
        "files_duplicate": summary["files_duplicate"],
        "files_failed": summary["files_failed"],
        "fct_rows": summary["marts"]["fct_lab_results"],
        **timings,
    }


def run_plain(home: Path) -> dict:
    """The pipeline's work without Prefect: the step functions of flows/steps.py, flows/publish.py,
    flows/epi.py and flows/quality_gate.py, called in the order flows/pipeline.py calls them (a
    mirror of it: parts the code base does not have are skipped)."""
    from datetime import datetime

    from flows import process, steps
    from flows import publish as pub
    from flows.settings import Settings

    home = Path(home).resolve()
    seconds: dict[str, float] = {}

    def add(stage: str, t0: float) -> float:
        now = time.perf_counter()
        seconds[stage] = seconds.get(stage, 0.0) + now - t0
        return now

    t_start = t = time.perf_counter()
    ctx = steps.Context.create(Settings(home=home, demo=True), "bench-plain")
    started = datetime.now()
    ctx.wh.clean_tmp()
    refs = steps.load_ref(ctx)
    loinc, mappings, fingerprint = steps.load_terminology(ctx, refs)
    postal_codes = refs["postal_codes"]
    t = add("reference", t)
    tickets = steps.discover(ctx)
    t = add("discover", t)
    totals = {"rows_in": 0, "rows_valid": 0, "rows_quarantined": 0, "files_new": 0, "files_duplicate": 0,
              "files_failed": 0}
    changed: list[str] = []
    work = process.Work(postal_codes=postal_codes, loinc=loinc, mappings=mappings)
    new = [tk for tk in tickets if tk.status == "new"]
    for tk in tickets:
        if tk.status != "new":
            skipped = process.record_skipped(ctx, tk)
            totals["files_duplicate" if skipped == "duplicate" else "files_failed"] += 1
    # the flow's batches on as many threads as the flow's task runner has (flows/pipeline.py)
    workers = ctx.settings.workers
    groups = process.file_batches(new, ctx.settings)

    def batch(group: list) -> list[dict]:  # like the flow's task: a context of its own
        bctx = steps.Context.create(ctx.settings, ctx.run_id)
        return [process.process_file(bctx, tk, work) for tk in group]

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = [res for done in pool.map(batch, groups) for res in done]
    for res in results:
        for stage, s in res["seconds"].items():
            seconds[stage] = seconds.get(stage, 0.0) + s
        if res["status"] == "failed":
            totals["files_failed"] += 1
            continue
        changed.append(res["ticket"].file_id)
        totals["files_new"] += 1
        totals["rows_in"] += res["rows_in"]
        totals["rows_valid"] += res["rows_valid"]
        totals["rows_quarantined"] += res["rows_quarantined"]
    if steps.mappings_changed(ctx, fingerprint):
        steps.save_mappings_fingerprint(ctx, fingerprint)
    t = time.perf_counter()
    pub.publish_fct(ctx, changed)
    epi = _optional("flows.epi", "publish_epi")
    if epi is not None:
        epi(ctx, steps.read_refs(ctx))
    pub.publish_quality(ctx)
    t = add("publish", t)
    compact = _optional("flows.steps", "compact")  # as the flow does, before the views
    if compact is not None:
        compact(ctx)
        t = add("compact", t)
    steps.refresh_views(ctx)
    analyst_db = _optional("warehouse.analyst", "build_analyst_db")
    if analyst_db is not None:
        analyst_db(ctx.wh)
    t = add("views", t)
    gate = _optional("flows.quality_gate", "run_quality_gate")
    if gate is not None:
        gate(ctx, file_ids=changed)
        t = add("quality gate", t)
    ctx.stage_seconds = {k: round(v, 3) for k, v in seconds.items()}
    steps.write_run_log(ctx, started, totals)
    wall = time.perf_counter() - t_start
    return {"pipeline_seconds": round(wall, 3), "stage_seconds": ctx.stage_seconds, **totals,
            "fct_rows": steps.count_rows(ctx, steps.cat.FCT_LAB_RESULTS)}


def _optional(module: str, name: str):
    import importlib

    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--plain", action="store_true", help="the same steps without Prefect")
    ap.add_argument("--profile", type=Path, default=None, help="write a cProfile of the pipeline run here")
    args = ap.parse_args(argv)
    if args.plain:
        import cProfile

        prof = cProfile.Profile() if args.profile else None
        if prof:
            prof.enable()
        result = run_plain(args.home)
        if prof:
            prof.disable()
            prof.dump_stats(str(args.profile))
    else:
        result = run(args.home, args.profile)
    result["self_peak_rss_bytes"] = self_peak_rss()
    args.out.write_text(json.dumps(result, indent=2))
    return 0


def self_peak_rss() -> int | None:
    """This process's own peak resident memory (VmHWM), which, unlike ``ru_maxrss`` seen by the
    parent, cannot include what the process inherited over fork and exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


if __name__ == "__main__":
    sys.exit(main())
