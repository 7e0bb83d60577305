"""Qualitative vocabulary: words as labs write them -> SNOMED CT qualifier and POS/NEG/INVALID."""

from __future__ import annotations

import polars as pl

import pytest

from transforms.terminology.qualitative import (
    CODE_CLASS,
    DEFAULT_READER,
    SNOMED_DISPLAY,
    VOCABULARY,
    QualitativeWordsError,
    load_qualitative_words,
    normalise_qualitative,
    reader_for,
)

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


# Lab wording beyond the single words: (text as written, expected code, expected class).
P, D, PR, N, ND, AB = "10828004", "260373001", "52101004", "260385009", "260415000", "2667000"
EQ, INC, IND = "42425007", "419984006", "82334004"
PHRASES = [
    # intensity qualifiers
    ("Positif faible", P, "POS"),
    ("POSITIF FAIBLE", P, "POS"),
    ("Faiblement positif", P, "POS"),
    ("Positif fort", P, "POS"),
    ("Fortement positive", P, "POS"),
    ("Franchement positif", P, "POS"),
    ("Négatif franc", N, "NEG"),
    # Ct / Cq values, detection limits and neutral parentheses are annotations
    ("Positif (Ct=25)", P, "POS"),
    ("Positif Ct 28", P, "POS"),
    ("Positif - Ct : 31,5", P, "POS"),
    ("CT=32 positif", P, "POS"),
    ("Détecté (Ct < 30)", D, "POS"),
    ("Positif (Cq 22.4) [gène E]", P, "POS"),
    ("Négatif (<LOD)", N, "NEG"),
    ("Négatif < LOD", N, "NEG"),
    ("Non détecté (Ct > 40)", ND, "NEG"),
    ("nd (ct>40)", ND, "NEG"),
    ("Positif (seuil : 1,0)", P, "POS"),
    # what was tested, before or after the verdict
    ("ARN SARS-CoV-2 détecté", D, "POS"),
    ("ARN SARS-CoV-2 : DETECTE", D, "POS"),
    ("SARS-CoV-2 : non-détecté", ND, "NEG"),
    ("ARN non détecté", ND, "NEG"),
    ("Présence d'ARN", PR, "POS"),
    ("Présence d’ARN de SARS-CoV-2", PR, "POS"),
    ("Absence d'ARN", AB, "NEG"),
    ("Absence de détection", AB, "NEG"),
    ("Détection positive", P, "POS"),
    ("Détection négative", N, "NEG"),
    ("Antigène SARS-CoV-2 : positif", P, "POS"),
    ("Ag +", P, "POS"),
    ("Recherche d'ARN SARS-CoV-2 : négative", N, "NEG"),
    ("Résultat : Négatif", N, "NEG"),
    ("Anticorps IgG anti-SARS-CoV-2 : présence", PR, "POS"),
    ("Non détecté. Non-détecté", ND, "NEG"),
    # QA mdo F3: the agents of the notifiable diseases' tests, with the verdict's agreement
    ("IgM anti-VHA positives", P, "POS"),
    ("IgM anti-VHA positive", P, "POS"),
    ("Ag urinaire légionelle positif", P, "POS"),
    ("Antigène soluble urinaire positif", P, "POS"),
    ("Positif VIH-1", P, "POS"),
    ("HIV-1 positif", P, "POS"),
    ("Neisseria meningitidis détecté", D, "POS"),
    ("ADN de Listeria monocytogenes détecté", D, "POS"),
    ("Mycobacterium tuberculosis complex détecté", D, "POS"),
    ("IgM anti-VHA négatives", N, "NEG"),
    ("Ag urinaire légionelle : négatif", N, "NEG"),
    ("Ag urinaire légionelle douteux", EQ, "INVALID"),
    # unusable results, also with a request to check again
    ("indéterminé", IND, "INVALID"),
    ("Ininterprétable - à refaire", INC, "INVALID"),
    ("Douteux, à contrôler", EQ, "INVALID"),
    ("Non interprétable (à contrôler)", INC, "INVALID"),
    ("Douteux - indéterminé", IND, "INVALID"),
    # HL7 coded values code^label^system
    ("260373001^Détecté^SCT", D, "POS"),
    ("260415000^Not detected^SCT", ND, "NEG"),
    ("LOC12^Négatif^L", N, "NEG"),
    ("POS^Positif^L", P, "POS"),  # a local code that is itself a word, agreeing with its label
    ("POS^^L", P, "POS"),  # no label: the local code is read
    ("LOC12^^L", None, None),
    ("Positif^Négatif", None, None),  # QA: two answers, not a coded value
    ("NEG^Détecté^L", None, None),
    # below the limit of quantification is still detected; below the detection limit is no positive
    ("Détecté < LQ", D, "POS"),
    ("Détecté (<LOQ)", D, "POS"),
    # never guessed: negations, doubt, two verdicts, requests to check a verdict, unknown words
    ("non négatif", None, None),
    ("Non positif", None, None),
    ("pas positif", None, None),
    ("Positif ?", None, None),
    ("Positif*", None, None),
    ("Positif, à contrôler", None, None),
    ("Négatif à confirmer", None, None),
    ("Positif douteux", None, None),
    ("Faiblement positif, douteux", None, None),
    ("Positif / Négatif", None, None),
    ("Détecté non détecté", None, None),
    ("Négatif (positif sur gène N)", None, None),
    # QA: a bracket reversing the verdict was dropped as an annotation
    ("Positif (faux)", None, None),
    ("Positif (<LOD)", None, None),  # QA: a positive below the detection limit contradicts itself
    ("Détecté < LD", None, None),
    ("Positif (\u2264 LOD)", None, None),
    ("Positif [faux]", None, None),
    ("Positif (erroné)", None, None),
    ("Positif (erreur d'identification)", None, None),
    ("Négatif (invalide)", None, None),
    ("Négatif (inhibé)", None, None),
    ("Positif (?)", None, None),
    ("Positif (à contrôler)", None, None),
    ("+/-", None, None),
    ("+-", None, None),
    ("±", None, None),
    ("Positif 2", None, None),
    ("faible", None, None),
    ("ARN SARS-CoV-2", None, None),
    ("Détection", None, None),
    ("voir commentaire", None, None),
    ("Positif, voir commentaire", None, None),
    ("<^0.5", None, None),
    ("Non", None, None),
    # the agents' names never make a verdict, nor let a doubtful or reversed one through
    ("VIH-1", None, None),
    ("Ag urinaire légionelle", None, None),
    ("Positif VIH-1 à confirmer", None, None),
    ("Positif VIH-1 ?", None, None),
    ("VIH-1 positif / VIH-2 négatif", None, None),
    ("Non positif VIH-1", None, None),
    ("IgM anti-VHA positives douteuses", None, None),
    ("Positif VIH 3", None, None),
]


