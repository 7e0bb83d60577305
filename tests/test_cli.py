"""The command line: sql (engineers' and analysts' databases), the mapping work queue round trip with
back-fill, the missing-secret error, generate's formats, the summary per format, and the databases
rebuilt after a publication."""

from __future__ import annotations

import json
import logging
import os
import re

import polars as pl
import pytest
from typer.testing import CliRunner

from flows.cli import app
from tests.helpers import copy_home, query
from warehouse.views import build_views, sql_literal

runner = CliRunner()


def test_sql_prints_results_and_refuses_writes(clean_run):
    home, _ = clean_run
    out = runner.invoke(app, ["sql", "--home", str(home), "--csv",
                              "SELECT count(*) AS n FROM marts.fct_lab_results"])
    assert out.exit_code == 0, out.output
    n = query(home, "SELECT count(*) AS n FROM marts.fct_lab_results")["n"][0]
    assert out.output.strip().splitlines() == ["n", str(n)]
    bad = runner.invoke(app, ["sql", "--home", str(home), "CREATE TABLE marts.x AS SELECT 1"])
    assert bad.exit_code == 2 and "error" in bad.output.lower()
    # values are printed as they are, never read as rich markup (QA: '[/x]' crashed, '[bold]' vanished)
    shown = runner.invoke(app, ["sql", "--home", str(home), "SELECT '[/x]' AS a, '[bold]hi' AS \"[b]\""],
                          terminal_width=200)
    assert shown.exit_code == 0, shown.output
    assert "[/x]" in shown.output and "[bold]hi" in shown.output and "[b]" in shown.output


def test_sql_without_a_database_says_what_to_do(tmp_path):
    out = runner.invoke(app, ["sql", "--home", str(tmp_path), "SELECT 1"])
    assert out.exit_code == 2 and "biolake run" in out.output
    out = runner.invoke(app, ["sql", "--analyst", "--home", str(tmp_path), "SELECT 1"])
    assert out.exit_code == 2 and "analyst.duckdb" in out.output and "biolake analyst-db" in out.output


def _csv_rows(out) -> list[str]:
    assert out.exit_code == 0, out.output
    return out.output.strip().splitlines()


def test_sql_analyst_queries_the_analyst_database_and_never_the_raw_layer(clean_run):
    home, _ = clean_run
    count = "SELECT count(*) AS n FROM marts.fct_lab_results"
    engineer = _csv_rows(runner.invoke(app, ["sql", "--home", str(home), "--csv", count]))
    analyst = _csv_rows(runner.invoke(app, ["sql", "--analyst", "--home", str(home), "--csv", count]))
    assert analyst == engineer and int(analyst[1]) > 0

    # the engineers' form reads raw.results and its files; the analyst form neither
    raw_files = sql_literal(str(home / "warehouse" / "raw" / "results" / "**" / "*.parquet"))
    # QA: the file log's own folder (landing paths; closed to analysts) was readable by read_parquet
    log_files = sql_literal(str(home / "warehouse" / "quality" / "file_log" / "**" / "*.parquet"))
    for raw in ("SELECT count(*) AS n FROM raw.results", f"SELECT count(*) AS n FROM read_parquet({raw_files})",
                f"SELECT count(*) AS n FROM read_parquet({log_files}, union_by_name = true)"):
        assert int(_csv_rows(runner.invoke(app, ["sql", "--home", str(home), "--csv", raw]))[1]) > 0
        refused = runner.invoke(app, ["sql", "--analyst", "--home", str(home), "--csv", raw])
        assert refused.exit_code == 2 and "error" in refused.output.lower(), refused.output
    schemas = _csv_rows(runner.invoke(app, ["sql", "--analyst", "--home", str(home), "--csv",
                                            "SELECT DISTINCT schema_name FROM duckdb_tables() UNION "
                                            "SELECT DISTINCT schema_name FROM duckdb_views() WHERE NOT internal"]))
    assert "raw" not in schemas[1:] and {"staging", "marts", "quality", "ref"} <= set(schemas[1:])
    # what the analysts' database hides: landing paths of the file log
    header = _csv_rows(runner.invoke(app, ["sql", "--analyst", "--home", str(home), "--csv",
                                           "SELECT * FROM quality.file_log LIMIT 1"]))[0].split(";")
    assert "file_id" in header and "path" not in header and "duplicate_of" not in header
    # the quality tables that are views over their files still read (run_log: a folder analysts may read)
    assert int(_csv_rows(runner.invoke(app, ["sql", "--analyst", "--home", str(home), "--csv",
                                             "SELECT count(*) AS n FROM quality.run_log"]))[1]) >= 0
    bad = runner.invoke(app, ["sql", "--analyst", "--home", str(home), "CREATE TABLE marts.x AS SELECT 1"])
    assert bad.exit_code == 2 and "error" in bad.output.lower()


