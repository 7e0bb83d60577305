"""Great Expectations suites on the warehouse, run through checkpoints, with kept results.

Why it looks like this: GX's SQL path against DuckDB fails (every expectation raises in the metric
bundle) and its pandas path costs ~23x pandera's time at 5 M rows (stack notes). So GX never sees
the large tables row by row. It validates *bounded inputs* through its pandas datasource:

- the marts themselves when they are small (``marts.sidep_daily`` over its last weeks), and
- per-run summaries of the large tables computed by DuckDB (quality/summaries.py): one row per
  file, per lab and day, per distinct combination of categorical values, per table, or one row
  of whole-table measures.

Their size follows the number of files, labs, days and vocabularies, not the number of results,
so the gate's cost stays flat as the warehouse grows (DuckDB pays one scan per summary).

Each suite is one input frame; each has one checkpoint (GX passes the same batch to every
validation definition of a checkpoint, and our inputs are different frames). The GX project is
file-backed under ``<home>/gx`` so validation results are kept between runs; Data Docs are built
under ``<home>/reports/data_docs``; only the last :data:`KEEP_RUNS` runs are kept there so that
building the docs stays bounded too. Every expectation carries a GX severity: ``critical``
failures block the publication of exports (flows/quality_gate.py), ``warning`` ones are reported.

great_expectations is slow to import (several seconds): it is imported only inside
:func:`run_suites`, never at module import. (Importing it in a background thread while DuckDB
computes the summaries was measured no faster on two cores, idle or busy: the import's Python work
holds the GIL the summaries need between and during their queries, and they took twice as long.)
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from quality import summaries as S
from quality.data_docs_offline import make_offline
from quality.reasons import REASONS
from transforms.canonical import CANONICAL_COLUMNS
from transforms.terminology.transcode import MAPPED, SOURCE_LOINC, UNMAPPED
from transforms.terminology.units import CONVERSION_STATUSES
from warehouse import catalog as cat
from warehouse import catalog_epi as ce
from warehouse.store import Warehouse

KEEP_RUNS = 30  # validation results and their Data Docs pages kept per suite
SIDEP_WINDOW_DAYS = 56  # days of marts.sidep_daily validated row by row
RATES_WINDOW_WEEKS = 8
LAB_DAY_WINDOW_DAYS = 90
FRESHNESS_DAYS = 30  # warning when the newest collection is older than this at run time
# a lab that delivered files on at least this many days is expected to go on (suite lab_deliveries)
LATE_MIN_DELIVERY_DAYS = 3
# warning when a lab leaves a larger share of its text results on SI-DEP/MDO tests unrecognised
UNRECOGNISED_MAX_SHARE = 0.01
DATASOURCE = "biolake"
DOCS_SITE = "biolake"


# --------------------------------------------------------------------------------------------
# declarations
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Check:
    """One expectation: GX class name + arguments, a stable name and what it means."""

    name: str
    expectation: str  # class in great_expectations.expectations, e.g. "ExpectColumnValuesToBeBetween"
    kwargs: dict[str, Any]
    description: str
    critical: bool = True

    @property
    def column(self) -> str | None:
        k = self.kwargs
        if "column" in k:
            return k["column"]
        if "column_A" in k:
            return f"{k['column_A']},{k['column_B']}"
        if "column_list" in k and "Unique" in self.expectation:
            return ",".join(k["column_list"])
        return None


@dataclass
class Suite:
    """An expectation suite and the bounded frame it validates."""

    name: str
    description: str
    frame: pl.DataFrame
    checks: list[Check] = field(default_factory=list)
    label_columns: tuple[str, ...] = ()  # columns naming the failing rows (e.g. the file path)
    where: dict[str, str] = field(default_factory=dict)  # column -> where its failing rows are (one-row summaries)


def _zero(col: str, what: str, critical: bool = True) -> Check:
    return Check(f"{col}_is_zero", "ExpectColumnValuesToBeBetween",
                 {"column": col, "min_value": 0, "max_value": 0}, what, critical)


def _eq(a: str, b: str, what: str) -> Check:
    return Check(f"{a}_equals_{b}", "ExpectColumnPairValuesToBeEqual", {"column_A": a, "column_B": b}, what)


def _in_set(col: str, values, what: str, critical: bool = True) -> Check:
    return Check(f"{col}_in_set", "ExpectColumnValuesToBeInSet",
                 {"column": col, "value_set": sorted(values, key=str)}, what, critical)


def _between(col: str, lo, hi, what: str, critical: bool = True, name: str | None = None) -> Check:
    return Check(name or f"{col}_between", "ExpectColumnValuesToBeBetween",
                 {"column": col, "min_value": lo, "max_value": hi}, what, critical)


def _not_null(col: str, what: str | None = None) -> Check:
    return Check(f"{col}_not_null", "ExpectColumnValuesToNotBeNull", {"column": col},
                 what or f"{col} is never empty")


# --------------------------------------------------------------------------------------------
# the suites
# --------------------------------------------------------------------------------------------
def file_accounting_suite(frame: pl.DataFrame) -> Suite:
    s = Suite("file_accounting", "Row accounting of every loaded file: rows in = valid + quarantined, "
              "and the warehouse holds exactly those rows (one row per loaded file).", frame,
              label_columns=("path",))
    s.checks = [
        _zero("balance", "rows_in = rows_valid + rows_quarantined for every loaded file"),
        _zero("parse_gap", "rows_in = rows parsed into raw.results + lines rejected by the parser"),
        _eq("stg_rows", "rows_valid", "staging.stg_results holds exactly the valid rows of each file"),
        _eq("coded_rows", "stg_rows", "transcoding kept every staging row (stg_results_coded = stg_results)"),
        _eq("fct_rows", "stg_rows", "marts.fct_lab_results holds every valid row of each file"),
        _eq("quarantine_lines", "rows_quarantined", "quality.quarantine holds the quarantined lines of each file"),
        Check("file_id_unique", "ExpectColumnValuesToBeUnique", {"column": "file_id"},
              "a content (file_id) is loaded once; re-deliveries are skipped"),
        _not_null("format", "every loaded file has a detected format"),
    ]
    return s


def landing_files_suite(frame: pl.DataFrame) -> Suite:
    """The landing files that failed to load (path, status, reason_code, failed 0/1): this run's,
    and the earlier ones still in the landing area. Their results reach no table, so the gate warns
    at every run, naming them, until they are replaced or removed (QA: a lab that switched to gzip
    fed nothing while the gate passed; and the warning came once, from the run that met the file).
    The files this run loaded without any result (no_result 0/1: a CSV of a header alone) or with
    rows whose FINESS is not valid (finess_invalid: rows; kept, flagged FINESS_INVALID) are named
    once, by this run."""
    s = Suite("landing_files", "The landing area holds no file that failed to load (unreadable, "
              "compressed, unparseable, outside a lab folder...); the files this run loaded hold results "
              "and carry valid FINESS numbers.", frame, label_columns=("path", "reason_code"))
    s.checks = [_zero("failed", "no file in the landing area failed to load (its results reach no table: "
                      "replace it with a readable delivery, or remove it; quality.file_log has the reason)",
                      critical=False),
                _zero("no_result", "the files this run loaded hold results (a file of a header alone loads "
                      "with none: a broken export, or a day without results? ask the lab)", critical=False),
                _zero("finess_invalid", "the files this run loaded carry valid FINESS numbers (9 characters, "
                      "Luhn check digit): rows with another are kept, flagged FINESS_INVALID in dq_flags "
                      "(the run's log and summary name the values)", critical=False)]
    return s


def landing_files_frame(files: list[dict], earlier: pl.DataFrame | None = None) -> pl.DataFrame:
    """This run's per-file outcomes (path, status[, reason_code]) and the earlier failures still in
    the landing area (``summaries.landing_failures``), one row per path, as the input of
    :func:`landing_files_suite`."""
    schema = {"path": pl.Utf8, "status": pl.Utf8, "reason_code": pl.Utf8, "rows_in": pl.Int64,
              "finess_invalid": pl.Int64}
    run = pl.DataFrame([{"path": f["path"], "status": f["status"], "reason_code": f.get("reason_code"),
                         "rows_in": f.get("rows_in"), "finess_invalid": f.get("finess_invalid") or 0}
                        for f in files], schema=schema)
    if earlier is not None:
        old = earlier.with_columns(rows_in=pl.lit(None, pl.Int64), finess_invalid=pl.lit(0, pl.Int64))
        run = pl.concat([run, old.select(list(schema)).cast(schema)])
    no_result = (pl.col("status") == "loaded") & (pl.col("rows_in") == 0).fill_null(False)
    return (run.unique("path", keep="first", maintain_order=True).sort("path")
            .with_columns(failed=(pl.col("status") == "failed").cast(pl.Int64), no_result=no_result.cast(pl.Int64),
                          # a loaded file is named by what the gate warns about
                          reason_code=pl.when(no_result).then(pl.lit("NO_RESULT"))
                          .when(pl.col("finess_invalid") > 0).then(pl.lit("FINESS_INVALID"))
                          .otherwise(pl.col("reason_code"))))


def fct_summary_suite(frame: pl.DataFrame, where: dict[str, str] | None = None) -> Suite:
    """``where``: for each failing row-level count, the file and line of its first rows
    (``summaries.fct_summary``), added to the failure's message."""
    s = Suite("fct_lab_results_summary", "Whole-table measures of marts.fct_lab_results computed by "
              "DuckDB (one row): key, dates, ranges, reference codes, reconciliation with staging. The "
              "dates, ages and départements are checked on current results (a corrected version is "
              "history).", frame, where=where or {})
    s.checks = [
        Check("table_has_rows", "ExpectColumnValuesToBeBetween", {"column": "n_rows", "min_value": 1},
              "the fact table is not empty", critical=False),
        _zero("n_key_duplicates", "(file_id, result_no) is unique"),
        _zero("n_staging_rows_missing", "every staging row reached the fact table and nothing else did"),
        _zero("n_person_key_null", "every result has a pseudonymous person key"),
        _zero("n_collected_null", "every result has a collection date (a deletion may have none)"),
        _zero("n_collected_in_future", "no current result collected after the run"),
        _zero("n_validated_before_collected", "no current result validated before collection"),
        _zero("n_received_before_collected", "no current result received before collection", critical=False),
        _zero("n_age_out_of_range", "ages of current results are between 0 and 125"),
        _zero("n_dep_not_in_reference", "every département of a current result is a code of the reference"),
        _zero("n_dep_outside_sidep", "residents of a COM without a population (984, 986 to 989) are counted "
              "in no SI-DEP or MDO geographic row", critical=False),
        _zero("n_versions_inconsistent", "the versions of each result are consistent: one head, current unless "
              "deleted, named by every version it replaced"),
        _zero("n_deletions_unmatched", "every deletion (status D) deleted a result: one that found none, or "
              "several for a deletion without a collection date, deleted nothing (the result may still count)",
              critical=False),
        _zero("n_corrections_unmatched", "every correction (status C) validated over a year after its collection "
              "corrected a result of its collection day: one that found none is not counted (its date may be "
              "a mistyped year, or its original was never delivered)", critical=False),
        _zero("n_versions_moved_day", "no correction or deletion (status C, D) moved a result to another collection "
              "day: one that did (a corrected date, or another day's result of a daily request number) is listed",
              critical=False),
        _zero("n_requests_shared_by_persons", "no request number and test of a lab holds current results of "
              "several persons (a reused or daily-restarting request number: they are kept as separate results)",
              critical=False),
        _between("share_dep_unknown", 0, 0.05, "at most 5% of results without a département", critical=False),
        _between("share_mapped", 0.9, 1, "at least 90% of results carry a LOINC code", critical=False),
        _between("days_since_newest_collection", None, FRESHNESS_DAYS,
                 f"freshness: the newest collection is at most {FRESHNESS_DAYS} days old", critical=False),
    ]
    return s


