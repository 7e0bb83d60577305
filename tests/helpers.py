"""Small builders shared by the unit tests."""

from __future__ import annotations

from transforms.identity import nir_key

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
        "FINESS": "750000001", "N_DEMANDE": "D1", "NIR": nir("2550999000116"), "NOM": "Dupont",
        "PRENOM": "Marie", "DATE_NAISSANCE": "12/09/1955", "SEXE": "F", "CODE_POSTAL": "75011",
        "DATE_PRELEVEMENT": "02/11/2026 08:30", "DATE_RECEPTION": "02/11/2026 10:00",
        "DATE_VALIDATION": "02/11/2026 18:00", "CODE_ANALYSE": "GLY", "LIBELLE_ANALYSE": "Glycémie",
        "RESULTAT": "5,4", "UNITE": "mmol/L", "VALEURS_REFERENCE": "3,9-5,8", "STATUT": "F",
    }
    fields.update(over)
    return ";".join(fields[h] for h in HEADER.split(";"))


RUN_SPECIFIC = ("ingested_at", "registered_at", "run_id")
# logs of what each run did: they grow with every run by design
HISTORY_TABLES = ("quality.run_log", "quality.reason_codes", "quality.audit_events", "quality.epi_revisions",
                  "quality.publications", "quality.expectation_results")


def query(home, sql: str):
    """Run SQL on <home>/biolake.duckdb, read-only, as an analyst would."""
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
