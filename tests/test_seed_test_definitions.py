"""seeds/test_definitions.csv (and the covid19 MDO rules) follow the rule seeds/SOURCES.md states:
the SARS-CoV-2 RNA (NAAT) and antigen [Presence] codes of the shipped covid19 candidates,
serologies, sequencing and multi-pathogen panels excluded (QA mdo F1: 98132-4 and 95209-3 were
missing, their positives counted nowhere)."""

from __future__ import annotations

import csv
import importlib.util
import re
from pathlib import Path

SEEDS = Path(__file__).resolve().parents[1] / "seeds"


def _rows(name: str) -> list[dict[str, str]]:
    with (SEEDS / name).open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _script():
    spec = importlib.util.spec_from_file_location("build_test_definitions", SEEDS / "build_test_definitions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _is_sarscov2_presence_naat_or_antigen(name: str) -> bool:
    """The rule, written independently of the script: a [Presence] test of SARS-CoV-2 alone by
    nucleic acid amplification or antigen immunoassay."""
    if "[Presence]" not in name or " panel" in name or "Influenza" in name or "Respiratory syncytial" in name:
        return False
    if re.search(r"\bAb\b|Ig[GMA]\b|antibody", name) or "Sequencing" in name:
        return False
    return bool(re.search(r"by (NAA|Nucleic acid amplification)", name)
                or re.search(r"\bAg \[Presence\].*[Ii]mmunoassay", name))


def test_every_sarscov2_presence_naat_and_antigen_candidate_is_in_the_definition():
    cand = [c for c in _rows("reference/mdo_loinc_candidates.csv") if c["mdo_id"] == "covid19"]
    defs = {r["loinc_num"] for r in _rows("test_definitions.csv") if r["disease"] == "covid19"}
    expected = {c["loinc_num"] for c in cand if _is_sarscov2_presence_naat_or_antigen(c["display_en"])}
    assert defs == expected, (sorted(expected - defs), sorted(defs - expected))
    assert {"98132-4", "95209-3", "94500-6", "94558-4"} <= defs
    # panels, multi-pathogen tests, sequencing, serologies and viral load stay out
    assert not defs & {"94306-8", "94531-1", "95423-0", "95424-8", "95609-4", "95970-0", "94547-7",
                       "97104-4", "100342-5", "95942-9"}


def test_methods_and_covid19_rules_are_what_the_script_derives():
    script = _script()
    cand = _rows("reference/mdo_loinc_candidates.csv")
    shipped = [[r["disease"], r["loinc_num"], r["method"], r["display_en"]] for r in _rows("test_definitions.csv")]
    assert shipped == script.test_definitions(cand)
    methods = {r[1]: r[2] for r in shipped}
    assert methods["98132-4"] == "naat" and methods["95209-3"] == "antigen"
    rules = (SEEDS / "mdo_rules.csv").read_text(encoding="utf-8")
    assert script.mdo_rules_text(rules, [r[1] for r in shipped]) == rules
    covid = [r for r in _rows("mdo_rules.csv") if r["mdo_id"] == "covid19"]
    assert [r["loinc_num"] for r in covid] == [r[1] for r in shipped]
    assert {(r["condition"], r["episode_days"], r["active"]) for r in covid} == {("pos", "60", "yes")}


def test_rules_rewrite_keeps_other_diseases(tmp_path):
    script = _script()
    text = ("mdo_id,loinc_num,condition,threshold,unit,min_age,max_age,episode_days,active,note\n"
            "covid19,94500-6,pos,,,,,60,yes,old\n"
            "rougeole,21503-8,pos,,,,,365,yes,\"IgM, kept\"\n")
    out = script.mdo_rules_text(text, ["94500-6", "98132-4"])
    lines = out.splitlines()
    assert lines[1].startswith("covid19,94500-6,pos,,,,,60,yes,same codes")
    assert lines[2].startswith("covid19,98132-4,pos")
    assert lines[3] == "rougeole,21503-8,pos,,,,,365,yes,\"IgM, kept\""
