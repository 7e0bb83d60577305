"""HL7 v2.5 ORU^R01 parser: NIST samples, a hand-made French batch, escapes, encodings, CDA in ED."""

from __future__ import annotations

import base64
import tracemalloc
from datetime import date, datetime
from pathlib import Path

import polars as pl
import pytest

from transforms.canonical import CANONICAL_SCHEMA
from transforms.parsers import hl7v2, linereader
from transforms.parsers.base import REJECT_SCHEMA, FileFormatError

FIXTURES = Path(__file__).parent / "fixtures"
NIST = sorted((FIXTURES / "hl7" / "nist").glob("*.hl7"))
BATCH = FIXTURES / "hl7" / "fr_oru_batch.hl7"
CDA_SAMPLE = FIXTURES / "cda" / "crbio_sample.xml"


def parse_all(path: Path, **kw):
    chunks = list(hl7v2.parse(path, file_id="f1", source="lab", **kw))
    rows = pl.concat([c.rows for c in chunks]) if chunks else pl.DataFrame(schema=CANONICAL_SCHEMA)
    rejects = pl.concat([c.rejects for c in chunks]) if chunks else pl.DataFrame(schema=REJECT_SCHEMA)
    return rows, rejects, sum(c.units_seen for c in chunks)


def write(tmp_path: Path, text: str, name: str = "in.hl7", encoding: str = "utf-8") -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode(encoding))
    return p


def obx_lines(path: Path) -> list[int]:
    """1-based line numbers of OBX segments, terminators \\r, \\n, \\r\\n (an independent count)."""
    text = path.read_bytes().replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return [i for i, ln in enumerate(text.split(b"\n"), start=1) if ln.startswith(b"OBX")]


# --------------------------------------------------------------------------------------------
# NIST ELR 2.5.1 samples


# sha256 of the reference copies, as listed in the shared reference MANIFEST.csv (provenance in
# tests/fixtures/SOURCES.md): the fixtures must stay byte-identical to them
NIST_SHA256 = {
    "ORU_R01_2.5.1_SampleTestCase1.hl7": "307c724b03673566273d519c4e1b86c71d4456e0d14ba2b6f2b38f245661407a",
    "ORU_R01_2.5.1_SampleTestCase2.hl7": "14eecaac978ff6d72d3a011c44a20b384e1dc86327ef7a54a316d9b47c42d955",
    "ORU_R01_2.5.1_SampleTestCase3.hl7": "a414d4a4c818c6424e358876377cebb6fe5a281fae4a63fc78fe5b651183aa88",
    "ORU_R01_2.5.1_SampleTestCase4.hl7": "c165acb0999997b0cb56ecf95f4278e751ff570f2fb59b7669f74a247a588a17",
    "ORU_R01_2.5.1_SampleTestCase5.hl7": "e56ccbb8a97ada920a68bf7ce6ca29380add2e2632ff85043a917662ea5e3f00",
    "ORU_R01_2.5.1_SampleTestCase6.hl7": "b3057af28f25a98cf30a986c7e2c96254dc6b50b4e290b10f63d5067c0289d0e",
}


def test_nist_fixtures_are_the_reference_bytes():
    import hashlib

    assert sorted(p.name for p in NIST) == sorted(NIST_SHA256)
    for p in NIST:
        assert hashlib.sha256(p.read_bytes()).hexdigest() == NIST_SHA256[p.name], p.name


@pytest.mark.parametrize("path", NIST, ids=lambda p: p.stem)
def test_nist_every_obx_accounted_for(path):
    rows, rejects, units = parse_all(path)
    assert units == 1
    assert rejects.height == 0
    assert sorted(rows["line_no"].to_list()) == obx_lines(path)
    assert rows.schema == CANONICAL_SCHEMA
    assert rows["message_id"].str.starts_with("NIST-").all()
    assert rows["parse_issues"].is_null().all()


def test_nist_case1_exact_values():
    rows, _, _ = parse_all(NIST[0])
    r = rows.row(0, named=True)
    assert r["message_id"] == "NIST-100929110701660"
    assert (r["family_name"], r["first_name"]) == ("Johnson", "Philip")
    assert r["birth_date"] == date(2007, 5, 26)
    assert r["sex"] == "M"
    assert r["postal_code"] == "80011"
    assert r["patient_nir"] == "9817566735"  # no INS OID: the first identifier (validation drops it)
    assert r["ins_oid"] == "2.16.840.1.113883.19.3.2.1"
    assert r["request_id"] == "9700123"
    assert (r["local_code"], r["loinc_code_src"], r["local_label"]) == ("10368-9", "10368-9", "Lead BldC-mCnc")
    assert (r["value_type"], r["value_raw"], r["value_num"], r["unit_raw"]) == ("NM", "50", 50.0, "ug/dL")
    assert r["ref_range"] == "<9 mcg/dL:  Acceptable background lead exposure"
    assert (r["abnormal_flag"], r["result_status"]) == ("H", "F")
    assert r["collected_at"] == datetime(2008, 8, 15, 10, 30)  # -0700 dropped, not applied
    assert r["validated_at"] == datetime(2008, 8, 18, 18, 0)
    assert r["received_at"] is None
    assert r["specimen"] == "122554006"
    assert r["lab_finess"] is None  # CLIA ids are not FINESS


def test_nist_correction_status_is_kept():
    rows, _, _ = parse_all(NIST[2])
    r = rows.row(0, named=True)
    assert (r["result_status"], r["value_raw"], r["unit_raw"], r["ref_range"]) == ("C", "25", "ug/dl", "<10 ug/dl")


def test_nist_case4_text_result_and_case5_validation_time():
    r4 = parse_all(NIST[3])[0].row(0, named=True)
    assert (r4["family_name"], r4["sex"], r4["birth_date"], r4["postal_code"]) == ("Anderson", "F", date(1986, 9, 30), "58104")
    assert (r4["local_code"], r4["value_type"], r4["value_raw"], r4["value_num"]) == ("11469-4", "ST", "Isolated", None)
    assert r4["collected_at"] == datetime(2010, 8, 2, 15, 0)
    r5 = parse_all(NIST[4])[0].row(0, named=True)
    assert r5["validated_at"] == datetime(2008, 7, 30, 15, 0)  # OBX-19 before OBR-22
    assert (r5["value_num"], r5["unit_raw"]) == (850000.0, "iU/mL")


def test_nist_case6_three_results():
    rows, _, _ = parse_all(NIST[5])
    assert rows["local_code"].to_list() == ["6331-3", "20995-1", "17576-0"]
    assert rows["value_raw"].to_list() == ["Isolated", "Isolated", "Not Isolated"]
    assert rows["line_no"].to_list() == [6, 7, 8]
    assert rows["specimen"].unique().to_list() == ["252393000"]


# --------------------------------------------------------------------------------------------
# the French batch fixture


@pytest.fixture(scope="module")
def batch():
    return parse_all(BATCH)


def test_batch_accounts_for_every_message_and_obx(batch):
    rows, rejects, units = batch
    assert units == 5
    covered = sorted(rows["line_no"].to_list() + rejects["line_no"].to_list())
    assert covered == [8, 9, 10, 11, 12, 17, 18, 19, 22, 28]
    assert rejects.select("line_no", "reason_code").rows() == [
        (17, "TEST_IDENTITY"),
        (18, "TEST_IDENTITY"),
        (19, "MALFORMED_MESSAGE"),
        (22, "NO_RESULT"),
    ]


def test_batch_patient_and_request(batch):
    r = batch[0].row(0, named=True)
    assert r["message_id"] == "MSG-0001"
    assert (r["patient_nir"], r["ins_oid"]) == ("285077512345655", "1.2.250.1.213.1.4.8")  # INS, not the IPP
    assert (r["family_name"], r["first_name"]) == ("LEGRAND", "Élodie")  # the L (birth) name
    assert (r["birth_date"], r["sex"], r["postal_code"]) == (date(1985, 7, 12), "F", "75011")  # home, not birthplace
    assert r["request_id"] == "DEM-2024-0042"  # OBR-3 filler number


