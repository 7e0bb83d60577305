"""`biolake reprocess`: loaded files read again by the current parsers and checks (flows.steps.mark_reprocess,
the pipeline's discover and process steps). Before it, a parser fix never reached the files loaded before
the upgrade: runs re-code earlier files, they never read them again (QA upgrade: a value read wrong by an
earlier parser stayed wrong for good).

The "earlier parser" is the real CSV parser with a bug added for the first run (collection times read a
day late, one row's sex lost): after `reprocess`, the warehouse must be exactly what a fresh build with
the current parser gives. Embedded Prefect (test harness), temporary homes only."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from flows import steps
from flows.settings import Settings
from tests.helpers import HEADER, assert_same_tables, copy_home, line, nir, query, snapshot
from warehouse import catalog as cat

LAB = "labo_alpha"
PEOPLE = [("1610509122201", "BERTRAND", "Benoit", "01/05/1961", "M"),
          ("2910509122202", "CHARPENTIER", "Chloe", "02/05/1991", "F"),
          ("1660622278305", "SIMON", "Sami", "03/06/1966", "M")]


def covid(req: str, who: int, day: int, value: str, status: str = "F", hour: str = "08:30") -> str:
    body, family, first, born, sex = PEOPLE[who]
    when = f"{day:02d}/11/2026"
    return line(FINESS="690001235", N_DEMANDE=req, NIR=nir(body), NOM=family, PRENOM=first, DATE_NAISSANCE=born,
                SEXE=sex, CODE_POSTAL="09000", DATE_PRELEVEMENT=f"{when} {hour}", DATE_RECEPTION=f"{when} 10:00",
                DATE_VALIDATION=f"{when} 18:00", CODE_ANALYSE="COVPCR", LIBELLE_ANALYSE="SARS-CoV-2 RT-PCR",
                RESULTAT=value, UNITE="", VALEURS_REFERENCE="", STATUT=status)


def landing(home: Path) -> None:
    folder = home / "landing" / LAB
    folder.mkdir(parents=True)
    files = {
        "day02.csv": [covid("R1", 0, 2, "Positif"), covid("R2", 1, 2, "Négatif"),
                      line(N_DEMANDE="G1", STATUT="Z"), line(N_DEMANDE="G2")],
        "day03.csv": [covid("R3", 2, 3, "Positif"), covid("R2", 1, 2, "Positif", status="C")],
        "day04.csv": [covid("R4", 0, 4, "Positif"), line(N_DEMANDE="G1", DATE_PRELEVEMENT="02/11/2026 08:30")],
    }
    for name, rows in files.items():
        (folder / name).write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")


def buggy_parser(monkeypatch) -> None:
    """The CSV parser of an imaginary earlier version: collection times a day late, first row's sex lost."""
    real = steps.get_parser

    def old(fmt):
        parse = real(fmt)

        def wrong(*args, **kwargs):
            for chunk in parse(*args, **kwargs):
                rows = chunk.rows.with_columns(pl.col("collected_at") + pl.duration(days=1))
                rows = rows.with_columns(pl.when(pl.col("line_no") == 2).then(None).otherwise(pl.col("sex"))
                                         .alias("sex"))
                yield type(chunk)(rows=rows, rejects=chunk.rejects, units_seen=chunk.units_seen)
        return wrong

    monkeypatch.setattr(steps, "get_parser", old)


def run(home: Path) -> dict:
    from flows.pipeline import pipeline

    return pipeline(home=str(home), reports=False)


@pytest.fixture(scope="module")
def built(prefect_harness, tmp_path_factory):
    """(home loaded by the buggy parser, home built afresh by the current one), built once: read-only"""
    base = tmp_path_factory.mktemp("reprocess")
    old, fresh = base / "old", base / "fresh"
    landing(old)
    landing(fresh)
    with pytest.MonkeyPatch.context() as m:
        buggy_parser(m)
        run(old)
    run(fresh)
    return old, fresh


@pytest.fixture
def homes(built, tmp_path):
    """A private copy of the home the buggy parser loaded, and the fresh build (read-only)."""
    old, fresh = built
    return copy_home(old, tmp_path / "old"), fresh


