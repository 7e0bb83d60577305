"""Revisions: which days and weeks a late or corrected result changes.

A result belongs to the day its specimen was collected, whenever it arrives. Rather than guessing
from the new files what they might change (a late positive can also un-count a later positive of
the same person, 0-59 days after it), the counted person-days (or MDO cases) are recomputed and
compared, day by day (week by week), with a digest of those the previous run used: the days where
any row appeared, disappeared or changed are the affected days; the aggregates of those days, and
of the weeks holding them, are recomputed and nothing else. The period itself (first to last day)
can move too: days entering or leaving it are affected.
"""

from __future__ import annotations

import hashlib
from datetime import date

import polars as pl

from transforms.epi.indicators import day_range, semaine_of


def changed_periods(old: pl.DataFrame, new: pl.DataFrame, period_col: str) -> set:
    """Values of ``period_col`` on the rows present in one frame and not the other (all columns
    compared, nulls equal)."""
    cols = new.columns
    old = old.select(cols)
    gone = old.join(new, on=cols, how="anti", nulls_equal=True)
    came = new.join(old, on=cols, how="anti", nulls_equal=True)
    return set(gone[period_col].to_list()) | set(came[period_col].to_list())


def period_days(frame: pl.DataFrame, col: str = "jour") -> list[date]:
    """Every day from the first to the last of ``frame[col]`` (empty frame: none)."""
    if frame.is_empty():
        return []
    return day_range(frame[col].min(), frame[col].max())


def affected_days(old: pl.DataFrame, new: pl.DataFrame) -> tuple[set[date], list[date]]:
    """(days to recompute, the new period's days) from two versions of the per-day digests of the
    counted person-days (see ``digests``)."""
    def period(d: pl.DataFrame) -> list[date]:
        days = [date.fromisoformat(p) for p in d["period"].to_list()]
        return day_range(min(days), max(days)) if days else []

    new_period = period(new)
    changed = {date.fromisoformat(p) for p in changed_by_digest(old, new)}
    return changed | (set(period(old)) ^ set(new_period)), new_period


def weeks_of(days) -> set[str]:
    return {semaine_of(d) for d in days}


def rate_days(affected: set[date], period: list[date], window: int = 7) -> set[date]:
    """Days whose sliding ``window``-day values depend on an affected day."""
    in_period = set(period)
    return {d.fromordinal(d.toordinal() + k) for d in affected for k in range(window)} & in_period


def digests(frame: pl.DataFrame, period_col: str) -> pl.DataFrame:
    """Per value of ``period_col`` (as text): the number of rows and a sha256 digest of the sorted
    rows (every column). Equal digests mean equal rows, whatever their order."""
    schema = {"period": pl.Utf8, "rows": pl.Int64, "digest": pl.Utf8}
    if frame.is_empty():
        return pl.DataFrame(schema=schema)
    cols = sorted(frame.columns)
    line = pl.concat_str([pl.col(c).cast(pl.Utf8).fill_null("\u2205") for c in cols], separator="\x1f")
    per = (
        frame.select(pl.col(period_col).cast(pl.Utf8).alias("period"), line.alias("_line"))
        .sort("period", "_line")
        .group_by("period", maintain_order=True)
        .agg(pl.len().cast(pl.Int64).alias("rows"), pl.col("_line").str.join("\x1e").alias("_text"))
    )
    digest = [hashlib.sha256(t.encode("utf-8")).hexdigest()[:20] for t in per["_text"].to_list()]
    return per.select("period", "rows", pl.Series("digest", digest, dtype=pl.Utf8)).select(list(schema))


def changed_by_digest(old: pl.DataFrame, new: pl.DataFrame) -> set[str]:
    """Periods whose digest differs, or that exist in one version only."""
    j = old.join(new, on="period", how="full", coalesce=True, suffix="_new")
    return set(j.filter(~pl.col("digest").eq_missing(pl.col("digest_new")))["period"].to_list())
