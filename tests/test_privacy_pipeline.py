"""Privacy end to end, on one pipeline run over generated data (issue 8).

- nothing identifying in Prefect logs, artifacts, the Prefect database and result storage, nor in
  Python logging (every level), nor in the repository;
- the analyst database exposes no identifying column or value and cannot write or reach raw files;
- the identity purge keeps every non-raw file byte for byte and the aggregates recomputable.

The landing mixes the four formats (two CSV labs, one HL7 v2, one CDA, one HPRIM). The identities
are read from the landing files themselves (NIRs, names, birth dates, postal codes); each scanner is first shown to find them where they are (the raw layer), so a clean result
means something.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import stat
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import polars as pl
import pytest

from tests.conftest import TEST_SECRET
from transforms.canonical import IDENTIFYING_COLUMNS
from warehouse import catalog as cat
from warehouse.catalog_privacy import AUDIT_EVENTS

REPO = Path(__file__).resolve().parent.parent
# byte copies of a landing file under names the pipeline must refuse (they sort after the labs'
# folders, so until discover checks names they are plain re-deliveries)
HOSTILE_COPIES = ("zz_hostile/=HYPERLINK(1).csv", "zz_hostile/ctl\x1b[31m.csv")

# --------------------------------------------------------------------------------------------
# identities of the generated patients, and scanners
# --------------------------------------------------------------------------------------------
WORD = re.compile(r"[^\W\d_]+")
ALNUM_RUN = re.compile(r"[0-9A-Za-z]{13,}")


def strip_accents_upper(s: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c)).upper()


@dataclass
class Identities:
    nirs: set[str] = field(default_factory=set)
    nir_bodies: set[str] = field(default_factory=set)  # the 13 characters before the key
    name_tokens: set[str] = field(default_factory=set)  # as written, and upper-cased without accents
    birth_dates: set[date] = field(default_factory=set)
    postal_codes: set[str] = field(default_factory=set)

    def birth_date_strings(self) -> set[str]:
        """Common spellings of the birth dates. Births from 2026 on are left out: they are days of
        the collection window too, so their strings legitimately appear as collection dates."""
        out = set()
        for d in self.birth_dates:
            if d.year < 2026:
                out |= {d.strftime("%d/%m/%Y"), d.isoformat(), d.strftime("%Y%m%d")}
        return out


def _add_identity(ids: Identities, nir: str | None, names: Iterable[str | None], birth: date | None,
                  postal: str | None) -> None:
    if nir and len(nir) == 15:
        ids.nirs.add(nir)
        ids.nir_bodies.add(nir[:13])
    for name in names:
        for form in (name, strip_accents_upper(name)) if name else ():
            ids.name_tokens |= {t for t in WORD.findall(form) if len(t) >= 4}
    if birth is not None:
        ids.birth_dates.add(birth)
    if postal:
        ids.postal_codes.add(postal)


def landing_identities(landing: Path) -> Identities:
    """Every identity the landing files carry: CSV lines read here field by field; the HL7 v2, CDA
    and HPRIM files through the project's parsers (their identity columns, before any check)."""
    from transforms.parsers.detect import detect_format, get_parser

    ids = Identities()
    for f in sorted(p for p in landing.rglob("*") if p.is_file() and p.suffix != ".csv"):
        for chunk in get_parser(detect_format(f))(f, file_id="scan", source=f.parent.name):
            for nir, fam, first, birth, postal in chunk.rows.select(
                    "patient_nir", "family_name", "first_name", "birth_date", "postal_code").iter_rows():
                _add_identity(ids, nir, (fam, first), birth, postal)
    for f in sorted(landing.rglob("*.csv")):
        raw = f.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        lines = text.split("\n")
        header = lines[0].split(";")
        ix = {h: i for i, h in enumerate(header)}
        for line in lines[1:]:
            cells = line.split(";")
            if len(cells) != len(header):
                continue  # malformed lines: their fields are shifted
            birth = None
            for fmt in ("%d/%m/%Y", "%Y%m%d"):
                try:
                    birth = datetime.strptime(cells[ix["DATE_NAISSANCE"]], fmt).date()
                    break
                except ValueError:
                    pass
            _add_identity(ids, cells[ix["NIR"]], (cells[ix["NOM"]], cells[ix["PRENOM"]]), birth,
                          cells[ix["CODE_POSTAL"]])
    assert len(ids.nirs) > 100 and len(ids.name_tokens) > 50 and ids.birth_dates and ids.postal_codes
    return ids