def test_run_without_secret_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.delenv("BIOLAKE_PSEUDONYM_SECRET", raising=False)
    monkeypatch.delenv("BIOLAKE_DEMO", raising=False)
    out = runner.invoke(app, ["run", "--home", str(tmp_path)])
    assert out.exit_code == 2 and "BIOLAKE_PSEUDONYM_SECRET" in out.output


def test_run_refuses_a_weak_or_changed_secret_and_a_missing_landing(tmp_path, monkeypatch):
    from flows import steps
    from flows.settings import SecretChanged, Settings

    for weak in ("short", "a" * 32, " " * 20):
        monkeypatch.setenv("BIOLAKE_PSEUDONYM_SECRET", weak)
        out = runner.invoke(app, ["run", "--home", str(tmp_path)])
        assert out.exit_code == 2 and "at least 16" in out.output, weak
    monkeypatch.setenv("BIOLAKE_PSEUDONYM_SECRET", "first-key-of-this-warehouse")
    out = runner.invoke(app, ["run", "--home", str(tmp_path / "typo")])  # QA: built an empty warehouse, exit 0
    assert out.exit_code == 2 and "no landing folder" in out.output and not (tmp_path / "typo").exists()
    # QA: a second key split every person in two; the first run records the key's check value
    steps.check_key(steps.Context.create(Settings(home=tmp_path), "r1"))
    steps.check_key(steps.Context.create(Settings(home=tmp_path), "r2"))  # the same key passes
    state = (tmp_path / "warehouse" / "state.json").read_text()
    assert "first-key" not in state and steps.key_check_value(b"first-key-of-this-warehouse") in state
    monkeypatch.setenv("BIOLAKE_PSEUDONYM_SECRET", "another-key-entirely-here")
    with pytest.raises(SecretChanged, match="counted twice"):
        steps.check_key(steps.Context.create(Settings(home=tmp_path), "r3"))
    (tmp_path / "landing").mkdir()
    out = runner.invoke(app, ["run", "--home", str(tmp_path)])  # refused before Prefect starts
    assert out.exit_code == 2 and "not the key the warehouse" in out.output


def test_the_demo_never_writes_into_a_real_home(tmp_path, monkeypatch):
    """QA: `demo` on a real home generated synthetic files, then stopped on the key; the next real
    run loaded them. `demo --fresh` would have deleted the real warehouse."""
    from flows import steps
    from flows.settings import Settings

    monkeypatch.setenv("BIOLAKE_PSEUDONYM_SECRET", "the-real-key-of-this-home")
    steps.check_key(steps.Context.create(Settings(home=tmp_path), "real-run"))  # what a real run records
    for extra in ([], ["--fresh"]):
        out = runner.invoke(app, ["demo", "--home", str(tmp_path), "--results", "200", *extra])
        assert out.exit_code == 2 and "built with a real key" in out.output, out.output
        assert not (tmp_path / "landing").exists() and (tmp_path / "warehouse" / "state.json").exists()


def test_a_busy_warehouse_is_a_one_line_error(tmp_path, monkeypatch):
    """QA: a lock timeout printed 132 lines of Prefect and Rich tracebacks."""
    from flows.lock import warehouse_lock

    (tmp_path / "landing").mkdir()
    monkeypatch.setenv("BIOLAKE_LOCK_TIMEOUT", "1")
    with warehouse_lock(tmp_path):  # another run, as far as the command can tell
        out = runner.invoke(app, ["run", "--home", str(tmp_path)])
    assert out.exit_code == 2, out.output
    assert "is writing to this warehouse: waiting" in out.output and "gave up after 1 s" in out.output
    assert "Traceback" not in out.output and not (tmp_path / "prefect").exists()  # Prefect never started


