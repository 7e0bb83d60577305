"""Scheduled deployments and `biolake serve`: a local Prefect server with its UI, serving them.

| deployment | flow | schedule |
|---|---|---|
| biolake-pipeline/ingest-every-15-min | ingest new files, republish what they touch, quality gate | every 15 minutes |
| biolake-publication/daily-indicators | SI-DEP and MDO marts, gate, publication, data-quality report | every day at 06:00 |
| biolake-reports/weekly | the weekly epidemiological and data-quality reports | Mondays at 08:00 |

There is no weekly MDO deployment: the daily publication writes the MDO weekly files too (complete
ISO weeks only), so a Monday `weekly-mdo` run of the same flow (earlier versions had one) re-issued
the issue the 06:00 run had just written.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

TIMEZONE = "Europe/Paris"


def deployments(home: str) -> list:
    from flows import pipeline as p

    params = {"home": home}
    # every 15 minutes the reports are not rebuilt (the weekly deployment does it): ingestion stays light
    deps = [p.pipeline.to_deployment(name="ingest-every-15-min", interval=900, parameters={**params, "reports": False},
                                     description="Ingest whatever is new in the landing area and republish "
                                                 "(the data-quality report is rebuilt by "
                                                 "biolake-publication/daily-indicators, both reports by "
                                                 "biolake-reports/weekly).")]
    for flow_fn, name, cron, desc in scheduled_flows():
        deps.append(flow_fn.to_deployment(name=name, schedules=[_cron(cron)], parameters=params, description=desc))
    return deps


def scheduled_flows() -> list[tuple]:
    """(flow, deployment name, cron, description) of the scheduled flows besides ingestion."""
    from flows import scheduled

    return [
        (scheduled.publication_flow, "daily-indicators", "0 6 * * *",
         "SI-DEP indicators and notifiable-disease weekly cases (complete ISO weeks), their publication, "
         "and the data-quality report."),
        (scheduled.reports_flow, "weekly", "0 8 * * 1", "Weekly epidemiological and data-quality reports."),
    ]


def _cron(expr: str):
    from prefect.client.schemas.schedules import CronSchedule

    return CronSchedule(cron=expr, timezone=TIMEZONE)


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def wait_for_server(api_url: str, process: subprocess.Popen | None = None, timeout: float = 120) -> None:
    """Until ``api_url`` answers; fails at once when ``process`` (the server we started) has exited."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the Prefect server stopped (exit code {process.returncode}) before answering at "
                               f"{api_url}: see its log")
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except Exception as err:  # noqa: BLE001 - any failure means not up yet
            last = err
        time.sleep(0.5)
    raise RuntimeError(f"the Prefect server at {api_url} did not answer within {timeout:.0f} s: {last}")


def start_server(prefect_home: Path, host: str, port: int, log_path: Path) -> subprocess.Popen:
    """`prefect server start` as a child process, its database in prefect_home."""
    env = dict(os.environ, PREFECT_HOME=str(prefect_home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_UI_API_URL=f"http://{host}:{port}/api")
    env.pop("PREFECT_API_URL", None)
    prefect_home.mkdir(parents=True, exist_ok=True)
    log = log_path.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


