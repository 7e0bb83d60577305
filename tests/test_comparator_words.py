"""A bound written in French words ('inf. à 5', 'supérieur ou égal à 10') is read as the comparator
and its number, like '<5' and '≥10', in every format that reads a comparator (QA fmt F6: such results
stayed text, without their number); other wordings stay text."""

from __future__ import annotations

import polars as pl
import pytest

from tests.helpers import HEADER, line
from transforms.parsers import cda, csv_extract, hl7v2, hprim
from transforms.parsers.base import comparator_of, comparator_pattern

ACCEPTED = [
    ("inf. à 5", 5.0, "<"), ("inf à 5", 5.0, "<"), ("inférieur à 5", 5.0, "<"), ("Inférieure à 0,5", 0.5, "<"),
    ("inferieur a 5", 5.0, "<"), ("INF. A 5", 5.0, "<"), ("INFÉRIEUR À 5", 5.0, "<"), ("inf.à5", 5.0, "<"),
    ("inférieur ou égal à 5", 5.0, "<="), ("inf. ou égal à 5", 5.0, "<="), ("inférieure ou égale à 2,5", 2.5, "<="),
    ("sup. à 1000", 1000.0, ">"), ("sup à 1000", 1000.0, ">"), ("supérieur à 1000", 1000.0, ">"),
    ("SUPERIEUR A 1000", 1000.0, ">"), ("supérieur ou égal à 10", 10.0, ">="), ("sup. ou égal à 1,5", 1.5, ">="),
    ("< à 5", 5.0, "<"), ("> à 1000", 1000.0, ">"), ("<= à 5", 5.0, "<="), ("≥ à 3", 3.0, ">="), ("≤ à 3", 3.0, "<="),
]
REFUSED = [
    "inf 5", "inf. 5", "moins de 5", "plus de 1000", "inférieur à", "inférieur à la normale", "inf. à 5 mg/L",
    "entre 2 et 5", "inf. à 5 et sup. à 2", "infini", "supérieur", "égal à 5", "info à 5", "à 5", "inf. à x",
]


def test_the_pattern_and_the_comparator_it_gives():
    number = r"[0-9]+(?:[.,][0-9]+)?"
    values = [v for v, _, _ in ACCEPTED] + REFUSED
    got = pl.DataFrame({"v": values}).select(
        pl.col("v").str.extract_groups(comparator_pattern(number)).alias("g")).select(
        comparator_of(pl.col("g").struct.field("1")).alias("c"), pl.col("g").struct.field("2").alias("n"))
    want = [c for _, _, c in ACCEPTED] + [None] * len(REFUSED)
    assert got["c"].to_list() == want
    assert got["n"].drop_nulls().str.replace(",", ".").cast(pl.Float64).to_list() == [n for _, n, _ in ACCEPTED]
    signs = pl.DataFrame({"g": ["<", "<=", ">", ">=", "≤", "≥", None]}).select(comparator_of(pl.col("g")))
    assert signs.to_series().to_list() == ["<", "<=", ">", ">=", "<=", ">=", None]  # as before


def _csv(tmp_path, values: list[str]) -> pl.DataFrame:
    path = tmp_path / "words.csv"
    lines = [line(N_DEMANDE=f"D{i}", RESULTAT=v, UNITE="mg/L") for i, v in enumerate(values)]
    path.write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")
    chunks = list(csv_extract.parse(path, file_id="f", source="lab"))
    assert all(c.rejects.is_empty() for c in chunks)
    return pl.concat([c.rows for c in chunks])


def test_csv_reads_the_words_as_a_bound(tmp_path):
    rows = _csv(tmp_path, [v for v, _, _ in ACCEPTED])
    assert rows.select("value_raw", "value_num", "value_comparator", "value_type").rows() == [
        (v, n, c, "SN") for v, n, c in ACCEPTED]


def test_csv_keeps_other_wordings_as_text(tmp_path):
    rows = _csv(tmp_path, REFUSED)
    assert rows.select("value_raw", "value_num", "value_comparator", "value_type").rows() == [
        (v, None, None, "ST") for v in REFUSED]


HL7 = ("MSH|^~\\&|SGL|330028762|D|D|20261105120000||ORU^R01^ORU_R01|M{i}|P|2.5\r"
       "PID|1||IPP{i}^^^LAB^PI||MARTIN^Marie^^^^^L||19790717|F\r"
       "OBR|1||DEM{i}|X^Y^L|||20261104083000\r"
       "OBX|1|{vt}|CRP^CRP^L||{value}|mg/L|||||F\r")


def _hl7(tmp_path, vt: str, values: list[str]) -> pl.DataFrame:
    path = tmp_path / f"words_{vt or 'untyped'}.hl7"
    path.write_text("".join(HL7.format(i=i, vt=vt, value=v) for i, v in enumerate(values)), encoding="utf-8")
    chunks = list(hl7v2.parse(path, file_id="f", source="lab", chunk_rows=1000))
    assert all(c.rejects.is_empty() for c in chunks)
    return pl.concat([c.rows for c in chunks])


@pytest.mark.parametrize("vt", ["NM", "SN", ""])
def test_hl7_reads_the_words_as_a_bound_in_a_numeric_or_untyped_value(tmp_path, vt):
    rows = _hl7(tmp_path, vt, [v for v, _, _ in ACCEPTED])
    assert rows.select("value_num", "value_comparator", "parse_issues").rows() == [(n, c, None) for _, n, c in ACCEPTED]
    assert set(rows["value_type"]) == {vt or "SN"}


