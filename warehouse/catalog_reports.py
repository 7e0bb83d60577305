"""Warehouse tables of the reports side, declared like those of warehouse/catalog.py.

``quality.expectation_results`` keeps the outcome of every Great Expectations expectation of every
run (flows/quality_gate.py), one small Parquet file per run, so the history of the data-quality gate
can be queried like any other table. Its inputs are aggregates (marts and per-run summaries), so it
holds no patient data.
"""

from __future__ import annotations

import polars as pl

from warehouse.catalog import C, Table

_U, _I, _B = pl.Utf8(), pl.Int64(), pl.Boolean()

EXPECTATION_RESULTS = Table(
    "quality", "expectation_results",
    "One row per Great Expectations expectation evaluated by the quality gate of a run: suite, "
    "expectation, severity, success and a short summary of what was observed.",
    (
        C("run_id", _U, "run that evaluated it"),
        C("validated_at", pl.Datetime("us"), "when the gate ran"),
        C("suite", _U, "expectation suite = the input validated (a mart or a per-run summary)"),
        C("expectation_id", _U, "stable id of the expectation inside its suite"),
        C("expectation", _U, "expectation type, e.g. expect_column_values_to_be_between"),
        C("column", _U, "column(s) it checks, null for table-level expectations"),
        C("kwargs", _U, "JSON: the expectation's arguments"),
        C("severity", _U, "critical | warning"),
        C("critical", _B, "a failure blocks the publication of exports"),
        C("success", _B, "the expectation held"),
        C("element_count", _I, "rows of the input it was evaluated on"),
        C("unexpected_count", _I, "rows that broke it (null for aggregate expectations)"),
        C("observed", _U, "short summary of the observed value or of the first unexpected values"),
        C("description", _U, "what the expectation means, in words"),
    ),
    key=("run_id", "suite", "expectation_id"),
    file_key="run_id",
)

TABLES: tuple[Table, ...] = (EXPECTATION_RESULTS,)
