"""Small builders shared by the unit tests."""

from __future__ import annotations

from pathlib import Path

from transforms.identity import nir_key

ROOT = Path(__file__).resolve().parents[1]

HEADER = ("FINESS;N_DEMANDE;NIR;NOM;PRENOM;DATE_NAISSANCE;SEXE;CODE_POSTAL;DATE_PRELEVEMENT;DATE_RECEPTION;"
          "DATE_VALIDATION;CODE_ANALYSE;LIBELLE_ANALYSE;RESULTAT;UNITE;VALEURS_REFERENCE;STATUT")


def nir(body13: str) -> str:
    """A NIR with a correct key."""
    return f"{body13}{nir_key(body13):02d}"


def bad_nir(body13: str) -> str:
    """A NIR whose key is off by one."""
    return f"{body13}{(nir_key(body13) % 97) + 1:02d}"


def line(**over: str) -> str:
    """One CSV extract line with sensible defaults; keyword arguments replace fields by header name."""
    fields = {
        "FINESS": "750000002", "N_DEMANDE": "D1", "NIR": nir("2550999000116"), "NOM": "Dupont",
        "PRENOM": "Marie", "DATE_NAISSANCE": "12/09/1955", "SEXE": "F", "CODE_POSTAL": "75011",
        "DATE_PRELEVEMENT": "02/11/2026 08:30", "DATE_RECEPTION": "02/11/2026 10:00",
        "DATE_VALIDATION": "02/11/2026 18:00", "CODE_ANALYSE": "GLY", "LIBELLE_ANALYSE": "Glycémie",
        "RESULTAT": "5,4", "UNITE": "mmol/L", "VALEURS_REFERENCE": "3,9-5,8", "STATUT": "F",
    }
    fields.update(over)
    return ";".join(fields[h] for h in HEADER.split(";"))


def defect_lines() -> list[str]:
    """A CSV extract (header first) of one good line and one line per defect the model checks: NIR
    key and length, implausible and future birth dates, reception before collection, sex, status,
    missing request, code, value, identity, collection date, status X without value; and a 4-digit
    postal code, which is valid (a data-quality flag, see transforms.staging)."""
    return [
        HEADER, line(), line(N_DEMANDE="D2", NIR=bad_nir("2550999000116")), line(N_DEMANDE="D3", NIR="2550999"),
        line(N_DEMANDE="D4", DATE_NAISSANCE="01/01/1850"), line(N_DEMANDE="D5", DATE_NAISSANCE="01/01/2027"),
        line(N_DEMANDE="D6", DATE_RECEPTION="01/11/2026 08:00"), line(N_DEMANDE="D7", SEXE="X"),
        line(N_DEMANDE="D8", CODE_POSTAL="7501"), line(N_DEMANDE="D9", STATUT="Z"), line(N_DEMANDE=""),
        line(N_DEMANDE="D10", CODE_ANALYSE=""), line(N_DEMANDE="D11", RESULTAT=""),
        line(N_DEMANDE="D12", NIR="", NOM=""), line(N_DEMANDE="D13", DATE_PRELEVEMENT=""),
        line(N_DEMANDE="D14", RESULTAT="", STATUT="X"),
    ]


def canonical_rows(path, source: str = "lab"):
    """Every canonical row the CSV parser makes of ``path``, in the model's column order."""
    import polars as pl

    from transforms.canonical import CANONICAL_SCHEMA
    from transforms.parsers.csv_extract import parse

    return pl.concat([c.rows for c in parse(path, file_id="f", source=source)]).select(list(CANONICAL_SCHEMA))


MAPPING_HEADER = "local_code,local_label,unit,specimen,loinc_num,valid_from,valid_to\n"


def seed_loinc():
    """The LOINC table of the seeds."""
    from transforms.terminology.loinc import load_loinc_seed

    return load_loinc_seed(ROOT / "seeds" / "reference" / "loinc.csv")


def mappings_of(folder: Path, loinc, rows: list[str], lab: str = "labo_a"):
    """The mapping table of one lab whose CSV holds ``rows`` (written to ``folder``)."""
    from transforms.terminology.mappings import load_mappings

    (folder / f"{lab}.csv").write_text(MAPPING_HEADER + "".join(r + "\n" for r in rows), encoding="utf-8")
    return load_mappings([folder], loinc)


RUN_SPECIFIC = ("ingested_at", "registered_at", "run_id", "settled_at")
# logs of what each run did: they grow with every run by design
HISTORY_TABLES = ("quality.run_log", "quality.reason_codes", "quality.audit_events", "quality.epi_revisions",
                  "quality.publications", "quality.expectation_results")


def query(home, sql: str):
    """Run SQL on <home>/biolake.duckdb (the engineers' database, every layer), read-only."""
    import duckdb

    con = duckdb.connect(str(home / "biolake.duckdb"), read_only=True)
    try:
        return con.sql(sql).pl()
    finally:
        con.close()


def snapshot(home, drop=()) -> dict:
    """Contents of every table an analyst sees, sorted, without run-specific columns."""
    from warehouse import catalog as cat

    out = {}
    for t in cat.TABLES:
        if t.qualified in HISTORY_TABLES or t.layer == "raw":
            continue
        df = query(home, f"SELECT * FROM {t.qualified}")
        df = df.drop([c for c in (*RUN_SPECIFIC, *drop) if c in df.columns])
        out[t.qualified] = df.sort(df.columns, nulls_last=True)
    return out


def assert_same_tables(a: dict, b: dict, names=None) -> None:
    for name in names or a:
        assert a[name].equals(b[name]), f"{name} differs"


def copy_home(src, dst):
    """A private copy of a processed home (the DuckDB views are rebuilt by the next run)."""
    import shutil

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.duckdb", ".biolake.lock"))
    return dst


def with_request_ids(wh, df):
    """``df`` (rows of staging, coded or fct) with the lab's plain ``request_id`` from raw.results,
    found by file_id and result_no as an engineer does: only its keyed hash leaves the raw layer."""
    from warehouse import catalog as cat

    raw = wh.read(cat.RAW_RESULTS).select("file_id", "result_no", "request_id")
    return df.join(raw, on=["file_id", "result_no"], how="left", maintain_order="left")


class no_compaction:
    """Runs inside this block never pack partitions (BIOLAKE_COMPACT_MIN_FILES=0): for a warehouse a
    test then rewrites as an earlier biolake, which wrote every partition loose, would have."""

    def __enter__(self):
        import os

        self._before = os.environ.get("BIOLAKE_COMPACT_MIN_FILES")
        os.environ["BIOLAKE_COMPACT_MIN_FILES"] = "0"
        return self

    def __exit__(self, *exc):
        import os

        if self._before is None:
            os.environ.pop("BIOLAKE_COMPACT_MIN_FILES", None)
        else:
            os.environ["BIOLAKE_COMPACT_MIN_FILES"] = self._before
        return False
