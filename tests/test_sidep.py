"""SI-DEP persons P and T: exact small scenarios for every rule of the definition."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import polars as pl

from transforms.epi.sidep import person_days, sidep_daily

D0 = date(2026, 11, 2)


def results(*rows):
    """rows: (person, day offset, class, dep, cl_age90, sex)."""
    recs = []
    for i, (p, d, cls, dep, age, sex) in enumerate(rows):
        day = D0 + timedelta(days=d)
        recs.append({"person_key": p, "collected_date": day, "collected_at": datetime.combine(day, datetime.min.time()),
                     "dep": dep, "cl_age90": age, "sex": sex, "file_seq": 1, "line_no": i + 2, "result_class": cls})
    return pl.DataFrame(recs, schema={"person_key": pl.Utf8, "collected_date": pl.Date, "collected_at": pl.Datetime("us"),
                                      "dep": pl.Utf8, "cl_age90": pl.Int64, "sex": pl.Utf8, "file_seq": pl.Int64,
                                      "line_no": pl.Int64, "result_class": pl.Utf8})


def counts(res, deps=("75", "13")):
    daily = sidep_daily(person_days(res), list(deps))
    return {(r["jour"], r["dep"], r["cl_age90"]): (r["P_f"], r["P_h"], r["P"], r["T_f"], r["T_h"], r["T"])
            for r in daily.iter_rows(named=True) if r["T"] > 0}


def test_positive_wins_over_negative_the_same_day():
    c = counts(results(("a", 0, "NEG", "75", 29, "F"), ("a", 0, "POS", "75", 29, "F")))
    assert c == {(D0, "75", 29): (1, 0, 1, 1, 0, 1), (D0, "75", 0): (1, 0, 1, 1, 0, 1)}


def test_negatives_on_two_days_count_twice_and_twice_same_day_once():
    c = counts(results(("a", 0, "NEG", "75", 29, "M"), ("a", 0, "NEG", "75", 29, "M"), ("a", 3, "NEG", "75", 29, "M")))
    assert c[(D0, "75", 0)] == (0, 0, 0, 0, 1, 1)
    assert c[(D0 + timedelta(days=3), "75", 0)] == (0, 0, 0, 0, 1, 1)


def test_episode_of_60_days():
    # positive day 0, repeat at 59 (same episode: neither P nor T), new episode at 60 after the
    # last COUNTED positive (day 0), then a repeat at 60+59 = 119 is inside the second episode
    res = results(("a", 0, "POS", "75", 29, "F"), ("a", 59, "POS", "75", 29, "F"),
                  ("a", 60, "POS", "75", 29, "F"), ("a", 119, "POS", "75", 29, "F"),
                  ("a", 120, "POS", "75", 29, "F"), ("a", 30, "NEG", "75", 29, "F"))
    c = counts(res)
    got = {k[0]: v for k, v in c.items() if k[2] == 0}
    assert got == {
        D0: (1, 0, 1, 1, 0, 1),
        D0 + timedelta(days=30): (0, 0, 0, 1, 0, 1),  # a negative inside an episode still counts in T
        D0 + timedelta(days=60): (1, 0, 1, 1, 0, 1),
        D0 + timedelta(days=120): (1, 0, 1, 1, 0, 1),
    }


def test_invalid_results_count_nowhere_and_unknowns_go_to_all_ages_and_totals():
    res = results(("a", 0, "INVALID", "75", 29, "F"), ("b", 0, "POS", "75", None, "F"),
                  ("c", 0, "NEG", "13", 39, None))
    c = counts(res)
    assert c == {
        (D0, "75", 0): (1, 0, 1, 1, 0, 1),  # b: unknown age, all-ages row only
        (D0, "13", 39): (0, 0, 0, 0, 0, 1),  # c: unknown sex, in T but not T_f/T_h
        (D0, "13", 0): (0, 0, 0, 0, 0, 1),
    }


def test_grid_is_complete_with_zeros():
    daily = sidep_daily(person_days(results(("a", 0, "NEG", "75", 29, "F"), ("b", 2, "NEG", "75", 29, "F"))),
                        ["13", "75"])
    assert daily.height == 3 * 2 * 11
    assert daily["T"].sum() == 4  # two persons, each in their class and in the all-ages row


def test_an_age_unknown_on_the_counted_result_is_taken_from_the_same_days_other_result():
    """QA regr2 F9 (LOW): the positive had a partial birth date (no age), the negative of the same
    person and day the full one (71): the person counted in the all-ages row only. The age is
    known that day: the person counts in class 79 as well; another day's age is not borrowed."""
    c = counts(results(("a", 0, "POS", "75", None, "F"), ("a", 0, "NEG", "75", 79, "F"),
                       ("b", 0, "NEG", "75", None, "M"), ("b", 1, "NEG", "75", 39, "M")))
    assert c == {(D0, "75", 79): (1, 0, 1, 1, 0, 1), (D0, "75", 0): (1, 0, 1, 1, 1, 2),
                 (D0 + timedelta(days=1), "75", 39): (0, 0, 0, 0, 1, 1),
                 (D0 + timedelta(days=1), "75", 0): (0, 0, 0, 0, 1, 1)}
    days = person_days(results(("a", 0, "POS", "75", None, "F"), ("a", 0, "NEG", "75", 79, "F")))
    assert days.select("cl_age90", "positive").rows() == [(79, True)]


