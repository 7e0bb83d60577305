"""Format detection from content, whatever the file is called."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import polars as pl
import pytest

from transforms.parsers import cda, hl7v2, hprim
from transforms.parsers.base import FileFormatError
from transforms.parsers.detect import FORMATS, detect_format, get_parser

FIXTURES = Path(__file__).parent / "fixtures"
CSV_HEADER = (
    "FINESS;N_DEMANDE;NIR;NOM;PRENOM;DATE_NAISSANCE;SEXE;CODE_POSTAL;DATE_PRELEVEMENT;DATE_RECEPTION;"
    "DATE_VALIDATION;CODE_ANALYSE;LIBELLE_ANALYSE;RESULTAT;UNITE;VALEURS_REFERENCE;STATUT"
)


def put(tmp_path: Path, data: bytes, name: str) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (FIXTURES / "hl7" / "fr_oru_batch.hl7", "hl7v2"),
        (FIXTURES / "hl7" / "nist" / "ORU_R01_2.5.1_SampleTestCase1.hl7", "hl7v2"),
        (FIXTURES / "cda" / "crbio_sample.xml", "cda"),
        (FIXTURES / "hprim" / "sample.hpr", "hprim"),
    ],
    ids=lambda v: v.name if isinstance(v, Path) else v,
)
def test_fixtures_are_recognised_whatever_their_name(tmp_path, source, expected):
    for name in ("export.csv", "results.txt", "noextension", "report.xml"):
        target = tmp_path / name
        shutil.copyfile(source, target)
        assert detect_format(target) == expected


def test_csv_header(tmp_path):
    data = (CSV_HEADER + "\n750000001;R1;1760269123456;MARTIN;Louis;12/02/1976;M;69002;;;;GLY;Glycémie;5,1;mmol/L;;F\n")
    assert detect_format(put(tmp_path, data.encode("latin-1"), "x.hl7")) == "csv"
    assert detect_format(put(tmp_path, b"\xef\xbb\xbf" + data.encode("utf-8"), "y.dat")) == "csv"
    assert detect_format(put(tmp_path, b'"FINESS";"NOM";"RESULTAT"\r\n', "z")) == "csv"


def test_bom_mllp_and_blank_prefixes(tmp_path):
    msh = b"MSH|^~\\&|A|B|C|D|20240101||ORU^R01|1|P|2.5\r"
    assert detect_format(put(tmp_path, b"\xef\xbb\xbf" + msh, "a")) == "hl7v2"
    assert detect_format(put(tmp_path, b"\x0b" + msh, "b")) == "hl7v2"
    assert detect_format(put(tmp_path, b"\r\n\r\nFHS|^~\\&|A\rBHS|^~\\&\r" + msh, "c")) == "hl7v2"
    assert detect_format(put(tmp_path, b"\xef\xbb\xbfH|~^\\&|F.HPR\r\n", "d")) == "hprim"


def test_cda_variants(tmp_path):
    plain = b'<?xml version="1.0"?><!-- c --><ClinicalDocument xmlns="urn:hl7-org:v3"/>'
    assert detect_format(put(tmp_path, plain, "a")) == "cda"
    assert detect_format(put(tmp_path, '<ClinicalDocument xmlns="urn:hl7-org:v3"/>'.encode("utf-16"), "b")) == "cda"
    # a DOCTYPE is recognised without being read: the CDA parser refuses it with a reject
    dtd = b'<?xml version="1.0"?><!DOCTYPE ClinicalDocument [<!ENTITY a "b">]><ClinicalDocument/>'
    assert detect_format(put(tmp_path, dtd, "c")) == "cda"


def _zip(members: dict[str, str]) -> bytes:
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name, text in members.items():
            z.writestr(name, text)
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "code", "words"),
    [
        (b"", "EMPTY_FILE", "empty"),
        (b"\xef\xbb\xbf \r\n\t", "EMPTY_FILE", "empty"),
        (gzip.compress(b"MSH|^~\\&|", mtime=0), "UNPARSEABLE_FILE", "gzip"),
        (b"%PDF-1.7 ...", "UNPARSEABLE_FILE", "PDF"),
        (b"abc\x00\x01\x02def", "UNPARSEABLE_FILE", "binary"),
        (b'<?xml version="1.0"?><html/>', "UNPARSEABLE_FILE", "not a CDA"),
        (b'<ClinicalDocument xmlns="urn:other"/>', "UNPARSEABLE_FILE", "not a CDA"),
        (b"<<<not xml", "UNPARSEABLE_FILE", "XML"),
        (b"1;2;3\n4;5;6\n", "UNPARSEABLE_FILE", "not a header"),
        (b"hello world\n", "UNPARSEABLE_FILE", "neither"),
        (b"MSHELLO", "UNPARSEABLE_FILE", "neither"),
        (_zip({"[Content_Types].xml": "<Types/>", "docProps/app.xml": "<x/>"}), "UNPARSEABLE_FILE", "zip archive"),
        # QA: a workbook renamed .csv was "a zip archive"
        (_zip({"[Content_Types].xml": "<Types/>", "xl/workbook.xml": "<workbook/>"}), "UNPARSEABLE_FILE",
         "an Excel workbook: export it as CSV"),
    ],
)
def test_unreadable_content(tmp_path, data, code, words):
    with pytest.raises(FileFormatError) as e:
        detect_format(put(tmp_path, data, "delivery.hl7"))
    assert e.value.reason_code == code
    assert str(e.value).startswith("delivery.hl7: ")
    assert words in str(e.value)


HEAD = "FINESS;N_DEMANDE;NIR;NOM;DATE_PRELEVEMENT;CODE_ANALYSE;LIBELLE_ANALYSE;RESULTAT;UNITE"
ROW = "750000002;D1;255099900011689;Dupont;02/11/2026 08:30;GLY;Glycémie;5,4;mmol/L"


@pytest.mark.parametrize(
    ("data", "words"),
    [
        # Excel "Unicode text": UTF-16 with its byte-order mark, tab separated
        ((HEAD + "\r\n" + ROW + "\r\n").replace(";", "\t").encode("utf-16"),
         "UTF-16 text (Excel 'Unicode text'): export as CSV, ';' separated, UTF-8 or Latin-1"),
        (b"\xfe\xff" + (HEAD + "\n" + ROW + "\n").encode("utf-16-be"),  # big-endian
         "UTF-16 text (Excel 'Unicode text'): export as CSV, ';' separated, UTF-8 or Latin-1"),
        ("bonjour\n".encode("utf-16"), "UTF-16 text: deliver a CSV extract (';' separated, UTF-8 or Latin-1)"),
        ('<?xml version="1.0" encoding="UTF-16"?><html/>'.encode("utf-16"), "UTF-16 content that is not a CDA document"),
        ((HEAD + "\n" + ROW + "\n").replace(";", ",").encode(),
         "a header separated by ',': the CSV extract must be ';' separated"),
        ((HEAD + "\r\n" + ROW + "\r\n").replace(";", "\t").encode("cp1252"),
         "a header separated by tabs: the CSV extract must be ';' separated"),
        ('"N° demande","Résultat","Code analyse"\n'.encode(), "a header separated by ','"),
        # not a header of the extract's columns: the generic message
        (b"name,age,city\nBob,3,Paris\n", "first line is neither HL7 v2"),
        ((ROW + "\n").replace(";", ",").encode(), "first line is neither HL7 v2"),
    ],
)
def test_spreadsheet_exports_in_another_shape_say_what_to_do(tmp_path, data, words):
    """QA (ledger F8): Excel's "Unicode text" got "UTF-16 content that is not a CDA document", and a
    comma- or tab-separated export the generic "first line is neither HL7 v2 ...". A header of the
    extract's columns in another shape now says how to export it (no value of the file shown)."""
    with pytest.raises(FileFormatError) as e:
        detect_format(put(tmp_path, data, "export.csv"))
    assert e.value.reason_code == "UNPARSEABLE_FILE" and str(e.value).startswith("export.csv: ")
    assert words in str(e.value)
    assert "Dupont" not in str(e.value) and "255099900011689" not in str(e.value)


