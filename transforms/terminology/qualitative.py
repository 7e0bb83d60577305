"""Qualitative results (positif, négatif, détecté, douteux...) -> a small coded set.

Each result is given a SNOMED CT qualifier value and a class:

* POS      - a positive / detected / present / reactive result;
* NEG      - negative / not detected / absent / non-reactive;
* INVALID  - a result that exists but cannot be used (equivocal, inconclusive, indeterminate,
             not done, unsuitable specimen). SI-DEP counts these in neither P nor T.

How a text is read (``QualitativeReader.classify``), first rule that answers wins:

1. an HL7 coded value ``code^label^system`` is read by its code when the code is one of the
   qualifiers below (system SCT or none), else by its label (by a local code that is itself a word,
   'POS^^L', when there is no label); a local code and a label read as verdicts of two classes
   ('Positif^Négatif') give no answer;
2. the whole text, normalised (Unicode accents removed, lower case, punctuation and repeated
   spaces collapsed), is a word of the operator's table (``load_qualitative_words``) or of
   ``VOCABULARY``;
3. the text read as a phrase (``PHRASE RULES`` below), which recognises common lab wording without
   guessing: 'Positif faible', 'Positif (Ct=25)', 'ARN SARS-CoV-2 détecté', 'Présence d'ARN',
   'Négatif (<LOD)', 'Non détecté (Ct > 40)', 'Ininterprétable - à refaire'.

PHRASE RULES. Annotations are dropped first: a Ct/Cq value ('Ct=25', 'Ct 28', 'CT > 40'), a
detection-limit comparison ('< LOD'), an identity masked before staging ('[masqué]', see
transforms/identity_text.py) with the words that introduced it ('patiente [masqué]', 'NIR [masqué]',
'né le [masqué]'), and a parenthesised or bracketed part that is a pure annotation
(``ANNOTATION_TOKENS`` and numbers: '(seuil 1/40)', '(<LOD)', '[gène E]'); any other part is kept
and read ('(positif sur gène N)', '(faux)': then unrecognised). A positive below the detection
limit ('Positif (<LOD)') contradicts itself and is not recognised; below the limit of
quantification ('Détecté < LQ') is still a positive.
The rest is split into words, and every word must belong to one of these small explicit lists:

* a verdict word or phrase of the vocabulary (longest match first, so 'non détecté' is one
  negative phrase; 'non' alone is no word: 'non négatif' is not recognised);
* an intensity qualifier (``QUALIFIER_WORDS``: faible, faiblement, fort, fortement, franc...);
* a word naming what was tested (``CONTEXT_WORDS``: ARN, SARS-CoV-2, antigène, IgG, recherche,
  détection, résultat, de, d'..., and the agents of the notifiable diseases' tests: VHA, VIH-1,
  légionelle, urinaire, méningocoque, Listeria monocytogenes, Mycobacterium tuberculosis...);
* a request to check again (``RECHECK_PHRASES``: à contrôler, à refaire, à confirmer...).

The phrase is recognised when it holds at least one verdict and all its verdicts have one class;
the last verdict gives the qualifier code. A request to check again is only compatible with an
INVALID verdict ('Douteux, à contrôler' is INVALID; 'Positif, à contrôler' is not recognised).
Anything else -- an unknown word, a '?', verdicts of two classes ('positif / négatif', 'positif
douteux') -- gives null code and null class: never guessed. Unrecognised text results are counted
per lab in quality.unrecognised_results and checked by the quality gate.

Codes were checked against public value sets (WHO DDCC lab-test-qual-result-snomed, DICOM CID 240
Present-Absent).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path

import polars as pl

from transforms.terminology.mappings import OperatorFileError, operator_csv

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

# Bumped when the reading rules change what a text gives: the pipeline then re-codes earlier files.
RULES_VERSION = 4

# Names an operator may write in the ``meaning`` column of a qualitative words file.
MEANINGS: dict[str, str] = {
    "positive": POSITIVE, "negative": NEGATIVE, "detected": DETECTED, "not_detected": NOT_DETECTED,
    "present": PRESENT, "absent": ABSENT, "reactive": REACTIVE, "non_reactive": NON_REACTIVE,
    "equivocal": EQUIVOCAL, "inconclusive": INCONCLUSIVE, "indeterminate": INDETERMINATE,
    "not_done": NOT_DONE, "specimen_unsatisfactory": SPECIMEN_UNSATISFACTORY,
}

# --- phrase rules (see the module docstring) -------------------------------------------------------
# intensity of a verdict: they never change its class
QUALIFIER_WORDS = frozenset({
    "faible", "faibles", "faiblement", "fort", "forte", "forts", "fortes", "fortement", "franc", "franche",
    "francs", "franches", "franchement", "tres", "nettement", "weak", "weakly", "strong", "strongly",
})
# what was tested, and the small words around it (words, or phrases of several words)
CONTEXT_WORDS = (
    "arn", "adn", "sars cov 2", "sars cov2", "sarscov2", "sars", "covid 19", "covid19", "covid", "coronavirus",
    "virus", "viral", "virale", "genome", "antigene", "antigenes", "antigenique", "ag", "anticorps", "ac",
    "anti", "igg", "igm", "iga", "pcr", "rt pcr", "test", "resultat", "recherche", "detection",
    "de", "d", "du", "des", "l", "la", "le", "rna", "antigen", "antibodies", "result",
    # the agents and specimens of the notifiable diseases' tests, as French reports name them (QA
    # mdo F3: 'IgM anti-VHA positives', 'Ag urinaire légionelle positif', 'Positif VIH-1' were lost);
    # a number is read only inside these names ('VIH-1'): 'Positif 2' stays unrecognised
    "vha", "vhb", "vhc", "vhe", "hav", "hbv", "hcv", "hev", "hepatite", "hepatite a", "hepatite b",
    "hbs", "hbc", "vih", "vih 1", "vih 2", "vih1", "vih2", "hiv", "hiv 1", "hiv 2", "hiv1", "hiv2",
    "legionelle", "legionella", "legionella pneumophila", "pneumophila", "urinaire", "urinaires", "soluble",
    "meningocoque", "neisseria meningitidis", "listeria", "listeria monocytogenes", "monocytogenes",
    "mycobacterium tuberculosis", "mycobacterium tuberculosis complex", "complexe tuberculosis",
    "tuberculosis", "bk", "rougeole", "rubeole", "dengue", "chikungunya", "zika", "west nile",
    "ig m", "ac anti", "ag anti",
)
# the result is to be checked or done again: compatible with an INVALID verdict only
RECHECK_PHRASES = (
    "a controler", "a recontroler", "a refaire", "a confirmer", "a verifier", "a reprendre", "a repeter",
    "a recontroller", "controle a prevoir", "refaire", "recontroler", "nouveau prelevement",
    "nouveau prelevement souhaitable", "to be repeated", "repeat",
)
# what a bracketed annotation may hold (besides numbers) to be dropped: a Ct or detection limit,
# a threshold, the gene or target amplified; a bracket holding any other word is read with the rest
ANNOTATION_TOKENS = frozenset({
    "ct", "cq", "lod", "ld", "ldd", "lq", "loq", "seuil", "cycle", "cycles", "gene", "genes", "cible", "cibles",
    "target", "targets", "orf1ab", "orf1", "rdrp", "e", "n", "s", "=", "<", ">", "~", "\u2264", "\u2265",
})

_CT = re.compile(r"\b(?:ct|cq)\s*(?:<=|>=|[=:<>\u2264\u2265~])?\s*\d+(?:[.,]\d+)?")
_LOD = re.compile(r"[<>\u2264\u2265]=?\s*(?:lod|ld|ldd|lq|loq)\b")
_BELOW_LOD = re.compile(r"(?:<|\u2264)=?\s*(?:lod|ld|ldd)\b")
# a masked identity (transforms.identity_text.MASK, folded) and the words that introduce one; the
# marker exists only in masked texts, so no text read before gives another answer (RULES_VERSION kept)
_MASKED = re.compile(r"(?:\b(?:patiente?|pt|mme|mlle|mr|m|monsieur|madame|nom|prenom|nir|ins|nss|nee?|le"
                     r"|date de naissance|naissance|ddn)\b[\s.:\-]*)*\[masque\]")
_BRACKETS = re.compile(r"\(([^()\[\]]*)\)|\[([^()\[\]]*)\]")
# word characters, runs of '+' or '-', and any other character that is not a plain separator
# (such characters, '?' or '*' for instance, become words of their own, which no list holds)
_TOKEN = re.compile(r"[a-z0-9]+|\++|-+|[^\sa-z0-9+\-.,;:!_/'\"()\[\]]")
_HYPHEN = re.compile(r"(?<=\w)-(?=\w)")  # 'non-détecté', 'SARS-CoV-2': a space
_DASH = re.compile(r"(?:^|\s)-+(?=\s|$)")  # 'Ininterprétable - à refaire': a separator
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'", "\u00b4": "'"})
_SCT_SYSTEMS = frozenset({"", "sct", "snm", "snomed", "snomed ct", "snomedct", "2.16.840.1.113883.6.96"})


def _fold(raw: str) -> str:
    """Accents removed (NFKD, combining marks dropped), lower case."""
    text = unicodedata.normalize("NFKD", raw)
    return "".join(c for c in text if not unicodedata.category(c).startswith("M")).lower()


def normalise_word(raw: str) -> str:
    """The key a whole text is looked up with (the Python twin of ``normalise_text``)."""
    s = re.sub(r"[_.:;,!()\[\]]", " ", _fold(raw))
    s = re.sub(r"(\w)-(\w)", r"\1 \2", s)
    s = re.sub(r"(\w)-(\w)", r"\1 \2", s)  # overlapping pairs ('a-b-c')
    return re.sub(r"\s+", " ", s).strip()


def _tokens(text: str) -> tuple[str, ...]:
    return tuple(_TOKEN.findall(text.translate(_APOSTROPHES)))


class QualitativeReader:
    """Reads written qualitative results: ``classify(text) -> (qualifier code, class)``.

    ``extra`` maps normalised texts (``normalise_word``) to qualifier codes: the operator's words,
    which take precedence over ``VOCABULARY`` and also serve as verdict phrases in phrase rules.
    Results are memoised per reader (a bounded dict)."""

    MEMO_MAX = 100_000

    def __init__(self, extra: Mapping[str, str] | None = None):
        self.words: dict[str, str] = {**VOCABULARY, **dict(extra or {})}
        table: dict[tuple[str, ...], tuple[str, str | None]] = {}
        for phrase in CONTEXT_WORDS:
            table[_tokens(phrase)] = ("context", None)
        for phrase in QUALIFIER_WORDS:
            table[_tokens(phrase)] = ("qualifier", None)
        for phrase in RECHECK_PHRASES:
            table[_tokens(phrase)] = ("recheck", None)
        for word, code in self.words.items():
            toks = _tokens(word)
            if toks:  # '-' has no word: it is only a verdict as the whole text
                table[toks] = ("verdict", code)
        self.phrases = table
        self.longest = max(len(k) for k in table)
        # a bracketed part holding one of these words may carry a verdict: it is read, not dropped
        self._memo: dict[str, tuple[str | None, str | None]] = {}

    def classify(self, raw: str | None) -> tuple[str | None, str | None]:
        """(SNOMED CT qualifier code, 'POS' | 'NEG' | 'INVALID'), or (None, None) when unknown."""
        if raw is None:
            return None, None
        got = self._memo.get(raw)
        if got is None:
            code = self._code(raw)
            got = (code, CODE_CLASS.get(code) if code else None)
            if len(self._memo) >= self.MEMO_MAX:
                self._memo.clear()
            self._memo[raw] = got
        return got

    def _code(self, raw: str) -> str | None:
        if "^" in raw:  # HL7 coded value code^label^system
            parts = [p.strip() for p in raw.split("^")]
            system = parts[2].lower() if len(parts) > 2 else ""
            if parts[0] in CODE_CLASS and system in _SCT_SYSTEMS:
                return parts[0]
            label = self._code(parts[1]) if len(parts) > 1 and parts[1] else None
            # a local code may itself be a word ('POS^Positif^L'): when code and label both read as
            # verdicts they must agree ('Positif^Négatif' is two answers, not a coded value; QA)
            local = self._code(parts[0]) if parts[0] else None
            if label and local and CODE_CLASS[label] != CODE_CLASS[local]:
                return None
            return label or (local if len(parts) < 2 or not parts[1] else None)
        key = normalise_word(raw)
        if not key:
            return None
        if key in self.words:
            return self.words[key]
        return self._phrase(raw)

    def _drop_annotations(self, text: str) -> str:
        text = _MASKED.sub(" ", _LOD.sub(" ", _CT.sub(" ", text)))
        while True:
            def keep_or_drop(m: re.Match) -> str:
                # only a pure annotation goes (numbers, Ct/LOD, the gene amplified): any other word
                # stays and must then be read ('Positif (faux)' is not a positive; QA)
                inner = m.group(1) if m.group(1) is not None else m.group(2)
                pure = all(t.isdigit() or t in ANNOTATION_TOKENS for t in _tokens(inner))
                return " " if pure else f" {inner} "
            new = _BRACKETS.sub(keep_or_drop, text)
            if new == text:
                return text
            text = new

    def _phrase(self, raw: str) -> str | None:
        folded = _fold(raw)
        # 'below the detection limit' contradicts a positive ('Positif (<LOD)'; QA): never guessed.
        # Below the limit of quantification is still detected ('Détecté < LQ' is a positive).
        below_lod = _BELOW_LOD.search(folded) is not None
        text = _DASH.sub(" ", _HYPHEN.sub(" ", self._drop_annotations(folded)))
        # any other '-' is a word: '+/-' holds a positive and a negative sign, never a verdict
        toks = _tokens(text)
        verdicts: list[str] = []
        recheck = False
        i = 0
        while i < len(toks):
            for n in range(min(self.longest, len(toks) - i), 0, -1):
                hit = self.phrases.get(toks[i:i + n])
                if hit is not None:
                    break
            else:
                return None  # a word of no list
            kind, code = hit
            if kind == "verdict":
                verdicts.append(code)
            elif kind == "recheck":
                recheck = True
            i += n
        classes = {CODE_CLASS[c] for c in verdicts}
        if len(classes) != 1 or (recheck and classes != {"INVALID"}) or (below_lod and classes == {"POS"}):
            return None
        return verdicts[-1]


DEFAULT_READER = QualitativeReader()


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


def _reader(words: pl.DataFrame | QualitativeReader | None) -> QualitativeReader:
    if words is None:
        return DEFAULT_READER
    if isinstance(words, QualitativeReader):
        return words
    return reader_for(words)


def _mapped(s: pl.Series, reader: QualitativeReader, part: int) -> pl.Series:
    """``reader.classify`` of each distinct text of ``s``, mapped back onto ``s``."""
    s = s.cast(pl.Utf8)
    m = {v: reader.classify(v)[part] for v in s.drop_nulls().unique().to_list()}
    return s.replace_strict(m, default=None, return_dtype=pl.Utf8)


def qualifier_code(expr: pl.Expr, words: pl.DataFrame | QualitativeReader | None = None) -> pl.Expr:
    """SNOMED CT qualifier code (string) for a written qualitative result, null when unknown."""
    r = _reader(words)
    return expr.map_batches(lambda s: _mapped(s, r, 0), return_dtype=pl.Utf8, is_elementwise=True)


def qualitative_class(expr: pl.Expr, words: pl.DataFrame | QualitativeReader | None = None) -> pl.Expr:
    """'POS' | 'NEG' | 'INVALID' for a written qualitative result, null when unknown."""
    r = _reader(words)
    return expr.map_batches(lambda s: _mapped(s, r, 1), return_dtype=pl.Utf8, is_elementwise=True)


def normalise_qualitative(
    expr: pl.Expr, words: pl.DataFrame | QualitativeReader | None = None
) -> tuple[pl.Expr, pl.Expr]:
    """(result_qual, result_class) expressions for ``expr``, aliased with those names. ``words``:
    the operator's extra words (``load_qualitative_words``), or a reader built on them."""
    return qualifier_code(expr, words).alias("result_qual"), qualitative_class(expr, words).alias("result_class")


