"""The reports are built from the warehouse of the session's pipeline run and say what the marts say.

Numbers are read back from the HTML (each numeric cell carries its raw value in ``data-value``
next to the text a reader sees) and compared with SQL over the Parquet files.
"""

from __future__ import annotations

import re
import struct
import zlib
from datetime import date, timedelta
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest

from tests.test_quality_gate import copy_home, gated  # noqa: F401  (gated: the shared, cached fixture)
from warehouse import catalog as cat

CHROMIUM = Path("/usr/bin/chromium")
SEEDS = Path(__file__).resolve().parent.parent / "seeds"


# --------------------------------------------------------------------------------------------
# reading the HTML back
# --------------------------------------------------------------------------------------------
class Tables(HTMLParser):
    """Rows of every <table id=...>: per row its data-* attributes and its cells
    ({"text", "value", "hidden"})."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[dict]] = {}
        self._table: str | None = None
        self._row: dict | None = None
        self._cell: dict | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and a.get("id"):
            self._table = a["id"]
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self._row = {"attrs": {k[5:]: v for k, v in a.items() if k.startswith("data-")}, "cells": []}
        elif tag in ("td", "th") and self._row is not None:
            self._cell = {"text": "", "value": a.get("data-value"), "hidden": a.get("data-hidden") == "1", "th": tag == "th"}

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._cell["text"] = self._cell["text"].strip()
            self._row["cells"].append(self._cell)
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table:
            if not all(c["th"] for c in self._row["cells"]):
                self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None


def tables(path: Path) -> dict[str, list[dict]]:
    p = Tables()
    p.feed(Path(path).read_text(encoding="utf-8"))
    return p.tables


def num(cell: dict) -> float | None:
    return None if cell["value"] is None else float(cell["value"])


def sql(home: Path, query: str) -> pl.DataFrame:
    con = duckdb.connect()
    try:
        for t in cat.TABLES:
            d = home / "warehouse" / t.layer / t.name
            if d.exists() and any(d.rglob("*.parquet")):
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {t.layer}")
                con.execute(f"CREATE VIEW {t.qualified} AS SELECT * FROM read_parquet('{d}/**/*.parquet', "
                            "union_by_name = true, hive_partitioning = false)")
        return con.sql(query).pl()
    finally:
        con.close()


def iso_week(d: date) -> str:
    y, w, _ = d.isocalendar()
    return f"{y}-W{w:02d}"


# --------------------------------------------------------------------------------------------
# the weekly epidemiological report
# --------------------------------------------------------------------------------------------
def weekly_truth(home: Path, week: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    monday = date.fromisocalendar(int(week[:4]), int(week[-2:]), 1)
    sunday = monday + timedelta(days=6)
    rng = f"jour BETWEEN DATE '{monday}' AND DATE '{sunday}'"
    dep = sql(home, f"SELECT dep, sum(P) AS P, sum(T) AS T FROM marts.sidep_daily WHERE cl_age90 = 0 AND {rng} "
                    "GROUP BY dep ORDER BY dep")
    age = sql(home, f"SELECT cl_age90, sum(P_f) AS P_f, sum(P_h) AS P_h, sum(P) AS P FROM marts.sidep_daily "
                    f"WHERE {rng} GROUP BY cl_age90")
    return dep, age


def test_weekly_report_numbers_equal_the_marts(gated):  # noqa: F811
    home, _, paths, _ = gated
    week = Path(paths["weekly"]).stem.removeprefix("weekly_")
    last = sql(home, "SELECT max(jour) AS d FROM marts.sidep_daily WHERE cl_age90 = 0 AND T > 0")["d"][0]
    assert week == iso_week(last), "by default the report covers the newest week with data"
    assert Path(paths["weekly_latest"]).read_bytes() == Path(paths["weekly"]).read_bytes()
    t = tables(Path(paths["weekly"]))
    dep, age = weekly_truth(home, week)
    prev = iso_week(date.fromisocalendar(int(week[:4]), int(week[-2:]), 1) - timedelta(days=7))
    prev_dep, _ = weekly_truth(home, prev)
    pop = pl.read_csv(SEEDS / "reference" / "population.csv", infer_schema=False).with_columns(
        pl.col("cl_age90").cast(pl.Int64), pl.col("pop").cast(pl.Float64))
    pop_dep = dict(pop.filter(pl.col("cl_age90") == 0).select("dep_code", "pop").iter_rows())
    pop_fr = sum(pop_dep.values())  # the 101 départements and the COM 975, 977, 978: SpF's 67,114,995
    assert pop_fr == 67_114_995

    # national key figures
    national = {r["attrs"]["key"]: r["cells"] for r in t["national"]}
    P, T = int(dep["P"].sum()), int(dep["T"].sum())
    assert P > 10 and T > 10
    # a national count may be hidden where the published files hide it (the small test data need
    # secondary suppression up to the totals; test_the_report_hides_what_the_published_files_hide)
    if not national["P"][2]["hidden"]:
        assert num(national["P"][2]) == P and national["P"][2]["text"] == f"{P:,}"
        assert num(national["incidence"][2]) == pytest.approx(P / pop_fr * 1e5, abs=1e-6)
    if not national["T"][2]["hidden"]:
        assert num(national["T"][2]) == T
        assert num(national["screening"][2]) == pytest.approx(T / pop_fr * 1e5, abs=1e-6)
    if not (national["P"][2]["hidden"] or national["T"][2]["hidden"]):
        assert num(national["positivity"][2]) == pytest.approx(P / T, abs=1e-6)
    else:
        assert national["positivity"][2]["value"] is None  # no rate from a hidden count
    prev_P = int(prev_dep["P"].sum())
    if not national["P"][1]["hidden"]:
        assert num(national["P"][1]) == prev_P
        assert num(national["P"][3]) == (None if national["P"][2]["hidden"] else P - prev_P)

    # by département: every shown count equals the mart, every small count is hidden
    rows = {r["attrs"]["dep"]: r["cells"] for r in t["dep-table"]}
    assert len(rows) == 104  # 101 départements and the COM 975, 977, 978
    truth = {d: (p, tt) for d, p, tt in dep.iter_rows()}
    hidden_p = 0
    for d, cells in rows.items():
        p_true, t_true = truth.get(d, (0, 0))
        for cell, true in ((cells[3], p_true), (cells[4], t_true)):
            if 1 <= true <= 10:
                assert cell["hidden"] and cell["value"] is None and cell["text"] == "s", (d, true, cell)
            if not cell["hidden"]:
                assert num(cell) == true, (d, cell, true)
        hidden_p += cells[3]["hidden"]
        if not cells[3]["hidden"] and p_true:
            assert num(cells[6]) == pytest.approx(p_true / pop_dep[d] * 1e5, abs=1e-6)
        else:
            assert cells[6]["value"] is None or num(cells[6]) == 0  # no rate from a hidden count
    # a column whose total is shown never hides exactly one cell
    assert hidden_p != 1

    # age and sex
    ages = {int(r["attrs"]["age"]): r["cells"] for r in t["age-table"]}
    truth_age = {c: (f, h, p) for c, f, h, p in age.iter_rows()}
    for c, cells in ages.items():
        for cell, true in zip(cells[1:4], truth_age.get(c, (0, 0, 0))):
            if 1 <= true <= 10:
                assert cell["hidden"]
            if not cell["hidden"]:
                assert num(cell) == true, (c, cell, true)
    assert ages[0][3]["hidden"] == national["P"][2]["hidden"]  # the all-ages row is the national figure
    assert ages[0][3]["hidden"] or num(ages[0][3]) == P


def test_weekly_report_is_self_contained_with_real_charts_and_a_map(gated):  # noqa: F811
    _, _, paths, _ = gated
    html = Path(paths["weekly"]).read_text(encoding="utf-8")
    assert "<script" not in html and "<link" not in html and "<img" not in html
    assert not re.search(r'(src|href)="https?:', html), "nothing may be fetched from the network"
    assert html.count("<svg") >= 6
    assert 'class="marks"' in html  # vl-convert's Vega SVG output, not a table of numbers
    # the map: 96 metropolitan départements + 5 overseas + the COM 975, 977 and 978, each drawn
    assert len(set(re.findall(r'data-dep="(\w+)"><title>', html)) | set(re.findall(r'<g data-dep="(\w+)">', html))) == 104
    assert "CC BY 4.0" in html  # the map's attribution
    # the hidden counts leave no trace: no data-value on a hidden cell, no number in its tooltip
    assert not re.search(r'data-hidden="1"[^>]*data-value', html)
    mdo = cat.TABLES and any(t.qualified == "marts.mdo_weekly" for t in cat.TABLES)
    if not mdo:
        assert 'id="mdo-missing"' in html and "marts.mdo_weekly" in html


def test_no_hidden_count_of_the_weekly_report_can_be_recomputed(gated):  # noqa: F811
    """Every count the report shows is a cell of a cube (geography, age, sex, time); a reader who
    subtracts along every published total recovers none of the hidden ones."""
    from quality.reports.weekly import weekly_data
    from transforms.epi.suppression import Tree, margin_attack
    from warehouse.store import Warehouse

    home = gated[0]
    cells = weekly_data(Warehouse(home), SEEDS)["cells"]
    assert cells.hidden, "the small test data must exercise disclosure control"
    dims = tuple(Tree(p) for p in cells.parents)
    cubes: dict[str, tuple[dict, set]] = {}
    for key, value in cells.values.items():
        measure, cell = cells.cell(key)
        known, hidden = cubes.setdefault(measure, ({}, set()))
        (hidden.add(cell) if key in cells.hidden else known.__setitem__(cell, value))
    for measure, (known, hidden) in cubes.items():
        published = set(known) | hidden
        assert not any(1 <= v <= 10 for v in known.values()), measure
        assert margin_attack(known, hidden, dims, lambda c, p=published: c in p) == {}, measure


def _cube_cells_of_files(folder: Path) -> tuple[dict, set]:
    """The SI-DEP covid19 files of a publication as cells of the exports' cube: (known values,
    hidden cells), per measure family in the cell's first item ('P' | 'T')."""
    known, hidden = {}, set()
    for path in sorted(folder.glob("sp-pos-*-covid19.csv")):
        _, _, freq, level, _ = path.stem.split("-", 4)
        df = pl.read_csv(path, separator=";", infer_schema=False)
        prefix, time_col = ("j", "jour") if freq == "quot" else ("s", "semaine")
        for row in df.iter_rows(named=True):
            for col, (fam, sex) in {"P_f": ("P", "f"), "P_h": ("P", "h"), "P": ("P", "all"),
                                    "T_f": ("T", "f"), "T_h": ("T", "h"), "T": ("T", "all")}.items():
                if col not in row:
                    continue
                cell = (fam, f"{level}:{row[level]}", int(row["cl_age90"]), f"{prefix}:{row[time_col]}", sex)
                if row[col] in (None, ""):
                    hidden.add(cell)
                else:
                    known[cell] = int(row[col])
    return known, hidden