def test_reads_at_most_64_kib(tmp_path):
    big = b"MSH|^~\\&|A\r" + b"OBX|" + b"x" * (10 << 20) + b"\r"
    p = put(tmp_path, big, "big")
    assert detect_format(p) == "hl7v2"


def test_get_parser():
    assert get_parser("hl7v2") is hl7v2.parse
    assert get_parser("cda") is cda.parse
    assert get_parser("hprim") is hprim.parse
    assert callable(get_parser("csv"))
    assert set(FORMATS) == {"csv", "hl7v2", "cda", "hprim"}
    with pytest.raises(ValueError):
        get_parser("xls")


def test_a_doctype_naming_another_root_before_a_cda_document(tmp_path):
    """QA: a billion-laughs DOCTYPE named "lolz" before a ClinicalDocument made the whole file
    UNPARSEABLE_FILE ("XML root <lolz>"), losing the clean document after it. The file is CDA: the
    attacked document is refused as UNSAFE_XML (its entities never expanded), the next one is read."""
    doc = (FIXTURES / "cda" / "crbio_sample.xml").read_bytes()
    body = doc.split(b"?>", 1)[1]
    bomb = (b'<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>\n'
            + body.replace(b"<realmCode", b"<title>&lol2;</title><realmCode", 1))
    p = tmp_path / "attack.xml"
    p.write_bytes(bomb + b"\n" + doc)
    assert detect_format(p) == "cda"
    chunks = list(get_parser("cda")(p, file_id="f", source="lab"))
    rejects = [r for c in chunks for r in c.rejects.iter_rows(named=True)]
    assert [r["reason_code"] for r in rejects] == ["UNSAFE_XML"]
    alone = tmp_path / "clean.xml"
    alone.write_bytes(doc)
    clean = list(get_parser("cda")(alone, file_id="f", source="lab"))
    assert sum(c.rows.height for c in chunks) == sum(c.rows.height for c in clean) > 0


