"""The analyst database: ``<home>/analyst.duckdb``, views over the non-identifying layers only.

``<home>/biolake.duckdb`` (warehouse/views.py) is the data engineers' database: it exposes every
layer, raw included. Public-health analysts get ``analyst.duckdb`` instead, built from the same
catalog with these rules (docs/privacy.md explains them):

- no view over the raw layer nor over any table declared ``identifying``; the only paths the view
  definitions read are under ``warehouse/{staging,marts,quality,ref}`` (a test checks every one);
- no column declared identifying (``Column.identifying``: NIR, names, birth date, postal code), no
  ``raw_text``; and a few more columns that can carry an identity without being declared so:
  ``request_id`` and ``message_id`` (the lab can link them back to its patient), ``path`` and
  ``duplicate_of`` (labs sometimes name files, and folders, after the patient); a ``detail`` next
  to them shows nothing of their paths below the lab folder (``masked_detail_sql``); audit
  subjects of landing files are hidden;
- like biolake.duckdb it holds views that read the Parquet files (a run never has to wait for an
  analyst), except for the quality tables that hold landing paths (``PRIVATE_QUALITY_TABLES``):
  their folders are closed to analysts like raw, so the database holds a cleaned copy of each
  (the columns above hidden or rewritten), rebuilt at every run.

DuckDB lets anyone who opens a database run ``read_parquet`` on any file the operating system
lets them read: a view cannot prevent that. The raw layer and the quality tables holding landing
paths are therefore closed at the OS level (``restrict_raw_permissions``: ``warehouse/raw``,
``warehouse/quality/{file_log,quarantine,audit_events,expectation_results}``, ``warehouse/_cache`` mode 0700,
owner = the pipeline's account), and
``connect_analyst`` opens the database read-only with external access limited to the four
analyst layers and the configuration locked, for tools that go through biolake.

``read_only_query`` is what ``biolake sql`` should use: one SELECT statement, read-only, no file
access outside the warehouse, configuration locked.
"""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import Sequence
from pathlib import Path

import duckdb
import polars as pl

from transforms.canonical import IDENTIFYING_COLUMNS
from warehouse import catalog as cat
from warehouse.catalog import Table
from warehouse.location import BuiltForAnotherHome, foreign_paths, home_of
from warehouse.store import Warehouse
from warehouse.views import comment_on, create_over_files, create_reference_views, sql_literal

ANALYST_DB_NAME = "analyst.duckdb"
ANALYST_LAYERS = ("staging", "marts", "quality", "ref")

# columns never shown to analysts although no catalog flag marks them (why, for docs and tests)
HIDDEN_COLUMNS: dict[str, str] = {
    "raw_text": "the raw text of an input line or message",
    "request_id": "the lab's request number: the lab can link it back to its patient",
    "message_id": "the message or document id: the sender can link it back to its patient",
    "path": "landing file name: labs sometimes name files after the patient",
    "duplicate_of": "landing file name of the first delivery",
}
# the columns above that hold a landing path: their file names are also cut out of a ``detail``
PATH_COLUMNS = ("path", "duplicate_of")
# quality gate suites whose failures name landing files (quality/checkpoints.py label_columns)
PATH_LABELLED_SUITES = ("file_accounting", "landing_files")
# quality tables whose Parquet files hold landing paths (labs sometimes name files after the
# patient): their folders are closed like raw (PRIVATE_DIR_MODE), and analyst.duckdb holds a cleaned
# copy of each (a table, rebuilt at every run) instead of a view over the files
PRIVATE_QUALITY_TABLES = ("quality.file_log", "quality.quarantine", "quality.audit_events",
                          "quality.expectation_results")  # the gate's failures may name landing files
DB_FILE_MODE = 0o644  # analysts read it; only the pipeline's account writes it
RAW_DIR_MODE = 0o700
PRIVATE_DIR_MODE = RAW_DIR_MODE


class UnsafeQuery(ValueError):
    """A query that is not a single read-only SELECT."""


