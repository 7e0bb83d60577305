"""Prefect artifacts of a pipeline run, under stable keys so the UI shows their history.

``publish_artifacts(summary, report_paths, gate)`` is called once at the end of a flow run. Every
key below gets one new version per run (Prefect keeps the history of a key; the Artifacts page
shows the latest):

| key | type | content |
|---|---|---|
| ``biolake-run-summary`` | markdown | files, rows in = valid + quarantined, quality gate, reports, time per stage, files loaded with a warning |
| ``biolake-quality-gate`` | markdown | gate status and every failed expectation (critical first) |
| ``biolake-files`` | table | the files this run processed with their row accounting |
| ``biolake-row-counts`` | table | files and rows of the run, rows of each mart |
| ``biolake-quarantine-reasons`` | table | quarantined rows per reason |
| ``biolake-mapping-coverage`` | table | results and LOINC coverage per lab |
| ``biolake-quality-suites`` | table | per GX suite: expectations evaluated, critical failures, warnings |
| ``biolake-weekly-report`` | link | file:// link to the weekly epidemiological report |
| ``biolake-data-quality-report`` | link | file:// link to the data-quality report |
| ``biolake-data-docs`` | link | file:// link to the Great Expectations Data Docs |
| ``biolake-publication`` | markdown | the issue written (folder and manifest links, its files) or why none was |

``summary`` is the flow's summary dict (missing entries are skipped; ``publication``: what
flows.epi.export_publication returned, ``publication_blocked``: the gate's reason when the run meant
to publish and could not; the publication artifact is made only by a run that meant to publish),
``report_paths`` what flows.reports.build_reports returns (or some of it), ``gate`` what
flows.quality_gate.run_quality_gate returns (``{}`` when the gate did not run, ``None`` when the
flow does not run it, such as the weekly reports: then no gate artifact, and the latest one stays the
latest gate's). Returns ``{key: artifact id}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID

KEYS = {
    "summary": "biolake-run-summary", "gate": "biolake-quality-gate", "files": "biolake-files",
    "counts": "biolake-row-counts", "reasons": "biolake-quarantine-reasons", "coverage": "biolake-mapping-coverage",
    "suites": "biolake-quality-suites", "weekly": "biolake-weekly-report", "data_quality": "biolake-data-quality-report",
    "data_docs": "biolake-data-docs", "publication": "biolake-publication",
}
LINKS = (("weekly", "Weekly epidemiological report"), ("data_quality", "Data-quality and lab-activity report"),
         ("data_docs", "Great Expectations Data Docs"))


def _uri(path: str | Path) -> str:
    return Path(path).resolve().as_uri()


def _gate_status(gate: dict) -> str:
    if not gate:
        return "not run"
    if gate.get("ok"):
        return f"passed ({gate.get('evaluated', 0)} expectations, {gate.get('failed_warning', 0)} warning(s))"
    return f"FAILED: {gate.get('failed_critical', 0)} critical expectation(s) failed, exports blocked"


def _md_table(header: tuple[str, ...], rows: list[tuple]) -> list[str]:
    if not rows:
        return []
    esc = [[str(v).replace("|", "\\|").replace("\n", " ") for v in r] for r in rows]
    return ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header), *["| " + " | ".join(r) + " |" for r in esc]]


def _coverage_rows(summary: dict) -> list[dict]:
    rows = []
    for r in summary.get("mapping_coverage") or []:
        if isinstance(r, dict):
            rows.append(r)
        else:  # (source, n_results, n_mapped, n_source_loinc, share) tuples of the flow's summary
            # (source, n_results, n_mapped, share) in a summary written before n_source_loinc was
            vals = list(r)
            share = vals[-1] if len(vals) > 3 else None
            rows.append({"source": vals[0], "n_results": vals[1], "n_mapped": vals[2],
                         "n_source_loinc": vals[3] if len(vals) > 4 else None,
                         "coverage": round(float(share), 4) if share is not None else None})
    return rows


def summary_markdown(summary: dict, report_paths: dict, gate: dict) -> str:
    s = summary
    lines = [f"# biolake run {s.get('run_id', '')}", ""]
    if "files_new" in s:
        lines.append(f"- files: {s.get('files_new', 0)} loaded, {s.get('files_duplicate', 0)} re-deliveries skipped, "
                     f"{s.get('files_failed', 0)} failed")
    if "rows_in" in s:
        lines.append(f"- rows: {s['rows_in']:,} in = {s.get('rows_valid', 0):,} valid + "
                     f"{s.get('rows_quarantined', 0):,} quarantined")
    if "unmapped_codes" in s:
        lines.append(f"- unmapped local codes waiting: {s['unmapped_codes']}")
    if gate is None:
        lines.append("- quality gate: not run by this flow (the latest result: artifact biolake-quality-gate)")
    else:
        lines.append(f"- quality gate: **{_gate_status(gate)}**")
    for f in (gate or {}).get("failures", [])[:10]:
        lines.append(f"  - {f}")
    pub = s.get("publication")
    if isinstance(pub, dict):
        n = pub["files"] if isinstance(pub.get("files"), int) else len(pub.get("files") or [])
        folder = pub.get("folder")
        lines.append(f"- publication {pub.get('issue_date')}: {n} files in [{folder}]({_uri(folder)})")
    elif s.get("publication_blocked"):
        lines.append("- publication: **not written** (the quality gate blocked it)")
    for name, label in LINKS:
        if report_paths.get(name):
            lines.append(f"- [{label}]({_uri(report_paths[name])})")
    lines += _md_table(("mart", "rows"), [(f"marts.{k}", f"{v:,}") for k, v in (s.get("marts") or {}).items()])
    lines += _md_table(("stage", "seconds"), list((s.get("stage_seconds") or {}).items()))
    lines += _md_table(("file not loaded: reason", "files"), list((s.get("failed_file_reasons") or {}).items()))
    lines += _md_table(("quarantine reason", "rows"), list((s.get("quarantine_reasons") or {}).items()))
    lines += _md_table(("file loaded with a warning", "warning"),
                       [(f["path"], f["warnings"]) for f in s.get("files") or [] if f.get("warnings")])
    return "\n".join(lines)


def gate_markdown(gate: dict) -> str:
    lines = [f"# Quality gate: {_gate_status(gate)}", ""]
    if not gate:
        return "\n".join(lines + ["The Great Expectations gate did not run in this flow run."])
    if gate.get("failures"):
        lines += ["## Critical failures (exports blocked)", *[f"- {f}" for f in gate["failures"]], ""]
    if gate.get("warnings"):
        lines += ["## Warnings", *[f"- {w}" for w in gate["warnings"]], ""]
    lines.append(f"Results: table `{gate.get('results_table', 'quality.expectation_results')}`"
                 + (f", [Data Docs]({_uri(gate['data_docs'])})" if gate.get("data_docs") else "")
                 + (f"; {gate['seconds']} s." if gate.get("seconds") is not None else "."))
    return "\n".join(lines)


def publication_markdown(summary: dict) -> str | None:
    """The issue a run wrote (folder, manifest, files), or why it wrote none; None when the run did
    not mean to publish."""
    pub, blocked = summary.get("publication"), summary.get("publication_blocked")
    if not isinstance(pub, dict):
        if not blocked:
            return None
        return "\n".join(["# Publication: not written", "", blocked, "",
                          "The earlier issues stay as they were (`biolake epi issues`)."])
    folder = Path(pub["folder"])
    lines = [f"# Publication {pub.get('issue_date')}", "", f"- folder: [{folder}]({_uri(folder)})"]
    if (folder / "manifest.json").exists():
        lines.append(f"- manifest: [manifest.json]({_uri(folder / 'manifest.json')})")
    if pub.get("rule"):
        lines.append(f"- disclosure rule: {pub['rule']}")
    files = pub.get("files")
    if isinstance(files, list):
        lines += _md_table(("file", "rows", "period", "suppressed (primary+secondary)"),
                           [(f["file"], f["rows"], f"{f.get('period_start')} .. {f.get('period_end')}",
                             f"{f.get('cells_primary')}+{f.get('cells_secondary')}") for f in files])
    elif files is not None:
        lines.append(f"- files: {files}")
    return "\n".join(lines)


def publish_artifacts(summary: dict, report_paths: dict | None = None, gate: dict | None = None) -> dict[str, UUID]:
    """Create this run's artifacts (see the module docstring). Call inside a flow run."""
    from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

    gate_ran = gate is not None
    report_paths, gate = dict(report_paths or {}), dict(gate or {})
    if gate.get("data_docs") and "data_docs" not in report_paths:
        report_paths["data_docs"] = gate["data_docs"]
    ids: dict[str, UUID] = {}
    ids[KEYS["summary"]] = create_markdown_artifact(
        key=KEYS["summary"], markdown=summary_markdown(summary, report_paths, gate if gate_ran else None),
        description="Run summary")
    if gate_ran:
        ids[KEYS["gate"]] = create_markdown_artifact(
            key=KEYS["gate"], markdown=gate_markdown(gate), description="Great Expectations quality gate")
    pub = publication_markdown(summary)
    if pub is not None:
        ids[KEYS["publication"]] = create_markdown_artifact(key=KEYS["publication"], markdown=pub,
                                                            description="Publication (SI-DEP and MDO files)")
    if summary.get("files"):
        ids[KEYS["files"]] = create_table_artifact(key=KEYS["files"], table=list(summary["files"]),
                                                   description="Files processed in this run")
    counts: list[dict[str, Any]] = [{"what": k, "count": summary[k]} for k in
                                    ("files_seen", "files_new", "files_duplicate", "files_failed", "rows_in",
                                     "rows_valid", "rows_quarantined", "unmapped_codes") if k in summary]
    counts += [{"what": f"marts.{k}", "count": v} for k, v in (summary.get("marts") or {}).items()]
    if counts:
        ids[KEYS["counts"]] = create_table_artifact(key=KEYS["counts"], table=counts,
                                                    description="Row counts of this run")
    reasons = [{"reason": k, "rows": v} for k, v in (summary.get("quarantine_reasons") or {}).items()]
    if reasons:
        ids[KEYS["reasons"]] = create_table_artifact(key=KEYS["reasons"], table=reasons,
                                                     description="Quarantined rows per reason")
    coverage = _coverage_rows(summary)
    if coverage:
        ids[KEYS["coverage"]] = create_table_artifact(key=KEYS["coverage"], table=coverage,
                                                      description="LOINC coverage per lab")
    suites = [{"suite": k, **v} for k, v in (gate.get("suites") or {}).items()]
    if suites:
        ids[KEYS["suites"]] = create_table_artifact(key=KEYS["suites"], table=suites,
                                                    description="Great Expectations suites of this run")
    for name, label in LINKS:
        if report_paths.get(name):
            ids[KEYS[name]] = create_link_artifact(key=KEYS[name], link=_uri(report_paths[name]), link_text=label,
                                                   description=label)
    return ids