def test_a_clinical_document_outside_the_hl7_namespace_is_named_as_such(tmp_path):
    doc = (FIXTURES / "cda" / "crbio_sample.xml").read_bytes().replace(b' xmlns="urn:hl7-org:v3"', b"", 1)
    p = tmp_path / "nons.xml"
    p.write_bytes(doc)
    with pytest.raises(FileFormatError, match=r"nons.xml: XML root <ClinicalDocument> is not a CDA document: not in the HL7 v3 namespace"):
        detect_format(p)


def test_an_h_record_with_fewer_than_three_delimiters_goes_to_the_hprim_parser(tmp_path):
    """QA: ``H|~^|x`` got the generic "first line is neither HL7 v2 ..., HPRIM (H|...), ..." although
    the HPRIM parser says precisely what is wrong with it."""
    text = b"H|~^|x.HPR||750000001^LABO\r\nP|1|IPP1||||MARTIN^Louis||19760212|M\r\nOBR|1||R1\r\nL|1\r\n"
    p = put(tmp_path, text, "f.hpr")
    assert detect_format(p) == "hprim"
    rejects = pl.concat([c.rejects for c in get_parser("hprim")(p, file_id="f", source="lab")])
    assert rejects.select("line_no", "reason_code").rows()[0] == (1, "MALFORMED_MESSAGE")
    assert rejects["detail"][0] == "H record unusable: the H record declares fewer than three delimiters"
    # a first line that is not an H record still gets the generic refusal
    for data in (b"H|Name|Value\n", b"H|~^ |x\n", b"Hello|world\n"):
        with pytest.raises(FileFormatError, match="neither"):
            detect_format(put(tmp_path, data, "g"))


