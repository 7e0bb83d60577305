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