def test_broken_operator_files_and_settings_are_errors_before_the_run(tmp_path, monkeypatch):
    """QA: a words file in Windows-1252 or with a bad meaning, a mapping with an unknown LOINC, a bad
    BIOLAKE_LOCK_TIMEOUT: hundreds of lines of tracebacks from inside the flow run."""
    import subprocess
    import sys

    from tests.helpers import ROOT

    (tmp_path / "landing" / "labo_alpha").mkdir(parents=True)
    words = tmp_path / "mappings" / "qualitative"
    words.mkdir(parents=True)
    (words / "w.csv").write_bytes("text;meaning\nNégatif franc;negative\nbof;nimporte\n".encode("cp1252"))
    env = {**os.environ, "BIOLAKE_PSEUDONYM_SECRET": "-".join(["a", "test", "key", "long", "enough"]), "COLUMNS": "400"}

    def run(**extra):
        return subprocess.run([sys.executable, "-m", "flows.cli", "run", "--home", str(tmp_path)], cwd=ROOT,
                              capture_output=True, text=True, timeout=120, env={**env, **extra})

    out = run()
    assert out.returncode == 2 and "Traceback" not in out.stdout + out.stderr
    assert "w.csv:3: meaning 'nimporte'" in out.stderr and "w.csv:2" not in out.stderr and not out.stdout.strip()
    (words / "w.csv").unlink()
    (tmp_path / "mappings" / "labo_alpha.csv").write_text(
        "local_code,local_label,unit,specimen,loinc_num,valid_from,valid_to\nX,x,,,9999-9,,\n", encoding="utf-8")
    out = run()
    assert out.returncode == 2 and "labo_alpha.csv:2" in out.stderr and "Traceback" not in out.stderr
    out = run(BIOLAKE_LOCK_TIMEOUT="abc")
    assert out.returncode == 2 and "lock_timeout" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "prefect").exists()  # all refused before Prefect started


def test_the_demo_refuses_a_landing_holding_deliveries_it_did_not_generate(tmp_path, monkeypatch):
    """QA regr2 F5: a real delivery waiting in <home>/landing was deleted without a word by
    `demo --fresh`, and loaded with the public demo key (then exported) without it. The generator
    lists the files it writes (truth/generated_landing_files.json, with their sha256); the demo
    refuses any other file, or a generated one changed since, in one line, and deletes nothing."""
    # the demo drops BIOLAKE_PSEUDONYM_SECRET from the environment: monkeypatch puts it back after
    monkeypatch.setenv("BIOLAKE_PSEUDONYM_SECRET", os.environ["BIOLAKE_PSEUDONYM_SECRET"])
    real = tmp_path / "real"
    (real / "landing" / "labo_alpha").mkdir(parents=True)
    delivery = real / "landing" / "labo_alpha" / "real_delivery.csv"
    delivery.write_text("FINESS;N_DEMANDE\n", encoding="utf-8")
    for extra in (["--fresh"], []):
        out = runner.invoke(app, ["demo", "--home", str(real), "--results", "50", "--formats", "csv", *extra],
                            terminal_width=400)
        assert out.exit_code == 2, out.output
        assert "holds files the demo did not generate (labo_alpha/real_delivery.csv)" in out.output
        assert len(out.output.strip().splitlines()) == 1
        assert delivery.read_text(encoding="utf-8") == "FINESS;N_DEMANDE\n"
        assert sorted(p.name for p in real.iterdir()) == ["landing"]  # nothing generated, nothing run
    from transforms.synthetic import generate as gen
    from transforms.synthetic.generator import foreign_landing_files

    demo = tmp_path / "demo"
    gen(demo, n_results=300, seed=1, days=2)
    assert foreign_landing_files(demo) == []
    gen(demo, n_results=300, seed=2, days=3)  # a second demo in the same home: still only its own files
    assert foreign_landing_files(demo) == []
    generated = sorted(p for p in (demo / "landing").rglob("*") if p.is_file())
    generated[0].write_bytes(generated[0].read_bytes() + b"\n")  # changed since generated: not the demo's any more
    (demo / "landing" / "labo_alpha" / "lab_drop.csv").write_text("x\n", encoding="utf-8")
    assert foreign_landing_files(demo) == sorted([generated[0].relative_to(demo / "landing").as_posix(),
                                                  "labo_alpha/lab_drop.csv"])