def _cube_cells_of_report(cells) -> tuple[dict, set]:
    """The weekly report's SI-DEP counts as cells of the exports' cube (as _cube_cells_of_files)."""
    known, hidden = {}, set()
    for key, value in cells.values.items():
        kind = key[0]
        if kind == "mdo":
            continue
        week = None if kind == "day" else "s:" + key[1].replace("-W", "-S")
        if kind == "day":
            cell = (key[2], "fra:FR", 0, f"j:{key[1].isoformat()}", "all")
        elif kind == "nat":
            cell = (key[2], "fra:FR", 0, week, "all")
        elif kind == "dep":
            cell = (key[3], f"dep:{key[2]}", 0, week, "all")
        else:
            cell = ("P", "fra:FR", key[2], week, {"P_f": "f", "P_h": "h", "P": "all"}[key[3]])
        (hidden.add(cell) if key in cells.hidden else known.__setitem__(cell, value))
    return known, hidden


def test_the_report_and_the_published_files_together_give_no_hidden_count_away(gated, tmp_path):  # noqa: F811
    """QA (HIGH): the report and the published files hid different cells; each was safe alone, but a
    reader holding both subtracted a région's women (hidden) from the report's département count.
    The report now hides what the files hide: a subtraction attack over the files' cube, fed with
    the files' cells and the report's, recovers nothing, and no cell is shown in one and hidden in
    the other."""
    from flows import steps
    from flows.epi import export_publication, published_pattern
    from quality.reports.weekly import weekly_data
    from tests.test_quality_gate import context
    from transforms.epi import indicators
    from transforms.epi.exports import SEX_TREE, age_tree, geo_tree, time_tree
    from transforms.epi.suppression import margin_attack
    from warehouse.store import Warehouse

    home = copy_home(gated[0], tmp_path / "home")
    ctx = context(home)
    refs = steps.read_refs(ctx)
    out = export_publication(ctx, refs, issue_date="2026-12-01")
    f_known, f_hidden = _cube_cells_of_files(Path(out["folder"]))
    assert f_hidden, "the small test data must exercise disclosure control"
    cells = weekly_data(Warehouse(home), SEEDS, pattern=published_pattern(ctx, refs))["cells"]
    r_known, r_hidden = _cube_cells_of_report(cells)
    assert r_hidden and r_known
    assert not (set(r_known) & f_hidden) and not (r_hidden & set(f_known))
    for cell in set(r_known) & set(f_known):
        assert r_known[cell] == f_known[cell], cell
    geo = indicators.geography(refs["departements"], refs["population"])
    days = sorted({date.fromisoformat(c[3][2:]) for c in (*f_known, *f_hidden, *r_known, *r_hidden)
                   if c[3].startswith("j:")})
    dims = (geo_tree(geo), age_tree(indicators.sidep.AGE_CLASSES), time_tree(days), SEX_TREE)
    for fam in ("P", "T"):
        known = {c[1:]: v for c, v in {**f_known, **r_known}.items() if c[0] == fam}
        hidden = {c[1:] for c in f_hidden | r_hidden if c[0] == fam}
        assert not any(1 <= v <= 10 for v in known.values()), fam
        published = set(known) | hidden
        assert margin_attack(known, hidden, dims, lambda c, p=published: c in p) == {}, fam


