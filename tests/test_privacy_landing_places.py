"""Landing names outside the closed tables (QA priv F3, F4, F6).

F4: a patient's folder dropped at the root of the landing area (``ROUXQZ Denis 05-05-1972/res.csv``)
is not a lab: its files are refused unread (LAB_FOLDER_NAME), the folder named nowhere.
F3: the files and folders the pipeline writes that name landing files are closed (0600/0700), and
the purge drops the files it deleted from ``warehouse/landing_hashes.json``.
F6: the purge counts the hidden landing entries older than the delay, per lab folder shown safely,
and deletes none of them."""

from __future__ import annotations

import json
import os
import stat
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.helpers import HEADER, line, query

FOLDER = "ROUXQZ Denis 05-05-1972"


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.mark.parametrize(("name", "refused"), [
    ("labo_alpha", False), ("labo_q", False), ("nist_lab", False), ("labo_delta", False), ("LABO-75", False),
    (FOLDER, True), ("DURAND Alice", True), ("DURAND_Alice_12031985", True), ("x_1972-05-05", True),
    ("nir_166021304598774", True), ("Labo Alpha", True),
])
def test_a_lab_folder_named_like_a_person_is_no_lab(name, refused):
    from flows.privacy import lab_folder_problem

    problem = lab_folder_problem(name)
    assert bool(problem) == refused
    assert not problem or ("ROUXQZ" not in problem and "1972" not in problem)


def test_a_known_lab_is_read_whatever_its_folder_name(tmp_path):
    """QA regr2 F1: after the upgrade, labs named `Labo Pasteur` or `lab_<SIRET>` stopped loading
    (their loaded files logged failed, and renaming the folder would make a new lab). The rule is
    for new folders: one a file was loaded from, one in seeds/labs.csv or with a mapping file is a lab."""
    import polars as pl

    from flows import steps
    from flows.settings import Settings
    from warehouse import catalog as cat

    home = tmp_path / "home"
    for i, folder in enumerate(("Labo Pasteur", "lab_34012345600018", FOLDER)):
        (home / "landing" / folder).mkdir(parents=True)
        rows = "\n".join([HEADER, line(N_DEMANDE=f"A{i}")]) + "\n"
        (home / "landing" / folder / "d2.csv").write_text(rows, encoding="utf-8")
    (home / "mappings").mkdir()
    (home / "mappings" / "Labo Pasteur.csv").write_text(
        "local_code,local_label,unit,specimen,loinc_num,valid_from,valid_to\n", encoding="utf-8")
    ctx = steps.Context.create(Settings(home=home), "test")
    loaded = {c.name: None for c in cat.FILE_LOG.columns} | {
        "log_id": "l1", "file_id": "f1", "path": "lab_34012345600018/d1.csv", "source": "lab_34012345600018",
        "status": "loaded", "sha256": "0" * 64, "file_seq": 1}
    ctx.wh.write_partition_file(cat.FILE_LOG, "l1", pl.DataFrame([loaded], schema=cat.FILE_LOG.schema))
    assert {"Labo Pasteur", "lab_34012345600018", "labo_alpha"} <= steps.known_lab_folders(ctx)
    tickets = {t.source: t for t in steps.discover(ctx)}
    assert tickets["Labo Pasteur"].status == "new" and tickets["lab_34012345600018"].status == "new"
    refused = tickets["_unknown"]
    assert refused.reason == "LAB_FOLDER_NAME" and "ROUXQZ" not in refused.path and "new folder" in refused.detail


@pytest.fixture(scope="module")
def ran(prefect_harness, tmp_path_factory):
    from flows.pipeline import pipeline
    from warehouse.analyst import build_analyst_db
    from warehouse.store import Warehouse

    home = tmp_path_factory.mktemp("places") / "home"
    lab = home / "landing" / "labo_alpha"
    person = home / "landing" / FOLDER
    for d in (lab, person, lab / ".incoming"):
        d.mkdir(parents=True)
    rows = "\n".join([HEADER, line(N_DEMANDE="A1"), line(N_DEMANDE="A2", CODE_ANALYSE="CREA")]) + "\n"
    (lab / "ok.csv").write_text(rows, encoding="utf-8")
    (person / "res.csv").write_text(rows.replace("A1", "B1").replace("A2", "B2"), encoding="utf-8")
    # hidden: a partial upload and a transfer server's staging folder, both with a full identity
    (lab / ".ok2.csv.part").write_text(rows, encoding="utf-8")
    (lab / ".incoming" / "batch.csv").write_text(rows, encoding="utf-8")
    (home / "landing" / f".{FOLDER}.part").write_text(rows, encoding="utf-8")
    summary = pipeline(home=str(home))
    return home, summary, build_analyst_db(Warehouse(home))