def test_batch_times_lab_and_specimen(batch):
    rows = batch[0].filter(pl.col("message_id") == "MSG-0001")
    first, second = rows.row(0, named=True), rows.row(1, named=True)
    assert first["collected_at"] == datetime(2024, 3, 5, 7, 35)  # OBR-7 (+0100 dropped) before SPM-17
    assert first["received_at"] == datetime(2024, 3, 5, 9, 15)  # SPM-18 before OBR-14
    assert first["validated_at"] == datetime(2024, 3, 5, 11, 48)  # OBX-19
    assert second["validated_at"] == datetime(2024, 3, 5, 11, 45)  # OBR-22
    assert first["lab_finess"] == "130000012"  # OBX-23
    assert second["lab_finess"] == "750000001"  # MSH-4
    assert rows["specimen"].unique().to_list() == ["SER"]


def test_batch_value_types_and_escapes(batch):
    rows = batch[0].filter(pl.col("message_id") == "MSG-0001")
    got = rows.select("local_code", "loinc_code_src", "value_type", "value_raw", "value_num", "value_comparator",
                      "unit_raw", "result_status").rows()
    assert got == [
        ("HB", "718-7", "NM", "13,2", 13.2, None, "g/dL", "F"),
        ("CRP", "1988-5", "SN", "<^0.5", 0.5, "<", "mg/L", "F"),  # SN comparator: the bound and '<'
        ("94500-6", "94500-6", "CWE", "260373001^Détecté^SCT", None, None, None, "F"),
        ("COM", None, "TX", "Prélèvement reçu hémolysé\nRésultat sous réserve & à contrôler | labo",
         None, None, None, "F"),
        ("GRP", None, "ST", "A ^ Rh+", None, None, None, "C"),
    ]
    assert rows["local_label"][0] == "Hémoglobine"
    assert rows["ref_range"][0] == "12.0-16.0"
    assert rows["abnormal_flag"].to_list() == ["N", "N", "A", None, None]


def test_batch_rejects_carry_no_patient_data(batch):
    rejects = batch[1]
    for detail in rejects["detail"]:
        assert "PAT-TROIS" not in detail and "279035121518989" not in detail
    malformed = rejects.filter(pl.col("reason_code") == "MALFORMED_MESSAGE").row(0, named=True)
    assert "PID" in malformed["detail"]
    assert malformed["raw_text"].startswith("MSH|") and "MSG-0003" in malformed["raw_text"]
    test_id = rejects.filter(pl.col("reason_code") == "TEST_IDENTITY").row(0, named=True)
    assert test_id["column"] == "ins_oid" and "1.2.250.1.213.1.4.10" in test_id["detail"]


def test_batch_declared_delimiters(batch):
    r = batch[0].filter(pl.col("message_id") == "MSG-0005").row(0, named=True)
    assert (r["local_code"], r["local_label"], r["loinc_code_src"]) == ("K", "Potassium", "2823-3")
    assert (r["family_name"], r["postal_code"], r["lab_finess"]) == ("MARTIN", "69002", "750000001")
    assert r["collected_at"] == datetime(2024, 3, 5, 8, 20)


def test_mixed_line_endings_give_the_same_rows(tmp_path, batch):
    data = BATCH.read_bytes().split(b"\r")
    seps = [b"\r", b"\n", b"\r\n"]
    mixed = b"".join(seg + seps[i % 3] for i, seg in enumerate(data[:-1]))
    rows, rejects, units = parse_all(write_bytes(tmp_path, mixed))
    assert units == 5
    assert rows.equals(batch[0])
    assert rejects.drop("raw_text").equals(batch[1].drop("raw_text"))


def write_bytes(tmp_path: Path, data: bytes, name: str = "mixed.hl7") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_chunks_cut_at_message_boundaries(batch):
    chunks = list(hl7v2.parse(BATCH, file_id="f1", source="lab", chunk_rows=2))
    assert len(chunks) >= 2
    assert sum(c.units_seen for c in chunks) == 5
    assert pl.concat([c.rows for c in chunks]).equals(batch[0])


# --------------------------------------------------------------------------------------------
# robustness


MSG = (
    "MSH|^~\\&|APP|750000001|BIOLAKE|ARS|20240101||ORU^R01|{id}|P|2.5\r"
    "PID|1||176026912345646^^^&1.2.250.1.213.1.4.8&ISO^INS||MARTIN^Louis^^^^^L||19760212|M\r"
    "OBR|1||REQ{id}|GLY^Glycémie^L|||{collected}\r"
    "OBX|1|{vt}|GLY^Glycémie^L||{value}|mmol/L|||||F\r"
)


def msg(id_: str = "1", vt: str = "NM", value: str = "5.1", collected: str = "202401010800") -> str:
    return MSG.format(id=id_, vt=vt, value=value, collected=collected)


def test_one_broken_message_does_not_cost_the_others(tmp_path):
    text = msg("1") + "MSH|^~\\&|APP\rPID|1\rthis is not a segment\rOBR|1\rOBX|1|NM|X||1\r" + msg("3")
    rows, rejects, units = parse_all(write(tmp_path, text))
    assert units == 3
    assert rows["message_id"].to_list() == ["1", "3"]
    assert rejects.select("line_no", "reason_code").rows() == [(5, "MALFORMED_MESSAGE")]
    assert "line 7" in rejects["detail"][0]


def test_parse_issues_instead_of_exceptions(tmp_path):
    text = msg("1", collected="20240231") + msg("2", value="abc") + msg("3", value="<0,5") + msg("4", vt="SN", value="^12,5")
    rows, rejects, _ = parse_all(write(tmp_path, text))
    assert rejects.height == 0
    assert rows["parse_issues"].to_list() == ["DATE_INVALID:collected_at", "VALUE_INVALID:value_num", None, None]
    assert rows["collected_at"][0] is None
    assert rows["value_num"].to_list() == [5.1, None, 0.5, 12.5]  # NM '<0,5': the bound, decimal comma
    assert rows["value_comparator"].to_list() == [None, None, "<", None]


@pytest.mark.parametrize(
    ("vt", "value", "num", "comparator"),
    [
        ("NM", "<0,5", 0.5, "<"), ("NM", "< 0.5", 0.5, "<"), ("NM", ">100", 100.0, ">"),
        ("SN", "<^0.5", 0.5, "<"), ("SN", ">=^10", 10.0, ">="), ("SN", "<=^1,5", 1.5, "<="),
        ("NM", "≤3", 3.0, "<="), ("NM", "≥ 3,5", 3.5, ">="),
        ("SN", "=^12", 12.0, None), ("SN", "^1^-^5", None, None),  # exact; a range is not a bound
        ("NM", "<>5", None, None), ("ST", "<0.5", None, None),  # not a bound; text stays text
        ("SN", ">^1e3", 1000.0, ">"), ("NM", "2,5E-2", 0.025, None), ("SN", "^1.5e3", 1500.0, None),  # exponents
        ("NM", "1e", None, None),
    ],
)
def test_comparator_values(tmp_path, vt, value, num, comparator):
    rows, rejects, _ = parse_all(write(tmp_path, msg("1", vt=vt, value=value)))
    assert rejects.height == 0
    assert rows.select("value_num", "value_comparator").row(0) == (num, comparator)