def lab_deliveries_suite(frame: pl.DataFrame, late_days: int) -> Suite:
    """Which labs are late: one row per lab that delivered on at least LATE_MIN_DELIVERY_DAYS days
    (``summaries.lab_deliveries``); a warning names each that sent no file for more than
    ``late_days`` days (BIOLAKE_LAB_LATE_DAYS), with the days and its last delivery."""
    s = Suite("lab_deliveries", f"Each lab that delivered files on at least {LATE_MIN_DELIVERY_DAYS} days goes "
              f"on delivering: no file for more than {late_days} days is a warning naming the lab.", frame,
              label_columns=("source", "days_since_last_delivery", "last_delivery"))
    s.checks = [_between("days_since_last_delivery", None, late_days,
                         f"every lab that delivered regularly sent a file within the last {late_days} days "
                         "(BIOLAKE_LAB_LATE_DAYS): a late lab's results are missing from the counts", critical=False,
                         name="lab_delivered_recently")]
    return s


def fct_domains_suite(frame: pl.DataFrame) -> Suite:
    ages = [a for a in S.AGE_CLASSES if a != 0]
    s = Suite("fct_lab_results_domains", "Distinct combinations of the categorical columns of "
              "marts.fct_lab_results with their counts: allowed values.", frame)
    s.checks = [
        _in_set("sex", ["F", "M"], "sex is F, M or unknown"),
        _in_set("cl_age90", ages, "age classes are 9, 19, ... 89, 90 (or unknown)"),
        _in_set("result_status", ["F", "C", "X", "D"], "status is F, C, X or D"),
        _in_set("mapping_status", [MAPPED, SOURCE_LOINC, UNMAPPED], "mapping status is known"),
        _in_set("result_class", ["POS", "NEG", "INVALID"], "qualitative results are POS, NEG or INVALID"),
        _in_set("conversion_status", list(CONVERSION_STATUSES), "unit conversion outcome is known",
                critical=False),
        _not_null("is_current", "every row says whether it is the current version"),
    ]
    return s