def find_nirs(text: str, ids: Identities) -> set[str]:
    """NIR bodies (13 characters, key or not) anywhere inside a letters-and-digits run."""
    hits = set()
    for run in ALNUM_RUN.findall(text):
        for i in range(len(run) - 12):
            if run[i:i + 13].upper() in ids.nir_bodies:
                hits.add(run[i:i + 13])
    return hits


def find_names(text: str, ids: Identities) -> set[str]:
    """Name words (4+ letters) spelled as a lab writes them (case-sensitive: Prefect's lower-case
    run names such as 'jade-robin' are not 'JADE' or 'Robin')."""
    return set(WORD.findall(text)) & ids.name_tokens


def leaks(texts: Iterable[str], ids: Identities) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {"nir": set(), "name": set(), "secret": set()}
    for text in texts:
        found["nir"] |= find_nirs(text, ids)
        found["name"] |= find_names(text, ids)
        if TEST_SECRET in text:
            found["secret"].add(TEST_SECRET)
    return found


def assert_clean(found: dict[str, set[str]], where: str) -> None:
    dirty = {k: sorted(v)[:10] for k, v in found.items() if v}
    assert not dirty, f"identities or secrets found in {where}: {dirty}"


# --------------------------------------------------------------------------------------------
# one pipeline run, with everything it logged
# --------------------------------------------------------------------------------------------
@dataclass
class Ran:
    home: Path
    summary: dict
    ids: Identities
    records: list[str]
    api_logs: list[dict]
    artifacts: list[dict]
    prefect_db: Path
    prefect_home: Path


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


async def _read_prefect() -> tuple[list[dict], list[dict]]:
    from prefect.client.orchestration import get_client
    from prefect.logging.handlers import APILogHandler

    await APILogHandler.aflush()
    logs: list[dict] = []
    arts: list[dict] = []
    async with get_client() as client:
        # the filter endpoints, called with explicit bodies (the client's optional filters are
        # sent as nulls that this server version refuses)
        while True:
            page = (await client.request("POST", "/logs/filter", json={
                "limit": 200, "offset": len(logs), "sort": "TIMESTAMP_ASC"})).json()
            logs += page
            if len(page) < 200:
                break
        while True:
            page = (await client.request("POST", "/artifacts/filter", json={
                "limit": 200, "offset": len(arts), "sort": "CREATED_DESC"})).json()
            arts += page
            if len(page) < 200:
                break
    return logs, arts


def _when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def ran(prefect_harness, tmp_path_factory) -> Ran:
    from prefect.settings import get_current_settings

    from flows.pipeline import pipeline
    from transforms.synthetic import MIXED_FORMATS, generate

    home = tmp_path_factory.mktemp("privacy") / "home"
    generate(home, n_results=3000, seed=11, days=2, formats=MIXED_FORMATS)  # CSV, HL7 v2, CDA, HPRIM
    source = sorted((home / "landing").rglob("*.csv"))[0]
    for rel in HOSTILE_COPIES:
        (home / "landing" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, home / "landing" / rel)
    ids = landing_identities(home / "landing")
    capture = _Capture()
    root, prefect_logger, httpcore = logging.getLogger(), logging.getLogger("prefect"), logging.getLogger("httpcore")
    saved = (root.level, prefect_logger.level, httpcore.level)
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    prefect_logger.setLevel(logging.DEBUG)
    httpcore.setLevel(logging.INFO)  # transport traces: bytes counts, no content
    started = datetime.now(timezone.utc)
    try:
        summary = pipeline(home=str(home))
        api_logs, artifacts = asyncio.run(_read_prefect())
        # this run's only: the session's Prefect also holds other tests' runs, some of them on
        # patient-named landing files (whose names reach Prefect by design: docs/privacy.md)
        api_logs = [r for r in api_logs if _when(r["timestamp"]) >= started]
        artifacts = [a for a in artifacts if _when(a["created"]) >= started]
    finally:
        root.removeHandler(capture)
        root.setLevel(saved[0])
        prefect_logger.setLevel(saved[1])
        httpcore.setLevel(saved[2])
    settings = get_current_settings()
    db = Path(settings.server.database.connection_url.get_secret_value().split(":///", 1)[1])
    return Ran(home, summary, ids, capture.lines, api_logs, artifacts, db, Path(settings.home))