@pytest.mark.parametrize(
    ("value", "vt", "num", "comparator"),
    [
        ("5.5", "NM", 5.5, None), ("5,5", "NM", 5.5, None), ("1e3", "NM", 1000.0, None),
        ("<0,5", "SN", 0.5, "<"), (">=^10", "SN", 10.0, ">="), ("^12", "SN", 12.0, None),
        ("positif", None, None, None), ("^1^-^5", None, None, None), ("", None, None, None),
    ],
)
@pytest.mark.parametrize("escaped", [False, True], ids=["column-wise", "one-by-one"])
def test_a_value_without_its_type_is_typed_from_the_value(tmp_path, value, vt, num, comparator, escaped):
    """QA: ``OBX|2||2345-7^Glucose^LN||5.5|mmol/L...`` (empty OBX-2) was kept with value_type and
    value_num null. A number is NM, a comparator and a number SN; anything else keeps no type."""
    text = msg("1", vt="", value=value)
    if escaped:  # an escape in the segment: read one by one instead of column-wise
        text = text.replace("GLY^Glycémie^L", "GLY^Glyc\\T\\émie^L", 1)
    rows, rejects, _ = parse_all(write(tmp_path, text))
    assert rejects.height == 0
    assert rows.select("value_type", "value_num", "value_comparator", "parse_issues").row(0) == (vt, num, comparator, None)


def test_latin1_message_among_utf8_ones(tmp_path):
    data = msg("1").encode("utf-8") + msg("2").encode("latin-1") + msg("3").encode("utf-8")
    rows, rejects, _ = parse_all(write_bytes(tmp_path, data))
    assert rejects.height == 0
    assert rows["local_label"].to_list() == ["Glycémie"] * 3


def test_msh18_charset_is_honoured(tmp_path):
    m = msg("1").replace("|P|2.5\r", "|P|2.5|||||FRA|8859/1\r", 1)
    rows, _, _ = parse_all(write_bytes(tmp_path, m.encode("latin-1")))
    assert rows["local_label"].to_list() == ["Glycémie"]


def test_a_message_declared_latin1_but_sent_in_utf8_is_read_as_utf8(tmp_path):
    """QA: MSH-18 8859/1 on UTF-8 bytes gave LEFÃ\x88VRE, silently. A declared single-byte charset
    gives way when the bytes are valid UTF-8 holding multi-byte sequences (Latin-1 text practically
    never does); a message really in Latin-1 keeps its declaration."""
    declared = [msg(i).replace("|P|2.5\r", "|P|2.5|||||FRA|8859/1\r", 1) for i in ("1", "2")]
    rows, _, _ = parse_all(write_bytes(tmp_path, declared[0].encode("utf-8") + declared[1].encode("latin-1")))
    assert rows["message_id"].to_list() == ["1", "2"]
    assert rows["local_label"].to_list() == ["Glycémie", "Glycémie"]


def test_mllp_framing_and_blank_lines(tmp_path):
    text = "\x0b" + msg("1") + "\x1c\r\n\r\n" + "\x0b" + msg("2") + "\x1c\r"
    rows, rejects, units = parse_all(write(tmp_path, text))
    assert (units, rejects.height, rows["message_id"].to_list()) == (2, 0, ["1", "2"])


def test_mllp_end_byte_glued_to_the_last_segment_is_dropped(tmp_path):
    """QA: ``...|F\\x1c\\r`` (no \\r before the end byte) left 0x1c in the last field: OBX-11 'F\\x1c'
    (quarantined STATUS_INVALID) and an OBX-23 FINESS '330028762\\x1c' lost; also with the frames
    glued together (``\\x1c\\x0bMSH``) and without the start byte (the block read at once)."""
    xon = "|" * 12 + "LABO^^^^^FINESS&1.2.250.1.71.4.2.2&ISO^FINEG^^^330028762"  # OBX-23
    m1 = msg("1").rstrip("\r")
    m2 = msg("2").rstrip("\r") + xon
    for data in (
        "\x0b" + m1 + "\x1c\r" + "\x0b" + m2 + "\x1c\r",
        "\x0b" + m1 + "\x1c\x0b" + m2 + "\x1c",
        m1 + "\x1c\r" + m2 + "\x1c\r",
    ):
        rows, rejects, units = parse_all(write(tmp_path, data))
        assert (units, rejects.height) == (2, 0), data
        assert rows["result_status"].to_list() == ["F", "F"]
        assert rows["lab_finess"].to_list() == ["750000001", "330028762"]
        assert rows["line_no"].to_list() == [4, 8] if "\x1c\r" in data else [4, 7]


def test_an_mllp_frame_without_its_end_byte_is_a_truncated_delivery(tmp_path):
    """QA: a file starting with 0x0b and cut before its 0x1c loaded without a trace."""
    rows, rejects, units = parse_all(write(tmp_path, "\x0b" + msg("1") + "\x1c\r" + "\x0b" + msg("2")))
    assert rows["message_id"].to_list() == ["1", "2"]  # what was read is kept
    assert rejects["reason_code"].to_list() == ["MALFORMED_MESSAGE"]
    assert rejects["detail"][0].startswith("truncated delivery: the MLLP frame started at line 6 has no end byte")
    complete = parse_all(write(tmp_path, "\x0b" + msg("1") + "\x1c\r" + "\x0b" + msg("2") + "\x1c\r"))
    assert complete[1].is_empty()


@pytest.mark.parametrize(("wrapped", "expected"), [
    # the batch announces 3 messages, holds 1, and the file ends before its FTS (QA)
    (["FHS|^~\\&|QA", "BHS|^~\\&|QA", "M1", "BTS|3"], [
        (7, "truncated or incomplete batch: BTS at line 7 counts 3 message(s), the batch holds 1"),
        (1, "truncated delivery: the FHS at line 1 has no FTS before the end of the file"),
    ]),
    # cut inside the batch: neither BTS nor FTS
    (["FHS|^~\\&|QA", "BHS|^~\\&|QA", "M1", "M2"], [
        (2, "truncated delivery: the BHS at line 2 has no BTS before the end of the file"),
        (1, "truncated delivery: the FHS at line 1 has no FTS before the end of the file"),
    ]),
    (["FHS|^~\\&|QA", "BHS|^~\\&|QA", "M1", "BTS|1", "FTS|2"], [
        (8, "truncated or incomplete file: FTS at line 8 counts 2 batch(es), the file holds 1"),
    ]),
    # FHS ... FTS without BHS: FTS-1 counting more messages than the file holds (QA fmt note)
    (["FHS|^~\\&|QA", "M1", "FTS|3"], [
        (6, "truncated or incomplete file: FTS at line 6 counts 3, the file holds no BHS and 1 message(s)"),
    ]),
    # complete wrappers, or none at all: nothing to say
    (["FHS|^~\\&|QA", "M1", "M2", "FTS|2"], []),
    (["FHS|^~\\&|QA", "M1", "M2", "FTS|1"], []),
    (["FHS|^~\\&|QA", "BHS|^~\\&|QA", "M1", "M2", "BTS|2", "FTS|1"], []),
    (["BHS|^~\\&|QA", "M1", "M2", "BTS|2"], []),
    (["M1", "M2", "BTS|", "FTS|"], []),
])
def test_batch_wrappers_that_do_not_match_their_messages_are_rejects(tmp_path, wrapped, expected):
    """QA: a batch whose BTS counts more messages than it holds, or a file without its FTS, loaded
    without a trace: a truncated delivery. One reject at the wrapper's line; the messages are read."""
    text = "".join(msg(seg[1]) if seg in ("M1", "M2") else seg + "\r" for seg in wrapped)
    rows, rejects, units = parse_all(write(tmp_path, text))
    assert rows["message_id"].to_list() == [seg[1] for seg in wrapped if seg in ("M1", "M2")]
    assert rejects.select("line_no", "detail").rows() == expected
    assert set(rejects["reason_code"]) <= {"MALFORMED_MESSAGE"}


