"""The Prefect flows: ingest (per file: ingest -> validate -> transcode) then publish.

Thin on purpose: each task calls one step of flows/steps.py or flows/publish.py and passes paths,
ids and small dicts, never DataFrames. Per-file work runs in ``process-files`` tasks, one per batch
of files of about BIOLAKE_BATCH_MB of input (flows/process.py: a task per small file would cost
more in orchestration than the work), on threads or on a Dask cluster (BIOLAKE_DASK_ADDRESS); the
storage layout (one partition per file, uniquely named temporary files) keeps concurrent writers
apart. Publication runs once, under the exclusive warehouse lock (flows/lock.py), which alone keeps
writers apart: a Prefect concurrency limit taken beside it outlived a killed run in the Prefect
database and stopped every later run (QA crash F1).
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from datetime import datetime

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE
from prefect.futures import wait
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from flows import privacy, process, progress, steps
from flows import publish as pub
from flows.lock import warehouse_lock
from flows.settings import Settings

RECODE_BATCH_FILES = 50  # files re-coded per task after a mapping change


def _ctx(home: str) -> steps.Context:
    settings = Settings(home=home)
    run_id = str(flow_run.get_id() or datetime.now().strftime("local-%Y%m%dT%H%M%S"))
    return steps.Context.create(settings, run_id)


@functools.lru_cache(maxsize=4)
def _terminology(home: str, seeds: str, fingerprint_hint: float, loinc_files: tuple):
    ctx = _ctx(home)
    return steps.load_terminology(ctx, None)


def terminology_for(ctx: steps.Context):
    """Mappings and LOINC, loaded once per process for a given state of the mapping files and of
    the official LOINC files (BIOLAKE_LOINC_TABLE, BIOLAKE_LOINC_FR_TABLE)."""
    dirs = [d for d in steps.mapping_dirs(ctx) if d.exists()]
    words = [d / "qualitative" for d in dirs if (d / "qualitative").is_dir()]  # operator words
    hint = max((p.stat().st_mtime for d in dirs + words for p in d.iterdir()), default=0.0)
    loinc_files = tuple(steps.file_stamp(p) for p in (ctx.settings.loinc_table, ctx.settings.loinc_fr_table))
    return _terminology(str(ctx.wh.home), str(ctx.settings.seeds_dir), hint, loinc_files)


@task(name="process-files", cache_policy=NONE, retries=1, retry_delay_seconds=2, task_run_name="process {label}")
def process_files_task(home: str, tickets: list[steps.FileTicket], label: str = "") -> list[dict]:
    """A batch of new files, each end to end (flows/process.py); returns their accountings.

    Re-running a batch is safe: every write replaces the file's own partitions, and files parsed
    by an interrupted attempt are not parsed again."""
    ctx = _ctx(home)
    loinc, mappings, _ = terminology_for(ctx)
    work = process.Work(postal_codes=steps.read_ref(ctx, "postal_codes"), loinc=loinc, mappings=mappings)
    return [process.process_file(ctx, t, work) for t in tickets]


@task(name="recode-files", cache_policy=NONE, retries=1, retry_delay_seconds=2, task_run_name="recode {label}")
def recode_task(home: str, file_ids: list[str], label: str = "") -> int:
    """Transcode already validated files again (the mappings changed since they were coded)."""
    ctx = _ctx(home)
    loinc, mappings, _ = terminology_for(ctx)
    for fid in file_ids:
        steps.transcode(ctx, fid, loinc, mappings)
    return len(file_ids)


@task(name="publish-fct", cache_policy=NONE)
def publish_fct_task(home: str, changed: list[str]) -> dict:
    return pub.publish_fct(_ctx(home), changed)


@task(name="publish-quality", cache_policy=NONE)
def publish_quality_task(home: str) -> dict:
    return pub.publish_quality(_ctx(home))


@task(name="publish-epi", cache_policy=NONE)
def publish_epi_task(home: str) -> dict:
    """SI-DEP by département/région/France, daily and weekly, rates, MDO cases: only what changed."""
    from flows.epi import publish_epi

    ctx = _ctx(home)
    return publish_epi(ctx, steps.read_refs(ctx))


@task(name="export-publication", cache_policy=NONE)
def export_task(home: str, issue_date: str | None = None) -> dict:
    """The SpF-shaped publication of <home>/publication/<issue date>/ (only after a passing gate)."""
    from flows.epi import export_publication

    ctx = _ctx(home)
    out = export_publication(ctx, steps.read_refs(ctx), issue_date=issue_date)
    return {"issue_date": out["issue_date"], "folder": out["folder"], "files": len(out["files"]),
            "rule": out["rule"]}


@task(name="compact", cache_policy=NONE)
def compact_task(home: str) -> dict:
    """Pack the small per-file partitions (fewer Parquet files for every later query)."""
    return steps.compact(_ctx(home))


@task(name="refresh-views", cache_policy=NONE)
def refresh_views_task(home: str) -> str:
    """The engineers' database (every layer) and the analysts' one (no identity)."""
    from warehouse.analyst import build_analyst_db

    ctx = _ctx(home)
    db = steps.refresh_views(ctx)
    analyst = build_analyst_db(ctx.wh)
    privacy.audit(ctx, "analyst_db_built", str(analyst))
    return str(db)


class Stage:
    """Adds the wall time of a block to ctx.stage_seconds[name]."""

    def __init__(self, ctx: steps.Context, name: str):
        self.ctx, self.name = ctx, name

    def __enter__(self):
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        self.ctx.stage_seconds[self.name] = round(
            self.ctx.stage_seconds.get(self.name, 0.0) + time.perf_counter() - self.t0, 3)


@flow(name="biolake-ingest", task_runner=ThreadPoolTaskRunner(max_workers=1))
def ingest_flow(home: str = "data") -> dict:
    """Register new landing files and take each through ingest, validation and transcoding."""
    log = get_run_logger()
    ctx = _ctx(home)
    steps.check_key(ctx)  # before anything is written with another key's pseudonyms
    with Stage(ctx, "reference"):
        steps.load_ref(ctx)
        loinc, mappings, fingerprint = terminology_for(ctx)
        cause = steps.recoding_cause(ctx, fingerprint)  # before the migrations below record anything
        if steps.first_coding(ctx):  # nothing coded yet: every file of this run is coded with these
            # mappings, so a run killed before its end leaves them recorded (QA crash F2: the next run
            # found no fingerprint, said "the mappings changed", re-coded and audited a change)
            steps.save_mappings_fingerprint(ctx, fingerprint)
    with Stage(ctx, "validate"):
        # staging written by earlier code: plain request numbers and message ids replaced by their
        # keyed hashes, value_comparator added (a warehouse no migration can bring to the current
        # format is refused here, before anything is written); then identities typed into its free
        # text masked. Each once; the files they change are re-coded and republished below
        columns = steps.migrate_staging(ctx)
        masked = steps.mask_staging_text(ctx)
        migrated = sorted(set(columns) | set(masked))
    if columns:
        log.info("%d staging partition(s) migrated to the current columns", len(columns))
    if masked:
        log.info("%d staging partition(s) with identities masked in their free text", len(masked))
    with Stage(ctx, "discover"):
        tickets = steps.discover(ctx)
    for t in (t for t in tickets if t.status == "settling"):
        log.warning("%s", t.detail)
    tickets = [t for t in tickets if t.status != "settling"]
    new = [t for t in tickets if t.status == "new"]
    log.info("%d new file(s), %d re-delivery(ies)", len(new), len(tickets) - len(new))
    totals: Counter = Counter()
    reasons: Counter = Counter()  # quarantined rows (lines, messages, results) by reason
    file_reasons: Counter = Counter()  # landing files not loaded (refused, failed) by reason
    files: list[dict] = []
    for t in tickets:
        if t.status != "unsafe":
            continue
        skipped = process.record_skipped(ctx, t)
        log.warning("a landing entry was refused (%s): %s", skipped, t.detail)
        totals["files_failed"] += 1
        file_reasons[skipped] += 1
        files.append({"path": t.path, "format": None, "status": "failed", "rows_in": 0, "rows_valid": 0,
                      "rows_quarantined": 0, "reason_code": skipped})  # named by the quality gate's warning too
    progress.report("files", 0, len(new))
    groups = process.file_batches(new, ctx.settings)
    log.info("%d new file(s) in %d batch(es)", len(new), len(groups))
    futures = [process_files_task.submit(home, g, label=process.batch_label([t.path for t in g]))
               for g in groups]
    changed: list[str] = []
    gone: set[str] = set()
    failed_now: list = []  # tickets whose file could be read and failed (not gone, not unreadable)
    done = 0
    for fut in futures:
        for res in fut.result():
            t = res["ticket"]
            for k, v in res["seconds"].items():
                ctx.stage_seconds[k] = round(ctx.stage_seconds.get(k, 0.0) + v, 3)
            done += 1
            if res["status"] == "failed" and res["reason"] == "FILE_GONE":
                log.warning("%s", res["detail"])  # not logged, not quarantined: read when it is back
                totals["files_failed"] += 1
                gone.add(t.path)
                files.append({"path": t.path, "format": None, "status": "gone", "rows_in": 0, "rows_valid": 0,
                              "rows_quarantined": 0})
                continue
            if res["status"] == "failed":
                log.warning("%s: not loaded (%s): %s", t.path, res["reason"], res["detail"])
                totals["files_failed"] += 1
                if res["reason"] == "FILE_UNREADABLE":  # read again by the next run, like a file gone
                    gone.add(t.path)
                else:
                    failed_now.append(t)
                file_reasons[res["reason"]] += 1
                files.append({"path": t.path, "format": None, "status": "failed", "rows_in": 0, "rows_valid": 0,
                              "rows_quarantined": 0, "reason_code": res["reason"]})
                continue
            changed.append(t.file_id)
            totals["files_new"] += 1
            for k in ("rows_in", "rows_valid", "rows_quarantined"):
                totals[k] += res[k]
            for code, n in res["reasons"]:
                reasons[code] += n
            for w in res["warnings"]:  # loaded, with something the operator should know (flows/process.py)
                log.warning("%s: %s", t.path, w)
            # the quality gate's suite landing_files names them too
            files.append({**{k: (t.path if k == "path" else res[k]) for k in
                             ("path", "format", "status", "rows_in", "rows_valid", "rows_quarantined",
                              "finess_invalid")}, "warnings": "; ".join(res["warnings"]) or None})
        progress.report("files", done, len(new))
    again = set(steps.reprocess_pending(ctx))
    if again:  # loaded files read again (biolake reprocess): done, except those gone or unreadable now
        read_again = [t for t in new if t.log_id in again and t.path not in gone]
        totals["files_reprocessed"] = len(read_again)
        failed_again = [t for t in failed_now if t.log_id in again]
        for t in failed_again:
            log.warning("%s: read again, the current code refuses it: its earlier results no longer count", t.path)
        steps.reprocessed(ctx, [t for t in read_again if t not in failed_again], failed_again)
    # re-deliveries last: one whose first delivery (in this run) left the landing area is not logged,
    # so that the next run reads it as new (QA: its content was lost)
    for t in tickets:
        if t.status != "duplicate":
            continue
        if t.duplicate_of in gone:
            log.warning("%s: same content as %s, which left the landing area or could not be read: read by the "
                        "next run", t.path, t.duplicate_of)
            continue
        process.record_skipped(ctx, t)
        totals["files_duplicate"] += 1
    new_mappings = steps.mappings_changed(ctx, fingerprint)
    requested = steps.recode_requested(ctx)  # biolake reprocess: every file, the mappings unchanged
    recode_all = new_mappings or requested is not None
    because = None  # why earlier files were re-coded: "mappings", "reprocess" or "upgrade"
    recoded = list(changed)  # the files processed now were coded from their new staging rows
    if recode_all or migrated:
        # a mapping (or the coding format) changed since earlier files were coded: re-code them
        # (backfill); so are files whose staging was just migrated
        with Stage(ctx, "transcode"):
            fresh = set(changed)
            redo = [fid for fid in (ctx.wh.partitions(steps.cat.STG_RESULTS) if recode_all else migrated)
                    if fid not in fresh]
            parts = process.batches(redo, RECODE_BATCH_FILES, min_batches=ctx.settings.workers, size=lambda _: 1)
            futures = [(p, recode_task.submit(home, p, label=process.batch_label(p))) for p in parts]
            wait([f for _, f in futures])
            recoded += [fid for p, f in futures if f.state.is_completed() for fid in p]
            changed += redo
        if redo:
            totals["files_recoded"] = len(redo)
            because = ((cause or "mappings") if new_mappings else requested) if recode_all else "upgrade"
            if because == "mappings":  # QA: a mapping import rewrote history and SI-DEP counts without a trace
                privacy.audit(ctx, "mappings_changed", "mappings", details={
                    "files_recoded": len(redo), "fingerprint": fingerprint.rsplit("|", 1)[-1][:16]})
        steps.save_mappings_fingerprint(ctx, fingerprint)
    # files an interrupted run processed but did not publish are published now (QA: they were lost)
    owed = [fid for fid in steps.owed_publication(ctx) if fid not in set(changed)]
    if owed:
        log.warning("%d file(s) processed by an interrupted run are published now", len(owed))
        changed += owed
    steps.save_owed(ctx, changed)
    steps.recoded(ctx, recoded)  # migrated files re-coded, their publication recorded just above
    return {"changed": changed, "totals": dict(totals), "recoded_because": because, "reasons": dict(reasons),
            "file_reasons": dict(file_reasons), "files": files,
            "files_seen": len(tickets), "stage_seconds": ctx.stage_seconds}


@flow(name="biolake-publish")
def publish_flow(home: str = "data", changed: list[str] | None = None) -> dict:
    """Recompute the marts the changed files touch, then the quality tables and the DuckDB views."""
    ctx = _ctx(home)
    with Stage(ctx, "publish"):
        fct = publish_fct_task(home, changed or [])
        steps.save_owed(ctx, [])
        epi = publish_epi_task(home)
        quality = publish_quality_task(home)
    with Stage(ctx, "compact"):
        compacted = compact_task(home)
    with Stage(ctx, "views"):
        db = refresh_views_task(home)
    return {"fct": fct, "epi": epi, "quality": quality, "database": db, "compact": compacted,
            "stage_seconds": ctx.stage_seconds}


def refused(ctx: steps.Context, landing: bool = True):
    """A Failed state when a run must not start, else None: no landing folder (with ``landing``) or
    an invalid MDO rules table. Its message is the one line an operator reads in the Prefect UI (a
    scheduled run used to end on a 40 KB traceback), its data the error, which a direct call of the
    flow raises (``pipeline(...)``)."""
    from prefect.states import Failed

    from flows.epi import check_rules
    from transforms.epi.mdo import MdoRulesError

    if landing and not ctx.settings.landing.is_dir():
        # a typo in a deployment's home, an unmounted landing share: an empty warehouse would pass its
        # gate at every run (QA: `serve` on a typo showed green runs every 15 minutes)
        err: Exception = FileNotFoundError(
            f"no landing folder {ctx.settings.landing}: nothing to process (files arrive in "
            "<home>/landing/<lab>/; check the deployment's home, or that the landing is mounted)")
        return Failed(data=err, message=str(err))
    try:
        check_rules(ctx)  # an invalid MDO rules table: refused before any file is read (QA regr2 F7)
    except MdoRulesError as err:
        return Failed(data=err, message=str(err))
    return None


@flow(name="biolake-pipeline")
def pipeline(home: str = "data", export: bool = False, reports: bool = True) -> dict:
    """Process whatever is new in <home>/landing and republish what it changes; run the data-quality
    gate; build the reports; with ``export``, write the publication unless the gate blocks it.

    The run ends Failed, with the reasons as its message, when a critical expectation fails."""
    from flows.artifacts import publish_artifacts
    from flows.epi import SIDEP_CONTRACT_DISEASE
    from flows.quality_gate import final_state, quality_gate_task
    from flows.reports import build_reports_task

    ctx = _ctx(home)
    refusal = refused(ctx)
    if refusal is not None:  # the run ends Failed with the reason as its message, not a traceback
        return refusal
    started = datetime.now()
    with warehouse_lock(ctx.wh.home, timeout=ctx.settings.lock_timeout):
        from warehouse.analyst import restrict_raw_permissions  # raw and quality tables with paths

        ctx.wh.clean_tmp()
        restrict_raw_permissions(ctx.wh)
        privacy.audit(ctx, "run_started", str(ctx.wh.home))
        try:
            ing = _with_runner(ingest_flow, ctx.settings)(home=home)
            pubd = publish_flow(home=home, changed=ing["changed"])
        except BaseException as err:
            privacy.audit(ctx, "run_finished", str(ctx.wh.home), details={"status": "failed",
                                                                          "error": type(err).__name__})
            raise
        ctx.stage_seconds.update(ing["stage_seconds"])
        ctx.stage_seconds.update(pubd["stage_seconds"])
        with Stage(ctx, "quality gate"):
            gate = quality_gate_task(home, file_ids=ing["changed"], run_files=ing["files"])
        published = None
        if export and gate["ok"]:
            with Stage(ctx, "export"):
                published = export_task(home)
        report_paths: dict = {}
        if reports:
            with Stage(ctx, "reports"):
                report_paths = build_reports_task(home)
        totals = ing["totals"]
        first_log = not ctx.wh.files(steps.cat.RUN_LOG)  # not partitioned: one file per run
        steps.write_run_log(ctx, started, totals)
        # the databases were built before the run log's first row (quality.run_log an empty stand-in)
        # or before this run's publication (quality.publications, the analysts' copy of the audit
        # trail): once more. Any other run keeps them (the check used the partitions of a table that
        # has none, and every run paid a second build, seconds with thousands of files)
        if first_log or published is not None:
            refresh_views_task(home)
        privacy.audit(ctx, "run_finished", str(ctx.wh.home), details={"status": "ok", **totals})
    summary = {
        "run_id": ctx.run_id, "home": str(ctx.wh.home), "database": pubd["database"],
        "files_seen": ing["files_seen"],
        **{k: totals.get(k, 0) for k in ("files_new", "files_duplicate", "files_failed", "files_recoded",
                                         "files_reprocessed", "rows_in",
                                         "rows_valid", "rows_quarantined")},
        "recoded_because": ing.get("recoded_because"),
        # loaded by an earlier parser: `biolake reprocess` gives them this version's reading
        "files_parsed_earlier": len(steps.parsed_earlier(ctx)),
        "quarantine_reasons": dict(sorted(ing["reasons"].items())),
        "failed_file_reasons": dict(sorted(ing["file_reasons"].items())),
        "mapping_coverage": pubd["quality"]["coverage"], "unmapped_codes": pubd["quality"]["backlog_codes"],
        "unmapped_surveillance": pubd["quality"]["backlog_surveillance"],
        "unit_conversion": pubd["quality"]["conversion"],
        "marts": {"fct_lab_results": steps.count_rows(ctx, steps.cat.FCT_LAB_RESULTS),
                  "sidep_daily": steps.count_rows(ctx, steps.cat.SIDEP_DAILY)},
        "incremental": {"fct_files_rewritten": pubd["fct"]["files_rewritten"],
                        "sidep_days_recomputed": len(pubd["epi"]["sidep"].get(SIDEP_CONTRACT_DISEASE, {})
                                                     .get("days", [])),
                        "epi_partitions_rewritten": pubd["epi"]["partitions_rewritten"]},
        "stage_seconds": dict(ctx.stage_seconds),
        "compaction": {k: pubd["compact"][k] for k in ("parquet_files_before", "parquet_files_after")},
        "files": ing["files"],
        "quality_gate": {k: gate.get(k) for k in ("ok", "failures", "warnings", "evaluated", "failed_critical",
                                                  "failed_warning", "data_docs")},
        "reports": report_paths,
        "publication": published,
    }
    if export and published is None:  # the gate blocked it: the publication artifact says so
        from flows.quality_gate import block_reason

        summary["publication_blocked"] = block_reason(gate)
    publish_artifacts(summary, report_paths, gate)
    return final_state(summary, gate)


def _with_runner(f, settings: Settings):
    """The ingest flow on a Dask cluster when one is configured, else on local threads."""
    if settings.dask_address:
        from prefect_dask import DaskTaskRunner

        return f.with_options(task_runner=DaskTaskRunner(address=settings.dask_address))
    if settings.workers > 1:
        return f.with_options(task_runner=ThreadPoolTaskRunner(max_workers=settings.workers))
    return f
