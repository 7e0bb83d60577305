"""LOINC code syntax: digits, a dash, one check digit (Luhn mod 10 over the digits before the dash)."""

from __future__ import annotations

import polars as pl


def loinc_check_ok(code: str | None) -> bool:
    if not code:
        return False
    body, sep, check = code.partition("-")
    if not sep or not body.isdigit() or len(check) != 1 or not check.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return (10 - total % 10) % 10 == int(check)


def loinc_valid_expr(col: str) -> pl.Expr:
    """Vectorised LOINC syntax + check digit; null for null input."""
    c = pl.col(col)
    shaped = c.str.contains(r"^[0-9]{1,7}-[0-9]$")
    body = c.str.split("-").list.first().str.zfill(8)
    total = pl.lit(0)
    for pos in range(8):  # position from the right: 0 is the rightmost digit of the body
        d = body.str.slice(7 - pos, 1).cast(pl.Int64, strict=False)
        if pos % 2 == 0:
            d = pl.when(d * 2 > 9).then(d * 2 - 9).otherwise(d * 2)
        total = total + d
    check = c.str.split("-").list.last().cast(pl.Int64, strict=False)
    return pl.when(shaped).then((10 - total % 10) % 10 == check).otherwise(pl.when(c.is_not_null()).then(False))
