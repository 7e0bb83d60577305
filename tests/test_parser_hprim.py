"""HPRIM Santé 2.x parser: the hand-made sample (Latin-1, CRLF, A continuation), rejects."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import polars as pl
import pytest

from transforms.canonical import CANONICAL_SCHEMA
from transforms.parsers import hprim
from transforms.parsers.base import REJECT_SCHEMA, FileFormatError

SAMPLE = Path(__file__).parent / "fixtures" / "hprim" / "sample.hpr"


def parse_all(path: Path, **kw):
    chunks = list(hprim.parse(path, file_id="f1", source="lab", **kw))
    rows = pl.concat([c.rows for c in chunks]) if chunks else pl.DataFrame(schema=CANONICAL_SCHEMA)
    rejects = pl.concat([c.rejects for c in chunks]) if chunks else pl.DataFrame(schema=REJECT_SCHEMA)
    return rows, rejects, sum(c.units_seen for c in chunks)


def write(tmp_path: Path, text: str, encoding: str = "utf-8") -> Path:
    p = tmp_path / "res.hpr"
    p.write_bytes(text.encode(encoding))
    return p


@pytest.fixture(scope="module")
def sample():
    return parse_all(SAMPLE)


def test_sample_accounts_for_every_line_and_obx(sample):
    rows, rejects, units = sample
    assert units == 15  # physical lines
    obx = [i for i, ln in enumerate(SAMPLE.read_bytes().split(b"\r\n"), start=1) if ln.startswith(b"OBX")]
    covered = set(rows["line_no"].to_list()) | set(rejects["line_no"].to_list())
    assert set(obx) <= covered
    assert rejects.select("line_no", "reason_code").rows() == [(11, "MALFORMED_MESSAGE"), (14, "TEST_IDENTITY")]
    assert "PAT-TROIS" not in " ".join(rejects["detail"].to_list())


def test_sample_patient(sample):
    r = sample[0].row(0, named=True)
    assert (r["patient_nir"], r["ins_oid"]) == ("285077512345655", "1.2.250.1.213.1.4.8")
    assert (r["family_name"], r["first_name"]) == ("LEGRAND", "Élodie")  # birth name preferred (Latin-1 file)
    assert (r["birth_date"], r["sex"], r["postal_code"]) == (date(1985, 7, 12), "F", "75011")
    assert r["message_id"] is None


def test_sample_results(sample):
    got = sample[0].select(
        "line_no", "request_id", "local_code", "loinc_code_src", "value_type", "value_raw", "value_num", "unit_raw",
        "ref_range", "abnormal_flag", "result_status", "specimen", "lab_finess",
    ).rows()
    assert sample[0]["value_comparator"].to_list() == [None, None, None, "<"]
    comment = (
        "Prélèvement reçu hémolysé, résultat à interpréter avec prudence. Contrôle conseillé sous huit jours si la "
        "clinique le justifie ; le biologiste reste à votre disposition au 01 23 45 67 89."
    )
    assert got == [
        (4, "DEM-2024-0042", "HB", "718-7", "NM", "13,2", 13.2, "g/dL", "12.0-16.0", "N", "F", "SER", "130000012"),
        (5, "DEM-2024-0042", "COM", None, "TX", comment, None, None, None, None, "F", "SER", "750000001"),
        (9, "DEM-2024-0042", "HAV", "22314-9", "CE", "NEG^Négatif^L", None, None, None, None, "F", None, "750000001"),
        (10, "DEM-2024-0042", "CRP", None, "SN", "<^0.5", 0.5, "mg/L", "<5", None, "F", None, "750000001"),
    ]


def test_sample_times(sample):
    first = sample[0].row(0, named=True)
    assert first["collected_at"] == datetime(2024, 3, 5, 7, 35)
    assert first["received_at"] == datetime(2024, 3, 5, 9, 10)
    assert first["validated_at"] == datetime(2024, 3, 5, 11, 45)


def test_structure_errors_are_record_rejects(tmp_path):
    text = "\r\n".join([
        "garbage before the header",
        "H|~^\\&|F.HPR||750000001^LABO",
        "OBX|1|NM|GLY^Glycémie^L||5.0|mmol/L|||||F",
        "P|1|IPP1||||MARTIN^Louis||19760212|M",
        "OBX|1|NM|GLY^Glycémie^L||5.0|mmol/L|||||F",
        "OBR|1||R1|||||",
        "OBX|1|NM|GLY^Glycémie^L||5.0|mmol/L|||||F",
        "L|1",
    ]) + "\r\n"
    rows, rejects, units = parse_all(write(tmp_path, text))
    assert units == 8
    assert rows["line_no"].to_list() == [7]
    assert rows["patient_nir"].to_list() == ["IPP1"]
    assert rejects.select("line_no", "reason_code").rows() == [
        (1, "MALFORMED_MESSAGE"), (3, "MALFORMED_MESSAGE"), (5, "MALFORMED_MESSAGE"),
    ]
    assert "before any P" in rejects["detail"][1] and "before any OBR" in rejects["detail"][2]


def test_declared_delimiters_are_used(tmp_path):
    text = "H#!$\\&#F.HPR##750000001$LABO\nP#1#IPP1###MARTIN$Louis##19760212#M##$$$$69002\n" \
           "OBR#1##R1####20240301\nOBX#1#NM#K$Potassium$L$2823-3$$LN##4,1#mmol/L#3.5$5.0####F\nL#1\n"
    rows, rejects, _ = parse_all(write(tmp_path, text))
    assert rejects.height == 0
    r = rows.row(0, named=True)
    assert (r["local_code"], r["loinc_code_src"], r["value_num"], r["ref_range"]) == ("K", "2823-3", 4.1, "3.5-5.0")
    assert (r["family_name"], r["postal_code"], r["lab_finess"]) == ("MARTIN", "69002", "750000001")
    assert r["collected_at"] == datetime(2024, 3, 1)


def test_whole_file_errors(tmp_path):
    with pytest.raises(FileFormatError) as e:
        parse_all(write(tmp_path, ""))
    assert e.value.reason_code == "EMPTY_FILE"
    with pytest.raises(FileFormatError) as e:
        parse_all(write(tmp_path, "no header here\nP|1\n"))
    assert e.value.reason_code == "UNPARSEABLE_FILE"


@pytest.mark.parametrize(("sent", "read"), [("F", "F"), ("M", "M"), ("U", None), ("I", None), ("i", None),
                                            ("Masculin", "M"), ("FEMME", "F"), ("X", None)])
def test_p8_sex_unknown_or_indeterminate_is_null(tmp_path, sent, read):
    """HPRIM P-8: U (unknown) and I (indeterminate) are an unknown sex (null, the result is kept
    and counts in P and T); the words are read. QA F5: a value outside the vocabulary (X) is null
    too, flagged SEX_INVALID:sex (it was left as sent and quarantined by the validator)."""
    data = SAMPLE.read_bytes().replace(b"|19850712|F|", f"|19850712|{sent}|".encode(), 1)
    assert data != SAMPLE.read_bytes() or sent == "F"
    p = tmp_path / "res.hpr"
    p.write_bytes(data)
    rows, _, _ = parse_all(p)
    first = rows.filter(pl.col("family_name") == "LEGRAND")
    assert first.height > 0 and first["sex"].to_list() == [read] * first.height
    issues = first["parse_issues"].fill_null("").to_list()
    assert all(("SEX_INVALID:sex" in i) == (sent == "X") for i in issues)


HL7_ORDER = "\r\n".join([
    "H|^~\\&|QA.HPR||130012347^QALAB||ORU|||QA||P|H2.2^C|20261103080000",
    "P|1|264037732312550^^^ASIP-SANTE-INS-NIR-TEST&1.2.250.1.213.1.4.10&ISO^INS|||Dupont^Marie||19640327|F||^^^^75011",
    "OBR|1||SW1||||20261102100000|||||||20261102120000",
    "OBX|1|CE|SC2^SARS-CoV-2 PCR^L||260373001^Detecte^SCT||||||F||||130012347||||20261103070000",
    "P|2|251054305823667^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS~IPP9^^^HOP&1.2.3.4&ISO^PI|||Martin^Jean||19510513|M"
    "||^^^^69003",
    "OBR|1||SW2||||20261102100000|||||||20261102120000",
    "OBX|1|CE|SC2^SARS-CoV-2 PCR^L||260373001^Detecte^SCT~POS^Positif^L||||||F||||130012347||||20261103070000",
    "L|1|||2",
]) + "\r\n"


def test_h_record_in_hl7_order_is_read_with_component_hat_and_repetition_tilde(tmp_path):
    """QA (HIGH): ``H|^~\\&`` (MSH-2 copied into the H record) was read in HPRIM's order, ``^`` as
    the repetition: P fields mis-split, the value mangled and a test INS OID loaded as valid."""
    rows, rejects, _ = parse_all(write(tmp_path, HL7_ORDER))
    assert rejects.select("line_no", "reason_code", "column").rows() == [(4, "TEST_IDENTITY", "ins_oid")]
    r = rows.row(0, named=True)
    assert (r["patient_nir"], r["ins_oid"]) == ("251054305823667", "1.2.250.1.213.1.4.8")
    assert (r["family_name"], r["first_name"], r["postal_code"]) == ("Martin", "Jean", "69003")
    assert (r["local_code"], r["local_label"]) == ("SC2", "SARS-CoV-2 PCR")
    assert r["value_raw"] == "260373001^Detecte^SCT~POS^Positif^L"


def test_hprim_order_declaration_still_honoured(tmp_path):
    rows, rejects, _ = parse_all(write(tmp_path, HL7_ORDER.replace("H|^~\\&|", "H|~^\\&|", 1)))
    assert rejects["reason_code"].to_list() == ["TEST_IDENTITY"]
    assert rows["first_name"].to_list() == ["Jean"]


@pytest.mark.parametrize("ids", [
    # the INS (.8) comes first and is the one read: the test OID of the second repetition decides
    "264037732312550^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS~264037732312550^^^T&1.2.250.1.213.1.4.11&ISO^INS",
    # the OID in a component where no identifier is read from (ins_oid stays empty)
    "264037732312550^^^^1.2.250.1.213.1.4.10",
    # P-4 (third identifier) while P-2 holds a local number
    "IPP77||264037732312550^^^ASIP-SANTE-INS-NIR-TEST&1.2.250.1.213.1.4.10&ISO^INS",
])
def test_a_test_ins_oid_anywhere_in_the_p_record_is_a_test_identity(tmp_path, ids):
    """Defence in depth (QA, HIGH): a test OID that did not reach ins_oid still makes the patient a
    test identity; a longer number that merely starts like one does not."""
    text = "\r\n".join([
        "H|~^\\&|F.HPR||750000001^LABO",
        f"P|1|{ids}|||DUPONT^Marie||19640327|F",
        "OBR|1||R1||||20261102100000",
        "OBX|1|NM|GLY^Glycémie^L||5.0|mmol/L|||||F",
        "P|2|264037732312550^^^X&1.2.250.1.213.1.4.100&ISO^PI|||DUPONT^Marie||19640327|F",
        "OBR|1||R2||||20261102100000",
        "OBX|1|NM|GLY^Glycémie^L||5.0|mmol/L|||||F",
        "L|1",
    ]) + "\r\n"
    rows, rejects, _ = parse_all(write(tmp_path, text))
    assert rejects.select("line_no", "reason_code", "column").rows() == [(4, "TEST_IDENTITY", "ins_oid")]
    assert "1.2.250.1.213.1.4.1" in rejects["detail"][0] and "DUPONT" not in rejects["detail"][0]
    assert rows["line_no"].to_list() == [7]


def test_records_of_an_unknown_type_are_rejects_naming_type_and_line(tmp_path):
    """QA (HIGH): RES, OBXX, OX records (results in a record the parser does not read) vanished:
    the file loaded with 0 rows and no reject. Each is now a reject; the known records without
    results (C, L, AP, FAC...) are still read past."""
    text = "\r\n".join([
        "H|~^\\&|F.HPR||750000001^LABO",
        "P|1|IPP1||||MARTIN^Louis||19760212|M",
        "OBR|1||R1||||20261102100000",
        "RES|Glucose|GLU|N|5.2|mmol/L|3.9|6.1|N|||F",
        "OBXX|1|NM|CREA^Creatinine^L||80|umol/L|||||F",
        "OX|1|NM|CREA^Creatinine^L||80|umol/L|||||F",
        "C|1|commentaire",
        "AP|1|x",
        "FAC|1|x",
        "OBX|1|NM|GLY^Glycémie^L||5.0|mmol/L|||||F",
        "L|1",
    ]) + "\r\n"
    rows, rejects, units = parse_all(write(tmp_path, text))
    assert units == 11 and rows["line_no"].to_list() == [10]
    assert rejects.select("line_no", "reason_code").rows() == [
        (4, "MALFORMED_MESSAGE"), (5, "MALFORMED_MESSAGE"), (6, "MALFORMED_MESSAGE"),
    ]
    assert rejects["detail"].to_list() == [f"line {n}: {hprim.UNKNOWN_RECORD_DETAIL}" for n in (4, 5, 6)]
    assert rejects["raw_text"].to_list()[0].startswith("RES|Glucose")  # the engineer's lead, raw layer only


def test_an_unknown_record_type_is_never_quoted_it_may_be_a_name(tmp_path):
    """QA ledger F1 (HIGH): a line broken by a raw CR/LF started with a family name (``ROUX|Denis|<NIR>``);
    the name, shaped like a record type, was quoted in the detail, which analysts read in
    analyst.duckdb next to the file's pseudonyms. The detail now names the line only; the text
    stays in ``raw_text`` (raw.rejected_lines, closed to analysts)."""
    text = "\r\n".join([
        "H|~^\\&|F.HPR||750000001^LABO",
        "P|1|IPP1||||MARTIN^Louis||19760212|M",
        "OBR|1||R1||||20261102100000",
        "OBX|1|NM|GLY^Glycémie^L||5.0|mmol/L|||||F",
        "ROUX|Denis|172051320532159",
        "LY|Sam",
        "DURAND Alice|12031985",
        "L|1",
    ]) + "\r\n"
    rows, rejects, _ = parse_all(write(tmp_path, text))
    assert rows["line_no"].to_list() == [4]
    assert rejects.select("line_no", "reason_code").rows() == [(5, "MALFORMED_MESSAGE"), (6, "MALFORMED_MESSAGE"),
                                                               (7, "MALFORMED_MESSAGE")]
    for detail in rejects["detail"]:
        assert not any(w in detail for w in ("ROUX", "Denis", "1720513205321", "LY", "Sam", "DURAND", "Alice",
                                             "12031985")), detail
    assert rejects["detail"].to_list()[:2] == [f"line {n}: {hprim.UNKNOWN_RECORD_DETAIL}" for n in (5, 6)]
    assert rejects["raw_text"].to_list() == ["ROUX|Denis|172051320532159", "LY|Sam", "DURAND Alice|12031985"]


def test_a_value_without_its_type_is_typed_from_the_value(tmp_path):
    """An empty OBX-2: a number is NM, a comparator and a number SN, text keeps no type."""
    text = "\r\n".join([
        "H|~^\\&|F.HPR||750000001^LABO",
        "P|1|IPP1||||MARTIN^Louis||19760212|M",
        "OBR|1||R1||||20261102100000",
        "OBX|1||GLY^Glycémie^L||5,2|mmol/L|||||F",
        "OBX|2||CRP^CRP^L||<5|mg/L|||||F",
        "OBX|3||COM^Commentaire^L||voir note||||||F",
        "L|1",
    ]) + "\r\n"
    rows, rejects, _ = parse_all(write(tmp_path, text))
    assert rejects.height == 0
    assert rows.select("value_type", "value_num", "value_comparator").rows() == [
        ("NM", 5.2, None), ("SN", 5.0, "<"), (None, None, None),
    ]


TRUNCATED = [
    "H|~^\\&|F.HPR||750000001^LABO",
    "P|1|IPP1||||MARTIN^Louis||19760212|M",
    "OBR|1||R1||||20261102100000",
    "OBX|1|NM|GLY^Glycémie^L||5.0|mmol/L|||||F",
    "P|2|IPP2||||DURAND^Anne||19800101|F",
    "OBR|1||R2||||20261102100000",
]


@pytest.mark.parametrize(("lines", "detail"), [
    # cut after a P and an OBR (QA: loaded silently)
    (TRUNCATED, "before the end of the file; the last record, an OBR at line 6, has no OBX"),
    (TRUNCATED[:5], "before the end of the file; the last record, a P at line 5, has no OBR"),
    (TRUNCATED[:4], "before the end of the file; the last record is an OBX at line 4"),
    # two files glued together, the first one cut
    (TRUNCATED + TRUNCATED[:4] + ["L|1"], "before the next H record at line 7; the last record, an OBR at line 6, has no OBX"),
])
def test_a_delivery_cut_before_its_l_record_leaves_a_reject(tmp_path, lines, detail):
    """QA: a file without its L record (cut after a P and an OBR) loaded without a trace. The H's
    line gets one reject naming the cut; the complete results read are kept."""
    rows, rejects, _ = parse_all(write(tmp_path, "\r\n".join(lines) + "\r\n"))
    assert rows.height == sum(ln.startswith("OBX") for ln in lines)
    assert rejects.select("line_no", "reason_code").rows() == [(1, "MALFORMED_MESSAGE")]
    assert rejects["detail"][0] == f"truncated delivery: the H record at line 1 is not closed by an L record {detail}"
    assert "MARTIN" not in rejects["detail"][0] and "DURAND" not in rejects["detail"][0]


def test_records_after_an_l_need_another_l(tmp_path):
    closed = TRUNCATED[:4] + ["L|1"]
    assert parse_all(write(tmp_path, "\r\n".join(closed) + "\r\n"))[1].height == 0
    rows, rejects, _ = parse_all(write(tmp_path, "\r\n".join(closed + TRUNCATED[1:4]) + "\r\n"))
    assert rows.height == 2 and rejects["line_no"].to_list() == [1]


def test_a_control_byte_refuses_its_record_and_those_under_it(tmp_path):
    """QA ops F4: a NUL in a P record's name or an OBX's value was read into the row."""
    data = SAMPLE.read_bytes()
    p = tmp_path / "p.hpr"
    p.write_bytes(data.replace(b"13,2", b"13\x00,2", 1))
    rows, rejects, _ = parse_all(p)
    assert not rows["value_raw"].str.contains("\x00").any()
    assert rejects.filter(pl.col("line_no") == 4)["detail"].to_list() == [
        "NUL byte (0x00) in the OBX record at line 4: the record is not read (a stray byte, or a damaged file?)"]
    p.write_bytes(data.replace(b"DUPUIS", b"DUP\x00UIS", 1))
    rows, rejects, _ = parse_all(p)
    assert rows.height == 0
    assert rejects["detail"][0].startswith("NUL byte (0x00) in the P record at line 2: the record is not read")
    assert rejects["detail"][1] == "OBR record under the P record at line 2, not read (a control byte)"


def test_records_are_searched_for_control_bytes_only_in_a_block_holding_one(tmp_path, monkeypatch):
    """Hot path: one pass over each block of lines read tells whether it holds a control byte; only
    then are its records searched one by one to name it (the regular expression ran over every P,
    OBR and OBX record). A NUL in a record's continuation line, read in the next block, still
    refuses the record, named at its first line."""
    from transforms.parsers import linereader

    searched = []
    real = hprim.control_byte
    monkeypatch.setattr(hprim, "control_byte", lambda text: searched.append(text) or real(text))
    rows, rejects, _ = parse_all(SAMPLE)
    assert rows.height > 0 and searched == []
    data = SAMPLE.read_bytes().replace(b"A|5 67 89.", b"A|5 67\x00 89.", 1)
    p = tmp_path / "split.hpr"
    p.write_bytes(data)
    monkeypatch.setattr(linereader, "BLOCK_SIZE", data.index(b"A|5") + 3)  # the A| line opens the next block
    rows, rejects, _ = parse_all(p)
    assert rejects.filter(pl.col("line_no") == 5)["detail"].to_list() == [
        "NUL byte (0x00) in the OBX record at line 5: the record is not read (a stray byte, or a damaged file?)"]
    # the records of the block holding the byte were searched, not those of the first block
    assert searched and not any(t.startswith(("P|1|IPP123", "OBX|1|NM|HB^")) for t in searched)


def test_windows_1252_text_keeps_its_letters(tmp_path):
    """QA fmt F3: an HPRIM file written by Windows ("ANSI") was read as Latin-1: CŒUR became
    C\\x8cUR (a C1 control), ' – ' \\x96; Windows-1252 reads them as the lab wrote them."""
    text = ("H|~^\\&|F.HPR||330028762^LABO||ORU|||DEST||P|H2.2^C|20261105120000\r\n"
            "P|1|IPP9|||CŒUR^Lætitia||19790717|F||1 rue^^LYON^^69003\r\n"
            "OBR|1||DEMH1||||20261104083000|||||||20261104100000\r\n"
            "OBX|1|ST|COM^Commentaire^L||Contrôlé – cœur|||||F||||330028762||||20261104180000\r\n"
            "L|1|||1\r\n")
    rows, rejects, _ = parse_all(write(tmp_path, text, encoding="cp1252"))
    assert rejects.height == 0
    assert rows.select("family_name", "value_raw").row(0) == ("CŒUR", "Contrôlé – cœur")
    # a byte Windows-1252 leaves undefined is a control character: the record is refused, named
    p = tmp_path / "undefined.hpr"
    p.write_bytes(text.encode("cp1252").replace(b"C\x8cUR", b"C\x81UR", 1))
    rows, rejects, _ = parse_all(p)
    assert rows.height == 0
    assert rejects["detail"][0].startswith("control character U+0081 in the P record at line 2")


def test_obx4_sub_id_and_obx14_own_time_are_read(tmp_path):
    """QA fmt F1: as in HL7, OBX-4 and OBX-14 tell apart repeated measurements of one test in one
    request; OBR-7 stays the collection time."""
    text = ("H|~^\\&|F.HPR||330028762^LABO||ORU|||DEST||P|H2.2^C|20261105120000\r\n"
            "P|1|IPP9|||MARTIN^Lea||19790717|F||1 rue^^LYON^^69003\r\n"
            "OBR|1||DEMH1||||20261104080000|||||||20261104080000\r\n"
            "OBX|1|NM|GLY^Glycémie^L|1|5,0|mmol/L|||||F|||20261104080000|330028762||||20261104180000\r\n"
            "OBX|2|NM|GLY^Glycémie^L|3|5,0|mmol/L|||||F|||20261104100000|330028762||||20261104180000\r\n"
            "L|1|||2\r\n")
    rows, rejects, _ = parse_all(write(tmp_path, text))
    assert rejects.height == 0
    assert rows.select("observation_sub_id", pl.col("observed_at").dt.hour(), pl.col("collected_at").dt.hour()).rows() == [
        ("1", 8, 8), ("3", 10, 8)]