def lab_day_suite(frame: pl.DataFrame) -> Suite:
    s = Suite("lab_day", f"Volumes and delays per lab and collection day (last {LAB_DAY_WINDOW_DAYS} days).",
              frame, label_columns=("source", "collected_date"))
    s.checks = [
        _not_null("source"), _not_null("collected_date"),
        Check("lab_day_unique", "ExpectCompoundColumnsToBeUnique",
              {"column_list": ["source", "collected_date"]}, "one row per lab and day"),
        _between("share_mapped", 0.8, 1, "each lab maps at least 80% of a day's results", critical=False),
        _zero("n_negative_delays", "no reception before collection, no validation before reception",
              critical=False),
        _between("reception_h_p90", 0, 240, "90% of specimens reach the lab within 10 days", critical=False),
        _between("validation_h_p90", 0, 240, "90% of results are validated within 10 days of reception",
                 critical=False),
    ]
    return s


def quarantine_suite(frame: pl.DataFrame) -> Suite:
    columns = [c.name for c in CANONICAL_COLUMNS]
    s = Suite("quarantine_reasons", "Quarantined rows per lab, reason and column.", frame,
              label_columns=("source", "reason_code"))
    s.checks = [
        _in_set("reason_code", list(REASONS), "every quarantine reason belongs to quality.reason_codes"),
        _in_set("column", columns, "the offending column is a canonical column", critical=False),
    ]
    return s


