"""The whole pipeline under the Prefect test harness, compared exactly with the generator's truth."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest

from tests.helpers import copy_home, query, snapshot


def run(home: Path) -> dict:
    from flows.pipeline import pipeline

    return pipeline(home=str(home))


def q(home: Path, sql: str) -> pl.DataFrame:
    return query(home, sql)


@pytest.fixture(scope="module")
def processed(clean_run):
    return clean_run


@pytest.fixture(scope="module", params=["csv", "mixed"])
def processed_any(request):
    """The truth comparisons run on the CSV landing and on the mixed one (HL7 v2, CDA, HPRIM labs)."""
    return request.getfixturevalue("clean_run" if request.param == "csv" else "mixed_run")


def test_the_mixed_landing_holds_every_format(mixed_run):
    home, summary = mixed_run
    from transforms.parsers.detect import detect_format

    formats = {detect_format(p) for p in (home / "landing").rglob("*") if p.is_file()}
    assert formats == {"csv", "hl7v2", "cda", "hprim"}
    assert summary["files_failed"] == 0
    # results under a test identity (HL7 v2, HPRIM) are refused by the parsers, each with its reason
    truth = pl.read_parquet(home / "truth" / "rows.parquet")
    n_test = truth.filter(pl.col("reason") == "TEST_IDENTITY").height
    assert n_test > 0 and summary["quarantine_reasons"]["TEST_IDENTITY"] == n_test


def test_sidep_daily_equals_the_truth_exactly(processed_any):
    home, _ = processed_any
    truth = pl.read_csv(home / "truth" / "sidep_daily.csv", separator=";", schema_overrides={"dep": pl.Utf8})
    truth = truth.with_columns(pl.col("jour").str.to_date(), pl.col(pl.Int64).cast(pl.Int64))
    got = q(home, "SELECT * FROM marts.sidep_daily ORDER BY jour, dep, cl_age90")
    assert got.columns == ["jour", "dep", "cl_age90", "P_f", "P_h", "P", "T_f", "T_h", "T"]
    assert truth["P"].sum() > 0 and truth["T"].sum() > truth["P"].sum()
    assert got.cast(truth.schema).equals(truth.sort("jour", "dep", "cl_age90"))


def test_mdo_weekly_cases_equal_the_truth_exactly(processed_any):
    from transforms.synthetic.truth_mdo import mdo_weekly

    home, _ = processed_any
    truth = mdo_weekly(pl.read_parquet(home / "truth" / "rows.parquet")).sort("mdo_id", "semaine", "dep")
    got = q(home, "SELECT * FROM marts.mdo_weekly WHERE cases > 0 ORDER BY mdo_id, semaine, dep")
    assert truth["cases"].sum() > 0 and truth["mdo_id"].n_unique() >= 2
    assert got.select(truth.columns).cast(truth.schema).equals(truth)


def test_every_row_has_the_fate_the_generator_intended(processed_any):
    home, _ = processed_any
    truth = pl.read_parquet(home / "truth" / "rows.parquet")
    log = q(home, "SELECT path, file_id, status AS file_status FROM quality.file_log")
    t = truth.join(log, left_on="file", right_on="path", how="left")
    assert t["file_status"].null_count() == 0, "a landing file is missing from quality.file_log"
    # re-deliveries: skipped as a whole
    assert (t.filter(pl.col("fate") == "duplicate_file")["file_status"] == "duplicate").all()
    assert (t.filter(pl.col("fate") != "duplicate_file")["file_status"] == "loaded").all()
    fct = q(home, "SELECT file_id, line_no, is_current, loinc_code FROM marts.fct_lab_results")
    quar = q(home, "SELECT file_id, line_no, reason_code, \"column\" FROM quality.quarantine")
    valid = t.filter(pl.col("fate") == "valid").join(fct, on=["file_id", "line_no"], how="left")
    assert valid["is_current_right"].null_count() == 0, "valid rows missing from marts.fct_lab_results"
    bad = t.filter(pl.col("fate") == "quarantined")
    got = bad.join(quar, left_on=["file_id", "line_no", "reason"], right_on=["file_id", "line_no", "reason_code"],
                   how="left")
    missing = got.filter(pl.col("column_right").is_null() & pl.col("column").is_not_null())
    assert missing.is_empty(), f"quarantined rows without their expected reason: {missing.head(5)}"
    same_col = got.filter(pl.col("column").is_not_null())
    assert (same_col["column"] == same_col["column_right"]).all()
    # nothing else: every fct/quarantine row is a truth row
    loaded_rows = t.filter(pl.col("fate") != "duplicate_file").height
    assert fct.height + quar.select("file_id", "line_no").unique().height == loaded_rows


def test_current_versions_and_mapping_match_the_truth(processed_any):
    home, _ = processed_any
    truth = pl.read_parquet(home / "truth" / "rows.parquet").filter(pl.col("fate") == "valid")
    log = q(home, "SELECT path, file_id FROM quality.file_log WHERE status = 'loaded'")
    fct = q(home, "SELECT file_id, line_no, is_current, loinc_code FROM marts.fct_lab_results")
    t = truth.join(log, left_on="file", right_on="path").join(fct, on=["file_id", "line_no"])
    assert t.height == truth.height
    assert (t["is_current"] == t["is_current_right"]).all()
    assert t.filter(pl.col("mapped") != pl.col("loinc_code").is_not_null()).is_empty()
    assert t.filter(pl.col("mapped") & (pl.col("loinc_num") != pl.col("loinc_code"))).is_empty()
    assert (~t["is_current"]).sum() > 0 and (~t["mapped"]).sum() > 0


def test_the_first_run_is_in_its_run_log(processed_any):
    """QA: after a home's first run, quality.run_log was empty (its view was built before the log)."""
    home, summary = processed_any
    log = query(home, "SELECT run_id, files_new, rows_in FROM quality.run_log")
    assert log.rows() == [(summary["run_id"], summary["files_new"], summary["rows_in"])]


