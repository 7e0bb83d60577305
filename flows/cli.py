"""The ``biolake`` command line: generate, run, demo, sql, mappings."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from flows.cli_errors import errors, fail, require_warehouse

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="biolake: lab results in, LOINC-coded warehouse and SI-DEP indicators out.")
mappings_app = typer.Typer(no_args_is_help=True, help="The mapping work queue: export, review, import.")
app.add_typer(mappings_app, name="mappings")
console = Console()


def _register_subapps() -> None:
    # these modules import no Prefect at load time: PREFECT_HOME must be set before Prefect loads
    from flows.epi import epi_app
    from flows.privacy import privacy_app
    from flows.reports import reports_app

    app.add_typer(privacy_app)  # biolake purge, audit, analyst-db
    app.add_typer(epi_app, name="epi")  # biolake epi export / compare / issues
    app.add_typer(reports_app, name="report")  # biolake report weekly / dq / all / gate / weeks

HomeOpt = Annotated[Optional[Path], typer.Option("--home", help="data directory (env BIOLAKE_HOME, default ./data)")]
FormatsOpt = Annotated[str, typer.Option(
    help="what the labs send: mixed (labo_gamma HPRIM, labo_delta HL7 v2, labo_epsilon CR-BIO CDA, the others "
         "CSV), csv (every lab) or lab=format,... (csv, hl7v2, cda, hprim; labs not named send CSV)")]


def _settings(home: Path | None, demo: bool = False):
    from flows.settings import Settings

    kwargs = {}
    if home is not None:
        kwargs["home"] = home
    if demo:
        kwargs["demo"] = True
    return Settings(**kwargs)


def configure_prefect(settings) -> None:
    """Embedded Prefect by default: its database under <home>/prefect, no telemetry, quiet console.

    With PREFECT_API_URL set, runs go to that server instead.
    """
    if not os.environ.get("PREFECT_API_URL"):
        os.environ.setdefault("PREFECT_HOME", str(settings.prefect_home_abs))
        from warehouse.analyst import close_dir

        # its database holds landing paths (logs, artifacts, task names): the pipeline's account only
        close_dir(settings.prefect_home_abs)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("DO_NOT_TRACK", "1")


class Bars:
    """rich progress bars keyed by stage name, fed by flows.progress.report."""

    def __init__(self, progress: Progress):
        self.progress, self.tasks = progress, {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(stage, total=total)
        self.progress.update(self.tasks[stage], completed=done, total=total)


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=False)


@app.command()
def generate(
    home: HomeOpt = None,
    results: Annotated[int, typer.Option(help="about how many results to generate")] = 1_000_000,
    seed: Annotated[int, typer.Option(help="random seed (same seed, same files)")] = 42,
    days: Annotated[int, typer.Option(help="days of collection")] = 7,
    formats: FormatsOpt = "mixed",
) -> None:
    """Write synthetic lab extracts into <home>/landing and their truth into <home>/truth."""
    from transforms.synthetic import generate as gen
    from transforms.synthetic.generator import formats_option

    settings = _settings(home)
    t0 = time.perf_counter()
    try:
        chosen = formats_option(formats)
        with _progress() as p:
            res = gen(settings.home_abs, n_results=results, seed=seed, days=days, progress=Bars(p), formats=chosen)
    except ValueError as err:
        fail(err)
    by_format = res.summary["formats"]
    sent = "; ".join(f"{lab} sends {fmt}" for lab, fmt in sorted(by_format.items())) or "every lab sends CSV"
    console.print(f"{res.n_rows:,} rows in {len(res.landing_files)} files under {settings.landing} "
                  f"({time.perf_counter() - t0:.1f} s; {sent}); truth in {res.truth_dir}")


def _run(settings, export: bool = False) -> dict:
    from flows import steps

    settings.secret_bytes()  # fail early, before Prefect starts, when the secret is missing or weak
    ctx = steps.Context.create(settings, "preflight")
    steps.check_key(ctx, save=False)  # or is not the warehouse's
    steps.check_upgradable(ctx)  # a warehouse of an earlier biolake this one cannot upgrade
    steps.load_terminology(ctx, {})  # an operator's broken mapping or words file: its file and line, now
    from flows.epi import check_rules

    check_rules(ctx)  # and an invalid MDO rules table (BIOLAKE_MDO_RULES), before any file is read
    configure_prefect(settings)
    from flows import embedded, progress
    from flows.pipeline import pipeline

    embedded.start()  # the embedded Prefect server, stopped even when this process is killed

    if settings.demo:
        os.environ["BIOLAKE_DEMO"] = "1"
    with _progress() as p:
        progress.set_reporter(Bars(p))
        try:
            state = pipeline(home=str(settings.home_abs), export=export, return_state=True)
        finally:
            progress.set_reporter(None)
    from flows.quality_gate import summary_of

    summary = summary_of(state)
    if not isinstance(summary, dict):  # the flow itself crashed: show why
        raise summary if isinstance(summary, BaseException) else RuntimeError(state.message)
    summary["state"] = {"failed": state.is_failed(), "message": state.message}
    return summary


@app.command()
def run(
    home: HomeOpt = None,
    export: Annotated[bool, typer.Option("--export", help="also write the publication (if the gate passes)")] = False,
) -> None:
    """Process whatever is new in <home>/landing and publish the warehouse."""
    from flows.lock import LockTimeout, wait_until_free
    from flows.settings import SecretMissing, WarehouseFormatError

    settings = _settings(home)
    try:
        settings.secret_bytes()
        _require_landing(settings)
        wait_until_free(settings.home_abs, settings.lock_timeout, on_wait=lambda pid: console.print(
            f"another biolake run (pid {pid}) is writing to this warehouse: waiting for it "
            f"(at most {settings.lock_timeout:.0f} s, BIOLAKE_LOCK_TIMEOUT)"))
        _run_and_show(settings, export)
    except (SecretMissing, LockTimeout, WarehouseFormatError) as err:
        fail(err)


@app.command()
def reprocess(
    home: HomeOpt = None,
    lab: Annotated[list[str] | None, typer.Option("--lab", help="only this lab's files (repeat for several)")] = None,
    export: Annotated[bool, typer.Option("--export", help="also write the publication (if the gate passes)")] = False,
) -> None:
    """Read again, with this version's parsers and checks, the files already loaded that are still in
    the landing area, then run the pipeline: after an upgrade whose parser or validation changed (a
    run re-codes earlier files by itself, but never reads them again)."""
    from flows import steps
    from flows.lock import LockTimeout, warehouse_lock
    from flows.settings import SecretMissing, WarehouseFormatError

    settings = _settings(home)
    try:
        settings.secret_bytes()
        _require_landing(settings)
        require_warehouse(settings.home_abs)
        from flows.epi import check_rules

        check_rules(steps.Context.create(settings, "preflight"))  # before any file is marked (QA regr2 F7)
        with warehouse_lock(settings.home_abs, timeout=settings.lock_timeout):
            ctx = steps.Context.create(settings, "reprocess")
            steps.check_key(ctx, save=False)
            if lab:
                known = set(ctx.wh.read(steps.cat.FILE_LOG)["source"].to_list())
                unknown = sorted(set(lab) - known)
                if unknown:
                    fail(f"no file loaded from {', '.join(unknown)} "
                          f"(labs with files: {', '.join(sorted(known)) or 'none'})")
            got = steps.mark_reprocess(ctx, lab)
            from flows import privacy

            privacy.audit(ctx, "reprocess_requested", str(settings.home_abs),
                          details={"files": len(got["marked"]), "missing": len(got["missing"]),
                                   "purged": len(got["purged"]), "labs": lab or []},
                          by="reprocess")
        console.print(f"{len(got['marked']):,} loaded file(s) to read again", soft_wrap=True)
        if got["missing"]:
            shown = ", ".join(escape(p) for p in got["missing"][:5]) + (" ..." if len(got["missing"]) > 5 else "")
            console.print(f"[yellow]{len(got['missing']):,} loaded file(s) are no longer in the landing area as they "
                          f"were loaded (moved, changed or deleted): kept as loaded, not read again[/yellow]: {shown}",
                          soft_wrap=True)
        if got["purged"]:
            console.print(f"{len(got['purged']):,} loaded file(s) whose identities were purged are not read again "
                          "(their landing copy would bring the identities back)", soft_wrap=True)
        _run_and_show(settings, export)
    except (SecretMissing, LockTimeout, WarehouseFormatError) as err:
        fail(err)


def _run_and_show(settings, export: bool) -> None:
    """Run the pipeline, print its summary, exit 1 when the gate blocked it."""
    summary = _run(settings, export=export)
    print_summary(summary)
    _exit_on_block(summary)


def _require_landing(settings) -> None:
    """A home must have its landing folder: a typo in --home would build an empty warehouse, and
    every run of it would pass its gate (QA: `serve` on a typo showed green runs every 15 minutes)."""
    if not settings.landing.is_dir():
        fail(f"no landing folder {settings.landing}: nothing to process "
              "(files arrive in <home>/landing/<lab>/; check --home or BIOLAKE_HOME)")


def _exit_on_block(summary: dict) -> None:
    if summary.get("state", {}).get("failed"):
        console.print(f"[red]{escape(str(summary['state']['message']))}[/red]", soft_wrap=True)
        raise typer.Exit(1)


@app.command()
def demo(
    home: HomeOpt = None,
    results: Annotated[int, typer.Option(help="about how many results to generate")] = 1_000_000,
    seed: Annotated[int, typer.Option(help="random seed")] = 42,
    fresh: Annotated[bool, typer.Option(help="delete <home> first")] = False,
    formats: FormatsOpt = "mixed",
) -> None:
    """Generate about a week of extracts for several labs, run everything, print a summary."""
    from flows import steps
    from flows.settings import DEMO_SECRET

    os.environ.pop("BIOLAKE_PSEUDONYM_SECRET", None)  # synthetic data: always the demo's own key
    settings = _settings(home, demo=True)
    recorded = steps.recorded_key_check(steps.Context.create(settings, "demo-check"))
    if recorded is not None and recorded != steps.key_check_value(DEMO_SECRET.encode("utf-8")):
        # QA: the demo wrote synthetic files into a real home, which the next real run loaded
        fail(f"{settings.home_abs} holds a warehouse built with a real key: the demo "
              "neither writes synthetic data into it nor deletes it (--fresh); choose another --home")
    from transforms.synthetic.generator import foreign_landing_files, formats_option

    foreign = foreign_landing_files(settings.home_abs)
    if foreign:  # QA regr2 F5: real deliveries not yet run were deleted (--fresh) or loaded with the demo key
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        fail(f"{settings.home_abs / 'landing'} holds files the demo did not "
              f"generate ({shown}): the demo neither loads them with its public key nor deletes them; choose "
              "another --home"
              + (" (a demo home made before biolake listed the files it generates: delete it yourself)"
                 if (settings.home_abs / "truth" / "summary.json").exists()
                 and not (settings.home_abs / "truth" / "generated_landing_files.json").exists() else ""))
    try:  # checked before anything is deleted (QA: a bad --formats failed after --fresh had wiped the folder)
        formats_option(formats)
    except ValueError as err:
        fail(err)
    if fresh and settings.home_abs.exists():
        foreign = _not_home_entries(settings.home_abs)
        if foreign:  # QA: --fresh on a typo, '.', or '~' deleted whatever the folder held
            shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            fail(f"{settings.home_abs} holds what a biolake home does not "
                  f"({shown}): --fresh deletes a biolake home only; choose another --home, or empty it yourself")
        shutil.rmtree(settings.home_abs)
    console.rule("[bold]1/2 generate synthetic lab extracts")
    generate(home=settings.home_abs, results=results, seed=seed, days=7, formats=formats)
    console.rule("[bold]2/2 run the pipeline (embedded Prefect)")
    t0 = time.perf_counter()
    summary = _run(settings, export=True)
    print_summary(summary, wall=time.perf_counter() - t0)
    _exit_on_block(summary)


# what a data home holds (docs/operations.md): --fresh deletes a folder holding nothing else
HOME_ENTRIES = frozenset({"landing", "warehouse", "truth", "prefect", "reports", "publication", "gx", "mappings",
                          "biolake.duckdb", "analyst.duckdb", "biolake.duckdb.wal", "analyst.duckdb.wal",
                          ".biolake.lock", "prefect-server.log"})


def _not_home_entries(home: Path) -> list[str]:
    """The entries of ``home`` that are no part of a data home (sorted); all of them when ``home``
    is not a directory."""
    if not home.is_dir():
        return [home.name]
    return sorted(p.name for p in home.iterdir() if p.name not in HOME_ENTRIES)


def print_summary(s: dict, wall: float | None = None) -> None:
    t = Table(title="files", show_edge=False)
    for c in ("loaded", "re-deliveries skipped", "failed"):
        t.add_column(c, justify="right")
    t.add_row(str(s["files_new"]), str(s["files_duplicate"]), str(s["files_failed"]))
    console.print(t)
    if s.get("files_reprocessed"):
        console.print(f"{s['files_reprocessed']:,} earlier file(s) read again by the current code (biolake "
                      "reprocess), counted among the loaded ones", soft_wrap=True)
    if s.get("files_parsed_earlier"):
        console.print(f"{s['files_parsed_earlier']:,} loaded file(s) were read by an earlier version of the parsers: "
                      "`biolake reprocess` reads them again with this one (docs/operations.md)", soft_wrap=True)
    if s.get("files_recoded"):
        why = {"reprocess": "as biolake reprocess asked", "upgrade": "the coding changed with an upgrade"}.get(
            s.get("recoded_because"), "the mappings or qualitative words changed")
        console.print(f"{s['files_recoded']:,} earlier file(s) re-coded: {why}; their results and the marts follow",
                      soft_wrap=True)
    from transforms.parsers.detect import FORMAT_NAMES

    by_format: dict[str, list[int]] = {}
    for f in s.get("files", []):
        if f["status"] == "loaded":
            tot = by_format.setdefault(f["format"], [0, 0, 0])
            tot[0] += 1
            tot[1] += f["rows_in"]
            tot[2] += f["rows_quarantined"]
    if by_format:
        bf = Table(title="loaded by format", show_edge=False)
        for c, j in (("format", "left"), ("files", "right"), ("rows in", "right"), ("quarantined", "right")):
            bf.add_column(c, justify=j)
        for fmt, (n, rows, quar) in sorted(by_format.items()):
            bf.add_row(FORMAT_NAMES.get(fmt, fmt), str(n), f"{rows:,}", f"{quar:,}")
        console.print(bf)
    r = Table(title="rows", show_edge=False)
    for c in ("in", "valid", "quarantined"):
        r.add_column(c, justify="right")
    r.add_row(f"{s['rows_in']:,}", f"{s['rows_valid']:,}", f"{s['rows_quarantined']:,}")
    console.print(r)
    for title, unit, counts in (("files not loaded, by reason", "files", s.get("failed_file_reasons")),
                                ("quarantine by reason (a row with several reasons counts under each)", "rows",
                                 s["quarantine_reasons"])):
        if counts:
            q = Table(title=title, show_edge=False)
            q.add_column("reason")
            q.add_column(unit, justify="right")
            for k, v in counts.items():
                q.add_row(k, f"{v:,}")
            console.print(q)
    warned = [f for f in s.get("files", []) if f.get("warnings")]
    if warned:  # loaded, with something to look into (flows/process.py file_warnings)
        w = Table(title="files loaded with a warning", show_edge=False)
        w.add_column("file")
        w.add_column("warning")
        for f in warned:
            w.add_row(f["path"], f["warnings"])
        console.print(w)
    # coverage = (mapped by the lab's mapping + sent as LOINC by the lab) / results (QA F4: a lab
    # sending LOINC read "0 mapped ... 100.0%"); a summary written before the LOINC-sent count was
    # published has 4 values per lab: that column is then empty
    m = Table(title="LOINC mapping coverage", show_edge=False)
    for c in ("lab", "results", "mapped", "LOINC sent", "coverage"):
        m.add_column(c, justify="right")
    for row in s["mapping_coverage"]:
        src, n, k, *sent, cov = row
        m.add_row(src, f"{n:,}", f"{k:,}", f"{sent[0]:,}" if sent else "", f"{cov:.1%}")
    console.print(m)
    console.print(f"unmapped local codes waiting in quality.unmapped_backlog: {s['unmapped_codes']}")
    hinted = s.get("unmapped_surveillance") or []
    if hinted:  # their results are missing from SI-DEP / MDO until mapped
        console.print(f"  of which {len(hinted)} read like tests SI-DEP or MDO counts; their results are in "
                      "none of those counts until mapped (biolake mappings export):", highlight=False)
        for src, code, label, n, loinc, what in hinted[:10]:  # lab data, never rich markup
            console.print(escape(f"    {src} {code} '{label}': {n:,} results, looks like {loinc} ({what})"),
                          highlight=False)
        if len(hinted) > 10:
            console.print(f"    ... {len(hinted) - 10} more (quality.unmapped_backlog, column surveillance_loinc)")
    conv: dict[str, list[int]] = {}
    for src, status, n, _share in s.get("unit_conversion", []):
        tot = conv.setdefault(src, [0, 0])
        tot[0] += n
        tot[1] += n if status in ("ok", "same_unit") else 0
    if conv:
        console.print("numeric results in their LOINC's canonical unit: " + ", ".join(
            f"{src} {ok / n:.1%}" for src, (n, ok) in sorted(conv.items()) if n))
    mt = Table(title="marts", show_edge=False)
    mt.add_column("table")
    mt.add_column("rows", justify="right")
    for k, v in s["marts"].items():
        mt.add_row(f"marts.{k}", f"{v:,}")
    console.print(mt)
    st = Table(title="time per stage", show_edge=False)
    st.add_column("stage")
    st.add_column("seconds", justify="right")
    for k, v in s["stage_seconds"].items():
        st.add_row(k, f"{v:.1f}")
    console.print(st)
    comp = s.get("compaction") or {}
    if comp and comp["parquet_files_after"] < comp["parquet_files_before"]:
        console.print(f"compaction: {comp['parquet_files_before']:,} Parquet files of the per-file tables packed "
                      f"into {comp['parquet_files_after']:,} (docs/operations.md, \"Compaction\")")
    gate = s.get("quality_gate") or {}
    if gate:
        console.print(f"data-quality gate: {'passed' if gate.get('ok') else 'BLOCKED'} "
                      f"({gate.get('evaluated')} expectations, {gate.get('failed_critical')} critical and "
                      f"{gate.get('failed_warning')} warning failures; results in quality.expectation_results)")
        for w in (gate.get("warnings") or [])[:12]:  # values are data, never rich markup ('[n_age...]' vanished)
            console.print(f"  warning: {escape(w)}", soft_wrap=True)
        if len(gate.get("warnings") or []) > 12:
            console.print(f"  ... {len(gate['warnings']) - 12} more (biolake report gate, or the Data Docs)")
    for name, path in (s.get("reports") or {}).items():
        if isinstance(path, str):
            console.print(f"report {name}: {path}")
    if s.get("publication"):
        pub = s["publication"]
        console.print(f"publication {pub['issue_date']}: {pub['files']} data files and their manifest (csv, json) "
                      f"in {pub['folder']} ({pub['rule']})")
    if wall is not None:
        console.print(f"pipeline wall time: {wall:.1f} s (includes starting the embedded Prefect)")
    home = s["home"]
    prefect_home = os.environ.get("PREFECT_HOME", f"{home}/prefect")
    from warehouse.analyst import ANALYST_DB_NAME

    q = shlex.quote  # the commands are pasted into a shell: a home may hold spaces or quotes
    console.print("\n[bold]Next:[/bold]")
    example = q("SELECT * FROM marts.sidep_daily WHERE cl_age90 = 0 ORDER BY P DESC LIMIT 10")
    console.print("  analysts (staging, marts, quality, ref; no identity):")
    console.print(f"    uv run biolake sql --analyst --home {q(str(home))} {example}")
    console.print(f"    or with DuckDB: duckdb -readonly {q(str(Path(home) / ANALYST_DB_NAME))}")
    console.print("  data engineers (every layer, raw identities included):")
    console.print(f"    uv run biolake sql --home {q(str(home))} {example}")
    console.print(f"    or with DuckDB: duckdb -readonly {q(str(s['database']))}")
    console.print(f"  see the runs in the Prefect UI:  PREFECT_HOME={q(str(prefect_home))} uv run prefect server start  "
                  "(then open http://127.0.0.1:4200)")


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="SQL to run against the warehouse (read-only)")],
    home: HomeOpt = None,
    analyst: Annotated[bool, typer.Option(
        "--analyst", help="query <home>/analyst.duckdb (staging, marts, quality, ref; no identity) instead of "
                          "the engineers' biolake.duckdb (every layer, raw identities included)")] = False,
    csv: Annotated[bool, typer.Option("--csv", help="print CSV instead of a table")] = False,
    limit: Annotated[int, typer.Option(min=0, help="rows shown at most")] = 50,
) -> None:
    """Query the warehouse read-only: <home>/biolake.duckdb (schemas raw, staging, marts, quality, ref),
    or with --analyst <home>/analyst.duckdb (what analysts query: no raw layer, no identity)."""
    import duckdb

    from warehouse.analyst import ANALYST_DB_NAME, UnsafeQuery, analyst_dirs, read_only_query

    settings = _settings(home)
    wh_root = settings.home_abs / "warehouse"
    if analyst:
        # the analysts' database, able to read its views' folders and nothing else (analyst_dirs)
        db, allowed = settings.home_abs / ANALYST_DB_NAME, analyst_dirs(wh_root)
        build = "`biolake run`, `biolake demo` or `biolake analyst-db`"
    else:
        db, allowed = settings.home_abs / "biolake.duckdb", [wh_root]
        build = "`biolake run` or `biolake demo`"
    if not db.exists():
        fail(f"{db} does not exist: run {build} first")
    from rich.markup import escape

    from flows.databases import CannotRepoint, ensure_built_here
    from flows.settings import WarehouseFormatError

    try:
        # a home copied or restored elsewhere: its database still reads the other home's files
        other = ensure_built_here(settings, analyst, by="sql --analyst" if analyst else "sql")
    except (CannotRepoint, WarehouseFormatError, duckdb.Error) as err:
        fail(err)  # one line, however long
    if other is not None:  # on stderr: --csv output stays data only
        typer.echo(f"note: {db.name} was built for another home ({other}); rebuilt for {settings.home_abs}",
                   err=True)
    try:
        # one SELECT, on a connection that can read only the warehouse and cannot write or attach
        df = read_only_query(db, query, allowed)
    except (UnsafeQuery, duckdb.Error) as err:
        fail(err)
    if csv:
        # CSV cannot hold lists or structs: they are written as JSON text
        import polars as pl

        nested = [c for c, t in df.schema.items() if t.is_nested()]
        df = df.with_columns(pl.Series(c, [None if v is None else json.dumps(v, default=str, ensure_ascii=False)
                                           for v in df[c].to_list()], dtype=pl.Utf8) for c in nested)
        sys.stdout.write(df.write_csv(separator=";"))
        return
    t = Table(show_edge=False)
    for c in df.columns:
        t.add_column(escape(c))
    for row in df.head(limit).iter_rows():  # values are data, never rich markup ('[/x]' crashed; QA)
        t.add_row(*["" if v is None else escape(str(v)) for v in row])
    console.print(t)
    if df.height > limit:
        console.print(f"({df.height:,} rows, {limit} shown; --limit to see more, --csv for all)")


@app.command()
def views(home: HomeOpt = None) -> None:
    """Rebuild <home>/biolake.duckdb and <home>/analyst.duckdb for this home (after copying or restoring
    it to another path their views still read the original's files; a run also rebuilds them)."""
    import duckdb

    from flows.databases import database_path, rebuild_both
    from flows.lock import LockTimeout
    from flows.settings import WarehouseFormatError
    from warehouse.location import built_elsewhere

    settings = _settings(home)
    require_warehouse(settings.home_abs)  # a typo in --home would build two empty databases
    before = {}
    for analyst in (False, True):
        db = database_path(settings.home_abs, analyst)
        try:
            before[db] = built_elsewhere(db, settings.home_abs / "warehouse") if db.exists() else None
        except duckdb.Error:  # unreadable: rebuilt all the same
            before[db] = None
    try:
        built = rebuild_both(settings)
    except (LockTimeout, WarehouseFormatError) as err:
        fail(err)
    for db in built:
        was = f" (it read the files of {before[db]})" if before.get(db) else ""
        console.print(f"{db}: rebuilt for {settings.home_abs}{was}", soft_wrap=True, markup=False)


@app.command()
def serve(
    home: HomeOpt = None,
    host: Annotated[str, typer.Option(help="address of the local Prefect server")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="port of the local Prefect server (UI and API)")] = 4200,
) -> None:
    """Start a local Prefect server with its UI and serve the scheduled deployments.

    With PREFECT_API_URL set, no server is started: the deployments are served to that server.
    """
    from flows import deployments as d

    settings = _settings(home)
    settings.secret_bytes()
    _require_landing(settings)
    server = None
    api = os.environ.get("PREFECT_API_URL")
    if not api:
        api = f"http://{host}:{port}/api"
        if not d.port_is_free(host, port):  # else this would serve to whatever server holds it (QA)
            fail(f"{host}:{port} is already in use (another Prefect server?): "
                  "choose another --port, or set PREFECT_API_URL to serve to that server on purpose")
        log_path = settings.home_abs / "prefect-server.log"
        settings.home_abs.mkdir(parents=True, exist_ok=True)
        console.print(f"starting the Prefect server (database in {settings.prefect_home_abs}, log {log_path})")
        server = d.start_server(settings.prefect_home_abs, host, port, log_path)
        os.environ["PREFECT_API_URL"] = api
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    try:
        try:
            d.wait_for_server(api, server)
        except RuntimeError as err:
            where = f" ({settings.home_abs / 'prefect-server.log'})" if server is not None else ""
            fail(f"{err}{where}")
        console.print(f"Prefect UI: [bold]{api.removesuffix('/api')}[/bold]  (API {api})")
        from prefect import serve as prefect_serve

        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: api}):
            deps = d.deployments(str(settings.home_abs))
            console.print("serving: " + ", ".join(dep.name for dep in deps) + "  (Ctrl-C to stop)")
            prefect_serve(*deps, print_starting_message=False)
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=20)
            except Exception:  # noqa: BLE001
                server.kill()