def test_local_disclosure_rule_when_the_exports_rule_is_absent():
    from quality.reports.disclosure import local_hidden_cells

    geo = {"FR": None, "a": "FR", "b": "FR", "c": "FR"}
    one = ({"all": None},)
    values = {("a", "all"): 5, ("b", "all"): 40, ("c", "all"): 12, ("FR", "all"): 57}
    assert local_hidden_cells(values, set(values), (geo, *one)) == {("a", "all"), ("c", "all")}
    zeros = {("a", "all"): 0, ("b", "all"): 40, ("c", "all"): 0, ("FR", "all"): 40}
    assert local_hidden_cells(zeros, set(zeros), (geo, *one)) == set()
    # a total the report does not print protects nothing, and a missing one cannot be used either
    partial = {("a", "all"): 5, ("b", "all"): 40, ("c", "all"): 12}
    assert local_hidden_cells(partial, set(partial), (geo, *one)) == {("a", "all")}
    # two dimensions: hiding along one equation exposes another, which is protected in turn
    sex = {"all": None, "F": "all", "M": "all"}
    grid = {("a", "F"): 4, ("a", "M"): 50, ("b", "F"): 30, ("b", "M"): 60, ("a", "all"): 54, ("b", "all"): 90,
            ("FR", "F"): 34, ("FR", "M"): 110, ("FR", "all"): 144}
    geo2 = {"FR": None, "a": "FR", "b": "FR"}
    hidden = local_hidden_cells(grid, set(grid), (geo2, sex))
    from transforms.epi.suppression import Tree, margin_attack

    known = {c: v for c, v in grid.items() if c not in hidden}
    assert margin_attack(known, hidden, (Tree(geo2), Tree(sex)), lambda c: c in grid) == {}


