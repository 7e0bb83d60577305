"""The data-quality gate: Great Expectations suites run after publish and before exports.

``run_quality_gate(ctx)`` computes the bounded inputs (quality/summaries.py), runs every suite
through its GX checkpoint (quality/checkpoints.py), stores one row per expectation in
``quality.expectation_results`` (one Parquet file per run) and returns::

    {"ok": bool,                 # no critical expectation failed: exports may be published
     "failures": [str, ...],     # one line per failed critical expectation (suite: what - observed)
     "warnings": [str, ...],     # failed warning expectations
     "evaluated": int, "failed_critical": int, "failed_warning": int,
     "suites": {suite: {"success": bool, "evaluated": int, "failed": int}},
     "data_docs": "<home>/reports/data_docs/index.html",
     "results_table": "quality.expectation_results", "seconds": float}

How the flow uses it (flows/pipeline.py)::

    gate = quality_gate_task(home, file_ids=changed)   # a Prefect task: "quality-gate" in the UI
    if gate["ok"]:
        ...publish exports...
    ...build reports, publish artifacts...
    return final_state(summary, gate)        # Completed, or Failed with the reason when blocked

A blocked run ends in a Failed state whose message names the failed expectations, so the reason
is on the flow run in the Prefect UI; the summary is kept as the state's data.
great_expectations is imported only when the gate runs (its import takes seconds).
"""

from __future__ import annotations

import functools
import time
from datetime import datetime
from typing import Any

import polars as pl

from warehouse import catalog as cat

RESULTS_TABLE = "quality.expectation_results"
MAX_REASON_CHARS = 1500


class QualityGateFailed(RuntimeError):
    """Raised by :func:`raise_if_blocked` when a critical expectation failed."""

    def __init__(self, gate: dict):
        self.gate = gate
        super().__init__(block_reason(gate) or "quality gate failed")


def run_quality_gate(ctx, file_ids: list[str] | None = None, now: datetime | None = None,
                     run_files: list[dict] | None = None) -> dict[str, Any]:
    """Run every GX suite on the warehouse of ``ctx`` (a flows.steps.Context) and keep the results.

    ``file_ids``: the files this run loaded (their partitions get the grain check); by default the
    files of the latest run that loaded some. ``run_files``: the landing files this run handled
    (``{"path", "status"}``; a failed one is a warning naming it).
    """
    from quality import checkpoints

    t0 = time.perf_counter()
    now = now or datetime.now()
    home = ctx.wh.home
    try:
        suites = checkpoints.build_suites(ctx.wh, ctx.settings.seeds_dir, now=now, run_id=str(ctx.run_id),
                                          file_ids=file_ids, run_files=run_files,
                                          lab_late_days=ctx.settings.lab_late_days)
        outcomes, docs = checkpoints.run_suites(home, suites, run_name=str(ctx.run_id))
    except Exception as err:  # a gate that cannot run blocks the exports, it does not wave them through
        return {**summarize([], seconds=round(time.perf_counter() - t0, 2)), "ok": False,
                "failures": [f"the quality gate could not run: {type(err).__name__}: {str(err)[:500]}"]}
    store_results(ctx, outcomes, now)
    return summarize(outcomes, docs=str(docs), seconds=round(time.perf_counter() - t0, 2))


def store_results(ctx, outcomes: list[dict], validated_at: datetime) -> int:
    t = cat.table(RESULTS_TABLE)
    rows = [{"run_id": str(ctx.run_id), "validated_at": validated_at, **o} for o in outcomes]
    df = pl.DataFrame(rows, schema=t.schema) if rows else t.empty()
    ctx.wh.write_partition_file(t, _file_key(str(ctx.run_id)), df)
    return df.height


def _file_key(run_id: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in run_id) or "run"


def _line(o: dict) -> str:
    where = f" [{o['column']}]" if o.get("column") else ""
    return f"{o['suite']}: {o['description'] or o['expectation']}{where} - {o['observed']}"


