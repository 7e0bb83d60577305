"""FINESS numbers (the establishment, here the lab, that produced a result): shape and check digit.

A FINESS has 9 characters: the département (2 digits, or ``2A``/``2B`` for Corsica), then 7 digits.
Real numbers pass a Luhn check over their 9 digits (observed, not documented: /work/shared/domain.md,
"Identifiers and their checks"), so a failure is a data-quality warning, never a reason to drop the
result: staging flags the row ``FINESS_INVALID`` and the run names the file (docs/formats.md). How the
key of a Corsican number is computed is not known to us: ``2A``/``2B`` numbers are checked for their
shape only.

The check runs on the distinct values of a column (a file carries one FINESS, or a few), so its
cost does not grow with the rows.
"""

from __future__ import annotations

import re

import polars as pl

FLAG = "FINESS_INVALID"
SHAPE = r"^(?:[0-9]{2}|2[AB])[0-9]{7}$"
_DIGITS = r"^[0-9]{9}$"


def valid_expr(col: str) -> pl.Expr:
    """Vectorised check of column ``col``: True for a FINESS of the right shape whose digits pass
    the Luhn check (or a Corsican ``2A``/``2B`` number of the right shape), False otherwise, null
    for null."""
    c = pl.col(col)
    total = pl.lit(0, dtype=pl.Int32)
    for j in range(9):
        digit = c.str.slice(j, 1).cast(pl.Int32, strict=False)
        if j % 2 == 1:  # the 2nd, 4th... digit from the right (the key is the 1st): doubled
            d2 = digit * 2
            digit = pl.when(d2 > 9).then(d2 - 9).otherwise(d2)
        total = total + digit
    luhn = (total % 10) == 0
    return (pl.when(c.is_null()).then(None).when(c.str.contains(_DIGITS)).then(luhn.fill_null(False))
            .otherwise(c.str.contains(SHAPE)).alias(col))


def invalid_values(values: pl.Series) -> pl.Series:
    """The distinct non-null values of ``values`` that are not valid FINESS numbers."""
    distinct = values.drop_nulls().unique().to_frame("v")
    return distinct.filter(~valid_expr("v"))["v"]


def failures(values: pl.Series) -> dict[str, int]:
    """``{value: rows}`` for each distinct invalid FINESS in ``values`` (nulls are not checked)."""
    bad = invalid_values(values)
    if bad.is_empty():
        return {}
    counts = values.filter(values.is_in(bad.implode())).value_counts()
    return {v: int(n) for v, n in counts.iter_rows()}


def shown(value: str) -> str:
    """How a failing value may be named in logs and summaries: itself when it has a FINESS's shape
    (an establishment's number, nothing personal); otherwise only what is wrong with it, as a value
    of another shape may be something else typed in the wrong column (a NIR, a birth date)."""
    if re.fullmatch(SHAPE, value):
        return f"{value} (wrong check digit)"
    return f"a value not shaped like a FINESS ({len(value)} characters, not shown)"


def describe(fails: dict[str, int], limit: int = 3) -> str:
    """One line for a file's invalid FINESS values: ``FINESS not valid: 440000009 (wrong check digit)
    on 12 row(s); rows kept, flagged FINESS_INVALID``."""
    # the values that can be named first, then by rows
    items = sorted(fails.items(), key=lambda kv: (not re.fullmatch(SHAPE, kv[0]), -kv[1], kv[0]))
    parts = [f"{shown(v)} on {n:,} row(s)" for v, n in items[:limit]]
    more = f" and {len(items) - limit} other value(s)" if len(items) > limit else ""
    return f"FINESS not valid: {', '.join(parts)}{more}; rows kept, flagged {FLAG}"