@pytest.mark.parametrize(("text", "code", "cls"), PHRASES, ids=[p[0] for p in PHRASES])
def test_phrases_exact_class(text, code, cls):
    assert DEFAULT_READER.classify(text) == (code, cls)


def test_phrases_through_the_polars_expressions():
    df = pl.DataFrame({"v": [p[0] for p in PHRASES] + [None]}, schema={"v": pl.Utf8})
    out = df.with_columns(*normalise_qualitative(pl.col("v")))
    assert out.rows() == [*PHRASES, (None, None, None)]


def test_every_single_word_stays_what_it_was():
    """The phrase rules only add: each vocabulary word, written in capitals with a Ct annotation,
    keeps its code."""
    for word, code in VOCABULARY.items():
        if word in ("-", "+", "++", "+++"):
            continue
        assert DEFAULT_READER.classify(word.upper()) == (code, CODE_CLASS[code]), word
        assert DEFAULT_READER.classify(f"{word} (Ct=25)")[1] == CODE_CLASS[code], word


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_operator_words_are_read_and_override(tmp_path):
    seeds, operator = tmp_path / "seeds", tmp_path / "operator"
    _write(seeds / "qualitative" / "words.csv", "text,meaning\nPositivité confirmée,positive\n")
    _write(operator / "qualitative" / "labA.csv",
           "text;meaning;note\nPOSITIVITE CONFIRMEE;detected;later dir wins\nTrace;equivocal;\n"
           "Négatif;not_detected;redefines a shipped word\nRéactivité nulle;131194007;a SNOMED code\n")
    words = load_qualitative_words([seeds, operator, tmp_path / "missing"])
    assert sorted(words.select("key", "code").rows()) == [
        ("negatif", ND), ("positivite confirmee", D), ("reactivite nulle", "131194007"), ("trace", EQ)]
    df = pl.DataFrame({"v": ["Positivité confirmée (Ct=20)", "trace", "Négatif", "Réactivité nulle", "Positif faible",
                             "Positivité confirmée ?"]})
    out = df.with_columns(*normalise_qualitative(pl.col("v"), words))
    assert out.rows() == [
        ("Positivité confirmée (Ct=20)", D, "POS"), ("trace", EQ, "INVALID"), ("Négatif", ND, "NEG"),
        ("Réactivité nulle", "131194007", "NEG"), ("Positif faible", P, "POS"), ("Positivité confirmée ?", None, None)]
    assert reader_for(words) is reader_for(words.clone())  # cached on content
    assert reader_for(None) is DEFAULT_READER


def test_operator_words_errors_name_file_and_line(tmp_path):
    _write(tmp_path / "qualitative" / "w.csv", "text,meaning\nfoo,positive\nbar,sortof\nFOO,negative\n,absent\n")
    with pytest.raises(QualitativeWordsError) as err:
        load_qualitative_words([tmp_path])
    msg = str(err.value)
    assert f"{tmp_path / 'qualitative' / 'w.csv'}:3: meaning 'sortof'" in msg
    assert "w.csv:4: 'FOO' already has another meaning at" in msg
    assert "w.csv:5: empty text" in msg
    _write(tmp_path / "qualitative" / "w.csv", "word,class\nfoo,POS\n")
    with pytest.raises(QualitativeWordsError, match="w.csv:1: the header must have the columns text and meaning"):
        load_qualitative_words([tmp_path])