def test_junk_before_first_message_is_one_reject(tmp_path):
    rows, rejects, units = parse_all(write(tmp_path, "hello\rworld\r" + msg("1")))
    assert units == 2 and rows.height == 1
    assert rejects.select("line_no", "reason_code").rows() == [(1, "MALFORMED_MESSAGE")]


def test_whole_file_errors(tmp_path):
    with pytest.raises(FileFormatError) as e:
        parse_all(write(tmp_path, ""))
    assert e.value.reason_code == "EMPTY_FILE"
    with pytest.raises(FileFormatError) as e:
        parse_all(write(tmp_path, "FHS|^~\\&\rFTS|0\r"))
    assert e.value.reason_code == "EMPTY_FILE"
    with pytest.raises(FileFormatError) as e:
        parse_all(write(tmp_path, "a;b;c\n1;2;3\n"))
    assert e.value.reason_code == "UNPARSEABLE_FILE" and "in.hl7" in str(e.value)


def test_test_identity_and_obx_before_obr(tmp_path):
    m1 = msg("1").replace("1.2.250.1.213.1.4.8", "1.2.250.1.213.1.4.11")
    m2 = "MSH|^~\\&|A|B|C|D|20240101||ORU^R01|2|P|2.5\rPID|1||X\rOBX|1|NM|A||1\rOBR|1\r"
    rows, rejects, _ = parse_all(write(tmp_path, m1 + m2))
    assert rows.height == 0
    assert rejects["reason_code"].to_list() == ["TEST_IDENTITY", "MALFORMED_MESSAGE"]
    assert "before any OBR" in rejects["detail"][1]


@pytest.mark.parametrize("pid3", [
    # the INS (.8) comes first and is the one read: the test OID of the second repetition decides
    "176026912345646^^^&1.2.250.1.213.1.4.8&ISO^INS~176026912345646^^^T&1.2.250.1.213.1.4.10&ISO^INS",
    # the OID where no assigning authority is read from (ins_oid stays empty)
    "176026912345646^^^^1.2.250.1.213.1.4.11",
])
def test_a_test_ins_oid_anywhere_in_the_pid_is_a_test_identity(tmp_path, pid3):
    """Defence in depth (QA, HIGH): a test OID that did not reach ins_oid still refuses every OBX of
    the patient (plain OBX read column-wise and OBX read one by one alike)."""
    m1 = msg("1").replace("176026912345646^^^&1.2.250.1.213.1.4.8&ISO^INS", pid3, 1)
    m1 += "OBX|2|ST|COM^Commentaire^L||a\\T\\b||||||F\r"  # an escape: read one by one
    m2 = msg("2").replace("1.2.250.1.213.1.4.8", "1.2.250.1.213.1.4.100", 1)  # not a test OID
    rows, rejects, _ = parse_all(write(tmp_path, m1 + m2))
    assert rejects.select("line_no", "reason_code", "column").rows() == [
        (4, "TEST_IDENTITY", "ins_oid"), (5, "TEST_IDENTITY", "ins_oid"),
    ]
    assert rows["message_id"].to_list() == ["2"]


def test_an_embedded_cda_of_a_test_patient_in_the_pid_is_a_test_identity(tmp_path):
    pid3 = "285077512345655^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS~1^^^T&1.2.250.1.213.1.4.10&ISO^INS"
    text = ed_message(CDA_SAMPLE.read_bytes()).replace("285077512345655^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS",
                                                      pid3, 1)
    rows, rejects, _ = parse_all(write(tmp_path, text))
    assert rows.height == 0
    assert rejects.select("line_no", "reason_code").rows() == [(4, "TEST_IDENTITY")]


# --------------------------------------------------------------------------------------------
# CDA embedded in an OBX of type ED


def ed_message(payload: bytes, kind: str = "^text^XML^Base64^") -> str:
    b64 = base64.b64encode(payload).decode("ascii")
    return (
        "MSH|^~\\&|SGL|LABO^750000001^FINESS|DMP|ANS|20240305120000||ORU^R01^ORU_R01|ED-1|P|2.5\r"
        "PID|1||285077512345655^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS||LEGRAND^Élodie^^^^^L||19850712|F\r"
        "OBR|1||DEM-2024-0042|11502-2^CR d'examens biologiques^LN|||20240305073500\r"
        f"OBX|1|ED|11502-2^CR d'examens biologiques^LN||{kind}{b64}||||||F\r"
    )


def test_embedded_cda_observations_become_rows(tmp_path):
    rows, rejects, units = parse_all(write(tmp_path, ed_message(CDA_SAMPLE.read_bytes())))
    assert (units, rejects.height, rows.height) == (1, 0, 6)
    assert rows["line_no"].unique().to_list() == [4]  # the OBX line
    assert rows["message_id"].unique().to_list() == ["ED-1"]
    first = rows.row(0, named=True)
    assert (first["local_code"], first["loinc_code_src"], first["value_num"]) == ("GLY", "2345-7", 5.4)
    assert first["lab_finess"] == "130000012"  # from the CDA performer
    assert first["request_id"] == "DEM-2024-0042"
    assert rows["result_status"].to_list() == ["F", "F", "F", "F", "F", "X"]


def test_an_embedded_cda_of_another_patient_is_not_read(tmp_path):
    """QA: the CDA's patient silently replaced PID's. The sample's INS is 285077512345655; a PID with
    another INS makes the document's results a reject naming why, none filed under either person."""
    other = ed_message(CDA_SAMPLE.read_bytes()).replace("285077512345655", "185057512345612")
    rows, rejects, units = parse_all(write(tmp_path, other))
    assert rows.height == 0 and rejects["reason_code"].to_list() == ["EMBEDDED_DOCUMENT_INVALID"]
    assert "its patient's INS is not PID-3's (6 results" in rejects["detail"][0]
    # the same INS written with blanks, or no INS in the PID: read as before
    spaced = ed_message(CDA_SAMPLE.read_bytes()).replace("285077512345655", "2 85 07 75 123 456 55")
    assert parse_all(write(tmp_path, spaced))[0].height == 6


def test_embedded_pdf_and_broken_documents_are_rejects(tmp_path):
    text = (
        ed_message(b"%PDF-1.4 fake", kind="^application^pdf^Base64^").replace("ED-1", "ED-pdf")
        + ed_message(b"<ClinicalDocument xmlns='urn:hl7-org:v3'><id root='1'/>").replace("ED-1", "ED-cut")
        + ed_message(b'<!DOCTYPE x [<!ENTITY a "b">]><ClinicalDocument xmlns="urn:hl7-org:v3"/>').replace("ED-1", "ED-dtd")
    )
    rows, rejects, units = parse_all(write(tmp_path, text))
    assert rows.height == 0 and units == 3
    assert rejects["reason_code"].to_list() == ["NO_RESULT", "EMBEDDED_DOCUMENT_INVALID", "UNSAFE_XML"]
    assert "application/pdf" in rejects["detail"][0]


# --------------------------------------------------------------------------------------------
# streaming


def _peak_python_memory(path: Path) -> int:
    tracemalloc.start()
    try:
        for _ in hl7v2.parse(path, file_id="f", source="s", chunk_rows=300):
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_stays_flat_with_file_size(tmp_path, monkeypatch):
    monkeypatch.setattr(linereader, "BLOCK_SIZE", 32 * 1024)  # small blocks: small files suffice
    one = msg("{n}")
    small, big = tmp_path / "small.hl7", tmp_path / "big.hl7"
    small.write_text("".join(one.replace("{n}", str(i)) for i in range(2_000)), encoding="utf-8", newline="")
    big.write_text("".join(one.replace("{n}", str(i)) for i in range(8_000)), encoding="utf-8", newline="")
    peak_small, peak_big = _peak_python_memory(small), _peak_python_memory(big)
    assert big.stat().st_size > 3.5 * small.stat().st_size
    assert peak_big < 1.5 * peak_small + (1 << 20)


