"""The CSV extract parser: fields, types, encodings, rejected lines with their line numbers."""

from __future__ import annotations

from datetime import date, datetime

import polars as pl
import pytest

from transforms.parsers.base import FileFormatError
from transforms.parsers.csv_extract import parse
from tests.helpers import HEADER, line


def parse_all(path, **kw):
    chunks = list(parse(path, file_id="f1", source="lab", **kw))
    rows = pl.concat([c.rows for c in chunks])
    rejects = pl.concat([c.rejects for c in chunks])
    return rows, rejects, sum(c.units_seen for c in chunks)


def write(tmp_path, lines, encoding="utf-8", name="x.csv"):
    p = tmp_path / name
    p.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return p


def test_fields_become_typed_canonical_columns(tmp_path):
    rows, rejects, seen = parse_all(write(tmp_path, [HEADER, line()]))
    assert seen == 1 and rejects.is_empty()
    r = rows.row(0, named=True)
    assert r["file_id"] == "f1" and r["source"] == "lab" and r["line_no"] == 2
    assert r["lab_finess"] == "750000002" and r["request_id"] == "D1"
    assert r["birth_date"] == date(1955, 9, 12)
    assert r["collected_at"] == datetime(2026, 11, 2, 8, 30)
    assert r["validated_at"] == datetime(2026, 11, 2, 18, 0)
    assert r["value_raw"] == "5,4" and r["value_num"] == 5.4 and r["value_type"] == "NM"
    assert r["unit_raw"] == "mmol/L" and r["ref_range"] == "3,9-5,8" and r["result_status"] == "F"
    assert r["local_label"] == "Glycémie" and r["parse_issues"] is None


def test_compact_dates_and_latin1(tmp_path):
    l = line(DATE_NAISSANCE="19550912", DATE_PRELEVEMENT="202611020830", LIBELLE_ANALYSE="Hématies")
    rows, _, _ = parse_all(write(tmp_path, [HEADER, l], encoding="latin-1"))
    r = rows.row(0, named=True)
    assert r["birth_date"] == date(1955, 9, 12)
    assert r["collected_at"] == datetime(2026, 11, 2, 8, 30)
    assert r["local_label"] == "Hématies"


def test_qualitative_value_stays_text(tmp_path):
    rows, _, _ = parse_all(write(tmp_path, [HEADER, line(RESULTAT="Non détecté", UNITE="")]))
    r = rows.row(0, named=True)
    assert r["value_raw"] == "Non détecté" and r["value_num"] is None and r["value_type"] == "ST"
    assert r["unit_raw"] is None


@pytest.mark.parametrize(
    ("resultat", "num", "comparator", "vt"),
    [
        (">100", 100.0, ">", "SN"), ("<0,5", 0.5, "<", "SN"), ("< 0,5", 0.5, "<", "SN"), (">=10", 10.0, ">=", "SN"),
        ("<=1,5", 1.5, "<=", "SN"), ("≤ 3", 3.0, "<=", "SN"), ("≥3", 3.0, ">=", "SN"),
        ("100", 100.0, None, "NM"), ("<>5", None, None, "ST"), ("<", None, None, "ST"), ("< 0,5 g", None, None, "ST"),
    ],
)
def test_comparator_results_keep_their_bound(tmp_path, resultat, num, comparator, vt):
    rows, rejects, _ = parse_all(write(tmp_path, [HEADER, line(RESULTAT=resultat, UNITE="ug/dL")]))
    assert rejects.is_empty()
    r = rows.row(0, named=True)
    assert (r["value_raw"], r["value_num"], r["value_comparator"], r["value_type"]) == (resultat, num, comparator, vt)


def test_unreadable_values_are_flagged_not_dropped(tmp_path):
    rows, _, _ = parse_all(write(tmp_path, [HEADER, line(DATE_NAISSANCE="31/02/1955", SEXE="X",
                                                         DATE_PRELEVEMENT="30/13/2026 08:00")]))
    issues = set(rows["parse_issues"][0].split(";"))
    assert issues == {"DATE_INVALID:birth_date", "DATE_INVALID:collected_at", "SEX_INVALID:sex"}


@pytest.mark.parametrize("sent", ["15/06/1980", "15/06/1980 00:00", "15/06/1980 00:00:00", "198006150000",
                                  "19800615000000", "1980-06-15 00:00:00", "1980-06-15T00:00:00", "15/06/1980 13:45"])
def test_a_birth_date_written_with_a_time_is_its_date(tmp_path, sent):
    """QA cal F1: a spreadsheet writes a date column as a datetime at 00:00; the CSV extract's birth
    date took dates only, and such a result lost its age (or, without a NIR, its person)."""
    rows, _, _ = parse_all(write(tmp_path, [HEADER, line(DATE_NAISSANCE=sent)]))
    assert rows["birth_date"].to_list() == [date(1980, 6, 15)] and rows["parse_issues"][0] is None


def test_written_unknown_sex_is_unknown_not_invalid(tmp_path):
    """QA: 'U' or 'I' in SEXE sent the whole result to quarantine; an unknown sex is a flag."""
    lines = [HEADER, *(line(N_DEMANDE=f"D{c}", SEXE=c) for c in ("U", "i", "9", "F", "h", "Z"))]
    rows, _, _ = parse_all(write(tmp_path, lines))
    got = [(r["sex"], r["parse_issues"]) for r in rows.iter_rows(named=True)]
    assert got == [(None, None), (None, None), (None, None), ("F", None), ("M", None), (None, "SEX_INVALID:sex")]


