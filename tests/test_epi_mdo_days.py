"""marts.mdo_weekly says how many days of each week the data cover (QA, MEDIUM).

The published MDO files keep complete weeks only, but the mart showed the first and last weeks of
the data (the current week still running) with counts that looked like full weeks. Each row now
has ``days``: the days of its ISO week between the first and the last collection day of the
current results, the period the weekly files use; a later delivery that moves the period rewrites
the weeks whose days change, even when their cases do not, and a mart written before the column
existed is rewritten whole by the next run.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest

from flows import epi
from tests.epi_support import run_steps
from tests.helpers import HEADER, MAPPING_HEADER, line, nir, query
from transforms.epi import indicators, mdo
from warehouse import catalog_epi as ce

LAB = "labo_days"
S02, S03, S04 = "2026-S02", "2026-S03", "2026-S04"  # Mon 5, 12 and 19 January 2026


def _result(req: str, name: str, day: str, code: str = "ROUG", result: str = "Positif") -> str:
    label, unit = {"ROUG": ("IgM rougeole", ""), "GLY": ("Glycémie", "mmol/L")}[code]
    return line(N_DEMANDE=req, NIR="", NOM=name, PRENOM="Léa", DATE_NAISSANCE="03/04/1990", CODE_POSTAL="75011",
                CODE_ANALYSE=code, LIBELLE_ANALYSE=label, RESULTAT=result, UNITE=unit, VALEURS_REFERENCE="",
                DATE_PRELEVEMENT=f"{day} 09:00", DATE_RECEPTION=f"{day} 10:00", DATE_VALIDATION=f"{day} 18:00")


def _deliver(home: Path, name: str, *lines: str) -> None:
    (home / "landing" / LAB / name).write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")


def _home(tmp_path: Path) -> Path:
    """Measles results collected from Wednesday 7 to Tuesday 20 January 2026: the data start inside
    S02 (5 days: Wednesday to Sunday), hold S03 whole and end inside S04 (Monday and Tuesday)."""
    home = tmp_path / "home"
    (home / "mappings").mkdir(parents=True)
    (home / "mappings" / f"{LAB}.csv").write_text(
        MAPPING_HEADER + "ROUG,IgM rougeole,,,21503-8,,\nGLY,Glycémie,,,2345-7,,\n", encoding="utf-8")
    (home / "landing" / LAB).mkdir(parents=True)
    _deliver(home, f"{LAB}_20260121.csv",
             _result("R1", "Alpha", "07/01/2026"),
             _result("R2", "Bravo", "15/01/2026", result="Négatif"),
             _result("R3", "Charlie", "20/01/2026"))
    return home


def _days(ctx) -> dict[str, int]:
    """{semaine: days} of marts.mdo_weekly; each week has one value on all its rows."""
    got = ctx.wh.read(ce.MDO_WEEKLY).group_by("semaine").agg(pl.col("days").unique())
    assert all(len(d) == 1 for d in got["days"].to_list()), got
    return {w: d[0] for w, d in got.iter_rows()}


def _cases(ctx) -> dict[str, int]:
    got = ctx.wh.read(ce.MDO_WEEKLY).filter(pl.col("mdo_id") == "rougeole").group_by("semaine").agg(
        pl.col("cases").sum())
    return dict(got.iter_rows())


def _rewritten(ctx, run_id: str) -> set[str]:
    log = ctx.wh.read(ce.EPI_REVISIONS).filter((pl.col("run_id") == run_id)
                                              & (pl.col("table_name") == ce.MDO_WEEKLY.qualified))
    return {p.removeprefix("semaine=") for p in log["partition"].to_list()}


# --------------------------------------------------------------------------------------------
# the day count
# --------------------------------------------------------------------------------------------
def test_week_days_counts_the_days_of_the_week_inside_the_period():
    wed, tue = date(2026, 1, 7), date(2026, 1, 20)
    assert [indicators.week_days(w, wed, tue) for w in ("2026-S01", S02, S03, S04, "2026-S05")] == [0, 5, 7, 2, 0]
    assert indicators.week_days(S03, date(2026, 1, 14), date(2026, 1, 14)) == 1
    # a complete week (the weekly files' notion) is exactly one of 7 days, whatever the period
    for start in range(0, 9):
        for length in range(0, 23):
            first = date(2025, 12, 27) + timedelta(days=start)
            last = first + timedelta(days=length)
            weeks = {indicators.semaine_of(first + timedelta(days=k)) for k in range(length + 1)}
            assert indicators.complete_weeks(first, last) == {
                w for w in weeks if indicators.week_days(w, first, last) == 7}, (first, last)


def test_the_weekly_grid_carries_the_days_of_each_week():
    cases = pl.DataFrame({"mdo_id": ["rougeole"], "semaine": [S02], "dep": ["75"]})
    w = mdo.weekly_cases(cases, ["75", "13"], [S02, S03, S04], ["rougeole", "legionellose"],
                         (date(2026, 1, 7), date(2026, 1, 20)))
    assert w.columns == ce.MDO_WEEKLY.schema.names()
    assert dict(w.select("semaine", "days").unique().iter_rows()) == {S02: 5, S03: 7, S04: 2}
    assert w.height == 2 * 3 * 2 and w["cases"].sum() == 1


def test_the_catalog_describes_the_column():
    days = next(c for c in ce.MDO_WEEKLY.columns if c.name == "days")
    assert "7 for a complete week" in days.description
    assert "days = 7" in ce.MDO_WEEKLY.description


# --------------------------------------------------------------------------------------------
# end to end, with later deliveries
# --------------------------------------------------------------------------------------------
def test_partial_weeks_have_fewer_days_and_a_later_delivery_completes_them(tmp_path):
    home = _home(tmp_path)
    ctx, refs = run_steps(home, "run-1")
    epi.publish_epi(ctx, refs)
    assert _days(ctx) == {S02: 5, S03: 7, S04: 2}
    assert _cases(ctx) == {S02: 1, S03: 0, S04: 1}

    # a negative measles test on Sunday 25 January: S04 is complete now, its cases are unchanged
    _deliver(home, f"{LAB}_20260126.csv", _result("R4", "Delta", "25/01/2026", result="Négatif"))
    ctx, refs = run_steps(home, "run-2")
    second = epi.publish_epi(ctx, refs)
    assert _days(ctx) == {S02: 5, S03: 7, S04: 7}
    assert _cases(ctx) == {S02: 1, S03: 0, S04: 1}
    assert second["mdo"]["weeks"] == [S04] and _rewritten(ctx, "run-2") == {S04}

    # nothing new: nothing rewritten (the day check does not rewrite a week whose days stand)
    third = epi.publish_epi(ctx, refs)
    assert third["mdo"]["weeks"] == [] and third["partitions_rewritten"] == 0

    # the period is that of every current result, whatever its test (the one the weekly files
    # use): a glucose on Tuesday 6 January gives S02 its Tuesday
    _deliver(home, f"{LAB}_20260127.csv", _result("G1", "Echo", "06/01/2026", code="GLY", result="5,1"))
    ctx, refs = run_steps(home, "run-4")
    fourth = epi.publish_epi(ctx, refs)
    assert _days(ctx) == {S02: 6, S03: 7, S04: 7}
    assert fourth["mdo"]["weeks"] == [S02] and _rewritten(ctx, "run-4") == {S02}

    # the MDO files keep exactly the weeks of 7 days
    issue = epi.export_publication(ctx, refs, issue_date="2026-01-28")
    for name in ("mdo-heb-dep.csv", "mdo-heb-fra.csv"):
        published = pl.read_csv(Path(issue["folder"]) / name, separator=";", infer_schema=False)
        assert set(published["semaine"].to_list()) == {S03, S04}, name


def test_a_mart_written_before_the_column_is_rewritten_whole_by_the_next_run(tmp_path):
    """Files of marts.mdo_weekly written by the earlier code have no days: the views read it as
    null, and the next run rewrites every week with its days."""
    from warehouse.views import build_views

    home = _home(tmp_path)
    ctx, refs = run_steps(home, "run-1")
    epi.publish_epi(ctx, refs)
    fresh = ctx.wh.read(ce.MDO_WEEKLY).sort(list(ce.MDO_WEEKLY.key))
    files = ctx.wh.files(ce.MDO_WEEKLY)
    assert len(files) == 3
    for f in files:  # as the earlier code wrote them
        df = pl.read_parquet(f).drop("days")
        f.unlink()
        df.write_parquet(f)
    assert all("days" not in pl.read_parquet_schema(f) for f in ctx.wh.files(ce.MDO_WEEKLY))

    build_views(ctx.wh)  # the view still works, days null
    got = query(home, "SELECT count(*) AS n, count(days) AS d FROM marts.mdo_weekly")
    assert got.row(0) == (fresh.height, 0)

    ctx, refs = run_steps(home, "run-2")
    again = epi.publish_epi(ctx, refs)
    assert again["mdo"]["weeks"] == [S02, S03, S04] and _rewritten(ctx, "run-2") == {S02, S03, S04}
    assert ctx.wh.read(ce.MDO_WEEKLY).sort(list(ce.MDO_WEEKLY.key)).equals(fresh)
    assert all("days" in pl.read_parquet_schema(f) for f in ctx.wh.files(ce.MDO_WEEKLY))
    build_views(ctx.wh)
    got = query(home, "SELECT semaine, min(days) AS lo, max(days) AS hi FROM marts.mdo_weekly "
                      "GROUP BY semaine ORDER BY semaine")
    assert got.rows() == [(S02, 5, 5), (S03, 7, 7), (S04, 2, 2)]
    comment = query(home, "SELECT comment FROM duckdb_columns() WHERE schema_name = 'marts' "
                          "AND table_name = 'mdo_weekly' AND column_name = 'days'")["comment"][0]
    assert comment and "7 for a complete week" in comment
    assert epi.publish_epi(ctx, refs)["partitions_rewritten"] == 0


@pytest.mark.parametrize("delivered", ["20/01/2026", "25/01/2026"])
def test_the_last_week_is_partial_until_its_sunday(tmp_path, delivered):
    """The current week, still running (data up to Tuesday), is partial; up to Sunday, complete."""
    home = tmp_path / "home"
    (home / "mappings").mkdir(parents=True)
    (home / "mappings" / f"{LAB}.csv").write_text(MAPPING_HEADER + "ROUG,IgM rougeole,,,21503-8,,\n",
                                                  encoding="utf-8")
    (home / "landing" / LAB).mkdir(parents=True)
    _deliver(home, f"{LAB}_x.csv", _result("R1", "Alpha", "19/01/2026"), _result("R2", "Bravo", delivered))
    ctx, refs = run_steps(home)
    epi.publish_epi(ctx, refs)
    assert _days(ctx) == {S04: 2 if delivered == "20/01/2026" else 7}


def _oru(i: int, specimen: str) -> str:
    code = "MENPCR^Méningocoque PCR^L^49671-1^^LN"
    return "\r".join((
        f"MSH|^~\\&|LIS|330028762|BIOLAKE|BIOLAKE|20261120120000||ORU^R01^ORU_R01|SP{i:05d}|P|2.5|||||FRA|UNICODE UTF-8",
        f"PID|1||{nir(f'28001751115{i:02d}')}^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS||SPEC{chr(65 + i)}^ANNE"
        "^^^^^L||19800101|F|||^^^^75011^^H",
        f"ORC|RE|S{i}|S{i}",
        f"OBR|1|S{i}|S{i}|{code}|||20261116100000|||||||20261116120000|{specimen}",
        f"OBX|1|ST|{code}||Positif||||||F||||||||20261116180000",
    )) + "\r"


def test_a_positive_whose_specimen_is_read_as_neither_is_listed_and_warned_qa_regr2_f2(prefect_harness, tmp_path):
    """QA regr2 F2: a meningococcus PCR "in Specimen" from 'Prélèvement sanguin' was in no case and
    nothing said so. Blood is now read as sterile (a case); a wording still read as neither
    ('Prélèvement divers') is listed in quality.mdo_unread_specimens and the gate warns, naming the
    lab and the test; a throat swab is known not sterile: no case, no warning."""
    from flows.pipeline import pipeline

    home = tmp_path / "home"
    lab = home / "landing" / "labo_delta"
    lab.mkdir(parents=True)
    specimens = ["Prélèvement sanguin", "Prélèvement divers", "Gorge", "LCS"]
    (lab / "men.hl7").write_text("".join(_oru(i, s) for i, s in enumerate(specimens)), encoding="utf-8")
    summary = pipeline(home=str(home))
    cases = query(home, "SELECT f.specimen FROM marts.mdo_cases m JOIN marts.fct_lab_results f USING (person_key) "
                        "WHERE m.mdo_id = 'iim' ORDER BY 1")
    assert cases["specimen"].to_list() == ["LCS", "Prélèvement sanguin"]
    unread = query(home, "SELECT source, mdo_id, loinc_code, specimen, counted, n_results "
                         "FROM quality.mdo_unread_specimens")
    assert unread.rows() == [("labo_delta", "iim", "49671-1", "Prélèvement divers", False, 1)]
    named = [w for w in summary["quality_gate"]["warnings"] if w.startswith("mdo_unread_specimen:")]
    assert len(named) == 1 and all(s in named[0] for s in ("labo_delta", "iim", "49671-1")), named
    assert "SPEC" not in named[0] and "ANNE" not in named[0]