def q(db: Path, sql: str) -> pl.DataFrame:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.sql(sql).pl()
    finally:
        con.close()


# --------------------------------------------------------------------------------------------
# 4. logs, artifacts, Prefect storage, repository
# --------------------------------------------------------------------------------------------
def test_the_scanners_find_identities_where_they_are(ran):
    raw = q(ran.home / "biolake.duckdb", "SELECT patient_nir, family_name, first_name FROM raw.results LIMIT 50")
    text = "\n".join(" ".join(str(v) for v in row) for row in raw.iter_rows())
    found = leaks([text, f"x{TEST_SECRET}y"], ran.ids)
    assert len(found["nir"]) >= 10 and len(found["name"]) >= 10 and found["secret"]


def test_no_identity_in_logs_or_artifacts(ran):
    assert len(ran.api_logs) > 20, "the run logged nothing to Prefect: the test would prove nothing"
    assert {a["key"] for a in ran.artifacts} >= {"biolake-run-summary", "biolake-files"}
    assert len(ran.records) > 20
    assert_clean(leaks((f"{r['name']} {r['message']}" for r in ran.api_logs), ran.ids), "Prefect logs")
    assert_clean(leaks(ran.records, ran.ids), "Python logging")
    assert_clean(leaks((f"{a['key']} {a.get('description')} {a['data']}" for a in ran.artifacts), ran.ids),
                 "Prefect artifacts")
    assert_clean(leaks([repr(ran.summary)], ran.ids), "the run summary")


def test_no_identity_in_prefect_database_or_result_storage(ran):
    """Task parameters, run names, events and persisted results all end in Prefect's storage."""
    assert ran.prefect_db.stat().st_size > 0
    blobs = [ran.prefect_db.read_bytes().decode("utf-8", errors="replace")]
    blobs += [p.read_bytes().decode("utf-8", errors="replace")
              for p in ran.prefect_home.rglob("*") if p.is_file() and p.suffix != ".db"]
    assert_clean(leaks(blobs, ran.ids), "Prefect's database and storage")


IGNORED_DIRS = {".git", ".venv", "data", "__pycache__", ".pytest_cache", ".hypothesis", "node_modules", ".ruff_cache",
                ".mypy_cache", "dist", "build"}  # .gitignore'd, or not source
IGNORED_SUFFIXES = (".duckdb", ".wal", ".pyc", ".parquet")


def repository_texts() -> Iterable[tuple[str, str]]:
    """(path, text) of every file of the repository git would track."""
    for path in sorted(REPO.rglob("*")):
        rel = path.relative_to(REPO)
        if any(p in IGNORED_DIRS or p.endswith(".egg-info") for p in rel.parts) or rel.as_posix().startswith(
                "bench/results") or not path.is_file() or path.suffix in IGNORED_SUFFIXES:
            continue
        if path.stat().st_size <= 20 << 20:
            yield rel.as_posix(), path.read_bytes().decode("utf-8", errors="replace")


