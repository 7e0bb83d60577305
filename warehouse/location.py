"""Which home a DuckDB file was built for, read back from the paths its views read.

``biolake.duckdb`` and ``analyst.duckdb`` hold views whose SQL names the Parquet files by absolute
path (``Warehouse.sql_source``, ``ref_view_sql``): a database copied or restored with its home to
another path still reads the original's files, or fails once they are gone. The record of the home
a database was built for is therefore those paths themselves, the very thing that goes wrong: every
string literal of a view's SQL that names Parquet files (it ends with ``.parquet``: a file, a pack
or a ``**/*.parquet`` glob) must lie under the current ``<home>/warehouse/``. Nothing is added to the
databases (analysts see only the catalog's objects), a database built by an earlier biolake is
judged the same way, and the check is one catalog query on a read-only connection: no Parquet file
is opened. A database whose views read no file at all (a warehouse without data) reads nothing of
another home and passes.

Commands that open the databases (``biolake sql``, ``connect_analyst``) check this first;
``flows/databases.py`` rebuilds a database built for another home, ``biolake views`` both.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import duckdb

from warehouse.catalog import LAYERS

_LITERAL = re.compile(r"'((?:[^']|'')*)'")
_HOME_OF = re.compile(r"^(.*)/warehouse/(?:" + "|".join(map(re.escape, LAYERS)) + r")/")


def foreign_paths(con: duckdb.DuckDBPyConnection, wh_root: Path) -> list[str]:
    """The Parquet paths the views of ``con``'s database read outside ``wh_root``, in view order."""
    prefix = str(Path(wh_root).resolve()) + os.sep
    out: list[str] = []
    for (sql,) in con.execute("SELECT sql FROM duckdb_views() WHERE NOT internal AND sql IS NOT NULL "
                              "ORDER BY schema_name, view_name").fetchall():
        for m in _LITERAL.finditer(sql):
            value = m.group(1).replace("''", "'")
            if value.endswith(".parquet") and not value.startswith(prefix):
                out.append(value)
    return out


def home_of(path: str) -> str:
    """The data home a Parquet path of a view lies in (``<home>/warehouse/<layer>/...``), or the path
    itself when it does not look like one."""
    m = _HOME_OF.match(path)
    return m.group(1) if m else path


def built_elsewhere(db_path: Path, wh_root: Path) -> str | None:
    """The other home ``db_path`` was built for (its views read Parquet files outside ``wh_root``),
    or None when every file its views read lies under ``wh_root``."""
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        paths = foreign_paths(con, wh_root)
    finally:
        con.close()
    return home_of(paths[0]) if paths else None


class BuiltForAnotherHome(ValueError):
    """A database whose views read the files of another home than the one it is opened for."""

    def __init__(self, db_path: Path, other_home: str, home: Path):
        self.db_path, self.other_home, self.home = Path(db_path), other_home, Path(home)
        super().__init__(
            f"{db_path} was built for another home ({other_home}): this home was copied or restored from "
            f"there, and its views would read that home's files; run `biolake views --home {shlex.quote(str(home))}` once "
            "(as the account that runs the pipeline) to rebuild both databases for this home")
