"""One landing file end to end (ingest -> validate -> transcode -> file log), and the grouping of
files into batches, shared by the Prefect flow (flows/pipeline.py) and the benchmark's run
without Prefect (bench/pipeline_once.py).

Why batches: most landing files are small (a lab's day, a few MB). One Prefect task per file and
stage costs more in orchestration (task runs, state changes, API calls) than parsing such a file,
so the flow submits one ``process-files`` task per batch of files of about
``Settings.batch_mb`` megabytes of input, which processes its files one after the other. A file
larger than that is a batch of its own. With several workers (threads or a Dask cluster) the
landing is cut into at least one batch per worker.

The steps are called through their modules (``steps.ingest(...)``), never imported by name, so
that the benchmark's timers (bench/timers.py) see them.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import polars as pl

from flows import privacy, steps
from transforms import finess
from warehouse.store import KeptFrames


@dataclass
class Work:
    """What every file of a run needs besides its ticket: loaded once per batch, not per file."""

    postal_codes: pl.DataFrame
    loinc: pl.DataFrame
    mappings: pl.DataFrame


def batches(items: list, max_size: int, min_batches: int = 1, size=lambda t: t.size_bytes) -> list[list]:
    """Consecutive groups of ``items`` (kept in order) of at most ``max_size`` each (``size`` of an
    item: by default a ticket's bytes of input; an item larger than that is a group of its own),
    cut finer when needed so that there are at least ``min_batches`` groups to share between
    workers."""
    if not items:
        return []
    total = sum(size(t) for t in items)
    limit = max(1, min(max_size, math.ceil(total / max(1, min_batches))))
    out: list[list] = []
    used = 0
    for t in items:
        if out and used + size(t) <= limit:
            out[-1].append(t)
            used += size(t)
        else:
            out.append([t])
            used = size(t)
    return out


def file_batches(tickets: list, settings) -> list[list]:
    """The new files of a run in the batches the flow's tasks take: about ``settings.batch_mb`` MB
    of input each, at least one per worker (thread or Dask worker)."""
    return batches(tickets, int(settings.batch_mb * 1e6), min_batches=settings.workers)


def record_skipped(ctx: steps.Context, ticket: steps.FileTicket) -> str:
    """Log and audit a file the run does not process: a re-delivery (returns "duplicate") or a file
    with an unsafe name (quarantined whole; returns its reason code)."""
    if ticket.status == "duplicate":
        steps.log_file(ctx, ticket, fmt=None, status="duplicate", detail=f"same content as {ticket.duplicate_of}")
        privacy.audit(ctx, "file_skipped", ticket.path, ticket.sha256,
                      {"reason": "duplicate", "file_id": ticket.file_id})
        return "duplicate"
    if ticket.status == "unsafe":
        steps.quarantine_file_failure(ctx, ticket, ticket.reason, ticket.detail)
        steps.log_file(ctx, ticket, fmt=None, status="failed", reason_code=ticket.reason, detail=ticket.detail)
        privacy.audit(ctx, "file_skipped", ticket.raw_name or ticket.path, None, {"reason": ticket.reason})
        return ticket.reason
    raise ValueError(f"{ticket.path}: a {ticket.status} file is processed, not skipped")


def batch_label(names: list[str]) -> str:
    """A task run name: the first file, and how many follow it."""
    return names[0] if len(names) == 1 else f"{names[0]} (+{len(names) - 1} files)"


def process_file(ctx: steps.Context, ticket: steps.FileTicket, work: Work) -> dict:
    """Ingest, validate and transcode one new file, then log it. Returns its accounting::

        {"ticket", "status": "loaded" | "failed", "format", "rows_in", "rows_valid",
         "rows_quarantined", "reasons": [(code, n), ...], "finess_invalid": rows,
         "warnings": [str, ...], "seconds": {stage: s}}

    A file that cannot be parsed at all is quarantined whole (status failed, with the reason). The
    ingest is skipped when an earlier, interrupted run already parsed the same content with the
    same parser (steps.ingested). Raises when the row accounting does not balance."""
    seconds: dict[str, float] = {}
    # a file of one parsing chunk (the usual case) goes from step to step in memory; a larger one
    # is read back from its partitions chunk by chunk (KeptFrames drops what it held)
    raw, staged = KeptFrames(ctx.settings.chunk_rows), KeptFrames(ctx.settings.chunk_rows)
    t0 = time.perf_counter()
    # an earlier run's ingest is reused as it is on disk (``raw`` then holds nothing: read back)
    # (not for a loaded file read again on purpose, biolake reprocess: parsed again whatever it finds)
    reuse = steps.ingested(ctx, ticket) if ticket.registered_at is None else None
    got = reuse or steps.ingest(ctx, ticket, keep=raw)
    seconds["ingest"] = time.perf_counter() - t0
    if got.get("failed") == "FILE_GONE":  # nothing was read: not logged, so the next run reads it when back
        return {"ticket": ticket, "status": "failed", "reason": got["failed"], "detail": got["detail"],
                "seconds": seconds}
    if "failed" in got:
        logged = ticket
        if got["failed"] == "FILE_UNREADABLE":  # logged under an id of its own, not its content's: the
            # next run that can read the file registers it as new and loads it
            logged = replace(ticket, log_id=steps.unreadable_log_id(ctx.settings.landing, ticket.path))
        steps.quarantine_file_failure(ctx, ticket, got["failed"], got["detail"])
        steps.log_file(ctx, logged, fmt=None, status="failed", reason_code=got["failed"], detail=got["detail"])
        privacy.audit(ctx, "file_failed", ticket.path, ticket.sha256, {"reason_code": got["failed"]})
        return {"ticket": ticket, "status": "failed", "reason": got["failed"], "detail": got["detail"],
                "seconds": seconds}
    t0 = time.perf_counter()
    val = steps.validate(ctx, ticket, work.postal_codes, got["format"], raw=raw, keep=staged)
    del raw
    seconds["validate"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    steps.transcode(ctx, ticket.file_id, work.loinc, work.mappings, staged=staged)
    del staged
    seconds["transcode"] = time.perf_counter() - t0
    if got["rows_in"] != val["rows_valid"] + val["rows_quarantined"]:
        raise RuntimeError(f"{ticket.path}: row accounting broken: {got['rows_in']} in, {val['rows_valid']} valid, "
                           f"{val['rows_quarantined']} quarantined")
    steps.log_file(ctx, ticket, fmt=got["format"], status="loaded", rows_in=got["rows_in"],
                   rows_valid=val["rows_valid"], rows_quarantined=val["rows_quarantined"])
    privacy.audit(ctx, "file_ingested", ticket.path, ticket.sha256,
                  {"file_id": ticket.file_id, "format": got["format"], "rows_in": got["rows_in"],
                   "rows_valid": val["rows_valid"], "rows_quarantined": val["rows_quarantined"]})
    return {"ticket": ticket, "status": "loaded", "format": got["format"], "rows_in": got["rows_in"],
            "rows_valid": val["rows_valid"], "rows_quarantined": val["rows_quarantined"],
            "reasons": val["reasons"], "finess_invalid": sum(val["finess_invalid"].values()),
            "warnings": file_warnings(got["rows_in"], val["finess_invalid"]), "seconds": seconds}


def file_warnings(rows_in: int, finess_invalid: dict[str, int]) -> list[str]:
    """What the operator should know about a file that loaded: one line per warning (no patient
    data: a FINESS is named only when it has a FINESS's shape)."""
    out = []
    if rows_in == 0:  # QA: a CSV of a header alone was "loaded" with 0 rows and not a word
        out.append("no result: the file holds no line, message or document to read (a CSV of a header "
                   "alone): loaded, nothing to count (a broken export, or a day without results?)")
    if finess_invalid:
        out.append(finess.describe(finess_invalid))
    return out