def sidep_window_suite(frame: pl.DataFrame, departements: list[str], days: int) -> Suite:
    counts = ["P_f", "P_h", "P", "T_f", "T_h", "T"]
    s = Suite("sidep_daily", f"marts.sidep_daily itself over its last {days} days: grain, "
              "allowed values, P <= T.", frame, label_columns=("jour", "dep", "cl_age90"))
    s.checks = [
        Check("columns", "ExpectTableColumnsToMatchOrderedList",
              {"column_list": [c.name for c in cat.SIDEP_DAILY.columns]}, "the columns of the SI-DEP shape"),
        Check("grain", "ExpectCompoundColumnsToBeUnique", {"column_list": ["jour", "dep", "cl_age90"]},
              "one row per day, département and age class"),
        Check("full_grid", "ExpectTableRowCountToEqual",
              {"value": (frame["jour"].n_unique() if frame.height else 0) * len(departements) * len(S.AGE_CLASSES)},
              "every day x département x age class is present (zeros included)"),
        _not_null("jour"), _not_null("dep"), _not_null("cl_age90"),
        _in_set("cl_age90", S.AGE_CLASSES, "age classes 0 (all), 9 ... 89, 90"),
        _in_set("dep", departements, "départements of the reference"),
        *[_between(c, 0, None, f"{c} is not negative", name=f"{c}_not_negative") for c in counts],
        *[Check(f"{t}_ge_{p}", "ExpectColumnPairValuesAToBeGreaterThanB",
                {"column_A": t, "column_B": p, "or_equal": True}, f"{p} <= {t}: the positives are among the tested")
          for p, t in (("P", "T"), ("P_f", "T_f"), ("P_h", "T_h"))],
    ]
    return s


def sidep_summary_suite(frame: pl.DataFrame, fct_usable: int | None) -> Suite:
    s = Suite("sidep_daily_summary", "Whole-table invariants of marts.sidep_daily computed by DuckDB "
              "(one row), and its reconciliation with the fact table.", frame)
    s.checks = [
        _zero("n_key_duplicates", "(jour, dep, cl_age90) is unique"),
        _zero("n_positive_above_tested", "P <= T, P_f <= T_f, P_h <= T_h everywhere"),
        _zero("n_negative_counts", "no negative count"),
        _zero("n_sex_split_above_total", "P_f + P_h <= P and T_f + T_h <= T (unknown sex counts in neither)"),
        _zero("n_age_classes_above_all_ages", "the age classes never add up to more than the all-ages row"),
        _zero("n_dep_not_in_reference", "départements of the reference only"),
        _zero("n_bad_age_class", "age classes 0, 9 ... 89, 90 only"),
        _zero("n_grid_cells_missing", "the full grid from the first to the last day"),
    ]
    if fct_usable is not None:
        s.checks.append(_between("t_total", 0, fct_usable,
                                 "tested persons <= current usable SARS-CoV-2 results of the fact table",
                                 name="tested_persons_within_results"))
    return s


def sidep_rates_suite(frame: pl.DataFrame) -> Suite:
    s = Suite("sidep_weekly_rates", f"Weekly rates per département (all ages) over the last "
              f"{RATES_WINDOW_WEEKS} weeks, with the reference population.", frame,
              label_columns=("week", "dep"))
    s.checks = [
        _not_null("pop", "every département has a reference population"),
        _between("pop", 1, None, "populations are positive", name="pop_positive"),
        _between("positivity", 0, 1, "positivity P/T is between 0 and 1"),
        _between("incidence", 0, 100_000, "incidence per 100,000 is between 0 and 100,000"),
        _between("incidence", 0, 5_000, "incidence per 100,000 and week is plausible (<= 5,000)",
                 critical=False, name="incidence_plausible"),
    ]
    return s


def mapping_coverage_suite(frame: pl.DataFrame) -> Suite:
    frame = frame.with_columns(
        balance=pl.col("n_results") - pl.col("n_mapped") - pl.col("n_source_loinc") - pl.col("n_unmapped"))
    s = Suite("mapping_coverage", "quality.mapping_coverage: share of results with a LOINC code per lab.",
              frame, label_columns=("source",))
    s.checks = [
        _between("share_coded", 0, 1, "coverage is a share"),
        _zero("balance", "results = mapped + coded by the source + unmapped, per lab"),
        _between("share_coded", 0.9, 1, "each lab codes at least 90% of its results in LOINC", critical=False,
                 name="coverage_at_least_90pct"),
        Check("source_unique", "ExpectColumnValuesToBeUnique", {"column": "source"}, "one row per lab"),
    ]
    return s


def qualitative_coverage_suite(frame: pl.DataFrame) -> Suite:
    pct = f"{UNRECOGNISED_MAX_SHARE:.0%}"
    s = Suite("qualitative_coverage", "quality.qualitative_coverage: text results whose wording is not "
              "recognised, per lab (they count in neither SI-DEP nor MDO; the texts are in "
              "quality.unrecognised_results).", frame, label_columns=("source",))
    s.checks = [
        _between("share_surveillance_unrecognised", 0, UNRECOGNISED_MAX_SHARE,
                 f"each lab leaves at most {pct} of its text results on SI-DEP/MDO tests unrecognised "
                 "(see quality.unrecognised_results; teach the wording in <mappings>/qualitative/)",
                 critical=False, name=f"surveillance_unrecognised_at_most_{pct.rstrip('%')}pct"),
        Check("unrecognised_within_text_results", "ExpectColumnPairValuesAToBeGreaterThanB",
              {"column_A": "n_text_results", "column_B": "n_unrecognised", "or_equal": True},
              "unrecognised text results are among the text results", critical=False),
        Check("source_unique", "ExpectColumnValuesToBeUnique", {"column": "source"}, "one row per lab"),
    ]
    return s


UNREADABLE_MAX_SHARE = 0.05  # a lab's current results with a sex, or a birth date, it could not read