def test_block_size_does_not_change_the_result(tmp_path, monkeypatch):
    """Messages cut across read blocks, mixed endings and encodings: same rows whatever the block."""
    latin = (
        "MSH|^~\\&|A|750000001|B|C|20240101||ORU^R01|L{n}|P|2.5|||||FRA|8859/1\r"
        "PID|1||X^^^&1.2.250.1.213.1.4.8&ISO||Ménard^Zoé\rOBR|1||R|||202401010800\r"
        "OBX|1|NM|GLY^Glycémie^L||5|mmol/L|||||F\r"
    )
    parts = [p.read_bytes() for p in NIST] + [BATCH.read_bytes()]
    seps = [b"\r", b"\n", b"\r\n"]
    data = b"".join(
        (parts[i % len(parts)] if i % 4 else latin.replace("{n}", str(i)).encode("latin-1")).replace(b"\r", seps[i % 3])
        for i in range(25)
    )
    path = write_bytes(tmp_path, data, "blocks.hl7")
    results = []
    for size in (1 << 20, 97, 1024):
        monkeypatch.setattr(linereader, "BLOCK_SIZE", size)
        rows, rejects, units = parse_all(path, chunk_rows=7)
        results.append((rows, rejects.drop("raw_text"), units))
    for rows, rejects, units in results[1:]:
        assert rows.equals(results[0][0]) and rejects.equals(results[0][1]) and units == results[0][2]
    assert results[0][2] == data.count(b"MSH|")


# --------------------------------------------------------------------------------------------
# administrative sex (PID-8, HL7 table 0001)


@pytest.mark.parametrize(("sent", "read", "flag"), [
    ("F", "F", None), ("M", "M", None), ("U", None, None), ("O", None, None), ("A", None, None), ("N", None, None),
    ("o", None, None), ("", None, None), ("Female", "F", None), ("MASCULIN", "M", None), ("F^Female^HL70001", "F", None),
    ("X", None, "SEX_INVALID")])
def test_pid8_sex_outside_f_and_m_is_unknown_not_invalid(tmp_path, sent, read, flag):
    """QA: PID-8 O/A/N (valid in table 0001) quarantined the result as SEX_INVALID and a positive
    was lost from P and T. They are an unknown sex (null, flagged SEX_UNKNOWN in staging). QA F5: a
    value outside the table (X) was still quarantined: it is kept too, unknown, flagged SEX_INVALID;
    a word (Female, MASCULIN) or a CWE (v2.7) is read."""
    from quality.schemas import validate_rows

    rows, rejects, _ = parse_all(write(tmp_path, msg("1").replace("|19760212|M\r", f"|19760212|{sent}\r")))
    assert rejects.height == 0 and rows.height == 1
    assert rows["sex"][0] == read
    valid, quarantine = validate_rows(rows, now=datetime(2026, 12, 1))
    assert valid.height == 1 and quarantine.is_empty()
    assert valid["parse_issues"][0] == flag


# --------------------------------------------------------------------------------------------
# message type (MSH-9) and processing ID (MSH-11)


def with_header(id_: str, msh9: str = "ORU^R01", msh11: str = "P") -> str:
    return msg(id_).replace("||ORU^R01|", f"||{msh9}|", 1).replace(f"|{id_}|P|2.5\r", f"|{id_}|{msh11}|2.5\r", 1)


def test_a_message_that_is_not_a_result_is_one_reject(tmp_path):
    """QA: an ORM^O01 carrying an OBX was loaded and counted as a positive; an ADT^A01 got a
    misleading MALFORMED_MESSAGE "no OBR segment". Each is ONE reject naming its type, at the line
    of its MSH, and the messages around it are read."""
    adt = (
        "MSH|^~\\&|HEXAFLUX|CH-X|ANS|ANS|20240305120000||ADT^A01^ADT_A01|ADT-7|P|2.5|||||FRA|8859/15\r"
        "EVN||20240305115900\r"
        "PID|1||176026912345646^^^&1.2.250.1.213.1.4.8&ISO^INS||MARTIN^Louis^^^^^L||19760212|M\r"
        "PV1|1|I|CARDIO\r"
    )
    orm = with_header("2", "ORM^O01^ORM_O01")
    text = msg("1") + orm + msg("3") + adt + with_header("5", "OUL^R22^OUL_R22")
    rows, rejects, units = parse_all(write(tmp_path, text))
    assert units == 5 and rows["message_id"].to_list() == ["1", "3"]
    assert rejects.select("line_no", "reason_code").rows() == [
        (5, "UNSUPPORTED_MESSAGE_TYPE"), (13, "UNSUPPORTED_MESSAGE_TYPE"), (17, "UNSUPPORTED_MESSAGE_TYPE"),
    ]
    # the OBX an order carries are counted as results not read; an ADT holds none
    assert rejects["detail"].to_list()[:2] == ["not a result message: ORM^O01 (1 result not read)",
                                               "not a result message: ADT^A01"]
    assert "OUL^R22" in rejects["detail"][2] and "only ORU^R01" in rejects["detail"][2]
    assert rejects["column"].is_null().all()
    assert rejects["raw_text"][0].startswith("MSH|") and "OBX|" in rejects["raw_text"][0]


@pytest.mark.parametrize("msh9", ["ORU^R01", "ORU^R01^ORU_R01", "ORU", "oru^r01", " ORU ^R01", ""])
def test_result_message_types_that_are_read(tmp_path, msh9):
    rows, rejects, _ = parse_all(write(tmp_path, with_header("1", msh9)))
    assert rejects.height == 0 and rows["message_id"].to_list() == ["1"]


@pytest.mark.parametrize("msh9", ["ORU^R30", "ORU^R30^ORU_R30", "OUL^R24", "ACK^R01", "ORM", "^R01", "MDM^T02"])
def test_other_message_types_are_refused(tmp_path, msh9):
    rows, rejects, units = parse_all(write(tmp_path, with_header("1", msh9)))
    assert (rows.height, units) == (0, 1)
    assert rejects.select("line_no", "reason_code").rows() == [(1, "UNSUPPORTED_MESSAGE_TYPE")]
    shown = "^".join(c.strip().upper() for c in msh9.split("^")[:2] if c.strip())
    assert shown in rejects["detail"][0]


def test_declared_delimiters_in_the_message_type(tmp_path):
    ok = msg("1").replace("MSH|^~", "MSH|!~", 1).replace("ORU^R01", "ORU!R01!ORU_R01", 1)
    bad = msg("2").replace("MSH|^~", "MSH|!~", 1).replace("ORU^R01", "ORM!O01", 1)
    rows, rejects, _ = parse_all(write(tmp_path, ok + bad))
    assert rows["message_id"].to_list() == ["1"]
    assert rejects["detail"].to_list() == ["not a result message: ORM^O01 (1 result not read)"]


def test_msh2_in_hprim_order_is_read_with_hl7_delimiters_when_msh9_says_so(tmp_path):
    """QA: MSH-2 ``~^\\&`` (component and repetition swapped, HPRIM's order) with MSH-9
    ``ORU^R01^ORU_R01`` gave UNSUPPORTED_MESSAGE_TYPE "not a result message: ORU^R01^ORU_R01". The
    message is written with ^ as component: read so (and its test INS OID is refused)."""
    swapped = msg("1").replace("MSH|^~", "MSH|~^", 1).replace("||ORU^R01|", "||ORU^R01^ORU_R01|", 1)
    test = msg("2").replace("MSH|^~", "MSH|~^", 1).replace("1.2.250.1.213.1.4.8", "1.2.250.1.213.1.4.10", 1)
    honoured = msg("3").replace("^", "~").replace("MSH|~~", "MSH|~^", 1)  # '~' really is the component
    rows, rejects, _ = parse_all(write(tmp_path, swapped + test + honoured))
    assert rows["message_id"].to_list() == ["1", "3"]
    for r in rows.iter_rows(named=True):
        assert (r["patient_nir"], r["ins_oid"], r["first_name"]) == ("176026912345646", "1.2.250.1.213.1.4.8", "Louis")
        assert (r["local_code"], r["local_label"], r["value_num"]) == ("GLY", "Glycémie", 5.1)
    assert rejects.select("line_no", "reason_code").rows() == [(8, "TEST_IDENTITY")]


