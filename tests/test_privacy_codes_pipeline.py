"""End to end (QA priv F1, F2, HIGH): the patient's NIR, name or birth date typed by a lab into the
FINESS column, the test code (CSV CODE_ANALYSE, HL7 OBX-3) or the HL7 OBX-4 sub-ID never reaches the
analyst side: staging keeps a FINESS only when it is FINESS-shaped (the row keeps FINESS_INVALID),
and masks the codes as it masks free text (IDENTITY_IN_TEXT). The quarantined row's keys cached under
``warehouse/_cache`` are masked the same way, in a folder closed like raw."""

from __future__ import annotations

import stat
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest

from tests.helpers import HEADER, line, nir, query
from tests.test_privacy_keys import parquet_texts
from tests.test_privacy_pipeline import Identities, _add_identity, _scan_values, assert_clean, leaks
from transforms.identity_text import FLAG, MASK

JAB_NIR = nir("1660213045987")
SUB_NIR = nir("1800575115001")
JAB = {"NIR": JAB_NIR, "NOM": "JABBERQZ", "PRENOM": "HUGOQZ", "DATE_NAISSANCE": "13/02/1966", "SEXE": "M"}


def _landing(home: Path) -> None:
    csv = home / "landing" / "labo_codes"
    csv.mkdir(parents=True)
    lines = [
        HEADER,
        # F1: the row's own NIR, name, birth date in the FINESS column; a FINESS-shaped bad key is kept
        line(N_DEMANDE="F1", FINESS=JAB_NIR, **JAB),
        line(N_DEMANDE="F2", FINESS="JABBERQZ HUGOQZ", **JAB),
        line(N_DEMANDE="F3", FINESS="13021966", **JAB),
        line(N_DEMANDE="F4", FINESS="750000003", **JAB),
        # F2: the row's own NIR and name as the test code; one word is a code, even the patient's
        # name (a patient named Deng tested for dengue, code DENG: QA regr2 F2)
        line(N_DEMANDE="C1", CODE_ANALYSE=JAB_NIR, **JAB),
        line(N_DEMANDE="C2", CODE_ANALYSE="JABBERQZ HUGOQZ", **JAB),
        line(N_DEMANDE="C3", CODE_ANALYSE="JABBERQZ", **JAB),
        # quarantined (unreadable collection date), its test code the patient's name: cached keys
        line(N_DEMANDE="Q1", CODE_ANALYSE="HUGOQZ JABBERQZ", DATE_PRELEVEMENT="pas une date", **JAB),
        line(N_DEMANDE="OK", **JAB),
    ]
    (csv / "extract_20261102.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    hl7 = home / "landing" / "labo_codes_hl7"
    hl7.mkdir(parents=True)
    segments = [
        "MSH|^~\\&|SGL|LABO^750000002^FINESS|BIOLAKE|ARS|20261102120000||ORU^R01^ORU_R01|MSG-1|P|2.5|||||FRA|"
        "UNICODE UTF-8|FR",
        f"PID|1||{SUB_NIR}^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS||SUBIDQZ^ANNAQZ^^^^^L||19800101|F|||"
        "^^PARIS^^75015^FRA^H",
        "OBR|1|CMD-1|DEM-H1|PCR^PCR^L|||20261102073500+0100|||||||20261102091000||||||||20261102114500|||F",
        f"OBX|1|ST|94500-6^SARS-CoV-2 ARN^LN|{SUB_NIR} SUBIDQZ|Détecté||||||F",
    ]
    (hl7 / "oru_20261102.hl7").write_text("\r".join(segments) + "\r", encoding="utf-8")


def _identities() -> Identities:
    ids = Identities()
    _add_identity(ids, JAB_NIR, ("JABBERQZ", "HUGOQZ"), date(1966, 2, 13), None)
    _add_identity(ids, SUB_NIR, ("SUBIDQZ", "ANNAQZ"), date(1980, 1, 1), None)
    return ids


@pytest.fixture(scope="module")
def ran(prefect_harness, tmp_path_factory):
    from flows.pipeline import pipeline
    from warehouse.analyst import build_analyst_db
    from warehouse.store import Warehouse

    home = tmp_path_factory.mktemp("codes") / "home"
    _landing(home)
    summary = pipeline(home=str(home))
    return home, summary, build_analyst_db(Warehouse(home))


def test_the_planted_identities_are_in_raw(ran):
    home, _, _ = ran
    raw = query(home, "SELECT lab_finess, local_code, observation_sub_id FROM raw.results")
    assert {JAB_NIR, "JABBERQZ HUGOQZ", "13021966"} <= set(raw["lab_finess"])
    assert {JAB_NIR, "JABBERQZ HUGOQZ", "JABBERQZ", "HUGOQZ JABBERQZ"} <= set(raw["local_code"])
    assert f"{SUB_NIR} SUBIDQZ" in set(raw["observation_sub_id"])


def test_no_identity_typed_in_finess_or_codes_reaches_analysts(ran):
    home, summary, analyst_db = ran
    con = duckdb.connect(str(analyst_db), read_only=True)
    try:
        found = _scan_values(con, _identities(), ("staging", "marts", "quality", "ref"))
        finess = {r[0] for r in con.execute("SELECT DISTINCT lab_finess FROM marts.fct_lab_results").fetchall()}
    finally:
        con.close()
    # the one name left: a code of one word (C3), which is a code whoever the patient is (documented)
    names = found.pop("name")
    assert names and all(n.split(": ")[0].rsplit(".", 1)[1] in ("local_code", "version_key")
                         and n.endswith(": ['JABBERQZ']") for n in names), names
    assert_clean(found, "the analyst database")
    assert "13021966" not in finess  # ddmmyyyy: not among the scanner's spellings
    assert finess == {"750000002", "750000003", None}
    report = Path(summary["reports"]["data_quality"]).read_text(encoding="utf-8")
    in_report = leaks([report], _identities())
    assert in_report.pop("name") <= {"JABBERQZ"}
    assert_clean(in_report, "the data-quality report")


def test_the_rows_are_kept_and_flagged(ran):
    home, _, _ = ran
    from flows.settings import Settings
    from tests.helpers import with_request_ids
    from warehouse.store import Warehouse

    stg = query(home, "SELECT file_id, result_no, source, lab_finess, local_code, observation_sub_id, dq_flags "
                      "FROM staging.stg_results")
    stg = with_request_ids(Warehouse(Settings(home=home).home_abs), stg)
    rows = {r["request_id"]: r for r in stg.iter_rows(named=True)}
    for req in ("F1", "F2", "F3"):
        assert rows[req]["lab_finess"] is None and "FINESS_INVALID" in rows[req]["dq_flags"], rows[req]
    assert rows["F4"]["lab_finess"] == "750000003" and "FINESS_INVALID" in rows["F4"]["dq_flags"]
    assert rows["OK"]["lab_finess"] == "750000002" and rows["OK"]["dq_flags"] is None
    for req in ("C1", "C2"):
        assert rows[req]["local_code"] == MASK and FLAG in rows[req]["dq_flags"].split(";")
    assert rows["C3"]["local_code"] == "JABBERQZ" and rows["C3"]["dq_flags"] is None  # a code
    assert "Q1" not in rows
    hl7 = stg.filter(pl.col("source") == "labo_codes_hl7").row(0, named=True)
    assert hl7["observation_sub_id"] == f"{MASK}" and FLAG in hl7["dq_flags"].split(";")
    backlog = query(home, "SELECT local_code FROM quality.unmapped_backlog")["local_code"].to_list()
    assert MASK in backlog and not {"JABBERQZ HUGOQZ", JAB_NIR} & set(backlog)


def test_the_quarantine_keys_cache_is_masked_and_closed(ran):
    home, _, _ = ran
    cache = home / "warehouse" / "_cache"
    files = list((cache / "quarantine_keys").glob("*.parquet"))
    assert files
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    values = {v for vs in parquet_texts(cache).values() for v in vs}
    assert any(v.startswith("labo_codes|") and v.endswith(f"|{MASK}") for v in values), values
    assert not {v for v in values if "HUGOQZ" in v or "JABBERQZ" in v}
    stats = [str(pq_stats) for f in files for pq_stats in _parquet_stats(f)]
    assert not [s for s in stats if "HUGOQZ" in s]


def _parquet_stats(path: Path) -> list:
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    return [meta.row_group(g).column(c).statistics for g in range(meta.num_row_groups)
            for c in range(meta.num_columns)]


def _ctx(home: Path):
    from flows import steps
    from flows.settings import Settings

    return steps.Context.create(Settings(home=home), "test")


def test_cached_keys_of_an_earlier_format_are_masked_again(ran):
    """A cache written before the codes were masked (local_code and version_key holding the name)
    is brought up to date from raw by the next look at it, request keys kept."""
    from flows import publish

    home, _, _ = ran
    ctx = _ctx(home)
    folder = home / "warehouse" / "_cache" / "quarantine_keys"
    path = next(p for p in folder.glob("*.parquet") if pl.read_parquet(p).height)
    now = pl.read_parquet(path)
    old = now.with_columns(pl.col("local_code").str.replace_all(MASK, "HUGOQZ", literal=True),
                           pl.col("version_key").str.replace_all(MASK, "HUGOQZ", literal=True))
    old.write_parquet(path)
    (folder / "FORMAT").unlink()
    publish.quarantine_keys(ctx)
    assert pl.read_parquet(path).equals(now)
    assert (folder / "FORMAT").read_text().strip() == publish.KEYS_FORMAT


def test_staging_written_before_is_masked_by_the_next_run(ran):
    """A staging partition staged by the earlier code (the name as test code, the NIR as FINESS) is
    masked by steps.mask_staging_text, and its file owed a re-coding."""
    from flows import steps
    from warehouse import catalog as cat

    home, _, _ = ran
    ctx = _ctx(home)
    wh = ctx.wh
    raw = wh.read(cat.RAW_RESULTS).filter(pl.col("source") == "labo_codes")
    fid = raw["file_id"][0]
    now = wh.read_partition(cat.STG_RESULTS, fid)
    sent = raw.select("result_no", pl.col("lab_finess").alias("f"), pl.col("local_code").alias("c"))
    old = (now.join(sent, on="result_no", how="left")
           .with_columns(lab_finess=pl.col("f"), local_code=pl.col("c"),
                         dq_flags=pl.col("dq_flags").str.replace(f";?{FLAG}", "").replace("", None))
           .select(now.columns))
    assert JAB_NIR in old["lab_finess"].to_list() and "JABBERQZ" in old["local_code"].to_list()
    wh.write_partition(cat.STG_RESULTS, fid, iter([old]))
    state = steps._state(ctx)
    steps._save_state(ctx, text_masking="2", recode_owed=[])
    assert state["text_masking"] == steps.TEXT_MASKING
    assert fid in steps.mask_staging_text(ctx)
    again = wh.read_partition(cat.STG_RESULTS, fid).sort("result_no")
    assert again.equals(now.sort("result_no"))