@mappings_app.command("export")
def mappings_export(
    out: Annotated[Path, typer.Option("--out", help="CSV file to write the work queue to")],
    home: HomeOpt = None,
    k: Annotated[int, typer.Option(help="suggestions per unmapped code")] = 5,
) -> None:
    """Write every unmapped (lab, code, label, unit) with its volume and top LOINC suggestions."""
    import polars as pl

    from flows.steps import loinc_table
    from transforms.terminology import export_workqueue, suggest
    from transforms.terminology.suggest import merge_unit_spellings
    from transforms.terminology.workqueue import load_rejections
    from warehouse import catalog as cat
    from warehouse.store import Warehouse

    settings = _settings(home)
    require_warehouse(settings.home_abs)  # a typo in --home said "nothing to review"
    wh = Warehouse(settings.home_abs)
    backlog = wh.read(cat.UNMAPPED_BACKLOG)
    if backlog.is_empty():
        console.print("no unmapped local code: nothing to review")
        return
    loinc = loinc_table(settings)
    items = merge_unit_spellings(backlog)  # 'g/L' and 'g/l' are one item
    if "surveillance" in items.columns:  # first the items missing from SI-DEP / MDO until mapped
        items = items.sort(pl.col("surveillance").is_null(), maintain_order=True)
    rejected = load_rejections(settings.operator_mappings)  # never proposed again
    sugg = suggest(items, loinc, k=k, rejected=rejected)
    export_workqueue(sugg, out)
    skipped = sugg.filter(pl.col("rejected_before").is_not_null())["local_code"].n_unique() if sugg.height else 0
    console.print(f"{items.height} unmapped codes, {sugg.height} suggestions written to {out}"
                  + (f" ({skipped} code(s) without the suggestions rejected earlier, "
                     f"{settings.operator_mappings / 'rejected'})" if skipped else "")
                  + "; mark the `decision` column approve or reject, then `biolake mappings import` it",
                  highlight=False, soft_wrap=True)


