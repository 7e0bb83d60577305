"""Hostile input (issue 8, item 3): unsafe file names, enormous lines, binary files posing as text,
formula injection in exported text, SQL injection through the command line.

Each attack is rejected or neutralised. The parsers are exercised through
transforms.parsers.detect (detect_format, get_parser), the way the pipeline calls them.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest
from typer.testing import CliRunner

from flows.privacy import landing_name_problem, safe_display_name
from transforms.parsers.base import FileFormatError
from transforms.parsers.detect import detect_format, get_parser

REPO = Path(__file__).resolve().parent.parent

# --------------------------------------------------------------------------------------------
# file names
# --------------------------------------------------------------------------------------------
UNSAFE_NAMES = [
    "", "../etc/passwd", "labo_alpha/../../secret.csv", "labo_alpha/./x.csv", "labo_alpha//x.csv",
    "/etc/passwd", "C:/Windows/x.csv", "labo_alpha\\..\\x.csv", "labo_alpha/x\x00.csv",
    "labo_alpha/x\x1b[2J.csv", "labo_alpha/x\r\nINFO fake log line.csv", "labo_alpha/x\t.csv",
    "labo_alpha/\u202ecod.exe.csv", "labo_alpha/zero\u200bwidth.csv", "labo_alpha/r\udce9sultats.csv",
    "labo_alpha/" + "a" * 256 + ".csv", "labo_alpha/" + "é" * 130 + ".csv", "x/" * 300 + "y.csv",
    "labo_alpha/=HYPERLINK(\"http://x\").csv", "labo_alpha/+cmd.csv", "labo_alpha/-rf.csv", "labo_alpha/@x.csv",
    "=cmd/x.csv", "labo_alpha/ x.csv", "labo_alpha/x.csv ", "labo_alpha/\u2028x.csv",
]
SAFE_NAMES = [
    "labo_alpha/labo_alpha_20261102.csv", "labo_beta/2026/11/extrait du 02-11.csv", "labo_gamma/résultats été.hl7",
    "labo_delta/CR_BIO(1).xml", "x.csv", "labo_alpha/a+b=c@d-e.csv", "labo_alpha/.partial.csv",
]


@pytest.mark.parametrize("name", UNSAFE_NAMES, ids=lambda n: repr(n)[:40])
def test_unsafe_landing_names_are_refused(name):
    problem = landing_name_problem(name)
    assert problem
    assert name not in problem or not name  # the message never echoes the name
    shown = safe_display_name(name)
    shown.encode("utf-8")  # printable and encodable, whatever the name held
    assert len(shown) <= 200 and not any(ord(c) < 32 or 0x202A <= ord(c) <= 0x202E for c in shown)


@pytest.mark.parametrize("name", SAFE_NAMES)
def test_ordinary_landing_names_pass(name):
    assert landing_name_problem(name) is None
    assert safe_display_name(name) == name


def _hostile_landing(landing: Path) -> list[str]:
    """Real files with hostile names (as the OS gives them back through pathlib)."""
    lab = landing / "labo_alpha"
    lab.mkdir(parents=True)
    (lab / "ok_20261102.csv").write_text("FINESS;N_DEMANDE\n")
    for name in ("x\x1b[31m.csv", "=cmd.csv", "\u202egpj.csv", "bad\nline.csv"):
        (lab / name).write_bytes(b"FINESS;N_DEMANDE\n")
    with open(os.fsencode(lab) + b"/r\xe9sultats.csv", "wb") as fh:  # Latin-1 name, not UTF-8
        fh.write(b"FINESS;N_DEMANDE\n")
    return sorted(p.relative_to(landing).as_posix() for p in landing.rglob("*") if p.is_file())


def test_hostile_names_from_the_file_system(tmp_path):
    rels = _hostile_landing(tmp_path / "landing")
    problems = {rel: landing_name_problem(rel) for rel in rels}
    assert problems.pop("labo_alpha/ok_20261102.csv") is None
    assert len(problems) == 5 and all(problems.values()), problems
    for rel in problems:
        safe_display_name(rel).encode("utf-8")


def test_discover_skips_unsafe_names_without_opening_them(tmp_path, monkeypatch):
    """Needs the lead's wiring of landing_name_problem into steps.discover (see docs/privacy.md).

    Before it, a landing file whose name is not UTF-8 (a Latin-1 'résultats.csv' from a Windows
    transfer client) makes discover raise UnicodeEncodeError and the whole run fail.
    """
    from flows import steps
    from flows.settings import Settings

    home = tmp_path / "home"
    _hostile_landing(home / "landing")
    opened: list[str] = []
    real = steps.sha256_of
    monkeypatch.setattr(steps, "sha256_of", lambda p: opened.append(Path(p).name) or real(p))
    ctx = steps.Context.create(Settings(home=home), "hostile-names")
    tickets = steps.discover(ctx)
    assert set(opened) <= {"ok_20261102.csv"}, f"discover opened unsafe names: {opened}"
    assert [t.path for t in tickets if t.status == "new"] == ["labo_alpha/ok_20261102.csv"]


# --------------------------------------------------------------------------------------------
# enormous lines: bounded memory, the line rejected, the rest of the file kept
# --------------------------------------------------------------------------------------------
BIG = 200 << 20  # a 200 MB line
PEAK_LIMIT_MB = 600  # the interpreter with polars is ~150 MB; a parser holding the line twice fails
CSV_HEAD = ("FINESS;N_DEMANDE;NIR;NOM;PRENOM;DATE_NAISSANCE;SEXE;CODE_POSTAL;DATE_PRELEVEMENT;DATE_RECEPTION;"
            "DATE_VALIDATION;CODE_ANALYSE;LIBELLE_ANALYSE;RESULTAT;UNITE;VALEURS_REFERENCE;STATUT\n")
CSV_LINE = ("750000001;D{n};255099900011689;Dupont;Marie;12/09/1955;F;75011;02/11/2026 08:30;02/11/2026 10:00;"
            "02/11/2026 18:00;GLY;Glycémie;5,4;mmol/L;3,9-5,8;F\n")
HL7 = ("MSH|^~\\&|LAB|750000001|BIOLAKE|X|20261102120000||ORU^R01^ORU_R01|M1|P|2.5|||||||UNICODE UTF-8\r"
       "PID|1||255099900011689^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS||DUPONT^MARIE^^^^^L||19550912|F\r"
       "OBR|1||D1|94500-6^SARS-CoV-2 RNA^LN|||202611020830\r"
       "OBX|1|ST|94500-6^SARS-CoV-2 RNA^LN||")
HPRIM = ("H|~^\\&|||LAB^750000001|||||||P|H2.2|20261102\r\n"
         "P|1||255099900011689||DUPONT^MARIE||19550912|F\r\n"
         "OBR|1||D1|GLY^Glycemie|||202611020830\r\n"
         "OBX|1|NM|GLY^Glycemie||")
CDA = ('<?xml version="1.0" encoding="UTF-8"?>\n<ClinicalDocument xmlns="urn:hl7-org:v3">'
       '<id root="1.2.3" extension="x"/><recordTarget><patientRole><patient><name><family>')

PROBE = r"""
import json, resource, sys
from pathlib import Path
from transforms.parsers.base import FileFormatError
from transforms.parsers.detect import detect_format, get_parser
path = Path(sys.argv[1])
out = {"rows": 0, "rejects": 0, "max_raw_text": 0, "error": None}
try:
    fmt = detect_format(path)
    out["format"] = fmt
    for chunk in get_parser(fmt)(path, file_id="f", source="s", chunk_rows=100_000):
        out["rows"] += chunk.rows.height
        out["rejects"] += chunk.rejects["line_no"].n_unique()
        if chunk.rejects.height:
            out["max_raw_text"] = max(out["max_raw_text"], chunk.rejects["raw_text"].str.len_bytes().max() or 0)
