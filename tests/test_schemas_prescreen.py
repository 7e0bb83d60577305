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
from tests.helpers import HEADER, bad_nir, line
from transforms.canonical import CANONICAL_SCHEMA
from transforms.parsers.csv_extract import parse


def _pandera_failing_rows(df: pl.DataFrame) -> set[int]:
    try:
        CanonicalResult.validate(df, lazy=True)
    except pa.errors.SchemaErrors as err:
        return set(err.failure_cases["index"].drop_nulls().to_list())
    return set()


def _rows(path, source="lab") -> pl.DataFrame:
    return pl.concat([c.rows for c in parse(path, file_id="f", source=source)]).select(list(CANONICAL_SCHEMA))


def test_prescreen_rejects_exactly_the_rows_pandera_reports(generated, tmp_path):
    files = sorted((generated / "landing").rglob("*.csv"), key=lambda p: -p.stat().st_size)[:6]
    frames = [_rows(p, p.parent.name) for p in files]
    handmade = tmp_path / "defects.csv"
    handmade.write_text("\n".join([
        HEADER, line(), line(N_DEMANDE="D2", NIR=bad_nir("2550999000116")), line(N_DEMANDE="D3", NIR="2550999"),
        line(N_DEMANDE="D4", DATE_NAISSANCE="01/01/1850"), line(N_DEMANDE="D5", DATE_NAISSANCE="01/01/2027"),
        line(N_DEMANDE="D6", DATE_RECEPTION="01/11/2026 08:00"), line(N_DEMANDE="D7", SEXE="X"),
        line(N_DEMANDE="D8", CODE_POSTAL="7501"), line(N_DEMANDE="D9", STATUT="Z"), line(N_DEMANDE=""),
        line(N_DEMANDE="D10", CODE_ANALYSE=""), line(N_DEMANDE="D11", RESULTAT=""),
        line(N_DEMANDE="D12", NIR="", NOM=""), line(N_DEMANDE="D13", DATE_PRELEVEMENT=""),
        line(N_DEMANDE="D14", RESULTAT="", STATUT="X"),
    ]) + "\n", encoding="utf-8")
    frames.append(_rows(handmade))
    for df in frames:
        ok = passes_every_check(df)
        assert set((~ok).arg_true().to_list()) == _pandera_failing_rows(df)
    assert sum((~passes_every_check(df)).sum() for df in frames) > 20  # the defects were there


def test_validate_rows_equals_a_full_pandera_pass(generated):
    path = max((generated / "landing").rglob("*.csv"), key=lambda p: p.stat().st_size)
    df = _rows(path, path.parent.name)
    valid, quarantine = validate_rows(df, now=datetime(2027, 1, 1))
    failing = _pandera_failing_rows(df)
    # every row pandera rejects is quarantined; every row it accepts is valid unless the parser or
    # the clock flagged it (parse_issues, collection in the future)
    flagged = set(df.with_row_index("i").filter(pl.col("parse_issues").is_not_null())["i"].to_list())
    lines = df["line_no"]
    assert {lines[i] for i in failing} <= set(quarantine["line_no"].to_list())
    assert set(valid["line_no"].to_list()) == {lines[i] for i in range(df.height)} - {
        lines[i] for i in failing | flagged}