@mappings_app.command("import")
def mappings_import(
    path: Annotated[Path, typer.Argument(help="the reviewed work-queue CSV")],
    home: HomeOpt = None,
) -> None:
    """Add the approved suggestions to the operator's mappings; the next run re-codes earlier results."""
    from flows.steps import loinc_table
    from transforms.terminology import write_approved_mappings
    from transforms.terminology.mappings import MappingError
    from transforms.terminology.workqueue import read_workqueue, remember_rejections

    settings = _settings(home)
    loinc = loinc_table(settings)
    # the labs: a landing folder, shipped mappings or the operator's (QA: a typo wrote labo_zzz.csv)
    known = {p.name for p in settings.landing.iterdir() if p.is_dir()} if settings.landing.is_dir() else set()
    known |= {p.stem for d in (settings.seeds_dir / "mappings", settings.operator_mappings) if d.is_dir()
              for p in d.glob("*.csv")}
    try:
        decisions = read_workqueue(path, loinc, known_sources=known)
        rows = decisions.approved
        written = write_approved_mappings(rows, settings.operator_mappings, loinc) if rows.height else []
        remembered = remember_rejections(decisions.rejected, settings.operator_mappings, approved=rows)
    except MappingError as err:
        fail(err)
    for origin, note in decisions.notes:
        console.print(f"[yellow]warning:[/yellow] {escape(origin)}: {escape(note)}", highlight=False, soft_wrap=True)
    console.print(import_summary(path, rows.height, written, decisions.rejected.height, remembered),
                  highlight=False, markup=False, soft_wrap=True)  # one line: paths stay whole


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def import_summary(path: Path, n_approved: int, written: list[Path], n_rejected: int, remembered: list[Path]) -> str:
    """What `biolake mappings import` did, in sentences (QA: it printed a Python list of paths, and
    '0 approved mapping(s) written ... run `biolake run` to apply them' when nothing was approved)."""
    files = ", ".join(str(p) for p in written)
    if n_approved:
        said = [f"{_count(n_approved, 'approved mapping')} written to {files}; run `biolake run` to apply "
                f"{'it' if n_approved == 1 else 'them'} and re-code the earlier results."]
    elif n_rejected:
        said = [f"No row of {path} is approved: no mapping written."]
    else:
        said = [f"No row of {path} is marked approve or reject: nothing to import (undecided rows come back "
                "at the next export)."]
    if n_rejected:
        where = ", ".join(str(p) for p in remembered)
        said.append(f"{_count(n_rejected, 'rejected suggestion')} remembered in {where}: "
                    f"{'it is' if n_rejected == 1 else 'they are'} not proposed again.")
    return " ".join(said)


