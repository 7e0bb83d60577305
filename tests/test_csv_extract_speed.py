"""The fused (fast) CSV extract parser against a plain, line-by-line Python reading of the format.

The parser splits, classifies and types every line of a chunk in a few polars queries; this reads
the same files one line at a time with the ``csv`` module and ``datetime.strptime`` (docs/formats.md)
and both must agree on every row, every reject and every line count, whatever the chunking.
"""

from __future__ import annotations

import re
from datetime import date, datetime

import polars as pl
import pytest

from transforms.canonical import CANONICAL_SCHEMA
from transforms.identity import NIR_PATTERN
from transforms.parsers.base import REJECT_SCHEMA
from transforms.parsers.csv_extract import (DATE_FORMATS, DATETIME_FORMATS, HEADER_TO_CANONICAL, MAX_LINE_BYTES,
                                            parse, quote_problem)
from transforms.parsers.sex import SEX_ISSUE, UNREADABLE, read_sex
from tests.helpers import HEADER, line

NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
# after spaces are removed: a sign (then 'à' or not), or inf/sup in French words ending in 'à'
COMPARATOR = re.compile(r"(<=|>=|<|>|≤|≥)(?:[àa])?\^?(.*)|((?:inf|sup)(?:\.|[ée]rieure?)?(?:ou[ée]gale?)?[àa])\^?(.*)",
                        re.IGNORECASE)


def _comparator(bound: re.Match) -> tuple[str, str]:
    """(comparator, number text) of a COMPARATOR match."""
    if bound.group(1) is not None:
        return {"≤": "<=", "≥": ">="}.get(bound.group(1), bound.group(1)), bound.group(2)
    words = bound.group(3).lower()
    sign = "<" if words.startswith("inf") else ">"
    return (sign + "=" if "gal" in words else sign), bound.group(4)


def _date(text: str | None, dated: bool):
    """The first format that reads ``text`` wins (dates only for a birth date); every field has its
    full width (strptime alone would read 20261102 as 2026-1-1 0:2 with %Y%m%d%H%M)."""
    if text is None:
        return None
    formats = DATE_FORMATS if dated else DATETIME_FORMATS + DATE_FORMATS
    for f in formats:
        if len(text) != len(datetime(2000, 1, 1).strftime(f)):
            continue
        try:
            value = datetime.strptime(text, f)
        except ValueError:
            continue
        return value.date() if dated else value
    return None


def _ins(text: str | None) -> str | None:
    """A NIR written with separators (blanks, dots, dashes) without them and in upper case; anything
    that is still no NIR then, as sent."""
    if text is None:
        return None
    bare = re.sub("[\\s.\\-\u2010-\u2015]", "", text).upper()
    return bare if re.fullmatch(NIR_PATTERN, bare) else text