except FileFormatError as err:
    out["error"] = err.reason_code
# VmHWM: this process's own peak (ru_maxrss would carry the forking pytest's size over exec)
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")]
out["peak_mb"] = int(hwm[0].split()[1]) / 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def _write_big(path: Path, head: str, tail: str = "") -> None:
    block = b"A" * (1 << 20)
    with path.open("wb") as fh:
        fh.write(head.encode("utf-8"))
        for _ in range(BIG >> 20):
            fh.write(block)
        fh.write(tail.encode("utf-8"))


@pytest.fixture(scope="module")
def enormous_results(tmp_path_factory) -> dict[str, dict]:
    """Each file parsed in its own process (its peak memory is then its own), all at once."""
    d = tmp_path_factory.mktemp("enormous")
    cases = {
        # a valid line, then a 200 MB line without newline up to the end of the file
        "csv_unterminated": (CSV_HEAD + CSV_LINE.format(n=1), ""),
        # the huge line between two valid lines
        "csv_middle": (CSV_HEAD + CSV_LINE.format(n=1) + "750000001;D2;", "\n" + CSV_LINE.format(n=3)),
        "hl7v2": (HL7, ""),
        "hprim": (HPRIM, ""),
        "cda": (CDA, ""),
    }
    procs = {}
    for name, (head, tail) in cases.items():
        path = d / f"{name}.txt"  # the name says nothing: the content decides
        _write_big(path, head, tail)
        procs[name] = subprocess.Popen([sys.executable, "-c", PROBE, str(path)], cwd=REPO, text=True,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       env={**os.environ, "PYTHONPATH": str(REPO)})
    results = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{name}: the parser crashed: {err[-2000:]}"
        results[name] = json.loads(out.strip().splitlines()[-1])
    for p in d.iterdir():
        p.unlink()
    return results