# --------------------------------------------------------------------------------------------
# what analysts see
# --------------------------------------------------------------------------------------------
def _identifying_names(t: Table) -> set[str]:
    return {c.name for c in t.columns if c.identifying} | (IDENTIFYING_COLUMNS & {c.name for c in t.columns})


def analyst_tables() -> list[Table]:
    """Catalog tables analysts may query: not raw, not declared identifying."""
    return [t for t in cat.TABLES if t.layer in ANALYST_LAYERS and not t.identifying]


def masked_path_sql(col: str) -> str:
    """SQL: what analysts may see of the landing path in ``col``: its lab folder (the first
    component) and nothing below it, ``<lab>/<file>`` for a file (a file at the root of the
    landing area: ``<file>``), ``<lab>/<folder>/`` for a folder below the lab folder (a path ending
    in ``/``: FOLDER_UNREADABLE); null when nothing needs hiding (a lab folder itself, ``labo_x/``,
    or the landing area, ``./``). Sub-folders are hidden like file names (QA: a folder
    ``labo_alpha/ROUX Denis 05-05-1972/`` reached the analysts through ``detail``)."""
    return (f"CASE WHEN {col} IS NULL OR {col} = '' THEN NULL "
            f"WHEN strpos({col}, '/') = 0 THEN '<file>' "
            f"WHEN {col} LIKE '%/' AND strpos(left({col}, length({col}) - 1), '/') = 0 THEN NULL "
            f"WHEN {col} LIKE '%/' THEN split_part({col}, '/', 1) || '/<folder>/' "
            f"ELSE split_part({col}, '/', 1) || '/<file>' END")


def masked_detail_sql(expr: str, path_cols: Sequence[str]) -> str:
    """SQL: the message ``expr`` without the landing paths of ``path_cols``. Discovery's messages
    start with the landing-relative path (``labo_alpha/<sub-folder>/x.csv: a symbolic link...``),
    a parser's with the file's base name, a re-delivery's names the first copy (``same content as
    <lab>/<file>``; QA): each whole path is replaced by ``masked_path_sql``, then each base name by
    ``<file>``. Also rewrites the HPRIM reject details of earlier versions, which quoted an unknown
    record type (possibly a family name, QA): transforms.parsers.hprim.UNKNOWN_RECORD_DETAIL."""
    from transforms.parsers.hprim import UNKNOWN_RECORD_DETAIL

    for col in path_cols:  # (replace(x, '', y) is x: a null or empty path changes nothing)
        path = f"coalesce({col}, '')"
        expr = f"replace({expr}, {path}, coalesce({masked_path_sql(col)}, {path}))"
    for col in path_cols:
        expr = f"replace({expr}, regexp_extract(coalesce({col}, ''), '[^/]*$'), '<file>')"
    return (f"regexp_replace({expr}, 'unknown HPRIM record type [A-Z][A-Z0-9]{{0,3}}: not read "
            f"\\(results travel in OBX records\\)', {sql_literal(UNKNOWN_RECORD_DETAIL)})")


def analyst_columns(t: Table) -> list[tuple[str, str]]:
    """(column name, SQL expression over the table's full view) for each column analysts see."""
    names = {c.name for c in t.columns}
    hidden = _identifying_names(t) | set(HIDDEN_COLUMNS)
    out: list[tuple[str, str]] = []
    for c in t.columns:
        if c.name in hidden:
            continue
        expr = f'"{c.name}"'
        if c.name == "detail" and names & set(PATH_COLUMNS):
            expr = masked_detail_sql(expr, [n for n in PATH_COLUMNS if n in names])
        elif t.qualified == "quality.audit_events" and c.name == "subject":
            expr = "CASE WHEN kind LIKE 'file_%' THEN NULL ELSE subject END"
        elif t.qualified == "quality.expectation_results" and c.name == "observed":
            # these suites name their failing rows by landing path (what an engineer must fix)
            expr = (f"CASE WHEN suite IN ({', '.join(repr(x) for x in PATH_LABELLED_SUITES)}) AND NOT success "
                    "THEN '(names landing files: see biolake.duckdb)' ELSE observed END")
        out.append((c.name, expr))
    return out


