"""The epi marts and publications on generated data, against the generator's truth, with revisions.

The scenario: the landing is first processed without its late files (the deliveries of the last
validation days, which hold corrections of earlier results, and an old positive of a person whose
later positive falls 59 days after it); an issue is published; the late files arrive; the marts
are revised and a second issue is published. The final marts must equal the truth exactly, the
revision must touch only the affected days and weeks, and both issues must stay side by side.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from flows import epi
from tests.epi_support import (linear_algebra_attack, margin_equations, published_cells, read_truth_sidep,
                               run_steps, subtraction_attack)
from transforms.epi.suppression import DisclosureRule
from transforms.synthetic.truth_mdo import mdo_weekly
from warehouse import catalog as cat
from warehouse import catalog_epi as ce

ISSUE_1, ISSUE_2 = "2026-11-09", "2026-11-12"
START = date(2026, 11, 2)


@dataclass
class Scenario:
    home: Path
    ctx: object
    refs: dict
    late_files: list[str]
    late_days: set
    episode_days: tuple  # (the held-back early positive, the later positive 59 days after)
    first: dict
    second: dict
    third: dict
    before: dict  # marts after the first run
    stats_before: dict  # partition file -> (inode, mtime) after the first run
    stats_after: dict
    issue_1: dict
    issue_2: dict


def file_stats(home: Path) -> dict:
    root = home / "warehouse" / "marts"
    return {p.relative_to(root).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
            for t in ce.TABLES if t.layer == "marts" for p in (root / t.name).rglob("*.parquet")}


def marts(ctx) -> dict:
    return {t.qualified: ctx.wh.read(t).sort(list(t.key)) for t in ce.TABLES if t.layer == "marts"}


@pytest.fixture(scope="module")
def scenario(generated, tmp_path_factory) -> Scenario:
    home = tmp_path_factory.mktemp("epi") / "home"
    shutil.copytree(generated, home)
    truth = pl.read_parquet(home / "truth" / "rows.parquet")
    late = set(truth.filter(pl.col("file").str.extract(r"_(\d{8})").cast(pl.Int64) >= 20261109)["file"].to_list())
    early = truth.filter((pl.col("scenario") == "same_episode_59") & (pl.col("fate") == "valid")).sort("person",
                                                                                                       "collected_date")
    person = early["person"][0]
    mine = early.filter(pl.col("person") == person)
    early_file, early_day, later_day = mine["file"][0], mine["collected_date"][0], mine["collected_date"][1]
    assert (later_day - early_day).days == 59 and early_day < START
    late.add(early_file)
    late_days = set(truth.filter(pl.col("file").is_in(list(late)))["collected_date"].to_list())
    held = home.parent / "held"
    for f in late:
        (held / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(home / "landing" / f, held / f)

    ctx, refs = run_steps(home, "run-1")
    first = epi.publish_epi(ctx, refs)
    issue_1 = epi.export_publication(ctx, refs, issue_date=ISSUE_1)
    before, stats_before = marts(ctx), file_stats(home)

    for f in late:
        shutil.move(held / f, home / "landing" / f)
    ctx, refs = run_steps(home, "run-2")
    second = epi.publish_epi(ctx, refs)
    stats_after = file_stats(home)
    third = epi.publish_epi(ctx, refs)
    issue_2 = epi.export_publication(ctx, refs, issue_date=ISSUE_2)
    return Scenario(home, ctx, refs, sorted(late), late_days, (early_day, later_day), first, second, third,
                    before, stats_before, stats_after, issue_1, issue_2)


# ------------------------------------------------------------------------------------------------
# exact counts
# ------------------------------------------------------------------------------------------------
def test_sidep_marts_equal_the_truth_exactly(scenario):
    wh = scenario.ctx.wh
    truth = read_truth_sidep(scenario.home).sort("jour", "dep", "cl_age90")
    assert truth["P"].sum() > 100 and truth["T"].sum() > truth["P"].sum()
    dep = wh.read(ce.SIDEP_DEP_DAILY).filter(pl.col("disease") == "covid19")
    assert dep.select(truth.columns).sort("jour", "dep", "cl_age90").equals(truth)
    assert wh.read(cat.SIDEP_DAILY).sort("jour", "dep", "cl_age90").equals(truth)  # the foundation's mart agrees
    # régions and France are the sums of their départements; weeks the sums of their days
    geo = pl.read_csv(scenario.ctx.settings.seeds_dir / "reference" / "departements.csv", infer_schema=False)
    counts = ["P_f", "P_h", "P", "T_f", "T_h", "T"]
    by_reg = (truth.join(geo.select(pl.col("dep_code").alias("dep"), pl.col("region_code").alias("reg")), on="dep")
              .group_by("jour", "reg", "cl_age90").agg(pl.col(c).sum() for c in counts))
    reg = wh.read(ce.SIDEP_REGION_DAILY).select("jour", "reg", "cl_age90", *counts)
    assert reg.sort("jour", "reg", "cl_age90").equals(by_reg.sort("jour", "reg", "cl_age90"))
    fra = wh.read(ce.SIDEP_FRANCE_DAILY).select("jour", "cl_age90", *counts).sort("jour", "cl_age90")
    assert fra.equals(truth.group_by("jour", "cl_age90").agg(pl.col(c).sum() for c in counts).sort("jour", "cl_age90"))
    weekly = wh.read(ce.SIDEP_WEEKLY).filter(pl.col("level") == "dep").select(
        "semaine", pl.col("geo").alias("dep"), "cl_age90", *counts).sort("semaine", "dep", "cl_age90")
    expected = (truth.with_columns(pl.col("jour").dt.strftime("%G-S%V").alias("semaine"))
                .group_by("semaine", "dep", "cl_age90").agg(pl.col(c).sum() for c in counts)
                .sort("semaine", "dep", "cl_age90"))
    assert weekly.equals(expected)


def test_the_compared_data_holds_every_hard_case(scenario):
    """The exact comparisons above cover re-infections at 60+ days, repeats inside an episode,
    several tests the same day, negatives on several days, corrections and late deliveries."""
    truth = pl.read_parquet(scenario.home / "truth" / "rows.parquet").filter(pl.col("fate") == "valid")
    scenarios = set(truth["scenario"].drop_nulls().to_list())
    assert scenarios >= {"reinfection_gt60", "reinfection_60", "same_episode_59", "repeat_in_window",
                         "same_day_ag_pcr", "neg_two_days", "neg_then_pos"}
    covid = truth.filter(pl.col("loinc_num").is_in(["94500-6", "94558-4"]))
    late = covid.filter(pl.col("file").is_in(scenario.late_files))
    assert late.filter(pl.col("defect") == "correction").height > 0  # corrections arrive late
    assert late.height > 50 and covid.filter(~pl.col("is_current")).height > 0


def test_rates_use_the_populations(scenario):
    wh = scenario.ctx.wh
    rates = wh.read(ce.SIDEP_RATES).filter((pl.col("level") == "fra") & (pl.col("cl_age90") == 0)).sort("jour")
    fra = wh.read(ce.SIDEP_FRANCE_DAILY).filter(pl.col("cl_age90") == 0).sort("jour")
    last = rates.row(-1, named=True)
    p7 = fra.filter(pl.col("jour") > last["jour"] - pl.duration(days=7))
    assert last["P_7j"] == p7["P"].sum() > 0 and last["T_7j"] == p7["T"].sum()
    assert last["pop"] == 67_114_995 and last["incidence_7j"] == pytest.approx(last["P_7j"] * 1e5 / 67_114_995)
    assert rates["P_7j"].head(6).null_count() == 6
    weekly = wh.read(ce.SIDEP_WEEKLY).filter((pl.col("level") == "reg") & (pl.col("T") > 0))
    assert (weekly["positivity"] - weekly["P"] / weekly["T"]).abs().max() < 1e-12


def test_mdo_weekly_cases_equal_the_truth_exactly(scenario):
    truth = mdo_weekly(pl.read_parquet(scenario.home / "truth" / "rows.parquet")).sort("mdo_id", "semaine", "dep")
    got = scenario.ctx.wh.read(ce.MDO_WEEKLY)
    assert got.filter(pl.col("cases") > 0).sort("mdo_id", "semaine", "dep").select(truth.columns).equals(truth)
    assert set(truth["mdo_id"].to_list()) >= {"covid19", "chikungunya"}
    # covid19 cases are the SI-DEP positives (same codes, 60-day episodes): re-infections included
    sidep_p = read_truth_sidep(scenario.home).filter(pl.col("cl_age90") == 0)["P"].sum()
    assert truth.filter(pl.col("mdo_id") == "covid19")["cases"].sum() == sidep_p
    cases = scenario.ctx.wh.read(ce.MDO_CASES)
    assert cases.height == truth["cases"].sum() + cases["dep"].null_count()
    assert got.select("mdo_id").n_unique() == got["mdo_id"].n_unique() and got.height % 104 == 0


# ------------------------------------------------------------------------------------------------
# revisions
# ------------------------------------------------------------------------------------------------
def test_a_rerun_recomputes_only_the_affected_days_and_weeks(scenario):
    s = scenario
    days = {date.fromisoformat(d) for d in s.second["sidep"]["covid19"]["days"]}
    early_day, later_day = s.episode_days
    # the late files' collection days and the day of the positive, 59 days after the late old
    # positive, that becomes a repeat inside its episode (no late file holds that day)
    assert later_day not in s.late_days and early_day in s.late_days
    assert days and days <= s.late_days | {later_day}
    assert {early_day, later_day} <= days
    changed = (
        s.before["marts.sidep_dep_daily"].join(s.ctx.wh.read(ce.SIDEP_DEP_DAILY), how="anti", nulls_equal=True,
                                               on=ce.SIDEP_DEP_DAILY.schema.names())["jour"].unique().to_list())
    assert set(changed) <= days and later_day in changed
    weeks = set(s.second["sidep"]["covid19"]["weeks"])
    assert weeks == {d.strftime("%G-S%V") for d in days}
    # partitions of the other weeks were not rewritten (same file, same modification time); the
    # 7-day rates also move in the 6 days after an affected day
    from datetime import timedelta

    last = s.ctx.wh.read(ce.SIDEP_DEP_DAILY)["jour"].max()
    rate_weeks = {(d + timedelta(days=k)).strftime("%G-S%V") for d in days for k in range(7)
                  if d + timedelta(days=k) <= last}
    allowed = {"sidep_rates": rate_weeks, "mdo_weekly": set(s.second["mdo"]["weeks"])}

    def rewritten_ok(path: str) -> bool:
        table, week = path.split("/")[0], path.split("semaine=")[1].split("/")[0]
        return week in allowed.get(table, weeks)

    untouched = {k: v for k, v in s.stats_before.items() if "semaine=" in k and not rewritten_ok(k)}
    assert len(untouched) > 20
    assert {k: s.stats_after.get(k) for k in untouched} == untouched
    log = s.ctx.wh.read(ce.EPI_REVISIONS).filter(pl.col("run_id") == "run-2")
    daily_log = log.filter(pl.col("table_name") == "marts.sidep_dep_daily")
    assert {p.split("=")[1] for p in daily_log["partition"].to_list()} == weeks
    assert {date.fromisoformat(d) for p in daily_log["periods"].to_list() for d in p.split(";")} == days
    rates_log = log.filter(pl.col("table_name") == "marts.sidep_rates")
    assert {p.split("=")[1] for p in rates_log["partition"].to_list()} == rate_weeks
    # the old positive's day is weeks before the late deliveries: it is revised in its own week
    assert early_day.strftime("%G-S%V") in weeks and early_day.strftime("%G-S%V") != START.strftime("%G-S%V")


def test_running_again_rewrites_nothing(scenario):
    assert scenario.third["partitions_rewritten"] == 0
    assert scenario.third["sidep"]["covid19"] == {"days": [], "weeks": []} and scenario.third["mdo"]["weeks"] == []


def test_earlier_issues_are_kept_and_revisions_compared(scenario):
    s = scenario
    root = s.home / "publication"
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == [ISSUE_1, ISSUE_2]
    for issue in (s.issue_1, s.issue_2):  # each file is still what its manifest says
        for f in issue["files"]:
            import hashlib
            assert hashlib.sha256((Path(issue["folder"]) / f["file"]).read_bytes()).hexdigest() == f["sha256"]
    diff = epi.compare_issues(s.home, ISSUE_1, ISSUE_2)
    assert diff.height > 0
    # what an empty value means is said: absent row or suppressed cell
    for before, after, change in diff.select("before", "after", "change").iter_rows():
        assert change in ("revised", "now suppressed", "no longer suppressed", "new row", "row removed")
        if change == "revised":
            assert before is not None and after is not None
        if change == "now suppressed":
            assert before is not None and after is None
    weeks = set(s.second["sidep"]["covid19"]["weeks"]) | set(s.second["mdo"]["weeks"])
    days = set(s.second["sidep"]["covid19"]["days"])

    def period(key: str) -> str:
        return next(part.split("=", 1)[1] for part in key.split() if part.split("=")[0] in ("jour", "semaine"))

    for file, key, before, after in diff.select("file", "key", "before", "after").iter_rows():
        p = period(key)
        week = date.fromisoformat(p).strftime("%G-S%V") if "-S" not in p else p
        assert week in weeks, (file, key)
        if "quot" in file and before is not None and after is not None:
            assert p in days, (file, key, before, after)  # a count changed: only on a recomputed day
    early_day, later_day = s.episode_days
    assert diff.filter(pl.col("file").str.contains("quot-fra") & pl.col("key").str.contains(str(early_day))).height
    assert epi.compare_issues(s.home, ISSUE_2, ISSUE_2).is_empty()
    pubs = s.ctx.wh.read(ce.PUBLICATIONS)
    assert set(pubs["issue_date"].to_list()) == {ISSUE_1, ISSUE_2} and pubs.height == 2 * len(s.issue_2["files"])


# ------------------------------------------------------------------------------------------------
# publications: shapes, manifest, disclosure control
# ------------------------------------------------------------------------------------------------
SHAPES = {
    "sp-pos-quot-dep-covid19.csv": "dep;jour;P;T;cl_age90;pop",
    "sp-pos-quot-reg-covid19.csv": "reg;jour;P_f;P_h;P;T_f;T_h;T;cl_age90;pop",
    "sp-pos-quot-fra-covid19.csv": "fra;jour;P_f;P_h;P;T_f;T_h;T;cl_age90;pop",
    "sp-pos-heb-dep-covid19.csv": "dep;semaine;P;T;cl_age90;pop",
    "sp-pos-heb-reg-covid19.csv": "reg;semaine;P_f;P_h;P;T_f;T_h;T;cl_age90;pop",
    "sp-pos-heb-fra-covid19.csv": "fra;semaine;P_f;P_h;P;T_f;T_h;T;cl_age90;pop",
    "mdo-heb-dep.csv": "dep;semaine;mdo;cas",
    "mdo-heb-fra.csv": "fra;semaine;mdo;cas",
}


def test_files_have_the_spf_shapes_and_the_manifest_describes_them(scenario):
    folder = Path(scenario.issue_2["folder"])
    assert sorted(p.name for p in folder.iterdir()) == sorted([*SHAPES, "manifest.csv", "manifest.json"])
    manifest = pl.read_csv(folder / "manifest.csv", separator=";", infer_schema=False)
    doc = json.loads((folder / "manifest.json").read_text())
    assert doc["disclosure"]["threshold"] == 10 and "suppressed" in doc["disclosure"]["rule"]
    assert "in no row of any file, the national files included" in doc["coverage"]  # QA: said nowhere
    for name, header in SHAPES.items():
        text = (folder / name).read_text(encoding="utf-8")
        lines = text.split("\n")
        assert lines[0] == header and text.endswith("\n")
        row = manifest.filter(pl.col("file") == name).row(0, named=True)
        assert int(row["rows"]) == len(lines) - 2 and row["issue_date"] == ISSUE_2
        assert row["threshold"] == "10" and row["rule"].startswith("counts from 1 to 10")
        # each file states the totals of its own cube (QA: the MDO files repeated SI-DEP's)
        assert ("age classes" in row["rule"]) == name.startswith("sp-pos-"), (name, row["rule"])
    dep = pl.read_csv(folder / "sp-pos-quot-dep-covid19.csv", separator=";", infer_schema=False)
    assert set(dep["cl_age90"].unique().to_list()) == {"0", "09", "19", "29", "39", "49", "59", "69", "79", "89", "90"}
    assert dep["dep"].n_unique() == 104 and dep.filter(pl.col("dep") == "2A").height > 0
    row = manifest.filter(pl.col("file") == "sp-pos-quot-dep-covid19.csv").row(0, named=True)
    assert (row["period_start"], row["period_end"]) == (dep["jour"].min(), dep["jour"].max())
    heb = pl.read_csv(folder / "sp-pos-heb-fra-covid19.csv", separator=";", infer_schema=False)
    assert heb["semaine"].str.contains(r"^\d{4}-S\d{2}$").all()
    # QA: weeks the data start or end inside were published as whole weeks (incidence over 2 days);
    # the weekly files keep the complete weeks only, the mart keeps every week with its day count
    weekly = scenario.ctx.wh.read(ce.SIDEP_WEEKLY).filter((pl.col("disease") == "covid19") & (pl.col("level") == "fra"))
    partial = set(weekly.filter(pl.col("days") < 7)["semaine"].to_list())
    assert partial and set(weekly.filter(pl.col("days") == 7)["semaine"].to_list())  # the data hold both
    fct = scenario.ctx.wh.read(cat.FCT_LAB_RESULTS).filter("is_current")["collected_date"]
    first, last = fct.min(), fct.max()
    assert set(heb["semaine"].to_list()) == set(weekly["semaine"].to_list()) - partial
    for week in partial:  # each left out week really is cut by the data's first or last day
        monday = date.fromisocalendar(int(week[:4]), int(week[-2:]), 1)
        assert monday < first or monday + timedelta(days=6) > last
    mdo_fra = pl.read_csv(folder / "mdo-heb-fra.csv", separator=";", infer_schema=False)
    assert set(mdo_fra["semaine"].to_list()) <= set(heb["semaine"].to_list())  # complete weeks only
    mdo_weeks = set(scenario.ctx.wh.read(ce.MDO_WEEKLY)["semaine"].to_list())
    assert mdo_weeks & partial and not set(mdo_fra["semaine"].to_list()) & partial
    # marts.mdo_weekly says which weeks are partial: its days in the same period as the files'
    mdo_days = dict(scenario.ctx.wh.read(ce.MDO_WEEKLY).select("semaine", "days").unique().iter_rows())
    assert len(mdo_days) == len(mdo_weeks)  # one value per week
    assert mdo_days == {w: sum(first <= d <= last for d in (date.fromisocalendar(int(w[:4]), int(w[-2:]), 1)
                                                            + timedelta(days=k) for k in range(7)))
                        for w in mdo_weeks}
    assert {w for w, n in mdo_days.items() if n < 7} == mdo_weeks & partial
    assert set(mdo_fra["semaine"].to_list()) == {w for w, n in mdo_days.items() if n == 7}
    heb_row = manifest.filter(pl.col("file") == "sp-pos-heb-fra-covid19.csv").row(0, named=True)
    assert (heb_row["period_start"], heb_row["period_end"]) == (heb["semaine"].min(), heb["semaine"].max())
    mdo_dep = pl.read_csv(folder / "mdo-heb-dep.csv", separator=";", infer_schema=False)
    assert "covid19" not in mdo_dep["mdo"].to_list()  # published through the SI-DEP files


def test_published_values_are_the_marts_with_small_counts_hidden(scenario):
    folder = Path(scenario.issue_2["folder"])
    pub = pl.read_csv(folder / "sp-pos-quot-dep-covid19.csv", separator=";", infer_schema=False)
    mart = scenario.ctx.wh.read(ce.SIDEP_DEP_DAILY).select(
        "dep", pl.col("jour").cast(pl.Utf8), "cl_age90", pl.col("P").alias("P_m"), pl.col("T").alias("T_m"))
    j = pub.with_columns(pl.col("cl_age90").cast(pl.Int64)).join(mart, on=["dep", "jour", "cl_age90"])
    assert j.height == pub.height == mart.height
    for c in ("P", "T"):
        shown = j.filter(pl.col(c).is_not_null())
        assert (shown[c].cast(pl.Int64) == shown[f"{c}_m"]).all()
        assert not shown[f"{c}_m"].is_between(1, 10).any()  # no count from 1 to 10 is visible
        hidden = j.filter(pl.col(c).is_null())
        assert hidden[f"{c}_m"].is_between(1, 10).sum() > 0 and (hidden[f"{c}_m"] > 10).sum() + (
            hidden[f"{c}_m"] == 0).sum() > 0  # secondary suppression hides some larger counts or zeros


def _dep_reg(scenario) -> dict:
    geo = pl.read_csv(scenario.ctx.settings.seeds_dir / "reference" / "departements.csv", infer_schema=False)
    return dict(geo.select("dep_code", "region_code").iter_rows())


@pytest.fixture(scope="module")
def issue_2_cells(scenario):
    cells = published_cells(Path(scenario.issue_2["folder"]), "covid19")
    return cells, margin_equations(cells, _dep_reg(scenario))


def test_no_suppressed_cell_can_be_recomputed_from_the_margins(scenario, issue_2_cells):
    """The reader's attack on the published files alone: every margin (all ages, régions, France,
    weeks, women + men) by repeated subtraction, then every combination of them (linear algebra)."""
    folder = Path(scenario.issue_2["folder"])
    cells, eqs = issue_2_cells
    hidden = [c for c, v in cells.items() if v is None]
    assert len(hidden) > 1000 and len(eqs) > 10_000
    assert subtraction_attack(cells, eqs) == {}
    assert linear_algebra_attack(cells, eqs) == set()
    mdo = pl.read_csv(folder / "mdo-heb-dep.csv", separator=";", infer_schema=False)
    fra = pl.read_csv(folder / "mdo-heb-fra.csv", separator=";", infer_schema=False)
    for (m, w), g in mdo.group_by("mdo", "semaine"):
        total = fra.filter((pl.col("mdo") == m) & (pl.col("semaine") == w))["cas"][0]
        assert g["cas"].null_count() + (total is None) != 1, (m, w)  # never one unknown in fra = sum(dep)


def test_the_attack_recovers_cells_when_only_small_counts_are_hidden(scenario, issue_2_cells):
    """The same attack against primary suppression alone finds cells, with their true values."""
    # a scratch issue, removed below (dated ahead: a new issue before the latest ones is refused)
    out = epi.export_publication(scenario.ctx, scenario.refs, issue_date="2099-12-31",
                                 rule=DisclosureRule(secondary="none"))
    try:
        cells = published_cells(Path(out["folder"]), "covid19")
        # with the exact margins only (geography, weeks) every recomputed value is the true one
        found = subtraction_attack(cells, margin_equations(cells, _dep_reg(scenario), exact_only=True))
        assert len(found) > 20
        truth = _mart_cells(scenario, found)
        assert all(truth[c] == v for c, v in found.items())
        # with every margin, more cells fall, and linear algebra finds at least as many
        eqs = margin_equations(cells, _dep_reg(scenario))
        assert set(subtraction_attack(cells, eqs)) <= linear_algebra_attack(cells, eqs)
        issued = issue_2_cells[0]
        assert all(issued[c] is None for c in found)  # the real issue hides every one of them
    finally:
        shutil.rmtree(out["folder"])


def _mart_cells(scenario, wanted) -> dict:
    """The true values of the ``wanted`` cells, from the marts."""
    wh = scenario.ctx.wh
    frames = []
    for level, t in (("dep", ce.SIDEP_DEP_DAILY), ("reg", ce.SIDEP_REGION_DAILY), ("fra", ce.SIDEP_FRANCE_DAILY)):
        frames.append(wh.read(t).select(pl.lit(level).alias("level"), pl.col(level).alias("geo"),
                                        (pl.lit("j:") + pl.col("jour").cast(pl.Utf8)).alias("period"),
                                        "cl_age90", "P_f", "P_h", "P", "T_f", "T_h", "T"))
    frames.append(wh.read(ce.SIDEP_WEEKLY).select("level", "geo", (pl.lit("s:") + pl.col("semaine")).alias("period"),
                                                  "cl_age90", "P_f", "P_h", "P", "T_f", "T_h", "T"))
    long = pl.concat(frames).unpivot(["P_f", "P_h", "P", "T_f", "T_h", "T"],
                                     index=["level", "geo", "period", "cl_age90"], variable_name="col")
    want = pl.DataFrame(list(wanted), schema=["level", "geo", "period", "cl_age90", "col"], orient="row")
    got = want.join(long, on=["level", "geo", "period", "cl_age90", "col"], how="left")
    return {tuple(r[:5]): r[5] for r in got.rows()}


def test_command_line_export_issues_and_compare(scenario):
    from flows.epi import epi_app

    runner = CliRunner()
    home = str(scenario.home)
    res = runner.invoke(epi_app, ["export", "--home", home, "--issue-date", "2026-11-13", "--threshold", "5"])
    assert res.exit_code == 0, res.output
    doc = json.loads((scenario.home / "publication" / "2026-11-13" / "manifest.json").read_text())
    assert doc["disclosure"]["threshold"] == 5
    res = runner.invoke(epi_app, ["issues", "--home", home])
    assert res.exit_code == 0 and ISSUE_1 in res.output and "2026-11-13" in res.output
    res = runner.invoke(epi_app, ["compare", ISSUE_1, ISSUE_2, "--home", home, "--csv",
                                  "--file", "sp-pos-quot-fra-covid19.csv"])
    assert res.exit_code == 0 and res.output.startswith("file;key;column;before;after;change")
    assert len(res.output.splitlines()) > 1
    # read without --csv: a table per file and kind of change, then the first differences (QA: a raw
    # dump, where an empty "before" meant both a new row and a suppressed cell)
    res = runner.invoke(epi_app, ["compare", ISSUE_1, ISSUE_2, "--home", home])
    assert res.exit_code == 0 and "now suppressed" in res.output and "shape:" not in res.output
    # QA cal F2: 20261126 and 2026-W48-4 passed Python's fromisoformat, each in its own folder
    for spelled in ("13/11/2026", "20261113", "2026-W46-5", "2026W465"):
        res = runner.invoke(epi_app, ["export", "--home", home, "--issue-date", spelled])
        assert res.exit_code == 2 and "YYYY-MM-DD" in res.output, (spelled, res.output)
    folders = [p.name for p in (scenario.home / "publication").iterdir() if not p.name.startswith(".")]
    assert "2026-11-13" in folders and all(date.fromisoformat(f).isoformat() == f for f in folders), folders
    shutil.rmtree(scenario.home / "publication" / "2026-11-13")



def test_a_published_past_issue_is_never_rewritten_silently(scenario, tmp_path):
    """QA months F1: exporting a past issue date again (after 16 more runs) replaced its files with
    weeks of newer data, exit 0, and `epi compare` of it with a later issue showed no difference."""
    from flows.epi import check_issue_date, epi_app
    from flows.privacy import read_audit
    from flows.settings import Settings
    from tests.helpers import copy_home
    from warehouse.store import Warehouse

    runner = CliRunner()
    copy = copy_home(scenario.home, tmp_path / "home")  # the module's issues stay as they are
    home = str(copy)
    folder = copy / "publication" / ISSUE_1
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    res = runner.invoke(epi_app, ["export", "--home", home, "--issue-date", ISSUE_1])
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())
    assert f"issue {ISSUE_1} was already published and is never rewritten" in text and "--replace" in text
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    # a new issue dated before the latest one would hold today's data under an earlier date
    res = runner.invoke(epi_app, ["export", "--home", home, "--issue-date", "2026-11-10"])
    assert res.exit_code == 2 and f"before the latest issue ({ISSUE_2})" in " ".join(res.output.split())
    assert not (copy / "publication" / "2026-11-10").exists()
    # replaced on purpose: written again, and the why is in the audit trail
    res = runner.invoke(epi_app, ["export", "--home", home, "--issue-date", ISSUE_1, "--replace", "QA test"])
    assert res.exit_code == 0, res.output
    events = read_audit(Warehouse(Settings(home=copy).home_abs)).filter(pl.col("kind") == "issue_replaced")
    assert events["subject"].to_list() == [f"publication/{ISSUE_1}"] and "QA test" in events["details"][0]
    # today's issue (and a later date) may be written again: the day's latest export is its issue
    check_issue_date(copy, ISSUE_2, today=date.fromisoformat(ISSUE_2))
    check_issue_date(copy, "2099-01-01")

# ------------------------------------------------------------------------------------------------
# suppression week by week, and its cache (quality.epi_suppression)
# ------------------------------------------------------------------------------------------------
def test_week_by_week_suppression_equals_the_whole_cube_on_the_marts(scenario):
    """SI-DEP P and T and the MDO cubes of the generated data: the weeks' union equals the whole
    cube exactly (primary, secondary, audit), for several rules."""
    from tests.test_epi_suppression import whole_cube
    from transforms.epi import exports, indicators

    ctx, refs = scenario.ctx, scenario.refs
    geo = indicators.geography(refs["departements"], refs["population"])
    daily, weekly = epi.sidep_marts(ctx, "covid19")
    days = sorted(daily["dep"]["jour"].unique().to_list())
    dims = (exports.geo_tree(geo), exports.age_tree(sorted(daily["dep"]["cl_age90"].unique().to_list())),
            exports.time_tree(days), exports.SEX_TREE)
    assert len([n for n, p in dims[2].parent.items() if p is None]) >= 3
    for rule, families in ((DisclosureRule(), "PT"), (DisclosureRule(threshold=5, min_count=2), "P"),
                           (DisclosureRule(secondary="none"), "PT")):
        for fam, values in exports.sidep_cube_values(daily, weekly).items():
            if fam in families:
                whole = whole_cube(values, dims, exports._sidep_published, rule)
                assert whole[0] and (whole[1] or rule.secondary == "none")
                assert exports.suppress_by_week(values, dims, 2, exports._sidep_published, rule) == whole, (rule, fam)
    # MDO: the old computation (one cube per disease, every week at once) against the new one
    mdo_weekly = epi.mdo_marts(ctx, ["covid19"])
    rule = DisclosureRule(threshold=1)  # few cases in 20,000 results: suppress singletons only, more weeks busy
    flags, audit = exports.suppress_mdo(mdo_weekly, geo, rule)
    gtree = exports.geo_tree(geo)
    ttree = exports.Tree({f"s:{w}": None for w in mdo_weekly["semaine"].unique().to_list()})
    rows = set(flags.iter_rows())
    for mdo_id in mdo_weekly["mdo_id"].unique().to_list():
        values: dict = {}
        for dep, w, v in mdo_weekly.filter((pl.col("mdo_id") == mdo_id) & (pl.col("cases") > 0)).select(
                "dep", "semaine", "cases").iter_rows():
            for g in (f"dep:{dep}", gtree.parent[f"dep:{dep}"], "fra:FR"):
                values[(g, f"s:{w}")] = values.get((g, f"s:{w}"), 0) + v
        p, s, e = whole_cube(values, (gtree, ttree), exports._mdo_published, rule)
        assert {r for r in rows if r[0] == mdo_id} == {
            (mdo_id, *g.split(":", 1), w[2:], k) for k, cells in (("p", p), ("s", s)) for g, w in cells}
        assert audit[mdo_id] == len(e) == 0


def test_the_suppression_cache_recomputes_only_changed_weeks(scenario, tmp_path, monkeypatch):
    """quality.epi_suppression: a second computation on unchanged marts computes no week; a change
    in one week's counts computes that week alone, and the result is the uncached one."""
    from transforms.epi import exports, indicators

    home = tmp_path / "home"
    shutil.copytree(scenario.home / "warehouse", home / "warehouse")
    from flows.settings import Settings
    from flows.steps import Context

    ctx = Context.create(Settings(home=home), "cache-test")
    refs = scenario.refs
    geo = indicators.geography(refs["departements"], refs["population"])
    rule = DisclosureRule()
    daily, weekly = epi.sidep_marts(ctx, "covid19")
    uncached = exports.suppress_sidep(daily, weekly, geo, rule)
    calls: list = []
    real = exports.suppress
    def week(values) -> str:  # the week of a week's cube
        t = next(iter(values))[2]
        return indicators.semaine_of(date.fromisoformat(t[2:])) if t.startswith("j:") else t[2:]

    monkeypatch.setattr(exports, "suppress", lambda values, *a, **k: calls.append(week(values)) or
                        real(values, *a, **k))
    shutil.rmtree(ctx.wh.table_dir(ce.EPI_SUPPRESSION), ignore_errors=True)  # the export's, if any
    epi._PATTERNS.clear()
    first = epi.sidep_suppression(ctx, "covid19", daily, weekly, geo, rule)
    assert first == uncached and len(calls) >= 6
    stored = ctx.wh.read(ce.EPI_SUPPRESSION)
    assert stored.height == len(calls) and set(stored["family"].to_list()) == {"P", "T"}
    assert not ({"P", "T", "value", "count"} & set(stored.columns))  # cell keys only
    calls.clear()
    epi._PATTERNS.clear()
    assert epi.sidep_suppression(ctx, "covid19", daily, weekly, geo, rule) == uncached
    assert calls == []  # every week from the cache
    # one département-day's T changes (a late result): only that week's T cube is computed again
    row = daily["dep"].sort("T", "jour", "dep", "cl_age90", descending=True).row(0, named=True)
    changed = dict(daily, dep=daily["dep"].with_columns(
        pl.when((pl.col("jour") == row["jour"]) & (pl.col("dep") == row["dep"]) & (pl.col("cl_age90") == row["cl_age90"]))
        .then(pl.col("T") + 1).otherwise(pl.col("T")).alias("T")))
    epi._PATTERNS.clear()
    got = epi.sidep_suppression(ctx, "covid19", changed, weekly, geo, rule)
    assert calls == [row["semaine"]]
    assert got == exports.suppress_sidep(changed, weekly, geo, rule)
    epi._PATTERNS.clear()