def test_a_week_hidden_in_every_mdo_panel_stays_on_the_axis_marked_as_not_shown():
    """QA numbers F3 (MEDIUM): a week whose count is hidden in every panel (1 case each) left the
    chart's x axis (Vega-Lite drops a null value), the panels reading "0 cases" with nothing to
    say a week was hidden. Every week stays on the axis, the hidden one drawn as a grey band with
    a legend and a note."""
    from quality.reports import charts

    weeks = [f"2026-W{w}" for w in range(33, 45)]
    series = pl.DataFrame([{"disease": d, "week": w, "cases": None if w == "2026-W41" else 0}
                           for d in ("Legionellosis", "Listeriosis") for w in weeks],
                          schema={"disease": pl.Utf8, "week": pl.Utf8, "cases": pl.Int64})
    labels = lambda svg: re.findall(r">(2026-W\d\d)</text>", svg)  # noqa: E731 (the axis labels)
    svg = charts.small_multiples(series, "Notifiable diseases: weekly cases, France", weeks)
    assert sorted(set(labels(svg))) == weeks
    assert labels(svg).count("2026-W41") == labels(svg).count("2026-W40") > 0
    assert charts.HIDDEN_WEEK in svg and charts.HIDDEN_WEEK_NOTE in svg
    # the weeks default to the series' own; nothing hidden: no band, no legend, no note
    assert sorted(set(labels(charts.small_multiples(series.drop_nulls(), "t")))) == [
        w for w in weeks if w != "2026-W41"]
    shown = charts.small_multiples(series.with_columns(pl.col("cases").fill_null(0)), "t", weeks)
    assert sorted(set(labels(shown))) == weeks and charts.HIDDEN_WEEK not in shown