def test_an_invalid_mdo_rules_table_is_refused_in_one_line_before_any_file_is_read(prefect_harness, tmp_path,
                                                                                  monkeypatch, caplog):
    """QA regr2 F7: BIOLAKE_MDO_RULES with a rule in the wrong unit (or specimen=sterile) was refused
    only by the publish task, after the files were ingested: exit 1 and 40 KB of tracebacks. The CLI
    preflight and the scheduled flow now check it first: one line naming the file and line, exit 2,
    nothing written."""
    import subprocess
    import sys

    from flows.pipeline import pipeline
    from tests.helpers import HEADER, ROOT
    from transforms.epi.mdo import MdoRulesError

    (tmp_path / "landing" / "labo_alpha").mkdir(parents=True)
    (tmp_path / "landing" / "labo_alpha" / "x.csv").write_text(HEADER + "\n", encoding="utf-8")
    shipped = (ROOT / "seeds" / "mdo_rules.csv").read_text(encoding="utf-8").splitlines()
    lead = next(i for i, row in enumerate(shipped) if row.startswith("saturnisme_enfant,10368-9,"))
    bad_unit = tmp_path / "rules_unit.csv"
    bad_unit.write_text("\n".join(shipped[:lead] + ["saturnisme_enfant,10368-9,ge,50,ug/L,,17,,,365,yes,"]
                                  + shipped[lead + 1:]) + "\n", encoding="utf-8")
    bad_specimen = tmp_path / "rules_specimen.csv"
    bad_specimen.write_text("\n".join(s.replace(",sterile_site_or_purpura,", ",sterile,") for s in shipped) + "\n",
                            encoding="utf-8")
    env = {**os.environ, "BIOLAKE_PSEUDONYM_SECRET": "-".join(["a", "test", "key", "long", "enough"]),
           "COLUMNS": "80"}
    for rules, where in ((bad_unit, f"rules_unit.csv:{lead + 1}: unit ug/L is not the canonical unit"),
                         (bad_specimen, "rules_specimen.csv:")):
        out = subprocess.run([sys.executable, "-m", "flows.cli", "run", "--home", str(tmp_path)], cwd=ROOT,
                             capture_output=True, text=True, timeout=120, env={**env, "BIOLAKE_MDO_RULES": str(rules)})
        assert out.returncode == 2, out.stdout + out.stderr
        assert "Traceback" not in out.stdout + out.stderr
        lines = out.stderr.strip().splitlines()  # errors on stderr, nothing on stdout
        assert not out.stdout.strip() and len(lines) == 1, lines
        assert lines[0].startswith("error: invalid MDO rules: ") and where in lines[0], lines
        assert not (tmp_path / "warehouse").exists() and not (tmp_path / "biolake.duckdb").exists()
        assert not (tmp_path / "prefect").exists()  # refused before Prefect started
    # the scheduled flow (serve runs it without the CLI) checks the table before reading any file
    monkeypatch.setenv("BIOLAKE_MDO_RULES", str(bad_unit))
    with pytest.raises(MdoRulesError, match=f"rules_unit.csv:{lead + 1}: unit ug/L"):
        pipeline(home=str(tmp_path))
    assert not (tmp_path / "warehouse" / "raw").exists() and not (tmp_path / "biolake.duckdb").exists()
    # ... and ends Failed with the one line as its message, no traceback in its logs (the Prefect UI)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        state = pipeline(home=str(tmp_path), return_state=True)
    assert state.is_failed() and state.message.startswith("invalid MDO rules: ") and "\n" not in state.message
    assert f"rules_unit.csv:{lead + 1}: unit ug/L" in state.message
    assert "Traceback" not in caplog.text and "Encountered exception" not in caplog.text, caplog.text
    from flows.scheduled import publication_flow  # the daily publication's deployment, likewise

    state = publication_flow(home=str(tmp_path), return_state=True)
    assert state.is_failed() and state.message.startswith("invalid MDO rules: ") and "\n" not in state.message


