"""Quarantined results settled by a later delivery (quality/settled.py, flows.publish.publish_settled):
a lab fixes a refused result and sends it again in a later file (QA ledger F6: the old quarantine
kept counting among the lab's problems, and nothing said which ones were fixed). Hand-made CSV
extracts, one run per delivery, temporary homes only."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl

from flows import publish
from quality import settled as st
from tests.epi_support import run_steps
from tests.helpers import HEADER, line, nir
from warehouse import catalog as cat

LAB = "labo_alpha"
GOOD = nir("2550999000116")


def settle_frames(quarantined: pl.DataFrame, later: pl.DataFrame, files: pl.DataFrame) -> pl.DataFrame:
    """``settled.settle_sql`` on frames, nothing settled before: what publish_settled runs on the
    warehouse's files."""
    import duckdb

    con = duckdb.connect()
    try:
        con.register("k", quarantined)
        con.register("v", later)
        con.register("f", files)
        con.register("d", pl.DataFrame(schema={"file_id": pl.Utf8, "result_no": pl.Int64}))
        return con.sql(st.settle_sql("k", "v", "f", "d", 0)).pl()
    finally:
        con.close()


class Home:
    def __init__(self, tmp_path: Path, lab: str = LAB):
        self.home = tmp_path / "home"
        self.lab = lab
        (self.home / "landing" / lab).mkdir(parents=True)
        self.runs = 0

    def deliver(self, name: str, *lines: str, lab: str | None = None) -> Home:
        folder = self.home / "landing" / (lab or self.lab)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")
        self.runs += 1
        self.ctx, _ = run_steps(self.home, f"run-{self.runs}")
        self.new = publish.publish_settled(self.ctx)
        return self

    def quarantined(self) -> list[tuple]:
        """(file name, result_no, reason) of each quarantined result."""
        wh = self.ctx.wh
        q = wh.read(cat.QUARANTINE).filter(pl.col("result_no").is_not_null())
        return sorted((p.rsplit("/", 1)[-1], n, r) for p, n, r in q.select("path", "result_no", "reason_code").rows())

    def settled(self) -> list[tuple]:
        """(file name of the quarantined result, result_no, file name that settled it)."""
        wh = self.ctx.wh
        names = dict(wh.read(cat.FILE_LOG).filter(pl.col("status") == "loaded").select("file_id", "path").rows())
        s = wh.read(cat.QUARANTINE_SETTLED)
        return sorted((names[f].rsplit("/", 1)[-1], n, names[by].rsplit("/", 1)[-1])
                      for f, n, by in s.select("file_id", "result_no", "settled_by_file_id").rows())


def test_a_corrected_redelivery_settles_the_results_it_sends_again(tmp_path):
    h = Home(tmp_path)
    h.deliver("day1.csv",
              line(N_DEMANDE="R1"),                                   # valid
              line(N_DEMANDE="R2", STATUT="Z"),                         # refused, sent again fixed
              line(N_DEMANDE="R3", NIR=GOOD[:7]),                     # refused, never sent again
              line(N_DEMANDE="R4", CODE_ANALYSE="CRP", STATUT="Z"))     # refused; only GLY of R4 comes back
    assert [(f, n) for f, n, _ in h.quarantined()] == [("day1.csv", 2), ("day1.csv", 3), ("day1.csv", 4)]
    assert h.settled() == [] and h.new == 0
    h.deliver("day1_v2.csv", line(N_DEMANDE="R2"), line(N_DEMANDE="R4"))
    assert h.settled() == [("day1.csv", 2, "day1_v2.csv")]
    assert h.new == 1
    # the quarantine itself is unchanged: still the record of what was refused and why
    assert [(f, n) for f, n, _ in h.quarantined()] == [("day1.csv", 2), ("day1.csv", 3), ("day1.csv", 4)]
    # kept once found, not found again
    h.deliver("day2.csv", line(N_DEMANDE="R9"))
    assert h.settled() == [("day1.csv", 2, "day1_v2.csv")] and h.new == 0
    row = h.ctx.wh.read(cat.QUARANTINE_SETTLED).row(0, named=True)
    log = h.ctx.wh.read(cat.FILE_LOG).filter(pl.col("path").str.ends_with("day1_v2.csv"))
    assert row["settled_at"] == log["registered_at"][0]