def test_reports_cli_builds_a_chosen_week(gated, tmp_path):  # noqa: F811
    from typer.testing import CliRunner

    from flows.reports import reports_app

    home = copy_home(gated[0], tmp_path / "home")
    weeks = CliRunner().invoke(reports_app, ["weeks", "--home", str(home)])
    assert weeks.exit_code == 0, weeks.output
    listed = weeks.output.split()
    assert len(listed) >= 2
    older = listed[-2]
    res = CliRunner().invoke(reports_app, ["weekly", "--home", str(home), "--week", older])
    assert res.exit_code == 0, res.output
    out = home / "reports" / f"weekly_{older}.html"
    assert res.output.strip() == str(out) and out.exists()
    # an older week does not replace the latest copy
    assert (home / "reports" / "weekly_latest.html").read_bytes() != out.read_bytes()
    t = tables(out)
    dep, _ = weekly_truth(home, older)
    shown = t["national"][0]["cells"][2]
    assert shown["hidden"] or num(shown) == dep["P"].sum()
    bad = CliRunner().invoke(reports_app, ["weekly", "--home", str(home), "--week", "2026-45"])
    assert bad.exit_code == 2 and "bad ISO week" in bad.output
    empty = CliRunner().invoke(reports_app, ["weekly", "--home", str(home), "--week", "2099-W01"])
    assert empty.exit_code == 2 and "no tested person in week 2099-W01" in empty.output, empty.output


def test_weekly_report_shows_notifiable_diseases_from_mdo_weekly(gated, tmp_path):  # noqa: F811
    """marts.mdo_weekly (epi side) gives the per-disease curves; small counts are hidden there too."""
    from quality.reports.weekly import week_monday
    from warehouse.store import Warehouse

    home = copy_home(gated[0], tmp_path / "home")
    week = Path(gated[2]["weekly"]).stem.removeprefix("weekly_")
    prev = iso_week(week_monday(week) - timedelta(days=7))
    t = cat.table("marts.mdo_weekly")
    wh = Warehouse(home)
    # these two weeks' partitions are replaced: tuberculose has no case in them
    rows = {week: [("legionellose", "75", 30), ("legionellose", "13", 4), ("rougeole", "69", 3)],
            prev: [("legionellose", "75", 12), ("rougeole", "69", 0), ("tuberculose", "33", 0)]}
    for wk, data in rows.items():
        semaine = wk.replace("-W", "-S")
        df = pl.DataFrame([{"mdo_id": m, "semaine": semaine, "dep": d, "cases": n} for m, d, n in data],
                          schema=t.schema)
        wh.write_partition(t, f"{semaine}", [df])
    from typer.testing import CliRunner

    from flows.reports import reports_app

    res = CliRunner().invoke(reports_app, ["weekly", "--home", str(home), "--week", week])
    assert res.exit_code == 0, res.output
    got = {r["attrs"]["disease"]: r["cells"] for r in tables(home / "reports" / f"weekly_{week}.html")["mdo-table"]}
    first = iso_week(week_monday(week) - timedelta(days=7 * 11)).replace("-W", "-S")
    active = sql(home, f"SELECT mdo_id FROM marts.mdo_weekly WHERE semaine BETWEEN '{first}' AND "
                       f"'{week.replace('-W', '-S')}' GROUP BY mdo_id HAVING sum(cases) > 0")
    # diseases with cases only; covid19's cases are the SI-DEP P the report already shows (and the
    # published files leave to the SI-DEP files)
    assert set(got) == set(active["mdo_id"]) - {"covid19"} >= {"legionellose", "rougeole"}
    assert num(got["legionellose"][2]) == 34 and num(got["legionellose"][1]) == 12
    assert got["rougeole"][2]["hidden"] and num(got["rougeole"][1]) == 0


