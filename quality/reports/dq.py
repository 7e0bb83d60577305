"""The data-quality and lab-activity report: one self-contained HTML file for data engineers.

What it shows, all computed with DuckDB over the warehouse (quality/summaries.py):

- files per lab and status, the row accounting (rows in = valid + quarantined), the formats each
  lab sent, failed files;
- volumes per lab and collection day;
- delivery delays per lab: collection -> reception -> validation -> delivery to biolake;
- quarantine reasons per lab, with a few examples per reason stripped of identities (file, line,
  column, explanation, and the offending value only for a column on :data:`SAFE_EXAMPLE_COLUMNS`,
  with any NIR-shaped number and the row's own names and birth date masked as in staging; a line the
  parser refused has no value kept, and says so);
- LOINC mapping and unit-conversion coverage per lab, and the head of the mapping work queue;
- text results whose wording is not recognised (counted in neither SI-DEP nor MDO): their share per
  lab and the most frequent texts, the tests that count in SI-DEP or MDO first;
- the Great Expectations results of the latest quality gate, the gate's recent history and a link
  to the Data Docs.

Its counts describe lab activity, not persons' health, so they are shown exactly.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import polars as pl

from quality import summaries as S
from quality.checkpoints import UNRECOGNISED_MAX_SHARE
from quality.reasons import FLAGS, REASONS
from quality.reports import charts, render
from transforms.identity_text import mask_text
from transforms.parsers.detect import FORMAT_NAMES
from transforms.terminology.units import CONVERSION_STATUSES, CONVERTED
from warehouse import catalog as cat
from warehouse.store import Warehouse

EXAMPLES_PER_REASON = 3
BACKLOG_ROWS = 15
UNRECOGNISED_ROWS = 20
GATE_HISTORY_RUNS = 10
VOLUME_TABLE_DAYS = 14
WINDOW_DAYS = 90  # volumes and delays: the last 90 days of collection (bounded as history grows)
# raw columns whose value may be shown in a quarantine example: no identity, no quasi-identifier
SAFE_EXAMPLE_COLUMNS = ("collected_at", "received_at", "validated_at", "result_status", "unit_raw", "local_code",
                        "local_label", "value_raw", "value_type", "loinc_code_src", "specimen", "ins_oid",
                        "abnormal_flag", "ref_range")
LEG_LABELS = {"collection_to_reception": "collection → reception", "reception_to_validation": "reception → validation",
              "validation_to_delivery": "validation → delivery to biolake"}


def _files(con, src: S.Sources, landing: Path) -> dict:
    """Files per lab and status, the row accounting, and the failed files still outstanding.

    A failure counts as the quality gate counts it (``summaries.landing_failures``): a file whose
    newest sighting failed and which is still in the landing area. One loaded since under the same
    name (a re-delivery), removed or purged is resolved: counted apart, no longer listed (QA: the
    report kept asking for files the lab had already fixed)."""
    log = S.frame(con, f"SELECT * FROM {src.rel(cat.FILE_LOG)}")
    ever_failed = (log.filter(pl.col("status") == "failed").sort("registered_at")
                   .group_by("path", maintain_order=True).last())
    outstanding = S.landing_failures(con, src, landing)["path"] if ever_failed.height else pl.Series("path", [], pl.String)
    failed = ever_failed.filter(pl.col("path").is_in(outstanding.implode()))
    resolved = ever_failed.filter(~pl.col("path").is_in(outstanding.implode()))
    by_lab = (log.group_by("source").agg(
        files_loaded=(pl.col("status") == "loaded").sum(), files_duplicate=(pl.col("status") == "duplicate").sum(),
        rows_in=pl.col("rows_in").filter(pl.col("status") == "loaded").sum(),
        rows_valid=pl.col("rows_valid").filter(pl.col("status") == "loaded").sum(),
        rows_quarantined=pl.col("rows_quarantined").filter(pl.col("status") == "loaded").sum(),
        last_delivery=pl.col("registered_at").max(),
        formats=pl.col("format").filter(pl.col("status") == "loaded").drop_nulls().unique().sort())
        .sort("source"))
    per_lab = failed.group_by("source").agg(files_failed=pl.len())
    settled = _settled_by_lab(con, src)
    by_lab = (by_lab.join(per_lab, on="source", how="left", nulls_equal=True)
              .join(settled, on="source", how="left", nulls_equal=True)
              .with_columns(pl.col("files_failed").fill_null(0), pl.col("rows_settled").fill_null(0))
              # the share of the lab's rows still waiting for a fix: a quarantined result a later
              # delivery sent again valid is settled (quality.quarantine_settled)
              .with_columns(rows_outstanding=pl.col("rows_quarantined") - pl.col("rows_settled"))
              .with_columns(share_quarantined=pl.when(pl.col("rows_in") > 0)
                            .then(pl.col("rows_outstanding") / pl.col("rows_in"))))
    by_lab = by_lab.with_columns(pl.col("formats").list.eval(
        pl.element().replace_strict(FORMAT_NAMES, default=pl.element())).list.join(", "))
    totals = {k: int(by_lab[k].sum()) for k in ("files_loaded", "files_duplicate", "files_failed",
                                                 "rows_in", "rows_valid", "rows_quarantined", "rows_settled",
                                                 "rows_outstanding")}
    totals["files_failed_resolved"] = resolved.height
    return {"by_lab": by_lab.to_dicts(),
            "failed": failed.select("path", "source", "reason_code", "detail").sort("path").to_dicts(),
            "totals": totals}


def _settled_by_lab(con, src: S.Sources) -> pl.DataFrame:
    """Per lab, the quarantined results a later delivery settled (quality.quarantine_settled)."""
    if not src.has(cat.QUARANTINE_SETTLED) or not src.has(cat.QUARANTINE):
        return pl.DataFrame(schema={"source": pl.String, "rows_settled": pl.Int64})
    return S.frame(con, f"""
        SELECT q.source, count(*)::BIGINT AS rows_settled
        FROM (SELECT DISTINCT file_id, result_no, source FROM {src.rel(cat.QUARANTINE)}
              WHERE result_no IS NOT NULL) q
        JOIN {src.rel(cat.QUARANTINE_SETTLED)} s USING (file_id, result_no)
        GROUP BY 1""")


def _examples(con, src: S.Sources) -> dict[str, list[dict]]:
    """A few quarantined lines per reason: where they are and why; the offending value only for a
    column of SAFE_EXAMPLE_COLUMNS (read from raw.results), never an identity. Results a later
    delivery settled (quality.quarantine_settled) are not examples: the lab fixed them."""
    unsettled = (f"q WHERE NOT EXISTS (SELECT 1 FROM {src.rel(cat.QUARANTINE_SETTLED)} s "
                 "WHERE s.file_id = q.file_id AND s.result_no = q.result_no)"
                 if src.has(cat.QUARANTINE_SETTLED) else "")
    q = S.frame(con, f"""
        SELECT file_id, path, source, line_no, reason_code, "column", detail FROM (
            SELECT *, row_number() OVER (PARTITION BY reason_code ORDER BY path, line_no, "column") AS k
            FROM {src.rel(cat.QUARANTINE)} {unsettled}) WHERE k <= {EXAMPLES_PER_REASON}
        ORDER BY reason_code, path, line_no""")
    rows = q.to_dicts()
    identifying = {c.name for c in cat.RAW_RESULTS.columns if getattr(c, "identifying", False)}
    for r in rows:
        col = r["column"]
        r["value"] = None
        if col is None:
            r["value_note"] = "whole line"
        elif col in identifying or col not in SAFE_EXAMPLE_COLUMNS:
            r["value_note"] = "value not shown (identity or quasi-identifier)"
        else:
            r["value_note"] = None
            got = []
            if (r["line_no"] is not None and src.holds(cat.RAW_RESULTS, [r["file_id"]])
                    and not _rejected_by_parser(con, src, r)):
                got = con.sql(f'SELECT CAST("{col}" AS VARCHAR), family_name, first_name, birth_date '
                              f"FROM {src.wh.sql_source(cat.RAW_RESULTS, [r['file_id']])} "
                              f"WHERE line_no = {int(r['line_no'])} LIMIT 1").fetchall()
            if not got:
                # the parser refused the line (a test identity, a malformed line...): its values never
                # reached raw.results, and raw.rejected_lines keeps only the text, identities included,
                # which is never shown (QA: such a value read "empty or unreadable" while the
                # explanation quoted it)
                r["value_note"] = "not kept (rejected before loading)"
            else:
                # a NIR, name or birth date typed into the text is masked as in staging
                r["value"] = mask_text(*got[0])
                if r["value"] is None:
                    # a typed column (a date, a number) keeps no text it could not read (QA priv F5:
                    # an unreadable date was said to be "empty in the file")
                    r["value_note"] = ("empty in the file" if r["reason_code"] == "MISSING_VALUE"
                                       else "could not be read (its text is not kept)")
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["reason_code"], []).append(r)
    return out


def _rejected_by_parser(con, src: S.Sources, r: dict) -> bool:
    """Whether the quarantined line is one the parser rejected (raw.rejected_lines): its values are in
    no raw.results row, and a raw row of the same line number would be another result's."""
    if r["line_no"] is None or not src.holds(cat.RAW_REJECTED, [r["file_id"]]):
        return False
    return bool(con.sql(f"SELECT 1 FROM {src.wh.sql_source(cat.RAW_REJECTED, [r['file_id']])} "
                        f"WHERE line_no = {int(r['line_no'])} LIMIT 1").fetchall())


