"""LOINC suggestions for unmapped local codes: the mapping work queue's first half.

``unmapped_backlog`` groups the results no mapping could code; ``suggest`` ranks LOINC codes for
each backlog row by three pieces of evidence, each reported in ``reasons``:

* the label: the lab's label, normalised (accents, case, punctuation) with its abbreviations and
  French synonyms expanded ('glyc' -> glucose, 'hb' -> hémoglobine, 'plq' -> plaquettes,
  'natrémie' -> sodium), compared with rapidfuzz to the LOINC French display and component and to
  the English display (token_set_ratio, so word order and extra words do not matter, plus
  token_sort_ratio on the component so 'Hémoglobine' prefers the code whose component *is*
  hémoglobine over 'Concentration corpusculaire moyenne en hémoglobine');
* the unit: its dimension against the LOINC property (g/L fits Masse/Volume, G/L fits
  Nombre/Volume; mass <-> molar still fits, less well);
* the specimen: sang / sérum-plasma / urine... against the LOINC system.
A suggestion is a proposal for a data engineer, never a mapping by itself.
"""

from __future__ import annotations

import re
import unicodedata

import polars as pl
from rapidfuzz import fuzz, process

from transforms.identity_text import MASK
from transforms.terminology.units import (
    UnitTables,
    default_unit_tables,
    dimension_of,
    loinc_unit_table,
    property_dimensions,
    to_ucum,
    unit_fits_property,
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
    "rank", "loinc_num", "display", "score", "label_score", "unit_fit", "specimen_fit", "reasons",
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


def _loinc_families(system: str | None, display_en: str | None) -> set[str]:
    fams: set[str] = set()
    sys_text = normalise_label(system)
    en = (display_en or "").lower()
    if "sang" in sys_text or re.search(r"\bin blood\b|\bbld\b", en):
        fams.add("BLOOD")
    if any(w in sys_text for w in ("serum", "plasma")) or re.search(r"serum|plasma|ser/plas", en):
        fams.add("SERPL")
    if "urine" in sys_text or "urine" in en:
        fams.add("URINE")
    if "cerebral spinal fluid" in en or "lcr" in sys_text:
        fams.add("CSF")
    if re.search(r"respiratory|nasopharynx|nose|saliva|sputum|throat|upper respiratory", en):
        fams.add("RESP")
    return fams


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


def _candidates(loinc: pl.DataFrame, units: UnitTables) -> pl.DataFrame:
    classes = loinc_unit_table(loinc, units).select("loinc_num", pl.col("property_class").alias("_pc"))
    en_component = pl.coalesce(pl.col("display_en").str.extract(r"^([^\[]+)\["), pl.col("display_en"))
    return (
        loinc.join(classes, on="loinc_num", how="left", maintain_order="left")
        .select(
            "loinc_num",
            pl.coalesce("display_fr", "display_en", pl.lit("")).alias("display"),
            "display_fr", "component_fr", "display_en", "system", "property",
            pl.coalesce("property_class", "_pc").alias("property_class"),
            en_component.alias("_en_component"),
        )
        .with_columns(
            [
                pl.col(src).map_elements(_match_text, return_dtype=pl.Utf8).fill_null("").alias(dst)
                for src, dst in (("display_fr", "_fr"), ("component_fr", "_comp"), ("display_en", "_en"),
                                 ("_en_component", "_en_comp"))
            ]
        )
    )


def suggest(
    backlog: pl.DataFrame,
    loinc: pl.DataFrame,
    k: int = 5,
    units: UnitTables | None = None,
    shortlist: int = 60,
) -> pl.DataFrame:
    """Top ``k`` LOINC suggestions per backlog row: backlog columns + ``SUGGESTION_COLUMNS``.

    score = label_score (0-100) + unit_fit (+15 same dimension, +8 convertible mass<->molar,
    -25 contradicting, 0 unknown) + specimen_fit (+10 same family, -10 other family, 0 unknown).
    """
    units = units or default_unit_tables()
    cand = _candidates(loinc, units)
    labels = [_match_text(x) for x in backlog["local_label"].to_list()]
    labels_en = [_english(x) for x in labels]
    # (label variant, LOINC field, weight): English names compared with the glossed label and
    # weighted a little lower (a French name, when it exists, is the better evidence)
    fields = [
        (labels, cand["_fr"].to_list(), 1.0),
        (labels, cand["_comp"].to_list(), 1.0),
        (labels_en, cand["_en"].to_list(), 0.95),
    ]
    # token_set_ratio: word order and extra words do not matter (label words found in the name)
    best_set = None
    for queries, choices, weight in fields:
        m = process.cdist(queries, choices, scorer=fuzz.token_set_ratio, workers=1) * weight
        best_set = m if best_set is None else best_set.clip(min=m)
    # token_sort_ratio on the component: prefers the code whose component *is* the label
    sort_fr = process.cdist(labels, cand["_comp"].to_list(), scorer=fuzz.token_sort_ratio, workers=1)
    sort_en = process.cdist(labels_en, cand["_en_comp"].to_list(), scorer=fuzz.token_sort_ratio, workers=1) * 0.95
    label_scores = 0.7 * best_set + 0.3 * sort_fr.clip(min=sort_en)

    pcs = cand["property_class"].to_list()
    props = cand["property"].to_list()
    fams = [_loinc_families(s, e) for s, e in zip(cand["system"].to_list(), cand["display_en"].to_list(), strict=True)]
    codes, displays = cand["loinc_num"].to_list(), cand["display"].to_list()
    rows = []
    for i, rec in enumerate(backlog.iter_rows(named=True)):
        ucum = to_ucum(rec.get("unit_raw"), units)
        fam = _family(rec.get("specimen"))
        order = label_scores[i].argsort()[::-1][:shortlist]
        scored = []
        for j in order:
            label_score = float(label_scores[i][j])
            reasons = [f"label {label_score:.0f}"]
            unit_fit = 0.0
            fits = unit_fits_property(ucum, pcs[j]) if ucum else None
            if fits is True:
                exact = dimension_of(ucum) in _exact_dims(pcs[j])
                unit_fit = 15.0 if exact else 8.0
                reasons.append(f"unit {ucum} fits {props[j] or pcs[j]}" + ("" if exact else " via molar mass"))
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
            score = round(label_score + unit_fit + spec_fit, 1)
            scored.append((score, round(label_score, 1), unit_fit, spec_fit, codes[j], displays[j], "; ".join(reasons)))
        # ties: the plainer name first (718-7 'Hémoglobine ... Sang' before 20509-6 '... calculé')
        scored.sort(key=lambda t: (-t[0], -t[1], len(t[5]), t[4]))
        for rank, (score, ls, uf, sf, code, disp, why) in enumerate(scored[:k], start=1):
            rows.append({**rec, "rank": rank, "loinc_num": code, "display": disp, "score": score,
                         "label_score": ls, "unit_fit": uf, "specimen_fit": sf, "reasons": why})
    schema = dict(backlog.schema) | {
        "rank": pl.Int32, "loinc_num": pl.Utf8, "display": pl.Utf8, "score": pl.Float64,
        "label_score": pl.Float64, "unit_fit": pl.Float64, "specimen_fit": pl.Float64, "reasons": pl.Utf8,
    }
    return pl.DataFrame(rows, schema=schema)


def _exact_dims(property_class: str | None) -> frozenset[str]:
    return property_dimensions(property_class) if property_class else frozenset()