SECRET_PATTERNS = {
    "private key": re.compile(r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |PGP |ENCRYPTED )?PRIVATE KEY"),
    "AWS access key": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\b(?:ghp|gho|ghs|ghu|ghr|github_pat)_[A-Za-z0-9_]{30,}"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    "Prefect Cloud key": re.compile(r"\bpnu_[A-Za-z0-9]{30,}"),
    "password in a URL": re.compile(r"\b[a-z][a-z0-9+]*://[^/\s:@'\"]+:(?!\*+@)[^/\s@'\"{}<>$]{6,}@"),
    "pseudonym secret set to a literal": re.compile(
        r"BIOLAKE_PSEUDONYM_SECRET\s*[=:]\s*['\"]?(?![.]{3}|\$|<)[A-Za-z0-9+/_-]{16,}"),
}


def test_secret_patterns_catch_what_they_should():
    # assembled at run time, so that this file does not hold what it looks for
    samples = {"private key": "-----BEGIN RSA " + "PRIVATE KEY-----", "AWS access key": "AKIA" + "ABCDEFGHIJKLMNOP",
               "GitHub token": "ghp_" + "a1" * 18, "password in a URL": "postgresql://biolake:" + "s3cr3tpass@db/x",
               "pseudonym secret set to a literal": "export BIOLAKE_PSEUDONYM_SECRET" + "=Zk3v9QpL2mX8rT4wY6uB"}
    for what, sample in samples.items():
        assert SECRET_PATTERNS[what].search(sample), what
    for harmless in ("export BIOLAKE_PSEUDONYM_SECRET=...", "BIOLAKE_PSEUDONYM_SECRET=$(cat /run/secrets/k)",
                     "sqlite+aiosqlite:///prefect.db", "https://docs.prefect.io/v3/", "https://user@host/x"):
        assert not any(p.search(harmless) for p in SECRET_PATTERNS.values()), harmless


def test_repository_holds_no_secret_and_no_generated_nir(ran, generated):
    """No file of the repository holds anything shaped like a real secret, nor a NIR of the
    generated data sets the tests use (this module's and tests/conftest.py's ``generated``)."""
    ids = landing_identities(generated / "landing")
    ids.nir_bodies |= ran.ids.nir_bodies
    findings, n_files = [], 0
    for rel, text in repository_texts():
        n_files += 1
        findings += [f"{rel}: {what}" for what, pattern in SECRET_PATTERNS.items() if pattern.search(text)]
        if find_nirs(text, ids):
            findings.append(f"{rel}: generated NIRs {sorted(find_nirs(text, ids))[:3]}")
    assert n_files > 50
    assert not findings, findings


# --------------------------------------------------------------------------------------------
# 3 and 5, as wired into the pipeline by the lead (docs/privacy.md, "Wiring")
# --------------------------------------------------------------------------------------------
def test_wiring_unsafe_names_are_refused_and_the_run_is_audited(ran):
    """Green once flows/pipeline.py and steps.discover call flows.privacy as docs/privacy.md says."""
    from flows.privacy import read_audit, safe_display_name
    from warehouse.store import Warehouse

    wh = Warehouse(ran.home)
    log = wh.read(cat.FILE_LOG)
    for rel in HOSTILE_COPIES:
        row = log.filter(pl.col("path") == safe_display_name(rel))
        assert row.select("status", "reason_code").rows() == [("failed", "UNSAFE_FILE_NAME")], rel
    events = read_audit(wh)
    kinds = events["kind"].to_list()
    assert kinds.count("run_started") == 1 and kinds.count("run_finished") == 1
    assert set(events.filter(pl.col("kind").str.starts_with("run_"))["run_id"]) == {ran.summary["run_id"]}
    loaded = log.filter(pl.col("status") == "loaded")
    ingested = events.filter(pl.col("kind") == "file_ingested")
    assert sorted(ingested["subject"]) == sorted(loaded["path"])
    assert set(ingested["sha256"]) == set(loaded["sha256"])
    skipped = set(events.filter(pl.col("kind") == "file_skipped")["subject"])
    assert skipped >= set(log.filter(pl.col("status") == "duplicate")["path"]) | {
        safe_display_name(r) for r in HOSTILE_COPIES}
    assert all(p.startswith("biolake ") for p in events["producer"])
    assert (ran.home / "analyst.duckdb").exists(), "the run did not build the analyst database"


