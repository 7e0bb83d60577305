"""The landing area's odd entries (QA): a file with a header and no result."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from flows import steps
from flows.settings import Settings
from tests.helpers import HEADER, line
from warehouse import catalog as cat


def _deliver(home: Path, rel: str, text: str) -> Path:
    path = home / "landing" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _ctx(home: Path, run_id: str = "t") -> steps.Context:
    return steps.Context.create(Settings(home=home), run_id)


class _Warnings(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def flow_warnings():
    """The warnings the flows log (Prefect's run logger)."""
    handler = _Warnings()
    logger = logging.getLogger("prefect.flow_runs")
    logger.addHandler(handler)
    yield handler.messages
    logger.removeHandler(handler)


# --------------------------------------------------------------------------------------------
# a file with a header and no result
# --------------------------------------------------------------------------------------------
def test_a_header_only_file_is_not_owed_by_every_later_run(prefect_harness, tmp_path, flow_warnings):
    """QA: a file of a header and no row got a coded partition and no fact partition, and every
    later run warned that it was processed by an interrupted run and published it again."""
    from flows.pipeline import ingest_flow, publish_flow

    home = tmp_path / "home"
    _deliver(home, "labo_alpha/a.csv", f"{HEADER}\n{line()}\n")
    _deliver(home, "labo_alpha/nothing_today.csv", f"{HEADER}\n")
    first = ingest_flow(home=str(home))
    assert first["totals"]["files_new"] == 2 and first["totals"]["rows_in"] == 1
    publish_flow(home=str(home), changed=first["changed"])
    assert steps.owed_publication(_ctx(home)) == []
    flow_warnings.clear()
    second = ingest_flow(home=str(home))
    assert second["changed"] == [] and second["totals"] == {}
    assert not [m for m in flow_warnings if "interrupted run" in m], flow_warnings
    log = _ctx(home).wh.read(cat.FILE_LOG).sort("path")
    assert log.select("path", "status", "rows_in").rows() == [
        ("labo_alpha/a.csv", "loaded", 1), ("labo_alpha/nothing_today.csv", "loaded", 0)]
