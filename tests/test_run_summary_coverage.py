"""The `biolake run` summary's LOINC coverage table (flows/cli.py print_summary) and the run's
coverage artifact (flows/artifacts.py): QA F4, a lab sending its results coded in LOINC read
"0 mapped ... 100.0%" -- coverage counts the codes the lab sent as LOINC (n_source_loinc) as well as
the lab-mapping hits (n_mapped), and only the latter were shown."""

from __future__ import annotations

from flows import cli
from flows.artifacts import _coverage_rows


def _summary(tmp_path, coverage: list) -> dict:
    return {"files_new": 2, "files_duplicate": 0, "files_failed": 0, "rows_in": 30, "rows_valid": 30,
            "rows_quarantined": 0, "quarantine_reasons": {}, "mapping_coverage": coverage, "unmapped_codes": 0,
            "marts": {}, "stage_seconds": {}, "home": str(tmp_path), "database": str(tmp_path / "biolake.duckdb")}


def _coverage_lines(text: str) -> dict[str, list[str]]:
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if "LOINC mapping coverage" in ln)
    header = lines[start + 1]
    assert "LOINC sent" in header and "mapped" in header and "coverage" in header
    rows = {}
    for ln in lines[start + 3:]:
        cells = [c for c in ln.split() if c != "│"]
        if not cells or not cells[0].startswith("labo_"):
            break
        rows[cells[0]] = cells[1:]
    return rows


def test_the_coverage_table_shows_the_loinc_the_lab_sent(tmp_path):
    # (source, n_results, n_mapped, n_source_loinc, share_coded), as flows/publish.py writes them
    coverage = [("labo_csv", 20, 18, 0, 0.9), ("labo_hl7", 10, 0, 10, 1.0)]
    with cli.console.capture() as cap:
        cli.print_summary(_summary(tmp_path, coverage))
    rows = _coverage_lines(cap.get())
    assert rows == {"labo_csv": ["20", "18", "0", "90.0%"], "labo_hl7": ["10", "0", "10", "100.0%"]}
    assert [r["n_source_loinc"] for r in _coverage_rows({"mapping_coverage": coverage})] == [0, 10]


def test_a_summary_written_before_the_loinc_sent_count_still_prints(tmp_path):
    coverage = [("labo_csv", 20, 18, 0.9)]  # (source, n_results, n_mapped, share_coded)
    with cli.console.capture() as cap:
        cli.print_summary(_summary(tmp_path, coverage))
    assert _coverage_lines(cap.get()) == {"labo_csv": ["20", "18", "90.0%"]}  # LOINC sent: empty
    assert _coverage_rows({"mapping_coverage": coverage}) == [
        {"source": "labo_csv", "n_results": 20, "n_mapped": 18, "n_source_loinc": None, "coverage": 0.9}]