# --------------------------------------------------------------------------------------------
# 1. the analyst database
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def analyst_db(ran) -> Path:
    from warehouse.analyst import build_analyst_db
    from warehouse.store import Warehouse

    return build_analyst_db(Warehouse(ran.home))


def _views(con) -> list[tuple[str, str, str]]:
    return con.execute("SELECT schema_name, view_name, sql FROM duckdb_views() WHERE NOT internal "
                       "ORDER BY 1, 2").fetchall()


def _scan_values(con, ids: Identities, schemas: tuple[str, ...]) -> dict[str, set[str]]:
    """Every distinct value of every text column of every view in ``schemas``."""
    dates = ids.birth_date_strings()
    date_run = re.compile(r"\d{2}/\d{2}/\d{4}|\d{4}-\d{2}-\d{2}|(?<!\d)\d{8}(?!\d)")
    found: dict[str, set[str]] = {"nir": set(), "name": set(), "birth_date": set(), "postal_code": set(),
                                  "secret": set()}
    cols = con.execute(
        "SELECT table_schema, table_name, column_name FROM information_schema.columns "
        f"WHERE table_schema IN ({', '.join(repr(s) for s in schemas)}) AND data_type = 'VARCHAR' "
        "ORDER BY 1, 2, 3").fetchall()
    assert cols
    for schema, table, col in cols:
        values = [r[0] for r in con.execute(
            f'SELECT DISTINCT "{col}" FROM {schema}.{table} WHERE "{col}" IS NOT NULL').fetchall()]
        public_reference = schema == "ref"  # communes, LOINC names: public, not about patients
        for v in values:
            hit = f"{schema}.{table}.{col}"
            if find_nirs(v, ids):
                found["nir"].add(hit)
            if TEST_SECRET in v:
                found["secret"].add(hit)
            if public_reference:
                continue
            if find_names(v, ids):
                found["name"].add(f"{hit}: {sorted(find_names(v, ids))[:3]}")
            if set(date_run.findall(v)) & dates:
                found["birth_date"].add(hit)
            if v.strip() in ids.postal_codes:
                found["postal_code"].add(hit)
    return found


def test_analyst_db_scanner_finds_identities_in_raw(ran):
    con = duckdb.connect(str(ran.home / "biolake.duckdb"), read_only=True)
    try:
        found = _scan_values(con, ran.ids, ("raw",))
        births = con.execute("SELECT DISTINCT strftime(birth_date, '%d/%m/%Y') FROM raw.results").fetchall()
    finally:
        con.close()
    assert found["nir"] and found["name"] and found["postal_code"]
    assert {r[0] for r in births} & ran.ids.birth_date_strings()


