"""LOINC suggestions for unmapped local codes: the mapping work queue's first half.

``unmapped_backlog`` groups the results no mapping could code; ``suggest`` ranks LOINC codes for
each backlog row by three pieces of evidence, each reported in ``reasons``:

* the label: the lab's label, normalised (accents, case, punctuation) with its abbreviations and
  French synonyms expanded ('glyc' -> glucose, 'hb' -> hémoglobine, 'plq' -> plaquettes,
  'natrémie' -> sodium), compared with rapidfuzz to the LOINC French display and component and to
  the English display (token_set_ratio, so word order and extra words do not matter, plus
  token_sort_ratio on the component so 'Hémoglobine' prefers the code whose component *is*
  hémoglobine over 'Concentration corpusculaire moyenne en hémoglobine');
  the similarity is scaled by the share of the label's words found in the code's name, so that
  one generic word ('protéine' of 'Protéine C réactive') is no match for the whole label;
* the unit: its dimension against the LOINC property (g/L fits Masse/Volume, G/L fits
  Nombre/Volume; mass <-> molar still fits, less well), a little more when it is the code's
  canonical unit;
* the specimen: sang / sérum-plasma / urine... against the LOINC system; with no specimen stated,
  a code for an unspecified or any respiratory specimen.
Each suggestion carries a ``confidence`` (high, medium, low). A suggestion is a proposal for a
data engineer, never a mapping by itself.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np
import polars as pl
from rapidfuzz import fuzz, process

from transforms.identity_text import MASK
from transforms.terminology.units import (
    UnitTables,
    _cached_factor,
    default_unit_tables,
    dimension_of,
    loinc_unit_table,
    property_dimensions,
    to_ucum,
    unit_fits_property,
    unit_match_key,
)

BACKLOG_KEY = ("source", "local_code", "local_label", "unit_raw")

# Abbreviations and synonyms of French lab labels -> the words LOINC French names use.
# Keys and values are normalised text (no accents, lower case); keys match whole words.
ABBREVIATIONS: dict[str, str] = {
    "glyc": "glucose", "gly": "glucose", "glu": "glucose", "gluc": "glucose", "glycemie": "glucose",
    "glucosemie": "glucose",
    "hb": "hemoglobine", "hgb": "hemoglobine", "hemoglobin": "hemoglobine",
    "hba1c": "hemoglobine a1c", "hbglyquee": "hemoglobine a1c", "glyquee": "a1c",
    "plq": "plaquettes", "plt": "plaquettes", "plaq": "plaquettes", "thrombocytes": "plaquettes",
    "gb": "leucocytes", "leuco": "leucocytes", "leucos": "leucocytes", "wbc": "leucocytes",
    "gr": "erythrocytes", "hematies": "erythrocytes", "hematie": "erythrocytes", "rbc": "erythrocytes",
    "ht": "hematocrite", "hte": "hematocrite", "hct": "hematocrite",
    "vgm": "volume globulaire moyen", "tcmh": "teneur corpusculaire moyenne en hemoglobine",
    "ccmh": "concentration corpusculaire moyenne en hemoglobine", "idr": "indice de distribution erythrocytaire",
    "vpm": "volume moyen plaquettaire",
    "pnn": "polynucleaires neutrophiles", "pne": "polynucleaires eosinophiles",
    "pnb": "polynucleaires basophiles", "neutro": "neutrophiles", "eosino": "eosinophiles",
    "baso": "basophiles", "lympho": "lymphocytes", "lymphos": "lymphocytes", "mono": "monocytes",
    "na": "sodium", "natremie": "sodium", "k": "potassium", "kaliemie": "potassium",
    "cl": "chlorure", "chlore": "chlorure", "chloremie": "chlorure",
    "creat": "creatinine", "crea": "creatinine", "creatininemie": "creatinine",
    "uremie": "uree", "bun": "uree",
    "chol": "cholesterol", "cholesterolemie": "cholesterol", "ct": "cholesterol",
    "tg": "triglycerides", "trig": "triglycerides", "trigly": "triglycerides",
    "bili": "bilirubine", "bilit": "bilirubine totale",
    "alat": "alanine aminotransferase", "tgp": "alanine aminotransferase", "alt": "alanine aminotransferase",
    "asat": "aspartate aminotransferase", "tgo": "aspartate aminotransferase", "ast": "aspartate aminotransferase",
    "ggt": "gamma glutamyltransferase", "gamma gt": "gamma glutamyltransferase",
    "pal": "phosphatases alcalines",
    "prot": "proteines", "proteinemie": "proteines", "alb": "albumine", "albuminemie": "albumine",
    "ferr": "ferritine", "tp": "temps de quick", "tca": "temps de cephaline activee",
    "dfg": "filtration glomerulaire", "egfr": "filtration glomerulaire",
    "crp": "proteine c reactive",
}

# Multi-word abbreviations, replaced before the word-level ones (normalised text, whole words).
PHRASES: dict[str, str] = {
    "taux de prothrombine": "temps de quick", "t c a": "temps de cephaline activee",
    "gamma gt": "gamma glutamyltransferase", "hb glyquee": "hemoglobine a1c",
    "hemoglobine glyquee": "hemoglobine a1c", "globules blancs": "leucocytes",
    "globules rouges": "erythrocytes", "ag hbs": "antigene hbs", "ac anti": "anticorps",
    "sars coronavirus 2": "sars cov 2",  # LOINC's older name of SARS-CoV-2 (94309-2)
    "sars cov 2 covid 19": "sars cov 2", "sars cov 2 covid19": "sars cov 2",  # 'SARS-CoV-2 (COVID-19)'
}

# Most codes of the shipped subset have only an English name: the label is also compared in
# English after this word-for-word glossary (normalised French -> LOINC English words).
GLOSSARY_EN: dict[str, str] = {
    "hemoglobine": "hemoglobin", "plaquettes": "platelets", "leucocytes": "leukocytes",
    "albumine": "albumin", "ferritine": "ferritin", "triglycerides": "triglyceride",
    "uree": "urea", "bilirubine": "bilirubin", "proteines": "protein", "proteine": "protein",
    "chlorure": "chloride", "fer": "iron", "neutrophiles": "neutrophils", "eosinophiles": "eosinophils",
    "basophiles": "basophils", "anticorps": "ab", "antigene": "ag", "hbs": "hepatitis b virus surface",
    "hepatite": "hepatitis", "rougeole": "measles", "legionelle": "legionella", "urinaire": "urine",
    "mycobacteries": "mycobacterium", "tuberculose": "tuberculosis", "meningocoque": "neisseria meningitidis",
    "arn": "rna", "adn": "dna", "pcr": "naa", "sang": "blood", "serum": "serum", "urine": "urine",
    "virus": "virus", "vha": "hepatitis a virus", "vhb": "hepatitis b virus", "vhc": "hepatitis c virus",
    "vih": "hiv", "rubeole": "rubella", "oreillons": "mumps", "varicelle": "varicella",
    "coqueluche": "bordetella pertussis", "grippe": "influenza",
}

# Specimen words -> a family compared with the LOINC system.
SPECIMEN_FAMILIES: dict[str, tuple[str, ...]] = {
    "BLOOD": ("sang", "blood", "bld", "sg", "st", "sang total", "erythrocytes", "sang veineux"),
    "SERPL": ("serum", "plasma", "ser", "pl", "serum/plasma", "ser/plas", "serum or plasma", "plasma pauvre en plaquettes"),
    "URINE": ("urine", "urines", "ur", "uri", "urine de 24h"),
    "CSF": ("lcr", "csf", "cerebral spinal fluid", "liquide cephalo rachidien"),
    "RESP": ("np", "nasopharynx", "nasopharyngeal", "respiratory", "nez", "nose", "gorge", "expectoration",
             "sputum", "crachat", "saliva", "salive"),
}

SUGGESTION_COLUMNS = (
    "rank", "loinc_num", "display", "score", "confidence", "label_score", "unit_fit", "specimen_fit", "reasons",
)


def normalise_label(text: str | None) -> str:
    """Lower case, no accents, punctuation to spaces, abbreviations expanded, spaces collapsed; an
    identity masked before staging ('[masqué]', transforms/identity_text.py) is no word of the label."""
    if not text:
        return ""
    text = text.replace(MASK, " ")
    s = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)).lower()
    s = re.sub(r"(\w)-(\w)", r"\1 \2", s)
    s = " " + re.sub(r"[^a-z0-9+ ]+", " ", s) + " "
    s = re.sub(r"\s+", " ", s)
    for phrase in sorted(PHRASES, key=len, reverse=True):
        s = s.replace(f" {phrase} ", f" {PHRASES[phrase]} ")
    words = s.split()
    out: list[str] = []
    i = 0
    while i < len(words):
        pair = " ".join(words[i : i + 2])
        if pair in ABBREVIATIONS:
            out.append(ABBREVIATIONS[pair])
            i += 2
            continue
        out.append(ABBREVIATIONS.get(words[i], words[i]))
        i += 1
    return " ".join(out)


def _match_text(text: str | None) -> str:
    """normalise_label plus plural 's' dropped (triglycérides ~ triglyceride, plaquettes ~ plaquette)."""
    return " ".join(w[:-1] if len(w) > 3 and w.endswith("s") else w for w in normalise_label(text).split())


def _english(match_text: str) -> str:
    words = [GLOSSARY_EN.get(w, GLOSSARY_EN.get(w + "s", w)) for w in match_text.split()]
    return " ".join(w[:-1] if len(w) > 3 and w.endswith("s") else w for w in " ".join(words).split())


def _family(text: str | None) -> str | None:
    if not text:
        return None
    t = normalise_label(text).replace(" ", "")
    for fam, words in SPECIMEN_FAMILIES.items():
        if any(t == w.replace(" ", "").replace("/", "") for w in words):
            return fam
    return None


def unmapped_backlog(df: pl.DataFrame) -> pl.DataFrame:
    """Unmapped results grouped by (source, local_code, local_label, unit_raw): n_results,
    first_seen, last_seen (collection times) and the specimen most seen; most frequent first."""
    cols = [*BACKLOG_KEY, "n_results", "first_seen", "last_seen", "specimen"]
    un = df.filter(pl.col("mapping_status") == "unmapped")
    if un.height == 0:
        return pl.DataFrame(schema={c: df.schema.get(c, pl.Utf8) for c in BACKLOG_KEY} | {
            "n_results": pl.UInt32, "first_seen": df.schema["collected_at"], "last_seen": df.schema["collected_at"],
            "specimen": pl.Utf8})
    return (
        un.group_by(list(BACKLOG_KEY))
        .agg(
            n_results=pl.len(),
            first_seen=pl.col("collected_at").min(),
            last_seen=pl.col("collected_at").max(),
            specimen=pl.col("specimen").drop_nulls().mode().sort().first(),
        )
        .sort(["n_results", "source", "local_code"], descending=[True, False, False], nulls_last=True)
        .select(cols)
    )


# words of a LOINC component that name no organism: what is left names the pathogen of a
# surveillance test ('Measles virus IgM Ab' -> measle; 'SARS-CoV-2 (COVID-19) RNA' -> sar, cov, covid;
# words compared as ``_match_text`` makes them, plural 's' dropped)
_NOT_ORGANISM = frozenset(_match_text(
    "virus ab ag igm igg iga ige rna dna antigen antibody antibodies presence specimen serum plasma urine blood "
    "complex group type and or sp spp species by with without total nucleic acid gene toxin stx stx1 stx2 "
    "isolate culture organism specific identified protein abnormal").split())


def _organism_words(display_en: str | None) -> set[str]:
    """The words naming the organism in an English LOINC display (the component, before ' [')."""
    return {w for w in _label_words((display_en or "").split(" [")[0])
            if len(w) >= 3 and not w.isdigit() and w not in _NOT_ORGANISM}


def _label_words(text: str | None) -> set[str]:
    """The words of a label as written (lower case, no accents), as ``_match_text`` makes them
    (abbreviations expanded: 'VHA' -> hepatite a virus) and in English ('rougeole' -> measle): a
    phrase rule may rewrite a name ('SARS-CoV-2 (COVID-19)' -> 'sar cov 2'), so all three count."""
    matched = _match_text(text)
    plain = "".join(c for c in unicodedata.normalize("NFKD", text or "") if not unicodedata.combining(c)).lower()
    return set(re.sub(r"[^a-z0-9]+", " ", plain).split()) | set(matched.split()) | set(_english(matched).split())


def surveillance_hints(backlog: pl.DataFrame, loinc: pl.DataFrame, surveillance: pl.DataFrame,
                       units: UnitTables | None = None, k: int = 5) -> pl.DataFrame:
    """``backlog`` (``unmapped_backlog``) plus ``surveillance_loinc`` and ``surveillance``: for an
    item whose label reads like a test SI-DEP or MDO counts, the code among those tests' codes only
    (``surveillance``: loinc_code, surveillance, as ``unrecognised.surveillance_codes``) that it looks
    like, and what that code counts in; null for the other items.

    An item reads like such a test when one of its ``k`` best suggestions among those codes names
    an organism the label names too (in French or English: 'Rougeole IgM' and 'Measles virus IgM
    Ab', 'Ag urinaire Légionelle' and 'Legionella sp Ag'); the best ranked such suggestion is kept.
    Similarity alone would not do: against a pool of infectious-disease tests, 'Ag HBs' is nearest to
    'Rabies virus Ag', and 'PCR SARS-CoV-2 (écouvillon nasopharyngé)' scores low for its extra words.

    An unmapped SARS-CoV-2 or measles code is missing from the published counts, and nothing but
    its volume in the work queue said so: the run and the quality gate now name these items."""
    hint_schema = {"surveillance_loinc": pl.Utf8, "surveillance": pl.Utf8}
    empty = backlog.with_columns([pl.lit(None, dtype=t).alias(c) for c, t in hint_schema.items()])
    if backlog.is_empty() or surveillance.is_empty():
        return empty
    pool = loinc.filter(pl.col("loinc_num").is_in(surveillance["loinc_code"].implode()))
    if pool.is_empty():
        return empty
    # only the items naming some organism of the pool are ranked (exact: a hint needs one; the
    # ranking costs a few ms per item, and a backlog can hold thousands)
    organisms = set().union(*(_organism_words(en) for en in pool["display_en"].to_list()))
    naming = [bool(_label_words(x) & organisms) for x in backlog["local_label"].to_list()]
    candidates = backlog.filter(pl.Series(naming, dtype=pl.Boolean))
    if candidates.is_empty():
        return empty
    best = suggest(candidates.select(*BACKLOG_KEY, "specimen"), pool, k=k, units=units)
    if best.is_empty():
        return empty
    best = best.join(pool.select("loinc_num", pl.col("display_en").alias("_en")), on="loinc_num", how="left")
    label_words = [_label_words(x) for x in best["local_label"].to_list()]
    named = [bool(_organism_words(en) & words) for en, words in zip(best["_en"].to_list(), label_words, strict=True)]
    best = (best.filter(pl.Series(named, dtype=pl.Boolean))
            .sort("rank")
            .join(surveillance, left_on="loinc_num", right_on="loinc_code", how="inner")
            .select(*BACKLOG_KEY, pl.col("loinc_num").alias("surveillance_loinc"), "surveillance")
            .unique(list(BACKLOG_KEY), keep="first", maintain_order=True))
    return backlog.join(best, on=list(BACKLOG_KEY), how="left", nulls_equal=True, maintain_order="left")


def _mapped_unique(series: pl.Series, fn) -> pl.Series:
    """``fn`` applied once per distinct value of a text series (LOINC names repeat their parts)."""
    uniq = series.drop_nulls().unique().to_list()
    return series.replace_strict({u: fn(u) for u in uniq}, default=None, return_dtype=pl.Utf8).fill_null("")


# LOINC systems that name no particular specimen: preferred when the lab states none
GENERIC_SYSTEMS = frozenset({"xxx", "specimen", "unspecified specimen", "respiratory", "respiratory specimen",
                             "respiratory system specimen", "echantillon", "prelevement", "voie respiratoire",
                             "voies respiratoires", "prelevement respiratoire", "xxx respiratoire"})


def merge_unit_spellings(backlog: pl.DataFrame, units: UnitTables | None = None) -> pl.DataFrame:
    """One work-queue item per (source, local_code, local_label, unit as biolake reads it): backlog
    rows whose units are the same once normalised (``unit_match_key``: 'g/L' and 'g/l', 'umol/L'
    and 'µmol/l'; not 'G/L', giga per litre) become one, with ``n_results`` summed, the earliest
    ``first_seen``, the latest ``last_seen``, the unit spelling and specimen of the row with the
    most results, and ``unit_spellings``: every spelling met, most results first, ';'-joined (null
    when there is one). Most results first, as ``unmapped_backlog``. A mapping written with any one
    spelling applies to them all."""
    if backlog.is_empty():
        return backlog.with_columns(unit_spellings=pl.lit(None, dtype=pl.Utf8))
    keyed = backlog.with_columns(_ukey=unit_match_key(backlog["unit_raw"], units)).sort(
        ["n_results", "unit_raw"], descending=[True, False], nulls_last=True)
    group = ["source", "local_code", "local_label", "_ukey"]
    merged = keyed.group_by(group, maintain_order=True).agg(
        pl.col("unit_raw").first(),
        pl.col("n_results").sum(),
        pl.col("first_seen").min(),
        pl.col("last_seen").max(),
        pl.col("specimen").first(),
        pl.col("unit_raw").drop_nulls().unique(maintain_order=True).alias("_spellings"),
        *[pl.col(c).first() for c in backlog.columns  # e.g. the surveillance hint: the same label's
          if c not in (*group, "unit_raw", "n_results", "first_seen", "last_seen", "specimen")],
    )
    merged = merged.with_columns(
        unit_spellings=pl.when(pl.col("_spellings").list.len() > 1).then(pl.col("_spellings").list.join("; ")),
        n_results=pl.col("n_results").cast(backlog.schema["n_results"]),
    )
    return (merged.sort(["n_results", "source", "local_code"], descending=[True, False, False], nulls_last=True)
            .select(*backlog.columns, "unit_spellings"))


def _candidates(loinc: pl.DataFrame, units: UnitTables) -> pl.DataFrame:
    """The codes a suggestion may propose (an official code marked DEPRECATED never is), with their
    names normalised for matching, their property class and canonical unit, and the specimen
    families their system names (``_fam_*``)."""
    per_code = loinc_unit_table(loinc, units).select(
        "loinc_num", pl.col("property_class").alias("_pc"), pl.col("canonical_ucum").alias("_canon"),
        pl.col("molar_mass_g_per_mol").alias("_mw"))
    en_component = pl.coalesce(pl.col("display_en").str.extract(r"^([^\[]+)\["), pl.col("display_en"))
    status = pl.col("status").str.to_uppercase() if "status" in loinc.columns else pl.lit(None, dtype=pl.Utf8)
    cand = (
        loinc.filter((status != "DEPRECATED").fill_null(True))
        .join(per_code, on="loinc_num", how="left", maintain_order="left")
        .select(
            "loinc_num",
            pl.coalesce("display_fr", "display_en", pl.lit("")).alias("display"),
            "display_fr", "component_fr", "display_en", "system", "property",
            pl.coalesce("property_class", "_pc").alias("property_class"),
            "_canon", "_mw",
            en_component.alias("_en_component"),
        )
    )
    cand = cand.with_columns(
        [
            _mapped_unique(cand[src], _match_text).alias(dst)
            for src, dst in (("display_fr", "_fr"), ("component_fr", "_comp"), ("display_en", "_en"),
                             ("_en_component", "_en_comp"))
        ]
        + [_mapped_unique(cand["system"], normalise_label).alias("_sys")]
    )
    en = pl.col("display_en").fill_null("").str.to_lowercase()
    sys_text = pl.col("_sys")
    return cand.with_columns(
        _fam_BLOOD=sys_text.str.contains(r"\bsang\b") | en.str.contains(r"\bin blood\b|\bbld\b"),
        _fam_SERPL=sys_text.str.contains("serum|plasma") | en.str.contains(r"serum|plasma|ser/plas"),
        _fam_URINE=sys_text.str.contains("urine") | en.str.contains("urine"),
        _fam_CSF=sys_text.str.contains(r"\blcr\b") | en.str.contains("cerebral spinal fluid"),
        _fam_RESP=en.str.contains(r"respiratory|nasopharynx|nose|saliva|sputum|throat|upper respiratory"),
        _generic=sys_text.is_in(list(GENERIC_SYSTEMS))
        | en.str.contains(r"\bin (?:unspecified specimen|specimen|respiratory (?:system )?specimen)\b"),
    )


FAMILIES = ("BLOOD", "SERPL", "URINE", "CSF", "RESP")

# Words of a label that say nothing about the analyte: left out of the label-coverage check.
FILLER_WORDS = frozenset({
    "a", "au", "aux", "d", "de", "des", "du", "en", "et", "l", "la", "le", "les", "par", "pour", "sur", "dans",
    "avec", "un", "une", "the", "of", "in", "by", "and", "or", "taux", "dosage", "recherche", "test", "examen",
    "analyse", "resultat", "valeur", "mesure",
})
FUZZY_WORD_MIN = 5  # label words this long may match a name word spelt slightly differently
FUZZY_WORD_CUTOFF = 90  # fuzz.ratio: proteine ~ protein (93), but creatine !~ creatinine (89)
COMPOUND_WORD_MIN = 7  # ...or be whole words of the name written together (glutamyltransferase)


class _Coverage:
    """Which candidates' names hold a given label word: exactly, spelt slightly differently
    (ratio >= FUZZY_WORD_CUTOFF), as whole words of the name written together, or through the
    French -> English glossary (every word of the gloss). One boolean vector per distinct word,
    memoised."""

    def __init__(self, cand: pl.DataFrame):
        words = (
            cand.select(pl.int_range(pl.len(), dtype=pl.UInt32).alias("j"),
                        pl.concat_str(["_fr", "_comp", "_en"], separator=" ").str.split(" ").alias("w"))
            .explode("w").filter(pl.col("w") != "").unique()
            .group_by("w").agg("j")
        )
        self.n = cand.height
        self.index: dict[str, np.ndarray] = dict(zip(words["w"].to_list(),
                                                     (np.asarray(j) for j in words["j"].to_list()), strict=True))
        self.vocab = list(self.index)
        self.text = cand.select(pl.concat_str(["_fr", "_comp", "_en"], separator=" ")).to_series()
        self.memo: dict[str, np.ndarray] = {}

    def _plain(self, word: str) -> np.ndarray:
        hit = np.zeros(self.n, dtype=bool)
        near = [word]
        if len(word) >= FUZZY_WORD_MIN:
            near = [w for w, _, _ in process.extract(word, self.vocab, scorer=fuzz.ratio,
                                                     score_cutoff=FUZZY_WORD_CUTOFF, limit=None)] or [word]
        for w in near:
            if w in self.index:
                hit[self.index[w]] = True
        if len(word) >= COMPOUND_WORD_MIN:  # 'glutamyltransferase' ~ 'glutamyl transferase', not 'methemoglobin'
            pattern = r"\b" + " ?".join(re.escape(c) for c in word) + r"\b"
            hit |= self.text.str.contains(pattern).fill_null(False).to_numpy()
        return hit

    def of(self, word: str) -> np.ndarray:
        if word not in self.memo:
            hit = self._plain(word)
            gloss = _english(word).split()
            if gloss and gloss != [word]:
                both = np.ones(self.n, dtype=bool)
                for g in gloss:
                    both &= self._plain(g)
                hit = hit | both
            self.memo[word] = hit
        return self.memo[word]


def _content_words(match_text: str) -> list[str]:
    seen: list[str] = []
    for w in match_text.split():
        if w not in FILLER_WORDS and w not in seen:
            seen.append(w)
    return seen


HIGH, MEDIUM, LOW = "high", "medium", "low"


def _confidence(label_score: float, coverage: float, unit_fit: float, spec_fit: float) -> str:
    """high: every word of the label is in the code's name, a close name, no contradicting unit or
    specimen; low: a word of the label missing from a short label or most of it, a weak name match,
    or a unit that cannot be converted; medium otherwise."""
    if coverage < 0.75 or label_score < 60 or unit_fit < 0:
        return LOW
    if coverage >= 1 and label_score >= 85 and spec_fit >= 0:
        return HIGH
    return MEDIUM


def _similarity(label: str, label_en: str, names: dict[str, list[str]], pool: np.ndarray | None) -> np.ndarray:
    """Name similarity (0-100) of one label with the candidates ``pool`` (None: all): rapidfuzz
    token_set_ratio (word order and extra words of the name do not matter) against the French
    display and component and, glossed, the English display (weighted 0.95: a French name is the
    better evidence), blended with token_sort_ratio on the component, which prefers the code whose
    component *is* the label."""
    pick = (lambda c: names[c]) if pool is None else (lambda c: [names[c][j] for j in pool])  # noqa: E731
    best_set = None
    for query, col, weight in ((label, "_fr", 1.0), (label, "_comp", 1.0), (label_en, "_en", 0.95)):
        m = process.cdist([query], pick(col), scorer=fuzz.token_set_ratio, workers=-1)[0] * weight
        best_set = m if best_set is None else best_set.clip(min=m)
    sort_fr = process.cdist([label], pick("_comp"), scorer=fuzz.token_sort_ratio, workers=-1)[0]
    sort_en = process.cdist([label_en], pick("_en_comp"), scorer=fuzz.token_sort_ratio, workers=-1)[0] * 0.95
    return 0.7 * best_set + 0.3 * sort_fr.clip(min=sort_en)


def suggest(
    backlog: pl.DataFrame,
    loinc: pl.DataFrame,
    k: int = 5,
    units: UnitTables | None = None,
    shortlist: int = 60,
    rejected: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Top ``k`` LOINC suggestions per backlog row: backlog columns + ``SUGGESTION_COLUMNS``.

    score = label_score + unit_fit + specimen_fit, where
    * label_score = the name similarity (0-100) x (0.5 + 0.5 x coverage), coverage being the share
      of the label's words (fillers left out) found in the code's name: a code that matches one
      generic word of a longer label ('protéine' of 'Protéine C réactive') loses up to half;
    * unit_fit: +15 same dimension, +8 convertible mass <-> molar, -25 contradicting, +5 no unit on
      a qualitative code, 0 unknown; +3 more when the unit is the code's canonical unit up to a
      factor 1 (G/L on a blood count, not on a urine count in /mL);
    * specimen_fit: +10 same family, -10 other family; +3 when the lab states no specimen and the
      code is for an unspecified or any respiratory specimen.
    ``confidence`` (high, medium, low, see ``_confidence``) says how far the name supports the code.
    ``rejected`` (source, local_code, unit_key, loinc_num; ``workqueue.load_rejections``): codes an
    engineer rejected for that local code and unit (any unit when unit_key is null); they are never
    proposed again, and the column ``rejected_before`` lists them per item.
    Codes marked DEPRECATED in the official table are never proposed.
    """
    units = units or default_unit_tables()
    cand = _candidates(loinc, units)
    labels = [_match_text(x) for x in backlog["local_label"].to_list()]
    labels_en = [_english(x) for x in labels]
    names = {c: cand[c].to_list() for c in ("_fr", "_comp", "_en", "_en_comp")}
    cover = _Coverage(cand)

    pcs = cand["property_class"].to_list()
    props = cand["property"].to_list()
    canons, masses = cand["_canon"].to_list(), cand["_mw"].to_list()
    fam_cols = [cand[f"_fam_{f}"].to_list() for f in FAMILIES]
    fams = [{f for f, col in zip(FAMILIES, fam_cols, strict=True) if col[j]} for j in range(cand.height)]
    generic = cand["_generic"].to_list()
    codes, displays = cand["loinc_num"].to_list(), cand["display"].to_list()
    position = {c: j for j, c in enumerate(codes)}
    refused: dict[tuple, set[str]] = {}
    if rejected is not None:
        for src, code, ukey, num in rejected.select("source", "local_code", "unit_key", "loinc_num").iter_rows():
            refused.setdefault((src, code, ukey), set()).add(num)
    unit_keys = unit_match_key(backlog["unit_raw"], units).to_list() if "unit_raw" in backlog.columns else None
    rows = []
    everyone = np.arange(cand.height)
    for i, rec in enumerate(backlog.iter_rows(named=True)):
        ucum = to_ucum(rec.get("unit_raw"), units)
        fam = _family(rec.get("specimen"))
        words = _content_words(labels[i])
        hits = [cover.of(w) for w in words]
        # the codes whose name holds a word of the label (all of them when fewer than k do): the
        # name similarity of the others is not worth computing, their coverage is 0
        pool = np.flatnonzero(np.any(hits, axis=0)) if words else everyone
        if pool.size < k:
            pool = everyone
        sim = np.zeros(cand.height)
        sim[pool] = _similarity(labels[i], labels_en[i], names, None if pool is everyone else pool)
        coverage = (np.sum(hits, axis=0) / len(words)) if words else np.ones(cand.height)
        label_scores = np.full(cand.height, -np.inf)
        label_scores[pool] = sim[pool] * (0.5 + 0.5 * coverage[pool])
        ukey = unit_keys[i] if unit_keys is not None else None
        refused_here = refused.get((rec["source"], rec["local_code"], ukey), set()) | refused.get(
            (rec["source"], rec["local_code"], None), set())
        for gone in refused_here:
            if gone in position:
                label_scores[position[gone]] = -np.inf
        order = [j for j in label_scores.argsort()[::-1][:shortlist] if np.isfinite(label_scores[j])]
        scored = []
        for j in order:
            label_score = float(label_scores[j])
            missing = [w for w, hit in zip(words, hits, strict=True) if not hit[j]]
            reasons = [f"label {label_score:.0f}" + (f" (label words not in the name: {', '.join(missing)})"
                                                     if missing else "")]
            unit_fit = 0.0
            fits = unit_fits_property(ucum, pcs[j]) if ucum else None
            if fits is True:
                exact = dimension_of(ucum) in _exact_dims(pcs[j])
                unit_fit = 15.0 if exact else 8.0
                reasons.append(f"unit {ucum} fits {props[j] or pcs[j]}" + ("" if exact else " via molar mass"))
                factor, _ = _cached_factor(ucum, canons[j], masses[j], pcs[j]) if canons[j] else (None, None)
                if factor == 1.0:
                    unit_fit += 3.0
                    reasons.append(f"{ucum} is the code's usual unit" + ("" if ucum == canons[j] else f" ({canons[j]})"))
            elif fits is False:
                unit_fit = -25.0
                reasons.append(f"unit {ucum} does not fit {props[j] or pcs[j]}")
            elif ucum is None and rec.get("unit_raw") is None and pcs[j] in ("PRTHR", "PRID", "TITR", "TYPE"):
                unit_fit = 5.0
                reasons.append(f"no unit, qualitative property {props[j] or pcs[j]}")
            spec_fit = 0.0
            if fam and fams[j]:
                if fam in fams[j]:
                    spec_fit = 10.0
                    reasons.append(f"specimen {rec.get('specimen')} matches")
                else:
                    spec_fit = -10.0
                    reasons.append(f"specimen {rec.get('specimen')} differs")
            elif not rec.get("specimen") and generic[j]:
                spec_fit = 3.0
                reasons.append("no specimen stated, code for any specimen")
            score = round(label_score + unit_fit + spec_fit, 1)
            cov = float(coverage[j])
            scored.append((score, round(label_score, 1), unit_fit, spec_fit, codes[j], displays[j],
                           _confidence(float(sim[j]), cov, unit_fit, spec_fit), "; ".join(reasons)))
        # ties: the plainer name first (718-7 'Hémoglobine ... Sang' before 20509-6 '... calculé')
        scored.sort(key=lambda t: (-t[0], -t[1], len(t[5]), t[4]))
        for rank, (score, ls, uf, sf, code, disp, conf, why) in enumerate(scored[:k], start=1):
            rows.append({**rec, "rank": rank, "loinc_num": code, "display": disp, "score": score,
                         "confidence": conf, "label_score": ls, "unit_fit": uf, "specimen_fit": sf, "reasons": why}
                        | ({"rejected_before": "; ".join(sorted(refused_here)) or None} if rejected is not None else {}))
    schema = dict(backlog.schema) | {
        "rank": pl.Int32, "loinc_num": pl.Utf8, "display": pl.Utf8, "score": pl.Float64, "confidence": pl.Utf8,
        "label_score": pl.Float64, "unit_fit": pl.Float64, "specimen_fit": pl.Float64, "reasons": pl.Utf8,
    } | ({"rejected_before": pl.Utf8} if rejected is not None else {})
    return pl.DataFrame(rows, schema=schema)


def _exact_dims(property_class: str | None) -> frozenset[str]:
    return property_dimensions(property_class) if property_class else frozenset()