@pytest.mark.parametrize("case", ["hl7v2", "hprim", "cda", "csv_unterminated", "csv_middle"])
def test_an_enormous_line_does_not_exhaust_memory(enormous_results, case):
    """CSV: fails until transforms/parsers/csv_extract.py caps its line length (docs/privacy.md)."""
    r = enormous_results[case]
    assert r["peak_mb"] < PEAK_LIMIT_MB, f"{case}: {r['peak_mb']:.0f} MB for a 200 MB line: {r}"
    assert r["max_raw_text"] <= 2 << 20, f"{case}: a {r['max_raw_text']} bytes reject would go to the raw layer"


def test_an_enormous_line_is_rejected_and_the_rest_kept(enormous_results):
    r = enormous_results
    assert r["csv_unterminated"]["rows"] == 1 and r["csv_unterminated"]["rejects"] == 1
    assert r["csv_middle"]["rows"] == 2 and r["csv_middle"]["rejects"] == 1
    for fmt in ("hl7v2", "hprim", "cda"):
        assert r[fmt]["rows"] == 0 and (r[fmt]["rejects"] >= 1 or r[fmt]["error"]), r[fmt]


# --------------------------------------------------------------------------------------------
# binary files posing as text
# --------------------------------------------------------------------------------------------
def _parse_all(path: Path) -> tuple[int, int]:
    fmt = detect_format(path)
    rows = rejects = 0
    for chunk in get_parser(fmt)(path, file_id="f", source="s", chunk_rows=10_000):
        rows += chunk.rows.height
        rejects += chunk.rejects.height
    return rows, rejects


def _binary_cases() -> dict[str, bytes]:
    noise = bytes((i * 7919 + 13) % 256 for i in range(200_000))
    no_nul = noise.replace(b"\x00", b"\x01")
    zipped = b"PK\x03\x04" + noise[:1000]
    entities = ['<!ENTITY a0 "aaaaaaaaaa">'] + [f'<!ENTITY a{i} "{f"&a{i - 1};" * 10}">' for i in range(1, 10)]
    bomb = ('<?xml version="1.0"?><!DOCTYPE ClinicalDocument [' + "".join(entities)
            + ']><ClinicalDocument xmlns="urn:hl7-org:v3">&a9;</ClinicalDocument>').encode()
    return {
        "png.csv": b"\x89PNG\r\n\x1a\n" + noise,
        "gzip.hl7": b"\x1f\x8b\x08\x00" + noise,
        "zip.csv": zipped,
        "pdf.xml": b"%PDF-1.7\n" + noise,
        "nul.csv": b"FINESS;N_DEMANDE;NIR\n" + b"\x00" * 5000,
        "utf16.csv": "FINESS;N_DEMANDE;NIR\n750000001;D1;1\n".encode("utf-16"),
        "noise.csv": no_nul,
        "msh_then_noise.hl7": b"MSH|^~\\&|A|B|C|D|20261102||ORU^R01|1|P|2.5\r" + no_nul,
        "hprim_then_noise.hpr": b"H|~^\\&|||LAB\r\n" + no_nul,
        "csv_header_then_noise.csv": CSV_HEAD.encode() + no_nul,
        "csv_header_then_nul_after_64k.csv": CSV_HEAD.encode() + CSV_LINE.format(n=1).encode() * 600 + b"\x00" * 70_000,
        "billion_laughs.xml": bomb,
        "empty.csv": b"",
        "bom_only.csv": b"\xef\xbb\xbf\r\n  \n",
    }