# --------------------------------------------------------------------------------------------
# the data-quality and lab-activity report
# --------------------------------------------------------------------------------------------
def test_data_quality_report_numbers_equal_the_warehouse(gated):  # noqa: F811
    home, gate, paths, summary = gated
    t = tables(Path(paths["data_quality"]))
    # row accounting per lab = the file log
    log = sql(home, "SELECT source, sum(rows_in) AS rows_in, sum(rows_valid) AS v, sum(rows_quarantined) AS q "
                    "FROM quality.file_log WHERE status = 'loaded' GROUP BY source")
    by_lab = {r["attrs"]["lab"]: r["cells"] for r in t["files-by-lab"]}
    for lab, rows_in, v, q in log.iter_rows():
        assert [num(c) for c in by_lab[lab][4:7]] == [rows_in, v, q]
        assert rows_in == v + q
    assert sum(num(c[4]) for c in by_lab.values()) == summary["rows_in"]
    # the formats each lab sent = the file log's, by name
    from transforms.parsers.detect import FORMAT_NAMES

    sent = sql(home, "SELECT source, list(DISTINCT format ORDER BY format) AS f FROM quality.file_log "
                     "WHERE status = 'loaded' GROUP BY source")
    for lab, fmts in sent.iter_rows():
        assert by_lab[lab][-1]["text"] == ", ".join(FORMAT_NAMES[f] for f in fmts)
    # volumes per lab = the fact table over the report's window (the last 90 days of collection)
    fct = sql(home, "SELECT source, count(*) AS n FROM marts.fct_lab_results WHERE collected_date > "
                    "(SELECT max(collected_date) - INTERVAL 90 DAY FROM marts.fct_lab_results) GROUP BY source")
    volumes = {r["attrs"]["lab"]: num(r["cells"][1]) for r in t["volumes-by-lab"]}
    assert volumes == {lab: n for lab, n in fct.iter_rows()}
    last_day = sql(home, "SELECT max(collected_date) AS d FROM marts.fct_lab_results")["d"][0]
    per_day = sql(home, f"SELECT source, count(*) AS n FROM marts.fct_lab_results WHERE collected_date = DATE '{last_day}' "
                        "GROUP BY source")
    day_row = next(r for r in t["volumes-by-day"] if r["attrs"]["day"] == str(last_day))
    labs = sorted(by_lab)
    assert {lab: num(c) for lab, c in zip(labs, day_row["cells"][1:])} == {
        lab: dict(per_day.iter_rows()).get(lab, 0) for lab in labs}
    # quarantine reasons = quality.quarantine
    q = sql(home, "SELECT reason_code, count(*) AS n FROM quality.quarantine GROUP BY reason_code")
    reasons = {r["attrs"]["reason"]: num(r["cells"][-1]) for r in t["quarantine-reasons"]}
    assert reasons == dict(q.iter_rows()) and len(reasons) >= 3
    assert {r["attrs"]["reason"] for r in t["quarantine-examples"]} == set(reasons)
    # results kept with a flag = the current results' dq_flags, per flag and lab
    f = sql(home, "SELECT source, flag, count(*) AS n FROM (SELECT source, unnest(string_split(dq_flags, ';')) AS flag "
                  "FROM marts.fct_lab_results WHERE is_current) GROUP BY ALL")
    flag_rows = {r["attrs"]["flag"]: r["cells"] for r in t["flag-counts"]}
    assert {fl: num(c[-1]) for fl, c in flag_rows.items()} == {
        fl: n for fl, n in f.group_by("flag").agg(pl.col("n").sum()).iter_rows()}
    assert {"AGE_UNKNOWN", "SEX_UNKNOWN"} <= set(flag_rows)
    for lab, fl, n in f.iter_rows():
        assert num(flag_rows[fl][2 + labs.index(lab)]) == n
    # delays: the median collection -> reception of each lab
    med = sql(home, "SELECT source, quantile_cont(date_diff('minute', collected_at, received_at) / 60.0, 0.5) AS m "
                    "FROM marts.fct_lab_results WHERE collected_date > "
                    "(SELECT max(collected_date) - INTERVAL 90 DAY FROM marts.fct_lab_results) GROUP BY source")
    delays = {r["attrs"]["lab"]: num(r["cells"][4]) for r in t["delays-table"]
              if r["attrs"]["leg"] == "collection_to_reception"}
    for lab, m in med.iter_rows():
        assert delays[lab] == pytest.approx(m, abs=1e-4)
    # coding coverage = quality.mapping_coverage; unit conversion from the fact table
    cov = sql(home, "SELECT source, n_results, share_coded FROM quality.mapping_coverage")
    cov_rows = {r["attrs"]["lab"]: r["cells"] for r in t["mapping-coverage"]}
    for lab, n, share in cov.iter_rows():
        assert num(cov_rows[lab][1]) == n and num(cov_rows[lab][-1]) == pytest.approx(share, abs=1e-6)
    conv = sql(home, "SELECT source, count(*) AS n FROM marts.fct_lab_results "
                     "WHERE conversion_status <> 'not_numeric' GROUP BY source")
    conv_rows = {r["attrs"]["lab"]: num(r["cells"][1]) for r in t["conversion-coverage"]}
    assert conv_rows == {lab: n for lab, n in conv.iter_rows()}
    # the gate's results
    suites = {r["attrs"]["suite"]: r["cells"] for r in t["gate-suites"]}
    assert set(suites) == set(gate["suites"])
    assert sum(num(c[1]) for c in suites.values()) == gate["evaluated"]
    html = Path(paths["data_quality"]).read_text(encoding="utf-8")
    assert 'data-ok="1"' in html and 'href="data_docs/index.html"' in html