def _gate(wh: Warehouse) -> dict:
    t = cat.table("quality.expectation_results")
    res = wh.read(t)
    if res.is_empty():
        return {"available": False}
    runs = (res.group_by("run_id").agg(validated_at=pl.col("validated_at").max(), evaluated=pl.len(),
                                       failed_critical=(~pl.col("success") & pl.col("critical")).sum(),
                                       failed_warning=(~pl.col("success") & ~pl.col("critical")).sum())
            .sort("validated_at", descending=True))
    latest = runs["run_id"][0]
    cur = res.filter(pl.col("run_id") == latest).sort("suite", "expectation_id")
    suites = (cur.group_by("suite").agg(evaluated=pl.len(), failed_critical=(~pl.col("success") & pl.col("critical")).sum(),
                                        failed_warning=(~pl.col("success") & ~pl.col("critical")).sum())
              .sort("suite"))
    return {"available": True, "run_id": latest, "validated_at": runs["validated_at"][0],
            "ok": int(runs["failed_critical"][0]) == 0, "history": runs.head(GATE_HISTORY_RUNS).to_dicts(),
            "suites": suites.to_dicts(), "failed": cur.filter(~pl.col("success")).sort("critical", descending=True).to_dicts(),
            "all": cur.to_dicts()}


def dq_data(wh: Warehouse) -> dict:
    con = S.connect(wh)
    src = S.Sources(wh)
    try:
        files = _files(con, src, wh.home / "landing")
        newest = con.sql(f"SELECT max(collected_date) FROM {src.rel(cat.FCT_LAB_RESULTS)}").fetchall()[0][0]
        since = newest - timedelta(days=WINDOW_DAYS - 1) if newest else None
        lab_day = S.lab_day(con, src, since)
        delays = S.lab_delays(con, src, since)
        reasons = S.quarantine_reasons(con, src)
        flags = S.flag_counts(con, src)
        examples = _examples(con, src)
        conversion = S.conversion_by_lab(con, src)
        coverage = S.read_table(con, src, cat.MAPPING_COVERAGE).sort("source")
        backlog = S.read_table(con, src, cat.UNMAPPED_BACKLOG).sort(
            "n_results", "source", "local_code", descending=[True, False, False], nulls_last=True)
        qualitative = S.read_table(con, src, cat.QUALITATIVE_COVERAGE).sort("source")
        unrecognised = S.read_table(con, src, cat.UNRECOGNISED_RESULTS).sort(
            pl.col("surveillance").is_null(), "n_results", "source", "value_raw",
            descending=[False, True, False, False], nulls_last=True)
    finally:
        con.close()

    volumes = lab_day.group_by("source").agg(n_results=pl.col("n_results").sum(),
                                             first_day=pl.col("collected_date").min(),
                                             last_day=pl.col("collected_date").max()).sort("source")
    recent_days = sorted(set(lab_day["collected_date"].to_list()))[-VOLUME_TABLE_DAYS:]
    pivot = {(r["source"], r["collected_date"]): r["n_results"] for r in lab_day.iter_rows(named=True)}
    by_reason = reasons.group_by("reason_code").agg(n_rows=pl.col("n_rows").sum()).sort("n_rows", descending=True)
    reason_lab = reasons.group_by("reason_code", "source").agg(n_rows=pl.col("n_rows").sum())
    by_flag = flags.group_by("flag").agg(n_results=pl.col("n_results").sum()).sort(
        "n_results", "flag", descending=[True, False])
    labs = sorted({r["source"] for r in files["by_lab"]} | set(coverage["source"].to_list()))
    conv = _conversion_table(conversion, labs)

    svg = {}
    if lab_day.height:
        svg["volumes"] = charts.stacked_bars(lab_day.select("collected_date", "source", "n_results"), "collected_date",
                                             "n_results", "source", "Results per lab and day of collection",
                                             "day of specimen collection", "results")
    if delays.height:
        svg["delays"] = charts.delay_ranges(delays.with_columns(pl.col("leg").replace(LEG_LABELS)),
                                            "Delays per lab (hours)", list(LEG_LABELS.values()))
    if by_reason.height:
        svg["reasons"] = charts.hbar(by_reason, "reason_code", "n_rows", "Quarantined rows by reason", "rows",
                                     color="#b2182b")
    if coverage.height:
        svg["coverage"] = charts.hbar(coverage.select("source", pl.col("n_unmapped").fill_null(0)), "source", "n_unmapped",
                                      "Results without a LOINC code, per lab", "results", color="#b2182b")
    failed_conv = conversion.filter(~pl.col("conversion_status").is_in(list(CONVERTED)))
    if failed_conv.height:
        svg["conversion"] = charts.stacked_bars(failed_conv, "source", "n", "conversion_status",
                                                "Numeric results not in their canonical unit, by reason", "lab",
                                                "results", x_type="N", x_format=None)
    return {
        "files": files, "volumes": volumes.to_dicts(), "recent_days": recent_days, "pivot": pivot, "labs": labs,
        "delays": delays.to_dicts(), "by_reason": by_reason.to_dicts(), "reason_lab": {(r["reason_code"], r["source"]): r["n_rows"] for r in reason_lab.iter_rows(named=True)},
        "reason_labels": REASONS, "by_flag": by_flag.to_dicts(), "flag_labels": FLAGS,
        "flag_lab": {(r["flag"], r["source"]): r["n_results"] for r in flags.iter_rows(named=True)}, "examples": examples, "coverage": coverage.to_dicts(), "conversion": conv,
        "backlog": backlog.head(BACKLOG_ROWS).to_dicts(), "backlog_total": backlog.height,
        "qualitative": qualitative.to_dicts(), "unrecognised": unrecognised.head(UNRECOGNISED_ROWS).to_dicts(),
        "unrecognised_total": unrecognised.height, "unrecognised_max_share": UNRECOGNISED_MAX_SHARE,
        "gate": _gate(wh), "svg": svg, "leg_labels": LEG_LABELS, "since": since, "window_days": WINDOW_DAYS,
    }


