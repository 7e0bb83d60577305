"""CR-BIO (CDA R2 level 3) parser: the hand-made sample, several documents per file, refusals."""

from __future__ import annotations

import time
from datetime import date, datetime
from pathlib import Path

import polars as pl
import pytest

from transforms.canonical import CANONICAL_SCHEMA
from transforms.parsers import cda
from transforms.parsers.base import REJECT_SCHEMA, FileFormatError

SAMPLE = Path(__file__).parent / "fixtures" / "cda" / "crbio_sample.xml"


def parse_all(path: Path, **kw):
    chunks = list(cda.parse(path, file_id="f1", source="lab", **kw))
    rows = pl.concat([c.rows for c in chunks]) if chunks else pl.DataFrame(schema=CANONICAL_SCHEMA)
    rejects = pl.concat([c.rejects for c in chunks]) if chunks else pl.DataFrame(schema=REJECT_SCHEMA)
    return rows, rejects, sum(c.units_seen for c in chunks)


def write(tmp_path: Path, data: bytes | str, name: str = "doc.xml") -> Path:
    p = tmp_path / name
    p.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return p


def observation_lines(text: str) -> list[int]:
    return [i for i, ln in enumerate(text.splitlines(), start=1) if "<observation " in ln]


@pytest.fixture(scope="module")
def sample():
    return parse_all(SAMPLE)


def test_sample_every_result_observation_is_a_row(sample):
    rows, rejects, units = sample
    assert (units, rejects.height) == (1, 0)
    assert rows.schema == CANONICAL_SCHEMA
    assert rows["line_no"].to_list() == observation_lines(SAMPLE.read_text(encoding="utf-8"))
    assert rows["message_id"].unique().to_list() == ["1.2.250.1.999.7.1^CRBIO-2024-0042"]


def test_sample_patient_and_request(sample):
    r = sample[0].row(0, named=True)
    assert (r["patient_nir"], r["ins_oid"]) == ("285077512345655", "1.2.250.1.213.1.4.8")
    assert (r["family_name"], r["first_name"]) == ("LEGRAND", "Élodie")  # BR qualifiers
    assert (r["birth_date"], r["sex"], r["postal_code"]) == (date(1985, 7, 12), "F", "75011")
    assert r["request_id"] == "DEM-2024-0042"


def test_sample_results(sample):
    got = sample[0].select(
        "local_code", "local_label", "loinc_code_src", "value_type", "value_raw", "value_num", "unit_raw",
        "ref_range", "abnormal_flag", "result_status", "specimen",
    ).rows()
    # IVL_PQ with only a high bound (inclusive="false"): value_num is the bound, value_comparator '<'
    assert sample[0]["value_comparator"].to_list() == [None, None, None, "<", None, None]
    assert got == [
        ("GLY", "Glycémie à jeun", "2345-7", "NM", "5.4", 5.4, "mmol/L", "3.9-5.8", "N", "F", "SER"),
        ("2160-0", "Créatinine [Masse/Volume] Sérum/Plasma ; Numérique", "2160-0", "NM", "71", 71.0, "umol/L",
         "45 - 90", "N", "F", "SER"),
        ("94500-6", "SARS-CoV-2 ARN", "94500-6", "CWE", "260373001^Détecté^SCT", None, None, None, "A", "F", "NPH"),
        ("1988-5", "CRP", "1988-5", "SN", "<^0.5", 0.5, "mg/L", None, None, "F", "NPH"),
        ("GRP", "Groupe sanguin", None, "ST", "A Rh+", None, None, None, None, "F", "NPH"),
        ("22314-9", "Hépatite A IgM", "22314-9", None, None, None, None, None, None, "X", "NPH"),
    ]


def test_sample_context_lab_and_times(sample):
    rows = sample[0]
    first, covid = rows.row(0, named=True), rows.row(2, named=True)
    assert first["lab_finess"] == "130000012"  # act performer, extension 1 + FINESS
    assert covid["lab_finess"] == "750000001"  # document author
    assert first["collected_at"] == datetime(2024, 3, 5, 7, 35)  # specimen collection procedure
    assert first["received_at"] == datetime(2024, 3, 5, 9, 10)  # SPRECEIVE act
    assert first["validated_at"] == datetime(2024, 3, 5, 11, 45)  # AUTHEN participant
    assert covid["collected_at"] == datetime(2024, 3, 5, 8, 0)  # observation effectiveTime
    assert covid["validated_at"] == datetime(2024, 3, 5, 12, 0)  # legalAuthenticator
    assert covid["received_at"] is None