def test_the_same_request_number_another_day_or_another_lab_settles_nothing(tmp_path):
    h = Home(tmp_path)
    h.deliver("day1.csv", line(N_DEMANDE="R1", STATUT="Z", DATE_PRELEVEMENT="02/11/2026 08:30"))
    # daily request numbers: R1 of the next day is another request
    h.deliver("day2.csv", line(N_DEMANDE="R1", DATE_PRELEVEMENT="03/11/2026 08:30",
                               DATE_RECEPTION="03/11/2026 10:00", DATE_VALIDATION="03/11/2026 18:00"))
    # another lab's R1
    h.deliver("b.csv", line(N_DEMANDE="R1", FINESS="690001235"), lab="labo_beta")
    assert h.settled() == []
    # the right day, in this lab: settled
    h.deliver("day1_v2.csv", line(N_DEMANDE="R1"))
    assert h.settled() == [("day1.csv", 1, "day1_v2.csv")]


def test_an_unreadable_collection_date_is_matched_on_request_and_test(tmp_path):
    h = Home(tmp_path)
    h.deliver("day1.csv", line(N_DEMANDE="R1", DATE_PRELEVEMENT="31/11/2026 08:30"))
    assert [r for _, _, r in h.quarantined()][:1] == ["DATE_INVALID"]
    h.deliver("day1_v2.csv", line(N_DEMANDE="R1"))
    assert h.settled() == [("day1.csv", 1, "day1_v2.csv")]


def test_an_earlier_file_does_not_settle_a_later_quarantine(tmp_path):
    h = Home(tmp_path)
    h.deliver("first.csv", line(N_DEMANDE="R1"))
    h.deliver("second.csv", line(N_DEMANDE="R1", RESULTAT="5,9", STATUT="Z"))
    assert h.settled() == []


def test_settle_takes_the_earliest_later_file_and_skips_rows_without_request_or_code():
    day = datetime(2026, 11, 2, 8, 30)
    quarantined = pl.DataFrame({
        "file_id": ["a", "a", "a"], "result_no": [1, 2, 3], "source": ["lab"] * 3,
        "request_key": ["k1", None, "k3"], "local_code": ["GLY", "GLY", None],
        "collected_at": [day, day, day]})
    later = pl.DataFrame({
        "file_id": ["c", "b", "b", "b"], "file_seq": [3, 2, 2, 2], "source": ["lab"] * 4,
        "request_key": ["k1", "k1", None, "k3"], "local_code": ["GLY", "GLY", "GLY", None],
        "collected_at": [day] * 4})
    files = pl.DataFrame({"file_id": ["a", "b", "c"], "file_seq": [1, 2, 3],
                          "registered_at": [datetime(2026, 11, d) for d in (2, 3, 4)]})
    got = settle_frames(quarantined, later, files)
    assert got.rows() == [("a", 1, "b", datetime(2026, 11, 3))]


def test_the_data_quality_report_counts_settled_results_apart_and_shows_outstanding_ones_only(tmp_path):
    from quality import summaries as S
    from quality.reports import dq

    h = Home(tmp_path)
    h.deliver("day1.csv", line(N_DEMANDE="R1"), line(N_DEMANDE="R2", STATUT="Z"), line(N_DEMANDE="R3", NIR=GOOD[:7]),
              line(N_DEMANDE="R4", CODE_ANALYSE="CRP", STATUT="Z"))

    def report():
        con = S.connect(h.ctx.wh)
        try:
            src = S.Sources(h.ctx.wh)
            return dq._files(con, src, h.home / "landing"), dq._examples(con, src)
        finally:
            con.close()

    files, examples = report()
    lab = files["by_lab"][0]
    assert (lab["rows_quarantined"], lab["rows_settled"], lab["rows_outstanding"]) == (3, 0, 3)
    assert lab["share_quarantined"] == 3 / 4
    assert sorted(e["line_no"] for e in examples["STATUS_INVALID"]) == [3, 5]
    h.deliver("day1_v2.csv", line(N_DEMANDE="R2"))
    files, examples = report()
    lab = files["by_lab"][0]
    assert (lab["rows_quarantined"], lab["rows_settled"], lab["rows_outstanding"]) == (3, 1, 2)
    assert lab["share_quarantined"] == 2 / 5
    assert files["totals"]["rows_settled"] == 1 and files["totals"]["rows_outstanding"] == 2
    # the fixed result is no longer an example; the line-level ones stay
    assert [e["line_no"] for e in examples["STATUS_INVALID"]] == [5]
    assert sum(len(v) for v in examples.values()) >= 2
