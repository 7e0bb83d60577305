"""The weekly epidemiological report: one self-contained HTML file per ISO week.

Built from ``marts.sidep_daily`` (SARS-CoV-2 persons P and T by day, département, age class and
sex) and, when the warehouse has it, ``marts.mdo_weekly`` (weekly cases of notifiable diseases),
with the reference populations of ``seeds/reference/population.csv``:

- key figures of the week for France (P, T, positivity, incidence and screening rate per 100,000)
  and their change from the previous week;
- epidemic curves: daily positive persons with a 7-day mean, weekly incidence and positivity, and
  weekly cases per notifiable disease;
- maps and a table by département: incidence and positivity, this week and the previous one;
- positive persons by age class and sex, incidence by age class.

Every count goes through disclosure control before it reaches a table, a chart or a map: the cells
the published files hide are hidden (``weekly_data``'s ``pattern``; the rule of the settings, counts
from 1 to 10 by default), or, without SI-DEP marts, the report's own cube is protected
(quality/reports/disclosure.py).
Weeks are ISO weeks (``2026-W45``; Santé publique France wrote ``2026-S45``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl

from quality import summaries as S
from quality.reports import charts, disclosure, francemap, render
from warehouse import catalog as cat
from warehouse.store import Warehouse

CURVE_WEEKS = 12
TOP_CHANGES = 10
AGE_LABELS = {9: "0-9", 19: "10-19", 29: "20-29", 39: "30-39", 49: "40-49", 59: "50-59", 69: "60-69",
              79: "70-79", 89: "80-89", 90: "90+"}


def week_label(d: date) -> str:
    y, w, _ = d.isocalendar()
    return f"{y}-W{w:02d}"


def week_monday(week: str) -> date:
    """``2026-W45`` (or ``2026-S45``) -> the Monday of that ISO week."""
    w = week.strip().upper().replace("-S", "-W")
    try:
        monday = datetime.strptime(w + "-1", "%G-W%V-%u").date()
    except ValueError as err:
        raise ValueError(f"bad ISO week {week!r}: expected YYYY-Www, e.g. 2026-W45") from err
    year, number = int(w[:4]), int(w.split("-W")[1])
    if monday.isocalendar()[:2] != (year, number):  # 2025-W53 rolled over into 2026-W01 (QA cal F3)
        raise ValueError(f"bad ISO week {week!r}: {year} has {date(year, 12, 28).isocalendar()[1]} ISO weeks")
    return monday


def available_weeks(wh: Warehouse) -> list[str]:
    """ISO weeks with at least one tested person in marts.sidep_daily."""
    con = S.connect(wh)
    try:
        df = S.frame(con, f"SELECT DISTINCT strftime(jour, '%G-W%V') AS week FROM {S.Sources(wh).rel(cat.SIDEP_DAILY)} "
                          "WHERE cl_age90 = 0 AND T > 0")
    finally:
        con.close()
    return sorted(df["week"].to_list())


def _sidep_window(wh: Warehouse, first: date, last: date) -> pl.DataFrame:
    """The rows of marts.sidep_daily from ``first`` to ``last`` (what the report reads: bounded)."""
    cols = ", ".join(f'"{c.name}"' for c in cat.SIDEP_DAILY.columns)
    con = S.connect(wh)
    try:
        return S.frame(con, f"SELECT {cols} FROM {S.Sources(wh).rel(cat.SIDEP_DAILY)} "
                            f"WHERE jour BETWEEN DATE '{first.isoformat()}' AND DATE '{last.isoformat()}'"
                       ).cast(cat.SIDEP_DAILY.schema, strict=False)
    finally:
        con.close()


FR, ALL_AGES, ALL_SEXES = "FR", 0, "all"


@dataclass
class Cells:
    """Every count the report shows, keyed by what it is; disclosure control works on them as the
    cells of one cube per measure: (geography, age class, sex, time), see disclosure.py.

    Keys: ("day", jour, m), ("nat", week, m), ("dep", week, dep, m), ("age", week, cl_age90,
    "P_f" | "P_h" | "P"), ("mdo", disease, week); m is "P" or "T".
    """

    parents: tuple[dict, ...]
    values: dict[tuple, int] = field(default_factory=dict)
    hidden: set[tuple] = field(default_factory=set)

    @staticmethod
    def cell(key: tuple) -> tuple[str, tuple]:
        kind = key[0]
        if kind in ("day", "nat"):
            return key[2], (FR, ALL_AGES, ALL_SEXES, key[1])
        if kind == "dep":
            return key[3], (key[2], ALL_AGES, ALL_SEXES, key[1])
        if kind == "age":
            return "P", (FR, key[2], {"P_f": "F", "P_h": "M", "P": ALL_SEXES}[key[3]], key[1])
        if kind == "mdo":
            return f"mdo:{key[1]}", (FR, ALL_AGES, ALL_SEXES, key[2])
        raise KeyError(key)

    def add(self, key: tuple, value) -> None:
        self.values[key] = int(value or 0)

    def get(self, key: tuple) -> int | None:
        """The value if shown, None if hidden."""
        return None if key in self.hidden else self.values.get(key)

    def is_hidden(self, key: tuple) -> bool:
        return key in self.hidden

    def protect(self, truth: dict[str, dict[tuple, int]] | None = None) -> None:
        """Decide the hidden cells. ``truth``: per measure, the true counts of cells the report does
        not show (see :func:`cube_truth`): how far a hidden cell could move depends on them."""
        cubes: dict[str, dict[tuple, int]] = {}
        keys: dict[tuple[str, tuple], tuple] = {}
        for key, v in self.values.items():
            measure, cell = self.cell(key)
            cubes.setdefault(measure, {})[cell] = v
            keys[(measure, cell)] = key
        self.hidden = set()
        for measure, values in cubes.items():
            known = {**(truth or {}).get(measure, {}), **values}
            for cell in disclosure.hidden_cells(known, set(values), self.parents):
                self.hidden.add(keys[(measure, cell)])


def cube_truth(d: pl.DataFrame) -> dict[str, dict[tuple, int]]:
    """The true P and T of every cell of the report's cubes over the days of ``d`` (rows of
    marts.sidep_daily with their ISO ``week``), shown or not: (geography, age class, sex, time) with
    the age class "unknown" (all ages minus the classes) and the sex "unknown" (all minus F and M)."""
    out: dict[str, dict[tuple, int]] = {}
    classes = d.filter(pl.col("cl_age90") != ALL_AGES)
    for m in ("P", "T"):
        cols = [f"{m}_f", f"{m}_h", m]
        by_class = classes.group_by("dep", "jour").agg(pl.col(c).sum().alias(f"_{c}") for c in cols)
        unknown_age = (d.filter(pl.col("cl_age90") == ALL_AGES).join(by_class, on=["dep", "jour"], how="left")
                       .with_columns((pl.col(c) - pl.col(f"_{c}").fill_null(0)).alias(c) for c in cols)
                       .with_columns(pl.lit("unknown").alias("age")))
        by_age = pl.concat([classes.with_columns(pl.col("cl_age90").cast(pl.Utf8).alias("age")), unknown_age],
                           how="diagonal_relaxed").select("dep", "age", "jour", "week", *cols)
        f, h = pl.col(f"{m}_f"), pl.col(f"{m}_h")
        by_sex = {"F": f, "M": h, "unknown": pl.col(m) - f - h}
        leaves = pl.concat([by_age.select("dep", "age", "jour", "week", pl.lit(sex).alias("sex"), v.alias("v"))
                            for sex, v in by_sex.items()]).filter(pl.col("v") > 0)
        cube: dict[tuple, int] = {}
        for geo in ("dep", None):
            for age in ("age", None):
                for sex in ("sex", None):
                    for when in ("jour", "week"):
                        keys = [k for k in (geo, age, sex, when) if k]
                        for row in leaves.group_by(keys).agg(pl.col("v").sum()).iter_rows(named=True):
                            a = row["age"] if age else None
                            cube[(row["dep"] if geo else FR,
                                  ALL_AGES if a is None else (a if a == "unknown" else int(a)),
                                  row["sex"] if sex else ALL_SEXES, row[when])] = int(row["v"])
        out[m] = cube
    return out


def _rate(num: int | None, den: float | None, per: float = 100_000) -> float | None:
    if num is None or not den:
        return None
    return num / den * per


def _ratio(num: int | None, den: int | None) -> float | None:
    if num is None or den is None or den == 0:
        return None
    return num / den


def _change(now: float | None, before: float | None) -> tuple[float | None, float | None]:
    if now is None or before is None:
        return None, None
    return now - before, ((now - before) / before if before else None)


def imposed_hidden(cells: Cells, pattern: dict, disease: str) -> set[tuple]:
    """The report's cells that the published files hide. ``pattern``: what the exports suppress
    (``flows.epi.published_pattern``: cells of the exports' cubes, see there); every count the report
    shows is one of those cells (France by day, week, age class and sex; départements by week; MDO
    cases of France by week)."""
    sidep = pattern["sidep"][disease]
    out = set()
    for key in cells.values:
        kind = key[0]
        if kind == "mdo":
            if (key[1], "fra", FR, key[2].replace("-W", "-S")) in pattern["mdo"]:
                out.add(key)
            continue
        week = f"s:{key[1].replace('-W', '-S')}" if kind != "day" else None
        if kind == "day":
            fam, cube = key[2], (f"fra:{FR}", ALL_AGES, f"j:{key[1].isoformat()}", "all")
        elif kind == "nat":
            fam, cube = key[2], (f"fra:{FR}", ALL_AGES, week, "all")
        elif kind == "dep":
            fam, cube = key[3], (f"dep:{key[2]}", ALL_AGES, week, "all")
        elif kind == "age":
            fam, cube = "P", (f"fra:{FR}", key[2], week, {"P_f": "f", "P_h": "h", "P": "all"}[key[3]])
        else:
            raise KeyError(key)
        if cube in sidep[fam]:
            out.add(key)
    return out


def weekly_data(wh: Warehouse, seeds_dir: Path, week: str | None = None, pattern: dict | None = None,
                disease: str = "covid19") -> dict:
    """Everything the weekly report shows, after disclosure control.

    ``pattern``: what the published files suppress (``flows.epi.published_pattern``); the report then
    hides exactly those of its cells, so that a reader holding the report and the files learns
    nothing more than from the files (QA: two patterns, each safe alone, gave a hidden count away
    together). Without it (no SI-DEP marts for ``disease`` yet), the report protects its own cube."""
    imposed = pattern is not None and disease in pattern["sidep"]
    deps = S.departements(seeds_dir)
    pop = S.population(seeds_dir).filter(pl.col("dep").is_in(deps["dep"].to_list()))
    names = dict(zip(deps["dep"].to_list(), deps["dep_name"].to_list()))
    weeks = available_weeks(wh)
    if week is None:
        if not weeks:
            return {"empty": True, "week": None, "weeks": []}
        week = weeks[-1]
    monday = week_monday(week)
    week = week_label(monday)
    if week not in weeks:  # QA: a week past the data was drawn as measured zeros
        raise ValueError(f"no tested person in week {week}: `biolake report weeks` lists the weeks with data")
    sunday = monday + timedelta(days=6)
    prev_monday = monday - timedelta(days=7)
    prev = week_label(prev_monday)
    curve_start = monday - timedelta(days=7 * (CURVE_WEEKS - 1))
    d = _sidep_window(wh, curve_start, sunday).with_columns(week=pl.col("jour").dt.strftime("%G-W%V"))
    all_ages = d.filter(pl.col("cl_age90") == 0)

    days = [curve_start + timedelta(days=i) for i in range((sunday - curve_start).days + 1)]
    series_weeks = [week_label(curve_start + timedelta(days=7 * i)) for i in range(CURVE_WEEKS)]
    classes = [c for c in S.AGE_CLASSES if c != 0]
    cells = Cells(parents=(
        {FR: None, **{dep: FR for dep in deps["dep"].to_list()}},
        {ALL_AGES: None, **{c: ALL_AGES for c in classes}, "unknown": ALL_AGES},  # unknown age: in all ages only
        {ALL_SEXES: None, "F": ALL_SEXES, "M": ALL_SEXES, "unknown": ALL_SEXES},
        {**{wk: None for wk in series_weeks}, **{x: week_label(x) for x in days}},
    ))
    # national: P per day (the curve), P and T per week (key figures, trend: T behind positivity)
    nat_daily = (all_ages.filter(pl.col("jour").is_between(curve_start, sunday))
                 .group_by("jour").agg(pl.col("P").sum(), pl.col("T").sum()))
    by_day = {r["jour"]: r for r in nat_daily.iter_rows(named=True)}
    for day in days:
        cells.add(("day", day, "P"), by_day.get(day, {}).get("P", 0))
    for m in ("P", "T"):
        for wk in series_weeks:
            cells.add(("nat", wk, m), sum(by_day.get(x, {}).get(m, 0) for x in days if week_label(x) == wk))

    # by département, this week and the previous one
    dep_week = (all_ages.filter(pl.col("week").is_in([week, prev]))
                .group_by("week", "dep").agg(pl.col("P").sum(), pl.col("T").sum()))
    dep_vals = {(r["week"], r["dep"]): r for r in dep_week.iter_rows(named=True)}
    for wk in (week, prev):
        for m in ("P", "T"):
            for dep in deps["dep"].to_list():
                cells.add(("dep", wk, dep, m), dep_vals.get((wk, dep), {}).get(m, 0))

    # age and sex this week; P by age class the previous week (incidence by age)
    age = (d.filter(pl.col("week").is_in([week, prev]))
           .group_by("week", "cl_age90").agg(pl.col("P_f").sum(), pl.col("P_h").sum(), pl.col("P").sum()))
    age_vals = {(r["week"], r["cl_age90"]): r for r in age.iter_rows(named=True)}
    for c in classes + [ALL_AGES]:
        for m in ("P_f", "P_h", "P"):
            cells.add(("age", week, c, m), age_vals.get((week, c), {}).get(m, 0))
        cells.add(("age", prev, c, "P"), age_vals.get((prev, c), {}).get("P", 0))

    mdo = mdo_series(wh, monday, cells, exclude=pattern["mdo_excluded"] if imposed else ())
    mdo["names"] = _mdo_names(seeds_dir)
    if imposed:
        cells.hidden = imposed_hidden(cells, pattern, disease)
        rule = pattern["rule"]
        small = [k for k in cells.values if k not in cells.hidden and rule.sensitive(cells.values[k])]
        if small:  # the files and the report would disagree: never print such a count
            raise RuntimeError(f"weekly report: {len(small)} small counts the published files do not hide "
                               f"(first {small[0]}): the marts changed while the report was built?")
        rule_text = f"{rule.describe()}; the same cells as in the published files"
    else:
        cells.protect(cube_truth(d))
        rule_text = disclosure.rule_text()

    # ---- derived figures (from shown counts only) ----------------------------------------
    pop_dep = dict(zip(pop.filter(pl.col("cl_age90") == 0)["dep"].to_list(),
                       pop.filter(pl.col("cl_age90") == 0)["pop"].to_list()))
    pop_fr = sum(pop_dep.values())
    pop_age = {r["cl_age90"]: r["pop"] for r in pop.group_by("cl_age90").agg(pl.col("pop").sum()).iter_rows(named=True)}

    def national(wk: str) -> dict:
        P, T = cells.get(("nat", wk, "P")), cells.get(("nat", wk, "T"))
        return {"P": P, "T": T, "P_hidden": cells.is_hidden(("nat", wk, "P")),
                "T_hidden": cells.is_hidden(("nat", wk, "T")), "positivity": _ratio(P, T),
                "incidence": _rate(P, pop_fr), "screening": _rate(T, pop_fr)}

    cur, before = national(week), national(prev)
    key_figures = []
    for label, k, kind in (("positive persons (P)", "P", "int"), ("tested persons (T)", "T", "int"),
                           ("positivity (P/T)", "positivity", "pct"),
                           ("incidence per 100,000", "incidence", "float"),
                           ("screening rate per 100,000", "screening", "float")):
        delta, rel = _change(cur[k], before[k])
        key_figures.append({"label": label, "key": k, "kind": kind, "now": cur[k], "before": before[k],
                            "now_hidden": cur.get(f"{k}_hidden", False), "before_hidden": before.get(f"{k}_hidden", False),
                            "delta": delta, "rel": rel})

    dep_rows = []
    for dep in deps["dep"].to_list():
        row = {"dep": dep, "name": names[dep], "pop": pop_dep.get(dep)}
        for tag, wk in (("", week), ("prev_", prev)):
            P, T = cells.get(("dep", wk, dep, "P")), cells.get(("dep", wk, dep, "T"))
            row[f"{tag}P"], row[f"{tag}T"] = P, T
            row[f"{tag}P_hidden"] = cells.is_hidden(("dep", wk, dep, "P"))
            row[f"{tag}T_hidden"] = cells.is_hidden(("dep", wk, dep, "T"))
            row[f"{tag}positivity"] = _ratio(P, T)
            row[f"{tag}incidence"] = _rate(P, pop_dep.get(dep))
            row[f"{tag}tested"] = (T is None) or T > 0
        row["incidence_change"], _ = _change(row["incidence"], row["prev_incidence"])
        dep_rows.append(row)
    top_changes = sorted((r for r in dep_rows if r["incidence_change"] is not None and r["incidence_change"] != 0),
                         key=lambda r: -abs(r["incidence_change"]))[:TOP_CHANGES]

    age_rows = []
    for c in classes + [0]:
        r = {"cl_age90": c, "label": AGE_LABELS.get(c, "all ages"), "pop": pop_age.get(c)}
        for m in ("P_f", "P_h", "P"):
            r[m] = cells.get(("age", week, c, m))
            r[f"{m}_hidden"] = cells.is_hidden(("age", week, c, m))
        r["incidence"] = _rate(r["P"], pop_age.get(c))
        r["prev_P"] = cells.get(("age", prev, c, "P"))
        r["prev_P_hidden"] = cells.is_hidden(("age", prev, c, "P"))
        r["prev_incidence"] = _rate(r["prev_P"], pop_age.get(c))
        age_rows.append(r)

    # ---- charts ---------------------------------------------------------------------------
    shown_days = [(x, cells.get(("day", x, "P"))) for x in days]
    p7 = []
    for i, (x, v) in enumerate(shown_days):
        window = [w for _, w in shown_days[max(0, i - 6): i + 1]]
        p7.append(sum(window) / 7 if i >= 6 and all(w is not None for w in window) else None)
    curve = pl.DataFrame({"jour": [x for x, _ in shown_days], "P": [v for _, v in shown_days], "P_7d": p7},
                         schema={"jour": pl.Date, "P": pl.Int64, "P_7d": pl.Float64})
    trend = pl.DataFrame([{"week": wk, "incidence": national(wk)["incidence"], "positivity": national(wk)["positivity"]}
                          for wk in series_weeks], schema={"week": pl.Utf8, "incidence": pl.Float64,
                                                           "positivity": pl.Float64})
    age_sex = pl.DataFrame([{"age_label": r["label"], "order": r["cl_age90"], "sex": sex, "P": r[m]}
                            for r in age_rows if r["cl_age90"] != 0 for sex, m in (("F", "P_f"), ("M", "P_h"))],
                           schema={"age_label": pl.Utf8, "order": pl.Int64, "sex": pl.Utf8, "P": pl.Int64})
    age_inc = pl.DataFrame([{"age_label": r["label"], "order": r["cl_age90"], "week": wk, "incidence": inc}
                            for r in age_rows if r["cl_age90"] != 0
                            for wk, inc in ((prev, r["prev_incidence"]), (week, r["incidence"]))],
                           schema={"age_label": pl.Utf8, "order": pl.Int64, "week": pl.Utf8, "incidence": pl.Float64})
    hidden_p = {r["dep"] for r in dep_rows if r["P_hidden"]}
    hidden_pos = {r["dep"] for r in dep_rows if r["P_hidden"] or r["T_hidden"]}
    tested = {r["dep"] for r in dep_rows if r["tested"]}
    svg = {
        "curve": charts.epidemic_curve(curve, f"COVID-19: positive persons per day, France ({series_weeks[0]} to {week})",
                                       monday.isoformat(), (sunday + timedelta(days=1)).isoformat()),
        "trend": charts.weekly_trend(trend, "COVID-19: weekly incidence per 100,000 and positivity, France"),
        "map_incidence": francemap.choropleth({r["dep"]: r["incidence"] for r in dep_rows}, hidden_p,
                                              f"Incidence per 100,000, {week}", "per 100,000", names, 1, tested),
        "map_positivity": francemap.choropleth({r["dep"]: (r["positivity"] or 0) * 100 for r in dep_rows
                                                if r["positivity"] is not None}, hidden_pos,
                                               f"Positivity, {week}", "% of tested persons", names, 1, tested),
        "age_sex": charts.age_sex_bars(age_sex, f"Positive persons by age class and sex, {week}"),
        "age_incidence": charts.age_incidence(age_inc, f"Incidence per 100,000 by age class, {prev} and {week}"),
    }
    if mdo["available"] and mdo["series"].height:
        series = pl.DataFrame([{"disease": mdo["names"].get(r["disease"], r["disease"]), "week": r["week"],
                                "cases": cells.get(("mdo", r["disease"], r["week"]))}
                               for r in mdo["series"].iter_rows(named=True)],
                              schema={"disease": pl.Utf8, "week": pl.Utf8, "cases": pl.Int64})
        # every week of the window on the axis, a hidden one included (QA numbers F3)
        svg["mdo"] = charts.small_multiples(series, "Notifiable diseases: weekly cases, France", series_weeks)
        mdo["rows"] = _mdo_rows(mdo, cells, week, prev)
    return {
        "empty": False, "week": week, "prev": prev, "monday": monday, "sunday": sunday,
        "weeks": weeks, "days_with_tests": sorted({x for x in days if monday <= x <= sunday
                                                   and by_day.get(x, {}).get("T", 0) > 0}),
        "key_figures": key_figures, "national": cur, "national_prev": before, "pop_fr": pop_fr,
        "dep_rows": dep_rows, "top_changes": top_changes, "age_rows": age_rows, "svg": svg, "mdo": mdo,
        "n_hidden": len(cells.hidden), "n_cells": len(cells.values), "rule": rule_text,
        "cells": cells,
    }


# --------------------------------------------------------------------------------------------
# notifiable diseases (marts.mdo_weekly, declared by the epi side in warehouse/catalog_epi.py)
# --------------------------------------------------------------------------------------------
def mdo_series(wh: Warehouse, monday: date, cells: Cells, exclude=()) -> dict:
    """Weekly national cases per disease over the curve window, registered in ``cells``; the
    diseases in ``exclude`` (published as SI-DEP files, whose P the report already shows) are left out."""
    try:
        t = cat.table("marts.mdo_weekly")
    except KeyError:
        return {"available": False, "reason": "marts.mdo_weekly is not declared in this warehouse yet."}
    df = wh.read(t)
    if df.is_empty():
        return {"available": False, "reason": "marts.mdo_weekly holds no row yet."}
    cols = set(df.columns)
    disease = next((c for c in ("mdo_id", "disease", "maladie") if c in cols), None)
    wk = next((c for c in ("semaine", "week") if c in cols), None)
    count = next((c for c in ("cases", "n_cases", "nb_cas", "n", "P") if c in cols), None)
    if not (disease and wk and count):
        return {"available": False, "reason": f"marts.mdo_weekly has unexpected columns: {sorted(cols)}"}
    if "cl_age90" in cols:
        df = df.filter(pl.col("cl_age90") == 0)
    if "level" in cols:  # national rows when the mart carries several geographic levels
        df = df.filter(pl.col("level").is_in(["fra", "national", "france"]))
    series = (df.with_columns(week=pl.col(wk).cast(pl.Utf8).str.replace("-S", "-W"))
              .group_by(disease, "week").agg(cases=pl.col(count).sum())
              .rename({disease: "disease"}))
    first = week_label(monday - timedelta(days=7 * (CURVE_WEEKS - 1)))
    last = week_label(monday)
    series = series.filter(pl.col("week").is_between(pl.lit(first), pl.lit(last))
                           & ~pl.col("disease").is_in(list(exclude)))
    active = series.group_by("disease").agg(pl.col("cases").sum()).filter(pl.col("cases") > 0)["disease"]
    series = series.filter(pl.col("disease").is_in(active.to_list())).sort("disease", "week")
    for r in series.iter_rows(named=True):
        cells.add(("mdo", r["disease"], r["week"]), r["cases"])
    return {"available": True, "reason": None, "series": series.select("disease", "week")}


def _mdo_names(seeds_dir: Path) -> dict[str, str]:
    path = Path(seeds_dir) / cat.REF_SEEDS["mdo_list"]
    if not path.exists():
        return {}
    df = pl.read_csv(path, infer_schema=False)
    return dict(zip(df["mdo_id"].to_list(), df["name_fr"].to_list()))


def _mdo_rows(mdo: dict, cells: Cells, week: str, prev: str) -> list[dict]:
    rows = []
    for disease in sorted(set(mdo["series"]["disease"].to_list())):
        now, before = ("mdo", disease, week), ("mdo", disease, prev)
        rows.append({"disease": disease, "name": mdo["names"].get(disease, disease), "now": cells.get(now), "now_hidden": cells.is_hidden(now),
                     "before": cells.get(before), "before_hidden": cells.is_hidden(before),
                     "has_now": now in cells.values, "has_before": before in cells.values})
    return rows


def build_weekly(wh: Warehouse, seeds_dir: Path, out_dir: Path, week: str | None = None,
                 run_id: str | None = None, now: datetime | None = None, pattern: dict | None = None) -> Path:
    """Write ``<out_dir>/weekly_<YYYY-Www>.html`` and a copy ``weekly_latest.html`` (when it is the
    newest week). Returns the dated file. ``pattern``: see :func:`weekly_data`."""
    data = weekly_data(wh, Path(seeds_dir), week, pattern=pattern)
    now = now or datetime.now()
    html = render.render("weekly.html.j2", d=data, generated=now.strftime("%Y-%m-%d %H:%M"), run_id=run_id,
                         hidden_note=disclosure.HIDDEN_NOTE, attribution=francemap.ATTRIBUTION,
                         age_labels=AGE_LABELS)
    name = f"weekly_{data['week']}.html" if data["week"] else "weekly_empty.html"
    path = render.write_atomic(Path(out_dir) / name, html)
    if not data["weeks"] or data["week"] == data["weeks"][-1]:
        render.copy_atomic(path, Path(out_dir) / "weekly_latest.html")
    return path