def test_expected_failures_are_one_line_errors_not_tracebacks(tmp_path):
    import socket
    import subprocess
    import sys

    from tests.helpers import ROOT

    def biolake(*args):
        return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=120)

    out = biolake("mappings", "import", "--home", str(tmp_path), str(tmp_path / "missing.csv"))
    assert out.returncode == 2 and "Traceback" not in out.stderr + out.stdout, out.stderr
    assert "missing.csv" in out.stderr and not out.stdout.strip()
    (tmp_path / "landing").mkdir()  # serve needs a landing folder (test_serve_refuses_a_home_without_landing)
    with socket.socket() as taken:  # QA: serve attached itself to the server holding the port
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        out = biolake("serve", "--home", str(tmp_path), "--port", str(taken.getsockname()[1]))
    assert out.returncode == 2 and "already in use" in out.stderr and "Traceback" not in out.stderr
    # a path with brackets and longer than the terminal: printed as it is, on one line of stderr
    home = tmp_path / ("[bold]x[/bold]" + "y" * 150)
    out = subprocess.run([sys.executable, "-m", "flows.cli", "sql", "--home", str(home), "SELECT 1"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "80"})
    assert out.returncode == 2 and not out.stdout.strip(), out.stdout
    assert out.stderr.strip().splitlines() == [f"error: {home / 'biolake.duckdb'} does not exist: run "
                                               "`biolake run` or `biolake demo` first"]


def test_approved_mapping_applies_and_backfills(clean_run, tmp_path):
    home = copy_home(clean_run[0], tmp_path / "home")
    wq = tmp_path / "workqueue.csv"
    out = runner.invoke(app, ["mappings", "export", "--home", str(home), "--out", str(wq)])
    assert out.exit_code == 0, out.output
    queue = pl.read_csv(wq, infer_schema=False)
    target = queue.filter((pl.col("source") == "labo_alpha") & (pl.col("local_code") == "VITD")
                          & (pl.col("rank") == "1"))
    assert target.height == 1
    chosen = target["loinc_num"][0]
    queue = queue.with_columns(
        decision=pl.when((pl.col("source") == "labo_alpha") & (pl.col("local_code") == "VITD"))
        .then(pl.when(pl.col("rank") == "1").then(pl.lit("approve")).otherwise(pl.lit("reject")))
        .otherwise(pl.col("decision")))
    queue.write_csv(wq)
    out = runner.invoke(app, ["mappings", "import", "--home", str(home), str(wq)])
    assert out.exit_code == 0, out.output
    assert (home / "mappings" / "labo_alpha.csv").exists()
    from flows.pipeline import pipeline

    summary = pipeline(home=str(home))
    assert summary["files_new"] == 0  # nothing new arrived: the earlier rows were re-coded
    # and the run says so, in its summary and in the audit trail (QA: it left no trace)
    from flows.privacy import read_audit
    from warehouse import catalog as cat
    from warehouse.store import Warehouse

    assert summary["files_recoded"] == len(Warehouse(home).partitions(cat.STG_RESULTS)) > 0

    changed = read_audit(Warehouse(home)).filter(pl.col("kind") == "mappings_changed")
    assert changed.height == 1 and f'"files_recoded": {summary["files_recoded"]}' in changed["details"][0]
    rows = query(home, "SELECT loinc_code, mapping_status FROM marts.fct_lab_results "
                       "WHERE source = 'labo_alpha' AND local_code = 'VITD'")
    assert rows.height > 0
    assert rows.unique().rows() == [(chosen, "mapped")]
    backlog = query(home, "SELECT local_code FROM quality.unmapped_backlog WHERE source = 'labo_alpha'")
    assert "VITD" not in backlog["local_code"].to_list()


def _in_both_databases(home, sql: str) -> tuple:
    """The first row of ``sql`` in biolake.duckdb, then in analyst.duckdb (opened as analysts do)."""
    from warehouse.analyst import connect_analyst

    engineers = query(home, sql).row(0)
    con = connect_analyst(home / "analyst.duckdb")
    try:
        return engineers, con.execute(sql).fetchall()[0]
    finally:
        con.close()


def test_epi_export_rebuilds_both_databases(clean_run, tmp_path):
    from warehouse.analyst import build_analyst_db
    from warehouse.store import Warehouse

    home = copy_home(clean_run[0], tmp_path / "home")
    build_views(Warehouse(home))  # the databases as the run left them: no publication yet
    build_analyst_db(Warehouse(home))
    count = "SELECT count(*) FROM quality.publications"
    assert _in_both_databases(home, count) == ((0,), (0,))
    out = runner.invoke(app, ["epi", "export", "--home", str(home), "--issue-date", "2026-11-20"])
    assert out.exit_code == 0, out.output
    files = json.loads((home / "publication" / "2026-11-20" / "manifest.json").read_text())["files"]
    assert len(files) > 0
    assert _in_both_databases(home, count + " WHERE issue_date = '2026-11-20'") == ((len(files),), (len(files),))
    # analyst.duckdb's copy of the audit trail has the export's events (their subjects are not landing files)
    exported = ("SELECT count(*) FROM quality.audit_events WHERE kind = 'export_written' "
                "AND subject LIKE 'publication/2026-11-20/%'")
    assert _in_both_databases(home, exported) == ((len(files),), (len(files),))


