"""A data home copied or restored elsewhere: its two DuckDB files hold views over the Parquet files
of the home they were built in (absolute paths). Every command that opens them notices and
rebuilds them for the home it was given before querying (QA: `biolake sql --home COPY` read the
original's files, or failed once the original was gone)."""

from __future__ import annotations

import shutil

import duckdb
import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.lock import warehouse_lock
from tests.helpers import query
from warehouse.analyst import ANALYST_DB_NAME, build_analyst_db, connect_analyst
from warehouse.store import Warehouse
from warehouse.views import build_views, sql_literal

runner = CliRunner()
COUNT = "SELECT count(*) AS n FROM marts.fct_lab_results"
DATABASES = ("biolake.duckdb", ANALYST_DB_NAME)


def _count(out) -> int:
    assert out.exit_code == 0, out.output
    lines = out.stdout.strip().splitlines()  # stderr may say the database was re-pointed
    assert lines[0] == "n", out.output
    return int(lines[1])


@pytest.fixture
def homes(clean_run, tmp_path):
    """(original, copy, rows of marts.fct_lab_results): a processed home with both databases built
    for it, and a copy of it made with ``cp -r`` (databases included) at another path."""
    src, _ = clean_run
    original = tmp_path / "old-disk" / "home"
    shutil.copytree(src, original, ignore=shutil.ignore_patterns("*.duckdb", ".biolake.lock"))
    wh = Warehouse(original)
    build_views(wh)  # as the original's last run left them
    build_analyst_db(wh)
    copy = tmp_path / "new disk's place" / "home"  # a space and a quote: paths are SQL literals
    shutil.copytree(original, copy)
    return original, copy, int(query(src, COUNT)["n"][0])


def _fct_files_removed(home) -> None:
    """The original changed after the copy: its fact table lost every file."""
    shutil.rmtree(home / "warehouse" / "marts" / "fct_lab_results")


def _paths_of_views(db) -> str:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return "\n".join(r[0] for r in con.execute("SELECT sql FROM duckdb_views() WHERE NOT internal").fetchall())
    finally:
        con.close()


@pytest.mark.parametrize("analyst", [False, True], ids=["engineers", "analysts"])
def test_sql_on_a_copy_whose_original_is_gone_reads_the_copy(homes, analyst):
    original, copy, n = homes
    shutil.rmtree(original)
    flag = ["--analyst"] if analyst else []
    out = runner.invoke(app, ["sql", *flag, "--home", str(copy), "--csv", COUNT])
    assert _count(out) == n > 0
    assert "built for another home" in out.stderr and str(original) in out.stderr  # said, on stderr
    db = copy / (ANALYST_DB_NAME if analyst else "biolake.duckdb")
    if analyst:  # every build of the analysts' database is in the audit trail
        from flows.privacy import read_audit

        last = read_audit(Warehouse(copy)).filter(kind="analyst_db_built").tail(1)
        assert last["subject"][0] == str(db.resolve()) and last["producer"][0].endswith("sql --analyst")
    views = _paths_of_views(db)
    assert str(original) not in views and sql_literal(str(copy.resolve() / "warehouse"))[:-1] in views


@pytest.mark.parametrize("analyst", [False, True], ids=["engineers", "analysts"])
def test_sql_on_a_copy_whose_original_changed_reads_the_copy(homes, analyst):
    original, copy, n = homes
    _fct_files_removed(original)
    flag = ["--analyst"] if analyst else []
    assert _count(runner.invoke(app, ["sql", *flag, "--home", str(copy), "--csv", COUNT])) == n


def test_views_command_repoints_both_databases_for_direct_duckdb_use(homes):
    original, copy, n = homes
    shutil.rmtree(original)
    out = runner.invoke(app, ["views", "--home", str(copy)], terminal_width=400)
    assert out.exit_code == 0, out.output
    assert out.output.count("rebuilt for") == 2 and str(original) in out.output, out.output
    for name in DATABASES:  # what an analyst opening the file with duckdb or Python gets
        con = duckdb.connect(str(copy / name), read_only=True)
        try:
            assert con.execute(COUNT).fetchone()[0] == n
        finally:
            con.close()
    con = connect_analyst(copy / ANALYST_DB_NAME)
    try:
        assert con.execute(COUNT).fetchone()[0] == n
    finally:
        con.close()


def test_connect_analyst_refuses_a_database_built_for_another_home(homes):
    original, copy, _ = homes
    with pytest.raises(ValueError, match="biolake views --home"):
        connect_analyst(copy / ANALYST_DB_NAME)


def test_a_database_built_for_its_own_home_is_not_rebuilt(homes):
    original, _, n = homes
    before = {name: (original / name).stat().st_ino for name in DATABASES}
    for flag in ([], ["--analyst"]):
        assert _count(runner.invoke(app, ["sql", *flag, "--home", str(original), "--csv", COUNT])) == n
    assert {name: (original / name).stat().st_ino for name in DATABASES} == before


@pytest.mark.parametrize("analyst", [False, True], ids=["engineers", "analysts"])
def test_a_busy_warehouse_is_a_one_line_refusal_not_a_query_of_the_old_place(homes, analyst):
    original, copy, _ = homes
    flag = ["--analyst"] if analyst else []
    db = copy / (ANALYST_DB_NAME if analyst else "biolake.duckdb")
    before = db.stat().st_ino
    with warehouse_lock(copy.resolve(), timeout=1):  # a run writing to the copy
        out = runner.invoke(app, ["sql", *flag, "--home", str(copy), "--csv", COUNT], terminal_width=400)
    assert out.exit_code == 2, out.output
    assert len(out.output.strip().splitlines()) == 1, out.output
    assert "error" in out.output and "another home" in out.output and "run" in out.output
    assert db.stat().st_ino == before  # left as it was: the run rebuilds it
    # once the run is gone, the same command re-points it and reads the copy
    assert _count(runner.invoke(app, ["sql", *flag, "--home", str(copy), "--csv", COUNT])) > 0


def test_an_account_that_cannot_write_the_home_is_told_whom_to_ask(homes, monkeypatch):
    import flows.lock

    original, copy, _ = homes

    def read_only_home(home, timeout=600, poll=0.2):
        raise PermissionError(13, "Permission denied", str(home / ".biolake.lock"))

    monkeypatch.setattr(flows.lock, "warehouse_lock", read_only_home)
    out = runner.invoke(app, ["sql", "--analyst", "--home", str(copy), "--csv", COUNT], terminal_width=400)
    assert out.exit_code == 2 and len(out.output.strip().splitlines()) == 1, out.output
    assert "another home" in out.output and "biolake views --home" in out.output and "Permission denied" in out.output


def test_views_needs_a_warehouse(tmp_path):
    out = runner.invoke(app, ["views", "--home", str(tmp_path / "typo")])
    assert out.exit_code == 2 and "no warehouse" in out.output
    assert not (tmp_path / "typo").exists()