def test_one_stray_nul_is_no_binary_file_but_many_are(tmp_path):
    """QA ops F4: one NUL in the first 64 KiB refused a 999-line CSV as binary (the parser now
    rejects its line); control bytes all through the head (in most of its lines) still refuse the
    file."""
    from tests.helpers import HEADER, line

    p = tmp_path / "x.csv"
    p.write_bytes(("\n".join([HEADER, line().replace("Dupont", "Du\x00pont"), line(N_DEMANDE="D2")]) + "\n").encode())
    assert detect_format(p) == "csv"
    p.write_bytes((HEADER + "\n").encode() + b"\x00\x01\n" * 200)
    with pytest.raises(FileFormatError, match="binary content"):
        detect_format(p)


def _parsed(path: Path) -> tuple[int, int, list[tuple]]:
    """(rows, units seen, rejects as (line, reason, detail)) of a whole file, detected first."""
    chunks = list(get_parser(detect_format(path))(path, file_id="f", source="lab"))
    rejects = pl.concat([c.rejects for c in chunks]).select("line_no", "reason_code", "detail").rows()
    return sum(c.rows.height for c in chunks), sum(c.units_seen for c in chunks), rejects


def test_a_nul_tail_is_one_quarantined_line_whatever_the_file_size(tmp_path):
    """QA F4 (low): 20 NUL bytes after the last line (the padding a cut or pre-allocated copy
    leaves) refused a 3-line CSV whole as binary, while in a 61 KB file the same tail was one
    quarantined line. Now the decision does not depend on the size: both load their lines and
    quarantine the tail, naming its line and the byte."""
    from tests.helpers import HEADER, line

    tail = b"\x00" * 20
    for n in (3, 300):
        text = "\n".join([HEADER] + [line(N_DEMANDE=f"D{i}") for i in range(n)]) + "\n"
        p = put(tmp_path, text.encode() + tail, f"tail{n}.csv")
        assert detect_format(p) == "csv"
        rows, seen, rejects = _parsed(p)
        assert (rows, seen) == (n, n + 1)
        assert rejects == [(n + 2, "MALFORMED_LINE", "NUL byte (0x00) in field FINESS: the line is not read "
                                                     "(a stray byte, or a damaged file?)")]
        # a run of them inside the file, not only after its end
        lines = text.splitlines()
        lines[2] = lines[2].replace("Dupont", "Du" + "\x00" * 20 + "pont")
        p = put(tmp_path, ("\n".join(lines) + "\n").encode(), f"run{n}.csv")
        rows, seen, rejects = _parsed(p)
        assert (rows, seen) == (n - 1, n)
        assert [r[:2] for r in rejects] == [(3, "MALFORMED_LINE")] and "NUL byte (0x00) in field NOM" in rejects[0][2]