def unreadable_fields_suite(frame: pl.DataFrame) -> Suite:
    """Per lab, the share of results kept without sex or age because the value sent could not be
    read (QA regr3 F3: a lab writing 'Mme'/'Mr' passed the gate silently with P_f = P_h = 0 once an
    unreadable sex stopped quarantining the result)."""
    pct = f"{UNREADABLE_MAX_SHARE:.0%}"
    s = Suite("unreadable_fields", "marts.fct_lab_results: per lab, the current results whose sex or birth "
              "date was sent but could not be read (dq_flags SEX_INVALID, BIRTH_DATE_INVALID): they count in P "
              "and T, in no sex or age class.", frame, label_columns=("source",))
    s.checks = [
        _between(f"share_{what}_unreadable", 0, UNREADABLE_MAX_SHARE,
                 f"each lab's {label} is readable on all but at most {pct} of its current results (more is a "
                 f"systematic coding of the lab's extract: see docs/formats.md, and ask the lab)",
                 critical=False, name=f"{what}_unreadable_at_most_{pct.rstrip('%')}pct")
        for what, label in (("sex", "sex"), ("birth_date", "birth date"))
    ]
    return s


CUT_LAST_FILES = 5  # a lab's most recent CSV files looked at by the suite cut_last_lines


def cut_last_lines_suite(frame: pl.DataFrame) -> Suite:
    """A lab whose recent CSV files all ended inside their last line: each lost that line to
    quarantine as a truncated delivery. A cut transfer happens now and then; at every file it is
    more likely an export that omits the final line break (docs/formats.md), which biolake cannot
    tell from a cut line, and the lab should be asked to end its files with one."""
    s = Suite("cut_last_lines", f"quality.file_log and quality.quarantine: per lab, its last {CUT_LAST_FILES} "
              "loaded CSV files and how many ended without a line break (their last line quarantined as a "
              "truncated delivery).", frame, label_columns=("source",))
    s.checks = [
        _between("systematic", 0, 0,
                 "no lab's recent CSV files all end inside their last line (at every file, the lab's export "
                 "likely omits the final line break: each file's last result is quarantined; ask the lab to "
                 "end its files with a line break, see docs/formats.md)",
                 critical=False, name="not_every_file_cut"),
    ]
    return s


def unrecognised_mdo_frame(unrecognised: pl.DataFrame) -> pl.DataFrame:
    """quality.unrecognised_results rows on a test an MDO rule other than COVID-19 reads, one per
    lab, local code and LOINC, with how many results and distinct texts wait (no text is shown)."""
    mdo = pl.col("surveillance").fill_null("").str.split(", ").list.eval(
        pl.element().str.starts_with("MDO ") & (pl.element() != "MDO covid19")).list.any()
    return (unrecognised.filter(mdo)
            .group_by("source", "local_code", "loinc_code", "surveillance")
            .agg(pl.col("n_results").sum().cast(pl.Int64), pl.len().cast(pl.Int64).alias("n_texts"))
            .sort("source", "local_code", "loinc_code", nulls_last=True))


def _no_listed_rows(name: str, description: str, frame: pl.DataFrame, labels: tuple[str, ...],
                    check: str, what: str) -> Suite:
    """A warning suite over a quality table's rows: any row with ``n_results`` above zero is named
    by its ``labels`` (the table lists what no count holds; it is never critical)."""
    s = Suite(name, description, frame, label_columns=labels)
    s.checks = [Check(check, "ExpectColumnValuesToBeBetween", {"column": "n_results", "min_value": 0, "max_value": 0},
                      what, critical=False)]
    return s


def unrecognised_mdo_suite(frame: pl.DataFrame) -> Suite:
    return _no_listed_rows(
        "unrecognised_mdo", "quality.unrecognised_results on the tests of the notifiable diseases (MDO rules other "
        "than COVID-19): a rare disease's positives are few, so a single unrecognised text may be a lost case, "
        "whatever the lab's share (qualitative_coverage) says.", frame, ("source", "local_code", "loinc_code",
                                                                        "surveillance"),
        "no_unrecognised_mdo_result",
        "no text result (nor number) on an MDO test is left unrecognised (it counts in no MDO case: see "
        "quality.unrecognised_results; a text: teach the wording in <mappings>/qualitative/; reason "
        "number_on_qualitative_test: a number on a yes/no test, ask the lab for its verdict)")


def mdo_unread_specimen_suite(frame: pl.DataFrame) -> Suite:
    """quality.mdo_unread_specimens, the rows in no case (``counted`` false): QA regr2 F2."""
    return _no_listed_rows(
        "mdo_unread_specimen", "quality.mdo_unread_specimens: positive results on an MDO rule needing a normally "
        "sterile site whose stated specimen is read as neither sterile nor non-sterile, on a code that does not "
        "name a sterile site: counted in no case.",
        frame.filter(~pl.col("counted")).select("source", "mdo_id", "loinc_code", "n_results"),
        ("source", "mdo_id", "loinc_code"), "no_unread_mdo_specimen",
        "no positive result on a sterile-site MDO rule is dropped because its specimen wording is not known (see "
        "the specimen texts in quality.mdo_unread_specimens; a sterile site: add the word to STERILE_SITE_WORDS "
        "in transforms/epi/mdo.py)")