def test_the_person_named_folder_is_refused_unread_and_never_named(ran):
    from tests.test_privacy_keys import analyst_values

    home, summary, analyst_db = ran
    log = query(home, "SELECT path, source, status, reason_code FROM quality.file_log ORDER BY path")
    refused = log.filter(log["reason_code"] == "LAB_FOLDER_NAME")
    assert refused.height == 1 and refused["status"][0] == "failed" and refused["source"][0] == "_unknown"
    assert "ROUXQZ" not in refused["path"][0] and refused["path"][0].endswith("/res.csv")
    assert set(query(home, "SELECT DISTINCT source FROM raw.results")["source"]) == {"labo_alpha"}
    values = analyst_values(analyst_db)
    assert not {c for c, vs in values.items() for v in vs if "ROUXQZ" in v}
    gate = query(home, "SELECT observed FROM quality.expectation_results WHERE suite = 'landing_files'")
    observed = " ".join(v or "" for v in gate["observed"])
    assert "LAB_FOLDER_NAME" in observed and "ROUXQZ" not in observed
    report = Path(summary["reports"]["data_quality"]).read_text(encoding="utf-8")
    assert "ROUXQZ" not in report
    for p in (home / "gx").rglob("*"):
        assert p.is_dir() or "ROUXQZ" not in p.read_text(encoding="utf-8", errors="replace"), p


def test_the_places_naming_landing_files_are_closed(ran):
    home, summary, _ = ran
    assert _mode(home / "gx" / "uncommitted") == 0o700
    assert _mode(home / "reports" / "data_docs") == 0o700
    assert _mode(Path(summary["reports"]["data_quality"])) == 0o600
    assert _mode(home / "warehouse" / "_cache") == 0o700
    hashes = home / "warehouse" / "landing_hashes.json"
    if hashes.exists():
        assert _mode(hashes) == 0o600


def test_the_prefect_home_is_closed(tmp_path, monkeypatch):
    from flows.cli import configure_prefect
    from flows.settings import Settings

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("PREFECT_HOME", os.environ.get("PREFECT_HOME", ""))  # restored after the test
    settings = Settings(home=tmp_path / "home")
    configure_prefect(settings)
    assert _mode(settings.prefect_home_abs) == 0o700


def test_the_purge_forgets_deleted_files_and_reports_hidden_entries(ran):
    from flows import steps
    from flows.privacy import PERSON_NAMED_FOLDER, purge_identities
    from flows.settings import Settings

    home, _, _ = ran
    ctx = steps.Context.create(Settings(home=home), "test-purge")
    hashes = home / "warehouse" / "landing_hashes.json"
    kept = {"labo_alpha/ok.csv": [1, 2, 3, 4, 5, "x"], "labo_alpha/other.csv": [1, 2, 3, 4, 5, "y"]}
    hashes.write_text(json.dumps(kept))
    os.chmod(hashes, 0o644)
    old = (datetime.now() - timedelta(days=200)).timestamp()
    lab = home / "landing" / "labo_alpha"
    for p in (lab / ".ok2.csv.part", lab / ".incoming" / "batch.csv", home / "landing" / f".{FOLDER}.part"):
        os.utime(p, (old, old))
    res = purge_identities(ctx, older_than_days=90)
    assert res["landing_files_deleted"] == 0
    assert res["hidden_landing_entries"] == {"<landing root>": 1, "labo_alpha": 2}
    res = purge_identities(ctx, older_than_days=0, now=datetime.now() + timedelta(seconds=1))
    assert res["landing_files_deleted"] == 1 and not (lab / "ok.csv").exists()
    assert json.loads(hashes.read_text()) == {"labo_alpha/other.csv": kept["labo_alpha/other.csv"]}
    assert _mode(hashes) == 0o600
    # never read, never deleted; and the person-named folder's file, never read either, stays
    assert (lab / ".ok2.csv.part").exists() and (lab / ".incoming" / "batch.csv").exists()
    assert (home / "landing" / FOLDER / "res.csv").exists()
    assert res["hidden_landing_entries"] == {"<landing root>": 1, "labo_alpha": 2}
    assert PERSON_NAMED_FOLDER not in res["hidden_landing_entries"]