def test_malformed_and_duplicate_lines_are_rejected_with_line_numbers(tmp_path):
    good = line()
    p = write(tmp_path, [HEADER, good, line(N_DEMANDE="D2"), good, "750000001;D3;truncated", ""])
    rows, rejects, seen = parse_all(p)
    assert rows["line_no"].to_list() == [2, 3]
    assert rejects.select("line_no", "reason_code").rows() == [(4, "DUPLICATE_ROW"), (5, "MALFORMED_LINE")]
    assert rejects.filter(pl.col("line_no") == 5)["raw_text"][0] == "750000001;D3;truncated"
    assert seen == 4


def test_duplicates_are_found_across_chunks_and_blocks(tmp_path):
    lines = [HEADER] + [line(N_DEMANDE=f"D{i}") for i in range(50)] + [line(N_DEMANDE="D7")]
    rows, rejects, seen = parse_all(write(tmp_path, lines), chunk_rows=10, block_bytes=300)
    assert seen == 51 and rows.height == 50
    assert rejects.select("line_no", "reason_code").rows() == [(52, "DUPLICATE_ROW")]
    assert rows["line_no"].to_list() == list(range(2, 52))


def test_quoted_fields_go_through_the_csv_reader(tmp_path):
    p = write(tmp_path, [HEADER, line(LIBELLE_ANALYSE='"Glycémie; à jeun"')])
    rows, rejects, _ = parse_all(p)
    assert rejects.is_empty() and rows["local_label"][0] == "Glycémie; à jeun"


def test_a_quoting_error_is_named_as_such_not_as_a_field_count(tmp_path):
    """QA (ledger F5): an unclosed ``"Positif`` and a misplaced ``"Positif"x`` were both rejected
    ``17 fields, expected 17`` (the raw ';' counted). The detail now says what is wrong and in which
    field, never its value; a real field count keeps its text, counted as the csv module reads."""
    p = write(tmp_path, [HEADER, line(), line(N_DEMANDE="D2", RESULTAT='"Positif'),
                         line(N_DEMANDE="D3", RESULTAT='"Positif"x'), line(N_DEMANDE="D4", NOM='"Dupont" ', RESULTAT="1"),
                         line(N_DEMANDE="D5", LIBELLE_ANALYSE='"un;deux";"trois"'),
                         line(N_DEMANDE="D6", LIBELLE_ANALYSE='Taille 5"') + ";extra",
                         line(N_DEMANDE="D7", UNITE='"mmol/L', STATUT='F"'),
                         line(N_DEMANDE="D8") + ';"x'])
    rows, rejects, seen = parse_all(p)
    assert rows["request_id"].to_list() == ["D1"] and seen == 8
    assert rejects.select("line_no", "reason_code", "detail").rows() == [
        (3, "MALFORMED_LINE", "unbalanced or misplaced double quote (field RESULTAT)"),
        (4, "MALFORMED_LINE", "unbalanced or misplaced double quote (field RESULTAT)"),
        (5, "MALFORMED_LINE", "unbalanced or misplaced double quote (field NOM)"),
        (6, "MALFORMED_LINE", "18 fields, expected 17 (the ';' inside the double quotes of field LIBELLE_ANALYSE are text)"),
        (7, "MALFORMED_LINE", "18 fields, expected 17"),
        # a quote opened in UNITE and closed in STATUT: the csv module reads one field of both
        (8, "MALFORMED_LINE", "15 fields, expected 17 (the ';' inside the double quotes of field UNITE are text)"),
        (9, "MALFORMED_LINE", "unbalanced or misplaced double quote"),  # past the header's fields
    ]
    assert "Positif" not in "".join(rejects["detail"]) and "Dupont" not in "".join(rejects["detail"])


def test_a_last_line_cut_without_a_line_break_says_the_delivery_was_truncated(tmp_path):
    """QA (ledger F6): a last line cut short gave ``8 fields, expected 17``; the HL7, HPRIM and CDA
    parsers say "truncated delivery". A short line elsewhere, or a last line ended by a line break,
    keeps the field count."""
    cut = line(N_DEMANDE="D3")[:60]
    lines = [HEADER, line(), "750000001;D2;short", cut]
    p = tmp_path / "cut.csv"
    p.write_bytes("\n".join(lines).encode("utf-8"))  # no line break after the last line
    rows, rejects, seen = parse_all(p)
    assert seen == 3 and rows.height == 1
    nf = cut.count(";") + 1
    assert rejects.select("line_no", "detail").rows() == [
        (3, "3 fields, expected 17"),
        (4, f"truncated delivery: the file ends in this line, without a line break ({nf} fields, expected 17)")]
    # in another block and chunk than the rest of the file
    _, rejects, _ = parse_all(p, block_bytes=len(lines[0]) + 5, chunk_rows=1)
    assert rejects["detail"].to_list()[-1].startswith("truncated delivery")
    # ended by a line break: a short line like any other
    _, rejects, _ = parse_all(write(tmp_path, lines, name="ended.csv"))
    assert rejects["detail"].to_list() == ["3 fields, expected 17", f"{nf} fields, expected 17"]
    # a last line of the full field count without a line break is not read either (QA ops F1: its
    # last field may be cut): see test_a_last_line_without_a_line_break_is_never_read