def test_a_run_writing_the_first_publication_shows_it_in_both_databases(clean_run, tmp_path):
    from flows.pipeline import pipeline

    home = copy_home(clean_run[0], tmp_path / "home")
    assert not (home / "publication").exists()

    def builds() -> int:
        events = pl.read_parquet(home / "warehouse" / "quality" / "audit_events" / "**" / "*.parquet")
        return events.filter(pl.col("kind") == "analyst_db_built").height

    # a run without a publication builds the databases once (it built them twice: a check for the
    # first run looked at the partitions of quality.run_log, which has none)
    before = builds()
    pipeline(home=str(home))
    assert builds() == before + 1
    # not the first run: publish_flow built the views before the export; the run rebuilds them at its end
    summary = pipeline(home=str(home), export=True)
    assert builds() == before + 3
    assert summary["files_new"] == 0 and summary["publication"]["files"] > 0
    n = summary["publication"]["files"]
    assert _in_both_databases(home, "SELECT count(*) FROM quality.publications") == ((n,), (n,))


def flat(text: str) -> str:
    """Console output as one line: rich wraps to the terminal's width and may draw table bars."""
    return " ".join(re.sub(r"[│|]", " ", text).split())


def test_generate_writes_the_formats_asked_for(tmp_path):
    from transforms.synthetic import MIXED_FORMATS

    helped = runner.invoke(app, ["generate", "--help"], terminal_width=200)
    names = {"hl7v2": "HL7 v2", "cda": "CR-BIO CDA", "hprim": "HPRIM"}
    for lab, fmt in MIXED_FORMATS.items():  # the help says what "mixed" means
        assert f"{lab} {names[fmt]}" in flat(helped.output), helped.output
    out = runner.invoke(app, ["generate", "--home", str(tmp_path), "--results", "2000",
                              "--formats", "labo_delta=hl7v2, labo_beta=cda"])
    assert out.exit_code == 0, out.output
    assert "labo_beta sends cda; labo_delta sends hl7v2" in flat(out.output)
    suffixes = {p.parent.name: p.suffix for p in (tmp_path / "landing").rglob("*.*")}
    assert suffixes == {"labo_alpha": ".csv", "labo_beta": ".xml", "labo_gamma": ".csv", "labo_delta": ".hl7",
                        "labo_epsilon": ".csv"}
    for bad, message in (("labo_delta:hl7v2", "'labo_delta:hl7v2' is not lab=format"),
                         ("labo_delta=fhir", "unknown format(s) fhir"), ("lab_x=cda", "unknown lab(s) lab_x")):
        refused = runner.invoke(app, ["generate", "--home", str(tmp_path / "x"), "--results", "2000",
                                      "--formats", bad])
        assert refused.exit_code == 2 and message in flat(refused.output), refused.output
        assert not (tmp_path / "x" / "landing").exists()


def test_summary_counts_the_files_of_each_format(mixed_run):
    from flows import cli
    from transforms.parsers.detect import FORMAT_NAMES

    _, summary = mixed_run
    with cli.console.capture() as cap:
        cli.print_summary(summary)
    text = cap.get()
    assert "loaded by format" in text
    for name in ("CSV extract", "HL7 v2.5 ORU^R01", "CR-BIO CDA", "HPRIM Santé"):
        line = next(ln for ln in text.splitlines() if ln.strip().startswith(name))
        files = sum(1 for f in summary["files"] if f["status"] == "loaded" and FORMAT_NAMES[f["format"]] == name)
        rows = sum(f["rows_in"] for f in summary["files"] if f["status"] == "loaded"
                   and FORMAT_NAMES[f["format"]] == name)
        cells = [c.strip() for c in re.split(r"[│|]", line)]  # rich draws ASCII bars on an ASCII console
        assert cells[1:3] == [str(files), f"{rows:,}"], line