def unmapped_surveillance_suite(frame: pl.DataFrame) -> Suite:
    return _no_listed_rows(
        "unmapped_surveillance", "quality.unmapped_backlog: unmapped local codes whose label reads like a test "
        "SI-DEP or MDO counts (column surveillance_loinc): their results are in none of those counts until the "
        "code is mapped.", frame, ("source", "local_code", "surveillance"), "no_unmapped_surveillance_test",
        "no unmapped local code reads like a test SI-DEP or MDO counts (its results are missing from the published "
        "counts: map it with biolake mappings export, then import)")


def grain_suite(frame: pl.DataFrame) -> Suite:
    s = Suite("grain", "The grain of every analysts' table declared in the catalog: declared key unique, "
              "declared columns present (partitioned tables: this run's partitions).", frame,
              label_columns=("table",))
    s.checks = [
        _zero("n_key_duplicates", "the declared key of every table is unique"),
        _zero("n_missing_columns", "every declared column is in the files (else views and readers break)"),
        _zero("n_positive_above_tested", "P <= T in every table that has both"),
        _zero("n_null_key", "the key columns of the marts are never empty"),
    ]
    return s


# --------------------------------------------------------------------------------------------
# building the inputs
# --------------------------------------------------------------------------------------------
def build_suites(wh: Warehouse, seeds_dir: Path, now: datetime | None = None,
                 run_id: str | None = None, file_ids: list[str] | None = None,
                 run_files: list[dict] | None = None, lab_late_days: int | None = None) -> list[Suite]:
    """Compute every bounded input with DuckDB and attach its suite. Suites whose source table
    has no file yet are left out; ``run_files``: the landing files this run handled (path,
    status), checked with the earlier failures still in the landing area (suite landing_files).

    The grain of the partitioned tables is checked on the partitions of ``file_ids`` (the files
    this run wrote); when None, on the files registered by ``run_id``, else by the latest run that
    registered files; with neither ``run_id`` nor ``file_ids``, on every partition.
    ``lab_late_days``: the days without a file after which a lab that delivered regularly is late
    (suite lab_deliveries; None or 0: not checked).
    """
    now = now or datetime.now()
    seeds_dir = Path(seeds_dir)
    con = S.connect(wh)
    src = S.Sources(wh, con)
    deps = S.departements(seeds_dir)["dep"].to_list()
    suites: list[Suite] = []
    try:
        earlier = S.landing_failures(con, src, wh.home / "landing") if src.has(cat.FILE_LOG) else None
        if run_files or (earlier is not None and earlier.height):
            suites.append(landing_files_suite(landing_files_frame(run_files or [], earlier)))
        if src.has(cat.FILE_LOG):
            suites.append(file_accounting_suite(S.file_accounting(con, src)))
            suites.append(quarantine_suite(S.quarantine_reasons(con, src)))
            suites.append(cut_last_lines_suite(S.cut_last_lines(con, src, CUT_LAST_FILES)))
            if lab_late_days:
                suites.append(lab_deliveries_suite(S.lab_deliveries(con, src, now, LATE_MIN_DELIVERY_DAYS),
                                                   lab_late_days))
        usable = None
        if src.has(cat.FCT_LAB_RESULTS):
            covid = _covid_loincs(seeds_dir)
            fs = S.fct_summary(con, src, deps, covid, now,
                               reference=S.departements(seeds_dir, everywhere=True)["dep"].to_list())
            usable = int(fs["n_covid_results_usable"][0])
            suites.append(fct_summary_suite(fs.drop("newest_collection", "where"), json.loads(fs["where"][0])))
            suites.append(fct_domains_suite(S.fct_domains(con, src)))
            suites.append(unreadable_fields_suite(S.unreadable_shares(con, src)))
            _, newest = S.sidep_bounds(con, src) if src.has(cat.SIDEP_DAILY) else (None, None)
            newest = fs["newest_collection"][0] or newest
            since = newest - timedelta(days=LAB_DAY_WINDOW_DAYS - 1) if newest else None
            suites.append(lab_day_suite(S.lab_day(con, src, since)))
        if src.has(cat.SIDEP_DAILY):
            suites.append(sidep_window_suite(S.sidep_window(con, src, SIDEP_WINDOW_DAYS), deps, SIDEP_WINDOW_DAYS))
            suites.append(sidep_summary_suite(S.sidep_summary(con, src, deps), usable))
            suites.append(sidep_rates_suite(S.sidep_weekly_rates(con, src, S.population(seeds_dir),
                                                                 RATES_WINDOW_WEEKS)))
        if src.has(cat.MAPPING_COVERAGE):
            suites.append(mapping_coverage_suite(S.read_table(con, src, cat.MAPPING_COVERAGE)))
        if src.has(cat.QUALITATIVE_COVERAGE):
            suites.append(qualitative_coverage_suite(S.read_table(con, src, cat.QUALITATIVE_COVERAGE)))
        if src.has(cat.UNRECOGNISED_RESULTS):
            suites.append(unrecognised_mdo_suite(
                unrecognised_mdo_frame(S.read_table(con, src, cat.UNRECOGNISED_RESULTS))))
        if src.has(ce.MDO_UNREAD_SPECIMENS):
            suites.append(mdo_unread_specimen_suite(S.read_table(con, src, ce.MDO_UNREAD_SPECIMENS)))
        if src.has(cat.UNMAPPED_BACKLOG):
            backlog = S.read_table(con, src, cat.UNMAPPED_BACKLOG)
            if "surveillance" in backlog.columns:  # written by every run's publication
                suites.append(unmapped_surveillance_suite(
                    backlog.filter(pl.col("surveillance").is_not_null())
                    .select("source", "local_code", "local_label", "n_results", "surveillance_loinc", "surveillance")))
        run_parts = list(file_ids) if file_ids is not None else _run_partitions(wh, run_id)
        suites.append(grain_suite(S.grain(con, src, run_parts, skip=("quality.expectation_results",))))
    finally:
        con.close()
    return suites


