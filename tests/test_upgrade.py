"""Warehouses built by earlier code, upgraded by the current one (QA, HIGH).

A small landing is processed once by the current code (the fresh build). Copies of it are then
aged to what earlier code left, and the next run must either upgrade them to what a fresh build
gives, or refuse them before Prefect starts with a one-line error:

- staging, coded and fct written before ``value_comparator`` existed (the earlier parsers read a
  bound such as '<0,5' as no number at all): upgraded; the old rows keep their old reading;
- written before ``observation_sub_id`` and ``observed_at`` (OBX-4, OBX-14): upgraded, both null;
- written before ``link_key`` existed: refused (the key needs the names, which staging never held);
- staging written before identities typed into free text were masked: masked by the next run,
  re-coded and republished, identical to a fresh build.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest

from tests.helpers import HEADER, ROOT, copy_home, line, nir, no_compaction, query
from transforms.identity_text import FLAG, FREE_TEXT_COLUMNS, MASK
from warehouse import catalog as cat

PATIENT_NIR = nir("2800575111001")
RELATIVE_NIR = nir("1750369123002")  # a NIR-shaped number that is not the row's patient's
WHO = {"NIR": PATIENT_NIR, "NOM": "DUPONT", "PRENOM": "Marie", "DATE_NAISSANCE": "12/05/1980"}
PCR = {"CODE_ANALYSE": "PCRCOV", "LIBELLE_ANALYSE": "PCR SARS-CoV-2", "UNITE": "", "VALEURS_REFERENCE": ""}
NIR_COMMENT = f"Positif - NIR du conjoint {RELATIVE_NIR}"
NAME_COMMENT = "Positif, voir commentaire Dupont Marie née le 12/05/1980"
KEY = ["file_id", "result_no"]
UPGRADED = (cat.STG_RESULTS, cat.STG_RESULTS_CODED, cat.FCT_LAB_RESULTS)


def _landing(home: Path) -> None:
    lab = home / "landing" / "labo_up"
    lab.mkdir(parents=True)
    (lab / "extract_1.csv").write_text("\n".join([
        HEADER,
        line(N_DEMANDE="U1", **WHO, **PCR, RESULTAT=NIR_COMMENT),
        line(N_DEMANDE="U2", **WHO, **PCR, RESULTAT=NAME_COMMENT),
        line(N_DEMANDE="U3", **WHO, CODE_ANALYSE="GLY", RESULTAT="<0,5", VALEURS_REFERENCE="3,9-5,8"),
        line(N_DEMANDE="U4", **WHO, CODE_ANALYSE="GLY", RESULTAT="5,4"),
    ]) + "\n", encoding="utf-8")
    (lab / "extract_2.csv").write_text("\n".join([
        HEADER,
        line(N_DEMANDE="V1", NIR=nir("1550999000117"), NOM="Bernard", PRENOM="Luc", **PCR, RESULTAT="Négatif"),
        line(N_DEMANDE="V2", NIR=nir("1550999000117"), NOM="Bernard", PRENOM="Luc", CODE_ANALYSE="GLY",
             RESULTAT="6,1"),
    ]) + "\n", encoding="utf-8")
    maps = home / "mappings"
    maps.mkdir(parents=True)
    (maps / "labo_up.csv").write_text("local_code,local_label,unit,specimen,loinc_num,valid_from,valid_to\n"
                                      "PCRCOV,PCR SARS-CoV-2,,,94500-6,,\n", encoding="utf-8")


@pytest.fixture(scope="module")
def built(prefect_harness, tmp_path_factory) -> Path:
    """The landing processed once by the current code: the fresh build every upgrade is compared with."""
    from flows.pipeline import pipeline

    home = tmp_path_factory.mktemp("upgrade") / "home"
    _landing(home)
    with no_compaction():  # the tests rewrite its partitions as earlier code, which never packed, wrote them
        pipeline(home=str(home))
    return home


def _wh(home: Path):
    from warehouse.store import Warehouse

    return Warehouse(home)


def _ctx(home: Path, run_id: str = "test"):
    from flows import steps
    from flows.settings import Settings

    return steps.Context.create(Settings(home=home), run_id)


def _first_file(home: Path) -> str:
    log = _wh(home).read(cat.FILE_LOG)
    return log.filter(pl.col("path") == "labo_up/extract_1.csv")["file_id"][0]


def _rewrite(files: list[Path], change) -> None:
    for f in files:
        df = change(pl.read_parquet(f))
        f.unlink()  # fct files may be hard links to coded ones
        df.write_parquet(f)


def _edit_state(home: Path, **changes) -> None:
    p = home / "warehouse" / "state.json"
    state = json.loads(p.read_text())
    for k, v in changes.items():
        if v is None:
            state.pop(k, None)
        else:
            state[k] = v
    p.write_text(json.dumps(state))


def _tables(home: Path) -> dict[str, pl.DataFrame]:
    return {t.qualified: _wh(home).read(t).sort(KEY) for t in UPGRADED}


def _biolake(*args: str, home: Path) -> subprocess.CompletedProcess:
    """The `biolake` command in its own process (the one-line errors are main()'s); wide enough that
    the message is not wrapped."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_HOME")}
    env["COLUMNS"] = "2000"
    return subprocess.run([sys.executable, "-m", "flows.cli", *args, "--home", str(home)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def _one_line_error(out: subprocess.CompletedProcess) -> str:
    text = out.stdout + out.stderr
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert out.returncode == 2 and "Traceback" not in text and len(lines) == 1, text
    assert lines[0].startswith("error: "), text
    return lines[0]


def _files_and_times(home: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(home)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in (home / "warehouse").rglob("*") if p.is_file()}


# --------------------------------------------------------------------------------------------
# value_comparator: added as null, the old rows keep their old reading
# --------------------------------------------------------------------------------------------
def age_to_before_comparators(home: Path) -> None:
    """raw, staging, coded and fct as the code before value_comparator wrote them: no such column,
    and a bound ('<0,5') read as no number, a text (value_type ST); its coding fingerprint and
    format check were others."""
    wh = _wh(home)
    bound = pl.col("value_comparator").is_not_null()

    def before(df: pl.DataFrame) -> pl.DataFrame:
        cols = [pl.when(bound).then(None).otherwise(pl.col("value_num")).alias("value_num"),
                pl.when(bound).then(pl.lit("ST")).otherwise(pl.col("value_type")).alias("value_type")]
        cols += [pl.when(bound).then(None).otherwise(pl.col(c)).alias(c)
                 for c in ("value_canonical",) if c in df.columns]
        return df.with_columns(cols).drop("value_comparator")

    for t in (cat.RAW_RESULTS, *UPGRADED):
        _rewrite(wh.files(t), before)
    _edit_state(home, mappings_fingerprint="fingerprint of the earlier code", staging_format=None)


def test_a_warehouse_from_before_value_comparator_is_upgraded(built, tmp_path):
    from flows.pipeline import pipeline
    from flows.privacy import purge_identities
    from warehouse.analyst import build_analyst_db

    home = copy_home(built, tmp_path / "home")
    age_to_before_comparators(home)
    aged = _tables(home)
    assert all("value_comparator" not in pl.read_parquet_schema(f) for t in UPGRADED for f in _wh(home).files(t))
    # QA: epi export and analyst-db died with internal errors; now one line saying what to do
    for cmd in (("epi", "export"), ("analyst-db",)):
        assert "`biolake run` first" in _one_line_error(_biolake(*cmd, home=home))

    pipeline(home=str(home))
    got, fresh = _tables(home), _tables(built)
    for t in UPGRADED:
        assert all(set(pl.read_parquet_schema(f)) == set(t.schema) for f in _wh(home).files(t)), t.qualified
        g, f = got[t.qualified], fresh[t.qualified]
        is_bound = f["value_comparator"].is_not_null()
        assert is_bound.sum() == 1  # U3, '<0,5'
        # every other row is what a fresh build gives
        assert g.filter(~is_bound).equals(f.filter(~is_bound)), t.qualified
        # the bound keeps its old reading: no number, no comparator (a fresh build gives '<' 0.5)
        old = g.filter(is_bound).row(0, named=True)
        assert (old["value_raw"], old["value_num"], old["value_comparator"], old["value_type"]) == (
            "<0,5", None, None, "ST"), t.qualified
        assert f.filter(is_bound).select("value_comparator", "value_num").row(0) == ("<", 0.5)
        assert old["value_num"] == aged[t.qualified].filter(pl.col("value_raw") == "<0,5")["value_num"][0]
    # the raw layer keeps its files; its view reads the missing column as null
    assert query(home, "SELECT count(*) AS n FROM raw.results WHERE value_comparator IS NOT NULL")["n"][0] == 0
    assert build_analyst_db(_wh(home)).exists()
    # a purge rewrites those raw partitions (it once failed on the missing column)
    done = purge_identities(_ctx(home, "purge"), 0, delete_landing=False)
    assert done["files_purged"] == 2
    assert all("value_comparator" in pl.read_parquet_schema(f) for f in _wh(home).files(cat.RAW_RESULTS))
    # the check costs a schema read per partition until a run finds nothing left to migrate
    from flows import steps

    state = json.loads((home / "warehouse" / "state.json").read_text())
    assert "staging_format" not in state
    assert steps.migrate_staging(_ctx(home)) == []
    assert json.loads((home / "warehouse" / "state.json").read_text())["staging_format"] == steps.CODING_FORMAT


# --------------------------------------------------------------------------------------------
# observation_sub_id, observed_at: added as null (QA fmt F1)
# --------------------------------------------------------------------------------------------
def test_a_warehouse_from_before_sub_ids_and_own_times_is_upgraded(built, tmp_path):
    """Partitions written before observation_sub_id and observed_at, by code whose state already
    recorded every partition current (staging_format "5"): the next run adds both columns as null
    (the earlier parsers stated none: the old rows keep their reading) and publishes every file."""
    from flows import steps
    from flows.pipeline import pipeline
    from flows.privacy import purge_identities, read_audit

    new = ["observation_sub_id", "observed_at"]
    home = copy_home(built, tmp_path / "home")
    wh = _wh(home)
    for t in (cat.RAW_RESULTS, *UPGRADED):
        _rewrite(wh.files(t), lambda df: df.drop(new))
    _edit_state(home, mappings_fingerprint="fingerprint of the earlier code", staging_format="5")
    assert steps.CODING_FORMAT != "5"
    out = pipeline(home=str(home))
    # an upgrade, said so, and no mapping change in the audit trail (QA regr: it was both)
    assert out["recoded_because"] == "upgrade" and out["files_recoded"] > 0, out
    assert "mappings_changed" not in read_audit(_wh(home))["kind"].to_list()
    got, fresh = _tables(home), _tables(built)
    for t in UPGRADED:
        assert all(set(pl.read_parquet_schema(f)) == set(t.schema) for f in _wh(home).files(t)), t.qualified
        assert got[t.qualified].equals(fresh[t.qualified]), t.qualified
    assert query(home, "SELECT count(*) AS n FROM raw.results WHERE observed_at IS NOT NULL")["n"][0] == 0
    assert query(home, "SELECT count(*) AS n FROM marts.fct_lab_results WHERE observation_sub_id IS NULL")["n"][0] > 0
    assert purge_identities(_ctx(home, "purge"), 0, delete_landing=False)["files_purged"] == 2
    assert all(set(new) <= set(pl.read_parquet_schema(f)) for f in _wh(home).files(cat.RAW_RESULTS))


# --------------------------------------------------------------------------------------------
# link_key: refused before Prefect starts
# --------------------------------------------------------------------------------------------
def test_a_warehouse_from_before_link_key_is_refused_with_one_line(built, tmp_path):
    from flows import steps
    from flows.settings import WarehouseNeedsRebuild

    home = copy_home(built, tmp_path / "home")
    shutil.rmtree(home / "prefect", ignore_errors=True)
    for t in UPGRADED:
        _rewrite(_wh(home).files(t), lambda df: df.drop("link_key"))
    _edit_state(home, staging_format=None)
    before = _files_and_times(home)

    out = _one_line_error(_biolake("run", home=home))
    assert "staging.stg_results (2 of 2 files)" in out and "marts.fct_lab_results (2 of 2 files)" in out
    assert "lack link_key" in out and "fresh home from its landing files with the same BIOLAKE_PSEUDONYM_SECRET" in out
    assert not (home / "prefect").exists()  # refused before Prefect started
    for cmd in (("epi", "export"), ("analyst-db",)):
        assert _one_line_error(_biolake(*cmd, home=home)) == out
    # a flow run (a deployment, not the command line) refuses it before writing anything too
    with pytest.raises(WarehouseNeedsRebuild, match="lack link_key"):
        steps.migrate_staging(_ctx(home))
    after = _files_and_times(home)
    assert {k: v for k, v in after.items() if not k.startswith("warehouse/_tmp")} == before


# --------------------------------------------------------------------------------------------
# identities typed into free text, in staging written before the masking
# --------------------------------------------------------------------------------------------
def unmask(home: Path, file_ids: list[str], forget: bool = True) -> None:
    """The staging partitions of ``file_ids`` as the code before the masking staged them (the text,
    value_num and value_comparator as in raw.results; no IDENTITY_IN_TEXT flag), coded and
    published from there as that code did; that code did not record the masking in the state
    (``forget``)."""
    from flows import publish, steps
    from warehouse.analyst import build_analyst_db

    ctx = _ctx(home, "before-masking")
    raw_cols = [*FREE_TEXT_COLUMNS, "value_num", "value_comparator"]
    raw = ctx.wh.read(cat.RAW_RESULTS, file_ids).select(*KEY, *[pl.col(c).alias(f"raw_{c}") for c in raw_cols])
    flags = pl.col("dq_flags").str.split(";").list.filter(pl.element() != FLAG).list.join(";")

    def before(df: pl.DataFrame) -> pl.DataFrame:
        df = df.join(raw, on=KEY, how="left", maintain_order="left")
        return df.with_columns([pl.col(f"raw_{c}").alias(c) for c in raw_cols]).with_columns(
            pl.when(flags == "").then(None).otherwise(flags).alias("dq_flags")).drop([f"raw_{c}" for c in raw_cols])

    for fid in file_ids:
        _rewrite(ctx.wh.files_of(cat.STG_RESULTS, fid), before)
    loinc, mappings, _ = steps.load_terminology(ctx, None)
    for fid in file_ids:
        steps.transcode(ctx, fid, loinc, mappings)
    publish.publish_fct(ctx, file_ids)
    publish.publish_quality(ctx)
    steps.refresh_views(ctx)
    build_analyst_db(ctx.wh)
    if forget:
        _edit_state(home, text_masking=None)


def analyst_texts(home: Path) -> set[str]:
    con = duckdb.connect(str(home / "analyst.duckdb"), read_only=True)
    try:
        cols = con.execute("SELECT table_schema, table_name, column_name FROM information_schema.columns "
                           "WHERE data_type = 'VARCHAR'").fetchall()
        return {r[0] for s, t, c in cols for r in con.execute(
            f'SELECT DISTINCT "{c}" FROM {s}.{t} WHERE "{c}" IS NOT NULL').fetchall()}
    finally:
        con.close()


def _leaks(texts: set[str]) -> set[str]:
    needles = (RELATIVE_NIR, PATIENT_NIR, "Dupont", "DUPONT", "12/05/1980")
    return {v for v in texts if any(n in v for n in needles)}


def test_staging_from_before_the_masking_is_masked_re_coded_and_republished(built, tmp_path):
    from flows.pipeline import pipeline

    home = copy_home(built, tmp_path / "home")
    fid = _first_file(home)
    unmask(home, [fid])
    # what QA saw: the relative's NIR and the patient's name and birth date readable by analysts
    seen = _leaks(analyst_texts(home))
    assert NIR_COMMENT in seen and NAME_COMMENT in seen
    other = _wh(home).files_of(cat.STG_RESULTS, [f for f in _wh(home).partitions(cat.STG_RESULTS) if f != fid][0])
    untouched = {f: f.stat().st_ino for f in other}

    with no_compaction():  # which would pack the untouched partition too
        pipeline(home=str(home))
    got, fresh = _tables(home), _tables(built)
    for name in got:  # staging, coded and fct: the rows, text, flags and readings of a fresh build
        assert got[name].equals(fresh[name]), name
    fct = got["marts.fct_lab_results"].filter(pl.col("file_id") == fid).sort("line_no")
    assert fct["value_raw"].to_list()[:2] == [f"Positif - NIR du conjoint {MASK}",
                                              f"Positif, voir commentaire {MASK} née le {MASK}"]
    assert fct["dq_flags"].to_list()[:2] == [FLAG, FLAG]
    for t in ("quality.unrecognised_results", "quality.unmapped_backlog", "marts.sidep_daily"):
        a, b = query(home, f"SELECT * FROM {t}"), query(built, f"SELECT * FROM {t}")
        assert a.sort(a.columns, nulls_last=True).equals(b.sort(b.columns, nulls_last=True)), t
    assert not _leaks(analyst_texts(home))
    assert {f: f.stat().st_ino for f in other} == untouched  # a partition with nothing to mask is not rewritten
    from flows import steps

    state = json.loads((home / "warehouse" / "state.json").read_text())
    assert state["text_masking"] == steps.TEXT_MASKING and state["recode_owed"] == []


def test_the_masking_pass_resumes_after_an_interruption_and_then_runs_no_more(built, tmp_path, monkeypatch):
    from flows import steps
    from warehouse.store import Warehouse

    home = copy_home(built, tmp_path / "home")
    fids = _wh(home).partitions(cat.STG_RESULTS)
    unmask(home, fids)
    # extract_2 holds no identity: give it one, so that both partitions need masking
    second = [f for f in fids if f != _first_file(home)][0]
    _rewrite(_wh(home).files_of(cat.STG_RESULTS, second),
             lambda df: df.with_columns(pl.lit(f"Négatif {RELATIVE_NIR}").alias("value_raw")))
    writes = []
    real = Warehouse.write_partition

    def killed_at_the_second(self, t, value, frames, keep=None):
        if t is cat.STG_RESULTS and writes:
            raise KeyboardInterrupt("killed")
        writes.append(value)
        return real(self, t, value, frames, keep)

    monkeypatch.setattr(Warehouse, "write_partition", killed_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        steps.mask_staging_text(_ctx(home))
    monkeypatch.setattr(Warehouse, "write_partition", real)
    state = json.loads((home / "warehouse" / "state.json").read_text())
    assert "text_masking" not in state and set(writes) < set(state["recode_owed"]) == set(fids)
    staged = _wh(home).read(cat.STG_RESULTS)
    assert staged.filter(pl.col("file_id") == writes[0])["value_raw"].str.contains(MASK, literal=True).any()
    assert staged.filter(pl.col("file_id") != writes[0])["value_raw"].str.contains(RELATIVE_NIR).any()  # whole

    assert steps.mask_staging_text(_ctx(home)) == sorted(fids)  # resumed: both still owed a re-coding
    assert not _wh(home).read(cat.STG_RESULTS)["value_raw"].str.contains(RELATIVE_NIR).any()
    steps.recoded(_ctx(home), fids)
    # recorded as done: later runs read no partition (an unmasked one now would not even be seen)
    unmask(home, [_first_file(home)], forget=False)
    assert steps.mask_staging_text(_ctx(home)) == []


def test_a_purged_row_gets_its_nir_shaped_numbers_masked_not_its_names(built, tmp_path):
    """After a purge raw.results no longer holds the names: only NIR-shaped numbers can be found."""
    from flows import steps
    from flows.privacy import purge_identities

    home = copy_home(built, tmp_path / "home")
    fid = _first_file(home)
    unmask(home, [fid])
    purge_identities(_ctx(home, "purge"), 0, delete_landing=False)
    assert steps.mask_staging_text(_ctx(home)) == [fid]
    rows = _wh(home).read(cat.STG_RESULTS, [fid]).sort("line_no")
    assert rows["value_raw"].to_list()[:2] == [f"Positif - NIR du conjoint {MASK}", NAME_COMMENT]
    assert rows["dq_flags"].to_list()[:2] == [FLAG, None]


# --------------------------------------------------------------------------------------------
# marts.mdo_weekly before its days column: rewritten whole by the next run
# --------------------------------------------------------------------------------------------
def test_an_mdo_weekly_mart_from_before_days_is_rewritten_whole_by_the_next_run(built, tmp_path):
    from flows.pipeline import pipeline
    from warehouse import catalog_epi as ce

    home = copy_home(built, tmp_path / "home")
    key = list(ce.MDO_WEEKLY.key)
    fresh = _wh(home).read(ce.MDO_WEEKLY).sort(key)
    assert fresh.height and fresh["days"].null_count() == 0
    _rewrite(_wh(home).files(ce.MDO_WEEKLY), lambda df: df.drop("days"))  # as the earlier code wrote it
    assert _wh(home).read(ce.MDO_WEEKLY)["days"].null_count() == fresh.height  # read as null
    earlier_runs = set(_wh(home).read(ce.EPI_REVISIONS)["run_id"].to_list())

    pipeline(home=str(home))
    assert all("days" in pl.read_parquet_schema(f) for f in _wh(home).files(ce.MDO_WEEKLY))
    assert _wh(home).read(ce.MDO_WEEKLY).sort(key).equals(fresh)
    assert query(home, "SELECT count(*) AS n FROM marts.mdo_weekly WHERE days IS NULL")["n"][0] == 0
    log = _wh(home).read(ce.EPI_REVISIONS).filter(pl.col("table_name") == ce.MDO_WEEKLY.qualified)
    weeks = {f"semaine={w}" for w in fresh["semaine"].unique().to_list()}
    assert weeks <= set(log.filter(~pl.col("run_id").is_in(sorted(earlier_runs)))["partition"].to_list())


def test_versions_settled_by_an_earlier_biolake_are_settled_again_once(built, tmp_path):
    """Earlier code made every row of one lab, request and test a version of one result (QA: a
    reused request number replaced another patient's result). Its coding format differs (the
    version key held the specimen), so the first run of this code re-codes and publishes every file
    again, settling their versions by person and day; later runs do not."""
    from flows.pipeline import pipeline

    home = copy_home(built, tmp_path / "home")
    fresh = _wh(home).read(cat.FCT_LAB_RESULTS).sort(KEY)
    victim = fresh.filter(pl.col("is_current")).row(0, named=True)
    other = fresh.filter(pl.col("file_id") != victim["file_id"]).row(0, named=True)
    wrong = f"{other['file_id']}:{other['result_no']}"
    _rewrite(_wh(home).files_of(cat.FCT_LAB_RESULTS, victim["file_id"]), lambda df: df.with_columns(
        is_current=pl.when(pl.col("result_no") == victim["result_no"]).then(False).otherwise(pl.col("is_current")),
        superseded_by=pl.when(pl.col("result_no") == victim["result_no"]).then(pl.lit(wrong))
        .otherwise(pl.col("superseded_by"))))
    earlier = "the fingerprint of an earlier coding format"
    _edit_state(home, mappings_fingerprint=earlier)  # as the earlier code left its state
    assert not _wh(home).read(cat.FCT_LAB_RESULTS).sort(KEY).equals(fresh)

    first = pipeline(home=str(home))
    assert first["incremental"]["fct_files_rewritten"] == fresh["file_id"].n_unique()
    assert _wh(home).read(cat.FCT_LAB_RESULTS).sort(KEY).equals(fresh)
    assert json.loads((home / "warehouse" / "state.json").read_text())["mappings_fingerprint"] != earlier
    assert pipeline(home=str(home))["incremental"]["fct_files_rewritten"] == 0