# --------------------------------------------------------------------------------------------
# build
# --------------------------------------------------------------------------------------------
def private_dirs(wh: Warehouse) -> list[Path]:
    """The folders only the pipeline's account may read: the raw layer, the folders of the
    quality tables that hold landing paths (``PRIVATE_QUALITY_TABLES``) and the warehouse's caches
    (``_cache``: keys and codes computed from raw, flows/publish.py quarantine_keys; QA priv F2)."""
    by_name = {t.qualified: t for t in cat.TABLES}
    return [wh.root / "raw", *(wh.table_dir(by_name[q]) for q in PRIVATE_QUALITY_TABLES), wh.root / "_cache"]


def restrict_raw_permissions(wh: Warehouse) -> list[Path]:
    """Make the raw layer and the quality tables that hold landing paths readable by the pipeline's
    own account only (mode 0700). Returns the directories changed. Harmless to call at every run;
    the folders are created if missing so the mode is set before the first row is written."""
    changed = []
    for d in private_dirs(wh):
        d.mkdir(parents=True, exist_ok=True)
        if stat.S_IMODE(d.stat().st_mode) != PRIVATE_DIR_MODE:
            os.chmod(d, PRIVATE_DIR_MODE)
            changed.append(d)
    close_file(wh.root / "landing_hashes.json")  # every landing path (written 0600 since, QA priv F3)
    return changed


PRIVATE_FILE_MODE = 0o600  # files outside the closed folders that name landing files (QA priv F3)