def doc(i: int, *, version: int = 1, oid: str = "1.2.250.1.213.1.4.8", extra: str = "", body: str | None = None) -> str:
    body = body if body is not None else (
        '<component><observation classCode="OBS" moodCode="EVN">'
        '<code code="2345-7" codeSystem="2.16.840.1.113883.6.1" displayName="Glucose"/>'
        '<statusCode code="completed"/><value xsi:type="PQ" value="5.1" unit="mmol/L"/></observation></component>'
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
        f'<id root="1.2.3" extension="D{i}"/>\n<versionNumber value="{version}"/>\n{extra}'
        f'<recordTarget><patientRole><id root="{oid}" extension="176026912345646"/>'
        "<patient><name><family>MARTIN</family><given>Louis</given></name></patient></patientRole></recordTarget>\n"
        "<component><structuredBody><component><section><entry><organizer classCode=\"BATTERY\" moodCode=\"EVN\">\n"
        f"{body}\n</organizer></entry></section></component></structuredBody></component>\n</ClinicalDocument>\n"
    )


def test_several_documents_and_a_broken_one(tmp_path):
    broken = '<?xml version="1.0"?>\n<ClinicalDocument xmlns="urn:hl7-org:v3"><id root="x"><oops></ClinicalDocument>\n'
    text = doc(1) + broken + doc(3) + "\n\n"
    rows, rejects, units = parse_all(write(tmp_path, text))
    assert units == 3
    assert rows["message_id"].to_list() == ["1.2.3^D1", "1.2.3^D3"]
    assert rejects.select("reason_code").to_series().to_list() == ["MALFORMED_MESSAGE"]
    start_of_broken = doc(1).count("\n") + 1
    assert rejects["line_no"][0] == start_of_broken
    assert "not well-formed" in rejects["detail"][0]
    assert rows["line_no"][1] > start_of_broken


def test_doctype_and_entities_are_refused_unexpanded(tmp_path):
    laughs = (
        '<?xml version="1.0"?>\n<!DOCTYPE ClinicalDocument [\n<!ENTITY a "aaaaaaaaaa">\n'
        + "".join(f'<!ENTITY {c} "&{p};&{p};&{p};&{p};&{p};&{p};&{p};&{p};&{p};&{p};">\n' for p, c in zip("abcdefgh", "bcdefghi"))
        + ']>\n<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&i;</title></ClinicalDocument>\n'
    )
    external = '<?xml version="1.0"?>\n<!DOCTYPE x SYSTEM "file:///etc/passwd">\n<ClinicalDocument xmlns="urn:hl7-org:v3"/>\n'
    for text in (laughs, external):
        t = time.perf_counter()
        rows, rejects, units = parse_all(write(tmp_path, text))
        assert time.perf_counter() - t < 2
        assert rows.height == 0 and units == 1
        assert rejects["reason_code"].to_list() == ["UNSAFE_XML"]
        assert "DOCTYPE" in rejects["detail"][0]


def test_refused_document_does_not_cost_the_next(tmp_path):
    text = '<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY e "v">]>\n<ClinicalDocument xmlns="urn:hl7-org:v3"/>\n' + doc(2)
    rows, rejects, units = parse_all(write(tmp_path, text))
    assert units == 2 and rows["message_id"].to_list() == ["1.2.3^D2"]
    assert rejects["reason_code"].to_list() == ["UNSAFE_XML"]


def test_latin1_bytes_in_a_utf8_document(tmp_path):
    text = doc(1).replace("MARTIN", "MÉNARD")
    rows, rejects, _ = parse_all(write(tmp_path, text.encode("latin-1")))
    assert rejects.height == 0
    assert rows["family_name"].to_list() == ["MÉNARD"]