def test_analyst_db_has_no_identifying_column_and_reads_no_raw_file(ran, analyst_db):
    from warehouse.analyst import HIDDEN_COLUMNS, PRIVATE_QUALITY_TABLES, analyst_dirs

    con = duckdb.connect(str(analyst_db), read_only=True)
    try:
        views = _views(con)
        cols = con.execute("SELECT table_schema, table_name, column_name FROM information_schema.columns").fetchall()
        schemas = {r[0] for r in con.execute("SELECT schema_name FROM duckdb_schemas() WHERE NOT internal").fetchall()}
        tables = {f"{s}.{t}" for s, t in con.execute("SELECT schema_name, table_name FROM duckdb_tables()").fetchall()}
        macros = con.execute("SELECT count(*) FROM duckdb_functions() WHERE NOT internal").fetchone()[0]
    finally:
        con.close()
    # the quality tables holding landing paths are cleaned copies (their files are closed to analysts)
    assert "raw" not in schemas and tables == set(PRIVATE_QUALITY_TABLES) and macros == 0
    names = {f"{s}.{v}" for s, v, _ in views}
    assert {"marts.sidep_daily", "marts.fct_lab_results", "staging.stg_results", "quality.run_log",
            "ref.postal_codes"} <= names and not names & tables
    # ref tables are public reference data (every postal code of France), not about patients
    bad = {(s, t, c) for s, t, c in cols if s != "ref" and c in IDENTIFYING_COLUMNS | set(HIDDEN_COLUMNS)}
    assert not bad, bad
    allowed = [str(d.resolve()) + "/" for d in analyst_dirs(ran.home / "warehouse")]
    raw_dir = str((ran.home / "warehouse" / "raw").resolve())
    for schema, view, sql in views:
        assert raw_dir not in sql and "biolake.duckdb" not in sql, f"{schema}.{view} reaches raw"
        for literal in re.findall(r"'((?:[^']|'')*)'", sql):
            if literal.startswith("/") or re.search(r"\.(parquet|csv|json|duckdb)\b", literal):
                assert any(literal.startswith(a) for a in allowed), f"{schema}.{view} reads {literal}"
        assert not re.search(r"\b(read_text|read_blob|read_csv\w*|read_json\w*|glob|attach)\b", sql, re.I), view


def test_analyst_db_holds_no_identifying_value(ran, analyst_db):
    con = duckdb.connect(str(analyst_db), read_only=True)
    try:
        n_fct = con.execute("SELECT count(*) FROM marts.fct_lab_results").fetchone()[0]
        found = _scan_values(con, ran.ids, ("staging", "marts", "quality", "ref"))
    finally:
        con.close()
    assert n_fct > 1000
    assert_clean(found, "the analyst database")


def test_analyst_db_is_read_only_and_locked(ran, analyst_db, tmp_path):
    from warehouse.analyst import connect_analyst

    con = duckdb.connect(str(analyst_db), read_only=True)
    try:
        for sql in ("CREATE TABLE marts.x AS SELECT 1", "CREATE VIEW marts.y AS SELECT 1",
                    "INSERT INTO marts.sidep_daily SELECT * FROM marts.sidep_daily",
                    "DROP VIEW marts.sidep_daily"):
            with pytest.raises(duckdb.Error):
                con.execute(sql)
    finally:
        con.close()
    out = tmp_path / "copy.csv"
    other = tmp_path / "other.duckdb"
    raw_glob = str(ran.home / "warehouse" / "raw" / "results" / "**" / "*.parquet")
    con = connect_analyst(analyst_db)
    try:
        totals = con.execute("SELECT sum(P), sum(T) FROM marts.sidep_daily WHERE cl_age90 = 0").fetchone()
        assert totals[1] > 0
        for view in ("staging.stg_results_coded", "quality.file_log", "quality.audit_events", "ref.loinc"):
            con.execute(f"SELECT count(*) FROM {view}").fetchone()
        for sql in (f"COPY (SELECT * FROM marts.fct_lab_results) TO '{out}'",
                    f"ATTACH '{other}' AS o (READ_WRITE)",
                    f"SELECT count(*) FROM read_parquet('{raw_glob}')",
                    "SELECT count(*) FROM read_text('/etc/passwd')",
                    "SET enable_external_access = true", "RESET allowed_directories",
                    "SET lock_configuration = false", "CREATE TABLE x AS SELECT 1"):
            with pytest.raises(duckdb.Error):
                con.execute(sql)
    finally:
        con.close()
    assert not out.exists() and not other.exists()


def test_raw_layer_is_private_to_the_pipeline_account(ran, analyst_db):
    from warehouse.analyst import private_dirs
    from warehouse.store import Warehouse

    raw = ran.home / "warehouse" / "raw"
    assert stat.S_IMODE(raw.stat().st_mode) == 0o700
    dirs = private_dirs(Warehouse(ran.home))
    assert {d.relative_to(ran.home / "warehouse").as_posix() for d in dirs} == {
        "raw", "quality/file_log", "quality/quarantine", "quality/audit_events", "quality/expectation_results",
        "_cache"}
    assert all(stat.S_IMODE(d.stat().st_mode) == 0o700 for d in dirs)
    assert stat.S_IMODE(analyst_db.stat().st_mode) == 0o644