def test_a_last_line_without_a_line_break_is_never_read(tmp_path):
    """QA ops F1: a cut inside the last field left the field count whole: '0,88' cut to '0,' loaded
    as the valid number 0, a correction's final 'C' cut off loaded as a final result F. The file's
    last line, when no line break ends it, is quarantined as a truncated delivery whatever its
    field count; the lines before it load, and a line break (LF, CRLF, or the CR of a CRLF cut
    before its LF) after it makes it an ordinary line."""
    value_last = HEADER.replace(";RESULTAT", "") + ";RESULTAT"

    def reorder(text: str) -> str:
        f = text.split(";")
        return ";".join(f[:13] + f[14:] + [f[13]])

    cases = {
        "value.csv": f"{value_last}\n{reorder(line())}\n{reorder(line(N_DEMANDE='D2', RESULTAT='0,88'))[:-2]}",
        "status.csv": f"{HEADER}\n{line()}\n{line(N_DEMANDE='D2', STATUT='C')[:-1]}",
        "whole.csv": f"{HEADER}\n{line()}\n{line(N_DEMANDE='D2')}",
    }
    for name, text in cases.items():
        rows, rejects, seen = parse_all(_raw(tmp_path, name, text))
        assert (seen, rows.height) == (2, 1), name
        assert rows["request_id"].to_list() == ["D1"]
        assert rejects.select("line_no", "reason_code").rows() == [(3, "MALFORMED_LINE")]
        assert rejects["detail"][0] == ("truncated delivery: the file ends in this line, without a line break: its "
                                        "last field may have been cut (during transfer?), the line is not read")
    for end in ("\n", "\r\n", "\r"):
        rows, rejects, _ = parse_all(_raw(tmp_path, "ended.csv", cases["whole.csv"] + end))
        assert rows.height == 2 and rejects.is_empty(), repr(end)


def _raw(tmp_path, name: str, text: str):
    p = tmp_path / name
    p.write_bytes(text.encode("utf-8"))
    return p


def test_a_quoted_record_the_file_ends_in_is_one_truncated_record(tmp_path):
    """QA ops F1: a record whose quoted field holds a line break, ending the file without a line
    break, is not read. QA F5 (low): it was two rejects, the first blaming an unbalanced quote (its
    quote is not closed on its first line) and the last line a truncated delivery. It is one
    quarantined record at its first line, named as a truncated delivery, whether the file ends
    after its closing quote without a line break, or inside the quoted field (with or without a
    line break there); in one block or several, one chunk or several. Every record is a row or a
    reject: rows + rejects = records."""
    q = chr(34)
    lines = [HEADER] + [line(N_DEMANDE=f"D{i}") for i in range(1, 40)]
    text = "\n".join(lines + [line(N_DEMANDE="R", LIBELLE_ANALYSE=q + "Gly" + chr(10) + "cé" + chr(10) + "mie" + q)])
    record = "the record of lines 41-43 (a quoted field holding line breaks)"
    cases = {
        "unended.csv": (text, f"truncated delivery: the file ends in {record}, without a line break: its last field "
                              "may have been cut (during transfer?), the record is not read"),
        "cut_field.csv": (text[: text.rindex(";")], f"truncated delivery: the file ends in {record}, without a line "
                                                     "break (16 fields, expected 17)"),
        "in_quotes.csv": (text[: text.rindex("mie") + 1], "truncated delivery: the file ends inside the double quotes "
                                                           f"of field LIBELLE_ANALYSE of {record}: the record is not read"),
        "in_quotes_ended.csv": (text[: text.rindex("mie")], "truncated delivery: the file ends inside the double quotes "
                                                            "of field LIBELLE_ANALYSE of the record of lines 41-42 (a "
                                                            "quoted field holding line breaks): the record is not read"),
    }
    for name, (data, detail) in cases.items():
        for kw in ({}, {"chunk_rows": 7}, {"block_bytes": 1000}, {"block_bytes": 1000, "chunk_rows": 1}):
            rows, rejects, _ = parse_all(_raw(tmp_path, name, data), **kw)
            assert rows["request_id"].to_list() == [f"D{i}" for i in range(1, 40)], (name, kw)
            assert rejects.select("line_no", "reason_code", "detail").rows() == [(41, "MALFORMED_LINE", detail)], (
                name, kw)
            assert rows.height + rejects.height == 40
    rows, rejects, _ = parse_all(_raw(tmp_path, "rec.csv", text + "\n"))
    assert rows.height == 40 and rejects.is_empty()