def test_a_nul_tail_in_hl7_hprim_and_cda_files(tmp_path):
    """The same tail after an HL7 file (2.6 KB: 20 NULs are 0.8 % of it) was dropped without a
    trace: a copy cut at the end of a segment and padded looked whole. It is one reject naming its
    line and the byte; HPRIM's names the byte; a CDA document is closed by its root element, and the
    NULs after it are read past (a cut inside a document is 'document truncated')."""
    tail = b"\x00" * 40
    hl7 = (FIXTURES / "hl7" / "fr_oru_batch.hl7").read_bytes()
    clean = _parsed(put(tmp_path, hl7, "clean.hl7"))
    rows, seen, rejects = _parsed(put(tmp_path, hl7 + tail, "tail.hl7"))
    n = hl7.count(b"\r") + 1
    assert (rows, seen) == clean[:2] and rejects[:-1] == clean[2]
    assert rejects[-1] == (n, "MALFORMED_MESSAGE", f"NUL byte (0x00) at line {n}, a line of NUL bytes: not read (the "
                                                   "padding of a cut or pre-allocated copy, or a damaged file?)")
    # a small HL7 file of one message: the tail no longer refuses it as binary
    start = hl7.index(b"MSH")
    one = hl7[start:hl7.index(b"MSH", start + 3)]
    rows, _, rejects = _parsed(put(tmp_path, one + tail, "one.hl7"))
    assert rows >= 1 and rejects[-1][1:] == ("MALFORMED_MESSAGE", rejects[-1][2]) and "NUL byte" in rejects[-1][2]
    hpr = (FIXTURES / "hprim" / "sample.hpr").read_bytes()
    clean = _parsed(put(tmp_path, hpr, "clean.hpr"))
    rows, seen, rejects = _parsed(put(tmp_path, hpr + tail, "tail.hpr"))  # 1.2 KB: it was refused as binary
    n = hpr.count(b"\n") + 1
    assert (rows, seen) == (clean[0], clean[1] + 1) and rejects[:-1] == clean[2]
    assert rejects[-1] == (n, "MALFORMED_MESSAGE", f"line {n} is not an HPRIM record: it holds a NUL byte (0x00) "
                                                   "(a stray byte, or the padding of a cut copy?)")
    cda = (FIXTURES / "cda" / "crbio_sample.xml").read_bytes()
    assert _parsed(put(tmp_path, cda + tail, "tail.xml")) == _parsed(put(tmp_path, cda, "clean.xml"))


def _noise(n: int) -> bytes:
    return bytes((i * 7919 + 13) % 256 for i in range(n))


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (_noise(5000), "binary content (NUL or control bytes)"),
        ((CSV_HEADER + "\n").encode() + _noise(5000), "binary content (NUL or control bytes)"),
        (b"MSH|^~\\&|A|B\r" + _noise(5000).replace(b"\x00", b"\x01"), "binary content (NUL or control bytes)"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 500 + _noise(3000), "binary content"),  # an old .xls
        (b"SQLite format 3\x00" + b"\x10\x00\x01\x01" + b"\x00" * 2000, "binary content"),
        (_zip({"[Content_Types].xml": "<Types/>", "xl/workbook.xml": "<workbook/>"}), "an Excel workbook"),
        (gzip.compress(b"a;b\n" * 100, mtime=0), "a gzip archive"),
        (b"%PDF-1.4\n" + _noise(2000), "a PDF document"),
        # UTF-16 without its byte-order mark was "binary content": it is told as UTF-16 text
        ((CSV_HEADER + "\n").encode("utf-16-le"), "UTF-16 text (Excel 'Unicode text')"),
        ((CSV_HEADER + "\n").encode("utf-16-be"), "UTF-16 text (Excel 'Unicode text')"),
        ("bonjour\nle monde\n".encode("utf-16-le"), "UTF-16 text: deliver a CSV extract"),
    ],
    ids=["noise", "csv-header-then-noise", "msh-then-noise", "xls", "sqlite", "xlsx", "gzip", "pdf",
         "utf16le-header", "utf16be-header", "utf16le-text"],
)
def test_binary_content_is_still_refused(tmp_path, data, words):
    with pytest.raises(FileFormatError) as e:
        detect_format(put(tmp_path, data, "delivery.csv"))
    assert e.value.reason_code == "UNPARSEABLE_FILE" and words in str(e.value)


def test_a_cda_document_in_utf16_without_its_byte_order_mark_is_read(tmp_path):
    doc = (FIXTURES / "cda" / "crbio_sample.xml").read_text(encoding="utf-8").replace('encoding="UTF-8"',
                                                                                       'encoding="UTF-16"')
    expected = _parsed(FIXTURES / "cda" / "crbio_sample.xml")
    for enc in ("utf-16-le", "utf-16-be"):
        p = put(tmp_path, doc.encode(enc), f"{enc}.xml")
        assert detect_format(p) == "cda"
        assert _parsed(p)[:2] == expected[:2]
