"""SI-DEP aggregates for any test definition: weeks, régions, France, rates, published shapes."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from transforms.epi import exports, indicators

SEEDS = Path(__file__).resolve().parents[1] / "seeds"
D0 = date(2026, 11, 2)  # a Monday: 2026-S45


@pytest.fixture(scope="module")
def geo_pops():
    deps = pl.read_csv(SEEDS / "reference" / "departements.csv", infer_schema=False)
    pop = pl.read_csv(SEEDS / "reference" / "population.csv", infer_schema=False).with_columns(
        pl.col("cl_age90").cast(pl.Int64), pl.col("pop").cast(pl.Float64))
    geo = indicators.geography(deps, pop)
    return geo, indicators.populations(pop, geo)


def results(*rows, code="21503-8"):
    """rows: (person, day offset, class, dep, cl_age90, sex) for one test code."""
    recs = []
    for i, (p, d, cls, dep, age, sex) in enumerate(rows):
        day = D0 + timedelta(days=d)
        recs.append({"person_key": p, "collected_date": day, "collected_at": datetime.combine(day, datetime.min.time()),
                     "dep": dep, "cl_age90": age, "sex": sex, "file_seq": 1, "line_no": i + 2, "result_class": cls,
                     "loinc_code": code})
    return pl.DataFrame(recs, schema={"person_key": pl.Utf8, "collected_date": pl.Date,
                                      "collected_at": pl.Datetime("us"), "dep": pl.Utf8, "cl_age90": pl.Int64,
                                      "sex": pl.Utf8, "file_seq": pl.Int64, "line_no": pl.Int64,
                                      "result_class": pl.Utf8, "loinc_code": pl.Utf8})


def test_seed_populations_are_whole_and_sum_to_their_all_ages_row():
    pop = pl.read_csv(SEEDS / "reference" / "population.csv", infer_schema=False)
    assert pop["pop"].str.contains(r"^\d+$").all(), "a population that is not a whole number"
    pop = pop.with_columns(pl.col("pop").cast(pl.Int64), pl.col("cl_age90").cast(pl.Int64))
    totals = pop.filter(pl.col("cl_age90") == 0).select("dep_code", total="pop")
    sums = pop.filter(pl.col("cl_age90") > 0).group_by("dep_code").agg(pl.col("pop").sum(), pl.len())
    both = totals.join(sums, on="dep_code", how="full", coalesce=True)
    assert both.height == 104 and (both["len"] == 10).all() and (both["total"] == both["pop"]).all()
    assert totals["total"].sum() == 67_114_995
    # the COM whose classes the source apportioned in fractions, rounded (seeds/build_seeds.py)
    assert pop.filter((pl.col("dep_code") == "975") & (pl.col("cl_age90") == 9))["pop"].to_list() == [704]


def test_largest_remainder_rounding_of_the_seed_populations():
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_seeds", SEEDS / "build_seeds.py")
    build_seeds = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_seeds)

    def rows(dep, pops):
        return [{"dep_code": dep, "cl_age90": str(age), "pop": str(p)} for age, p in zip((0, 9, 19, 29), pops)]

    # 10 = 3.4 + 3.3 + 3.3: the one left over goes to the largest fraction
    assert build_seeds.whole_populations(rows("975", [10, 3.4, 3.3, 3.3])) == [
        ["975", 0, 10], ["975", 9, 4], ["975", 19, 3], ["975", 29, 3]]
    # 4 = 1.5 + 1.5 + 1: a tie goes to the younger class; whole values never move; 01 is left alone
    assert build_seeds.whole_populations(rows("978", [4, 1.5, 1.5, 1]) + rows("01", [6, 1, 2, 3])) == [
        ["978", 0, 4], ["978", 9, 2], ["978", 19, 1], ["978", 29, 1], ["01", 0, 6], ["01", 9, 1], ["01", 19, 2],
        ["01", 29, 3]]
    # 5 = 1.6 + 1.7 + 1.7: two left over, to the two largest fractions
    assert [r[2] for r in build_seeds.whole_populations(rows("975", [5, 1.6, 1.7, 1.7]))] == [5, 1, 2, 2]
    with pytest.raises(SystemExit, match="do not sum"):
        build_seeds.whole_populations(rows("975", [10, 3, 3, 3]))
    with pytest.raises(SystemExit, match="not a whole number"):
        build_seeds.whole_populations(rows("975", [10.5, 3.5, 3.5, 3.5]))


def test_iso_weeks_as_spf_writes_them():
    days = [date(2026, 11, 2), date(2026, 12, 31), date(2027, 1, 3), date(2027, 1, 4), date(2025, 12, 29)]
    got = pl.DataFrame({"d": days}).select(indicators.semaine_expr(pl.col("d")))["d"].to_list()
    assert got == ["2026-S45", "2026-S53", "2026-S53", "2027-S01", "2026-S01"]
    assert [indicators.semaine_of(d) for d in days] == got
    assert indicators.days_of_semaine("2026-S45")[0] == D0 and len(indicators.days_of_semaine("2026-S53")) == 7


def test_any_disease_with_a_test_definition(tmp_path, geo_pops):
    geo, pops = geo_pops
    defs_path = tmp_path / "defs.csv"
    defs_path.write_text("disease,loinc_num,method,display_en\nrougeole,21503-8,igm,Measles IgM\n"
                         "rougeole,48508-6,naat,Measles RNA\n")
    defs = indicators.load_test_definitions(defs_path)
    assert indicators.definition_loincs(defs, "rougeole") == ["21503-8", "48508-6"]
    with pytest.raises(KeyError):
        indicators.definition_loincs(defs, "covid19")
    res = results(("a", 0, "POS", "75", 9, "F"), ("a", 0, "NEG", "75", 9, "F"), ("b", 1, "NEG", "92", 39, "M"),
                  ("b", 3, "NEG", "92", 39, "M"), ("c", 2, "POS", "13", None, None), ("a", 30, "POS", "75", 9, "F"))
    days = indicators.person_days(res)
    jours = indicators.day_range(D0, D0 + timedelta(days=30))
    dep = indicators.daily_dep(days, geo, jours, pops)
    assert dep.height == len(jours) * 104 * 11  # 101 départements and the COM 975, 977, 978
    reg = indicators.roll_up(dep, geo, "reg", pops)
    fra = indicators.roll_up(dep, geo, "fra", pops)
    all_ages = fra.filter(pl.col("cl_age90") == 0).select("jour", "P", "T", "P_f", "T_h").filter(pl.col("T") > 0)
    assert all_ages.rows() == [(D0, 1, 1, 1, 0), (D0 + timedelta(days=1), 0, 1, 0, 1),
                               (D0 + timedelta(days=2), 1, 1, 0, 0), (D0 + timedelta(days=3), 0, 1, 0, 1)]
    # région 11 (Île-de-France) holds 75 and 92; its population is the sum of its départements'
    idf = reg.filter((pl.col("reg") == "11") & (pl.col("cl_age90") == 0))
    assert idf["T"].sum() == 3
    assert idf["pop"][0] == pops["dep"].filter(pl.col("dep").is_in(
        geo.filter(pl.col("reg") == "11")["dep"].implode()) & (pl.col("cl_age90") == 0))["pop"].sum()
    # the national population of SpF's SI-DEP file: the 101 départements and the COM 975, 977, 978
    assert fra["pop"].filter(fra["cl_age90"] == 0)[0] == 67_114_995
    # weekly = sums of the days of the ISO week, with rates
    wk = indicators.weekly(fra, "fra").filter(pl.col("cl_age90") == 0)
    s45 = wk.filter(pl.col("semaine") == "2026-S45").row(0, named=True)
    assert (s45["P"], s45["T"]) == (2, 4)
    assert s45["incidence"] == pytest.approx(2 * 100_000 / 67_114_995)
    assert s45["positivity"] == pytest.approx(0.5)
    assert wk.filter(pl.col("semaine") == "2026-S46")["positivity"].to_list() == [None]  # T = 0


def test_sliding_7_day_rates(geo_pops):
    geo, pops = geo_pops
    res = results(*[(f"p{i}", i % 9, "POS" if i % 3 == 0 else "NEG", "75", 29, "F") for i in range(27)])
    days = indicators.person_days(res)
    jours = indicators.day_range(D0, D0 + timedelta(days=8))
    dep = indicators.daily_dep(days, geo, jours, pops).filter((pl.col("dep") == "75") & (pl.col("cl_age90") == 29))
    r = indicators.sliding_7d(dep, "dep", jours, D0)
    assert r["P_7j"].to_list()[:6] == [None] * 6  # the first 6 days have no full window
    p = dep.sort("jour")["P"].to_list()
    t = dep.sort("jour")["T"].to_list()
    for k in (6, 7, 8):
        row = r.filter(pl.col("jour") == jours[k]).row(0, named=True)
        assert row["P_7j"] == sum(p[k - 6:k + 1]) and row["T_7j"] == sum(t[k - 6:k + 1])
        assert row["incidence_7j"] == pytest.approx(row["P_7j"] * 1e5 / row["pop"])
        assert row["screening_rate_7j"] == pytest.approx(row["T_7j"] * 1e5 / row["pop"])
        assert row["positivity_7j"] == pytest.approx(row["P_7j"] / row["T_7j"])


def test_text_cells_cannot_become_formulas_but_numbers_stay_numbers():
    df = pl.DataFrame({"dep": ["=HYPERLINK(\"x\")", "+33", "-cmd", "@SUM(A1)", "75", "\tx"],
                       "P": [-3, 1, 2, 3, 4, 5], "pop": [1.5, 2.0, 3.0, 4.0, 5.0, 6.0]})
    out = exports.neutralise_formulas(df)
    assert out["dep"].to_list() == ["'=HYPERLINK(\"x\")", "'+33", "'-cmd", "'@SUM(A1)", "75", "'\tx"]
    assert out["P"].to_list() == [-3, 1, 2, 3, 4, 5]
    text = exports.csv_bytes(df).decode()
    assert text.splitlines()[1].endswith(";-3;1.5") and text.splitlines()[0] == "dep;P;pop"


def test_age_labels_as_in_spf_files():
    df = pl.DataFrame({"cl_age90": [0, 9, 19, 90]})
    assert df.select(exports.age_label())["cl_age90"].to_list() == ["0", "09", "19", "90"]


def test_complete_weeks_are_those_the_period_holds_entirely():
    # Saturday 2025-11-01 to Monday 2026-01-05 (QA's period): 2025-S44 and 2026-S02 are cut
    weeks = indicators.complete_weeks(date(2025, 11, 1), date(2026, 1, 5))
    assert min(weeks) == "2025-S45" and max(weeks) == "2026-S01" and len(weeks) == 9
    assert "2025-S44" not in weeks and "2026-S02" not in weeks
    assert indicators.complete_weeks(D0, D0 + timedelta(days=6)) == {"2026-S45"}  # Monday to Sunday
    assert indicators.complete_weeks(D0, D0 + timedelta(days=5)) == set()  # Monday to Saturday
    assert indicators.complete_weeks(D0 + timedelta(days=1), D0 + timedelta(days=13)) == {"2026-S46"}



def test_a_test_definition_named_like_an_mdo_disease_counts_its_episodes_as_the_mdo_does():
    """QA recompute F1: hepatitis A added as a test definition counted two P for positives 92 days
    apart (SI-DEP's 60-day episode), one MDO case (its 365 days), and only the P was published."""
    from flows.epi import sidep_episode_days
    from transforms.epi.mdo import load_rules

    rules = load_rules(SEEDS / "mdo_rules.csv")
    assert sidep_episode_days(rules, "hepatite_a") == 365
    assert sidep_episode_days(rules, "covid19") == 60 and sidep_episode_days(rules, "grippe_x") == 60
    res = results(("a", 0, "POS", "75", 39, "F"), ("a", 92, "POS", "75", 39, "F"))
    assert indicators.person_days(res)["positive"].sum() == 2
    assert indicators.person_days(res, sidep_episode_days(rules, "hepatite_a"))["positive"].sum() == 1