def test_a_cut_record_and_a_nul_tail_are_accounted_for_by_the_pipeline(tmp_path):
    """Every line ends in the warehouse or in quarantine (QA F4, F5 low): a file ending in a cut
    quoted record, and a small one followed by NUL padding, load their good lines; the file log's
    rows in are the rows kept plus the rows quarantined, and the quarantine names each file's line
    and why."""
    from flows import process, steps
    from flows.settings import Settings
    from warehouse import catalog as cat

    home = tmp_path / "home"
    lab = home / "landing" / "labo"
    lab.mkdir(parents=True)
    q = chr(34)
    cut = "\n".join([HEADER, line(), line(N_DEMANDE="D2"),
                     line(N_DEMANDE="R", LIBELLE_ANALYSE=q + "Gly" + chr(10) + "cémie" + q)])[:-3]
    (lab / "cut.csv").write_bytes(cut.encode())
    (lab / "tail.csv").write_bytes(("\n".join([HEADER, line(N_DEMANDE="T1")]) + "\n").encode() + b"\x00" * 20)
    ctx = steps.Context.create(Settings(home=home), "t")
    steps.load_ref(ctx)
    loinc, mappings, _ = steps.load_terminology(ctx, None)
    work = process.Work(steps.read_ref(ctx, "postal_codes"), loinc, mappings)
    got = {t.path: process.process_file(ctx, t, work) for t in steps.discover(ctx)}
    counts = {p.split("/")[-1]: (r["status"], r["rows_in"], r["rows_valid"], r["rows_quarantined"]) for p, r in got.items()}
    assert counts == {"cut.csv": ("loaded", 3, 2, 1), "tail.csv": ("loaded", 2, 1, 1)}
    quarantine = ctx.wh.read(cat.QUARANTINE).sort("line_no")
    lines = {(r["path"].split("/")[-1], r["line_no"], r["detail"].split(":")[0])
             for r in quarantine.iter_rows(named=True)}
    assert lines == {("cut.csv", 4, "truncated delivery"), ("tail.csv", 3, "NUL byte (0x00) in field FINESS")}


def test_a_stray_quote_before_the_files_end_is_no_cut_record(tmp_path):
    """A quote opened and never closed on a line of its own (a typing error) stays that line's
    reject; the lines after it are not taken for the rest of a cut record: a full line after it is
    read, or quarantined as the file's unended last line, on its own."""
    stray = line(N_DEMANDE="D6", RESULTAT='"jamais fermé')
    for end, expected in (("\n", ["D1", "D7"]), ("", ["D1"])):
        rows, rejects, _ = parse_all(_raw(tmp_path, "s.csv", f"{HEADER}\n{line()}\n{stray}\n{line(N_DEMANDE='D7')}{end}"))
        assert rows["request_id"].to_list() == expected
        details = rejects["detail"].to_list()
        assert details[0] == "unbalanced or misplaced double quote (field RESULTAT)"
        assert len(details) == 3 - len(expected)
    # alone on the file's last line, ended by its line break: nothing says the file was cut
    rows, rejects, _ = parse_all(_raw(tmp_path, "s.csv", f"{HEADER}\n{line()}\n{stray}\n"))
    assert rejects["detail"].to_list() == ["unbalanced or misplaced double quote (field RESULTAT)"]


@pytest.mark.parametrize("where", ["early", "late"])
def test_a_control_byte_rejects_its_line_only(tmp_path, where):
    """QA ops F4: a stray NUL in the first 64 KiB refused the whole file as binary; further down its
    line loaded as valid with the NUL inside the family name (another linkage key). Wherever it is,
    the line holding a NUL (or another control byte) is rejected naming the byte and its field,
    never the value; the rest of the file loads."""
    from transforms.parsers.detect import detect_format

    n = 30 if where == "early" else 700  # 700 lines of ~200 bytes: past the 64 KiB detection reads
    lines = [HEADER] + [line(N_DEMANDE=f"D{i}") for i in range(1, n + 1)]
    lines[n - 3] = lines[n - 3].replace("Dupont", "Du\x00pont")
    lines[n - 1] = lines[n - 1].replace("Marie", "Ma\x1bria")
    p = _raw(tmp_path, f"{where}.csv", "\n".join(lines) + "\n")
    assert detect_format(p) == "csv"
    rows, rejects, seen = parse_all(p)
    assert (seen, rows.height) == (n, n - 2)
    assert not rows["family_name"].str.contains("\x00").any()
    assert rejects.select("line_no", "reason_code", "detail").rows() == [
        (n - 2, "MALFORMED_LINE", "NUL byte (0x00) in field NOM: the line is not read (a stray byte, or a damaged file?)"),
        (n, "MALFORMED_LINE", "ESC byte (0x1b) in field PRENOM: the line is not read (a stray byte, or a damaged file?)"),
    ]


