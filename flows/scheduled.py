"""The scheduled flows besides ingestion: publication (SI-DEP indicators and MDO weekly cases), reports, purge.

Each is a thin Prefect flow over the functions of flows/epi.py, flows/quality_gate.py and
flows/reports.py; the ingestion pipeline (flows/pipeline.py) calls the same functions after
publishing, so a scheduled run only redoes what the data changed. Like `biolake run`, each publishes
its Prefect artifacts (flows/artifacts.py): the publication run its summary, the gate, the
publication (or why none was written) and the data-quality report it rebuilds; the reports run its
summary and the links to the reports.
"""

from __future__ import annotations

from datetime import datetime

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE

from flows import steps
from flows.lock import warehouse_lock
from flows.pipeline import _ctx, publish_epi_task


@task(name="quality-gate", cache_policy=NONE)
def quality_gate_task(home: str, file_ids: list[str] | None = None) -> dict:
    from flows.quality_gate import run_quality_gate

    return run_quality_gate(_ctx(home), file_ids=file_ids)


@task(name="export-publication", cache_policy=NONE)
def export_task(home: str, issue_date: str | None = None, diseases: list[str] | None = None) -> dict:
    from flows.epi import export_publication

    ctx = _ctx(home)
    return export_publication(ctx, steps.read_refs(ctx), issue_date=issue_date, diseases=diseases)


@task(name="build-reports", cache_policy=NONE)
def reports_task(home: str, week: str | None = None) -> dict:
    from flows.reports import build_reports

    return build_reports(_ctx(home), week=week)


@task(name="build-data-quality-report", cache_policy=NONE)
def dq_report_task(home: str) -> str:
    """The data-quality and lab-activity report alone (a second or so: DuckDB summaries of the
    warehouse), so that the daily run keeps it fresh for an operator who relies on the schedules."""
    from flows.reports import build_dq

    return str(build_dq(_ctx(home)))


def gated_export(home: str, file_ids: list[str] | None = None, issue_date: str | None = None,
                 diseases: list[str] | None = None) -> dict:
    """Quality gate, then the publication only when no critical expectation failed."""
    from flows.quality_gate import block_reason

    gate = quality_gate_task(home, file_ids)
    reason = block_reason(gate)
    if reason is not None:
        get_run_logger().error(reason)
        return {"gate": gate, "export": None, "blocked": reason}
    return {"gate": gate, "export": export_task(home, issue_date, diseases), "blocked": None}


def _final(result: dict):
    from flows.quality_gate import final_state

    return final_state(result, result["gate"])


@flow(name="biolake-publication")
def publication_flow(home: str = "data", issue_date: str | None = None) -> dict:
    """Epidemiological marts (SI-DEP daily, weekly, régions, France, rates; MDO weekly cases), the
    data-quality gate, then the publication unless the gate blocks it (SI-DEP and MDO files together:
    the MDO files hold the complete ISO weeks), then the data-quality report. Scheduled daily
    (deployment daily-indicators). Publishes its artifacts: run summary, gate, publication (or why
    none was written), suites, links to the data-quality report and the Data Docs."""
    from flows.artifacts import publish_artifacts
    from flows.pipeline import refused

    ctx = _ctx(home)
    refusal = refused(ctx, landing=False)  # an invalid MDO rules table: one line, nothing written
    if refusal is not None:
        return refusal
    with warehouse_lock(ctx.wh.home, timeout=ctx.settings.lock_timeout):
        epi = publish_epi_task(home)
        out = gated_export(home, issue_date=issue_date) | {"epi": epi}
        report_paths = {"data_quality": dq_report_task(home)}
        marts = {"fct_lab_results": steps.count_rows(ctx, steps.cat.FCT_LAB_RESULTS),
                 "sidep_daily": steps.count_rows(ctx, steps.cat.SIDEP_DAILY)}
    summary = {"run_id": ctx.run_id, "home": str(ctx.wh.home), "marts": marts,
               "publication": out["export"], "publication_blocked": out["blocked"], "reports": report_paths,
               "incremental": {"epi_partitions_rewritten": epi.get("partitions_rewritten")}}
    publish_artifacts(summary, report_paths, out["gate"])
    return _final(out | {"reports": report_paths})


@flow(name="biolake-reports")
def reports_flow(home: str = "data", week: str | None = None) -> dict:
    """The weekly epidemiological report and the data-quality report, under the warehouse lock (a run
    rewrites and compacts what they read), with their artifacts: run summary and links (no gate
    artifact: this flow does not run the gate, and the latest gate's stays the latest)."""
    from flows.artifacts import publish_artifacts

    ctx = _ctx(home)
    with warehouse_lock(ctx.wh.home, timeout=ctx.settings.lock_timeout):
        paths = reports_task(home, week)
    publish_artifacts({"run_id": ctx.run_id, "home": str(ctx.wh.home), "reports": paths}, paths, None)
    return paths


@flow(name="biolake-purge-identities")
def purge_flow(home: str = "data", older_than_days: int | None = None) -> dict:
    """Purge identities older than ``older_than_days`` (default: the configured retention delay),
    under the warehouse lock; publishes the counts (never any identity) as an artifact."""
    from prefect.artifacts import create_markdown_artifact
    from prefect.runtime import flow_run

    from flows.lock import warehouse_lock
    from flows.settings import Settings
    from flows.privacy import purge_identities
    from flows.steps import Context

    settings = Settings(home=home)
    ctx = Context.create(settings, str(flow_run.get_id() or f"purge-{datetime.now():%Y%m%dT%H%M%S}"))
    days = older_than_days if older_than_days is not None else getattr(settings, "identity_retention_days", None)
    if days is None:
        raise ValueError("no retention delay: pass older_than_days or set BIOLAKE_IDENTITY_RETENTION_DAYS")
    with warehouse_lock(ctx.wh.home, timeout=getattr(settings, "lock_timeout", 600)):
        res = purge_identities(ctx, days)
    create_markdown_artifact(
        key="biolake-purge", description="Identity purge",
        markdown="\n".join([f"# identity purge ({days} days, before {res['cutoff']})",
                            f"- files purged: {res['files_purged']}", f"- result rows: {res['rows_purged']}",
                            f"- rejected lines redacted: {res['rejected_lines_redacted']}",
                            f"- landing files deleted: {res['landing_files_deleted']}",
                            f"- younger files kept: {res['files_kept']}"]))
    return res