# --------------------------------------------------------------------------------------------
# 2. retention: purge identities
# --------------------------------------------------------------------------------------------
def _non_raw_files(home: Path) -> dict[str, bytes]:
    wh = home / "warehouse"
    return {p.relative_to(wh).as_posix(): p.read_bytes() for p in sorted(wh.rglob("*.parquet"))
            if p.relative_to(wh).parts[0] not in ("raw", "_tmp")
            and not p.relative_to(wh).as_posix().startswith(f"{AUDIT_EVENTS.layer}/{AUDIT_EVENTS.name}/")}


@pytest.fixture
def purged_home(ran, tmp_path) -> Path:
    from warehouse.store import Warehouse
    from warehouse.views import build_views

    home = tmp_path / "home"
    shutil.copytree(ran.home, home, ignore=shutil.ignore_patterns("prefect"))
    build_views(Warehouse(home))  # the copied views still point into the original home
    return home


def _ctx(home: Path, run_id: str = "test-purge"):
    from flows.settings import Settings
    from flows.steps import Context

    return Context.create(Settings(home=home), run_id)


def _landing_files(home: Path) -> set[Path]:
    return {p for p in (home / "landing").rglob("*") if p.is_file()}


def test_purge_empties_identities_and_keeps_every_analyst_table(ran, purged_home):
    from flows.privacy import purge_identities, read_audit

    ctx = _ctx(purged_home)
    before = _non_raw_files(purged_home)
    hostile = {purged_home / "landing" / rel for rel in HOSTILE_COPIES}
    n_landing = len(_landing_files(purged_home) - hostile)
    assert {f.suffix for f in _landing_files(purged_home) - hostile} == {".csv", ".hl7", ".xml", ".hpr"}
    res = purge_identities(ctx, older_than_days=0, now=datetime.now() + timedelta(seconds=1))
    assert res["files_purged"] == ran.summary["files_new"] and res["rows_purged"] > 1000
    assert res["rejected_lines_redacted"] > 0 and res["files_kept"] == 0
    assert res["landing_files_deleted"] == n_landing
    # files refused for their name are left for the operator: purge never follows an unsafe name
    assert _landing_files(purged_home) == hostile
    # raw: identities gone, results and lineage kept
    db = purged_home / "biolake.duckdb"
    ids = [c for c in IDENTIFYING_COLUMNS]
    left = q(db, "SELECT " + ", ".join(f"count({c}) AS {c}" for c in ids) + ", count(*) AS n, "
             "count(value_raw) AS v, count(request_id) AS r FROM raw.results")
    assert left.select(ids).sum_horizontal().item() == 0
    assert left["n"].item() == res["rows_purged"] and left["v"].item() > 0 and left["r"].item() > 0
    assert q(db, "SELECT count(raw_text) AS n FROM raw.rejected_lines")["n"].item() == 0
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert_clean(_scan_values(con, ran.ids, ("raw",)), "raw after the purge")
    finally:
        con.close()
    # every staging, marts and quality file is byte for byte what it was
    assert _non_raw_files(purged_home) == before
    events = read_audit(ctx.wh).filter(pl.col("kind") == "purge")
    assert events.height == 1 and events["run_id"][0] == "test-purge"
    assert '"files_purged": %d' % res["files_purged"] in events["details"][0]
    # a second purge has nothing left to do and records nothing
    again = purge_identities(ctx, older_than_days=0, now=datetime.now() + timedelta(seconds=1))
    assert again["files_purged"] == 0 and again["landing_files_deleted"] == 0
    assert read_audit(ctx.wh).filter(pl.col("kind") == "purge").height == 1