def test_rejects_a_lab_can_be_told_about(tmp_path):
    """QA (ledger F6): a DUPLICATE_ROW said "an earlier line", not which; two exports joined into one
    file gave the repeated header 7 reasons (dates, NIR, sex, status) and its next copy a
    DUPLICATE_ROW; a spreadsheet's empty row ``;;;;`` was quarantined for 5 missing values (the next
    one a duplicate) while a blank line was skipped. Now: the line copied is named, a repeated header
    is one reject saying so, and separator-only rows are skipped like blank lines; every line counted
    is a row or a reject."""
    lines = [HEADER, line(), line(N_DEMANDE="D2"), ";" * 16, line(), "", " ;;\t; ", ";" * 16,
             HEADER, line(N_DEMANDE="D3"), "\ufeff" + HEADER, line(N_DEMANDE="D2")]
    for kw in ({}, {"chunk_rows": 2}, {"chunk_rows": 3, "block_bytes": 400}):
        rows, rejects, seen = parse_all(write(tmp_path, lines), **kw)
        assert rows["line_no"].to_list() == [2, 3, 10]
        assert rejects.select("line_no", "reason_code", "detail").rows() == [
            (5, "DUPLICATE_ROW", "identical to line 2"),
            (9, "MALFORMED_LINE", "repeated header line (the column names of line 1 again: files joined into one?)"),
            (11, "MALFORMED_LINE", "repeated header line (the column names of line 1 again: files joined into one?)"),
            (12, "DUPLICATE_ROW", "identical to line 3"),
        ]
        assert seen == rows.height + rejects.height == 7
    # a header ending with ';' (every line does): its copy is recognised as well
    lines = [HEADER + ";", line() + ";", ";" * 17, HEADER + ";", line(N_DEMANDE="D2") + ";"]
    rows, rejects, seen = parse_all(write(tmp_path, lines))
    assert rows.height == 2 and rejects.select("line_no", "reason_code").rows() == [(4, "MALFORMED_LINE")]
    assert seen == 3


def test_crlf_and_bom(tmp_path):
    p = tmp_path / "crlf.csv"
    p.write_bytes(("\ufeff" + HEADER + "\r\n" + line() + "\r\n").encode("utf-8"))
    rows, rejects, _ = parse_all(p)
    assert rows.height == 1 and rejects.is_empty() and rows["result_status"][0] == "F"


def test_a_separator_ending_every_line_is_no_column(tmp_path):
    """QA: exports that end the header and every line with ';' were refused ("1 value(s) that are
    not column names"). A line with a value after its last ';' has a field too many: rejected."""
    lines = [HEADER + ";", line() + ";", line(N_DEMANDE="D2", STATUT="") + ";", line(N_DEMANDE="D3") + ";extra"]
    rows, rejects, seen = parse_all(write(tmp_path, lines))
    assert seen == 3 and rows["request_id"].to_list() == ["D1", "D2"]
    assert rows["result_status"].to_list() == ["F", "F"]  # the empty last field stays empty (F by default)
    assert rejects["line_no"].to_list() == [4]


def test_header_errors_name_the_file(tmp_path):
    p = write(tmp_path, ["A;B;C", "1;2;3"], name="weird.csv")
    with pytest.raises(FileFormatError, match=r"weird.csv: line 1: header lacks") as e:
        parse_all(p)
    assert e.value.reason_code == "HEADER_INVALID"


def test_a_repeated_header_column_is_refused_with_its_name(tmp_path):
    header = "FINESS;N_DEMANDE;N_DEMANDE;DATE_PRELEVEMENT;CODE_ANALYSE;RESULTAT"
    p = write(tmp_path, [header, "1;2;3;01/01/2026;X;1"], name="twice.csv")
    with pytest.raises(FileFormatError, match=r"twice.csv: line 1: repeated columns N_DEMANDE") as e:
        parse_all(p)
    assert e.value.reason_code == "HEADER_INVALID"


@pytest.mark.parametrize(("written", "column"), [
    ("N° DEMANDE", "N_DEMANDE"), ("Nº demande", "N_DEMANDE"), ("N°DEMANDE", "N_DEMANDE"),
    ("NO_DEMANDE", "N_DEMANDE"),
    ("Num demande", "N_DEMANDE"), ("Numéro de demande", "N_DEMANDE"), ("n-demande", "N_DEMANDE"),
    ("Code analyse", "CODE_ANALYSE"), ("code.analyse", "CODE_ANALYSE"), ("Date de prélèvement", "DATE_PRELEVEMENT"),
    ("DATE PRÉLÈVEMENT", "DATE_PRELEVEMENT"), ("Libellé de l'analyse", "LIBELLE_ANALYSE"), ("Prénoms", "PRENOM"),
    ("Valeur de référence", "VALEURS_REFERENCE"), ("Résultat", "RESULTAT"), ("Unité", "UNITE"), ('"NIR"', "NIR"),
    ("  sexe ", "SEXE"), ("Finess", "FINESS"), ("Code-Postal", "CODE_POSTAL"), ("Date_de_naissance", "DATE_NAISSANCE"),
])
def test_header_names_are_read_in_the_spellings_of_the_labs_systems(tmp_path, written, column):
    """QA: a header with 'N° DEMANDE' and 'Code analyse' was refused (and with a misleading hint).
    Case, accents, spaces/underscores/hyphens/dots, N°/No/Num/Numéro, de/l', plurals and quotes
    do not matter: the file reads as with the documented names."""
    names = HEADER.split(";")
    header = ";".join(written if h == column else h for h in names)
    rows, rejects, _ = parse_all(write(tmp_path, [header, line()]))
    expected, _, _ = parse_all(write(tmp_path, [HEADER, line()], name="plain.csv"))
    assert rejects.is_empty() and rows.equals(expected)


def test_the_qa_header_reads(tmp_path):
    header = HEADER.replace("N_DEMANDE", "N° DEMANDE").replace("CODE_ANALYSE", "Code analyse")
    rows, _, _ = parse_all(write(tmp_path, [header.lower(), line()], encoding="latin-1"))
    assert rows["request_id"].to_list() == ["D1"] and rows["local_code"].to_list() == ["GLY"]


