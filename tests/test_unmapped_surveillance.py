"""Unmapped local codes that read like a test SI-DEP or MDO counts: their results are missing from
those counts until mapped, and the run and the quality gate now say so (before, only their volume in
the work queue did)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from tests.helpers import HEADER, copy_home, line, nir, query
from transforms.terminology.loinc import load_loinc_seed
from transforms.terminology.suggest import surveillance_hints

ROOT = Path(__file__).resolve().parents[1]


def _backlog(items: list[tuple[str, str, str | None, str | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        [("labo_x", code, label, unit, 10, dt.datetime(2026, 11, 2), dt.datetime(2026, 11, 3), specimen)
         for code, label, unit, specimen in items],
        schema={"source": pl.Utf8, "local_code": pl.Utf8, "local_label": pl.Utf8, "unit_raw": pl.Utf8,
                "n_results": pl.UInt32, "first_seen": pl.Datetime("us"), "last_seen": pl.Datetime("us"),
                "specimen": pl.Utf8}, orient="row")


def test_hints_name_the_surveillance_tests_and_nothing_else():
    loinc = load_loinc_seed(ROOT / "seeds" / "reference" / "loinc.csv")
    surveillance = pl.DataFrame({"loinc_code": ["94500-6", "94558-4", "21503-8", "32781-7"],
                                 "surveillance": ["SI-DEP covid19", "SI-DEP covid19", "MDO rougeole",
                                                  "MDO legionellose"]})
    backlog = _backlog([("COV", "PCR SARS-CoV-2", None, "NASOPH"), ("ROUG", "Rougeole IgM", None, "SANG"),
                        ("LEGU", "Antigène Legionella urinaire", None, "URINE"),
                        ("GLY", "Glycémie à jeun", "mmol/L", None), ("TSH", "TSH ultrasensible", "mUI/L", None),
                        ("VITD", "Vitamine D (25-OH)", None, None)])
    out = surveillance_hints(backlog, loinc, surveillance)
    assert out.height == backlog.height and out.columns == [*backlog.columns, "surveillance_loinc", "surveillance"]
    hinted = dict(out.filter(pl.col("surveillance").is_not_null())
                  .select("local_code", "surveillance").iter_rows())
    assert hinted == {"COV": "SI-DEP covid19", "ROUG": "MDO rougeole", "LEGU": "MDO legionellose"}
    assert out.filter(pl.col("local_code") == "COV")["surveillance_loinc"][0] in ("94500-6", "94558-4")
    # nothing to hint from: the columns are there, empty
    none = surveillance_hints(backlog, loinc, surveillance.head(0))
    assert none["surveillance"].null_count() == backlog.height


def test_a_run_and_the_gate_name_an_unmapped_sars_cov_2_code(clean_run, tmp_path):
    from flows.pipeline import pipeline
    from flows.quality_gate import run_quality_gate
    from flows.settings import Settings
    from flows.steps import Context

    home = copy_home(clean_run[0], tmp_path / "home")
    rows = [line(N_DEMANDE=f"NEWCOV{i}", NIR=nir(f"28011751110{i:02d}"), CODE_ANALYSE="SARSX",
                 LIBELLE_ANALYSE="PCR SARS-CoV-2 (écouvillon nasopharyngé)", RESULTAT="Positif", UNITE="",
                 VALEURS_REFERENCE="") for i in range(3)]
    (home / "landing" / "labo_alpha" / "labo_alpha_newcov.csv").write_text(
        "\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    summary = pipeline(home=str(home))
    assert [(s, c, n) for s, c, _label, n, _loinc, _what in summary["unmapped_surveillance"]] == [
        ("labo_alpha", "SARSX", 3)]
    assert "SI-DEP covid19" in summary["unmapped_surveillance"][0][5]
    backlog = query(home, "SELECT local_code, surveillance FROM quality.unmapped_backlog "
                          "WHERE surveillance IS NOT NULL")
    assert backlog["local_code"].to_list() == ["SARSX"]
    # a warning of the gate, naming the lab and the code; the gate still passes
    gate = run_quality_gate(Context.create(Settings(home=home), "t"))
    assert gate["ok"]
    named = [w for w in gate["warnings"] if w.startswith("unmapped_surveillance:")]
    assert len(named) == 1 and "SARSX" in named[0] and "labo_alpha" in named[0], gate["warnings"]
    # the work queue puts it first, and says why
    from typer.testing import CliRunner

    from flows.cli import app

    wq = tmp_path / "queue.csv"
    out = CliRunner().invoke(app, ["mappings", "export", "--home", str(home), "--out", str(wq)])
    assert out.exit_code == 0, out.output
    queue = pl.read_csv(wq, infer_schema=False)
    assert queue["local_code"][0] == "SARSX"
    assert "reads like a test counted in MDO covid19, SI-DEP covid19" in queue["notes"][0]
    assert queue.filter(pl.col("local_code") != "SARSX")["notes"].fill_null("").str.contains("reads like").sum() == 0
