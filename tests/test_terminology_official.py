"""The official LOINC table in use everywhere (BIOLAKE_LOINC_TABLE, BIOLAKE_LOINC_FR_TABLE): the
pipeline's terminology and ref.loinc, the work-queue suggestions and the import's checks.
Offline, temporary homes only; the official table is a small hand-made file in its layout."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import polars as pl
from typer.testing import CliRunner

from flows.cli import app
from tests.helpers import ROOT
from tests.test_terminology_loinc import _official_file

runner = CliRunner()
HEADER = "decision,source,local_code,local_label,unit,specimen,loinc_num,valid_from,valid_to\n"


def _home(tmp_path, lab="labo_zeta"):
    home = tmp_path / "home"
    (home / "landing" / lab).mkdir(parents=True)
    return home


def _backlog(home, rows):
    """quality.unmapped_backlog as a run leaves it."""
    from warehouse import catalog as cat
    from warehouse.store import Warehouse

    t = cat.UNMAPPED_BACKLOG
    when = dt.datetime(2026, 1, 5, 8)
    df = pl.DataFrame([(*r, when, when) for r in rows],
                      schema=["source", "local_code", "local_label", "unit_raw", "n_results", "specimen",
                              "first_seen", "last_seen"], orient="row").with_columns(
        surveillance_loinc=pl.lit(None, pl.Utf8), surveillance=pl.lit(None, pl.Utf8))
    Warehouse(home).write_table(t, df.select([pl.col(c.name).cast(c.dtype) for c in t.columns]))


def test_pipeline_terminology_uses_the_official_table(tmp_path, monkeypatch):
    """QA: flows/steps.py always loaded the 824-code subset; an operator's mapping to CRP (1988-5,
    not in the subset) stopped the run."""
    from flows import steps
    from flows.settings import Settings

    home = _home(tmp_path)
    (home / "mappings").mkdir()
    (home / "mappings" / "labo_zeta.csv").write_text(
        "local_code,local_label,unit,specimen,loinc_num,valid_from,valid_to\nCRP,CRP,mg/L,,1988-5,,\n",
        encoding="utf-8")
    ctx = steps.Context.create(Settings(home=home), "t")
    try:
        steps.load_terminology(ctx, {})
        raise AssertionError("the subset has no 1988-5")
    except Exception as err:  # noqa: BLE001
        assert "unknown LOINC '1988-5'" in str(err)
    monkeypatch.setenv("BIOLAKE_LOINC_TABLE", str(_official_file(tmp_path / "Loinc.csv")))
    ctx = steps.Context.create(Settings(home=home), "t")
    loinc, mappings, fingerprint = steps.load_terminology(ctx, {})
    assert "1988-5" in loinc["loinc_num"].to_list() and "94500-6" in loinc["loinc_num"].to_list()
    assert mappings.filter(pl.col("local_code") == "CRP")["loinc_num"].to_list() == ["1988-5"]
    # ref.loinc is the table in use
    refs = steps.load_ref(ctx)
    assert "1988-5" in steps.read_ref(ctx, "loinc")["loinc_num"].to_list()
    assert refs["loinc"].height == loinc.height
    # another official table re-codes the earlier files (the fingerprint changes)
    other = _official_file(tmp_path / "Loinc2.csv")
    other.write_text(other.read_text(encoding="utf-8").replace('Serum or Plasma","mg/L"', 'Serum or Plasma","mg/dL"'),
                     encoding="utf-8")
    monkeypatch.setenv("BIOLAKE_LOINC_TABLE", str(other))
    _, _, fingerprint2 = steps.load_terminology(steps.Context.create(Settings(home=home), "t"), {})
    assert fingerprint2 != fingerprint


def test_workqueue_commands_use_the_official_table(tmp_path, monkeypatch):
    home = _home(tmp_path)
    _backlog(home, [("labo_zeta", "CRP", "Protéine C réactive", "mg/l", 12, "Sérum")])
    queue = tmp_path / "queue.csv"
    queue.write_text(HEADER + "approve,labo_zeta,CRP,Protéine C réactive,mg/l,,1988-5,,\n", encoding="utf-8")
    out = runner.invoke(app, ["mappings", "import", "--home", str(home), str(queue)])
    assert out.exit_code == 2 and "unknown LOINC '1988-5'" in out.output
    monkeypatch.setenv("BIOLAKE_LOINC_TABLE", str(_official_file(tmp_path / "Loinc.csv")))
    wq = tmp_path / "export.csv"
    out = runner.invoke(app, ["mappings", "export", "--home", str(home), "--out", str(wq)])
    assert out.exit_code == 0, out.output
    first = pl.read_csv(wq, infer_schema=False).row(0, named=True)
    assert (first["local_code"], first["rank"], first["loinc_num"]) == ("CRP", "1", "1988-5")
    out = runner.invoke(app, ["mappings", "import", "--home", str(home), str(queue)])
    assert out.exit_code == 0, out.output
    assert "CRP,Protéine C réactive,mg/l,,1988-5" in (home / "mappings" / "labo_zeta.csv").read_text(encoding="utf-8")


def test_a_missing_official_table_is_a_one_line_error(tmp_path):
    home = _home(tmp_path)
    env = {**os.environ, "BIOLAKE_LOINC_TABLE": str(tmp_path / "Loinc.csv"), "COLUMNS": "400"}
    queue = tmp_path / "queue.csv"
    queue.write_text(HEADER, encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "flows.cli", "mappings", "import", "--home", str(home), str(queue)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 2 and "Traceback" not in out.stdout + out.stderr, out.stderr
    assert "BIOLAKE_LOINC_TABLE:" in out.stderr and "Loinc.csv does not exist" in out.stderr


def test_deprecated_official_codes_are_never_suggested_and_noted_when_approved(tmp_path):
    from transforms.terminology.loinc import load_loinc_table
    from transforms.terminology.suggest import suggest
    from transforms.terminology.workqueue import read_workqueue

    loinc = load_loinc_table(ROOT / "seeds" / "reference" / "loinc.csv", _official_file(tmp_path / "Loinc.csv"))
    backlog = pl.DataFrame([("labo_zeta", "GLU", "Glucose", "mg/dL", 5, "Sérum")],
                           schema=["source", "local_code", "local_label", "unit_raw", "n_results", "specimen"],
                           orient="row")
    assert "2345-7" not in suggest(backlog, loinc, k=10)["loinc_num"].to_list()  # DEPRECATED in this table
    assert "2345-7" in suggest(backlog, load_loinc_table(ROOT / "seeds" / "reference" / "loinc.csv"), k=10)[
        "loinc_num"].to_list()  # the subset has no status: it is proposed there
    queue = tmp_path / "q.csv"
    queue.write_text(HEADER + "approve,labo_zeta,GLU,Glucose,mg/dL,,2345-7,,\n", encoding="utf-8")
    got = read_workqueue(queue, loinc)
    assert got.approved["loinc_num"].to_list() == ["2345-7"]
    assert got.notes == [(f"{queue}:2", "LOINC 2345-7 is DEPRECATED in the official table: prefer the code "
                                        "replacing it")]