def test_two_spellings_of_one_column_are_refused_naming_both(tmp_path):
    header = "FINESS;N° DEMANDE;N_DEMANDE;DATE_PRELEVEMENT;CODE_ANALYSE;RESULTAT;Code analyse"
    p = write(tmp_path, [header, "1;2;3;01/01/2026;X;1;Y"], name="two.csv")
    with pytest.raises(FileFormatError) as e:
        parse_all(p)
    assert e.value.reason_code == "HEADER_INVALID"
    assert str(e.value) == ("two.csv: line 1: repeated columns N_DEMANDE (as 'N° DEMANDE' and 'N_DEMANDE'), "
                            "CODE_ANALYSE (as 'CODE_ANALYSE' and 'Code analyse')")


def test_a_header_lacking_columns_names_what_it_holds_instead(tmp_path):
    """A line that is clearly a header (two or more known names) shows its other names, with the
    known name each is closest to, so that the operator sees what the lab calls the columns."""
    header = "FINESS;NUMERO DOSSIER;NIR;Acte;Date prelev;RESULTAT;Sexe patient"
    p = write(tmp_path, [header, "1;2;3;GLY;01/01/2026;1;F"], name="lab.csv")
    with pytest.raises(FileFormatError) as e:
        parse_all(p)
    text = str(e.value)
    assert text.startswith("lab.csv: line 1: header lacks N_DEMANDE, DATE_PRELEVEMENT, CODE_ANALYSE; "
                           "unknown columns 'NUMERO DOSSIER', 'Acte', 'Date prelev' (closest known name: "
                           "DATE_PRELEVEMENT), 'Sexe patient' (closest known name: SEXE)"), text
    assert "docs/formats.md" in text
    # fewer than two known names: maybe a result line, nothing of it is shown
    p = write(tmp_path, ["FINESS;DUPONT;Marie;Acte;01/01/1985", "1;2;3;4;5"], name="data.csv")
    with pytest.raises(FileFormatError) as e:
        parse_all(p)
    text = str(e.value)
    assert "DUPONT" not in text and "Marie" not in text and "Acte" not in text
    assert "1 value(s) that are not column names are not shown" in text


def test_every_column_name_has_its_own_key():
    from transforms.parsers.csv_extract import HEADER_TO_CANONICAL, KNOWN_KEYS, column_key

    assert len(KNOWN_KEYS) == len(HEADER_TO_CANONICAL)
    assert all(KNOWN_KEYS[column_key(h)] == h for h in HEADER_TO_CANONICAL)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.csv"
    p.write_bytes(b"")
    with pytest.raises(FileFormatError) as e:
        parse_all(p)
    assert e.value.reason_code == "EMPTY_FILE"


def test_cr_only_line_ends_are_read_as_lines(tmp_path):
    """Some SGL exports end lines with a lone CR (old Mac style): QA found such a file refused whole
    as HEADER_INVALID. Its lines are read, numbered as in the file, at any block size."""
    p = tmp_path / "cr.csv"
    lines = [HEADER, line(N_DEMANDE="R1"), line(N_DEMANDE="R2"), "", line(N_DEMANDE="R3")]
    p.write_bytes("\r".join(lines).encode("utf-8") + b"\r")
    for block in (64, 1000, 1 << 20):
        rows, rejects, _ = parse_all(p, block_bytes=block)
        assert rows["request_id"].to_list() == ["R1", "R2", "R3"] and rejects.is_empty(), block
        assert rows["line_no"].to_list() == [2, 3, 5], block
    crlf = tmp_path / "crlf.csv"  # a CRLF cut by a block boundary stays one line end
    crlf.write_bytes(("\r\n".join(lines) + "\r\n").encode("utf-8"))  # ended (see the test of cut last lines)
    for block in (len(HEADER.encode()) + 1, 64, 1 << 20):
        rows, _, _ = parse_all(crlf, block_bytes=block)
        assert rows["line_no"].to_list() == [2, 3, 5], block


def test_a_header_error_never_shows_the_values_of_a_data_line(tmp_path):
    """A file without a header line: its first line is a result, whose NIR, name and birth date must
    not reach the error (kept in the file log, the audit, the logs and the analysts' database)."""
    data = "690001235;R1;185057800608436;DUPONT;Marie;01/02/1985;F;75001;01/03/2026 10:00;GLY;5,2;F"
    p = write(tmp_path, [data, data], name="noheader.csv")
    with pytest.raises(FileFormatError) as e:
        parse_all(p)
    text = str(e.value)
    assert e.value.reason_code == "HEADER_INVALID" and "noheader.csv: line 1" in text
    for value in ("185057800608436", "DUPONT", "Marie", "01/02/1985", "75001"):
        assert value.upper() not in text.upper(), text
    assert "not shown" in text
    p = write(tmp_path, [HEADER + ";COMMENTAIRE;185057800608436 DUPONT", line()], name="extra.csv")
    with pytest.raises(FileFormatError, match=r"unknown columns 'COMMENTAIRE' and 1 value\(s\)") as e:
        parse_all(p)
    assert "185057800608436" not in str(e.value)