def _covid_loincs(seeds_dir: Path) -> list[str]:
    defs = pl.read_csv(seeds_dir / "test_definitions.csv", infer_schema=False)
    return defs.filter(pl.col("disease") == "covid19")["loinc_num"].to_list()


def _run_partitions(wh: Warehouse, run_id: str | None) -> list[str] | None:
    """file_ids loaded by ``run_id`` or, when it registered none (the files are registered by a
    sub-flow with its own id), by the latest run that loaded files; None = check all."""
    if run_id is None:
        return None
    log = wh.scan(cat.FILE_LOG).select("file_id", "run_id", "status", "registered_at").collect()
    loaded = log.filter(pl.col("status") == "loaded")
    mine = loaded.filter(pl.col("run_id") == run_id)
    if mine.is_empty() and loaded.height:
        latest = loaded.sort("registered_at")["run_id"][-1]
        mine = loaded.filter(pl.col("run_id") == latest)
    return mine["file_id"].to_list()


# --------------------------------------------------------------------------------------------
# running them with Great Expectations
# --------------------------------------------------------------------------------------------
def gx_root(home: Path) -> Path:
    return Path(home) / "gx"


def data_docs_dir(home: Path) -> Path:
    return Path(home) / "reports" / "data_docs"


def _context(home: Path):
    """The file-backed GX project under <home>/gx (created on first use), Data Docs configured
    under <home>/reports/data_docs, progress bars and analytics off (no network here, and health
    data platforms send no usage events)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="file", project_root_dir=str(home))
    sites = {DOCS_SITE: {
        "class_name": "SiteBuilder", "show_how_to_buttons": False,
        # relative to <home>/gx, so the data home can be moved
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": "../reports/data_docs"},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    }}
    if ctx.variables.data_docs_sites != sites or not _progress_off(ctx) or ctx.config.analytics_enabled is not False:
        ctx.variables.data_docs_sites = sites
        ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        ctx.config.analytics_enabled = False
        ctx.variables.save()
        ctx = gx.get_context(mode="file", project_root_dir=str(home))
    return ctx


def _progress_off(ctx) -> bool:
    pb = ctx.variables.progress_bars
    globally = pb.get("globally") if isinstance(pb, dict) else getattr(pb, "globally", None)
    return globally is False


def _to_pandas(df: pl.DataFrame):
    # dates become datetime64 so that GX compares them as timestamps
    return df.with_columns(pl.col(pl.Date).cast(pl.Datetime("us"))).to_pandas()


def run_suites(home: Path, suites: list[Suite], run_name: str) -> tuple[list[dict], Path]:
    """Validate each suite's frame through its checkpoint; build Data Docs for the new results.

    Returns one dict per expectation (the columns of quality.expectation_results, without run_id
    and validated_at) and the path of the Data Docs index.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

    home = Path(home)
    prune_history(home, keep=KEEP_RUNS - 1)  # this run makes KEEP_RUNS
    ctx = _context(home)
    close_private_stores(home)
    ds = _datasource(ctx)
    run_id = RunIdentifier(run_name=run_name, run_time=datetime.now().astimezone())
    outcomes: list[dict] = []
    identifiers = []
    for s in suites:
        # the assets and batch definitions of earlier runs are reused: adding one rewrites the
        # project's great_expectations.yml
        asset = _get_or_add(lambda: ds.get_asset(s.name), lambda: ds.add_dataframe_asset(s.name))
        batch = _get_or_add(lambda: asset.get_batch_definition("whole"),
                            lambda: asset.add_batch_definition_whole_dataframe("whole"))
        by_name = {c.name: c for c in s.checks}
        # the expectations go in with the suite (add_expectation on a suite already in the store
        # rewrites the suite's file for every expectation added)
        expectations = [getattr(gxe, c.expectation)(**c.kwargs, severity="critical" if c.critical else "warning",
                                                    description=c.description, meta={"name": c.name})
                        for c in _distinct_checks(s.checks)]
        suite = gx.ExpectationSuite(name=s.name, expectations=expectations, meta={"description": s.description})
        result_format: dict[str, Any] = {"result_format": "SUMMARY", "partial_unexpected_count": 5}
        labels = [c for c in s.label_columns if c in s.frame.columns]
        if labels:
            result_format["unexpected_index_column_names"] = labels
        # saving the checkpoint saves its validation definition and the suite with it, once each
        checkpoint = ctx.checkpoints.add_or_update(gx.Checkpoint(
            name=f"biolake-{s.name}", actions=[], result_format=result_format,
            validation_definitions=[gx.ValidationDefinition(name=s.name, data=batch, suite=suite)]))
        res = checkpoint.run(batch_parameters={"dataframe": _to_pandas(s.frame)}, run_id=run_id)
        for ident, run_result in res.run_results.items():
            identifiers.append(ident)
            for r in run_result.results:
                name = (r.expectation_config.meta or {}).get("name")
                check = by_name.get(name)
                outcomes.append(_outcome(s, check, r))
    # only the pages of this run's results, of the suites (every validation page links to its
    # suite's) and the index: bounded, whatever the history
    identifiers += [ExpectationSuiteIdentifier(name=s.name) for s in suites]
    ctx.build_data_docs(site_names=[DOCS_SITE], resource_identifiers=identifiers)
    # readable without the CDNs GX's pages load their styles and scripts from
    make_offline(data_docs_dir(home), gx_root(home))
    return outcomes, data_docs_dir(home) / "index.html"


