"""`biolake serve`: a real local Prefect server with the scheduled deployments, reachable over HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: dict) -> list | dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def test_serve_registers_the_scheduled_deployments(tmp_path):
    port = free_port()
    (tmp_path / "home" / "landing").mkdir(parents=True)  # serve refuses a home without one
    # the schedulers loop every few seconds here (60 s by default) so that the test sees their work
    env = dict(os.environ, BIOLAKE_HOME=str(tmp_path / "home"), PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="3")
    for k in ("PREFECT_API_URL", "PREFECT_HOME"):
        env.pop(k, None)
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "serve", "--port", str(port)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    api = f"http://127.0.0.1:{port}/api"
    found: dict = {}
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and len(found) < 3:
            if proc.poll() is not None:
                pytest.fail("biolake serve stopped: " + proc.stdout.read().decode(errors="replace")[-3000:])
            try:
                deps = post(f"{api}/deployments/filter", {})
                flows = {f["id"]: f["name"] for f in post(f"{api}/flows/filter", {})}
                found = {f"{flows[d['flow_id']]}/{d['name']}": d for d in deps}
            except OSError:
                pass
            time.sleep(1)
        # (no weekly-mdo: it was daily-indicators again, QA N8)
        assert set(found) == {"biolake-pipeline/ingest-every-15-min", "biolake-publication/daily-indicators",
                              "biolake-reports/weekly"}, found.keys()
        ingest = found["biolake-pipeline/ingest-every-15-min"]["schedules"][0]["schedule"]
        assert ingest["interval"] == 900.0
        assert found["biolake-pipeline/ingest-every-15-min"]["parameters"]["reports"] is False
        daily = found["biolake-publication/daily-indicators"]["schedules"][0]["schedule"]
        assert daily["cron"] == "0 6 * * *" and daily["timezone"] == "Europe/Paris"
        # no Prefect concurrency limit: one left taken by a killed run stopped every later run (QA crash
        # F1); the warehouse's file lock keeps writers apart
        assert post(f"{api}/v2/concurrency_limits/filter", {}) == []
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:  # the UI is served too
            assert r.status == 200 and b"<html" in r.read(2000).lower()
        # QA: the server's scheduler failed on every loop (SQLAlchemy 2.1), so no run ever fired;
        # the schedules must turn into scheduled flow runs of every deployment
        scheduled: set = set()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len(scheduled) < 3:
            runs = post(f"{api}/flow_runs/filter", {"flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}})
            scheduled = {r["deployment_id"] for r in runs}
            time.sleep(2)
        assert scheduled == {d["id"] for d in found.values()}, (
            scheduled, (tmp_path / "home" / "prefect-server.log").read_text(errors="replace")[-3000:])
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