def test_the_manifest_says_how_many_cases_and_persons_no_file_holds(tmp_path):
    """QA mdo F6: 20 measles positives in 2026-S41, of which 8 without a known département (no
    postal code, 99999): mdo-heb-fra.csv said 12 and the manifest gave no number. manifest.json's
    not_in_files now counts, per disease and week, the MDO cases and SI-DEP person-days no file
    holds; a count the disclosure rule hides (1 to 10) is null and marked suppressed."""
    from tests.helpers import HEADER, line, nir

    home = tmp_path / "home"
    lab = home / "landing" / "labo_alpha"
    lab.mkdir(parents=True)
    rows = [HEADER]
    n = 0

    def add(code: str, label: str, value: str, postal: str, day: int) -> None:
        nonlocal n
        n += 1
        when = f"{5 + day:02d}/10/2026"
        rows.append(line(FINESS="690001235", N_DEMANDE=f"F6{n:04d}", NIR=nir(f"2800175440{n:03d}"),
                         NOM=f"NOM{chr(65 + n % 26)}{chr(65 + n // 26)}", PRENOM="Marie", DATE_NAISSANCE="01/01/1980",
                         CODE_POSTAL=postal, DATE_PRELEVEMENT=f"{when} 09:00", DATE_RECEPTION=f"{when} 14:00",
                         DATE_VALIDATION=f"{when} 18:00", CODE_ANALYSE=code, LIBELLE_ANALYSE=label,
                         RESULTAT=value, UNITE="", VALEURS_REFERENCE=""))

    # 2026-S41 is 5 to 11 October: every day has results, so the week is complete
    for i in range(12):
        add("ROUGM", "Rougeole IgM", "Positif", "75011", i % 7)
    for i in range(6):
        add("ROUGM", "Rougeole IgM", "Positif", "", i % 7)
    for i in range(5):
        add("ROUGM", "Rougeole IgM", "Positif", "99999", i % 7)
    for i in range(2):
        add("HAVM", "Hépatite A IgM", "Positif", "", i)
    for i in range(14):
        add("COVPCR", "SARS-CoV-2 RT-PCR", "Négatif", "" if i < 12 else "75011", i % 7)
    (lab / "extract_20261012.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    ctx, refs = run_steps(home)
    epi.publish_epi(ctx, refs)
    issue = epi.export_publication(ctx, refs, issue_date="2026-10-12")
    folder = Path(issue["folder"])
    fra = pl.read_csv(folder / "mdo-heb-fra.csv", separator=";", infer_schema=False)
    assert fra.filter(pl.col("mdo") == "rougeole").select("semaine", "cas").rows() == [("2026-S41", "12")]
    doc = json.loads((folder / "manifest.json").read_text())
    assert "not_in_files" in doc["coverage"]
    assert doc["not_in_files"]["mdo"] == [
        {"mdo": "hepatite_a", "semaine": "2026-S41", "cas": {"value": None, "suppressed": True}},
        {"mdo": "rougeole", "semaine": "2026-S41", "cas": {"value": 11, "suppressed": False}},
    ]
    assert doc["not_in_files"]["sidep"] == [
        {"disease": "covid19", "semaine": "2026-S41", "P": {"value": 0, "suppressed": False},
         "T": {"value": 12, "suppressed": False}}]