def test_row_accounting_per_file(processed_any):
    home, summary = processed_any
    log = q(home, "SELECT * FROM quality.file_log WHERE status = 'loaded'")
    assert (log["rows_in"] == log["rows_valid"] + log["rows_quarantined"]).all()
    per_file = q(home, "SELECT file_id, count(DISTINCT line_no) AS n FROM quality.quarantine GROUP BY file_id")
    joined = log.join(per_file, on="file_id", how="left").with_columns(pl.col("n").fill_null(0))
    assert (joined["n"] == joined["rows_quarantined"]).all()
    assert summary["rows_in"] == summary["rows_valid"] + summary["rows_quarantined"]
    truth = pl.read_parquet(home / "truth" / "rows.parquet")
    assert summary["rows_in"] == truth.filter(pl.col("fate") != "duplicate_file").height
    assert summary["files_duplicate"] == truth.filter(pl.col("fate") == "duplicate_file")["file"].n_unique()


def test_analyst_layers_hold_no_identity(processed_any):
    home, _ = processed_any
    for table in ("staging.stg_results", "staging.stg_results_coded", "marts.fct_lab_results"):
        cols = set(q(home, f"SELECT * FROM {table} LIMIT 0").columns)
        assert not cols & {"patient_nir", "family_name", "first_name", "birth_date", "postal_code"}, table


def test_running_again_changes_nothing(processed_any, tmp_path):
    home = copy_home(processed_any[0], tmp_path / "home")
    run(home)
    before = snapshot(home)
    summary = run(home)
    assert summary["files_new"] == 0 and summary["rows_in"] == 0
    after = snapshot(home)
    for name in before:
        assert before[name].equals(after[name]), name


def test_redelivery_and_unreadable_file(processed, tmp_path):
    before = snapshot(processed[0])
    home = copy_home(processed[0], tmp_path / "home")
    landing = home / "landing"
    some = sorted(p for p in landing.rglob("*.csv"))[0]
    shutil.copy(some, some.with_name("copie_" + some.name))
    (landing / some.parent.name / "photo.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00binary")
    summary = run(home)
    assert summary["files_duplicate"] == 1 and summary["files_failed"] == 1 and summary["files_new"] == 0
    log = q(home, "SELECT path, status, reason_code FROM quality.file_log")
    assert log.filter(pl.col("path").str.ends_with("copie_" + some.name))["status"].to_list() == ["duplicate"]
    failed = log.filter(pl.col("path").str.ends_with("photo.csv"))
    assert failed["status"].to_list() == ["failed"] and failed["reason_code"][0] in ("UNPARSEABLE_FILE",
                                                                                  "HEADER_INVALID")
    quar = q(home, "SELECT * FROM quality.quarantine WHERE path LIKE '%photo.csv'")
    assert quar.height == 1 and quar["line_no"][0] is None
    after = snapshot(home)
    for name in ("marts.fct_lab_results", "marts.sidep_daily"):
        assert before[name].equals(after[name]), name


def test_real_hl7_samples_through_the_pipeline(prefect_harness, tmp_path):
    """The NIST ORU^R01 samples: every OBX ends valid or quarantined with a reason; their PID-3 is a
    US MRN (not an INS), so the patients are linked by name, birth date and sex."""
    src = Path(__file__).parent / "fixtures" / "hl7" / "nist"
    landing = tmp_path / "home" / "landing" / "nist_lab"
    landing.mkdir(parents=True)
    for p in sorted(src.glob("*.hl7")):
        shutil.copy(p, landing / p.name)
    summary = run(tmp_path / "home")
    home = tmp_path / "home"
    assert summary["files_new"] == 6 and summary["files_failed"] == 0
    assert summary["rows_in"] == summary["rows_valid"] + summary["rows_quarantined"] == 8
    assert summary["quarantine_reasons"] == {"DATE_ORDER": 2, "LOINC_CHECK": 1}
    fct = q(home, "SELECT person_key, loinc_code, value_raw FROM marts.fct_lab_results")
    assert fct.height == 5 and fct["person_key"].null_count() == 0
    assert "10368-9" in fct["loinc_code"].to_list()  # the blood lead test of sample 1, coded by the source
    bad = q(home, "SELECT \"column\" FROM quality.quarantine WHERE reason_code = 'LOINC_CHECK'")
    assert bad["column"].to_list() == ["loinc_code_src"]  # 20995-1 in sample 6 fails its check digit