def test_reprocess_gives_what_a_fresh_build_gives(built, homes):
    old, fresh = homes
    before = snapshot(built[0])  # the copy has no DuckDB files until its next run
    want = snapshot(fresh)
    assert not before["marts.fct_lab_results"].equals(want["marts.fct_lab_results"])  # the bug shows
    assert not before["marts.sidep_daily"].equals(want["marts.sidep_daily"])
    log_before = steps.Context.create(Settings(home=old), "t").wh.read(cat.FILE_LOG).sort("path")

    ctx = steps.Context.create(Settings(home=old), "reprocess")
    got = steps.mark_reprocess(ctx)
    assert got == {"marked": [f"{LAB}/day02.csv", f"{LAB}/day03.csv", f"{LAB}/day04.csv"], "missing": [],
                   "purged": []}
    summary = run(old)
    assert summary["files_reprocessed"] == 3 and summary["files_new"] == 3
    after = snapshot(old)
    assert_same_tables(after, want)
    # read once: a later run reads nothing again
    assert steps.reprocess_pending(ctx) == []
    assert run(old)["files_new"] == 0
    # the file log keeps each file's first registration and place in the delivery order
    log_after = ctx.wh.read(cat.FILE_LOG).sort("path")
    assert log_after.select("log_id", "file_id", "file_seq", "registered_at", "status").equals(
        log_before.select("log_id", "file_id", "file_seq", "registered_at", "status"))
    assert (log_after["run_id"] != log_before["run_id"]).all()


def test_one_lab_only_and_files_changed_or_gone_are_left_as_loaded(homes, tmp_path):
    old, _ = homes
    beta = old / "landing" / "labo_beta"
    beta.mkdir()
    (beta / "b.csv").write_text("\n".join([HEADER, line(N_DEMANDE="B1", FINESS="690001235")]) + "\n")
    run(old)
    (old / "landing" / LAB / "day03.csv").unlink()
    with (old / "landing" / LAB / "day04.csv").open("a") as f:  # changed since loaded: another delivery
        f.write(line(N_DEMANDE="G9") + "\n")
    ctx = steps.Context.create(Settings(home=old), "reprocess")
    assert steps.mark_reprocess(ctx, ["labo_beta"]) == {"marked": ["labo_beta/b.csv"], "missing": [], "purged": []}
    got = steps.mark_reprocess(ctx, [LAB])
    assert got == {"marked": [f"{LAB}/day02.csv"], "missing": [f"{LAB}/day03.csv", f"{LAB}/day04.csv"],
                   "purged": []}
    summary = run(old)
    # b.csv and day02.csv read again; the changed day04.csv is a new delivery of its own
    assert summary["files_reprocessed"] == 2 and summary["files_new"] == 3
    # day03.csv (gone) keeps what the earlier parser made of it: both results quarantined (its collection
    # times a day late, after their reception), none in the fact table; day02.csv's are read right now
    q = query(old, "SELECT l.path, count(DISTINCT q.result_no) AS n FROM quality.quarantine q "
                   "JOIN quality.file_log l USING (file_id) GROUP BY 1 ORDER BY 1")
    assert q.rows() == [(f"{LAB}/day02.csv", 1), (f"{LAB}/day03.csv", 2), (f"{LAB}/day04.csv", 2)]
    fct = query(old, "SELECT l.path, count(*) AS n FROM marts.fct_lab_results f "
                     "JOIN quality.file_log l USING (file_id) GROUP BY 1 ORDER BY 1")
    assert fct.rows() == [(f"{LAB}/day02.csv", 3), (f"{LAB}/day04.csv", 3), ("labo_beta/b.csv", 1)]