def test_quarantine_examples_of_lines_the_parser_refused_show_no_false_empty_value(mixed_run, tmp_path):
    """QA N12: a TEST_IDENTITY example (HPRIM, HL7 v2) read "empty or unreadable" in the value column,
    while its explanation quoted the INS OID: the parser refuses such lines, so their values never reach
    raw.results. They say so; lines that reached raw.results still show their (safe) value."""
    from flows.settings import Settings
    from flows.steps import Context
    from quality.reports.dq import build_dq, dq_data

    home, _ = mixed_run
    wh = Context.create(Settings(home=home), "test-dq-examples").wh
    examples = dq_data(wh)["examples"]
    refused = examples["TEST_IDENTITY"]
    assert refused and {e["path"].rsplit(".", 1)[-1] for e in refused} <= {"hl7", "hpr"}, refused
    for e in refused:
        assert e["column"] == "ins_oid" and e["value"] is None
        assert e["value_note"] == "not kept (rejected before loading)", e
    shown = [e for rows in examples.values() for e in rows if e["value"] is not None]
    assert shown, "a safe value of a line that reached raw.results is shown"
    assert not [e for rows in examples.values() for e in rows if e["value_note"] == "empty or unreadable"]
    # QA priv F5: an unreadable date (typed columns keep no text they cannot read) is not "empty"
    notes = {(reason, e["value_note"]) for reason, rows in examples.items() for e in rows if e["value"] is None}
    assert ("DATE_INVALID", "could not be read (its text is not kept)") in notes, notes
    assert {reason for reason, note in notes if note == "empty in the file"} <= {"MISSING_VALUE"}, notes
    html = build_dq(wh, tmp_path).read_text(encoding="utf-8")
    assert "not kept (rejected before loading)" in html and "empty or unreadable" not in html


def test_data_quality_report_lists_only_the_failed_files_still_outstanding(tmp_path):
    """QA (ledger F4): the report listed under "Files that could not be read", and counted as
    unreadable, every failed sighting of the file log, also a file re-delivered and loaded under the
    same name, or removed from the landing area, which the quality gate no longer names. It now
    counts as the gate does (summaries.landing_failures), the resolved ones apart."""
    import zipfile

    from flows import process, steps
    from flows.settings import Settings
    from quality import summaries as S
    from quality.reports import dq
    from tests.helpers import HEADER, line

    home = tmp_path / "home"
    lab = home / "landing" / "labo_alpha"
    lab.mkdir(parents=True)
    (lab / "day1.csv").write_text("", encoding="utf-8")  # EMPTY_FILE
    with zipfile.ZipFile(lab / "day2.zip", "w") as z:  # UNPARSEABLE_FILE
        z.writestr("day2.csv", f"{HEADER}\n{line()}\n")
    (lab / "day3.zip").write_bytes((lab / "day2.zip").read_bytes() + b"\0")  # stays failed

    def run(run_id):
        ctx = steps.Context.create(Settings(home=home), run_id)
        steps.load_ref(ctx)
        loinc, mappings, _ = steps.load_terminology(ctx, None)
        work = process.Work(steps.read_ref(ctx, "postal_codes"), loinc, mappings)
        for t in steps.discover(ctx):
            if t.status == "new":
                process.process_file(ctx, t, work)
            else:
                process.record_skipped(ctx, t)
        return ctx

    def files(ctx):
        con = S.connect(ctx.wh)
        try:
            return dq._files(con, S.Sources(ctx.wh), home / "landing")
        finally:
            con.close()

    got = files(run("r1"))
    assert [(f["path"], f["reason_code"]) for f in got["failed"]] == [
        ("labo_alpha/day1.csv", "EMPTY_FILE"), ("labo_alpha/day2.zip", "UNPARSEABLE_FILE"),
        ("labo_alpha/day3.zip", "UNPARSEABLE_FILE")]
    assert got["totals"]["files_failed"] == 3 and not got["totals"].get("files_failed_resolved")
    # the lab re-delivers day1.csv under the same name with a result; day2.zip is removed
    (lab / "day1.csv").write_text(f"{HEADER}\n{line()}\n", encoding="utf-8")
    (lab / "day2.zip").unlink()
    ctx = run("r2")
    got = files(ctx)
    assert [f["path"] for f in got["failed"]] == ["labo_alpha/day3.zip"]
    assert got["totals"]["files_failed"] == 1 and got["totals"]["files_failed_resolved"] == 2
    assert got["totals"]["files_loaded"] == 1
    [alpha] = got["by_lab"]
    assert (alpha["source"], alpha["files_failed"], alpha["rows_in"]) == ("labo_alpha", 1, 1)
    # the same as the gate's landing_files suite
    con = S.connect(ctx.wh)
    try:
        assert S.landing_failures(con, S.Sources(ctx.wh), home / "landing")["path"].to_list() == ["labo_alpha/day3.zip"]
    finally:
        con.close()


