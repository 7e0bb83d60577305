"""End to end (QA, HIGH): a patient's NIR, name or birth date typed by a lab into free text never
reaches the analyst side.

A hand-made landing: a CSV extract whose RESULTAT, LIBELLE_ANALYSE and VALEURS_REFERENCE hold the
patient's identity, and an HL7 v2 message whose OBX TX/ST values do. After one pipeline run, every
text value of every view of analyst.duckdb and the data-quality report are scanned with the value
scanner of test_privacy_pipeline.py (after showing it finds the identities in raw); the results are
all there, masked and flagged, and still read as positive or negative where the wording allows.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pytest

from tests.helpers import HEADER, line, nir, query
from tests.test_privacy_pipeline import Identities, _add_identity, _scan_values, assert_clean, leaks
from transforms.identity_text import FLAG, MASK

DUPONT_NIR = nir("2800575111001")
MARTIN_NIR = nir("1750369123002")
M = MASK


def _landing(home: Path) -> None:
    csv = home / "landing" / "labo_priv"
    csv.mkdir(parents=True)
    spaced = " ".join([DUPONT_NIR[0], DUPONT_NIR[1:3], DUPONT_NIR[3:5], DUPONT_NIR[5:7], DUPONT_NIR[7:10],
                       DUPONT_NIR[10:13], DUPONT_NIR[13:]])
    who = {"NIR": DUPONT_NIR, "NOM": "DUPONT", "PRENOM": "Marie", "DATE_NAISSANCE": "12/05/1980"}
    pcr = {"CODE_ANALYSE": "PCRCOV", "LIBELLE_ANALYSE": "PCR SARS-CoV-2", "UNITE": "", "VALEURS_REFERENCE": ""}
    lines = [
        HEADER,
        line(N_DEMANDE="P1", **who, **pcr, RESULTAT=f"Positif - patiente DUPONT Marie NIR {DUPONT_NIR}"),
        line(N_DEMANDE="P2", **who, CODE_ANALYSE="BIL1", LIBELLE_ANALYSE=f"Bilan DUPONT Marie {DUPONT_NIR}",
             RESULTAT="5,4", VALEURS_REFERENCE="controle DUPONT Marie 12/05/1980"),
        line(N_DEMANDE="P3", **who, **pcr, RESULTAT=f"Négatif {spaced}"),
        line(N_DEMANDE="P4", **who, **pcr, RESULTAT="Voir commentaire Dupont Marie née le 12/05/1980"),
        line(N_DEMANDE="P5", **who, CODE_ANALYSE="GLY", RESULTAT="19800512", UNITE=""),
        # another patient, nothing typed: untouched
        line(N_DEMANDE="P6", NIR=nir("1550999000117"), NOM="Bernard", PRENOM="Luc", **pcr, RESULTAT="Négatif"),
    ]
    (csv / "extract_20261102.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    hl7 = home / "landing" / "labo_priv_hl7"
    hl7.mkdir(parents=True)
    segments = [
        "MSH|^~\\&|SGL|LABO^750000002^FINESS|BIOLAKE|ARS|20261102120000||ORU^R01^ORU_R01|MSG-1|P|2.5|||||FRA|UNICODE UTF-8|FR",
        f"PID|1||{MARTIN_NIR}^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS||MARTIN^Jean^^^^^L||19750312|M|||"
        "^^LYON^^69003^FRA^H",
        "OBR|1|CMD-1|DEM-H1|PCR^PCR^L|||20261102073500+0100|||||||20261102091000||||||||20261102114500|||F",
        f"OBX|1|TX|COM^Commentaire^L||MARTIN Jean {MARTIN_NIR}||||||F",
        "OBX|2|CWE|94500-6^SARS-CoV-2 ARN^LN||260373001^Détecté^SCT^^^|||A|||F",
        "OBX|3|ST|94500-6^SARS-CoV-2 ARN^LN||Détecté - M. MARTIN Jean, né le 12/03/1975||||||F",
    ]
    (hl7 / "oru_20261102.hl7").write_text("\r".join(segments) + "\r", encoding="utf-8")
    maps = home / "mappings"
    maps.mkdir(parents=True)
    for lab in ("labo_priv", "labo_priv_hl7"):
        (maps / f"{lab}.csv").write_text("local_code,local_label,unit,specimen,loinc_num,valid_from,valid_to\n"
                                         "PCRCOV,PCR SARS-CoV-2,,,94500-6,,\n",
                                         encoding="utf-8")


def _identities() -> Identities:
    ids = Identities()
    _add_identity(ids, DUPONT_NIR, ("DUPONT", "Marie"), date(1980, 5, 12), None)
    _add_identity(ids, MARTIN_NIR, ("MARTIN", "Jean"), date(1975, 3, 12), None)
    return ids


@pytest.fixture(scope="module")
def ran(prefect_harness, tmp_path_factory):
    from flows.pipeline import pipeline
    from warehouse.analyst import build_analyst_db
    from warehouse.store import Warehouse

    home = tmp_path_factory.mktemp("free_text") / "home"
    _landing(home)
    summary = pipeline(home=str(home))
    return home, summary, build_analyst_db(Warehouse(home))


def test_the_scanner_finds_the_planted_identities_in_raw(ran):
    home, _, _ = ran
    con = duckdb.connect(str(home / "biolake.duckdb"), read_only=True)
    try:
        found = _scan_values(con, _identities(), ("raw",))
        texts = [r[0] for r in con.execute("SELECT value_raw FROM raw.results WHERE value_raw IS NOT NULL").fetchall()]
    finally:
        con.close()
    assert found["nir"] and found["name"] and found["birth_date"]
    assert any("raw.results.value_raw" in h for h in found["nir"])
    assert any("MARTIN" in t for t in texts) and any("DUPONT" in t for t in texts)


def test_no_planted_identity_in_any_analyst_view(ran):
    home, summary, analyst_db = ran
    assert summary["rows_valid"] == 6 + 3, summary  # every result kept
    con = duckdb.connect(str(analyst_db), read_only=True)
    try:
        found = _scan_values(con, _identities(), ("staging", "marts", "quality", "ref"))
    finally:
        con.close()
    assert_clean(found, "the analyst database")


def test_the_results_are_kept_masked_flagged_and_still_read(ran):
    home, _, _ = ran
    from flows.settings import Settings
    from tests.helpers import with_request_ids
    from warehouse.store import Warehouse

    fct = query(home, "SELECT file_id, result_no, source, local_code, local_label, value_raw, value_num, ref_range, "
                      "result_class, dq_flags FROM marts.fct_lab_results ORDER BY source, line_no")
    fct = with_request_ids(Warehouse(Settings(home=home).home_abs), fct)  # the plain number is in raw only
    rows = {(r["request_id"], r["local_code"]): r for r in fct.iter_rows(named=True)}
    p1 = rows[("P1", "PCRCOV")]
    assert p1["value_raw"] == f"Positif - patiente {M} NIR {M}" and p1["result_class"] == "POS"
    assert p1["dq_flags"] == FLAG
    p2 = rows[("P2", "BIL1")]
    assert p2["local_label"] == f"Bilan {M}" and p2["ref_range"] == f"controle {M}" and p2["value_num"] == 5.4
    assert rows[("P3", "PCRCOV")]["value_raw"] == f"Négatif {M}" and rows[("P3", "PCRCOV")]["result_class"] == "NEG"
    assert rows[("P4", "PCRCOV")]["value_raw"] == f"Voir commentaire {M} née le {M}"
    p5 = rows[("P5", "GLY")]
    assert p5["value_raw"] == M and p5["value_num"] is None  # the birth date read as a number is gone too
    p6 = rows[("P6", "PCRCOV")]
    assert p6["value_raw"] == "Négatif" and p6["dq_flags"] is None and p6["result_class"] == "NEG"
    hl7 = fct.filter(fct["source"] == "labo_priv_hl7")
    assert hl7.height == 3 and hl7["dq_flags"].to_list().count(FLAG) == 2
    assert sorted(hl7["value_raw"].to_list()) == sorted([
        f"{M}", "260373001^Détecté^SCT", f"Détecté - M. {M}, né le {M}"])
    assert hl7.filter(hl7["value_raw"].str.starts_with("Détecté -"))["result_class"].to_list() == ["POS"]
    # the work queues derive from the masked rows
    backlog = query(home, "SELECT local_label FROM quality.unmapped_backlog WHERE local_code = 'BIL1'")
    assert backlog["local_label"].to_list() == [f"Bilan {M}"]
    unrec = query(home, "SELECT value_raw FROM quality.unrecognised_results ORDER BY value_raw")["value_raw"].to_list()
    assert f"Voir commentaire {M} née le {M}" in unrec and not any("DUPONT" in v.upper() for v in unrec)


def test_the_data_quality_report_shows_masked_text_only(ran):
    home, summary, _ = ran
    report = Path(summary["reports"]["data_quality"]).read_text(encoding="utf-8")
    ids = _identities()
    assert_clean(leaks([report], ids), "the data-quality report")
    assert not {d for d in ids.birth_date_strings() if d in report}
    assert "Bilan [masqué]" in report or "Bilan [masqu&eacute;]" in report