def test_a_latin1_line_in_a_utf8_file_spoils_no_other_line(tmp_path):
    """QA: one line written in Latin-1 in a UTF-8 file made the whole file read as Latin-1, so every
    other line's é became Ã© and µmol/L became Âµmol/L (unit unknown), with no flag. Each line is
    now read in its own encoding; a file wholly in Latin-1 still is read as such."""
    p = tmp_path / "mixed.csv"
    utf8 = [line(N_DEMANDE=f"U{i}", LIBELLE_ANALYSE="Polynucléaires neutrophiles", UNITE="µmol/L") for i in range(3)]
    latin = line(N_DEMANDE="L1", LIBELLE_ANALYSE="Polynucléaires éosinophiles", NOM="Lefèvre")
    p.write_bytes(b"\n".join([HEADER.encode(), utf8[0].encode(), latin.encode("cp1252"),
                              *(u.encode() for u in utf8[1:])]) + b"\n")
    for block in (100, 1 << 20):
        rows, rejects, _ = parse_all(p, block_bytes=block)
        assert rejects.is_empty()
        got = dict(zip(rows["request_id"], rows["local_label"]))
        assert got == {"U0": "Polynucléaires neutrophiles", "L1": "Polynucléaires éosinophiles",
                       "U1": "Polynucléaires neutrophiles", "U2": "Polynucléaires neutrophiles"}, block
        assert set(rows.filter(pl.col("request_id") != "L1")["unit_raw"]) == {"µmol/L"}
        assert rows.filter(pl.col("request_id") == "L1")["family_name"][0] == "Lefèvre"


def test_a_quoted_field_with_a_line_break_is_one_row(tmp_path):
    """RFC 4180: a quoted field may hold line breaks. QA: such a row became two MALFORMED_LINE rejects.
    Its lines are now one row, numbered by its first line. Stray quotes (5" for inches) on two lines
    do not join them, an unclosed quote does not swallow the lines after it, and a record spans at
    most a few lines."""
    multi = line(N_DEMANDE="D2", RESULTAT='"Présence de cristaux\nvoir commentaire"', UNITE="")
    stray = [line(N_DEMANDE="D3", LIBELLE_ANALYSE='Taille 5"'), line(N_DEMANDE="D4", LIBELLE_ANALYSE='Taille 6"')]
    unclosed = line(N_DEMANDE="D6", RESULTAT='"jamais fermé')
    lines = [HEADER, line(N_DEMANDE="D1"), multi, *stray, line(N_DEMANDE="D5"), unclosed,
             *[line(N_DEMANDE=f"E{i}") for i in range(6)]]
    rows, rejects, seen = parse_all(write(tmp_path, lines))
    assert rows["request_id"].to_list() == ["D1", "D2", "D3", "D4", "D5", *[f"E{i}" for i in range(6)]]
    assert rows["line_no"].to_list() == [2, 3, 5, 6, 7, *range(9, 15)]
    assert rows.filter(pl.col("request_id") == "D2")["value_raw"][0] == "Présence de cristaux\nvoir commentaire"
    assert rows.filter(pl.col("request_id") == "D3")["local_label"][0] == 'Taille 5"'
    assert rejects.select("line_no", "reason_code").rows() == [(8, "MALFORMED_LINE")]
    assert seen == 13


def test_a_quoted_field_of_many_lines_is_one_record_and_a_too_long_one_one_reject(tmp_path):
    """QA regr2 F6: a quoted field of 6 lines (the bound was 5) became 6 rejects: 'unbalanced
    quote' although the quotes balance, continuation lines 'identical to line 3' of another record,
    field counts of its pieces; rows_in counted lines. A record now spans up to MAX_RECORD_LINES
    lines; beyond, it is one reject naming the cause, and rows + rejects count records."""
    from transforms.parsers.csv_extract import MAX_RECORD_LINES

    def field(n):
        return '"Positif\n' + "\n".join(f"l{i}" for i in range(2, n + 1)) + '"'

    too_many = MAX_RECORD_LINES + 20
    lines = [HEADER,
             line(N_DEMANDE="M5", RESULTAT=field(5), UNITE=""),  # lines 2-6
             line(N_DEMANDE="M6", RESULTAT=field(6), UNITE=""),  # lines 7-12: its l2..l5 repeat M5's
             line(N_DEMANDE="M40", RESULTAT=field(40), UNITE=""),  # lines 13-52
             line(N_DEMANDE="N1"),  # line 53
             line(N_DEMANDE="LONG", RESULTAT=field(too_many), UNITE=""),  # lines 54-173
             line(N_DEMANDE="N2"),  # line 174
             line(N_DEMANDE="M6", RESULTAT=field(6), UNITE=""),  # lines 175-180: record 7-12 again
             ]
    rows, rejects, _ = parse_all(write(tmp_path, lines))
    assert rows.select("line_no", "request_id").rows() == [(2, "M5"), (7, "M6"), (13, "M40"), (53, "N1"),
                                                           (174, "N2")]
    assert rows.filter(pl.col("request_id") == "M40")["value_raw"][0] == field(40)[1:-1]
    assert rejects.select("line_no", "reason_code").rows() == [(54, "MALFORMED_LINE"), (175, "DUPLICATE_ROW")]
    long_detail, dup_detail = rejects["detail"].to_list()
    assert long_detail.startswith(f"quoted field spans {too_many} lines (lines 54-{53 + too_many}), more than the "
                                  f"{MAX_RECORD_LINES} lines")
    assert dup_detail == "identical to line 7"
    assert rows.height + rejects.height == 7  # rows_in: one per record
    # the same across chunks: a record is compared whole with the earlier chunks' records
    rows2, rejects2, _ = parse_all(write(tmp_path, lines, name="y.csv"), chunk_rows=60)
    assert rows2.select("line_no").to_series().to_list() == [2, 7, 13, 53, 174]
    assert rejects2.select("line_no", "reason_code").rows() == [(54, "MALFORMED_LINE"), (175, "DUPLICATE_ROW")]