def test_a_file_the_current_code_refuses_no_longer_counts(homes, monkeypatch):
    old, fresh = homes
    from transforms.parsers.base import FileFormatError

    real = steps.get_parser

    def refusing(fmt):
        parse = real(fmt)

        def refuse(path, **kwargs):
            if Path(path).name == "day04.csv":
                raise FileFormatError("UNPARSEABLE_FILE", f"{Path(path).name}: refused by the current parser")
            yield from parse(path, **kwargs)
        return refuse

    monkeypatch.setattr(steps, "get_parser", refusing)
    ctx = steps.Context.create(Settings(home=old), "reprocess")
    steps.mark_reprocess(ctx)
    summary = run(old)
    assert summary["files_failed"] == 1 and summary["files_reprocessed"] == 3
    day04 = ctx.wh.read(cat.FILE_LOG).filter(pl.col("path").str.ends_with("day04.csv"))
    assert day04["status"].to_list() == ["failed"]
    fid = day04["file_id"][0]
    for t in (cat.RAW_RESULTS, cat.STG_RESULTS, cat.STG_RESULTS_CODED, cat.FCT_LAB_RESULTS):
        assert ctx.wh.read(t).filter(pl.col("file_id") == fid).height == 0, t.qualified
    # day04.csv's results (R4 collected on 4 November, G1) are no longer current; the others are as in a
    # fresh build
    current = ("SELECT l.path, f.collected_date, count(*) AS n FROM marts.fct_lab_results f "
               "JOIN quality.file_log l USING (file_id) WHERE f.is_current GROUP BY ALL ORDER BY ALL")
    want = query(fresh, current).rows()
    assert (f"{LAB}/day04.csv", date(2026, 11, 4), 1) in want
    assert query(old, current).rows() == [r for r in want if r[0] != f"{LAB}/day04.csv"]


def test_purged_files_are_not_read_again(homes):
    old, _ = homes
    from flows.privacy import purge_identities

    ctx = steps.Context.create(Settings(home=old), "purge")
    out = purge_identities(ctx, 0, delete_landing=False)
    assert out["files_purged"] == 3
    got = steps.mark_reprocess(ctx)
    assert got["marked"] == [] and len(got["purged"]) == 3
    raw = ctx.wh.read(cat.RAW_RESULTS)
    assert raw["family_name"].is_null().all()
    run(old)
    assert ctx.wh.read(cat.RAW_RESULTS)["family_name"].is_null().all()


def test_cli_reprocess(homes):
    from flows.cli import app

    old, fresh = homes
    runner = CliRunner()
    res = runner.invoke(app, ["reprocess", "--home", str(old), "--lab", "labo_nowhere"])
    assert res.exit_code == 2 and "no file loaded from labo_nowhere" in res.output
    missing = runner.invoke(app, ["reprocess", "--home", str(old.parent / "typo")])
    assert missing.exit_code == 2
    res = runner.invoke(app, ["reprocess", "--home", str(old)])
    assert res.exit_code == 0, res.output
    assert "3 loaded file(s) to read again" in res.output
    assert "3 earlier file(s) read again" in res.output
    assert_same_tables(snapshot(old), snapshot(fresh))
    events = query(old, "SELECT kind, details FROM quality.audit_events WHERE kind = 'reprocess_requested'")
    assert events.height == 1 and '"files": 3' in events["details"][0]


def test_a_run_names_the_files_an_earlier_parser_read(homes):
    old, _ = homes
    ctx = steps.Context.create(Settings(home=old), "t")
    assert steps.parsed_earlier(ctx) == []
    day02 = ctx.wh.read(cat.FILE_LOG).filter(pl.col("path").str.ends_with("day02.csv"))["file_id"][0]
    marker = ctx.wh.root / "raw" / "_ingested" / f"{day02}.json"
    record = json.loads(marker.read_text())
    marker.write_text(json.dumps(record | {"parser_version": "3"}))  # as an earlier biolake left it
    assert steps.parsed_earlier(ctx) == [day02]
    assert run(old)["files_parsed_earlier"] == 1
    steps.mark_reprocess(ctx, [LAB])
    summary = run(old)
    assert summary["files_reprocessed"] == 3 and summary["files_parsed_earlier"] == 0


def test_reprocess_of_one_lab_re_codes_the_others_without_claiming_a_mapping_change(clean_run, tmp_path):
    """QA ops F5: the re-coding of every other file is reprocess's own; it was printed, and audited
    as ``mappings_changed``, as if an operator had changed the mappings."""
    from flows.cli import app

    home = copy_home(clean_run[0], tmp_path / "home")
    state = home / "warehouse" / "state.json"
    before = json.loads(state.read_text())["mappings_fingerprint"]
    res = CliRunner().invoke(app, ["reprocess", "--home", str(home), "--lab", LAB])
    assert res.exit_code == 0, res.output
    assert "re-coded: as biolake reprocess asked" in res.output and "mappings or qualitative" not in res.output
    events = query(home, "SELECT kind FROM quality.audit_events")["kind"].to_list()
    assert "reprocess_requested" in events and "mappings_changed" not in events
    after = json.loads(state.read_text())
    assert after["mappings_fingerprint"] == before and after.get("recode_all") is None