def test_a_message_type_written_with_other_delimiters_than_declared_points_at_msh2(tmp_path):
    wrong = msg("1").replace("MSH|^~", "MSH|#~", 1)  # component '#' declared, '^' used
    rows, rejects, _ = parse_all(write(tmp_path, wrong))
    assert rows.height == 0
    assert rejects.select("line_no", "reason_code").rows() == [(1, "MALFORMED_MESSAGE")]
    assert rejects["detail"][0] == (
        "MSH-2 declares #~\\& (component #) but MSH-9 ORU^R01 is written with ^: "
        "the delimiter declaration does not match the message (1 result not read)"
    )


@pytest.mark.parametrize(("msh11", "detail"), [
    ("D", "processing ID D (debugging): not production data"),
    ("T", "processing ID T (training): not production data"),
    ("T^A", "processing ID T (training): not production data"),
    ("X", "processing ID X is not P (production), T or D: not loaded as production data"),
])
def test_training_and_debugging_messages_are_refused(tmp_path, msh11, detail):
    text = msg("1") + with_header("2", msh11=msh11) + msg("3")
    rows, rejects, units = parse_all(write(tmp_path, text))
    assert units == 3 and rows["message_id"].to_list() == ["1", "3"]
    assert rejects.select("line_no", "reason_code", "detail").rows() == [(5, "NON_PRODUCTION", f"{detail} (1 result not read)")]


@pytest.mark.parametrize("msh11", ["P", "", "p", "P^A", "P^I", " P "])
def test_production_and_empty_processing_id_are_read(tmp_path, msh11):
    rows, rejects, _ = parse_all(write(tmp_path, with_header("1", msh11=msh11)))
    assert rejects.height == 0 and rows.height == 1


def test_a_message_rejected_whole_says_how_many_results_it_held(tmp_path):
    """QA (ledger F7): a message rejected whole counts one unit (row in) whatever its OBX, and its
    detail did not say how many results it held, so results delivered could not be reconciled with
    results stored + quarantined (CDA says "(3 results)"). The detail now counts its OBX."""
    obx = "OBX|{n}|NM|GLY^Glycémie^L||5.1|mmol/L|||||F\r"
    order = with_header("2", "ORM^O01") + obx.format(n=2) + obx.format(n=3)
    early = (msg("3").replace("OBR|", obx.format(n=0) + "OBR|", 1)  # an OBX before the OBR
             + obx.format(n=2) + obx.format(n=3))
    test = msg("4").replace("1.2.250.1.213.1.4.8", "1.2.250.1.213.1.4.10", 1) + obx.format(n=2)
    junk = obx.format(n=1) + obx.format(n=2)
    text = junk + msg("1") + order + early + with_header("5", msh11="T") + test
    p = write(tmp_path, text)
    rows, rejects, units = parse_all(p)
    assert rows["message_id"].to_list() == ["1"] and units == 6
    n_obx = text.count("OBX|")
    details = rejects.select("reason_code", "detail").rows()
    assert details[:4] == [
        ("MALFORMED_MESSAGE", "2 line(s) outside any message (no MSH before them) (2 results not read)"),
        ("UNSUPPORTED_MESSAGE_TYPE", "not a result message: ORM^O01 (3 results not read)"),
        ("MALFORMED_MESSAGE", f"OBX at line {text[:text.index(obx.format(n=0))].count(chr(13)) + 1} comes before any "
                              "OBR (4 results not read)"),
        ("NON_PRODUCTION", "processing ID T (training): not production data (1 result not read)"),
    ]
    assert [r for r, _ in details[4:]] == ["TEST_IDENTITY", "TEST_IDENTITY"]  # one reject per OBX
    # every OBX of the file is a row, or a reject that says it is one or how many it held
    held = sum(int(d.split("(")[-1].split()[0]) for _, d in details if d.endswith("not read)"))
    assert rows.height + held + len(details[4:]) == n_obx


def test_a_refused_message_type_wins_over_its_broken_structure(tmp_path):
    """An order without OBR is refused for its type, not as malformed: the type is what matters."""
    text = "MSH|^~\\&|A|B|C|D|20240101||ORM^O01|9|P|2.5\rPID|1\rORC|NW|1\r"
    rows, rejects, units = parse_all(write(tmp_path, text))
    assert (rows.height, units) == (0, 1)
    assert rejects.select("reason_code", "detail").rows() == [("UNSUPPORTED_MESSAGE_TYPE", "not a result message: ORM^O01")]


# --------------------------------------------------------------------------------------------
# a lone \n inside a message whose segments end with \r (or \r\n): data, not a segment break

NTE_LF = (
    "MSH|^~\\&|APP|750000001|BIOLAKE|ARS|20240101||ORU^R01|{id}|P|2.5\r"
    "PID|1||176026912345646^^^&1.2.250.1.213.1.4.8&ISO^INS||MARTIN^Louis^^^^^L||19760212|M\r"
    "OBR|1||REQ{id}|COVID^SARS-CoV-2^L|||202401010800\r"
    "NTE|1||commentaire ligne 1\nsuite\r"
    "OBX|1|ST|94500-6^SARS-CoV-2 RNA^LN||Détecté\n  (charge virale élevée)|||A|||F\r"
    "OBX|2|NM|GLY^Glycémie^L||5.1|mmol/L|||||F\r"
)


@pytest.mark.parametrize("terminator", ["\r", "\r\n"])
def test_a_lone_lf_in_a_field_is_a_line_break_not_a_segment(tmp_path, terminator):
    """QA: an NTE comment or an OBX-5 holding a bare \\n rejected the whole message ("line 7 is not
    an HL7 segment"), losing every OBX of it. In a message whose segments end with \\r (or \\r\\n),
    a lone \\n that does not start a segment is a line break inside the field. Line numbers stay
    physical (an editor's)."""
    text = (NTE_LF.format(id="1") + msg("2")).replace("\r", terminator)
    rows, rejects, units = parse_all(write(tmp_path, text))
    assert (units, rejects.height) == (2, 0)
    assert rows.select("line_no", "message_id", "value_raw").rows() == [
        (6, "1", "Détecté\n  (charge virale élevée)"), (8, "1", "5.1"), (12, "2", "5.1"),
    ]
    assert obx_lines(write(tmp_path, text, "again.hl7")) == [6, 8, 12]


def test_a_lone_lf_split_across_read_blocks(tmp_path, monkeypatch):
    text = "".join(NTE_LF.format(id=str(i)) for i in range(40))
    path = write(tmp_path, text)
    results = []
    for size in (1 << 20, 7, 64, 333):
        monkeypatch.setattr(linereader, "BLOCK_SIZE", size)
        rows, rejects, units = parse_all(path, chunk_rows=5)
        assert (units, rejects.height, rows.height) == (40, 0, 80)
        results.append(rows)
    assert all(r.equals(results[0]) for r in results[1:])
    assert results[0]["value_raw"][0] == "Détecté\n  (charge virale élevée)"


