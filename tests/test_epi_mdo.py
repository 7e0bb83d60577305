"""MDO case rules: the seeded table, its checks, conditions and per-disease episodes."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from transforms.epi import mdo

SEEDS = Path(__file__).resolve().parents[1] / "seeds"
D0 = date(2026, 3, 2)


def mdo_list() -> pl.DataFrame:
    return pl.read_csv(SEEDS / "reference" / "mdo_list.csv", infer_schema=False)


@pytest.fixture(scope="module")
def rules() -> pl.DataFrame:
    return mdo.load_rules(SEEDS / "mdo_rules.csv", known_mdo=set(mdo_list()["mdo_id"].to_list()))


def test_seeded_rules_cover_every_lab_confirmable_disease_with_codes(rules):
    cand = pl.read_csv(SEEDS / "reference" / "mdo_loinc_candidates.csv", infer_schema=False)
    confirmable = set(mdo_list().filter(pl.col("lab_confirmable").is_in(["yes", "partly"]))["mdo_id"].to_list())
    with_codes = set(cand.filter(pl.col("match_level") == "agent")["mdo_id"].to_list()) & confirmable
    assert with_codes <= set(rules["mdo_id"].to_list())
    # every code comes from the candidates of its disease (covid19: the SI-DEP test definition)
    pairs = set(cand.select("mdo_id", "loinc_num").iter_rows())
    other = rules.filter(pl.col("mdo_id") != "covid19")
    assert all(p in pairs for p in other.select("mdo_id", "loinc_num").iter_rows())
    defs = pl.read_csv(SEEDS / "test_definitions.csv", infer_schema=False)
    assert (sorted(rules.filter(pl.col("mdo_id") == "covid19")["loinc_num"].to_list())
            == sorted(defs.filter(pl.col("disease") == "covid19")["loinc_num"].to_list()))
    assert rules.filter(pl.col("condition").is_in(["ge", "gt"]))["mdo_id"].to_list() == ["saturnisme_enfant"]


def test_the_generator_notifiable_tests_have_active_rules(rules):
    catalog = pl.read_csv(SEEDS / "tests_catalog.csv", infer_schema=False)
    emitted = set(catalog.filter(pl.col("kind") == "qual")["loinc_num"].to_list())
    active = set(rules.filter("active")["loinc_num"].to_list())
    assert emitted & active == emitted - {"5196-1"}  # HBs antigen alone does not confirm an acute hepatitis B
    assert len(emitted & active) >= 10


def write_rules(tmp_path, body: str) -> Path:
    p = tmp_path / "rules.csv"
    p.write_text("mdo_id,loinc_num,condition,threshold,unit,min_age,max_age,episode_days,active,note\n" + body,
                 encoding="utf-8")
    return p


@pytest.mark.parametrize("body, message", [
    ("rougeole,21503-7,pos,,,,,365,yes,\n", "rules.csv:2: malformed LOINC code '21503-7'"),
    ("variole,21503-8,pos,,,,,365,yes,\n", "rules.csv:2: unknown disease 'variole'"),
    ("rougeole,21503-8,positive,,,,,365,yes,\n", "rules.csv:2: condition must be one of"),
    ("saturnisme_enfant,10368-9,ge,5,,,17,365,yes,\n", "rules.csv:2: a numeric condition needs a threshold"),
    ("rougeole,21503-8,pos,,,,,0,yes,\n", "rules.csv:2: episode_days must be"),
    ("rougeole,21503-8,pos,,,,,365,yes,\nrougeole,21503-8,pos,,,,,365,yes,\n", "rules.csv:3: duplicate rule"),
    ("rougeole,21503-8,pos,,,,,365,yes,\nrougeole,7964-0,pos,,,,,90,yes,\n", "several episode lengths"),
])
def test_rules_table_errors_name_file_and_line(tmp_path, body, message):
    with pytest.raises(mdo.MdoRulesError, match=message.replace("(", r"\(")):
        mdo.load_rules(write_rules(tmp_path, body), known_mdo=set(mdo_list()["mdo_id"].to_list()))


def results(*rows):
    """rows: (person, day offset, loinc, class, value, unit, age, dep); value is a number, or
    (comparator, bound) for a result such as '>100'."""
    recs = []
    for i, (p, d, code, cls, value, unit, age, dep) in enumerate(rows):
        day = D0 + timedelta(days=d)
        comparator, value = value if isinstance(value, tuple) else (None, value)
        recs.append({"person_key": p, "loinc_code": code, "result_class": cls, "value_canonical": value,
                     "value_comparator": comparator,
                     "unit_canonical": unit, "age": age, "collected_date": day,
                     "collected_at": datetime.combine(day, datetime.min.time()) + timedelta(hours=i % 5),
                     "dep": dep, "cl_age90": None if age is None else min(90, age // 10 * 10 + 9), "sex": "F",
                     "file_seq": 1, "line_no": i + 2})
    return pl.DataFrame(recs, schema={"person_key": pl.Utf8, "loinc_code": pl.Utf8, "result_class": pl.Utf8,
                                      "value_canonical": pl.Float64, "value_comparator": pl.Utf8,
                                      "unit_canonical": pl.Utf8, "age": pl.Int64,
                                      "collected_date": pl.Date, "collected_at": pl.Datetime("us"), "dep": pl.Utf8,
                                      "cl_age90": pl.Int64, "sex": pl.Utf8, "file_seq": pl.Int64,
                                      "line_no": pl.Int64})


def case_days(rules, *rows) -> dict:
    """{(disease, person): [day offsets of the counted cases]}."""
    c = mdo.cases(mdo.positive_results(results(*rows), rules), mdo.episode_days(rules))
    out: dict = {}
    for m, p, j in c.select("mdo_id", "person_key", "jour").iter_rows():
        out.setdefault((m, p), []).append((j - D0).days)
    return {k: sorted(v) for k, v in out.items()}


def test_episodes_follow_each_disease_length(rules):
    got = case_days(
        rules,
        ("a", 0, "22314-9", "POS", None, None, 30, "75"),     # hepatitis A: 365-day episode
        ("a", 200, "22314-9", "POS", None, None, 30, "75"),
        ("a", 365, "22314-9", "POS", None, None, 31, "75"),   # 365 days after the counted case: new
        ("a", 0, "31870-9", "POS", None, None, 30, "75"),     # legionellosis, same person: its own episodes
        ("a", 89, "31870-9", "POS", None, None, 30, "75"),
        ("a", 90, "31870-9", "POS", None, None, 30, "75"),
        ("b", 0, "94500-6", "POS", None, None, 50, "13"),     # covid19: 60 days, after the last COUNTED case
        ("b", 59, "94558-4", "POS", None, None, 50, "13"),
        ("b", 60, "94500-6", "POS", None, None, 50, "13"),
        ("b", 119, "94500-6", "POS", None, None, 50, "13"),
        ("c", 3, "21503-8", "NEG", None, None, 5, "13"),      # negatives and invalid results never count
        ("c", 4, "21503-8", "INVALID", None, None, 5, "13"),
        ("d", 1, "21503-8", "POS", None, None, 5, "69"),      # several positives the same day: one case
        ("d", 1, "48508-6", "POS", None, None, 5, "69"),
    )
    assert got == {("covid19", "b"): [0, 60], ("hepatite_a", "a"): [0, 365], ("legionellose", "a"): [0, 90],
                   ("rougeole", "d"): [1]}


def test_numeric_threshold_age_limits_and_inactive_rules(rules):
    got = case_days(
        rules,
        ("kid", 0, "10368-9", None, 6.0, "ug/dL", 10, "93"),     # lead >= 5 ug/dL in a minor: case
        ("adult", 0, "10368-9", None, 6.0, "ug/dL", 30, "93"),   # an adult: no
        ("low", 0, "10368-9", None, 4.9, "ug/dL", 10, "93"),     # below the threshold: no
        ("edge", 0, "10368-9", None, 5.0, "ug/dL", 17, "93"),    # >= threshold at 17: case
        ("unit", 0, "10368-9", None, 60.0, "ug/L", 10, "93"),    # not the canonical unit: not evaluated
        ("noage", 0, "10368-9", None, 9.0, "ug/dL", None, "93"),  # unknown age: no
        ("palu", 0, "47085-6", "POS", None, None, 40, "973"),    # malaria rules are inactive
        ("hbs", 0, "5196-1", "POS", None, None, 40, "973"),      # HBs antigen: no rule
    )
    assert got == {("saturnisme_enfant", "edge"): [0], ("saturnisme_enfant", "kid"): [0]}


def test_a_bound_makes_a_case_only_when_it_proves_the_threshold(rules):
    got = case_days(
        rules,  # saturnisme_enfant: 10368-9 ge 5 ug/dL, max_age 17
        ("gt100", 0, "10368-9", None, (">", 100.0), "ug/dL", 8, "93"),  # '>100 ug/dL': a case
        ("ge5", 0, "10368-9", None, (">=", 5.0), "ug/dL", 8, "93"),     # '>=5' proves >= 5
        ("gt5", 0, "10368-9", None, (">", 5.0), "ug/dL", 8, "93"),      # '>5' too
        ("gt4", 0, "10368-9", None, (">", 4.0), "ug/dL", 8, "93"),      # '>4' may be 4.5: no
        ("lt100", 0, "10368-9", None, ("<", 100.0), "ug/dL", 8, "93"),  # '<100' proves nothing: no
        ("le9", 0, "10368-9", None, ("<=", 9.0), "ug/dL", 8, "93"),     # '<=9' neither
        ("gtL", 0, "10368-9", None, (">", 100.0), "ug/L", 8, "93"),     # not the canonical unit: no
    )
    assert got == {("saturnisme_enfant", "ge5"): [0], ("saturnisme_enfant", "gt5"): [0],
                   ("saturnisme_enfant", "gt100"): [0]}


@pytest.mark.parametrize(
    ("condition", "comparator", "value", "proved"),
    [
        ("ge", None, 5.0, True), ("ge", None, 4.9, False), ("ge", ">", 5.0, True), ("ge", ">=", 5.0, True),
        ("ge", ">", 4.9, False), ("ge", "<", 100.0, False), ("ge", "<=", 5.0, False),
        ("gt", None, 5.0, False), ("gt", ">", 5.0, True), ("gt", ">=", 5.0, False), ("gt", ">=", 5.1, True),
        ("gt", "<", 9.0, False),
        ("le", None, 5.0, True), ("le", "<", 5.0, True), ("le", "<=", 5.0, True), ("le", "<", 5.1, False),
        ("le", ">", 1.0, False), ("lt", "<", 5.0, True), ("lt", "<=", 5.0, False), ("lt", "<=", 4.9, True),
        ("lt", ">=", 1.0, False), ("lt", None, 5.0, False),
    ],
)
def test_proves_respects_strictness(condition, comparator, value, proved):
    df = pl.DataFrame({"c": [condition], "t": [5.0], "v": [value], "k": [comparator]},
                      schema={"c": pl.Utf8, "t": pl.Float64, "v": pl.Float64, "k": pl.Utf8})
    assert df.select(mdo.proves(pl.col("c"), pl.col("t"), pl.col("v"), pl.col("k"))).item() is proved


def test_case_takes_the_first_result_of_its_day_and_weekly_grid(rules):
    res = results(("a", 0, "57934-2", "POS", None, None, 40, "971"), ("a", 0, "51664-1", "POS", None, None, 40, "972"),
                  ("b", 7, "57934-2", "POS", None, None, 40, None))
    c = mdo.cases(mdo.positive_results(res, rules), mdo.episode_days(rules))
    assert c.select("person_key", "dep", "semaine").rows() == [("a", "971", "2026-S10"), ("b", None, "2026-S11")]
    w = mdo.weekly_cases(c, ["971", "972"], ["2026-S10", "2026-S11"], ["chikungunya", "dengue"],
                         (D0, D0 + timedelta(days=13)))
    assert w.height == 2 * 2 * 2 and w["cases"].sum() == 1  # a case without a département counts nowhere
    assert w.filter(pl.col("cases") > 0).select("mdo_id", "semaine", "dep").rows() == [
        ("chikungunya", "2026-S10", "971")]


def test_a_child_with_lead_above_100_is_a_saturnisme_case_end_to_end(tmp_path):
    """QA: '>100 µg/dL' (a result above the analyser's range) lost its number, so the child was no
    saturnisme case. End to end from a CSV landing: the bound is kept with its comparator, converted,
    and proves the threshold; '<1' proves nothing; 0,30 µmol/L converts with lead's molar mass."""
    from flows.epi import publish_epi
    from tests.epi_support import run_steps
    from tests.helpers import HEADER, MAPPING_HEADER, line, with_request_ids
    from warehouse import catalog as cat
    from warehouse import catalog_epi as ce

    def lead(req, nom, resultat, unite="µg/dL", born="03/04/2018"):
        return line(N_DEMANDE=req, NIR="", NOM=nom, PRENOM="Léa", DATE_NAISSANCE=born, CODE_POSTAL="93200",
                    CODE_ANALYSE="PB", LIBELLE_ANALYSE="Plombémie", RESULTAT=resultat, UNITE=unite,
                    VALEURS_REFERENCE="", DATE_PRELEVEMENT="15/01/2026 09:00", DATE_RECEPTION="15/01/2026 10:00",
                    DATE_VALIDATION="16/01/2026 18:00")

    home = tmp_path / "home"
    (home / "mappings").mkdir(parents=True)
    (home / "mappings" / "labo_alpha.csv").write_text(
        MAPPING_HEADER + "PB,Plombémie,,,10368-9,,\n", encoding="utf-8")
    landing = home / "landing" / "labo_alpha"
    landing.mkdir(parents=True)
    lines = [HEADER, lead("P1", "Above", ">100"), lead("P2", "Below", "<1"), lead("P3", "Molar", "0,30", "µmol/L"),
             lead("P4", "Adult", ">100", born="03/04/1980")]
    (landing / "labo_alpha_20260116.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    ctx, refs = run_steps(home)
    fct = with_request_ids(ctx.wh, ctx.wh.read(cat.FCT_LAB_RESULTS)).sort("request_id")
    assert fct.select("request_id", "value_num", "value_comparator", pl.col("value_canonical").round(3),
                      "unit_canonical", "conversion_status").rows() == [
        ("P1", 100.0, ">", 100.0, "ug/dL", "same_unit"),
        ("P2", 1.0, "<", 1.0, "ug/dL", "same_unit"),
        ("P3", 0.30, None, 6.216, "ug/dL", "ok"),
        ("P4", 100.0, ">", 100.0, "ug/dL", "same_unit"),
    ]
    publish_epi(ctx, refs)
    cases = ctx.wh.read(ce.MDO_CASES).filter(pl.col("mdo_id") == "saturnisme_enfant")
    by_person = dict(fct.select("person_key", "request_id").iter_rows())
    assert sorted(by_person[k] for k in cases["person_key"].to_list()) == ["P1", "P3"]  # P4 is an adult


# --- sterile site (QA mdo F2) -----------------------------------------------------------------
def _with_specimens(df: pl.DataFrame, specimens: list[str | None]) -> pl.DataFrame:
    return df.with_columns(pl.Series("specimen", specimens, dtype=pl.Utf8))


def test_invasive_meningococcal_and_listeria_cases_need_a_sterile_site():
    """QA mdo F2: a throat-swab meningococcus culture, a pharyngeal PCR and a stool Listeria PCR
    counted as IIM and listeriosis cases. A stated non-sterile specimen never counts; a stated
    sterile one does; a specimen read as neither counts only on a code whose system is a sterile
    site; nothing stated counts (CSV extracts carry no specimen), as documented."""
    loinc = pl.read_csv(SEEDS / "reference" / "loinc.csv", infer_schema=False)
    rules = mdo.load_rules(SEEDS / "mdo_rules.csv", known_mdo=set(mdo_list()["mdo_id"].to_list()), loinc=loinc)
    rows = [  # person, day, loinc, class, value, unit, age, dep
        ("throat_culture", 0, "16134-9", "POS", None, None, 30, "75"),
        ("pharyngeal_pcr", 0, "49671-1", "POS", None, None, 30, "75"),
        ("stool_listeria", 0, "61369-5", "POS", None, None, 30, "75"),
        ("urine_listeria", 0, "61369-5", "POS", None, None, 30, "75"),
        ("csf_code_throat", 0, "99092-9", "POS", None, None, 30, "75"),
        ("csf_pcr", 0, "99092-9", "POS", None, None, 30, "75"),
        ("blood_culture_pcr", 0, "49671-1", "POS", None, None, 30, "75"),
        ("hl7_coded_blood", 0, "61369-5", "POS", None, None, 30, "75"),
        ("no_specimen", 0, "49671-1", "POS", None, None, 30, "75"),
        ("vague_on_specimen_code", 0, "49671-1", "POS", None, None, 30, "75"),
        ("vague_on_csf_code", 0, "99092-9", "POS", None, None, 30, "75"),
        ("measles_throat", 0, "21503-8", "POS", None, None, 30, "75"),
    ]
    specimens = ["Ecouvillon de gorge", "Ecouvillon pharyngé", "Selles", "URINES", "Ecouvillon gorge", "LCR",
                 "Flacon d'hémoculture", "BLD^Blood^HL70487", None, "Prélèvement divers", "Prélèvement divers",
                 "Gorge"]
    got = mdo.positive_results(_with_specimens(results(*rows), specimens), rules)
    assert sorted(got.select("mdo_id", "person_key").rows()) == [
        ("iim", "blood_culture_pcr"), ("iim", "csf_pcr"), ("iim", "no_specimen"), ("iim", "vague_on_csf_code"),
        ("listeriose", "hl7_coded_blood"), ("rougeole", "measles_throat"),
    ]


def test_sterile_site_reading_of_specimens_and_loinc_systems():
    assert mdo.site_of("Liquide céphalo-rachidien") == mdo.site_of("CSF") == "sterile"
    assert mdo.site_of("Liquide articulaire") == mdo.site_of("Sérum") == "sterile"
    assert mdo.site_of("THRT^Throat^HL70487") == mdo.site_of("écouvillon nasopharyngé") == "non_sterile"
    assert mdo.site_of("Sang/selles") == "non_sterile"  # a non-sterile word wins
    assert mdo.site_of("Prélèvement divers") is None and mdo.site_of("  ") is None and mdo.site_of(None) is None
    assert mdo.loinc_system_site("Neisseria meningitidis DNA [Presence] in Cerebral spinal fluid by NAA") == "sterile"
    assert mdo.loinc_system_site(
        "Neisseria meningitidis DNA [Presence] by NAA with probe detection in Positive blood culture") == "sterile"
    assert mdo.loinc_system_site("Vibrio cholerae DNA [Presence] in Stool by NAA with probe detection") == "non_sterile"
    assert mdo.loinc_system_site("Neisseria meningitidis Ag [Presence] in Specimen") is None


def test_blood_csf_and_purpuric_lesion_wordings_are_sterile_sites_qa_regr2_f2():
    """QA regr2 F2: 'Prélèvement sanguin', 'LCS' and a purpuric skin lesion were read as neither a
    sterile nor a non-sterile site, so a meningococcus PCR "in Specimen" from blood or CSF counted in
    no case, silently. The purpuric lesion is part of the IIM criterion (mdo_list.csv), not of
    listeriosis; a specimen still read as neither is listed (quality.mdo_unread_specimens)."""
    for text in ("Prélèvement sanguin", "LCS", "Liquide cérébro-spinal", "Hémoc.", "Ponction pleurale",
                 "Liquide amniotique", "Sang total"):
        assert mdo.site_of(text) == "sterile", text
    assert mdo.site_of("Biopsie cutanée (lésion purpurique)") == mdo.site_of("Purpura") == "purpura"
    assert mdo.site_of("Ecouvillon gorge, purpura") == "non_sterile"  # a non-sterile word still wins
    loinc = pl.read_csv(SEEDS / "reference" / "loinc.csv", infer_schema=False)
    rules = mdo.load_rules(SEEDS / "mdo_rules.csv", known_mdo=set(mdo_list()["mdo_id"].to_list()), loinc=loinc)
    assert set(rules.filter(pl.col("mdo_id") == "iim")["specimen"].to_list()) == {"sterile_site_or_purpura"}
    rows = [(p, 0, code, "POS", None, None, 30, "75") for p, code in (
        ("blood", "49671-1"), ("lcs", "49671-1"), ("purpura", "49671-1"), ("throat", "49671-1"),
        ("vague", "49671-1"), ("vague_csf_code", "99092-9"), ("listeria_purpura", "61369-5"),
        ("listeria_placenta", "61369-5"), ("listeria_blood", "61369-5"))]
    specimens = ["Prélèvement sanguin", "LCS", "Biopsie cutanée lésion purpurique", "Gorge", "Prélèvement divers",
                 "Prélèvement divers", "Biopsie cutanée lésion purpurique", "Placenta", "Hémoculture"]
    df = _with_specimens(results(*rows), specimens).with_columns(
        pl.Series("source", ["lab_a"] * 8 + ["lab_b"]))
    got = mdo.positive_results(df, rules)
    assert sorted(got.select("mdo_id", "person_key").rows()) == [
        ("iim", "blood"), ("iim", "lcs"), ("iim", "purpura"), ("iim", "vague_csf_code"),
        ("listeriose", "listeria_blood")]
    unread = mdo.unread_specimens(df, rules)
    assert unread.columns == list(mdo.UNREAD_SPECIMEN_COLUMNS)
    assert sorted(unread.select("source", "mdo_id", "loinc_code", "specimen", "counted", "n_results").rows()) == [
        ("lab_a", "iim", "49671-1", "Prélèvement divers", False, 1),
        ("lab_a", "iim", "99092-9", "Prélèvement divers", True, 1),
        ("lab_a", "listeriose", "61369-5", "Biopsie cutanée lésion purpurique", False, 1),
        ("lab_a", "listeriose", "61369-5", "Placenta", False, 1),
    ]
    assert "person_key" not in unread.columns


def test_rules_specimen_condition_is_checked_and_optional(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("mdo_id,loinc_num,condition,threshold,unit,min_age,max_age,specimen,episode_days,active,note\n"
                   "iim,49671-1,pos,,,,,blood,90,yes,\n", encoding="utf-8")
    with pytest.raises(mdo.MdoRulesError, match=r"bad.csv:2: specimen must be empty or one of"):
        mdo.load_rules(bad)
    old = tmp_path / "old.csv"  # a copy written before the column still reads (no condition)
    old.write_text("mdo_id,loinc_num,condition,threshold,unit,min_age,max_age,episode_days,active,note\n"
                   "iim,49671-1,pos,,,,,90,yes,\n", encoding="utf-8")
    rules = mdo.load_rules(old)
    assert rules["specimen"].to_list() == [None]
    got = mdo.positive_results(_with_specimens(results(("p", 0, "49671-1", "POS", None, None, 30, "75")),
                                               ["Gorge"]), rules)
    assert got.height == 1


def test_a_stated_throat_swab_makes_no_iim_case_end_to_end(tmp_path):
    """HL7 OBR-15 carries the specimen to marts.fct_lab_results and to the MDO rules."""
    from flows.epi import publish_epi
    from tests.epi_support import run_steps
    from tests.helpers import nir
    from warehouse import catalog_epi as ce

    def message(i: int, code: str, specimen: str, value: str) -> str:
        return "\r".join([
            f"MSH|^~\\&|QA|330028762|BIOLAKE|BIOLAKE|20261008180000||ORU^R01^ORU_R01|M{i}|P|2.5|||||FRA|UNICODE UTF-8",
            f"PID|1||{nir(f'28001754440{i:02d}')}^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS||NOM{chr(64 + i)}"
            f"^Prenom^^^^^L||19800101|F|||^^^^75011^^HORC",
            f"OBR|1|R{i}|R{i}|{code}^test^LN|||20261008090000||||||||{specimen}|||||||20261008180000",
            f"OBX|1|ST|{code}^test^LN||{value}||||||F||||||||20261008180000",
        ]) + "\r"

    home = tmp_path / "home"
    landing = home / "landing" / "labo_qa"
    landing.mkdir(parents=True)
    (landing / "sites.hl7").write_text("".join([
        message(1, "16134-9", "Ecouvillon de gorge", "Positif"),
        message(2, "49671-1", "Ecouvillon pharyngé", "Détecté"),
        message(3, "61369-5", "Selles", "Détecté"),
        message(4, "99092-9", "LCR", "Détecté"),
    ]), encoding="utf-8")
    ctx, refs = run_steps(home)
    publish_epi(ctx, refs)
    cases = ctx.wh.read(ce.MDO_CASES)
    assert cases.select("mdo_id", "loinc_code").rows() == [("iim", "99092-9")]


# --- a numeric rule's unit (QA mdo F5) ---------------------------------------------------------
def _canonical(codes):
    from transforms.terminology.units import default_unit_tables

    lu = default_unit_tables().loinc_units
    return dict(lu.filter(pl.col("loinc_num").is_in(codes)).select("loinc_num", "canonical_ucum").iter_rows())


def test_a_numeric_rule_not_in_the_canonical_unit_is_refused_at_load(tmp_path):
    """QA mdo F5: 'saturnisme_enfant,10368-9,ge,50,ug/L' (the regulation's wording) gave 0 lead
    cases silently, results being compared in ug/dL. The table is refused, the message giving the
    threshold in the canonical unit; a spelling of the canonical unit is accepted."""
    header = "mdo_id,loinc_num,condition,threshold,unit,min_age,max_age,episode_days,active,note\n"
    bad = tmp_path / "rules.csv"
    bad.write_text(header + "saturnisme_enfant,10368-9,ge,50,ug/L,,17,365,yes,\n", encoding="utf-8")
    with pytest.raises(mdo.MdoRulesError) as err:
        mdo.load_rules(bad, canonical_units=_canonical)
    assert ("rules.csv:2: unit ug/L is not the canonical unit ug/dL of 10368-9" in str(err.value)
            and "50 ug/L = 5 ug/dL" in str(err.value)), str(err.value)
    spelled = tmp_path / "spelled.csv"
    spelled.write_text(header + "saturnisme_enfant,10368-9,ge,5,µg/dL,,17,365,yes,\n", encoding="utf-8")
    assert mdo.load_rules(spelled, canonical_units=_canonical)["unit"].to_list() == ["ug/dL"]
    none = tmp_path / "none.csv"
    none.write_text(header + "hepatite_a,22314-9,ge,1,{index},,,365,yes,\n", encoding="utf-8")
    with pytest.raises(mdo.MdoRulesError, match="22314-9 has no canonical unit"):
        mdo.load_rules(none, canonical_units=_canonical)
    # the shipped rules pass
    mdo.load_rules(SEEDS / "mdo_rules.csv", known_mdo=set(mdo_list()["mdo_id"].to_list()),
                   canonical_units=_canonical)


def test_the_pipeline_refuses_a_rule_in_another_unit(tmp_path, monkeypatch):
    from flows import epi
    from flows.settings import Settings
    from flows.steps import Context

    rules = (SEEDS / "mdo_rules.csv").read_text(encoding="utf-8").replace(
        "saturnisme_enfant,10368-9,ge,5,ug/dL,", "saturnisme_enfant,10368-9,ge,50,ug/L,")
    assert "ge,50,ug/L" in rules
    (tmp_path / "rules.csv").write_text(rules, encoding="utf-8")
    monkeypatch.setenv("BIOLAKE_MDO_RULES", str(tmp_path / "rules.csv"))
    ctx = Context.create(Settings(home=tmp_path / "home"), "t")
    refs = {"mdo_list": mdo_list(), "loinc": pl.read_csv(SEEDS / "reference" / "loinc.csv", infer_schema=False)}
    with pytest.raises(mdo.MdoRulesError, match="unit ug/L is not the canonical unit ug/dL of 10368-9"):
        epi.load_rules(ctx, refs)


# --- identification codes: the result names the organism (QA mdo F4) ----------------------------
def _with_texts(df: pl.DataFrame, texts: list[str | None]) -> pl.DataFrame:
    return df.with_columns(pl.Series("value_raw", texts, dtype=pl.Utf8))


def test_a_culture_naming_the_agent_is_a_case_on_the_organism_rules(rules):
    """QA mdo F4: 593-4 'Legionella sp identified ... by Organism specific culture' is answered
    'Legionella pneumophila sérogroupe 1', not 'Positif': such results had no class and never made
    a case. The organism rules count a text naming their agent and nothing else (a species of the
    genus, 'isolé', a serogroup); a negation, another organism, a pending culture or a verdict of
    another class do not count."""
    rows = [  # person, text, loinc, class (as qualitative.py reads the text)
        ("lp1", "Legionella pneumophila sérogroupe 1", "593-4", None),
        ("lp_cwe", "Legionella pneumophila^Legionella pneumophila^L", "593-4", None),
        ("l_sp", "Legionella sp.", "88585-5", None),               # genus code, genus rule: any species
        ("l_fr", "Légionelle isolée", "590-0", None),
        ("l_pos", "Positif", "593-4", "POS"),                       # a verdict still counts
        ("rabies", "Virus de la rage isolé", "6539-1", None),
        ("brucella", "Brucella melitensis", "552-0", None),
        ("polio", "Poliovirus type 1", "73907-8", None),
        ("rubella", "Virus de la rubéole isolé", "6548-2", None),
        ("hiv_profile", "VIH-1", "77685-6", None),
        ("hiv_verdict", "Positif VIH-1", "77685-6", "POS"),           # QA: read as POS since F3
        # never a case
        ("l_not_isolated", "Legionella non isolée", "593-4", None),
        ("l_absence", "Absence de Legionella", "593-4", "NEG"),
        ("l_pas_de", "Pas de Legionella isolée", "593-4", None),
        ("l_negative", "Legionella : culture négative", "593-4", None),
        ("l_not_detected", "Legionella pneumophila non détecté", "593-4", None),
        ("l_pending", "Legionella en cours d'identification", "593-4", None),
        ("other_genus", "Pseudomonas aeruginosa", "593-4", None),
        ("other_agent", "Listeria monocytogenes", "593-4", None),
        ("rabies_not", "Virus de la rage non isolé", "6539-1", None),
        ("hiv_neg", "Négatif", "77685-6", "NEG"),
        ("hiv_undetermined", "Indéterminé", "77685-6", "INVALID"),
        ("wrong_code", "Legionella pneumophila", "6539-1", None),     # a Legionella on the rabies culture
        # read as not the agent (QA numbers F6: kept off the unrecognised list), never a case either
        ("other_strep", "Streptococcus pneumoniae", "589-2", None),
        ("brucella_not", "Brucella non retrouvée", "552-0", None),
        ("polio_absent", "Poliovirus absent", "73907-8", None),
        ("l_non_pneumophila", "Legionella non pneumophila", "593-4", None),  # unread: a species group
        ("not_an_organism_rule", "Legionella pneumophila", "31870-9", None),  # urinary antigen: a verdict rule
    ]
    df = _with_texts(results(*[(p, 0, code, cls, None, None, 40, "75") for p, _, code, cls in rows]),
                     [t for _, t, _, _ in rows])
    got = sorted(mdo.positive_results(df, rules).select("mdo_id", "person_key").rows())
    assert got == sorted([
        ("legionellose", "lp1"), ("legionellose", "lp_cwe"), ("legionellose", "l_sp"), ("legionellose", "l_fr"),
        ("legionellose", "l_pos"), ("rage", "rabies"), ("brucellose", "brucella"), ("poliomyelite", "polio"),
        ("rubeole", "rubella"), ("vih", "hiv_profile"), ("vih", "hiv_verdict"),
    ])


@pytest.mark.parametrize(("text", "agent", "not_agent"), [
    ("Legionella non isolée", "legionella|légionelle", True),
    ("Légionelles non retrouvées", "legionella|légionelle|légionelles", True),
    ("Culture : Legionella spp. non isolée", "legionella", True),
    ("Legionella : culture négative", "legionella", True),
    ("Pas de Legionella isolée", "legionella", True),
    ("Aucune légionelle retrouvée", "legionella|légionelle", True),
    ("Brucella non retrouvée", "brucella", True),
    ("Poliovirus absent", "polio virus|poliovirus|polio", True),
    ("Virus de la rage non isolé", "rabies|rage", True),
    ("No Legionella isolated", "legionella", True),
    ("Streptococcus pneumoniae", "legionella", True),
    ("Streptococcus pneumoniae^Streptococcus pneumoniae^L", "legionella", True),
    ("Escherichia coli isolé", "legionella", True),
    ("Brucella melitensis", "legionella", True),
    # the agent, or read neither way: stays unrecognised, for a person to read
    ("Legionella pneumophila sérogroupe 1", "legionella", False),
    ("Legionella non pneumophila", "legionella", False),              # a species group: a positive
    ("Legionella pneumophila non isolée", "legionella", False),       # says nothing of the other species
    ("Legionella détectée, culture négative", "legionella", False),
    ("Legionella en cours d'identification", "legionella", False),
    ("Legionella non isolée, Streptococcus pneumoniae", "legionella", False),
    ("Streptococcus pneumoniae et Legionella pneumophila", "legionella", False),
    ("Streptococcus pneumoniae négatif", "legionella", False),
    ("Streptococcus non groupable", "legionella", False),
    ("Brucella melitensis", "brucella", False),                       # the agent itself
    ("zorglub", "legionella", False),
    ("Non isolée", "legionella", False),
])
def test_a_negation_or_another_organism_is_read_as_not_the_agent(text, agent, not_agent):
    """QA numbers F6 (organisms.reads_not_agent): strict shapes only; it never makes a case."""
    from transforms.terminology.organisms import agent_phrases, names_agent, reads_not_agent

    phrases = agent_phrases(agent.split("|"))
    assert reads_not_agent(text, phrases) is not_agent
    assert not (not_agent and names_agent(text, phrases))


def test_a_species_agent_is_not_named_by_its_genus(tmp_path):
    """A rule whose agent is a species ('legionella pneumophila') does not count 'Legionella sp.'
    nor another species; the rule reads the agent's words, consecutive, without case or accents."""
    p = tmp_path / "rules.csv"
    p.write_text("mdo_id,loinc_num,condition,threshold,unit,min_age,max_age,agent,episode_days,active,note\n"
                 "legionellose,593-4,organism,,,,,Legionella pneumophila,90,yes,\n", encoding="utf-8")
    rules = mdo.load_rules(p)
    texts = ["Legionella sp.", "Legionella longbeachae", "LEGIONELLA PNEUMOPHILA sg 1", "Legionella pneumophila"]
    df = _with_texts(results(*[(f"p{i}", 0, "593-4", None, None, None, 40, "75") for i in range(4)]), texts)
    assert sorted(mdo.positive_results(df, rules)["person_key"].to_list()) == ["p2", "p3"]


@pytest.mark.parametrize("body, message", [
    ("legionellose,593-4,organism,,,,,,90,yes,\n", "rules.csv:2: condition organism needs the agent's names"),
    ("legionellose,31870-9,pos,,,,,legionella,90,yes,\n", "rules.csv:2: agent is read by condition organism only"),
    ("legionellose,593-4,organism,,,,,listeria,90,yes,\n",
     "rules.csv:2: none of the agent's names 'listeria' is in the name of 593-4"),
])
def test_organism_rules_are_checked_at_load(tmp_path, body, message):
    p = tmp_path / "rules.csv"
    p.write_text("mdo_id,loinc_num,condition,threshold,unit,min_age,max_age,agent,episode_days,active,note\n" + body,
                 encoding="utf-8")
    loinc = pl.read_csv(SEEDS / "reference" / "loinc.csv", infer_schema=False)
    with pytest.raises(mdo.MdoRulesError, match=message.replace("(", r"\(")):
        mdo.load_rules(p, known_mdo=set(mdo_list()["mdo_id"].to_list()), loinc=loinc)


def test_seeded_identification_codes_use_the_organism_condition():
    """Every active code of the shipped rules whose LOINC answers with an organism ('identified',
    [Identifier], [Type]) is an organism rule whose agent the LOINC name gives (checked at load)."""
    loinc = pl.read_csv(SEEDS / "reference" / "loinc.csv", infer_schema=False)
    rules = mdo.load_rules(SEEDS / "mdo_rules.csv", known_mdo=set(mdo_list()["mdo_id"].to_list()), loinc=loinc)
    names = dict(loinc.select("loinc_num", "display_en").iter_rows())
    ident = {c for c in rules.filter("active")["loinc_num"].to_list()
             if any(w in (names.get(c) or "") for w in (" identified", "[Identifier]", "[Type]"))}
    organism = set(rules.filter(pl.col("active") & (pl.col("condition") == "organism"))["loinc_num"].to_list())
    assert ident == organism
    assert len(organism) == 13


def test_cultures_naming_the_agent_are_cases_end_to_end(tmp_path):
    """QA mdo F4 repro: HL7 593-4 'Legionella pneumophila sérogroupe 1' (ST), the same as a CWE
    organism code, 6539-1 'Virus de la rage isolé', 593-4 'Positif' (control) and 593-4 'Legionella
    non isolée': 3 legionellosis cases and 1 rabies case. QA numbers F6: the negated text, another
    organism ('Streptococcus pneumoniae') and 'Poliovirus absent' are read as not the agent: no
    case, and not in quality.unrecognised_results; a text read neither way ('zorglub') still is."""
    from flows.epi import publish_epi
    from flows.publish import publish_quality
    from tests.helpers import nir
    from warehouse import catalog as cat
    from warehouse import catalog_epi as ce
    from tests.epi_support import run_steps

    def message(i: int, code: str, kind: str, value: str) -> str:
        return "\r".join([
            f"MSH|^~\\&|QA|330028762|BIOLAKE|BIOLAKE|20261008180000||ORU^R01^ORU_R01|M{i}|P|2.5|||||FRA|UNICODE UTF-8",
            f"PID|1||{nir(f'28001754440{i:02d}')}^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS||NOM{chr(64 + i)}"
            f"^Prenom^^^^^L||19800101|F|||^^^^75011^^HORC",
            f"OBR|1|R{i}|R{i}|{code}^culture^LN|||20261008090000||||||||LBA|||||||20261008180000",
            f"OBX|1|{kind}|{code}^culture^LN||{value}||||||F||||||||20261008180000",
        ]) + "\r"

    home = tmp_path / "home"
    landing = home / "landing" / "labo_qa"
    landing.mkdir(parents=True)
    (landing / "cultures.hl7").write_text("".join([
        message(1, "593-4", "ST", "Legionella pneumophila sérogroupe 1"),
        message(2, "593-4", "CWE", "Legionella pneumophila^Legionella pneumophila^L"),
        message(3, "6539-1", "ST", "Virus de la rage isolé"),
        message(4, "593-4", "ST", "Positif"),
        message(5, "593-4", "ST", "Legionella non isolée"),
        message(6, "589-2", "ST", "Streptococcus pneumoniae"),
        message(7, "73907-8", "ST", "Poliovirus absent"),
        message(8, "593-4", "ST", "zorglub"),
    ]), encoding="utf-8")
    ctx, refs = run_steps(home)
    publish_epi(ctx, refs)
    cases = ctx.wh.read(ce.MDO_CASES)
    assert sorted(cases.select("mdo_id", "loinc_code").rows()) == [
        ("legionellose", "593-4"), ("legionellose", "593-4"), ("legionellose", "593-4"), ("rage", "6539-1")]
    publish_quality(ctx)
    waiting = ctx.wh.read(cat.UNRECOGNISED_RESULTS)
    assert waiting.select("loinc_code", "value_raw", "surveillance", "reason").rows() == [
        ("593-4", "zorglub", "MDO legionellose", "text_not_recognised")]


def test_rules_broader_than_the_reference_criterion_are_inactive(rules):
    """QA mdo F7: hepatitis A RNA, measles antigen and culture, Legionella antigen outside urine and
    the meningococcus antigen 'in Specimen' counted although the reference criterion
    (mdo_list.csv typical_lab_criterion_fr) does not name them. Their rows are inactive, with the
    reason in the note; the criterion's own codes still count."""
    off = {("hepatite_a", "7904-6"), ("hepatite_a", "97523-5"), ("legionellose", "17057-1"),
           ("legionellose", "26621-3"), ("legionellose", "31869-1"), ("iim", "31912-9")} | {
        ("rougeole", c) for c in ("31879-0", "31881-6", "31883-2", "31884-0", "31887-3", "76626-1", "91780-7",
                                  "91786-4")}
    inactive = rules.filter(~pl.col("active"))
    assert off <= set(inactive.select("mdo_id", "loinc_num").iter_rows())
    assert all("QA mdo F7" in n for m, c, n in inactive.select("mdo_id", "loinc_num", "note").iter_rows()
               if (m, c) in off)
    got = case_days(
        rules,
        ("rna", 0, "7904-6", "POS", None, None, 30, "75"),
        ("igm", 0, "22314-9", "POS", None, None, 30, "75"),
        ("measles_ag", 0, "31887-3", "POS", None, None, 30, "75"),
        ("measles_culture", 0, "76626-1", "POS", None, None, 30, "75"),
        ("measles_pcr", 0, "48508-6", "POS", None, None, 30, "75"),
        ("sputum_ag", 0, "31869-1", "POS", None, None, 30, "75"),
        ("urinary_ag", 0, "31870-9", "POS", None, None, 30, "75"),
        ("nm_ag", 0, "31912-9", "POS", None, None, 30, "75"),
    )
    assert got == {("hepatite_a", "igm"): [0], ("rougeole", "measles_pcr"): [0], ("legionellose", "urinary_ag"): [0]}


def test_the_generator_truth_reads_an_organism_rule_as_a_positive_verdict():
    """transforms/synthetic/truth_mdo.py, the independent expectation the pipeline tests compare
    with, counts a POS result on an organism rule (it fell to the numeric branch: no case)."""
    from transforms.synthetic.truth_mdo import mdo_weekly

    rule = {"mdo_id": "legionellose", "loinc_num": "593-4", "condition": "organism", "threshold": "", "unit": "",
            "min_age": "", "max_age": "", "agent": "legionella", "episode_days": "90", "active": "yes"}
    rows = pl.DataFrame({"fate": ["valid"], "is_current": [True], "loinc_num": ["593-4"], "result_class": ["POS"],
                         "value_canonical": [None], "age": [40], "person": [1], "collected_date": [D0],
                         "dep": ["75"]}, schema_overrides={"value_canonical": pl.Float64})
    got = mdo_weekly(rows, [rule], {})
    assert got.select("mdo_id", "dep").rows() == [("legionellose", "75")]


def test_a_case_takes_a_departement_or_sex_its_first_result_lacks_from_its_other_result_of_the_day(rules):
    """QA numbers F1 (HIGH), F2 (MEDIUM), MDO: a Legionella urinary antigen positive at 08:00
    without postal code and a Legionella PCR positive at 10:00 in 75011, same person and day: the
    case had dep null (in no row of marts.mdo_weekly). Same for a sex unknown on the first result."""
    res = results(("a", 0, "31870-9", "POS", None, None, 40, None), ("a", 0, "88590-5", "POS", None, None, 40, "75"),
                  ("b", 0, "31870-9", "POS", None, None, 40, "13"), ("b", 0, "88590-5", "POS", None, None, 40, "69"),
                  # another day's département is not borrowed (same episode, no new case)
                  ("c", 0, "31870-9", "POS", None, None, 40, None), ("c", 1, "88590-5", "POS", None, None, 40, "75"))
    res = res.with_columns(pl.when(pl.col("line_no") == 2).then(None).otherwise(pl.col("sex")).alias("sex"))
    c = mdo.cases(mdo.positive_results(res, rules), mdo.episode_days(rules))
    assert c.select("mdo_id", "person_key", "dep", "sex", "loinc_code").rows() == [
        ("legionellose", "a", "75", "F", "31870-9"),   # the opening result's LOINC, the other's dep and sex
        ("legionellose", "b", "13", "F", "31870-9"),   # the first result's own département wins
        ("legionellose", "c", None, "F", "31870-9")]
    w = mdo.weekly_cases(c, ["13", "75"], ["2026-S10"], ["legionellose"], (D0, D0 + timedelta(days=6)))
    assert dict(w.select("dep", "cases").iter_rows()) == {"13": 1, "75": 1}