def test_replacement_document_marks_corrections(tmp_path):
    rows, _, _ = parse_all(write(tmp_path, doc(1) + doc(2, version=2)))
    assert rows["result_status"].to_list() == ["F", "C"]
    rplc = '<relatedDocument typeCode="RPLC"><parentDocument><id root="1.2.3" extension="D1"/></parentDocument></relatedDocument>\n'
    rows, _, _ = parse_all(write(tmp_path, doc(3, extra=rplc)))
    assert rows["result_status"].to_list() == ["C"]


def test_truncated_document_and_trailing_junk(tmp_path):
    full = doc(1)
    rows, rejects, units = parse_all(write(tmp_path, full + full[: len(full) // 2]))
    assert (rows.height, units) == (1, 2)
    assert "truncated" in rejects["detail"][0] or "not well-formed" in rejects["detail"][0]
    rows, rejects, units = parse_all(write(tmp_path, full + "garbage after the document\n"))
    assert (rows.height, units, rejects["reason_code"].to_list()) == (1, 2, ["MALFORMED_MESSAGE"])


def test_test_identity_and_no_result(tmp_path):
    rows, rejects, units = parse_all(write(tmp_path, doc(1, oid="1.2.250.1.213.1.4.10") + doc(2, body="")))
    assert rows.height == 0 and units == 2
    assert rejects["reason_code"].to_list() == ["TEST_IDENTITY", "NO_RESULT"]
    assert rejects["column"][0] == "ins_oid"


def test_a_test_ins_oid_anywhere_in_record_target_is_a_test_identity(tmp_path):
    """Defence in depth (QA, HIGH): the INS (.8) is read, but the patient also carries a test OID."""
    second = '<id root="1.2.250.1.213.1.4.11" extension="1234567890"/>'
    first = doc(1).replace('extension="176026912345646"/>', 'extension="176026912345646"/>' + second, 1)
    other = doc(2).replace("1.2.250.1.213.1.4.8", "1.2.250.1.213.1.4.110", 1)  # a longer number: not a test OID
    rows, rejects, _ = parse_all(write(tmp_path, first + other))
    assert rejects.select("reason_code", "column").rows() == [("TEST_IDENTITY", "ins_oid")]
    assert "1.2.250.1.213.1.4.11" in rejects["detail"][0]
    assert rows["message_id"].to_list() == ["1.2.3^D2"]


@pytest.mark.parametrize(
    ("value", "vt", "num", "comparator"),
    [
        ('<value value="5.2" unit="mmol/L"/>', "NM", 5.2, None),
        ('<value value="&lt;0,5" unit="mmol/L"/>', "SN", 0.5, "<"),
        ('<value value="positif"/>', "ST", None, None),  # as before: text without a type is ST
        ('<value xsi:type="ST" value="5.2"/>', "ST", None, None),  # a declared type is kept
    ],
)
def test_a_value_without_xsi_type_is_typed_from_the_value(tmp_path, value, vt, num, comparator):
    """QA: ``<value value="5.2" unit="mmol/L"/>`` without xsi:type was read as ST, without a number."""
    body = (
        '<component><observation classCode="OBS" moodCode="EVN">'
        f'<code code="2345-7" codeSystem="2.16.840.1.113883.6.1"/><statusCode code="completed"/>{value}'
        "</observation></component>"
    )
    rows, rejects, _ = parse_all(write(tmp_path, doc(1, body=body)))
    assert rejects.height == 0
    assert rows.select("value_type", "value_num", "value_comparator").row(0) == (vt, num, comparator)


def test_whole_file_errors(tmp_path):
    for data, code in ((b"", "EMPTY_FILE"), (b"  \n", "EMPTY_FILE"), (b"MSH|^~\\&|x\r", "UNPARSEABLE_FILE"),
                       (b"<html><body/></html>", "UNPARSEABLE_FILE")):
        with pytest.raises(FileFormatError) as e:
            parse_all(write(tmp_path, data))
        assert e.value.reason_code == code


def test_extract_document_for_embedding():
    result = cda.extract_document(SAMPLE.read_bytes())
    assert result.reason == "" and len(result.rows) == 6
    assert result.doc_id == "1.2.250.1.999.7.1^CRBIO-2024-0042"


def test_documents_across_read_blocks_and_a_latin1_one_read_again(tmp_path):
    """Documents are read in blocks (cda.BLOCK_SIZE); one that spans blocks, or that must be read
    again as Latin-1 from its first byte, gives the same rows whatever the block size."""
    import io

    from transforms.synthetic import generate

    res = generate(tmp_path / "h", n_results=3000, seed=2, formats={"labo_alpha": "cda"})
    data = max((p for p in res.landing_files if p.suffix == ".xml"), key=lambda p: p.stat().st_size).read_bytes()
    docs = [b"<?xml" + d for d in data.split(b"<?xml")[1:]]
    assert len(docs) > 20 and len(data) > 3 * 4096
    mid = len(docs) // 2
    text = docs[mid].decode("utf-8")
    assert any(ord(ch) > 127 for ch in text)  # accents: its Latin-1 bytes are not UTF-8
    mixed = b"".join(docs[:mid] + [text.encode("latin-1")] + docs[mid + 1:])

    def read(blob: bytes, size: int):
        return [(d.start_line, d.doc_id, d.rows, d.reason) for d in cda.iter_documents(io.BytesIO(blob), size)]

    reference = read(data, 1 << 20)
    assert len(reference) == len(docs) and not any(r[3] for r in reference)
    for size in (700, 4096, cda.BLOCK_SIZE, 1 << 20):
        assert read(data, size) == reference, size
        assert read(mixed, size) == reference, size


@pytest.mark.parametrize(("code", "read", "issue"), [
    ("F", "F", None), ("M", "M", None), ("UN", None, None), ("U", None, None), ("UNK", None, None), ("un", None, None),
    ("Féminin", "F", None), ("male", "M", None), ("X", None, "SEX_INVALID:sex")])
def test_administrative_gender_un_is_an_unknown_sex(tmp_path, code, read, issue):
    """administrativeGenderCode UN (undifferentiated, HL7 v3) and U (unknown, CI-SIS) are an
    unknown sex (null): the result is kept. QA F5: another code (X) is null too, flagged for the
    validator to keep the result with SEX_INVALID (it was left as sent and quarantined)."""
    gender = f'<administrativeGenderCode code="{code}" codeSystem="2.16.840.1.113883.5.1"/>'
    text = doc(1).replace("</name></patient>", "</name>" + gender + "</patient>")
    assert gender in text
    rows, rejects, _ = parse_all(write(tmp_path, text))
    assert rejects.height == 0 and rows["sex"].to_list() == [read] and rows["parse_issues"].to_list() == [issue]


def test_administrative_gender_without_code_is_an_unknown_sex(tmp_path):
    text = doc(1).replace("</name></patient>", '</name><administrativeGenderCode nullFlavor="UNK"/></patient>')
    rows, rejects, _ = parse_all(write(tmp_path, text))
    assert rejects.height == 0 and rows["sex"].to_list() == [None]


def test_a_broken_later_document_names_the_file_line(tmp_path):
    """QA ops F2: expat counts lines from the document's start; the detail gives the file's line."""
    broken = '<?xml version="1.0"?>\n<ClinicalDocument xmlns="urn:hl7-org:v3">\n<id root="x">\n<oops></ClinicalDocument>\n'
    text = doc(1) + doc(2) + broken + doc(3)
    _, rejects, _ = parse_all(write(tmp_path, text))
    start = (doc(1) + doc(2)).count("\n") + 1
    assert rejects["line_no"].to_list() == [start]
    # the mismatched tag is on the broken document's 4th line
    assert f"mismatched tag: line {start + 3}," in rejects["detail"][0]


def test_a_document_cut_inside_a_tag_or_between_tags_is_truncated_at_the_files_last_line(tmp_path):
    """QA ops F2: a cut inside a tag said 'XML not well-formed (unclosed token...)', with a line
    counted from the document's start; both cuts say 'document truncated' and the file's line."""
    full = doc(1) + doc(2)
    inside = full[: full.rindex("<observation") + len("<observ")]
    between = full[: full.rindex("<observation")]
    for text in (inside, between, between + "\n"):
        rows, rejects, units = parse_all(write(tmp_path, text))
        assert (rows.height, units) == (1, 2)
        last = text.count("\n") + (0 if text.endswith("\n") else 1)
        assert rejects["line_no"].to_list() == [doc(1).count("\n") + 1]
        assert rejects["detail"][0].startswith(f"document truncated: the file ends at line {last} before")


def _section_doc(values: list[str], narrative: str = "") -> str:
    """A document with one section: its narrative block, then one SARS-CoV-2 PCR per value."""
    observations = "".join(
        '<component><observation classCode="OBS" moodCode="EVN">'
        '<code code="94500-6" codeSystem="2.16.840.1.113883.6.1" displayName="SARS-CoV-2 ARN PCR"/>'
        f'<statusCode code="completed"/>{v}</observation></component>' for v in values)
    return doc(1).replace(
        '<component><structuredBody><component><section><entry><organizer classCode="BATTERY" moodCode="EVN">\n',
        f'<component><structuredBody><component><section><title>Virologie</title><text>{narrative}</text>'
        '<entry><organizer classCode="BATTERY" moodCode="EVN">\n', 1
    ).split("<component><observation", 1)[0] + observations + (
        "\n</organizer></entry></section></component></structuredBody></component>\n</ClinicalDocument>\n")


def test_a_coded_value_without_a_code_is_read_by_its_original_text(tmp_path):
    """QA fmt F2: ``<value xsi:type="CD" nullFlavor="OTH"><originalText>Détecté</originalText>`` (a
    result word without a code in the value set) was quarantined as "no value": the positive was
    missing from SI-DEP. Its text is the label, as an HL7 CWE sent with its text only; by reference
    to the section's narrative too."""
    from transforms.terminology.qualitative import QualitativeReader

    values = [
        '<value xsi:type="CD" nullFlavor="OTH"><originalText>Détecté</originalText></value>',
        '<value xsi:type="CD" nullFlavor="OTH"><originalText>\n  <reference value="#res2"/>\n</originalText></value>',
        '<value xsi:type="CE" code="260385009" codeSystem="2.16.840.1.113883.6.96">'
        "<originalText>Négatif</originalText></value>",
        '<value xsi:type="CD" code="260373001" codeSystem="2.16.840.1.113883.6.96" displayName="Detected">'
        "<originalText>Détecté</originalText></value>",  # a displayName stays the label
    ]
    narrative = ('<table><tr><td>SARS-CoV-2</td><td ID="res2"><content>Non</content> détecté</td></tr>'
                 '<tr><td ID="other">x</td></tr></table>')
    rows, rejects, _ = parse_all(write(tmp_path, _section_doc(values, narrative)))
    assert rejects.height == 0
    assert rows.select("value_type", "value_raw", "parse_issues").rows() == [
        ("CWE", "^Détecté", None), ("CWE", "^Non détecté", None), ("CE", "260385009^Négatif^SCT", None),
        ("CWE", "260373001^Detected^SCT", None)]
    reader = QualitativeReader()
    assert [reader.classify(v)[1] for v in rows["value_raw"]] == ["POS", "NEG", "NEG", "POS"]


def test_a_coded_value_whose_text_reference_is_not_found_is_quarantined_saying_so(tmp_path):
    """The value was sent but its text cannot be found: quarantined ``VALUE_INVALID:value_raw`` with
    that reason, not ``MISSING_VALUE`` ("no value", which would be false)."""
    from quality.schemas import validate_rows

    values = ['<value xsi:type="CD" nullFlavor="OTH"><originalText><reference value="#gone"/></originalText></value>',
              '<value xsi:type="CD" nullFlavor="OTH"><originalText><reference value="#res1"/></originalText></value>']
    rows, rejects, _ = parse_all(write(tmp_path, _section_doc(values, '<content ID="res1">Positif</content>')))
    assert rejects.height == 0
    assert rows["value_raw"].to_list() == [None, "^Positif"]
    assert rows["parse_issues"].to_list() == ["VALUE_INVALID:value_raw:text_reference", None]
    rows = rows.with_columns(pl.lit("2026-11-04 08:00").str.to_datetime("%Y-%m-%d %H:%M", time_unit="us")
                             .alias("collected_at"), pl.lit("R1").alias("request_id"))
    valid, quarantine = validate_rows(rows, now=datetime(2026, 11, 5, 12))
    assert valid.height == 1
    assert quarantine.select("reason_code", "column").rows() == [("VALUE_INVALID", "value_raw")]
    assert "refers to the document's narrative (reference #id), and that text was not found" in quarantine["detail"][0]


def test_an_observations_own_time_is_observed_at_and_the_procedures_the_collection(tmp_path):
    """QA fmt F1: a CR-BIO tolerance test, one collection procedure (08:00) and observations timed
    08:00 / 10:00: the procedure stays collected_at, each observation's effectiveTime is observed_at."""
    body = "".join(
        '<component><observation classCode="OBS" moodCode="EVN">'
        '<code code="2345-7" codeSystem="2.16.840.1.113883.6.1"/><statusCode code="completed"/>'
        f'<effectiveTime value="{t}"/><value xsi:type="PQ" value="5.0" unit="mmol/L"/></observation></component>'
        for t in ("20261104080000", "20261104100000+0100"))
    procedure = ('<entryRelationship typeCode="COMP"><procedure classCode="PROC" moodCode="EVN">'
                 '<effectiveTime value="20261104080000"/></procedure></entryRelationship>')
    text = doc(1, body=body).replace('<organizer classCode="BATTERY" moodCode="EVN">\n',
                                     f'<organizer classCode="BATTERY" moodCode="EVN">\n{procedure}', 1)
    rows, rejects, _ = parse_all(write(tmp_path, text))
    assert rejects.height == 0
    assert rows.select(pl.col("collected_at").dt.hour(), pl.col("observed_at").dt.hour(),
                       "observation_sub_id").rows() == [(8, 8, None), (8, 10, None)]


@pytest.mark.parametrize("declared", ['encoding="ISO-8859-1"', "encoding='latin1'", ""],
                         ids=["declared-iso-8859-1", "declared-latin1", "undeclared"])
def test_8bit_text_is_read_as_windows_1252_and_an_undefined_byte_refuses_its_document(tmp_path, declared):
    """CDA read 8-bit text as Latin-1 when HL7 and HPRIM read it as Windows-1252 (QA fmt F3): CŒUR
    became C\\x8cUR, linked as another person. A byte Windows-1252 leaves undefined refuses its
    document, naming it and its line, and the documents around it are read."""
    def eight_bit(i, family):
        text = doc(i).replace('<?xml version="1.0" encoding="UTF-8"?>', f'<?xml version="1.0" {declared}?>')
        return text.replace("MARTIN", family).encode("cp1252")

    bad = eight_bit(2, "CŒUR").replace(b"C\x8cUR", b"C\x81UR")
    data = eight_bit(1, "CŒUR D’ALÈNE") + bad + eight_bit(3, "CŒUR")
    rows, rejects, units = parse_all(write(tmp_path, data))
    assert units == 3
    assert rows["family_name"].to_list() == ["CŒUR D’ALÈNE", "CŒUR"]
    assert rows["message_id"].to_list() == ["1.2.3^D1", "1.2.3^D3"]
    bad_line = data[: data.index(b"C\x81UR")].count(b"\n") + 1
    assert rejects["reason_code"].to_list() == ["MALFORMED_MESSAGE"]
    assert rejects["detail"][0].startswith(f"control character U+0081 at line {bad_line}, column ")
    assert "a byte Windows-1252 leaves undefined" in rejects["detail"][0]


def test_a_reference_to_a_table_row_reads_its_cells_apart(tmp_path):
    """QA regr F7: ``<reference value="#r1"/>`` naming a ``<tr>`` read 'SARS-CoV-2 PCRDétectéValeur...',
    the cells glued together. Cells, paragraphs and line breaks are words apart; inline content is not."""
    values = ['<value xsi:type="CD" nullFlavor="OTH"><originalText><reference value="#r1"/></originalText></value>',
              '<value xsi:type="CD" nullFlavor="OTH"><originalText><reference value="#p1"/></originalText></value>']
    narrative = ('<table><tr ID="r1"><td>SARS-CoV-2 PCR</td><td>Détecté</td><td>Valeur de référence :'
                 ' Non détecté</td></tr></table><paragraph ID="p1">Positif<br/>faible</paragraph>')
    rows, rejects, _ = parse_all(write(tmp_path, _section_doc(values, narrative)))
    assert rejects.height == 0
    assert rows["value_raw"].to_list() == ["^SARS-CoV-2 PCR Détecté Valeur de référence : Non détecté",
                                           "^Positif faible"]