def _one_line_listings(typer_app: typer.Typer) -> None:
    """Each command's line in a ``--help`` listing: the first paragraph of its docstring as one line
    (Typer's rich listing kept the docstring's own line breaks, and the list read ragged); the
    command's own ``--help`` shows the whole docstring as before."""
    import inspect

    for info in typer_app.registered_commands:
        doc = info.help or inspect.getdoc(info.callback) or ""
        if info.short_help is None and doc:
            info.short_help = " ".join(doc.split("\n\n")[0].split())
    for group in typer_app.registered_groups:
        _one_line_listings(group.typer_instance)


_register_subapps()
_one_line_listings(app)

# the commands that write the warehouse or its publication under the home's lock
_WRITING = {"run", "reprocess", "demo", "purge", "views", "analyst-db", "mappings", "epi", "report"}


def _interrupted_hint(command: list[str]) -> str:
    """What an interrupted command left behind (QA crash: Ctrl-C printed Prefect's "Crash detected"
    and nothing else). Every writer publishes each file, table and publication folder by a rename
    of a complete copy, and a run skips the files it loaded before, so running it again finishes."""
    if command and command[0] in _WRITING:
        return (f"[yellow]interrupted[/yellow] (Ctrl-C): `biolake {command[0]}` stopped before its end. Nothing "
                "half-written is kept (each file, table and publication is written whole, then renamed into "
                "place); run the same command again to finish it: files already loaded are not read again.")
    return "[yellow]interrupted[/yellow] (Ctrl-C)"


def main() -> None:
    """The `biolake` command: the app, with the expected failures (a missing or changed secret, a
    path that is not a directory, a missing file...) told in one line instead of a traceback
    (BIOLAKE_DEBUG=1 shows it)."""
    from pydantic import ValidationError

    from flows.lock import HomeNotWritable, LockTimeout
    from flows.settings import SecretMissing, WarehouseFormatError
    from transforms.terminology.loinc import LoincFormatError
    from transforms.terminology.mappings import MappingError
    from transforms.epi.mdo import MdoRulesError
    from transforms.terminology.qualitative import QualitativeWordsError

    try:
        app()
    except SystemExit as err:
        if err.code == 130:  # Typer's exit on Ctrl-C, silent but for Prefect's "Crash detected" lines
            errors.print(_interrupted_hint(sys.argv[1:2]), soft_wrap=True, highlight=False)
        raise
    except (SecretMissing, LockTimeout, HomeNotWritable, MappingError, LoincFormatError, QualitativeWordsError,
            MdoRulesError, WarehouseFormatError,
            ValidationError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError) as err:
        if os.environ.get("BIOLAKE_DEBUG") == "1":
            raise
        errors.print(f"[red]error:[/red] {escape(str(err))}", soft_wrap=True, highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
