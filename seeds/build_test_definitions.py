"""Derive seeds/test_definitions.csv and the covid19 rows of seeds/mdo_rules.csv.

Run from the repository root after ``seeds/build_seeds.py`` (which calls it too):

    uv run python seeds/build_test_definitions.py

It reads only ``seeds/reference/mdo_loinc_candidates.csv`` (written by build_seeds.py) and applies
the rule of seeds/SOURCES.md: the SARS-CoV-2 RNA (NAAT) and antigen ``[Presence]`` codes of the
covid19 candidates, serologies, sequencing and multi-pathogen panels excluded. The rows of
test_definitions.csv and mdo_rules.csv for other diseases are kept as they are (they are edited by hand, see
seeds/mdo_rules.md); its covid19 rows are replaced by the same codes, so that COVID-19 MDO cases
are the SI-DEP positives.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
DISEASE = "covid19"
COVID_RULE_NOTE = "same codes as seeds/test_definitions.csv (SI-DEP); published in the SI-DEP files"

# another agent named beside SARS-CoV-2 (multi-pathogen tests), or a panel
_OTHER_AGENT = re.compile(r"\bpanel\b|Influenza|Respiratory syncytial|\bRSV\b|Adenovirus|Metapneumovirus",
                          re.IGNORECASE)
_SEROLOGY = re.compile(r"\bAb\b|\bIg[AGM]\b|antibod|neutraliz", re.IGNORECASE)
_NAAT = re.compile(r"\bby (NAA|Nucleic acid amplification)\b", re.IGNORECASE)
_ANTIGEN = re.compile(r"\bAg \[Presence\].* by (Rapid )?immunoassay\b", re.IGNORECASE)


def covid_method(display_en: str) -> str | None:
    """'naat' or 'antigen' when a SARS-CoV-2 candidate's LOINC name is a [Presence] RNA or antigen
    test of SARS-CoV-2 alone; None for panels, multi-pathogen tests, serologies, sequencing,
    quantities (viral load) and anything else."""
    if "[Presence]" not in display_en or _OTHER_AGENT.search(display_en) or _SEROLOGY.search(display_en):
        return None
    if re.search(r"\bSequencing\b", display_en, re.IGNORECASE):
        return None
    if _NAAT.search(display_en):
        return "naat"
    if _ANTIGEN.search(display_en):
        return "antigen"
    return None


def test_definitions(candidates: list[dict[str, str]]) -> list[list[str]]:
    """Rows (disease, loinc_num, method, display_en) in the candidates' order."""
    return [[DISEASE, c["loinc_num"], m, c["display_en"]] for c in candidates
            if c["mdo_id"] == DISEASE and (m := covid_method(c["display_en"])) is not None]


def _csv(header: list[str], rows: list[list[object]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def mdo_rules_text(current: str, codes: list[str]) -> str:
    """``current`` (the text of mdo_rules.csv) with its covid19 rows replaced by one rule per code,
    placed where the first covid19 row was (at the top when there was none)."""
    rows = list(csv.reader(io.StringIO(current)))
    header, body = rows[0], rows[1:]
    col = {name: i for i, name in enumerate(header)}
    at = next((i for i, r in enumerate(body) if r and r[col["mdo_id"]] == DISEASE), 0)
    others = [r for r in body if r and r[col["mdo_id"]] != DISEASE]
    covid = []
    for code in codes:
        r = [""] * len(header)
        r[col["mdo_id"]], r[col["loinc_num"]], r[col["condition"]] = DISEASE, code, "pos"
        r[col["episode_days"]], r[col["active"]], r[col["note"]] = "60", "yes", COVID_RULE_NOTE
        covid.append(r)
    at = min(at, len(others))
    return _csv(header, others[:at] + covid + others[at:])


def build(seeds: Path = HERE) -> None:
    with (seeds / "reference" / "mdo_loinc_candidates.csv").open(encoding="utf-8", newline="") as fh:
        candidates = list(csv.DictReader(fh))
    defs = test_definitions(candidates)
    path = seeds / "test_definitions.csv"
    header = ["disease", "loinc_num", "method", "display_en"]
    others: list[list[str]] = []  # another disease's definition, added by hand, is kept
    if path.exists():
        with path.open(encoding="utf-8", newline="") as fh:
            others = [[r[c] for c in header] for r in csv.DictReader(fh) if r["disease"] != DISEASE]
    path.write_text(_csv(header, defs + others), encoding="utf-8")
    print(f"wrote seeds/test_definitions.csv: {len(defs)} {DISEASE} rows, {len(others)} other rows kept")
    rules = seeds / "mdo_rules.csv"
    rules.write_text(mdo_rules_text(rules.read_text(encoding="utf-8"), [r[1] for r in defs]), encoding="utf-8")
    print(f"wrote seeds/mdo_rules.csv: {len(defs)} covid19 rows")


if __name__ == "__main__":
    build()