def test_hl7_other_wordings_give_no_number_and_text_stays_text(tmp_path):
    """An NM value in other words is unreadable as before (VALUE_INVALID:value_num); an untyped one
    keeps no type; an ST value stays text even in words, as '<0.5' does (docs/formats.md)."""
    nm = _hl7(tmp_path, "NM", REFUSED)
    assert nm.select("value_num", "value_comparator").unique().rows() == [(None, None)]
    assert set(nm["parse_issues"]) == {"VALUE_INVALID:value_num"}
    untyped = _hl7(tmp_path, "", REFUSED)
    assert untyped.select("value_type", "value_num", "value_comparator").unique().rows() == [(None, None, None)]
    st = _hl7(tmp_path, "ST", ["inf. à 5", "<0.5"])
    assert st.select("value_type", "value_num", "value_comparator").rows() == [("ST", None, None)] * 2


def test_hprim_reads_the_words_in_an_untyped_value(tmp_path):
    text = "\r\n".join([
        "H|~^\\&|F.HPR||750000001^LABO",
        "P|1|IPP1||||MARTIN^Louis||19760212|M",
        "OBR|1||R1||||20261102100000",
        "OBX|1||CRP^CRP^L||inf. à 5|mg/L|||||F",
        "OBX|2|NM|FER^Ferritine^L||supérieur ou égal à 1000|ug/L|||||F",
        "OBX|3||COM^Commentaire^L||moins de 5||||||F",
        "L|1",
    ]) + "\r\n"
    path = tmp_path / "words.hpr"
    path.write_text(text, encoding="utf-8")
    rows = pl.concat([c.rows for c in hprim.parse(path, file_id="f", source="lab")])
    assert rows.select("value_type", "value_num", "value_comparator").rows() == [
        ("SN", 5.0, "<"), ("NM", 1000.0, ">="), (None, None, None)]


def test_cda_reads_the_words_in_a_value_without_its_type(tmp_path):
    observation = ('<component><observation classCode="OBS" moodCode="EVN">'
                   '<code code="1988-5" codeSystem="2.16.840.1.113883.6.1"/><statusCode code="completed"/>'
                   '<value value="{v}" unit="mg/L"/></observation></component>')
    text = ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
            '<id root="1.2.3" extension="D1"/>\n'
            '<recordTarget><patientRole><id root="1.2.250.1.213.1.4.8" extension="176026912345646"/>'
            "<patient><name><family>MARTIN</family><given>Louis</given></name></patient></patientRole></recordTarget>\n"
            '<component><structuredBody><component><section><entry><organizer classCode="BATTERY" moodCode="EVN">\n'
            + "".join(observation.format(v=v) for v in ("inf. à 5", "sup. à 1000", "moins de 5"))
            + "\n</organizer></entry></section></component></structuredBody></component>\n</ClinicalDocument>\n")
    path = tmp_path / "words.xml"
    path.write_text(text, encoding="utf-8")
    rows = pl.concat([c.rows for c in cda.parse(path, file_id="f", source="lab")])
    assert rows.select("value_type", "value_num", "value_comparator").rows() == [
        ("SN", 5.0, "<"), ("SN", 1000.0, ">"), ("ST", None, None)]


def test_qa_excel_extract_end_to_end(tmp_path):
    """QA's Excel-saved extract (F5, F6): '1000' and '6000' find the Ain and the Alpes-Maritimes,
    flagged POSTAL_CODE_PADDED; 'inf. à 5' and 'sup. à 1000' are bounds, kept by the validator."""
    from tests.epi_support import run_steps
    from warehouse import catalog as cat

    qa = ["FINESS;N_DEMANDE;NIR;NOM;PRENOM;DATE_NAISSANCE;SEXE;CODE_POSTAL;DATE_PRELEVEMENT;DATE_RECEPTION;"
          "DATE_VALIDATION;CODE_ANALYSE;LIBELLE_ANALYSE;RESULTAT;UNITE;VALEURS_REFERENCE;STATUT",
          "330028762;C1;279072910085143;MARTIN;Marie;17/07/1979;F;1000;04/11/2026 08:30;04/11/2026 10:00;"
          "04/11/2026 18:00;GLY;Glycémie;5,5;mmol/L;;F",
          "330028762;C2;176019305038591;DURAND;Paul;01/01/1976;M;6000;04/11/2026 08:30;04/11/2026 10:00;"
          "04/11/2026 18:00;CRP;CRP;inf. à 5;mg/L;;F",
          "330028762;C3;176019305038591;DURAND;Paul;01/01/1976;M;06000;04/11/2026 08:30;04/11/2026 10:00;"
          "04/11/2026 18:00;FER;Ferritine;sup. à 1000;ug/L;;F"]
    landing = tmp_path / "home" / "landing" / "labexcel"
    landing.mkdir(parents=True)
    (landing / "excel.csv").write_bytes(("\r\n".join(qa) + "\r\n").encode("cp1252"))
    ctx, _ = run_steps(tmp_path / "home")
    assert ctx.wh.read(cat.QUARANTINE).is_empty()
    fct = ctx.wh.read(cat.FCT_LAB_RESULTS).sort("line_no")
    assert fct.select("line_no", "dep", "dq_flags", "value_num", "value_comparator").rows() == [
        (2, "01", "POSTAL_CODE_PADDED", 5.5, None), (3, "06", "POSTAL_CODE_PADDED", 5.0, "<"),
        (4, "06", None, 1000.0, ">")]
