"""The one-query pre-screen of quality/schemas.py agrees with pandera row for row.

``validate_rows`` hands pandera only the rows ``passes_every_check`` rejects; that is only right if
the pre-screen rejects exactly the rows pandera's own validation reports. Checked on the generator's
defects and on hand-made ones covering every check of the model.
"""

from __future__ import annotations

from datetime import datetime

import pandera.polars as pa
import polars as pl

from quality.schemas import CanonicalResult, passes_every_check, validate_rows
from tests.helpers import canonical_rows, defect_lines


def _pandera_failing_rows(df: pl.DataFrame) -> set[int]:
    try:
        CanonicalResult.validate(df, lazy=True)
    except pa.errors.SchemaErrors as err:
        return set(err.failure_cases["index"].drop_nulls().to_list())
    return set()


def test_prescreen_rejects_exactly_the_rows_pandera_reports(generated, tmp_path):
    files = sorted((generated / "landing").rglob("*.csv"), key=lambda p: -p.stat().st_size)[:6]
    frames = [canonical_rows(p, p.parent.name) for p in files]
    handmade = tmp_path / "defects.csv"
    handmade.write_text("\n".join(defect_lines()) + "\n", encoding="utf-8")
    frames.append(canonical_rows(handmade))
    for df in frames:
        ok = passes_every_check(df)
        assert set((~ok).arg_true().to_list()) == _pandera_failing_rows(df)
    assert sum((~passes_every_check(df)).sum() for df in frames) > 20  # the defects were there


def _birth_date_failing_rows(df: pl.DataFrame) -> set[int]:
    """Rows whose birth date pandera or the parser refuses: validate_rows keeps them with the birth
    date unknown (a flag, not a reason: a wrong birth date does not cost the result)."""
    parsed = set(df.with_row_index("i").filter(
        pl.col("parse_issues").str.contains("DATE_INVALID:birth_date").fill_null(False))["i"].to_list())
    try:
        CanonicalResult.validate(df, lazy=True)
    except pa.errors.SchemaErrors as err:
        fc = err.failure_cases
        on_birth = fc.filter((pl.col("column") == "birth_date") | pl.col("check").str.contains("birth_date"))
        return parsed | set(on_birth["index"].drop_nulls().to_list())
    return parsed


def test_validate_rows_equals_a_full_pandera_pass(generated):
    path = max((generated / "landing").rglob("*.csv"), key=lambda p: p.stat().st_size)
    df = canonical_rows(path, path.parent.name)
    valid, quarantine = validate_rows(df, now=datetime(2027, 1, 1))
    # a refused birth date is unknown for the other checks (validate_rows nulls it and flags the row)
    births = _birth_date_failing_rows(df)
    assert births  # the generator's impossible birth dates are there: the case is exercised
    unknown = pl.int_range(pl.len()).is_in(sorted(births))
    df = df.with_columns(
        pl.when(unknown).then(None).otherwise(pl.col("birth_date")).alias("birth_date"),
        pl.col("parse_issues").str.replace_all(r"DATE_INVALID:birth_date(:partial)?;?", "")
        .str.strip_chars(";").replace("", None).alias("parse_issues"))
    failing = _pandera_failing_rows(df)
    # every row pandera rejects is quarantined; every row it accepts is valid unless the parser or
    # the clock flagged it (parse_issues, collection in the future)
    flagged = set(df.with_row_index("i").filter(pl.col("parse_issues").is_not_null())["i"].to_list())
    lines = df["line_no"]
    assert {lines[i] for i in failing} <= set(quarantine["line_no"].to_list())
    assert set(valid["line_no"].to_list()) == {lines[i] for i in range(df.height)} - {
        lines[i] for i in failing | flagged}
