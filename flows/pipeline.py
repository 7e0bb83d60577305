"""The Prefect flow: discover -> ingest -> validate -> transcode (per file) -> publish.

Thin on purpose: each task calls one step of flows/steps.py and passes paths and small dicts,
never DataFrames. The flow records the row accounting of every file and the time of every stage.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict
from datetime import datetime

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE
from prefect.runtime import flow_run

from flows import progress, steps
from flows.settings import Settings


def _ctx(home: str) -> steps.Context:
    settings = Settings(home=home)
    run_id = str(flow_run.get_id() or datetime.now().strftime("local-%Y%m%dT%H%M%S"))
    return steps.Context.create(settings, run_id)


@task(name="discover", cache_policy=NONE)
def discover_task(ctx: steps.Context) -> list[steps.FileTicket]:
    return steps.discover(ctx)


@task(name="ingest", cache_policy=NONE, retries=2, retry_delay_seconds=1, task_run_name="ingest {ticket.path}")
def ingest_task(ctx: steps.Context, ticket: steps.FileTicket) -> dict:
    return steps.ingest(ctx, ticket)


@task(name="validate", cache_policy=NONE, task_run_name="validate {ticket.path}")
def validate_task(ctx: steps.Context, ticket: steps.FileTicket, postal_codes) -> dict:
    return steps.validate(ctx, ticket, postal_codes)


@task(name="transcode", cache_policy=NONE, task_run_name="transcode {file_id}")
def transcode_task(ctx: steps.Context, file_id: str, loinc, mappings) -> dict:
    return steps.transcode(ctx, file_id, loinc, mappings)


@task(name="publish-fct", cache_policy=NONE)
def publish_fct_task(ctx: steps.Context) -> int:
    return steps.publish_fct(ctx)


@task(name="publish-sidep", cache_policy=NONE)
def publish_sidep_task(ctx: steps.Context, refs) -> int:
    return steps.publish_sidep(ctx, refs)


@task(name="publish-quality", cache_policy=NONE)
def publish_quality_task(ctx: steps.Context) -> dict:
    return steps.publish_quality(ctx)


@task(name="refresh-views", cache_policy=NONE)
def refresh_views_task(ctx: steps.Context) -> str:
    return str(steps.refresh_views(ctx))


class _Stage:
    def __init__(self, ctx: steps.Context, name: str):
        self.ctx, self.name = ctx, name

    def __enter__(self):
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        self.ctx.stage_seconds[self.name] = round(
            self.ctx.stage_seconds.get(self.name, 0.0) + time.perf_counter() - self.t0, 3)


@flow(name="biolake-pipeline", log_prints=False)
def pipeline(home: str = "data") -> dict:
    """Process whatever is new in <home>/landing and republish the marts."""
    log = get_run_logger()
    ctx = _ctx(home)
    started = datetime.now()
    ctx.wh.clean_tmp()
    with _Stage(ctx, "reference"):
        refs = steps.load_ref(ctx)
        loinc, mappings, fingerprint = steps.load_terminology(ctx, refs)
    with _Stage(ctx, "discover"):
        tickets = discover_task(ctx)
    new = [t for t in tickets if t.status == "new"]
    log.info("%d new file(s), %d re-delivery(ies)", len(new), len(tickets) - len(new))
    totals: Counter = Counter()
    reasons: Counter = Counter()
    files: list[dict] = []
    for t in tickets:
        if t.status == "duplicate":
            steps.log_file(ctx, t, fmt=None, status="duplicate", detail=f"same content as {t.duplicate_of}")
            totals["files_duplicate"] += 1
    for i, t in enumerate(new, 1):
        progress.report("files", i - 1, len(new))
        with _Stage(ctx, "ingest"):
            got = ingest_task(ctx, t)
        if "failed" in got:
            log.warning("%s: cannot be parsed (%s): %s", t.path, got["failed"], got["detail"])
            steps.quarantine_file_failure(ctx, t, got["failed"], got["detail"])
            files.append(steps.log_file(ctx, t, fmt=None, status="failed", reason_code=got["failed"],
                                        detail=got["detail"]))
            totals["files_failed"] += 1
            reasons[got["failed"]] += 1
            continue
        with _Stage(ctx, "validate"):
            val = validate_task(ctx, t, refs["postal_codes"])
        with _Stage(ctx, "transcode"):
            transcode_task(ctx, t.file_id, loinc, mappings)
        if got["rows_in"] != val["rows_valid"] + val["rows_quarantined"]:
            raise RuntimeError(
                f"{t.path}: row accounting broken: {got['rows_in']} in, {val['rows_valid']} valid, "
                f"{val['rows_quarantined']} quarantined")
        files.append(steps.log_file(ctx, t, fmt=got["format"], status="loaded", rows_in=got["rows_in"],
                                    rows_valid=val["rows_valid"], rows_quarantined=val["rows_quarantined"]))
        totals["files_new"] += 1
        totals["rows_in"] += got["rows_in"]
        totals["rows_valid"] += val["rows_valid"]
        totals["rows_quarantined"] += val["rows_quarantined"]
        for code, n in val["reasons"]:
            reasons[code] += n
    progress.report("files", len(new), len(new))
    if steps.mappings_changed(ctx, fingerprint):
        # a mapping was added or changed since the files were coded: re-code them all (backfill)
        with _Stage(ctx, "transcode"):
            done = {t.file_id for t in new}
            for file_id in ctx.wh.partitions(steps.cat.STG_RESULTS):
                if file_id not in done:
                    transcode_task(ctx, file_id, loinc, mappings)
        steps.save_mappings_fingerprint(ctx, fingerprint)
    with _Stage(ctx, "publish"):
        n_fct = publish_fct_task(ctx)
        n_sidep = publish_sidep_task(ctx, refs)
        quality = publish_quality_task(ctx)
    with _Stage(ctx, "views"):
        db = refresh_views_task(ctx)
    steps.write_run_log(ctx, started, totals)
    summary = {
        "run_id": ctx.run_id, "home": str(ctx.wh.home), "database": db,
        "files_seen": len(tickets), **{k: totals[k] for k in ("files_new", "files_duplicate", "files_failed",
                                                              "rows_in", "rows_valid", "rows_quarantined")},
        "quarantine_reasons": dict(sorted(reasons.items())),
        "mapping_coverage": quality["coverage"], "unmapped_codes": quality["backlog_codes"],
        "marts": {"fct_lab_results": n_fct, "sidep_daily": n_sidep},
        "stage_seconds": dict(ctx.stage_seconds),
        "files": [{k: f[k] for k in ("path", "format", "status", "rows_in", "rows_valid", "rows_quarantined")}
                  for f in files],
    }
    _artifacts(summary)
    return summary


def _artifacts(s: dict) -> None:
    lines = [
        f"# biolake run {s['run_id']}",
        f"- files: {s['files_new']} loaded, {s['files_duplicate']} re-deliveries skipped, {s['files_failed']} failed",
        f"- rows: {s['rows_in']} in = {s['rows_valid']} valid + {s['rows_quarantined']} quarantined",
        f"- unmapped local codes: {s['unmapped_codes']}",
        "", "| stage | seconds |", "|---|---|",
        *[f"| {k} | {v} |" for k, v in s["stage_seconds"].items()],
        "", "| quarantine reason | rows |", "|---|---|",
        *[f"| {k} | {v} |" for k, v in s["quarantine_reasons"].items()],
    ]
    create_markdown_artifact(key="biolake-run-summary", markdown="\n".join(lines), description="Run summary")
    if s["files"]:
        create_table_artifact(key="biolake-files", table=s["files"], description="Files processed in this run")