def test_demo_fresh_deletes_a_biolake_home_only_and_checks_its_options_first(tmp_path, monkeypatch):
    """QA: `demo --fresh --home DIR` deleted any folder (a typo, '.', '~'), and deleted it before
    finding that --formats was wrong."""
    for var in ("BIOLAKE_PSEUDONYM_SECRET", "BIOLAKE_DEMO"):  # the demo drops the secret: restored after
        if var in os.environ:
            monkeypatch.setenv(var, os.environ[var])
    docs = tmp_path / "mydocs"
    (docs / "thesis").mkdir(parents=True)
    (docs / "notes.md").write_text("mine")
    out = runner.invoke(app, ["demo", "--fresh", "--home", str(docs), "--results", "50", "--formats", "bogus"])
    assert out.exit_code == 2 and "bogus" in out.output
    out = runner.invoke(app, ["demo", "--fresh", "--home", str(docs), "--results", "50"])
    assert out.exit_code == 2 and "deletes a biolake home only" in out.output and "notes.md" in out.output
    assert (docs / "notes.md").read_text() == "mine" and (docs / "thesis").is_dir()
    assert sorted(p.name for p in docs.iterdir()) == ["notes.md", "thesis"]  # nothing written either


@pytest.mark.parametrize("command", [["purge", "--older-than", "1"], ["analyst-db"], ["audit"], ["epi", "issues"],
                                     ["mappings", "export", "--out", "q.csv"], ["views"], ["report", "gate"]])
def test_a_mistyped_home_is_an_error_not_a_success(tmp_path, command):
    """QA: on a home that does not exist, `purge` said "purged identities of 0 file(s)" (a nightly
    retention job on a typo would keep every identity), `analyst-db` built an empty warehouse
    there, `audit`, `epi issues` and `mappings export` said nothing or "nothing to review"; all with
    exit status 0."""
    typo = tmp_path / "hoem"
    out = runner.invoke(app, [*command, "--home", str(typo)])
    said = " ".join(out.output.split())  # as the terminal wraps it
    assert out.exit_code == 2, out.output
    assert "no warehouse under" in said and "check --home" in said
    assert not typo.exists()
    afile = tmp_path / "afile"
    afile.write_text("x")
    out = runner.invoke(app, [*command, "--home", str(afile)])
    assert out.exit_code == 2 and "is a file, not a data home" in " ".join(out.output.split()), out.output


def test_serve_refuses_a_home_without_landing(tmp_path):
    """QA: `serve --home <typo>` started, and every scheduled run built an empty warehouse there and
    passed its gate (green runs every 15 minutes, nothing ingested)."""
    out = runner.invoke(app, ["serve", "--home", str(tmp_path / "typo"), "--port", "1"])
    assert out.exit_code == 2 and "no landing folder" in out.output


def test_a_home_that_cannot_be_written_is_one_line(tmp_path, monkeypatch):
    """QA: a read-only home gave a 28-line traceback ending in OSError [Errno 30] on every writing
    command; a home that is a file, FileExistsError."""
    import errno

    from flows import lock

    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(lock.HomeNotWritable, match="is a file, not a data home"):
        with lock.warehouse_lock(afile, timeout=1):
            pass

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(lock.os, "open", read_only)
    with pytest.raises(lock.HomeNotWritable, match=r"cannot write to .*Read-only file system.*needs write access"):
        with lock.warehouse_lock(tmp_path, timeout=1):
            pass


def test_a_scheduled_run_on_a_home_without_landing_fails(prefect_harness, tmp_path):
    """The deployments call the flow itself: a typo in their home, or an unmounted landing share,
    must end Failed with the reason, not Completed on an empty warehouse."""
    from flows.pipeline import pipeline

    state = pipeline(home=str(tmp_path / "typo"), return_state=True)
    assert state.is_failed() and "no landing folder" in state.message
    assert not (tmp_path / "typo" / "warehouse").exists()


def test_the_command_listing_gives_each_command_one_line():
    """`biolake --help` listed the first paragraph of each docstring with the docstring's own line
    breaks ("... that are still in" / "the landing area ..."): on a wide terminal each command's
    summary is one line, in the main listing and the sub-commands'."""
    for args in ([], ["epi"], ["report"], ["mappings"]):
        out = runner.invoke(app, [*args, "--help"], terminal_width=400, env={"COLUMNS": "400"})
        assert out.exit_code == 0, out.output
        text = out.output
        if not args:
            assert "the files already loaded that are still in the landing area, then run the pipeline" in text
            assert "quality, ref), or with --analyst" in text
        in_commands = text[text.index("Commands"):]
        continued = [r for r in in_commands.splitlines() if r.startswith("│     ")]  # a wrapped summary
        assert not continued, text


