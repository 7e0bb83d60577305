"""Building the reports, from a flow or from the command line.

``build_reports(ctx)`` writes, under ``<home>/reports/``:

- ``weekly_<YYYY-Www>.html`` (the newest ISO week with data, or ``week``) and ``weekly_latest.html``;
- ``data_quality.html``;
- with ``pdf=True`` and Chromium installed, a PDF next to each (printed by headless Chromium);

and returns ``{"weekly": path, "weekly_latest": path, "data_quality": path, "data_docs": path | None,
"pdf": {...}}`` (paths as strings, absent entries left out). The data-quality report shows the latest
results of the quality gate, so call it after ``run_quality_gate``.

``reports_app`` is the ``biolake report`` sub-command::

    biolake report weekly [--week 2026-W45] [--pdf]   # the weekly epidemiological report
    biolake report dq                                 # the data-quality and lab-activity report
    biolake report all [--pdf]                        # both
    biolake report gate                               # run the quality gate now, print its result
    biolake report weeks                              # the ISO weeks that have data
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional

import typer

from flows.cli_errors import fail, require_warehouse

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")


def reports_dir(ctx) -> Path:
    return Path(ctx.wh.home) / "reports"


def build_weekly(ctx, week: str | None = None, now: datetime | None = None) -> Path:
    """The weekly report, hiding exactly the cells the published files hide (one suppression
    pattern for everything published: flows.epi.published_pattern)."""
    from flows import steps
    from flows.epi import published_pattern
    from quality.reports import weekly

    pattern = published_pattern(ctx, steps.read_refs(ctx))
    return weekly.build_weekly(ctx.wh, ctx.settings.seeds_dir, reports_dir(ctx), week=week,
                               run_id=str(ctx.run_id), now=now, pattern=pattern)


def build_dq(ctx, now: datetime | None = None) -> Path:
    from quality.reports import dq

    return dq.build_dq(ctx.wh, reports_dir(ctx), run_id=str(ctx.run_id), now=now)


def build_reports(ctx, week: str | None = None, pdf: bool = False, now: datetime | None = None) -> dict:
    """Both reports (see the module docstring); returns their paths."""
    out: dict = {}
    weekly = build_weekly(ctx, week, now)
    out["weekly"] = str(weekly)
    latest = weekly.with_name("weekly_latest.html")
    if latest.exists():
        out["weekly_latest"] = str(latest)
    out["data_quality"] = str(build_dq(ctx, now))
    docs = reports_dir(ctx) / "data_docs" / "index.html"
    if docs.exists():
        out["data_docs"] = str(docs)
    if pdf:
        out["pdf"] = {k: str(print_pdf(Path(out[k]))) for k in ("weekly", "data_quality") if chromium()}
    return out


def build_reports_task(home: str, week: str | None = None) -> dict:
    """Inside a flow: ``build_reports`` as a Prefect task named "build-reports", taking the data home
    like the pipeline's other tasks (run id = the flow run's). The task object is made on first use
    so that importing this module (the CLI does) does not import Prefect."""
    return _reports_task()(home, week=week)


def _reports_for_home(home: str, week: str | None = None) -> dict:
    from prefect.runtime import flow_run

    from flows.settings import Settings
    from flows.steps import Context

    run_id = str(flow_run.get_id() or datetime.now().strftime("local-%Y%m%dT%H%M%S"))
    return build_reports(Context.create(Settings(home=home), run_id), week=week)


@functools.cache
def _reports_task():
    from prefect import task
    from prefect.cache_policies import NONE

    return task(name="build-reports", cache_policy=NONE)(_reports_for_home)


def chromium() -> str | None:
    for c in CHROMIUM:
        if Path(c).exists():
            return c
    return shutil.which("chromium")


def _chromium_args(binary: str, profile: str) -> list[str]:
    return [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
            f"--user-data-dir={profile}"]


def print_pdf(html: Path, timeout: float = 120) -> Path:
    """Print ``html`` to a PDF beside it with headless Chromium (Debian package ``chromium``)."""
    binary = chromium()
    if binary is None:
        raise RuntimeError("Chromium is not installed (apt-get install -y chromium): no PDF")
    pdf = html.with_suffix(".pdf")
    with tempfile.TemporaryDirectory(prefix="biolake-chromium-") as profile:
        subprocess.run([*_chromium_args(binary, profile), "--no-pdf-header-footer", f"--print-to-pdf={pdf}",
                        html.resolve().as_uri()], check=True, capture_output=True, timeout=timeout)
    return pdf


def screenshot(html: Path, png: Path, width: int = 1200, height: int = 2000, timeout: float = 120) -> Path:
    """A PNG of the top of ``html`` rendered by headless Chromium (used by the tests)."""
    binary = chromium()
    if binary is None:
        raise RuntimeError("Chromium is not installed (apt-get install -y chromium)")
    with tempfile.TemporaryDirectory(prefix="biolake-chromium-") as profile:
        subprocess.run([*_chromium_args(binary, profile), f"--screenshot={png}", f"--window-size={width},{height}",
                        html.resolve().as_uri()], check=True, capture_output=True, timeout=timeout)
    return png


# --------------------------------------------------------------------------------------------
# the `biolake report` sub-command
# --------------------------------------------------------------------------------------------
reports_app = typer.Typer(no_args_is_help=True, help="Reports: weekly epidemiological report, data quality, gate.")
HomeOpt = Annotated[Optional[Path], typer.Option("--home", help="data directory (env BIOLAKE_HOME, default ./data)")]


def _cli_ctx(home: Path | None):
    from flows.settings import Settings
    from flows.steps import Context

    settings = Settings(**({"home": home} if home is not None else {}))
    require_warehouse(settings.home_abs)
    return Context.create(settings, run_id=datetime.now().strftime("cli-%Y%m%dT%H%M%S"))


@contextmanager
def _locked(ctx):
    """The warehouse lock around a report built outside a run: a run rewrites the marts and
    compacts the tables the reports read, and the reports write too (quality.epi_suppression,
    the gate's quality.expectation_results). A run holding the lock is waited for, as by
    `biolake epi export`; after BIOLAKE_LOCK_TIMEOUT the command stops in one line."""
    from flows.lock import warehouse_lock

    with warehouse_lock(ctx.wh.home, timeout=ctx.settings.lock_timeout):
        yield ctx


@reports_app.command("weekly")
def weekly_cmd(
    home: HomeOpt = None,
    week: Annotated[Optional[str], typer.Option(help="ISO week, e.g. 2026-W45 (default: the newest with data)")] = None,
    pdf: Annotated[bool, typer.Option("--pdf", help="also print a PDF with headless Chromium")] = False,
) -> None:
    """Write <home>/reports/weekly_<week>.html."""
    try:
        with _locked(_cli_ctx(home)) as ctx:
            path = build_weekly(ctx, week)
    except ValueError as err:
        fail(err)
    typer.echo(str(path))
    if pdf:
        typer.echo(str(print_pdf(path)))


@reports_app.command("dq")
def dq_cmd(home: HomeOpt = None,
           pdf: Annotated[bool, typer.Option("--pdf", help="also print a PDF with headless Chromium")] = False) -> None:
    """Write <home>/reports/data_quality.html."""
    with _locked(_cli_ctx(home)) as ctx:
        path = build_dq(ctx)
    typer.echo(str(path))
    if pdf:
        typer.echo(str(print_pdf(path)))


@reports_app.command("all")
def all_cmd(home: HomeOpt = None,
            week: Annotated[Optional[str], typer.Option(help="ISO week of the weekly report")] = None,
            pdf: Annotated[bool, typer.Option("--pdf", help="also print PDFs with headless Chromium")] = False) -> None:
    """Write both reports."""
    with _locked(_cli_ctx(home)) as ctx:
        paths = build_reports(ctx, week=week, pdf=pdf)
    for name, path in paths.items():
        typer.echo(f"{name}: {path}")


@reports_app.command("gate")
def gate_cmd(home: HomeOpt = None) -> None:
    """Run the Great Expectations quality gate now (outside a flow) and print its result.
    Exits with status 1 when a critical expectation fails."""
    from flows.quality_gate import block_reason, run_quality_gate

    with _locked(_cli_ctx(home)) as ctx:
        gate = run_quality_gate(ctx)
    typer.echo(f"{gate['evaluated']} expectations, {gate['failed_critical']} critical failure(s), "
               f"{gate['failed_warning']} warning(s) in {gate['seconds']} s; Data Docs: {gate['data_docs']}")
    for w in gate["warnings"]:
        typer.echo(f"  warning: {w}")
    reason = block_reason(gate)
    if reason:
        typer.echo(reason, err=True)
        raise typer.Exit(1)


@reports_app.command("weeks")
def weeks_cmd(home: HomeOpt = None) -> None:
    """List the ISO weeks that have tested persons."""
    from quality.reports.weekly import available_weeks

    for w in available_weeks(_cli_ctx(home).wh):
        typer.echo(w)
