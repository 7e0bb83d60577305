"""The expected SI-DEP daily table, computed from the generator's own model of what it wrote.

Independent of the pipeline: it takes the SARS-CoV-2 results that are valid and current (one row
per result, with the identity fields as written) and applies the domain notes' "SI-DEP
indicators" (domain.md, shared with the team; never read at run time):

- persons are identified by their NIR; the date is the collection date (``jour``);
- a person-day is positive if any result that day is positive (positive wins), else negative if
  any result is negative; INVALID results (douteux, ininterprétable) are ignored altogether;
- positive person-days are walked in date order per person: a positive day counts (P and T) when it
  is the person's first or comes 60 days or more after the person's last *counted* positive day;
  otherwise (0-59 days) it belongs to the same episode and counts in neither P nor T;
- a negative person-day counts in T (never in P);
- dep comes from the residence postal code (seeds/reference/postal_codes.csv, dep_code);
- cl_age90 from the age in full years at collection; every counted person-day also counts in
  cl_age90 = 0; an unknown birth date counts in cl_age90 = 0 only; unknown sex counts in P/T only.
"""

from __future__ import annotations

import numpy as np
import polars as pl

AGE_CLASSES = (0, 9, 19, 29, 39, 49, 59, 69, 79, 89, 90)
SIDEP_COLUMNS = ("jour", "dep", "cl_age90", "P_f", "P_h", "P", "T_f", "T_h", "T")
EPISODE_DAYS = 60


def counted_person_days(events: pl.DataFrame) -> pl.DataFrame:
    """events: nir, jour (Date), result_class (POS/NEG), sex, birth_date (Date), postal_code.

    Returns one row per counted person-day: nir, jour, is_pos, sex, birth_date, postal_code.
    """
    ev = events.filter(pl.col("result_class").is_in(["POS", "NEG"]))
    # the person-day's attributes come from its first result of the winning class (positive first,
    # then the earliest collection, then the order of the rows), as the pipeline takes them
    # (transforms/epi/sidep.py); a sex, birth date or postal code that result lacks comes from the
    # first of the person's other results of that day that gives one (QA regr2 F9, QA numbers F1/F2)
    by = ["nir", "jour", "_pos"] + (["coll"] if "coll" in ev.columns else [])
    ev = (ev.with_columns((pl.col("result_class") == "POS").alias("_pos"))
          .sort(by, descending=[False, False, True] + [False] * (len(by) - 3), maintain_order=True).drop("_pos"))
    pday = ev.group_by("nir", "jour", maintain_order=True).agg(
        (pl.col("result_class") == "POS").any().alias("is_pos"),
        pl.col("sex").drop_nulls().first(),
        pl.col("birth_date").drop_nulls().first(),
        pl.col("postal_code").drop_nulls().first(),
    )
    pos = pday.filter("is_pos").select("nir", "jour").sort("nir", "jour")
    nirs = pos["nir"].to_numpy()
    days = pos["jour"].cast(pl.Int32).to_numpy()
    keep = np.ones(len(pos), dtype=bool)
    if len(pos):
        starts = np.flatnonzero(np.r_[True, nirs[1:] != nirs[:-1]])
        ends = np.r_[starts[1:], len(pos)]
        for s, e in zip(starts[(ends - starts) > 1], ends[(ends - starts) > 1]):
            last = days[s]
            for i in range(s + 1, e):
                if days[i] - last >= EPISODE_DAYS:
                    last = days[i]
                else:
                    keep[i] = False
    counted_pos = pos.filter(pl.Series(keep)).with_columns(pl.lit(True).alias("_keep"))
    out = pday.join(counted_pos, on=["nir", "jour"], how="left").filter(
        ~pl.col("is_pos") | pl.col("_keep").fill_null(False)
    )
    return out.drop("_keep")


def sidep_daily(events: pl.DataFrame, postal_dep: pl.DataFrame, departements: list[str]) -> pl.DataFrame:
    pdays = counted_person_days(events).join(postal_dep, on="postal_code", how="left")
    unknown = pdays.filter(pl.col("dep_code").is_null() | ~pl.col("dep_code").is_in(departements))
    if unknown.height:
        raise ValueError(f"{unknown.height} counted person-days without a known département")
    bd, jr = pl.col("birth_date"), pl.col("jour")
    age = (jr.dt.year() - bd.dt.year()) - (
        (jr.dt.month() < bd.dt.month()) | ((jr.dt.month() == bd.dt.month()) & (jr.dt.day() < bd.dt.day()))
    ).cast(pl.Int32)
    pdays = pdays.with_columns(
        pl.when(age >= 90).then(90).otherwise((age // 10) * 10 + 9).cast(pl.Int32).alias("cl"),
    )
    flags = [
        pl.col("is_pos").cast(pl.Int64).alias("P"),
        (pl.col("is_pos") & (pl.col("sex") == "F")).fill_null(False).cast(pl.Int64).alias("P_f"),
        (pl.col("is_pos") & (pl.col("sex") == "M")).fill_null(False).cast(pl.Int64).alias("P_h"),
        pl.lit(1, pl.Int64).alias("T"),
        (pl.col("sex") == "F").fill_null(False).cast(pl.Int64).alias("T_f"),
        (pl.col("sex") == "M").fill_null(False).cast(pl.Int64).alias("T_h"),
    ]
    base = pdays.select(jr, pl.col("dep_code").alias("dep"), "cl", *flags)
    both = pl.concat([
        base.with_columns(pl.lit(0, pl.Int32).alias("cl")),
        base.filter(pl.col("cl").is_not_null()),
    ])
    agg = both.group_by("jour", "dep", "cl").agg(pl.col(c).sum() for c in ("P_f", "P_h", "P", "T_f", "T_h", "T"))
    agg = agg.rename({"cl": "cl_age90"})
    if agg.height == 0:
        return pl.DataFrame(schema={c: (pl.Date if c == "jour" else pl.Utf8 if c == "dep" else pl.Int64)
                                    for c in SIDEP_COLUMNS})
    active = agg.filter(pl.col("T") > 0)
    first, last = active["jour"].min(), active["jour"].max()
    grid = (
        pl.DataFrame({"jour": pl.date_range(first, last, "1d", eager=True)})
        .join(pl.DataFrame({"dep": departements}), how="cross")
        .join(pl.DataFrame({"cl_age90": list(AGE_CLASSES)}, schema={"cl_age90": pl.Int32}), how="cross")
    )
    out = grid.join(agg, on=["jour", "dep", "cl_age90"], how="left").with_columns(
        pl.col(c).fill_null(0).cast(pl.Int64) for c in ("P_f", "P_h", "P", "T_f", "T_h", "T")
    )
    return out.select(SIDEP_COLUMNS).sort("jour", "dep", "cl_age90")


def write_sidep(df: pl.DataFrame, path) -> None:
    df.with_columns(pl.col("jour").dt.strftime("%Y-%m-%d")).write_csv(path, separator=";", line_terminator="\n")