def test_a_lone_lf_before_capitals_that_are_no_segment_is_text(tmp_path):
    """QA: 'Positif\nARN|...' was cut at the \n ('ARN' read as a segment id): the OBX lost its
    status and times and went to quarantine. Only a segment HL7 v2.5 defines, or a Z-segment, ends
    the field."""
    text = (msg("1", vt="ST", value="Positif\nARN") + msg("2", vt="ST", value="Positif\nRAS")
            + msg("3").replace("\rOBX|1|", "\nZBE|1\rOBX|1|", 1))  # a Z-segment after a lone \n: a segment
    rows, rejects, _ = parse_all(write(tmp_path, text))
    assert rejects.height == 0
    assert rows.select("message_id", "value_raw", "result_status").rows() == [
        ("1", "Positif\nARN", "F"), ("2", "Positif\nRAS", "F"), ("3", "5.1", "F")]


def test_a_lone_lf_before_a_segment_ends_it(tmp_path):
    """A lone \\n followed by what reads as a segment (ID of three capitals and the field separator)
    is a segment break, as before: the OBX after it is its own row."""
    text = msg("1").replace("\rOBX|1|", "\nOBX|1|", 1)
    rows, rejects, _ = parse_all(write(tmp_path, text))
    assert rejects.height == 0 and rows.select("line_no", "value_raw").rows() == [(4, "5.1")]


def test_lf_terminated_messages_keep_rejecting_lines_that_are_not_segments(tmp_path):
    """Where \\n ends the segments (an \\n file, or a message mixing endings whose lone \\n also ends
    segments), a line that is not a segment still makes the message malformed."""
    broken = "MSH|^~\\&|APP||||||ORU^R01|2|P|2.5\rPID|1\nOBR|1\rthis is not a segment\rOBX|1|NM|X||1\r"
    for text in (
        (msg("1") + broken + msg("3")).replace("\r", "\n"),
        msg("1") + broken.replace("\rthis", "\nthis") + msg("3"),
    ):
        rows, rejects, units = parse_all(write(tmp_path, text))
        assert units == 3 and rows["message_id"].to_list() == ["1", "3"]
        assert rejects.select("line_no", "reason_code").rows() == [(5, "MALFORMED_MESSAGE")]
        assert "line 8 is not an HL7 segment" in rejects["detail"][0]


def test_a_line_that_is_not_a_segment_after_a_cr_is_still_malformed(tmp_path):
    text = msg("1").replace("\rOBX|1|", "\rcommentaire\rOBX|1|", 1)
    rows, rejects, _ = parse_all(write(tmp_path, text))
    assert rows.height == 0 and rejects["reason_code"].to_list() == ["MALFORMED_MESSAGE"]


def test_mllp_frames_separated_by_a_lone_lf(tmp_path):
    text = "\x0b" + NTE_LF.format(id="1") + "\x1c\r\n\x0b" + NTE_LF.format(id="2") + "\x1c\r"
    rows, rejects, units = parse_all(write(tmp_path, text))
    assert (units, rejects.height, rows["message_id"].to_list()) == (2, 0, ["1", "1", "2", "2"])
    assert rows["value_raw"][2] == "Détecté\n  (charge virale élevée)"


def test_a_control_byte_refuses_its_message(tmp_path):
    """QA ops F4: a NUL in PID-5 was read into the family name (another linkage key)."""
    p = tmp_path / "nul.hl7"
    p.write_bytes(BATCH.read_bytes().replace(b"DUPUIS", b"DUP\x00UIS", 1))
    rows, rejects, _ = parse_all(p)
    assert not rows["family_name"].str.contains("\x00").any()
    first = rejects.sort("line_no").row(0, named=True)
    assert (first["line_no"], first["reason_code"]) == (3, "MALFORMED_MESSAGE")
    assert first["detail"].startswith("NUL byte (0x00) in PID at line 4: the message is not read")


def test_a_clean_message_is_searched_for_control_bytes_in_one_pass(tmp_path, monkeypatch):
    """Hot path: every message is checked for control bytes (QA ops F4) and almost none holds one.
    One pass over the message's bytes tells; only a message holding one has its segments searched,
    to name the byte, the segment and the line (a regular expression ran over every segment of every
    message). The refusal reads as before, whether the message was decoded with its block (UTF-8)
    or on its own (an 8859/1 message)."""
    searched = []
    real = hl7v2.control_byte
    monkeypatch.setattr(hl7v2, "control_byte", lambda text: searched.append(text) or real(text))
    rows, _, _ = parse_all(BATCH)
    assert rows.height > 0 and searched == []
    utf8 = BATCH.read_bytes()
    latin1 = utf8.replace(b"UNICODE UTF-8", b"8859/1").decode("utf-8").encode("latin-1")
    for name, data in (("utf8.hl7", utf8), ("latin1.hl7", latin1)):
        p = tmp_path / name
        p.write_bytes(data.replace(b"DUPUIS", b"DUP\x00UIS", 1))
        _, rejects, _ = parse_all(p)
        first = rejects.sort("line_no").row(0, named=True)
        assert (first["line_no"], first["reason_code"]) == (3, "MALFORMED_MESSAGE")
        assert first["detail"].startswith("NUL byte (0x00) in PID at line 4: the message is not read"), name
    assert searched


# QA fmt F3: a Windows SGL writes "ANSI" (Windows-1252) and declares 8859/1, or nothing: its Œ, œ, ’,
# – and € (bytes 0x80-0x9F) were read as Latin-1 C1 control characters and stored in names and
# values (CŒUR linked as CUR, so one person without INS counted twice across two labs)
_CP1252_MSG = ("MSH|^~\\&|SGL|330028762|D|D|20261105120000||ORU^R01^ORU_R01|A1|P|2.5|||||FRA|{charset}\r"
               "PID|1||IPP1^^^LAB&1.2.3&ISO^PI||CŒUR^LÆTITIA^^^^^L||19790717|F|||^^^^69003^^H\r"
               "OBR|1||RA1|X^Y^L|||20261104080000|||||||20261104120000\r"
               "OBX|1|ST|COM^Commentaire^L||Contrôlé – cœur l’après-midi|€|||||F|||||||||20261104180000\r")


@pytest.mark.parametrize("charset", ["8859/1", ""])
def test_windows_1252_text_declared_8859_1_or_undeclared_keeps_its_letters(tmp_path, charset):
    data = _CP1252_MSG.format(charset=charset).encode("cp1252")
    assert b"\x8c" in data and b"\x96" in data and b"\x80" in data  # the bytes Latin-1 reads as controls
    rows, rejects, _ = parse_all(write_bytes(tmp_path, data))
    assert rejects.height == 0
    assert rows.select("family_name", "first_name", "value_raw", "unit_raw").row(0) == (
        "CŒUR", "LÆTITIA", "Contrôlé – cœur l’après-midi", "€")
    # the same message in UTF-8 reads the same (the other lab's, QA: one person, one link key)
    utf8, _, _ = parse_all(write(tmp_path, _CP1252_MSG.format(charset="UNICODE UTF-8"), name="u.hl7"))
    assert utf8.select("family_name", "value_raw").row(0) == rows.select("family_name", "value_raw").row(0)


def test_an_escaped_windows_1252_byte_is_its_letter(tmp_path):
    text = _CP1252_MSG.format(charset="").replace("CŒUR", "C\\X8C\\UR", 1)
    rows, _, _ = parse_all(write(tmp_path, text))
    assert rows["family_name"].to_list() == ["CŒUR"]