def test_aggregates_recomputed_after_a_purge_equal_the_truth(ran, purged_home):
    """The marts rebuilt from scratch out of the purged warehouse are the generator's truth."""
    from flows import publish as pub
    from flows import steps
    from flows.epi import publish_epi
    from flows.privacy import purge_identities
    from warehouse import catalog_epi as ce

    ctx = _ctx(purged_home)
    purge_identities(ctx, older_than_days=0, now=datetime.now() + timedelta(seconds=1))
    before = q(purged_home / "biolake.duckdb", "SELECT * FROM marts.sidep_daily ORDER BY jour, dep, cl_age90")
    for t in (cat.FCT_LAB_RESULTS, cat.SIDEP_DAILY, cat.SIDEP_PERSON_DAYS, *ce.TABLES):
        shutil.rmtree(ctx.wh.table_dir(t), ignore_errors=True)
    pub.publish_fct(ctx, ctx.wh.partitions(cat.STG_RESULTS_CODED))
    publish_epi(ctx, steps.read_refs(ctx))
    after = q(purged_home / "biolake.duckdb", "SELECT * FROM marts.sidep_daily ORDER BY jour, dep, cl_age90")
    truth = pl.read_csv(purged_home / "truth" / "sidep_daily.csv", separator=";", schema_overrides={"dep": pl.Utf8})
    truth = truth.with_columns(pl.col("jour").str.to_date()).sort("jour", "dep", "cl_age90")
    assert after["T"].sum() > 0
    assert after.equals(before)
    assert after.cast(truth.schema).equals(truth)


def test_purge_respects_the_delay_and_dry_run(ran, purged_home):
    from flows.privacy import purge_identities

    ctx = _ctx(purged_home)
    ingested = q(purged_home / "biolake.duckdb", "SELECT max(ingested_at) AS t FROM raw.results")["t"].item()
    young = purge_identities(ctx, older_than_days=30, now=ingested + timedelta(days=29))
    assert young["files_purged"] == 0 and young["files_kept"] >= ran.summary["files_new"]
    dry = purge_identities(ctx, older_than_days=30, now=ingested + timedelta(days=31), dry_run=True)
    assert dry["files_purged"] == ran.summary["files_new"] and dry["landing_files_deleted"] > 0
    n = q(purged_home / "biolake.duckdb", "SELECT count(patient_nir) AS n FROM raw.results")["n"].item()
    assert n > 1000, "a dry run changed the raw layer"
    assert list((purged_home / "landing").rglob("*.csv"))


def test_purge_command(ran, purged_home):
    from typer.testing import CliRunner

    from flows.privacy import privacy_app

    runner = CliRunner()
    res = runner.invoke(privacy_app, ["purge", "--home", str(purged_home), "--older-than", "0", "--keep-landing"])
    assert res.exit_code == 0, res.output
    assert "purged identities of" in res.output
    assert list((purged_home / "landing").rglob("*.csv")), "--keep-landing deleted landing files"
    n = q(purged_home / "biolake.duckdb", "SELECT count(family_name) AS n FROM raw.results")["n"].item()
    assert n == 0
    res = runner.invoke(privacy_app, ["audit", "--home", str(purged_home), "--kind", "purge"])
    assert res.exit_code == 0 and "purge" in res.output
    res = runner.invoke(privacy_app, ["purge", "--home", str(purged_home), "--older-than", "-1"])
    assert res.exit_code != 0


def test_purge_flow(ran, purged_home):
    from flows.privacy import read_audit
    from flows.scheduled import purge_flow
    from warehouse.store import Warehouse

    res = purge_flow(home=str(purged_home), older_than_days=0)
    assert res["files_purged"] == ran.summary["files_new"]
    n = q(purged_home / "biolake.duckdb", "SELECT count(patient_nir) AS n FROM raw.results")["n"].item()
    assert n == 0
    purge = read_audit(Warehouse(purged_home)).filter(pl.col("kind") == "purge")
    assert purge.height == 1 and purge["run_id"][0] != "test-purge"
