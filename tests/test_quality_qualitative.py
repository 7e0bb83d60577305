"""Text results whose wording is not recognised: they are listed per lab, counted, reported and
warned about by the gate, and an operator's words file makes them count (re-coding earlier files)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from tests.helpers import HEADER, ROOT, line, nir, query
from transforms.terminology.unrecognised import qualitative_coverage, surveillance_codes, unrecognised_results

SEEDS = ROOT / "seeds"


def _fct(rows: list[tuple]) -> pl.LazyFrame:
    cols = ("source", "local_code", "loinc_code", "value_raw", "value_num", "result_class", "conversion_status",
            "is_current", "collected_at")
    schema = {"source": pl.Utf8, "local_code": pl.Utf8, "loinc_code": pl.Utf8, "value_raw": pl.Utf8,
              "value_num": pl.Float64, "result_class": pl.Utf8, "conversion_status": pl.Utf8,
              "is_current": pl.Boolean, "collected_at": pl.Datetime("us")}
    return pl.DataFrame([dict(zip(cols, r, strict=True)) for r in rows], schema=schema).lazy()


def test_surveillance_codes_cover_sidep_and_active_positive_mdo_rules():
    from transforms.epi.mdo import load_rules

    codes = surveillance_codes(SEEDS / "test_definitions.csv", load_rules(SEEDS / "mdo_rules.csv"))
    by_code = dict(codes.rows())
    assert by_code["94500-6"] == "MDO covid19, SI-DEP covid19"
    rules = load_rules(SEEDS / "mdo_rules.csv")
    assert by_code["33696-6"] == "MDO botulisme"
    assert by_code["593-4"] == "MDO legionellose"  # an organism rule reads the text too (QA mdo F4)
    numeric = rules.filter(pl.col("condition").is_in(["ge", "gt"]))["loinc_num"].to_list()
    pos = set(rules.filter(pl.col("active") & (pl.col("condition") == "pos"))["loinc_num"].to_list())
    assert all(c not in by_code for c in numeric if c not in pos)  # a threshold rule reads numbers, not words
    assert codes["loinc_code"].is_unique().all()


def test_unrecognised_list_and_coverage_per_lab():
    t = datetime(2026, 11, 2, 8, 30)
    t2 = datetime(2026, 11, 3, 9, 0)
    covid, other = "94500-6", "5195-3"  # 5195-3: hepatitis B surface antigen, in no rule here
    codes = pl.DataFrame({"loinc_code": [covid], "surveillance": ["SI-DEP covid19"]})
    fct = _fct([
        ("a", "PCR", covid, "Positif", None, "POS", "not_numeric", True, t),
        ("a", "PCR", covid, "Négatif", None, "NEG", "not_numeric", True, t),
        ("a", "PCR", covid, "Positivité confirmée", None, None, "not_numeric", True, t),
        ("a", "PCR", covid, " Positivité confirmée ", None, None, "not_numeric", True, t2),  # trimmed: same text
        ("a", "PCR", covid, "Positif ?", None, None, "not_numeric", False, t),  # replaced: not current
        ("a", "HBS", other, "voir commentaire", None, None, "not_numeric", True, t),
        ("a", "GLY", "14749-6", "NaN", None, None, "text_on_quantitative", True, t),  # counted with the units
        ("a", "GLY", "14749-6", "5,4", 5.4, None, "same_unit", True, t),
        ("a", "X", None, "   ", None, None, "not_numeric", True, t),  # blank: not a text result
        ("b", "PCR", covid, "Détecté", None, "POS", "not_numeric", True, t),
        ("c", "GLY", "14749-6", "5,4", 5.4, None, "same_unit", True, t),  # a lab without text results
    ])
    un = unrecognised_results(fct, codes)
    assert un.rows() == [
        ("a", "PCR", covid, "Positivité confirmée", 2, t, t2, "SI-DEP covid19", "text_not_recognised"),
        ("a", "HBS", other, "voir commentaire", 1, t, t, None, "text_not_recognised"),
    ]
    cov = qualitative_coverage(fct, codes)
    assert cov.rows() == [
        ("a", 5, 3, 4, 2, 0.6, 0.5),
        ("b", 1, 0, 1, 0, 0.0, 0.0),
        ("c", 0, 0, 0, 0, None, None),
    ]


def test_an_organism_rule_text_read_as_not_the_agent_is_not_listed_but_an_unread_one_is():
    """QA numbers F6 (LOW): on the Legionella culture 593-4 (an organism rule), 'Streptococcus
    pneumoniae' and 'Legionella non isolée', on the poliovirus isolation 73907-8 'Poliovirus absent',
    were listed as text_not_recognised (the gate: "teach the wording"). They say the agent was not
    found: a negative for the rule, not listed, not counted as unrecognised. A text read neither
    way ('zorglub', 'Legionella non pneumophila', a pending culture) still is."""
    from transforms.epi.mdo import load_rules
    from transforms.terminology.unrecognised import organism_agents

    t = datetime(2026, 11, 2, 8, 30)
    rules = load_rules(SEEDS / "mdo_rules.csv")
    codes = surveillance_codes(SEEDS / "test_definitions.csv", rules)
    texts = [("593-4", "Streptococcus pneumoniae"), ("593-4", "Legionella non isolée"),
             ("593-4", "Pas de Legionella isolée"), ("73907-8", "Poliovirus absent"),
             ("552-0", "Brucella non retrouvée"), ("593-4", "Legionella pneumophila sérogroupe 1"),
             ("593-4", "zorglub"), ("593-4", "Legionella non pneumophila"),
             ("593-4", "Legionella en cours d'identification"), ("593-4", "Streptococcus pneumoniae négatif")]
    fct = _fct([("a", "CULT", code, text, None, None, "not_numeric", True, t) for code, text in texts])
    agents = organism_agents(rules)
    un = unrecognised_results(fct, codes, agents)
    assert sorted(un.select("value_raw", "reason").rows()) == [
        ("Legionella en cours d'identification", "text_not_recognised"),
        ("Legionella non pneumophila", "text_not_recognised"),
        ("Streptococcus pneumoniae négatif", "text_not_recognised"),
        ("zorglub", "text_not_recognised")]
    assert qualitative_coverage(fct, codes, agents).rows() == [("a", 10, 4, 10, 4, 0.4, 0.4)]


def test_transcode_reads_the_operator_words():
    from tests.helpers import seed_loinc
    from transforms.terminology.mappings import MAPPING_SCHEMA
    from transforms.terminology.qualitative import WORDS_SCHEMA
    from transforms.terminology.transcode import transcode

    df = pl.DataFrame({
        "source": ["a"] * 3, "local_code": ["PCR"] * 3, "loinc_code_src": [None] * 3,
        "value_raw": ["Positivité confirmée", "Positif faible", "Positif ?"], "value_num": [None] * 3,
        "unit_raw": [None] * 3, "specimen": [None] * 3, "collected_at": [datetime(2026, 11, 2)] * 3,
    }, schema_overrides={"loinc_code_src": pl.Utf8, "value_num": pl.Float64, "unit_raw": pl.Utf8,
                         "specimen": pl.Utf8})
    mappings = pl.DataFrame(schema=MAPPING_SCHEMA)
    words = pl.DataFrame([{"text": "Positivité confirmée", "key": "positivite confirmee", "code": "10828004",
                           "origin": "w.csv:2"}], schema=WORDS_SCHEMA)
    assert transcode(df, mappings, seed_loinc())["result_class"].to_list() == [None, "POS", None]
    assert transcode(df, mappings, seed_loinc(), words=words)["result_class"].to_list() == ["POS", "POS", None]


# --------------------------------------------------------------------------------------------
# through the pipeline
# --------------------------------------------------------------------------------------------
RESULTS = [  # (request, RESULTAT, class expected before the operator's words)
    ("Q1", "Positif faible", "POS"),
    ("Q2", "Positif (Ct=25)", "POS"),
    ("Q3", "ARN SARS-CoV-2 détecté", "POS"),
    ("Q4", "Négatif (<LOD)", "NEG"),
    ("Q5", "Positivité confirmée", None),
    ("Q6", "Positivité confirmée", None),
    ("Q7", "Positif, à contrôler", None),
    ("Q8", "Négatif", "NEG"),
]


NAMES = ("Martin", "Bernard", "Thomas", "Petit", "Robert", "Richard", "Durand", "Leroy")  # 8 persons


def _landing(home: Path) -> None:
    lab = home / "landing" / "labo_q"
    lab.mkdir(parents=True)
    lines = [HEADER]
    for i, (req, value, _) in enumerate(RESULTS):
        lines.append(line(N_DEMANDE=req, NIR=nir(f"25509990001{i:02d}"), NOM=NAMES[i], CODE_ANALYSE="PCRCOV",
                          LIBELLE_ANALYSE="PCR SARS-CoV-2", RESULTAT=value, UNITE="", VALEURS_REFERENCE=""))
    (lab / "extract_20261102.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    maps = home / "mappings"
    maps.mkdir(parents=True)
    (maps / "labo_q.csv").write_text("local_code,local_label,unit,specimen,loinc_num,valid_from,valid_to\n"
                                     "PCRCOV,PCR SARS-CoV-2,,,94500-6,,\n", encoding="utf-8")


def test_unrecognised_wording_surfaces_then_the_operator_teaches_it(prefect_harness, tmp_path):
    from flows.pipeline import pipeline

    home = tmp_path / "home"
    _landing(home)
    first = pipeline(home=str(home))
    assert first["rows_valid"] == len(RESULTS)
    fct = query(home, "SELECT r.request_id, f.value_raw, f.result_class FROM marts.fct_lab_results f "
                     "JOIN raw.results r USING (file_id, result_no) ORDER BY r.request_id")
    assert fct["result_class"].to_list() == [r[2] for r in RESULTS]
    un = query(home, "SELECT source, loinc_code, value_raw, n_results, surveillance FROM quality.unrecognised_results "
                     "ORDER BY value_raw")
    assert un.rows() == [("labo_q", "94500-6", "Positif, à contrôler", 1, "MDO covid19, SI-DEP covid19"),
                         ("labo_q", "94500-6", "Positivité confirmée", 2, "MDO covid19, SI-DEP covid19")]
    cov = query(home, "SELECT * FROM quality.qualitative_coverage")
    assert cov.rows() == [("labo_q", 8, 3, 8, 3, 0.375, 0.375)]
    # the gate warns (non-critical: the run still passes) and the report shows the texts
    gate = first["quality_gate"]
    assert gate["ok"]
    warned = [w for w in gate["warnings"] if "qualitative_coverage" in str(w)]
    assert warned, gate["warnings"]
    report = Path(first["reports"]["data_quality"]).read_text(encoding="utf-8")
    section = report[report.index('id="qualitative"'):]
    assert "Positivité confirmée" in section and "Positif, à contrôler" in section
    assert "37.50" in section or "37.5" in section
    p_before = query(home, "SELECT sum(P) AS p FROM marts.sidep_daily WHERE cl_age90 = 0")["p"][0]
    assert p_before == 3  # Q1-Q3; the unrecognised ones count in neither P nor T

    # the operator teaches the wording: the next run re-codes the file and the results count
    words = home / "mappings" / "qualitative"
    words.mkdir()
    (words / "words.csv").write_text("text,meaning,note\nPositivité confirmée,positive,labo_q\n", encoding="utf-8")
    second = pipeline(home=str(home))
    assert second["files_new"] == 0
    fct = query(home, "SELECT f.value_raw, f.result_class FROM marts.fct_lab_results f "
                     "JOIN raw.results r USING (file_id, result_no) WHERE r.request_id IN ('Q5', 'Q6')")
    assert fct["result_class"].to_list() == ["POS", "POS"]
    assert query(home, "SELECT value_raw FROM quality.unrecognised_results")["value_raw"].to_list() == [
        "Positif, à contrôler"]
    assert query(home, "SELECT sum(P) AS p FROM marts.sidep_daily WHERE cl_age90 = 0")["p"][0] == 5


def test_a_bad_words_file_stops_the_run_with_file_and_line(prefect_harness, tmp_path):
    from flows.pipeline import pipeline
    from transforms.terminology.qualitative import QualitativeWordsError

    home = tmp_path / "home"
    _landing(home)
    (home / "mappings" / "qualitative").mkdir()
    (home / "mappings" / "qualitative" / "w.csv").write_text("text,meaning\nPositivité confirmée,plutôt oui\n",
                                                              encoding="utf-8")
    with pytest.raises(QualitativeWordsError, match=r"w\.csv:2: meaning 'plutôt oui'"):
        pipeline(home=str(home))


def test_unrecognised_mdo_frame_keeps_the_tests_of_mdo_diseases_other_than_covid():
    from quality.checkpoints import unrecognised_mdo_frame
    from transforms.terminology.unrecognised import UNRECOGNISED_SCHEMA

    t = datetime(2026, 11, 2, 8)
    rows = [r + ("text_not_recognised",) for r in [
        ("labo_q", "HAVM", "22314-9", "Positif (index 3,2)", 1, t, t, "MDO hepatite_a"),
        ("labo_q", "HAVM", "22314-9", "positif limite", 2, t, t, "MDO hepatite_a"),
        ("labo_q", "PCRCOV", "94500-6", "Positivité confirmée", 5, t, t, "MDO covid19, SI-DEP covid19"),
        ("labo_q", "GLY", "2345-7", "hémolysé", 3, t, t, None)]]
    got = unrecognised_mdo_frame(pl.DataFrame(rows, schema=UNRECOGNISED_SCHEMA, orient="row"))
    assert got.rows() == [("labo_q", "HAVM", "22314-9", "MDO hepatite_a", 3, 2)]


def test_the_gate_names_an_unrecognised_mdo_result_hidden_by_covid_volume(prefect_harness, tmp_path):
    """QA mdo F3: 2 lost MDO positives among 200 COVID negatives were 0.99 % of the lab's text
    results, under the 1 % of qualitative_coverage: the gate said nothing. Any unrecognised text on
    an MDO test (other than COVID-19) is now a warning naming the lab, the code and the disease."""
    from flows.pipeline import pipeline

    home = tmp_path / "home"
    lab = home / "landing" / "labo_q"
    lab.mkdir(parents=True)
    lines = [HEADER]
    tests = [("PCRCOV", "PCR SARS-CoV-2", "Négatif")] * 150 + [("HAVM", "IgM anti-VHA", "Positif (index 3,2)"),
                                                               ("HAVM", "IgM anti-VHA", "Positif")]
    for i, (code, label, value) in enumerate(tests):
        lines.append(line(N_DEMANDE=f"R{i}", NIR=nir(f"2550999{i + 1:06d}"),
                          NOM=f"Nom{chr(65 + i % 26)}{chr(65 + i // 26)}", CODE_ANALYSE=code,
                          LIBELLE_ANALYSE=label, RESULTAT=value, UNITE="", VALEURS_REFERENCE=""))
    (lab / "extract_20261102.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (home / "mappings").mkdir(parents=True)
    (home / "mappings" / "labo_q.csv").write_text(
        "local_code,local_label,unit,specimen,loinc_num,valid_from,valid_to\n"
        "PCRCOV,PCR SARS-CoV-2,,,94500-6,,\nHAVM,IgM anti-VHA,,,22314-9,,\n", encoding="utf-8")
    summary = pipeline(home=str(home))
    cov = query(home, "SELECT n_surveillance_text, n_surveillance_unrecognised FROM quality.qualitative_coverage")
    assert cov.rows() == [(152, 1)]  # 0.66 %: under the lab's share
    gate = summary["quality_gate"]
    assert gate["ok"]
    assert not [w for w in gate["warnings"] if w.startswith("qualitative_coverage:")], gate["warnings"]
    named = [w for w in gate["warnings"] if w.startswith("unrecognised_mdo:")]
    assert len(named) == 1, gate["warnings"]
    assert all(s in named[0] for s in ("labo_q", "HAVM", "22314-9", "MDO hepatite_a")), named
    assert "index" not in named[0]  # the text itself stays in quality.unrecognised_results


def test_a_number_on_a_qualitative_surveillance_test_is_listed_not_counted():
    """QA mdo F8: an IgM index '3,2' sent on the hepatitis A IgM (22314-9, no canonical unit) had no
    class, was counted nowhere and listed nowhere (only quality.unit_conversion counted it). It is
    now in quality.unrecognised_results with reason number_on_qualitative_test, which the gate's
    unrecognised_mdo warning reads (whatever the unit sent); a number on a test no surveillance
    reads as a verdict is not."""
    from quality.checkpoints import unrecognised_mdo_frame

    t = datetime(2026, 11, 2, 8, 30)
    codes = pl.DataFrame({"loinc_code": ["22314-9"], "surveillance": ["MDO hepatite_a"]})
    fct = _fct([
        ("a", "HAVM", "22314-9", "3,2", 3.2, None, "no_canonical_unit", True, t),
        ("a", "HAVM", "22314-9", "Positif", None, "POS", "not_numeric", True, t),
        ("a", "HAVM", "22314-9", "0,4", 0.4, None, "no_canonical_unit", False, t),  # replaced: not current
        ("a", "HAVM", "22314-9", "3,2", 3.2, None, "no_unit", True, t),  # the same number sent without unit
        ("a", "XYZ", "5195-3", "12", 12.0, None, "no_canonical_unit", True, t),    # read by no surveillance
        ("a", "GLY", "14749-6", "5,4", 5.4, None, "same_unit", True, t),
    ])
    un = unrecognised_results(fct, codes)
    assert un.rows() == [("a", "HAVM", "22314-9", "3,2", 2, t, t, "MDO hepatite_a", "number_on_qualitative_test")]
    assert unrecognised_mdo_frame(un).select("loinc_code", "n_results").rows() == [("22314-9", 2)]
    # not a text result: the lab's text coverage is unchanged
    assert qualitative_coverage(fct, codes).rows() == [("a", 1, 0, 1, 0, 0.0, 0.0)]


def test_an_igm_index_reaches_the_unrecognised_list_end_to_end(tmp_path):
    """The QA repro: HAVM '3,2' (reference '<0,9') in a CSV extract makes no hepatitis A case and is
    listed in quality.unrecognised_results."""
    from flows.epi import publish_epi
    from flows.publish import publish_quality
    from tests.epi_support import run_steps
    from warehouse import catalog as cat
    from warehouse import catalog_epi as ce

    home = tmp_path / "home"
    lab = home / "landing" / "labo_q"
    lab.mkdir(parents=True)
    lines = [HEADER, line(N_DEMANDE="R1", NIR=nir("2550999000001"), NOM="Nomaa", CODE_ANALYSE="HAVM",
                          LIBELLE_ANALYSE="IgM anti-VHA", RESULTAT="3,2", UNITE="", VALEURS_REFERENCE="<0,9")]
    (lab / "extract_20261102.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (home / "mappings").mkdir(parents=True)
    (home / "mappings" / "labo_q.csv").write_text(
        "local_code,local_label,unit,specimen,loinc_num,valid_from,valid_to\nHAVM,IgM anti-VHA,,,22314-9,,\n",
        encoding="utf-8")
    ctx, refs = run_steps(home)
    publish_epi(ctx, refs)
    assert ctx.wh.read(ce.MDO_CASES).height == 0
    publish_quality(ctx)
    got = ctx.wh.read(cat.UNRECOGNISED_RESULTS)
    assert got.select("local_code", "loinc_code", "value_raw", "surveillance", "reason").rows() == [
        ("HAVM", "22314-9", "3,2", "MDO hepatite_a", "number_on_qualitative_test")]