def test_a_c1_control_character_refuses_its_message_like_a_c0_one(tmp_path):
    """A byte Windows-1252 leaves undefined (0x81, 0x8D, 0x8F, 0x90, 0x9D) in 8-bit text, or a C1
    control written in UTF-8, is no letter: the message is refused naming the character and the
    line, as for a NUL (it never reaches a name or a linkage key)."""
    data = _CP1252_MSG.format(charset="8859/1").encode("cp1252").replace(b"C\x8cUR", b"C\x81UR", 1)
    rows, rejects, _ = parse_all(write_bytes(tmp_path, data + msg("2").encode("utf-8")))
    assert rows["message_id"].to_list() == ["2"]
    assert rejects.select("line_no", "reason_code").rows() == [(1, "MALFORMED_MESSAGE")]
    assert rejects["detail"][0].startswith("control character U+0081 in PID at line 2: the message is not read")
    utf8 = _CP1252_MSG.format(charset="UNICODE UTF-8").replace("cœur", "c\x81ur", 1)
    rows, rejects, _ = parse_all(write(tmp_path, utf8, name="u.hl7"))
    assert rows.height == 0
    assert rejects["detail"][0].startswith("control character U+0081 in OBX at line 4")


@pytest.mark.parametrize("charset", ["UNICODE UTF-8", ""], ids=["declared-utf8", "undeclared"])
def test_c1_code_points_of_a_latin1_conversion_are_read_as_their_windows_1252_signs(tmp_path, charset):
    """QA regr F3: an exporter converting Windows-1252 to UTF-8 as if it were Latin-1 writes ’ as
    U+0092 and Œ as U+008C; refused as control characters, a ’ in a comment cost a positive. They
    are read as the signs they stand for, in names, values and comments; a message without them is
    read as before."""
    mojibake = {"Œ": "\x8c", "œ": "\x9c", "’": "\x92", "€": "\x80", "–": "\x96"}
    text = _CP1252_MSG.format(charset=charset)
    garbled = text
    for sign, c1 in mojibake.items():
        garbled = garbled.replace(sign, c1)
    assert garbled != text and any(c in garbled for c in mojibake.values())
    garbled += msg("2").replace("OBX|1|", "NTE|1||Contrôle dans l\x92intervalle\rOBX|1|", 1)
    rows, rejects, _ = parse_all(write(tmp_path, garbled, name="m.hl7"))
    expected, _, _ = parse_all(write(tmp_path, text, name="e.hl7"))
    assert rejects.is_empty()
    assert rows["message_id"].to_list() == [expected["message_id"][0], "2"]
    assert rows.drop("file_id", "line_no").row(0) == expected.drop("file_id", "line_no").row(0)


def test_decode_text_reads_8bit_text_as_windows_1252():
    assert linereader.decode_text("CŒUR – 5 €".encode("cp1252")) == "CŒUR – 5 €"
    assert linereader.decode_text("CŒUR".encode("cp1252"), "cp1252") == "CŒUR"
    assert linereader.decode_text("CŒUR".encode("utf-8")) == "CŒUR"
    assert linereader.decode_text(b"x\x81\x8d\x8f\x90\x9dy") == "x\x81\x8d\x8f\x90\x9dy"  # undefined: as Latin-1


@pytest.mark.parametrize("escaped", [False, True])
def test_obx4_sub_id_and_obx14_own_time_are_kept_beside_the_collection_time(tmp_path, escaped):
    """QA fmt F1: OBX-4 was never read and OBX-14 lost behind OBR-7: a tolerance test's points and an
    antibiogram's isolates could not be told apart. collected_at stays OBR-7 (the specimen's
    collection, which SI-DEP counts by); OBX-14 is observed_at, OBX-4 observation_sub_id. Both paths
    (segments read column-wise, or one by one when they hold an escape)."""
    head = msg("1").split("OBX|", 1)[0].replace("|||202401010800", "|||202401010800|||||||202401010805")
    obx = ("OBX|1|NM|GLY^Glycémie^L|1|5.0|mmol/L|||||F|||202401010800\r"
           "OBX|2|NM|GLY^Glycémie^L|2|5.0|mmol/L|||||F|||202401011000^x\r"
           "OBX|3|ST|AMX^Amoxicilline^L|1.2|S||||||F|||bad\r"
           "OBX|4|ST|AMX^Amoxicilline^L||S||||||F\r")
    if escaped:
        obx = obx.replace("Glycémie^L|2|", "Glyc\\T\\émie^L|2|").replace("|1.2|", "|1\\T\\2|")
    rows, rejects, _ = parse_all(write(tmp_path, head + obx))
    assert rejects.height == 0
    assert rows.select("observation_sub_id", pl.col("observed_at").dt.strftime("%H:%M"),
                       pl.col("collected_at").dt.strftime("%H:%M"), "parse_issues").rows() == [
        ("1", "08:00", "08:00", None), ("2", "10:00", "08:00", None),
        ("1&2" if escaped else "1.2", None, "08:00", None),  # an unreadable OBX-14 refuses nothing
        (None, None, "08:00", None)]


def test_an_embedded_cda_gives_its_rows_no_own_time(tmp_path):
    """The Ségur copy of the OBX results: its observations' effectiveTime (the CR-BIO sample's 10:15 is
    the analysis time) would keep each result and its copy apart (transforms/versions.py)."""
    ed = "^text^XML^Base64^" + base64.b64encode(CDA_SAMPLE.read_bytes()).decode("ascii")
    text = ("MSH|^~\\&|SGL|LABO^750000002^FINESS|DMP|ANS|20240305120000||ORU^R01^ORU_R01|ED-1|P|2.5\r"
            "PID|1||285077512345655^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS||LEGRAND^Élodie^^^^^L\r"
            "OBR|1||DEM-2024-0042|11502-2^CR^LN|||20240305073500\r"
            f"OBX|1|ED|11502-2^CR^LN|1|{ed}||||||F|||20240305120000\r")
    rows, rejects, _ = parse_all(write(tmp_path, text))
    assert rows.height > 0 and rejects.height == 0
    assert rows["observed_at"].null_count() == rows.height
    assert rows["observation_sub_id"].null_count() == rows.height


@pytest.mark.parametrize(("pid3", "nir", "oid"), [
    # an INS sent without its OID after the IPP (QA fmt note: the IPP was read, the patient linked by traits)
    ("000003^^^CHU-X^PI~176026912345646^^^^INS", "176026912345646", ""),
    ("000003^^^CHU-X^PI~176026912345646^^^ASIP-SANTE-INS-NIR^ins", "176026912345646", ""),
    # with its OID it wins wherever it stands, typed or not
    ("000003^^^CHU-X^PI~176026912345646^^^&1.2.250.1.213.1.4.8&ISO", "176026912345646", "1.2.250.1.213.1.4.8"),
    # no INS, typed or with its OID: the first identifier, as before (validation drops a local one)
    ("000003^^^CHU-X^PI~176026912345646^^^CPAM^SS", "000003", ""),
])
def test_pid3_an_ins_typed_without_its_oid_is_preferred_to_the_ipp(tmp_path, pid3, nir, oid):
    m = msg("1").replace("176026912345646^^^&1.2.250.1.213.1.4.8&ISO^INS", pid3, 1)
    rows, rejects, _ = parse_all(write(tmp_path, m))
    assert rejects.is_empty()
    assert (rows["patient_nir"][0], rows["ins_oid"][0] or "") == (nir, oid)


def test_an_identifier_without_the_ins_oid_is_a_nir_only_with_its_key():
    """QA regr2 F3: an INS typed without its OID (read before the IPP since) whose key is wrong was
    quarantined NIR_KEY, where the row loaded through its traits before. Without the INS OID an
    identifier is a NIR only when its shape and key are; with the OID a wrong key stays quarantined."""
    from flows.steps import local_ids_are_not_ins

    good, bad_key = "176026912345646", "176026912345647"
    rows = pl.DataFrame({"patient_nir": [good, bad_key, "000003", "1760269123456", bad_key],
                         "ins_oid": ["", None, "", "", "1.2.250.1.213.1.4.8"]})
    assert local_ids_are_not_ins(rows)["patient_nir"].to_list() == [good, None, None, None, bad_key]
