"""SI-DEP indicators for any test definition: daily and ISO-weekly, by département, région, France.

Pure polars. The counting rules (persons, 60-day episodes, one count per person and day, positive
wins) live in ``transforms/epi/sidep.py`` and are reused unchanged; this module aggregates the
counted person-days it returns:

- daily per département: ``sidep.sidep_daily`` (the full grid: every day x département x age
  class, zeros included), plus the population and the ISO week;
- région and France: sums of the départements (each counted person-day has one département, so
  the sums are persons too);
- ISO week (``semaine`` written ``YYYY-S##`` like Santé publique France): the sum of the week's
  daily counts, i.e. person-days; a person tested negative on Monday and Thursday counts twice in
  the week's T, exactly as in the daily counts;
- rates per 100,000 with the populations of ``seeds/reference/population.csv``: 7-day incidence
  (P over the 7 days ending that day), 7-day screening rate (T over the same 7 days), positivity
  P / T (daily, 7-day and weekly). A 7-day value needs the 7 days: the first 6 days of the period
  have none (null).
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import polars as pl

from transforms.epi import sidep

COUNTS = ("P_f", "P_h", "P", "T_f", "T_h", "T")
LEVELS = ("dep", "reg", "fra")
FRA = "FR"
PER = 100_000.0


# --------------------------------------------------------------------------------------------
# calendar
# --------------------------------------------------------------------------------------------
def semaine_expr(day: pl.Expr) -> pl.Expr:
    """ISO week of a date as Santé publique France writes it: ``2026-S45``."""
    return pl.concat_str([day.dt.iso_year().cast(pl.Utf8), pl.lit("-S"),
                          day.dt.week().cast(pl.Utf8).str.zfill(2)])


def semaine_of(day: date) -> str:
    y, w, _ = day.isocalendar()
    return f"{y}-S{w:02d}"


def days_of_semaine(semaine: str) -> list[date]:
    y, w = semaine.split("-S")
    monday = date.fromisocalendar(int(y), int(w), 1)
    return [monday + timedelta(days=i) for i in range(7)]


def day_range(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


# --------------------------------------------------------------------------------------------
# test definitions and reference tables
# --------------------------------------------------------------------------------------------
def load_test_definitions(path: Path) -> pl.DataFrame:
    """seeds/test_definitions.csv: disease, loinc_num, method, display_en (one row per code)."""
    defs = pl.read_csv(path, infer_schema=False)
    missing = {"disease", "loinc_num"} - set(defs.columns)
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)}")
    dup = defs.filter(pl.struct("disease", "loinc_num").is_duplicated())
    if dup.height:
        raise ValueError(f"{path}: duplicate rows {dup.select('disease', 'loinc_num').rows()[:5]}")
    return defs


def definition_loincs(defs: pl.DataFrame, disease: str) -> list[str]:
    codes = defs.filter(pl.col("disease") == disease)["loinc_num"].sort().to_list()
    if not codes:
        raise KeyError(f"no test definition for {disease!r}")
    return codes


def in_geography(departements: pl.DataFrame, population: pl.DataFrame) -> pl.DataFrame:
    """The rows of the départements reference that SI-DEP counts: the 101 départements and the
    collectivités d'outre-mer that have a population (Saint-Pierre-et-Miquelon 975,
    Saint-Barthélemy 977, Saint-Martin 978), as Santé publique France's national files did (their
    France population, 67,114,995, includes them). Each COM is its own région (its region_code).
    The other COM (984, 986 to 989) have no population in the reference: their residents are in
    no geographic row, and the quality gate warns about them."""
    with_pop = population.select(pl.col("dep_code").unique())
    return (departements.filter((pl.col("is_com") == "no") | pl.col("dep_code").is_in(with_pop["dep_code"]))
            .sort("dep_code"))


def geography(departements: pl.DataFrame, population: pl.DataFrame) -> pl.DataFrame:
    """dep -> reg for the SI-DEP geography (``in_geography``), sorted as strings."""
    return (in_geography(departements, population)
            .select(pl.col("dep_code").alias("dep"), pl.col("region_code").alias("reg")))


def populations(population: pl.DataFrame, geo: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """Population by level: {'dep': dep, cl_age90, pop; 'reg': reg, ...; 'fra': fra, ...}."""
    pop = population.select(pl.col("dep_code").alias("dep"), pl.col("cl_age90").cast(pl.Int64),
                            pl.col("pop").cast(pl.Float64))
    dep = geo.join(pop, on="dep", how="inner").select("dep", "cl_age90", "pop")
    reg = (geo.join(pop, on="dep", how="inner").group_by("reg", "cl_age90").agg(pl.col("pop").sum())
           .sort("reg", "cl_age90"))
    fra = (dep.group_by("cl_age90").agg(pl.col("pop").sum()).with_columns(pl.lit(FRA).alias("fra"))
           .select("fra", "cl_age90", "pop").sort("cl_age90"))
    return {"dep": dep, "reg": reg, "fra": fra}


# --------------------------------------------------------------------------------------------
# daily counts
# --------------------------------------------------------------------------------------------
def person_days(results: pl.DataFrame | pl.LazyFrame, episode_days: int = sidep.EPISODE_DAYS) -> pl.DataFrame:
    """Counted person-days of one test definition (see sidep.person_days), sorted."""
    return sidep.person_days(results, episode_days).sort("person_key", "jour")


def daily_dep(days: pl.DataFrame, geo: pl.DataFrame, jours: list[date], pops: dict[str, pl.DataFrame]
              ) -> pl.DataFrame:
    """Département rows (full grid, zeros included) for the given days only."""
    if not jours:
        return _empty_daily("dep")
    wanted = pl.Series("jour", sorted(set(jours)), dtype=pl.Date)
    sub = days.filter(pl.col("jour").is_in(wanted.implode()))
    grid = sidep.sidep_daily(sub, geo["dep"].to_list(), wanted.min(), wanted.max())
    grid = grid.filter(pl.col("jour").is_in(wanted.implode()))
    return _finish(grid, "dep", pops)


def roll_up(dep_rows: pl.DataFrame, geo: pl.DataFrame, level: str, pops: dict[str, pl.DataFrame]
            ) -> pl.DataFrame:
    """Région or France rows from département rows (same days)."""
    if level == "reg":
        rows = dep_rows.join(geo, on="dep", how="left").group_by("jour", "reg", "cl_age90")
    elif level == "fra":
        rows = dep_rows.with_columns(pl.lit(FRA).alias("fra")).group_by("jour", "fra", "cl_age90")
    else:
        raise ValueError(level)
    out = rows.agg(pl.col(c).sum() for c in COUNTS)
    return _finish(out, level, pops)


def _finish(rows: pl.DataFrame, level: str, pops: dict[str, pl.DataFrame]) -> pl.DataFrame:
    out = rows.join(pops[level], on=[level, "cl_age90"], how="left").with_columns(
        semaine_expr(pl.col("jour")).alias("semaine"), *(pl.col(c).cast(pl.Int64) for c in COUNTS))
    return out.select("jour", "semaine", level, "cl_age90", *COUNTS, "pop").sort("jour", level, "cl_age90")


def _empty_daily(level: str) -> pl.DataFrame:
    return pl.DataFrame(schema={"jour": pl.Date, "semaine": pl.Utf8, level: pl.Utf8, "cl_age90": pl.Int64,
                                **{c: pl.Int64 for c in COUNTS}, "pop": pl.Float64})


# --------------------------------------------------------------------------------------------
# weekly counts and rates
# --------------------------------------------------------------------------------------------
def weekly(daily: pl.DataFrame, level: str) -> pl.DataFrame:
    """ISO-week sums of daily rows of one level, with rates per 100,000 and positivity."""
    out = daily.group_by("semaine", level, "cl_age90").agg(
        *(pl.col(c).sum() for c in COUNTS), pl.col("pop").first(), pl.col("jour").n_unique().alias("days"))
    return out.with_columns(**rates_exprs("P", "T", "")).select(
        "semaine", level, "cl_age90", *COUNTS, "pop", "incidence", "screening_rate", "positivity", "days"
    ).sort("semaine", level, "cl_age90")


def week_days(semaine: str, first: date, last: date) -> int:
    """How many days of the ISO week ``semaine`` (``2026-S45``) lie in ``first``..``last``: 7 for a
    week the period holds entirely, fewer for one it starts or ends inside, 0 outside it. A week is
    complete (``complete_weeks``) exactly when this is 7."""
    return sum(first <= d <= last for d in days_of_semaine(semaine))


def complete_weeks(first: date, last: date) -> set[str]:
    """The ISO weeks (``2026-S45``) whose seven days all lie in ``first``..``last``: a week the
    period starts or ends inside has counts of only some of its days (a run on a Wednesday would
    show a false fall), so the weekly files leave it out."""
    monday = first + timedelta(days=(7 - first.weekday()) % 7)
    weeks = set()
    while monday + timedelta(days=6) <= last:
        weeks.add(semaine_of(monday))
        monday += timedelta(days=7)
    return weeks


def rates_exprs(p: str, t: str, suffix: str) -> dict[str, pl.Expr]:
    pop = pl.col("pop")
    return {
        f"incidence{suffix}": pl.when(pop > 0).then(pl.col(p) * PER / pop),
        f"screening_rate{suffix}": pl.when(pop > 0).then(pl.col(t) * PER / pop),
        f"positivity{suffix}": pl.when(pl.col(t) > 0).then(pl.col(p) / pl.col(t)),
    }


def sliding_7d(daily: pl.DataFrame, level: str, rate_days: list[date], period_first: date) -> pl.DataFrame:
    """7-day sliding sums and rates for ``rate_days``; ``daily`` must hold days d-6..d of each.

    A day whose 7-day window starts before the period's first day has null sums and rates.
    """
    cols = ["jour", "semaine", level, "cl_age90", "P_7j", "T_7j", "pop", "incidence_7j",
            "screening_rate_7j", "positivity_7j", "positivity"]
    if not rate_days:
        return pl.DataFrame(schema={"jour": pl.Date, "semaine": pl.Utf8, level: pl.Utf8, "cl_age90": pl.Int64,
                                    "P_7j": pl.Int64, "T_7j": pl.Int64, "pop": pl.Float64,
                                    "incidence_7j": pl.Float64, "screening_rate_7j": pl.Float64,
                                    "positivity_7j": pl.Float64, "positivity": pl.Float64})
    wanted = pl.Series("jour", sorted(set(rate_days)), dtype=pl.Date)
    contrib = (
        daily.select("jour", level, "cl_age90", "P", "T")
        .with_columns(pl.int_ranges(0, 7).alias("k")).explode("k")
        .with_columns((pl.col("jour") + pl.duration(days=pl.col("k"))).alias("jour"))
        .filter(pl.col("jour").is_in(wanted.implode()))
        .group_by("jour", level, "cl_age90").agg(P_7j=pl.col("P").sum(), T_7j=pl.col("T").sum())
    )
    today = daily.filter(pl.col("jour").is_in(wanted.implode())).select(
        "jour", level, "cl_age90", "pop", pl.when(pl.col("T") > 0).then(pl.col("P") / pl.col("T")).alias("positivity"))
    complete = pl.col("jour") - pl.duration(days=6) >= pl.lit(period_first)
    out = today.join(contrib, on=["jour", level, "cl_age90"], how="left").with_columns(
        pl.when(complete).then(pl.col("P_7j").fill_null(0)).cast(pl.Int64).alias("P_7j"),
        pl.when(complete).then(pl.col("T_7j").fill_null(0)).cast(pl.Int64).alias("T_7j"),
        semaine_expr(pl.col("jour")).alias("semaine"),
    ).with_columns(**rates_exprs("P_7j", "T_7j", "_7j"))
    return out.select(cols).sort("jour", level, "cl_age90")