def _datasource(ctx):
    """The project's pandas datasource, kept from run to run with its assets (created the first
    time, or replaced if something else has its name)."""
    from great_expectations.datasource.fluent import PandasDatasource

    try:
        ds = ctx.data_sources.get(DATASOURCE)
    except KeyError:
        ds = None
    if not isinstance(ds, PandasDatasource):
        ds = ctx.data_sources.add_or_update_pandas(DATASOURCE)
    return ds


def _distinct_checks(checks: list[Check]) -> list[Check]:
    """The checks without repeats (same expectation, arguments, severity and description): a GX
    suite is a set and keeps only the first of such equal expectations."""
    seen: set[tuple] = set()
    out = []
    for c in checks:
        sig = (c.expectation, json.dumps(c.kwargs, sort_keys=True, default=str), c.critical, c.description)
        if sig not in seen:
            seen.add(sig)
            out.append(c)
    return out


def _get_or_add(get, add):
    try:
        return get()
    except (LookupError, ValueError) as err:  # GX raises its own subclasses of these when absent
        del err
        return add()


def _outcome(s: Suite, check: Check | None, r) -> dict:
    cfg = r.expectation_config
    res = r.result or {}
    exc = r.exception_info or {}
    raised = bool(exc.get("raised_exception")) if isinstance(exc, dict) else False
    critical = check.critical if check else str(cfg.severity).lower().endswith("critical")
    observed = _observed(res, s.label_columns)
    if not r.success and check is not None and s.where.get(check.column or ""):
        observed = f"{observed}; first at {s.where[check.column]}"[:700]
    if raised:
        observed = f"error: {str(exc.get('exception_message'))[:300]}"
    return {
        "suite": s.name,
        "expectation_id": check.name if check else cfg.type,
        "expectation": cfg.type,
        "column": check.column if check else cfg.kwargs.get("column"),
        "kwargs": json.dumps(check.kwargs if check else {}, default=str, ensure_ascii=False)[:2000],
        "severity": "critical" if critical else "warning",
        "critical": critical,
        "success": bool(r.success) and not raised,
        "element_count": _int(res.get("element_count")),
        "unexpected_count": _int(res.get("unexpected_count")),
        "observed": observed,
        "description": check.description if check else None,
    }


def _int(v) -> int | None:
    return None if v is None else int(v)


def _plain(v):
    if hasattr(v, "item"):
        return v.item()
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return v


def _observed(res: dict, labels: tuple[str, ...]) -> str:
    """A short, readable summary of what GX observed (aggregates only: no patient data here)."""
    if "observed_value" in res:
        return json.dumps(_plain(res["observed_value"]), default=str, ensure_ascii=False)[:500]
    n = res.get("unexpected_count")
    if n is None:
        return ""
    if not n:
        return f"0 of {res.get('element_count')} rows unexpected"
    rows = res.get("partial_unexpected_index_list") or []
    if rows and labels:
        shown = [", ".join(f"{k}={_plain(row[k])}" for k in labels if k in row) for row in rows[:3]]
        examples = "; ".join(shown)
    else:
        examples = ", ".join(str(_plain(v)) for v in (res.get("partial_unexpected_list") or [])[:3])
    return f"{n} of {res.get('element_count')} rows unexpected, e.g. {examples}"[:500]


def close_private_stores(home: Path) -> list[Path]:
    """Close (0700, warehouse/analyst.close_dir) GX's validation store and the Data Docs: the
    observations of the suites ``file_accounting`` and ``landing_files`` name landing files, which
    labs sometimes name after patients (QA priv F3: world-readable copies of what
    quality.expectation_results keeps closed)."""
    from warehouse.analyst import close_dir

    return [close_dir(gx_root(home) / "uncommitted"), close_dir(data_docs_dir(home))]


def prune_history(home: Path, keep: int = KEEP_RUNS) -> int:
    """Keep the validation results and Data Docs pages of the last ``keep`` runs of each suite.

    Layout (GX): ``<store>/<suite>/<run_name>/<run_time>/<batch>.{json,html}``. Returns the number
    of run folders removed.
    """
    removed = 0
    stores = [gx_root(home) / "uncommitted" / "validations", data_docs_dir(home) / "validations"]
    for store in stores:
        if not store.exists():
            continue
        for suite_dir in (p for p in store.iterdir() if p.is_dir()):
            runs = [(max((t.name for t in r.iterdir()), default=""), r) for r in suite_dir.iterdir() if r.is_dir()]
            runs.sort()
            for _, r in runs[:-keep] if len(runs) > keep else []:
                shutil.rmtree(r, ignore_errors=True)
                removed += 1
    return removed