def test_a_concurrency_slot_a_killed_run_left_taken_does_not_stop_the_next_run(prefect_harness, tmp_path,
                                                                              monkeypatch):
    """QA crash F1: a run killed during its publication left the Prefect limit
    biolake-warehouse-writer taken (active_slots 1 in the Prefect database: the lease died with the
    embedded server), and every later run waited BIOLAKE_LOCK_TIMEOUT for it, then failed with a
    traceback; nothing was published again. Runs no longer take a Prefect slot: the file lock, freed
    by the kernel when its holder dies, keeps writers apart."""
    import anyio
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    from flows.pipeline import pipeline
    from tests.helpers import HEADER, line

    (tmp_path / "landing" / "labo_alpha").mkdir(parents=True)
    (tmp_path / "landing" / "labo_alpha" / "x.csv").write_text("\n".join([HEADER, line()]) + "\n", encoding="utf-8")
    monkeypatch.setenv("BIOLAKE_LOCK_TIMEOUT", "2")

    async def leaked(create: bool):
        async with get_client() as client:
            if create:
                await client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(
                    name="biolake-warehouse-writer", limit=1, active_slots=1))
            else:
                await client.delete_global_concurrency_limit_by_name("biolake-warehouse-writer")

    anyio.run(leaked, True)
    try:
        summary = pipeline(home=str(tmp_path), reports=False)
    finally:
        anyio.run(leaked, False)
    assert summary["files_new"] == 1 and summary["rows_valid"] == 1


def test_a_first_run_stopped_midway_leaves_its_mappings_recorded(prefect_harness, tmp_path, monkeypatch):
    """QA crash F2: a first load killed during ingest left files coded but the mappings' fingerprint
    unrecorded; the next run said "re-coded: the mappings or qualitative words changed", re-coded
    them and audited a mappings_changed event that never happened."""
    from flows import process
    from flows.pipeline import pipeline
    from flows.privacy import read_audit
    from tests.helpers import HEADER, line
    from warehouse.store import Warehouse

    folder = tmp_path / "landing" / "labo_alpha"
    folder.mkdir(parents=True)
    for name in ("a.csv", "b.csv"):
        (folder / name).write_text("\n".join([HEADER, line(N_DEMANDE=name)]) + "\n", encoding="utf-8")
    real = process.process_file

    def stopped(ctx, t, work):
        if t.path.endswith("b.csv"):
            raise RuntimeError("the machine stopped")
        return real(ctx, t, work)

    monkeypatch.setattr(process, "process_file", stopped)
    state = pipeline(home=str(tmp_path), reports=False, return_state=True)
    assert state.is_failed()
    monkeypatch.setattr(process, "process_file", real)
    summary = pipeline(home=str(tmp_path), reports=False)
    assert summary["files_new"] == 1 and summary.get("files_recoded", 0) == 0, summary
    assert summary.get("recoded_because") is None
    assert read_audit(Warehouse(tmp_path)).filter(pl.col("kind") == "mappings_changed").is_empty()


def test_ctrl_c_says_what_was_left_and_what_to_do(tmp_path, monkeypatch, capsys):
    """QA crash: Ctrl-C during a run printed Prefect's "Crash detected" lines and nothing else."""
    import sys

    import flows.cli as cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_run_and_show", interrupted)
    monkeypatch.setenv("BIOLAKE_PSEUDONYM_SECRET", "k3Y-" + "pQ7zR2mX9vL4tW8s")
    (tmp_path / "landing").mkdir()
    monkeypatch.setattr(sys, "argv", ["biolake", "run", "--home", str(tmp_path)])
    with pytest.raises(SystemExit) as stop:
        cli.main()
    assert stop.value.code == 130
    err = " ".join(capsys.readouterr().err.split())
    assert "interrupted (Ctrl-C): `biolake run` stopped before its end" in err
    assert "run the same command again to finish it" in err
    # a command that writes nothing is told to have been interrupted, no more
    assert "again" not in cli._interrupted_hint(["sql"]) and "interrupted" in cli._interrupted_hint(["sql"])
