"""Qualitative vocabulary: words as labs write them -> SNOMED CT qualifier and POS/NEG/INVALID."""

from __future__ import annotations

import polars as pl

from transforms.terminology.qualitative import CODE_CLASS, SNOMED_DISPLAY, VOCABULARY, normalise_qualitative

EXPECTED = [
    ("positif", "10828004", "POS"),
    ("POS", "10828004", "POS"),
    ("POSITIF", "10828004", "POS"),
    ("Positive", "10828004", "POS"),
    ("+", "10828004", "POS"),
    ("faiblement positif", "10828004", "POS"),
    ("détecté", "260373001", "POS"),
    ("detecte", "260373001", "POS"),
    ("DÉTECTÉ", "260373001", "POS"),
    ("detected", "260373001", "POS"),
    ("présence", "52101004", "POS"),
    ("Présent", "52101004", "POS"),
    ("réactif", "11214006", "POS"),
    ("négatif", "260385009", "NEG"),
    ("negatif", "260385009", "NEG"),
    ("NEG", "260385009", "NEG"),
    ("  Négatif. ", "260385009", "NEG"),
    ("negative", "260385009", "NEG"),
    ("-", "260385009", "NEG"),
    ("non détecté", "260415000", "NEG"),
    ("Non-détecté", "260415000", "NEG"),
    ("NON  DETECTE", "260415000", "NEG"),
    ("not detected", "260415000", "NEG"),
    ("indétectable", "260415000", "NEG"),
    ("absence", "2667000", "NEG"),
    ("absent", "2667000", "NEG"),
    ("non réactif", "131194007", "NEG"),
    ("douteux", "42425007", "INVALID"),
    ("Douteuse", "42425007", "INVALID"),
    ("equivocal", "42425007", "INVALID"),
    ("ininterprétable", "419984006", "INVALID"),
    ("non interprétable", "419984006", "INVALID"),
    ("inconclusive", "419984006", "INVALID"),
    ("indéterminé", "82334004", "INVALID"),
    ("indeterminate", "82334004", "INVALID"),
    ("non réalisé", "385660001", "INVALID"),
    ("Annulé", "385660001", "INVALID"),
    ("prélèvement non conforme", "125154007", "INVALID"),
    ("voir commentaire", None, None),
    ("12,5", None, None),
    ("", None, None),
    (None, None, None),
]


def test_vocabulary_exact_outputs():
    df = pl.DataFrame({"v": [e[0] for e in EXPECTED]}, schema={"v": pl.Utf8})
    out = df.with_columns(*normalise_qualitative(pl.col("v")))
    assert out.rows() == EXPECTED


def test_every_code_has_a_display_and_a_class():
    assert set(VOCABULARY.values()) == set(SNOMED_DISPLAY) == set(CODE_CLASS)
    assert set(CODE_CLASS.values()) == {"POS", "NEG", "INVALID"}