def summarize(outcomes: list[dict], docs: str | None = None, seconds: float | None = None) -> dict[str, Any]:
    failed = [o for o in outcomes if not o["success"]]
    critical = [o for o in failed if o["critical"]]
    suites: dict[str, dict] = {}
    for o in outcomes:
        s = suites.setdefault(o["suite"], {"success": True, "evaluated": 0, "failed": 0})
        s["evaluated"] += 1
        if not o["success"]:
            s["failed"] += 1
            if o["critical"]:
                s["success"] = False
    return {
        "ok": not critical,
        "failures": [_line(o) for o in critical],
        "warnings": [_line(o) for o in failed if not o["critical"]],
        "evaluated": len(outcomes),
        "failed_critical": len(critical),
        "failed_warning": len(failed) - len(critical),
        "suites": suites,
        "data_docs": docs,
        "results_table": RESULTS_TABLE,
        "seconds": seconds,
    }


def block_reason(gate: dict) -> str | None:
    """None when exports may go out; else a message fit for a Prefect state (names the failures)."""
    if gate.get("ok", False):
        return None
    failures = gate.get("failures") or ["the quality gate did not complete"]
    text = (f"The data-quality gate failed, so no publication goes out (`biolake run --export`, `biolake epi "
            f"export`, the scheduled publication) until it passes: {len(failures)} critical expectation(s) "
            "failed: " + " | ".join(failures))
    if len(text) > MAX_REASON_CHARS:
        text = text[: MAX_REASON_CHARS - 40] + f" ... (see {RESULTS_TABLE})"
    return text


def raise_if_blocked(gate: dict) -> None:
    """Raise :class:`QualityGateFailed` (message = :func:`block_reason`) when the gate failed;
    raised inside a Prefect task or flow, the run turns Failed with that message."""
    if not gate.get("ok", False):
        raise QualityGateFailed(gate)


class GateBlocked(RuntimeError):
    """The result of a run the gate blocked: its reason (the message), and the run's summary
    (``.summary``). An exception, for Prefect raises a failed state's result when a served
    deployment's run ends (QA: a summary dict there gave "TypeError: dict cannot be resolved into an
    exception" and a 6 KB traceback in the run's logs)."""

    def __init__(self, reason: str, summary: dict):
        super().__init__(reason, summary)
        self.reason, self.summary = reason, summary

    def __str__(self) -> str:
        return self.reason


def final_state(summary: dict, gate: dict):
    """The state a flow returns at its end: ``Completed`` with the summary when the gate passed,
    else ``Failed`` with :func:`block_reason` as its message and a :class:`GateBlocked` holding the
    summary as its result.

    Note: calling a flow that returns a Failed state raises when its result is read; the CLI calls it
    with ``return_state=True`` and reads the summary with :func:`summary_of`.
    """
    from prefect.states import Completed, Failed

    reason = block_reason(gate)
    if reason is None:
        return Completed(data=summary, message="quality gate passed")
    return Failed(data=GateBlocked(reason, summary), message=reason)


def summary_of(state):
    """The summary of a flow run's final state, a blocked run's too; for a run that crashed, what
    its state holds (the exception)."""
    data = state.result(raise_on_failure=False)
    return data.summary if isinstance(data, GateBlocked) else data


def quality_gate_task(home: str, file_ids: list[str] | None = None, run_files: list[dict] | None = None
                      ) -> dict[str, Any]:
    """Inside a flow: the gate as a Prefect task named "quality-gate" (its state and logs in the UI),
    taking the data home like the pipeline's other tasks; the run id is the flow run's. The task
    object is made on first use, so importing this module does not import Prefect."""
    return _gate_task()(home, file_ids=file_ids, run_files=run_files)


def _gate_for_home(home: str, file_ids: list[str] | None = None, run_files: list[dict] | None = None
                   ) -> dict[str, Any]:
    from prefect import get_run_logger
    from prefect.runtime import flow_run

    from flows.settings import Settings
    from flows.steps import Context

    run_id = str(flow_run.get_id() or datetime.now().strftime("local-%Y%m%dT%H%M%S"))
    gate = run_quality_gate(Context.create(Settings(home=home), run_id), file_ids=file_ids, run_files=run_files)
    log = get_run_logger()
    if not gate["ok"]:
        log.error(block_reason(gate))
    for w in gate["warnings"]:
        log.warning("quality warning: %s", w)
    return gate


@functools.cache
def _gate_task():
    from prefect import task
    from prefect.cache_policies import NONE

    return task(name="quality-gate", cache_policy=NONE)(_gate_for_home)