def test_a_departement_or_sex_unknown_on_the_counted_result_is_taken_from_the_same_days_other_result():
    """QA numbers F1 (HIGH), F2 (MEDIUM): a positive without postal code beside the same person's
    negative of that day in 75 counted in no row, France included; a positive with sex unknown
    beside a negative stating F counted in neither P_f nor T_f. Both are known that day."""
    c = counts(results(("a", 0, "POS", None, 29, "F"), ("a", 0, "NEG", "75", 29, "F"),
                       ("b", 0, "POS", "75", 39, None), ("b", 0, "NEG", "75", 39, "F"),
                       # another day's value is not borrowed
                       ("c", 0, "NEG", None, 49, None), ("c", 1, "NEG", "13", 49, "M")))
    assert c == {(D0, "75", 29): (1, 0, 1, 1, 0, 1), (D0, "75", 39): (1, 0, 1, 1, 0, 1),
                 (D0, "75", 0): (2, 0, 2, 2, 0, 2),
                 (D0 + timedelta(days=1), "13", 49): (0, 0, 0, 0, 1, 1),
                 (D0 + timedelta(days=1), "13", 0): (0, 0, 0, 0, 1, 1)}
    # two positives of the day, the first (earlier) without postal code: the second gives it
    days = person_days(results(("a", 0, "POS", None, 29, None), ("a", 0, "POS", "13", 29, "M")))
    assert days.select("dep", "sex", "positive").rows() == [("13", "M", True)]


def test_the_counted_results_own_departement_and_sex_win_and_disagreeing_others_are_taken_in_order():
    """The counted result's own département and sex are kept even when another result of the day
    gives others; when it gives none and the others disagree, the first of them in the order that
    chose the counted result (positives, then earliest collection) is taken."""
    days = person_days(results(("a", 0, "NEG", "13", 29, "M"), ("a", 0, "POS", "75", 29, "F")))
    assert days.select("dep", "sex").rows() == [("75", "F")]
    days = person_days(results(("a", 0, "POS", None, 29, None), ("a", 0, "NEG", "13", 29, "M"),
                               ("a", 0, "POS", "69", 29, "F")))
    assert days.select("dep", "sex").rows() == [("69", "F")]  # the other positive before the negative
    days = person_days(results(("a", 0, "NEG", None, 29, None), ("a", 0, "NEG", "13", 29, "M"),
                               ("a", 0, "NEG", "69", 29, "F")))
    assert days.select("dep", "sex").rows() == [("13", "M")]  # same collection time: delivery line order