def test_a_header_spelt_differently_and_a_row_of_quoted_empty_fields_qa_regr2_f8(tmp_path):
    """QA regr2 F8: the header repeated in another spelling (lower case, 'n° demande' for N_DEMANDE,
    quoted names) got 7 quarantine reasons, and a row of quoted empty fields ``"";"";...`` 5
    MISSING_VALUE reasons. They now get what the exact copy and ``;;;;`` get: one 'repeated
    header line' reject, and skipped."""
    variant = HEADER.lower().replace("n_demande", "n° demande").replace("date_naissance", "Date de naissance")
    quoted = ";".join(f'"{h}"' for h in HEADER.split(";"))
    lines = [HEADER, line(), variant, line(N_DEMANDE="D2"), ";".join(['""'] * 17), '" ";"";;""',
             line(N_DEMANDE="D3"), quoted, line(N_DEMANDE="D4")]
    rows, rejects, seen = parse_all(write(tmp_path, lines))
    assert rows["line_no"].to_list() == [2, 4, 7, 9]
    header_reject = "repeated header line (the column names of line 1 again: files joined into one?)"
    assert rejects.select("line_no", "reason_code", "detail").rows() == [
        (3, "MALFORMED_LINE", header_reject), (8, "MALFORMED_LINE", header_reject)]
    assert seen == rows.height + rejects.height == 6
    # a result line is never read as a header, even without a date
    no_date = line(N_DEMANDE="D5", DATE_PRELEVEMENT="", DATE_RECEPTION="", DATE_VALIDATION="",
                   DATE_NAISSANCE="", NIR="", CODE_POSTAL="", FINESS="")
    rows, rejects, _ = parse_all(write(tmp_path, [HEADER, no_date], name="y.csv"))
    assert rows["line_no"].to_list() == [2] and rejects.is_empty()


@pytest.mark.parametrize("whole_file", [True, False], ids=["cp1252-file", "cp1252-line-in-utf8"])
def test_a_byte_windows_1252_leaves_undefined_refuses_its_line_as_in_hl7(tmp_path, whole_file):
    """A byte Windows-1252 leaves undefined (0x81, 0x8D, 0x8F, 0x90, 0x9D) in 8-bit text was read as
    the replacement character and stored in the name and its pseudonym, where HL7 and HPRIM refuse
    the unit holding it: the CSV refuses the line, naming the field, and reads the others."""
    good = line(N_DEMANDE="D1", NOM="CŒUR", LIBELLE_ANALYSE="Hématies")
    bad = line(N_DEMANDE="D2", NOM="CŒUR", LIBELLE_ANALYSE="Hématies").encode("cp1252").replace(b"C\x8cUR", b"C\x81UR")
    other = (lambda text: text.encode("cp1252")) if whole_file else (lambda text: text.encode("utf-8"))
    p = tmp_path / "x.csv"
    p.write_bytes(b"\n".join([other(HEADER), other(good), bad, other(line(N_DEMANDE="D3"))]) + b"\n")
    rows, rejects, seen = parse_all(p)
    assert seen == 3 and rows["request_id"].to_list() == ["D1", "D3"]
    assert rows["family_name"][0] == "CŒUR"
    assert rejects.select("line_no", "reason_code").rows() == [(3, "MALFORMED_LINE")]
    assert rejects["detail"][0].startswith("control character U+0081 in field NOM: the line is not read")


def test_c1_code_points_of_a_latin1_conversion_are_read_as_their_windows_1252_signs(tmp_path):
    """QA regr F3: ’ written U+0092 (Windows-1252 converted to UTF-8 as if it were Latin-1) refused
    its line as a control character, and the positive was lost. It is read as ’, Œ (U+008C) as Œ;
    U+0081, which no Windows-1252 sign stands for, still refuses its line."""
    lines = [HEADER, line(N_DEMANDE="D1", NOM="C\u008cUR", LIBELLE_ANALYSE="Recherche d\u0092ARN SARS-CoV-2"),
             line(N_DEMANDE="D2", NOM="C\u0081UR"), line(N_DEMANDE="D3")]
    rows, rejects, seen = parse_all(write(tmp_path, lines))
    assert seen == 3 and rows["request_id"].to_list() == ["D1", "D3"]
    assert rows.select("family_name", "local_label").row(0) == ("CŒUR", "Recherche d’ARN SARS-CoV-2")
    assert rejects["detail"].to_list()[0].startswith("control character U+0081 in field NOM")