def close_dir(path: Path) -> Path:
    """Create ``path`` if missing and make it readable by the pipeline's own account only (0700):
    for folders the pipeline writes that hold landing paths (the GX validation store, Data Docs,
    the Prefect home). Returns the path."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) != PRIVATE_DIR_MODE:
        os.chmod(path, PRIVATE_DIR_MODE)
    return path


def close_file(path: Path) -> Path:
    """Make the file ``path`` readable and writable by the pipeline's own account only (0600):
    ``warehouse/landing_hashes.json``, ``reports/data_quality.html`` (QA priv F3)."""
    path = Path(path)
    if path.exists() and stat.S_IMODE(path.stat().st_mode) != PRIVATE_FILE_MODE:
        os.chmod(path, PRIVATE_FILE_MODE)
    return path


def build_analyst_db(wh: Warehouse, db_path: Path | None = None) -> Path:
    """(Re)build ``<home>/analyst.duckdb`` atomically and return its path (see module doc)."""
    db_path = Path(db_path or wh.home / ANALYST_DB_NAME)
    restrict_raw_permissions(wh)
    tmp = db_path.with_name(f".{db_path.name}.{uuid.uuid4().hex}.tmp")
    con = duckdb.connect(str(tmp))
    try:
        for layer in ANALYST_LAYERS:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {layer}")
        for t in analyst_tables():
            if t.qualified == cat.REASON_CODES.qualified:
                continue
            cols = analyst_columns(t)
            select = ", ".join(f'{expr} AS "{name}"' for name, expr in cols)
            kind = "TABLE" if t.qualified in PRIVATE_QUALITY_TABLES else "VIEW"  # a cleaned copy
            create_over_files(con, wh, t, lambda inner: f"CREATE OR REPLACE {kind} {t.qualified} AS "
                                                        f"SELECT {select} FROM ({inner}) AS src")
            comment_on(con, kind, t, [name for name, _ in cols])
        create_reference_views(con, wh)  # reason codes and ref: public reference data, as in biolake.duckdb
        con.execute("CHECKPOINT")
    finally:
        con.close()
    os.chmod(tmp, DB_FILE_MODE)
    os.replace(tmp, db_path)
    wal = tmp.with_name(tmp.name + ".wal")
    if wal.exists():
        wal.unlink()
    return db_path


def analyst_dirs(wh_root: Path) -> list[Path]:
    """The only directories the analyst views read: the staging, marts and ref layers, and the
    folders of the quality tables other than ``PRIVATE_QUALITY_TABLES`` (their landing paths stay
    out of reach of ``read_parquet`` too; QA: the whole quality folder was allowed)."""
    root = Path(wh_root)
    quality = [root / t.layer / t.name for t in analyst_tables()
               if t.layer == "quality" and t.qualified not in PRIVATE_QUALITY_TABLES]
    return [*(root / layer for layer in ANALYST_LAYERS if layer != "quality"), *quality]


# --------------------------------------------------------------------------------------------
# locked, read-only connections
# --------------------------------------------------------------------------------------------
def locked_connection(db_path: Path, allowed_dirs: Sequence[Path]) -> duckdb.DuckDBPyConnection:
    """``db_path`` opened read-only; file access limited to ``allowed_dirs``; configuration locked.

    What it prevents: writing the database (read-only), reading or writing any file outside
    ``allowed_dirs`` (``COPY ... TO``, ``ATTACH``, ``read_text``, ``read_parquet`` of the raw layer,
    ``INSTALL``/``LOAD``), and undoing these settings (``SET``/``RESET`` fail once locked). It
    cannot make ``allowed_dirs`` themselves read-only: operating-system permissions do that, and
    ``read_only_query`` accepts nothing but SELECT.
    """
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        dirs = "[" + ", ".join(sql_literal(str(Path(d).resolve()) + os.sep) for d in allowed_dirs) + "]"
        con.execute(f"SET allowed_directories = {dirs}")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


def connect_analyst(db_path: Path, wh_root: Path | None = None) -> duckdb.DuckDBPyConnection:
    """The analyst database, read-only, able to read the folders of its views (``analyst_dirs``) and nothing else.

    ``wh_root`` defaults to ``<folder of db_path>/warehouse``. A database built for another home (the
    home was copied or restored from there: its views would read that home's files) is refused with
    ``BuiltForAnotherHome`` (a ``ValueError``), which says how to rebuild it.
    """
    db_path = Path(db_path)
    root = Path(wh_root) if wh_root is not None else db_path.parent / "warehouse"
    con = locked_connection(db_path, analyst_dirs(root))
    try:
        elsewhere = foreign_paths(con, root)  # a home copied or restored elsewhere (warehouse/location.py)
    except BaseException:
        con.close()
        raise
    if elsewhere:
        con.close()
        raise BuiltForAnotherHome(db_path, home_of(elsewhere[0]), Path(root).resolve().parent)
    return con


def check_select_only(sql: str) -> None:
    """Raise ``UnsafeQuery`` unless ``sql`` is exactly one SELECT statement (``FROM``, ``WITH``,
    ``DESCRIBE``, ``SHOW``, ``SUMMARIZE`` and ``VALUES`` parse as SELECT). ``EXPLAIN`` is refused:
    ``EXPLAIN ANALYZE COPY ... TO`` executes the COPY."""
    parser = duckdb.connect(":memory:")
    try:
        statements = parser.extract_statements(sql)
    except duckdb.Error as err:
        raise UnsafeQuery(f"cannot parse the query: {err}") from None
    finally:
        parser.close()
    if len(statements) != 1:
        raise UnsafeQuery(f"expected exactly one SELECT statement, got {len(statements)} statements")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise UnsafeQuery(f"only SELECT queries are allowed here, not {kind.name}")


def read_only_query(db_path: Path, sql: str, allowed_dirs: Sequence[Path]) -> pl.DataFrame:
    """Run one SELECT against ``db_path`` through ``locked_connection``; the result as polars."""
    check_select_only(sql)
    con = locked_connection(db_path, allowed_dirs)
    try:
        return con.sql(sql).pl()
    finally:
        con.close()