@pytest.mark.parametrize("name", sorted(_binary_cases()))
def test_binary_content_is_refused_or_rejected(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(_binary_cases()[name])
    try:
        rows, rejects = _parse_all(path)
    except FileFormatError as err:
        assert err.reason_code in ("UNPARSEABLE_FILE", "EMPTY_FILE", "HEADER_INVALID", "UNSAFE_XML"), err
        assert len(str(err)) < 500
        return
    if name == "csv_header_then_nul_after_64k.csv":
        assert rows == 1 and rejects >= 1  # the one valid line (then duplicates), the NUL line rejected
    else:
        assert rows == 0 and rejects >= 1, (rows, rejects)


# --------------------------------------------------------------------------------------------
# formula injection in exported text
# --------------------------------------------------------------------------------------------
FORMULAS = ["=1+1", "+33 6 00 00 00 00", "-2+3", "@SUM(A1:A9)", "\t=cmd", "\r=cmd", "=HYPERLINK(\"http://x\",\"y\")"]


def _cells(text: str, sep: str) -> list[str]:
    return [c for row in csv.reader(io.StringIO(text), delimiter=sep) for c in row]


def test_epi_exports_neutralise_formulas():
    from transforms.epi.exports import csv_bytes, neutralise_formulas

    df = pl.DataFrame({"dep": ["75", *FORMULAS], "P": [-3, *range(len(FORMULAS))]})
    out = neutralise_formulas(df)
    assert out["P"].to_list() == df["P"].to_list()  # numbers stay numbers, -3 included
    assert out["dep"][0] == "75"
    assert all(v.startswith("'") and v[1:] == f for v, f in zip(out["dep"][1:], FORMULAS))
    cells = _cells(csv_bytes(df).decode("utf-8"), ";")
    text_cells = [c for c in cells if not c.lstrip("-").isdigit()]
    assert not [c for c in text_cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")], cells


def test_mapping_work_queue_export_neutralises_formulas(tmp_path):
    """The unmapped-codes CSV carries the labs' own codes and labels and is opened in a spreadsheet
    by the reviewers: a label '=HYPERLINK(...)' must not become a live formula."""
    from transforms.terminology.workqueue import export_workqueue

    n = len(FORMULAS)
    backlog = pl.DataFrame({
        "source": ["labo_alpha"] * n, "local_code": FORMULAS, "local_label": FORMULAS,
        "unit_raw": ["mmol/L"] * n, "loinc_num": ["2345-7"] * n,
    })
    path = export_workqueue(backlog, tmp_path / "queue.csv")
    cells = _cells(path.read_text(encoding="utf-8"), ",")
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")], cells


# --------------------------------------------------------------------------------------------
# SQL through the command line
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_warehouse(tmp_path_factory) -> Path:
    from warehouse import catalog as cat
    from warehouse.store import Warehouse
    from warehouse.views import build_views

    home = tmp_path_factory.mktemp("sqlhome")
    wh = Warehouse(home)
    daily = pl.DataFrame({"jour": [date(2026, 11, 2)], "dep": ["75"], "cl_age90": [0], "P_f": [1], "P_h": [1],
                          "P": [2], "T_f": [5], "T_h": [5], "T": [10]})
    wh.write_table(cat.SIDEP_DAILY, daily)
    raw = cat.RAW_RESULTS.empty()
    wh.write_partition(cat.RAW_RESULTS, "f1", [raw])
    build_views(wh)
    return home


def _attacks(tmp: Path) -> dict[str, tuple[str, list[Path]]]:
    """query -> the files it would create if it ran."""
    return {
        "copy": (f"COPY (SELECT * FROM marts.sidep_daily) TO '{tmp / 'out.csv'}'", [tmp / "out.csv"]),
        "select then copy": (f"SELECT 1; COPY (SELECT 1) TO '{tmp / 'out2.csv'}'", [tmp / "out2.csv"]),
        "explain analyze copy": (f"EXPLAIN ANALYZE COPY (SELECT 1) TO '{tmp / 'out3.csv'}'", [tmp / "out3.csv"]),
        "attach read-write": (f"ATTACH '{tmp / 'new.duckdb'}' AS n (READ_WRITE)", [tmp / "new.duckdb"]),
        "export database": (f"EXPORT DATABASE '{tmp / 'exported'}'", [tmp / "exported"]),
        "create": ("CREATE TABLE marts.x AS SELECT 1", []),
        "create temp": ("CREATE TEMP TABLE x AS SELECT 1", []),
        "install": ("INSTALL httpfs", []),
        "set": ("SET enable_external_access = true", []),
        "read outside": ("SELECT * FROM read_text('/etc/hostname')", []),
        "comment injection": ("SELECT 1 /* */; DROP VIEW marts.sidep_daily; --", []),
    }


def test_read_only_query_refuses_writes_and_outside_files(small_warehouse, tmp_path):
    from warehouse.analyst import UnsafeQuery, read_only_query

    db = small_warehouse / "biolake.duckdb"
    allowed = [small_warehouse / "warehouse"]
    assert read_only_query(db, "SELECT sum(T) AS t FROM marts.sidep_daily", allowed)["t"].item() == 10
    assert read_only_query(db, "FROM marts.sidep_daily", allowed).height == 1
    assert read_only_query(db, "SELECT count(*) AS n FROM raw.results", allowed)["n"].item() == 0
    for what, (query, files) in _attacks(tmp_path).items():
        with pytest.raises((UnsafeQuery, duckdb.Error)):
            read_only_query(db, query, allowed)
        assert not any(f.exists() for f in files), what
    with pytest.raises(duckdb.Error):  # a SELECT reaching outside the warehouse
        read_only_query(db, f"SELECT * FROM read_csv('{REPO / 'seeds' / 'labs.csv'}')", allowed)


def test_sql_command_cannot_write_attach_or_copy(small_warehouse, tmp_path):
    """`biolake sql`: fails until flows/cli.py runs queries through warehouse.analyst.read_only_query."""
    from flows.cli import app

    runner = CliRunner()
    ok = runner.invoke(app, ["sql", "--home", str(small_warehouse), "SELECT sum(T) AS t FROM marts.sidep_daily"])
    assert ok.exit_code == 0 and "10" in ok.output
    failures = []
    for what, (query, files) in _attacks(tmp_path).items():
        res = runner.invoke(app, ["sql", "--home", str(small_warehouse), query])
        if res.exit_code == 0 or any(f.exists() for f in files):
            failures.append(what)
    views = duckdb.connect(str(small_warehouse / "biolake.duckdb"), read_only=True)
    try:
        assert views.execute("SELECT count(*) FROM marts.sidep_daily").fetchone()[0] == 1
    finally:
        views.close()
    assert not failures, f"biolake sql ran: {failures}"


def test_other_cli_parameters_are_typed(tmp_path):
    from flows.privacy import privacy_app

    runner = CliRunner()
    res = runner.invoke(privacy_app, ["purge", "--home", str(tmp_path), "--older-than", "1; DROP TABLE x"])
    assert res.exit_code != 0
    res = runner.invoke(privacy_app, ["audit", "--home", str(tmp_path), "--kind", "purge' OR '1'='1"])
    assert res.exit_code != 0


# --------------------------------------------------------------------------------------------
# a symbolic link in the landing area
# --------------------------------------------------------------------------------------------
def test_a_symbolic_link_is_logged_as_refused_never_followed(tmp_path):
    """QA: a symlink in landing/ vanished without a trace (no file log row, no audit). It is refused
    as NOT_A_FILE, logged and audited once, and what it points to is never read."""
    from flows import process, steps
    from flows.privacy import read_audit
    from flows.settings import Settings
    from warehouse import catalog as cat

    outside = tmp_path / "outside.csv"
    outside.write_text(CSV_HEAD + CSV_LINE.format(n=1), encoding="utf-8")
    lab = tmp_path / "home" / "landing" / "labo_alpha"
    lab.mkdir(parents=True)
    (lab / "link.csv").symlink_to(outside)
    ctx = steps.Context.create(Settings(home=tmp_path / "home", demo=True), "t")
    tickets = steps.discover(ctx)
    assert [(t.status, t.reason, t.path) for t in tickets] == [("unsafe", "NOT_A_FILE", "labo_alpha/link.csv")]
    assert "symbolic link" in tickets[0].detail and str(outside) not in tickets[0].detail
    assert process.record_skipped(ctx, tickets[0]) == "NOT_A_FILE"
    log = ctx.wh.read(cat.FILE_LOG)
    assert log.select("path", "status", "reason_code").rows() == [("labo_alpha/link.csv", "failed", "NOT_A_FILE")]
    assert ctx.wh.read(cat.QUARANTINE)["reason_code"].to_list() == ["NOT_A_FILE"]
    assert read_audit(ctx.wh).filter(pl.col("kind") == "file_skipped").height == 1
    assert steps.discover(ctx) == []  # logged once, not again on the next run