# --- the operator's words ---------------------------------------------------------------------------
QUALITATIVE_DIR = "qualitative"  # sub-folder of a mappings directory holding the words files
WORDS_SCHEMA = pl.Schema({"text": pl.Utf8(), "key": pl.Utf8(), "code": pl.Utf8(), "origin": pl.Utf8()})


class QualitativeWordsError(ValueError):
    """A qualitative words file is invalid; the message names file and line."""

    def __init__(self, issues: list[tuple[str, str]]):
        self.issues = issues
        super().__init__(f"{len(issues)} qualitative word problem(s):\n"
                         + "\n".join(f"{o}: {m}" for o, m in issues[:50]))


def load_qualitative_words(dirs: Sequence[Path]) -> pl.DataFrame:
    """The operator's extra words: every ``<dir>/qualitative/*.csv`` of ``dirs`` (columns ``text``,
    ``meaning`` and optionally ``note``; ``,`` or ``;`` separated, UTF-8). ``meaning`` is one of
    ``MEANINGS`` (positive, not_detected, equivocal...) or one of the SNOMED CT codes above. A
    later directory overrides an earlier one for the same normalised text; within one directory a
    text given two meanings is an error. Returns ``WORDS_SCHEMA`` rows (key = normalised text).
    Raises ``QualitativeWordsError`` naming file and line."""
    issues: list[tuple[str, str]] = []
    chosen: dict[str, dict] = {}
    for d in dirs:
        folder = Path(d) / QUALITATIVE_DIR
        if not folder.is_dir():
            continue
        layer: dict[str, dict] = {}
        for path in sorted(p for p in folder.iterdir() if p.suffix.lower() == ".csv"):
            try:
                reader = operator_csv(path)
            except OperatorFileError as err:
                issues.append((err.origin, err.problem))
                continue
            header = reader.fieldnames
            if "text" not in header or "meaning" not in header:
                issues.append((f"{path}:1", "the header must have the columns text and meaning"))
                continue
            for line, rec in enumerate(reader, start=2):
                origin = f"{path}:{line}"
                written = (rec.get("text") or "").strip()
                meaning = (rec.get("meaning") or "").strip()
                if not written and not meaning:
                    continue
                key = normalise_word(written)
                code = MEANINGS.get(meaning.lower().replace(" ", "_").replace("-", "_"),
                                    meaning if meaning in CODE_CLASS else None)
                if not key:
                    issues.append((origin, "empty text"))
                    continue
                if code is None:
                    issues.append((origin, f"meaning {meaning!r} is not one of {sorted(MEANINGS)} "
                                           "nor a qualifier code"))
                    continue
                if key in layer and layer[key]["code"] != code:
                    issues.append((origin, f"{written!r} already has another meaning at {layer[key]['origin']}"))
                    continue
                layer.setdefault(key, {"text": written, "key": key, "code": code, "origin": origin})
        chosen.update(layer)
    if issues:
        raise QualitativeWordsError(issues)
    rows = sorted(chosen.values(), key=lambda r: r["key"])
    return pl.DataFrame(rows, schema=WORDS_SCHEMA) if rows else pl.DataFrame(schema=WORDS_SCHEMA)


_READERS: dict[tuple[tuple[str, str], ...], QualitativeReader] = {}


def reader_for(words: pl.DataFrame | None) -> QualitativeReader:
    """The reader of these operator words (``load_qualitative_words``), cached on their content."""
    if words is None or words.is_empty():
        return DEFAULT_READER
    sig = tuple(sorted(zip(words["key"].to_list(), words["code"].to_list(), strict=True)))
    if sig not in _READERS:
        if len(_READERS) >= 8:
            _READERS.clear()
        _READERS[sig] = QualitativeReader(dict(sig))
    return _READERS[sig]