def reference(data: bytes) -> tuple[list[dict], list[tuple], int]:
    """Rows (the columns the parser computes), rejects (line_no, reason, detail, raw_text), lines seen."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    lines = [x.removesuffix("\r") for x in lines]
    header = lines[0].lstrip("\ufeff")
    columns = [HEADER_TO_CANONICAL[h.strip().upper()] for h in header.split(";")]
    rows, rejects, seen, units = [], [], {}, 0
    for line_no, raw in enumerate(lines[1:], start=2):
        if not raw.replace(";", "").strip():  # blank, or separators alone
            continue
        units += 1
        first = seen.setdefault(raw, line_no)
        if len(raw.encode("utf-8")) > MAX_LINE_BYTES:
            rejects.append((line_no, "MALFORMED_LINE", f"line longer than {MAX_LINE_BYTES} bytes", raw[:MAX_LINE_BYTES]))
            continue
        if raw.lstrip("\ufeff").strip() == header.strip():
            rejects.append((line_no, "MALFORMED_LINE", "repeated header line (the column names of line 1 again: "
                                                       "files joined into one?)", raw))
            continue
        if first != line_no:
            rejects.append((line_no, "DUPLICATE_ROW", f"identical to line {first}", raw))
            continue
        fields = raw.split(";")
        if '"' in raw:  # the detail of a line with quotes: quote_problem (tested in test_csv_extract.py)
            problem, fields = quote_problem(raw, columns)
            if problem is not None:
                rejects.append((line_no, "MALFORMED_LINE", problem, raw))
                continue
        if len(fields) != len(columns):
            rejects.append((line_no, "MALFORMED_LINE", f"{raw.count(';') + 1} fields, expected {len(columns)}", raw))
            continue
        f = {c: (v.strip() or None) for c, v in zip(columns, fields)}
        issues = []
        for name in ("birth_date", "collected_at", "received_at", "validated_at"):
            if name in f:
                value = _date(f[name], name == "birth_date")
                if f[name] is not None and value is None:
                    issues.append(f"DATE_INVALID:{name}")
                f[name] = value
        sex = read_sex(f.get("sex"))
        if sex == UNREADABLE:
            issues.append(SEX_ISSUE)
            sex = None
        value = f.get("value_raw") and re.sub(r"\s", "", f["value_raw"]).replace(",", ".", 1)
        number = float(value) if value is not None and NUMBER.fullmatch(value) else None
        comparator = None
        bound = value is not None and number is None and COMPARATOR.fullmatch(value)
        if bound and NUMBER.fullmatch(_comparator(bound)[1]):
            comparator, number = _comparator(bound)
            number = float(number)
        rows.append({
            **f, "line_no": line_no, "sex": sex,
            "patient_nir": _ins(f.get("patient_nir")),
            "value_num": number, "value_comparator": comparator,
            "value_type": "ST" if number is None else ("SN" if comparator else "NM"),
            "result_status": (f.get("result_status") or "f").upper(), "parse_issues": ";".join(issues) or None,
        })
    return rows, sorted(rejects), units


def parsed(path, **kw) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    chunks = list(parse(path, file_id="f1", source="lab", **kw))
    for c in chunks:
        assert c.rows.schema == CANONICAL_SCHEMA and c.rejects.schema == REJECT_SCHEMA
        assert c.rejects["line_no"].is_sorted() and c.rows["line_no"].is_sorted()
    return (pl.concat([c.rows for c in chunks]), pl.concat([c.rejects for c in chunks]),
            sum(c.units_seen for c in chunks))


TRICKY = [
    line(),
    line(N_DEMANDE="D2", DATE_NAISSANCE="19550912", DATE_PRELEVEMENT="202611020830", DATE_RECEPTION="20261102100015"),
    line(N_DEMANDE="D3", DATE_PRELEVEMENT="2026-11-02T08:30:00", DATE_RECEPTION="2026-11-02 10:00",
         DATE_VALIDATION="02/11/2026", DATE_NAISSANCE="1955-09-12"),
    line(N_DEMANDE="D4", DATE_NAISSANCE="31/02/1955", SEXE="X", DATE_PRELEVEMENT="30/13/2026 08:00"),
    line(N_DEMANDE="D5", DATE_NAISSANCE="", SEXE=" ", DATE_RECEPTION="  ", RESULTAT=" ", STATUT=" c "),
    line(N_DEMANDE="D6", RESULTAT=" 1 234,5 ", UNITE="\u00a0g/L\t", NOM=" Zoé\u00a0"),
    line(N_DEMANDE="D7", RESULTAT="1e3", SEXE="h", NIR="2 55 09 99 000 116 ab"),
    line(N_DEMANDE="D7b", NIR="2.55.09.99.000.116-89"), line(N_DEMANDE="D7c", NIR="2 55 09 2a 000 116 18"),
    line(N_DEMANDE="D8", RESULTAT=",5", SEXE="2"), line(N_DEMANDE="D9", RESULTAT="<5", SEXE="1"),
    line(N_DEMANDE="D8b", SEXE="Féminin"), line(N_DEMANDE="D8c", SEXE="masculin"), line(N_DEMANDE="D8d", SEXE="I"),
    line(N_DEMANDE="D9b", RESULTAT=" > 1 000,5 "), line(N_DEMANDE="D9c", RESULTAT="≥^10"),
    line(N_DEMANDE="D9d", RESULTAT="<>5"), line(N_DEMANDE="D9e", RESULTAT="<="),
    line(N_DEMANDE="D9f", RESULTAT="inf. à 0,5"), line(N_DEMANDE="D9g", RESULTAT="Supérieur ou égal à 1 000"),
    line(N_DEMANDE="D9h", RESULTAT="< à 5"), line(N_DEMANDE="D9i", RESULTAT="moins de 5"),
    line(N_DEMANDE="D9j", RESULTAT="inf. à"),
    line(N_DEMANDE="D10", RESULTAT="1,2,3"), line(N_DEMANDE="D11", RESULTAT="Non détecté"),
    line(N_DEMANDE="D12", LIBELLE_ANALYSE='"Glycémie; à jeun"'),
    line(N_DEMANDE="D13", LIBELLE_ANALYSE='"mal"fermé"'),
    line(N_DEMANDE="D14", LIBELLE_ANALYSE='"un;deux";"trois"'),
    "750000001;D15;truncated", line(N_DEMANDE="D16") + ";extra", ";;;;", " ; ;\t;",
    HEADER, line(N_DEMANDE="D16b"), "\ufeff" + HEADER,  # two exports joined: the header again
    "", "   ", "\t",
    line(),  # a duplicate of the first line
    line(N_DEMANDE="D17", DATE_PRELEVEMENT="2026-13-45", DATE_VALIDATION="2026-11-02 08:30:00"),
    line(N_DEMANDE="D12", LIBELLE_ANALYSE='"Glycémie; à jeun"'),  # a duplicate quoted line
    "x" * (MAX_LINE_BYTES + 10),
    line(N_DEMANDE="D18", NOM="Ærøskøbing"),
]


def write(tmp_path, lines, *, newline="\n", encoding="utf-8", bom=""):
    p = tmp_path / "tricky.csv"
    p.write_bytes((bom + newline.join(lines) + newline).encode(encoding))
    return p


def assert_matches_reference(path, **kw):
    rows, rejects, units = parsed(path, **kw)
    want_rows, want_rejects, want_units = reference(path.read_bytes())
    assert units == want_units
    assert rejects.select("line_no", "reason_code", "detail", "raw_text").rows() == want_rejects
    assert rejects["file_id"].to_list() == ["f1"] * len(want_rejects) and rejects["column"].null_count() == len(want_rejects)
    assert rows.height == len(want_rows)
    for got, want in zip(rows.iter_rows(named=True), want_rows):
        assert {k: got[k] for k in want} == want, f"line {want['line_no']}"
        assert got["file_id"] == "f1" and got["source"] == "lab"
    return rows, rejects


@pytest.mark.parametrize("kw", [{}, {"chunk_rows": 1}, {"chunk_rows": 4}, {"chunk_rows": 7, "block_bytes": 1000}])
def test_tricky_lines_match_a_line_by_line_reading(tmp_path, kw):
    rows, rejects = assert_matches_reference(write(tmp_path, [HEADER, *TRICKY]), **kw)
    # the inputs do exercise every path
    assert set(rejects["reason_code"]) == {"MALFORMED_LINE", "DUPLICATE_ROW"}
    assert rows.filter(pl.col("local_label") == "Glycémie; à jeun").height == 1
    assert rows["parse_issues"].null_count() < rows.height and rows["value_num"].null_count() < rows.height


@pytest.mark.parametrize("newline,encoding,bom", [("\r\n", "utf-8", "\ufeff"), ("\n", "cp1252", ""), ("\r\n", "cp1252", "")])
def test_crlf_bom_and_latin1_match_the_reference(tmp_path, newline, encoding, bom):
    lines = [HEADER, *(x for x in TRICKY if len(x) < 1000 and "Æ" not in x and "≥" not in x and "\ufeff" not in x)]  # not in cp1252
    assert_matches_reference(write(tmp_path, lines, newline=newline, encoding=encoding, bom=bom), chunk_rows=5)


def test_several_date_styles_in_one_column_keep_the_preferred_reading(tmp_path):
    styles = ["02/11/2026 08:30", "202611020830", "2026-11-02T08:30:00", "02/11/2026 08:30:15", "20261102083015",
              "2026-11-02 08:30", "02/11/2026", "20261102", "2026-11-02", "garbage", ""]
    lines = [HEADER] + [line(N_DEMANDE=f"D{i}", DATE_PRELEVEMENT=s, DATE_NAISSANCE=s[:10])
                        for i, s in enumerate(styles * 3)]
    rows, _ = assert_matches_reference(write(tmp_path, lines), chunk_rows=6)
    assert rows["collected_at"][0] == datetime(2026, 11, 2, 8, 30) and rows["birth_date"][7] == date(2026, 11, 2)


def test_only_some_columns_and_in_another_order(tmp_path):
    header = "resultat ; DATE_PRELEVEMENT;code_analyse;N_DEMANDE;SEXE"
    lines = [header, "5,4;02/11/2026 08:30;GLY;D1;F", " x ;202611020830;GLY;D2;", "1;2;3", "5,4;02/11/2026 08:30;GLY;D1;F"]
    rows, rejects = assert_matches_reference(write(tmp_path, lines))
    assert rows.height == 2 and rejects.height == 2 and rows["birth_date"].null_count() == 2
