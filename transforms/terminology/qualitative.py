"""Qualitative results (positif, négatif, détecté, douteux...) -> a small coded set.

Each word is normalised (Unicode accents removed, lower case, punctuation and repeated spaces
collapsed) and looked up in ``VOCABULARY``, which gives a SNOMED CT qualifier value and a class:

* POS      - a positive / detected / present / reactive result;
* NEG      - negative / not detected / absent / non-reactive;
* INVALID  - a result that exists but cannot be used (equivocal, inconclusive, indeterminate,
             not done, unsuitable specimen). SI-DEP counts these in neither P nor T.

Unknown words give null code and null class: they are not guessed. Codes were checked against
public value sets (WHO DDCC lab-test-qual-result-snomed, DICOM CID 240 Present-Absent).
"""

from __future__ import annotations

import polars as pl

POSITIVE, NEGATIVE = "10828004", "260385009"
DETECTED, NOT_DETECTED = "260373001", "260415000"
PRESENT, ABSENT = "52101004", "2667000"
REACTIVE, NON_REACTIVE = "11214006", "131194007"
EQUIVOCAL, INCONCLUSIVE, INDETERMINATE = "42425007", "419984006", "82334004"
NOT_DONE, SPECIMEN_UNSATISFACTORY = "385660001", "125154007"

SNOMED_DISPLAY: dict[str, str] = {
    POSITIVE: "Positive (qualifier value)",
    NEGATIVE: "Negative (qualifier value)",
    DETECTED: "Detected (qualifier value)",
    NOT_DETECTED: "Not detected (qualifier value)",
    PRESENT: "Present (qualifier value)",
    ABSENT: "Absent (qualifier value)",
    REACTIVE: "Reactive (qualifier value)",
    NON_REACTIVE: "Non-reactive (qualifier value)",
    EQUIVOCAL: "Equivocal (qualifier value)",
    INCONCLUSIVE: "Inconclusive (qualifier value)",
    INDETERMINATE: "Indeterminate (qualifier value)",
    NOT_DONE: "Not done (qualifier value)",
    SPECIMEN_UNSATISFACTORY: "Specimen unsatisfactory for evaluation (finding)",
}

CODE_CLASS: dict[str, str] = {
    POSITIVE: "POS", DETECTED: "POS", PRESENT: "POS", REACTIVE: "POS",
    NEGATIVE: "NEG", NOT_DETECTED: "NEG", ABSENT: "NEG", NON_REACTIVE: "NEG",
    EQUIVOCAL: "INVALID", INCONCLUSIVE: "INVALID", INDETERMINATE: "INVALID",
    NOT_DONE: "INVALID", SPECIMEN_UNSATISFACTORY: "INVALID",
}

# Keys are already normalised (see ``normalise_text``): no accents, lower case, single spaces.
_WORDS: dict[str, tuple[str, ...]] = {
    POSITIVE: ("positif", "positive", "positifs", "positives", "pos", "+", "++", "+++",
               "faiblement positif", "faiblement positive", "weakly positive", "weak positive"),
    NEGATIVE: ("negatif", "negative", "negatifs", "negatives", "neg", "-"),
    DETECTED: ("detecte", "detectee", "detectes", "detectees", "detected", "detectable"),
    NOT_DETECTED: ("non detecte", "non detectee", "non detectes", "non detectees", "not detected",
                   "nd", "indetectable", "non detectable", "undetectable", "pas de detection"),
    PRESENT: ("presence", "present", "presente", "presents", "presentes"),
    ABSENT: ("absence", "absent", "absente", "absents", "absentes"),
    REACTIVE: ("reactif", "reactive", "reactifs", "reactives"),
    NON_REACTIVE: ("non reactif", "non reactive", "nonreactive"),
    EQUIVOCAL: ("douteux", "douteuse", "equivoque", "equivocal", "limite", "zone grise", "borderline"),
    INCONCLUSIVE: ("ininterpretable", "non interpretable", "inconclusive",
                   "inconclusif", "non concluant", "non conclusif", "uninterpretable"),
    INDETERMINATE: ("indetermine", "indeterminee", "indeterminate"),
    NOT_DONE: ("non realise", "non realisee", "non fait", "non effectue", "annule", "annulee",
               "not done", "not performed", "cancelled", "canceled"),
    SPECIMEN_UNSATISFACTORY: ("prelevement non conforme", "echantillon non conforme",
                              "specimen unsatisfactory", "prelevement insuffisant"),
}

VOCABULARY: dict[str, str] = {word: code for code, words in _WORDS.items() for word in words}
CLASS_OF_WORD: dict[str, str] = {word: CODE_CLASS[code] for word, code in VOCABULARY.items()}


def normalise_text(expr: pl.Expr) -> pl.Expr:
    """Accents removed, lower case, '_ . : ; ,' and brackets turned to spaces, spaces collapsed;
    hyphens between words become spaces ('non-détecté' == 'non detecte'), a lone '-' stays."""
    s = (
        expr.cast(pl.Utf8)
        .str.normalize("NFKD")
        .str.replace_all(r"\p{M}", "")
        .str.to_lowercase()
        .str.replace_all(r"[_.:;,!()\[\]]", " ")
        .str.replace_all(r"(\w)-(\w)", "$1 $2")
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
    )
    return s


def qualifier_code(expr: pl.Expr) -> pl.Expr:
    """SNOMED CT qualifier code (string) for a written qualitative result, null when unknown."""
    return normalise_text(expr).replace_strict(VOCABULARY, default=None, return_dtype=pl.Utf8)


def qualitative_class(expr: pl.Expr) -> pl.Expr:
    """'POS' | 'NEG' | 'INVALID' for a written qualitative result, null when unknown."""
    return normalise_text(expr).replace_strict(CLASS_OF_WORD, default=None, return_dtype=pl.Utf8)


def normalise_qualitative(expr: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """(result_qual, result_class) expressions for ``expr``, aliased with those names."""
    return qualifier_code(expr).alias("result_qual"), qualitative_class(expr).alias("result_class")
