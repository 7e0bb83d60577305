"""Text that people open in a spreadsheet: neutralise cells that a spreadsheet would run.

A cell starting with ``=``, ``+``, ``-`` or ``@`` (or a tab / carriage return) is a formula to
Excel or LibreOffice (``=HYPERLINK(...)``, ``@SUM(...)``, DDE payloads). Written with a leading
apostrophe it is shown as text. Files biolake writes for people (publications, the mapping work
queue) go through :func:`neutralise_formulas`; files it reads back from people go through
:func:`restore_formulas`.
"""

from __future__ import annotations

import polars as pl

FORMULA_PATTERN = r"^[=+\-@\t\r]"


def neutralise_formulas(df: pl.DataFrame) -> pl.DataFrame:
    """Text cells starting with = + - @ (or a tab / carriage return) get a leading apostrophe.
    Numeric columns are left alone: -3 is a number."""
    text = [c for c, t in df.schema.items() if t == pl.Utf8]
    return df.with_columns(
        pl.when(pl.col(c).str.contains(FORMULA_PATTERN)).then(pl.lit("'") + pl.col(c)).otherwise(pl.col(c)).alias(c)
        for c in text
    )