def _conversion_table(conversion: pl.DataFrame, labs: list[str]) -> dict:
    statuses = [s for s in CONVERSION_STATUSES if s != "not_numeric" and s in set(conversion["conversion_status"].to_list())]
    counts = {(r["source"], r["conversion_status"]): r["n"] for r in conversion.iter_rows(named=True)}
    rows = []
    for lab in labs:
        n = sum(counts.get((lab, s), 0) for s in statuses)
        ok = sum(counts.get((lab, s), 0) for s in statuses if s in CONVERTED)
        rows.append({"source": lab, "n_numeric": n, "n_converted": ok, "share_converted": ok / n if n else None,
                     "by_status": {s: counts.get((lab, s), 0) for s in statuses}})
    return {"statuses": statuses, "rows": rows, "descriptions": CONVERSION_STATUSES}


def build_dq(wh: Warehouse, out_dir: Path, run_id: str | None = None, now: datetime | None = None) -> Path:
    """Write ``<out_dir>/data_quality.html`` (each run replaces it: the history of the checks is
    in quality.expectation_results and the Data Docs). Returns its path."""
    now = now or datetime.now()
    data = dq_data(wh)
    html = render.render("dq.html.j2", d=data, generated=now.strftime("%Y-%m-%d %H:%M"), run_id=run_id)
    from warehouse.analyst import close_file

    # for data engineers: it names landing files and quotes quarantined values (QA priv F3), so 0600
    return close_file(render.write_atomic(Path(out_dir) / "data_quality.html", html))