def test_data_quality_report_shows_no_identity(gated):  # noqa: F811
    home, _, paths, _ = gated
    html = Path(paths["data_quality"]).read_text(encoding="utf-8") + Path(paths["weekly"]).read_text(encoding="utf-8")
    raw = sql(home, "SELECT DISTINCT patient_nir, family_name, first_name, postal_code, "
                    "strftime(birth_date, '%Y-%m-%d') AS birth FROM raw.results WHERE patient_nir IS NOT NULL")
    assert raw.height > 100
    leaked = [v for v in raw["patient_nir"].to_list() if v in html]
    assert not leaked, f"{len(leaked)} NIR found in the reports"
    # quarantine examples: file, line, column, explanation; identity columns never carry a value
    rows = tables(Path(paths["data_quality"]))["quarantine-examples"]
    for r in rows:
        column, value = r["cells"][3]["text"], r["cells"][5]["text"]
        if column in ("patient_nir", "family_name", "first_name", "birth_date", "postal_code"):
            assert value == "value not shown (identity or quasi-identifier)"


# --------------------------------------------------------------------------------------------
# the report renders in a real browser
# --------------------------------------------------------------------------------------------
def png_pixels(path: Path) -> np.ndarray:
    """Decode an 8-bit RGB/RGBA PNG (what Chromium writes) with zlib and numpy only."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, hdr = 8, [], None
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
    w, h, depth, ctype, _, _, interlace = hdr
    assert depth == 8 and ctype in (2, 6) and interlace == 0, hdr
    bpp = 3 if ctype == 2 else 4
    stride = w * bpp
    raw = zlib.decompress(b"".join(idat))
    out = np.empty((h, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.int64)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).astype(np.int64)
        if f == 0:
            cur = line
        elif f == 1:  # Sub
            cur = np.cumsum(line.reshape(w, bpp), axis=0).reshape(-1) % 256
        elif f == 2:  # Up
            cur = (line + prev) % 256
        else:  # Average, Paeth: sequential along the row
            ln, up, c = line.tolist(), prev.tolist(), [0] * stride
            for i in range(stride):
                a = c[i - bpp] if i >= bpp else 0
                b = up[i]
                if f == 3:
                    c[i] = (ln[i] + ((a + b) >> 1)) & 255
                else:
                    d = up[i - bpp] if i >= bpp else 0
                    pa, pb, pc = abs(b - d), abs(a - d), abs(a + b - 2 * d)
                    c[i] = (ln[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else d)) & 255
            cur = np.array(c, dtype=np.int64)
        out[y] = cur
        prev = cur
    return out.reshape(h, w, bpp)[:, :, :3]


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install -y chromium)")
def test_weekly_report_renders_in_chromium(gated, tmp_path):  # noqa: F811
    from flows.reports import screenshot

    _, _, paths, _ = gated
    png = screenshot(Path(paths["weekly"]), tmp_path / "weekly.png", width=1000, height=1400)
    px = png_pixels(png)
    assert px.shape == (1400, 1000, 3)
    colours = np.unique(px.reshape(-1, 3).astype(np.int64) @ np.array([65536, 256, 1]))
    assert len(colours) > 50, "the page rendered as a flat image"
    assert (px.min(axis=2) < 200).mean() > 0.05, "almost nothing drawn on the page"
    header = px[:60, :, :]  # the dark blue header band of the report
    assert (header.mean(axis=(0, 1)) < 120).all()


def test_a_week_the_year_does_not_have_is_refused_not_rolled_over():
    """QA cal F3: `--week 2025-W53` wrote the report of 2026-W01 (2025 has 52 ISO weeks)."""
    from quality.reports.weekly import week_monday

    assert week_monday("2026-W53") == date(2026, 12, 28) and week_monday("2020-S53") == date(2020, 12, 28)
    assert week_monday("2026-W01") == date(2025, 12, 29)
    for week, weeks in (("2025-W53", 52), ("2021-W53", 52)):
        with pytest.raises(ValueError, match=f"bad ISO week '{week}': {week[:4]} has {weeks} ISO weeks"):
            week_monday(week)
