"""SI-DEP indicators: persons positive (P) and tested (T), as defined in the README.

- counted in persons by date of specimen collection, at the département of residence, by sex and
  10-year age class (cl_age90, 0 = all ages);
- a person-day is positive if any usable result that day is positive, else negative;
- a positive person-day counts in P (and T) unless it falls 0-59 days after the person's last
  COUNTED positive (same episode): then it counts in neither P nor T;
- a negative person-day counts in T;
- results with no usable value (INVALID, not obtained) count in neither;
- unknown age: all-ages row only; unknown sex: in P and T but in neither _f nor _h. A person-day
  whose counted result gives no age takes the age class of the person's other result of that day
  that gives one (QA regr2 F9: a positive with a partial birth date beside a negative with the full
  one; the person's age is known that day). The département and the sex follow the same rule
  (QA numbers F1, F2: a positive without postal code, or with sex unknown, beside the same
  person's result of that day that gives them). The counted result's own value always wins, even
  when another result of the day disagrees; when it has none and the other results of the day
  disagree, the first of them that gives one is taken, in the order that chose the counted result
  (positives first, then earliest collection, delivery order, line): deterministic, and the
  person-day stays in the France totals (another day's value is never borrowed).
"""

from __future__ import annotations

from datetime import date

import polars as pl

EPISODE_DAYS = 60
AGE_CLASSES = (0, 9, 19, 29, 39, 49, 59, 69, 79, 89, 90)
# a person-day's attributes: the counted result's, else the first other result of the day giving one
DAY_ATTRIBUTES = ("dep", "cl_age90", "sex")


def person_days(results: pl.LazyFrame | pl.DataFrame, episode_days: int = EPISODE_DAYS) -> pl.DataFrame:
    """One row per counted person-day: person_key, jour, dep, cl_age90, sex, positive (bool).

    ``results``: current results of the test definition with result_class POS or NEG and columns
    person_key, collected_date, collected_at, dep, cl_age90, sex, file_seq, line_no.
    """
    r = results.lazy().filter(pl.col("result_class").is_in(["POS", "NEG"]) & pl.col("person_key").is_not_null())
    # one row per person and day: positive wins; the attributes come from the first result of the
    # winning class (earliest collection, then delivery order) so the choice is deterministic; a
    # département, age class or sex it lacks comes from the first of the day's results that has
    # one (same order: QA regr2 F9 for the age, QA numbers F1/F2 for the département and sex)
    day = (
        r.with_columns((pl.col("result_class") == "POS").alias("positive"))
        .sort(["person_key", "collected_date", "positive", "collected_at", "file_seq", "line_no"],
              descending=[False, False, True, False, False, False], nulls_last=True)
        .group_by(["person_key", "collected_date"], maintain_order=True)
        .agg(pl.col("positive").first(),
             # the first row is the counted result: its own value when it has one
             *(pl.col(c).drop_nulls().first() for c in DAY_ATTRIBUTES))
        .select("person_key", pl.col("collected_date").alias("jour"), "dep", "cl_age90", "sex", "positive")
        .collect()
    )
    pos = day.filter("positive").sort("person_key", "jour")
    counted = _first_of_episodes(pos, episode_days)
    neg = day.filter(~pl.col("positive"))
    return pl.concat([counted, neg]).sort("person_key", "jour")


def _first_of_episodes(pos: pl.DataFrame, episode_days: int) -> pl.DataFrame:
    """Keep the positive days that open an episode (>= episode_days after the last counted one)."""
    keep: list[bool] = []
    last_person, last_counted = None, None
    for person, jour in zip(pos["person_key"].to_list(), pos["jour"].to_list()):
        if person != last_person:
            last_person, last_counted = person, None
        if last_counted is None or (jour - last_counted).days >= episode_days:
            keep.append(True)
            last_counted = jour
        else:
            keep.append(False)
    return pos.filter(pl.Series(keep, dtype=pl.Boolean))


def sidep_daily(days: pl.DataFrame, departements: list[str], first: date | None = None,
                last: date | None = None) -> pl.DataFrame:
    """The daily table: every jour x dep x cl_age90 of the period (zeros included)."""
    cols = ["jour", "dep", "cl_age90", "P_f", "P_h", "P", "T_f", "T_h", "T"]
    if days.is_empty() and (first is None or last is None):
        return pl.DataFrame(schema={c: (pl.Date if c == "jour" else pl.Utf8 if c == "dep" else pl.Int64)
                                    for c in cols})
    first = first or days["jour"].min()
    last = last or days["jour"].max()
    d = days.filter(pl.col("dep").is_not_null())
    by_class = pl.concat([
        d.filter(pl.col("cl_age90").is_not_null()),
        d.with_columns(pl.lit(0, dtype=pl.Int64).alias("cl_age90")),
    ])
    agg = by_class.group_by("jour", "dep", "cl_age90").agg(
        P_f=(pl.col("positive") & (pl.col("sex") == "F")).sum(),
        P_h=(pl.col("positive") & (pl.col("sex") == "M")).sum(),
        P=pl.col("positive").sum(),
        T_f=(pl.col("sex") == "F").sum(),
        T_h=(pl.col("sex") == "M").sum(),
        T=pl.len(),
    )
    grid = (
        pl.DataFrame({"jour": pl.date_range(first, last, "1d", eager=True)})
        .join(pl.DataFrame({"dep": departements}), how="cross")
        .join(pl.DataFrame({"cl_age90": list(AGE_CLASSES)}, schema={"cl_age90": pl.Int64}), how="cross")
    )
    out = grid.join(agg, on=["jour", "dep", "cl_age90"], how="left").with_columns(
        pl.col(c).fill_null(0).cast(pl.Int64) for c in cols[3:])
    return out.select(cols).sort("jour", "dep", "cl_age90")
