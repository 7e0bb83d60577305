"""Deterministic synthetic lab extracts (CSV, or per lab HL7 v2, CR-BIO CDA, HPRIM) plus their truth.

Everything random comes from one numpy ``SeedSequence(seed)``; the work is vectorised with numpy
and polars (per-row Python only for the few hundred malformed lines, and in formats.py for the labs
written as HL7 v2, CDA or HPRIM). The model:

1. persons: (département, age class) drawn from seeds/reference/population.csv, commune uniform
   within the département (communes.csv rows), a NIR consistent with sex and birth year/month;
2. requests: regular panels (NFS, ionogramme, ...), SARS-CoV-2 PCR or antigen tests, plus a few
   hand-made scenario persons (re-infection, same episode, same-day antigen + PCR ...), some of
   whose positives are collected 59-90 days before ``start`` (delivered in files of those days);
3. results: values in the lab's unit, qualitative words with natural variation;
4. corrections (STATUT C, later file), then at most one injected defect per row;
5. rendering, one file per lab and validation day, a few files re-delivered (``_renvoi``): CSV by
   default; a lab given another format (``formats``) has its rows written by formats.py as HL7 v2.5
   ORU^R01, CR-BIO CDA or HPRIM Santé, without the defects only a CSV line can carry (malformed
   line, duplicated line, impossible calendar date), and the truth's ``line_no`` is the physical
   line where each result starts (its OBX, or its ``<observation>``);
6. truth: rows.parquet, sidep_daily.csv, summary.json, generated_landing_files.json (the landing files
   written, with their sha256: `biolake demo` refuses a landing holding any other file).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl

from transforms.parsers.detect import FORMATS

from . import formats as _formats
from . import vocab
from .seeds import CL_AGE90, Seeds, load_seeds
from .truth import sidep_daily, write_sidep

HEADER_FIELDS = (
    "FINESS", "N_DEMANDE", "NIR", "NOM", "PRENOM", "DATE_NAISSANCE", "SEXE", "CODE_POSTAL",
    "DATE_PRELEVEMENT", "DATE_RECEPTION", "DATE_VALIDATION", "CODE_ANALYSE", "LIBELLE_ANALYSE",
    "RESULTAT", "UNITE", "VALEURS_REFERENCE", "STATUT",
)
HEADER = ";".join(HEADER_FIELDS)
COVID_LOINC = ("94500-6", "94558-4")
EPOCH = date(1970, 1, 1)

# Panels requested together in a non-COVID request (Bernoulli each; NFS when none drawn).
PANEL_P = {
    "nfs": 0.60, "ionogramme": 0.50, "bilan_hepatique": 0.30, "bilan_lipidique": 0.25, "glycemie": 0.45,
    "hba1c": 0.10, "proteines": 0.10, "ferritine": 0.10, "coagulation": 0.12, "hepatites": 0.02,
    "rougeole": 0.004, "legionellose": 0.006, "listeriose": 0.003, "meningocoque": 0.003, "dengue": 0.004,
    "chikungunya": 0.003, "tuberculose": 0.005,
}
KIND_P = (0.40, 0.37, 0.23)  # regular, covid PCR, covid antigen
LAB_WEIGHTS = (0.30, 0.22, 0.20, 0.16, 0.12)
REQ_FORMATS = {"labo_alpha": ("ALP", 8), "labo_beta": ("2", 9), "labo_gamma": ("G-", 8),
               "labo_delta": ("D", 9), "labo_epsilon": ("E", 8)}
SEROLOGY_KEYS = frozenset({"hav_igm", "hbs_ag", "measles_igm", "legionella_ag_urine", "dengue_igm", "chik_igm"})
LABS_WITHOUT_REF = frozenset({"labo_delta"})
IMPOSSIBLE_DAY_MONTH = (("31", "02"), ("30", "02"), ("31", "04"), ("31", "06"), ("31", "09"), ("31", "11"),
                        ("30", "13"), ("15", "13"))
SCENARIOS = ("reinfection_gt60", "reinfection_60", "same_episode_59", "repeat_in_window", "same_day_ag_pcr",
             "neg_two_days", "neg_then_pos")
DEFECTS = ("nir_key", "date_invalid", "date_order", "unknown_code", "malformed", "duplicate_row")

# Output formats. A defect that only a CSV line can carry is not injected in a lab writing another
# format: HL7, CDA and HPRIM dates are written from typed values (no 31/02), and a truncated or
# repeated line has no equivalent that the truth could name row by row.
SUFFIXES = {"csv": ".csv", "hl7v2": ".hl7", "cda": ".xml", "hprim": ".hpr"}
CSV_ONLY_DEFECTS = ("malformed", "duplicate_row", "date_invalid")
# formats whose parser refuses each result of a test identity on its own line (a CDA document is
# refused whole, at its first line: not one truth row per result)
TEST_IDENTITY_FORMATS = ("hl7v2", "hprim")
TEST_INS_OID = "1.2.250.1.213.1.4.10"  # INS-NIR of a test patient (transforms/parsers/er7.TEST_INS_OIDS)
# ``biolake demo`` / ``generate --formats mixed``: the three other formats the product reads, the
# two largest labs keeping their CSV extracts
MIXED_FORMATS = {"labo_gamma": "hprim", "labo_delta": "hl7v2", "labo_epsilon": "cda"}
LOINC_SENDING_FORMATS = ("hl7v2", "cda")  # OBX-3 / <code> carry the LOINC, the local code beside it
NIR_OID = "1.2.250.1.213.1.4.8"  # INS built on the NIR (transforms/parsers/er7.INS_OIDS)
_RESULT_START = {"hl7v2": re.compile(r"OBX\|"), "hprim": re.compile(r"OBX\|"),
                 "cda": re.compile(r"<component><observation[ >]")}
_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class DefectRates:
    """Rates of injected defects (share of eligible data rows; duplicate_file: share of files).

    missing_sex / missing_birth_date are shares of persons whose lab sent no SEXE / DATE_NAISSANCE:
    data-quality flags, not defects (those rows stay valid and counted). test_identity: a lab that
    sends HL7 v2 or HPRIM files some (person, lab) pairs under a test INS (OID .10): every result
    of that pair is refused by the parser (TEST_IDENTITY), whatever other defect it had.
    """

    nir_key: float = 0.005
    date_invalid: float = 0.004
    date_order: float = 0.003
    unknown_code: float = 0.005
    malformed: float = 0.003
    duplicate_row: float = 0.004
    correction: float = 0.003
    duplicate_file: float = 0.05
    test_identity: float = 0.003  # share of (person, lab) pairs, in labs sending HL7 v2 or HPRIM only
    missing_sex: float = 0.01
    missing_birth_date: float = 0.01


@dataclass
class GenerateResult:
    landing_files: list[Path]
    truth_dir: Path
    n_rows: int  # data lines written (duplicates and re-delivered files included)
    summary: dict = field(default_factory=dict)
    seconds: float = 0.0


def _days(d: date) -> int:
    return (d - EPOCH).days


def _pick_words(rng: np.random.Generator, words: tuple[str, ...], size: int) -> np.ndarray:
    return np.asarray(words, dtype=object)[rng.integers(0, len(words), size=size)]


def _norm_name(s: str) -> str:
    return "".join(c for c in vocab.strip_accents(s).upper() if c.isalnum())


def _fmt_scaled(iv: pl.Expr, dec: pl.Expr, point: str = ",") -> pl.Expr:
    """Integer ``iv`` scaled by 10**dec -> decimal string: French ('5,40') or with ``point='.'``."""
    p10 = pl.lit(10, pl.Int64).pow(dec.cast(pl.Int64))
    ip = (iv // p10).cast(pl.Utf8)
    fp = (iv % p10).cast(pl.Utf8).str.zfill(dec)
    return pl.when(dec > 0).then(pl.concat_str([ip, pl.lit(point), fp])).otherwise(ip)


def check_formats(formats: Mapping[str, str] | None, sources: list[str]) -> dict[str, str]:
    """``formats`` (source -> format) checked against the labs; labs not named write CSV."""
    formats = dict(formats or {})
    unknown = sorted(set(formats) - set(sources))
    if unknown:
        raise ValueError(f"formats: unknown lab(s) {', '.join(unknown)} (labs: {', '.join(sources)})")
    bad = sorted({f for f in formats.values() if f not in FORMATS})
    if bad:
        raise ValueError(f"formats: unknown format(s) {', '.join(bad)} (one of {', '.join(FORMATS)})")
    return {s: formats.get(s, "csv") for s in sources}


def formats_option(text: str) -> dict[str, str]:
    """The command line's ``--formats``: ``csv`` (every lab), ``mixed`` (:data:`MIXED_FORMATS`) or
    ``lab=format,lab=format`` (labs not named write CSV)."""
    text = text.strip()
    if text in ("", "csv"):
        return {}
    if text == "mixed":
        return dict(MIXED_FORMATS)
    out: dict[str, str] = {}
    for item in text.split(","):
        lab, eq, fmt = item.partition("=")
        if not eq or not lab.strip() or not fmt.strip():
            raise ValueError(f"formats: {item.strip()!r} is not lab=format "
                             f"(or give csv or mixed; formats: {', '.join(FORMATS)})")
        out[lab.strip()] = fmt.strip()
    return out


def _result_lines(path: Path, fmt: str, expected: int) -> list[int]:
    """1-based physical lines where each result of a written HL7/CDA/HPRIM file starts, in order."""
    start = _RESULT_START[fmt]
    text = path.read_bytes().decode("utf-8")
    found = [i for i, line in enumerate(_LINE_END.split(text), start=1) if start.match(line)]
    if len(found) != expected:  # pragma: no cover - the writers emit one OBX / observation per row
        raise RuntimeError(f"{path}: {len(found)} results written, {expected} expected")
    return found


class _Progress:
    def __init__(self, cb: Callable[[str, int, int], None] | None):
        self.cb = cb

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.cb is not None:
            self.cb(stage, done, total)


# --------------------------------------------------------------------------------------------
# persons
# --------------------------------------------------------------------------------------------


def _persons(rng: np.random.Generator, seeds: Seeds, n: int, n_scenario: int, start: date,
             rates: DefectRates) -> pl.DataFrame:
    n_dep, n_cl = seeds.pop.shape
    w = seeds.pop.ravel() / seeds.pop.sum()
    cell = rng.choice(len(w), size=n, p=w)
    dep, cl = cell // n_cl, cell % n_cl
    lo = np.where(cl == 0, 0, np.asarray(CL_AGE90)[cl] - 9)
    age = lo + rng.integers(0, 10, size=n)
    old = np.asarray(CL_AGE90)[cl] == 90
    age[old] = 90 + np.minimum(rng.geometric(0.22, size=old.sum()) - 1, 15)
    age[:n_scenario] = np.maximum(age[:n_scenario], 2)  # scenario persons exist 90 days before start
    start_d = _days(start)
    birth = start_d - np.floor(age * 365.2425).astype(np.int64) - rng.integers(1, 365, size=n)
    sex = np.where(rng.random(n) < 0.52, 2, 1)  # 2 = F, 1 = M (NIR first digit)

    counts = np.array([len(x) for x in seeds.dep_communes])
    within = np.floor(rng.random(n) * counts[dep]).astype(np.int64)
    offsets = np.r_[0, np.cumsum(counts)[:-1]]
    flat = np.concatenate(seeds.dep_communes)
    commune = flat[offsets[dep] + within]
    insee = seeds.communes["commune_insee_code"].to_numpy()
    postal = seeds.communes["postal_code"].to_numpy()

    u = rng.random(n)
    other = rng.integers(0, len(insee), size=n)
    country = np.asarray(vocab.BIRTH_COUNTRIES, dtype=object)[rng.integers(0, len(vocab.BIRTH_COUNTRIES), size=n)]
    place = np.where(u < 0.60, insee[commune], np.where(u < 0.87, insee[other], country))

    df = pl.DataFrame({
        "person": np.arange(n, dtype=np.int32),
        "sex_digit": sex.astype(np.int8),
        "birth": birth.astype(np.int32),
        "dep_idx": dep.astype(np.int16),
        "postal_code": postal[commune],
        "place": place.astype(str),
        "order": rng.integers(1, 1000, size=n).astype(np.int32),
        "fam": rng.integers(0, len(vocab.FAMILY_NAMES), size=n).astype(np.int32),
        "first_u": rng.random(n),
        "no_sex": np.r_[np.zeros(n_scenario, bool), rng.random(n - n_scenario) < rates.missing_sex],
        "no_birth": np.r_[np.zeros(n_scenario, bool), rng.random(n - n_scenario) < rates.missing_birth_date],
    }).with_columns(pl.col("birth").cast(pl.Date).alias("birth_date"))
    df = df.with_columns(
        pl.col("birth_date").dt.year().alias("by"),
        pl.col("birth_date").dt.month().alias("bm"),
    ).with_columns(
        # Corsica was département 20 before 1976
        pl.when(pl.col("place").str.slice(0, 2).is_in(["2A", "2B"]) & (pl.col("by") < 1976))
        .then(pl.concat_str([pl.lit("20"), pl.col("place").str.slice(2)]))
        .otherwise(pl.col("place")).alias("place"),
    )
    # unique 13-character NIR bodies: redraw the order number of collisions
    for _ in range(20):
        df = df.with_columns(
            pl.concat_str([
                pl.col("sex_digit").cast(pl.Utf8),
                (pl.col("by") % 100).cast(pl.Utf8).str.zfill(2),
                pl.col("bm").cast(pl.Utf8).str.zfill(2),
                pl.col("place"),
                pl.col("order").cast(pl.Utf8).str.zfill(3),
            ]).alias("nir13")
        )
        dup = df["nir13"].is_duplicated().to_numpy() & ~df["nir13"].is_first_distinct().to_numpy()
        if not dup.any():
            break
        order = df["order"].to_numpy().copy()
        order[dup] = rng.integers(1, 1000, size=int(dup.sum()))
        df = df.with_columns(pl.Series("order", order, dtype=pl.Int32))
    else:  # pragma: no cover
        raise RuntimeError("could not draw unique NIRs")
    num = (
        pl.col("nir13").str.slice(0, 5)
        + pl.col("nir13").str.slice(5, 2).replace({"2A": "19", "2B": "18"})
        + pl.col("nir13").str.slice(7)
    ).cast(pl.Int64)
    df = df.with_columns((97 - num % 97).cast(pl.Int32).alias("nir_key"))
    df = df.with_columns(
        (pl.col("nir13") + pl.col("nir_key").cast(pl.Utf8).str.zfill(2)).alias("nir"),
        pl.when(pl.col("sex_digit") == 2).then(pl.lit("F")).otherwise(pl.lit("M")).alias("sex_true"),
    )
    nf, nm = len(vocab.FIRST_NAMES_F), len(vocab.FIRST_NAMES_M)
    df = df.with_columns(
        pl.when(pl.col("sex_digit") == 2)
        .then((pl.col("first_u") * nf).floor().cast(pl.Int32))
        .otherwise(nf + (pl.col("first_u") * nm).floor().cast(pl.Int32)).alias("first")
    )
    # identity traits unique too: (family name, first name, birth date or "unknown") after
    # normalisation, so linking persons by NIR or by normalised traits gives the same persons
    fam_norm = np.unique([_norm_name(x) for x in vocab.FAMILY_NAMES], return_inverse=True)[1]
    first_norm = np.unique([_norm_name(x) for x in vocab.FIRST_NAMES_F + vocab.FIRST_NAMES_M],
                           return_inverse=True)[1]
    fam = df["fam"].to_numpy().copy()
    first = df["first"].to_numpy()
    bkey = np.where(df["no_birth"].to_numpy(), -1, df["birth"].to_numpy().astype(np.int64))
    for _ in range(100):
        key = (fam_norm[fam].astype(np.int64) * 1000 + first_norm[first]) * 100_000 + (bkey + 1)
        _, first_idx = np.unique(key, return_index=True)
        dup = np.ones(n, bool)
        dup[first_idx] = False
        if not dup.any():
            break
        fam[dup] = rng.integers(0, len(vocab.FAMILY_NAMES), size=int(dup.sum()))
    df = df.with_columns(pl.Series("fam", fam, dtype=pl.Int32))
    return df.select("person", "nir", "nir13", "nir_key", "sex_true", "birth_date", "postal_code", "dep_idx",
                     "fam", "first", "no_sex", "no_birth")


# --------------------------------------------------------------------------------------------
# requests and results
# --------------------------------------------------------------------------------------------


def _times(rng: np.random.Generator, day_min: np.ndarray, covid: np.ndarray) -> tuple[np.ndarray, ...]:
    n = len(day_min)
    hours_reg = np.arange(6, 19)
    w_reg = np.array([2, 8, 10, 10, 8, 6, 3, 3, 3, 3, 2, 2, 1], float)
    hours_cov = np.arange(8, 20)
    w_cov = np.array([6, 8, 8, 7, 6, 6, 7, 7, 7, 6, 5, 3], float)
    h = np.where(covid, rng.choice(hours_cov, size=n, p=w_cov / w_cov.sum()),
                 rng.choice(hours_reg, size=n, p=w_reg / w_reg.sum()))
    coll = day_min + h * 60 + rng.integers(0, 60, size=n)
    recv = coll + rng.integers(60, 24 * 60 + 1, size=n)
    u = rng.random(n)
    delay = np.where(u < 0.70, rng.integers(20, 600, size=n),
                     np.where(u < 0.95, rng.integers(600, 1800, size=n), rng.integers(1800, 3600, size=n)))
    return coll, recv, recv + delay


def _scenario_requests(rng: np.random.Generator, k: int, days: int, start_min: int,
                       day_w: np.ndarray) -> dict[str, np.ndarray]:
    """Hand-made SARS-CoV-2 histories, k persons per scenario (persons 0..k*len-1)."""
    plans: list[tuple[int, int, int, str, int]] = []  # (person, day offset, kind 1 pcr/2 ag, class, scenario)
    person = 0
    for si, name in enumerate(SCENARIOS):
        if days < 2 and name in ("repeat_in_window", "neg_two_days", "neg_then_pos"):
            continue
        for j in range(k):
            w = int(rng.choice(days, p=day_w))
            kind = int(rng.integers(1, 3))
            if name == "reinfection_gt60":
                g = int(rng.integers(61, 91))
                plans += [(person, w - g, kind, "POS", si), (person, w, 3 - kind, "POS", si)]
            elif name == "reinfection_60":
                plans += [(person, w - 60, kind, "POS", si), (person, w, kind, "POS", si)]
            elif name == "same_episode_59":
                plans += [(person, w - 59, kind, "POS", si), (person, w, kind, "POS", si)]
            elif name in ("repeat_in_window", "neg_two_days", "neg_then_pos"):
                a, b = sorted(rng.choice(days, size=2, replace=False, p=day_w).tolist())
                c1, c2 = {"repeat_in_window": ("POS", "POS"), "neg_two_days": ("NEG", "NEG"),
                          "neg_then_pos": ("NEG", "POS")}[name]
                plans += [(person, a, kind, c1, si), (person, b, 3 - kind, c2, si)]
            elif name == "same_day_ag_pcr":
                c_ag, c_pcr = (("POS", "POS"), ("NEG", "POS"), ("POS", "NEG"), ("NEG", "NEG"))[j % 4]
                plans += [(person, w, 2, c_ag, si), (person, w, 1, c_pcr, si)]
            person += 1
    if not plans:
        return {"n_persons": np.int64(0)}
    arr = np.array([(p, d, kd, si) for p, d, kd, _, si in plans], dtype=np.int64)
    cls = np.array([c for _, _, _, c, _ in plans], dtype=object)
    n = len(arr)
    day_min = start_min + arr[:, 1] * 1440
    coll, recv, val = _times(rng, day_min, np.ones(n, bool))
    # same-day pairs: antigen in the morning, PCR in the afternoon
    same_day = np.array([SCENARIOS[s] == "same_day_ag_pcr" for s in arr[:, 3]])
    ag = arr[:, 2] == 2
    coll = np.where(same_day & ag, day_min + 8 * 60 + rng.integers(0, 120, size=n), coll)
    coll = np.where(same_day & ~ag, day_min + 14 * 60 + rng.integers(0, 240, size=n), coll)
    recv = np.where(same_day, coll + rng.integers(60, 180, size=n), recv)
    val = np.where(same_day, recv + rng.integers(20, 300, size=n), val)
    return {"person": arr[:, 0], "kind": arr[:, 2], "scenario": arr[:, 3], "coll": coll, "recv": recv,
            "val": val, "cls": cls, "n_persons": np.int64(person)}


def _explode_panels(rng: np.random.Generator, seeds: Seeds, n_req: int) -> tuple[np.ndarray, np.ndarray]:
    """Regular requests -> (request index, test index) pairs, in request then catalog order."""
    cat = seeds.catalog
    panels = [p for p in PANEL_P]
    tests_of = [cat.filter(pl.col("panel") == p)["test"].to_numpy() for p in panels]
    probs = np.array([PANEL_P[p] for p in panels])
    mask = rng.random((n_req, len(panels))) < probs
    mask[~mask.any(axis=1), 0] = True
    r, p = np.nonzero(mask)
    sizes = np.array([len(t) for t in tests_of])[p]
    flat = np.concatenate(tests_of)
    pstart = np.r_[0, np.cumsum([len(t) for t in tests_of])[:-1]]
    rep_r = np.repeat(r, sizes)
    first = np.repeat(np.cumsum(sizes) - sizes, sizes)
    within = np.arange(len(rep_r)) - first
    test = flat[np.repeat(pstart[p], sizes) + within]
    return rep_r, test


def generate(
    home: Path,
    n_results: int = 1_000_000,
    seed: int = 42,
    days: int = 7,
    start: date = date(2026, 11, 2),
    progress: Callable[[str, int, int], None] | None = None,
    rates: DefectRates | None = None,
    formats: Mapping[str, str] | None = None,
) -> GenerateResult:
    """Write the landing files and the truth under ``home``.

    ``formats`` maps a lab (``seeds/labs.csv`` source) to the format it sends: ``csv`` (every lab
    not named), ``hl7v2``, ``cda`` or ``hprim``; :data:`MIXED_FORMATS` is the demo's choice.
    """
    t0 = time.perf_counter()
    home = Path(home)
    rates = rates or DefectRates()
    prog = _Progress(progress)
    if n_results < 1 or days < 1:
        raise ValueError("n_results and days must be >= 1")
    seeds = load_seeds()
    lab_format = check_formats(formats, [lb.source for lb in seeds.labs])
    fmt_of_lab = [lab_format[lb.source] for lb in seeds.labs]  # by lab index
    ss = np.random.SeedSequence(seed)
    # (spawned children do not depend on how many are spawned: adding one changes no other stream)
    (rng_p, rng_r, rng_s, rng_v, rng_c, rng_d, rng_f, rng_t) = [np.random.default_rng(s) for s in ss.spawn(8)]
    labs = seeds.labs
    n_labs = len(labs)
    start_d = _days(start)
    start_min = start_d * 1440
    prog("plan", 0, 1)

    # ---- scenarios and request volume -----------------------------------------------------------
    k = max(2, round(n_results * 0.0004))
    k = min(k, n_results // (4 * 2 * len(SCENARIOS)))
    wd = np.array([date.fromordinal(start.toordinal() + i).weekday() for i in range(days)])
    dw = np.where(wd < 5, 1.0, np.where(wd == 5, 0.55, 0.12))
    dw = dw / dw.sum()
    sc = _scenario_requests(rng_s, k, days, start_min, dw) if k > 0 else {"n_persons": np.int64(0)}
    n_sc_rows = len(sc.get("person", []))
    n_sc_persons = int(sc["n_persons"])
    need = n_results - n_sc_rows
    avg_reg = sum(PANEL_P[p] * seeds.catalog.filter(pl.col("panel") == p).height for p in PANEL_P)
    avg = KIND_P[0] * avg_reg + KIND_P[1] + KIND_P[2]
    n_req = int(need / avg * 1.25) + 50
    n_persons_reg = max(10, int(n_req * 1.5))
    n_persons = n_sc_persons + n_persons_reg
    prog("plan", 1, 1)

    # ---- persons --------------------------------------------------------------------------------
    prog("persons", 0, 1)
    persons = _persons(rng_p, seeds, n_persons, n_sc_persons, start, rates)
    prog("persons", 1, 1)

    # ---- regular requests -----------------------------------------------------------------------
    prog("requests", 0, 1)
    lw = np.array(LAB_WEIGHTS[:n_labs] if n_labs <= len(LAB_WEIGHTS) else [1.0] * n_labs)
    r_lab = rng_r.choice(n_labs, size=n_req, p=lw / lw.sum())
    r_person = rng_r.integers(n_sc_persons, n_persons, size=n_req)
    r_kind = rng_r.choice(3, size=n_req, p=KIND_P)
    r_day = rng_r.choice(days, size=n_req, p=dw)
    r_coll, r_recv, r_val = _times(rng_r, start_min + r_day * 1440, r_kind > 0)

    # epidemic: per-département base rate x daily curve (x 0.85 for antigen tests)
    base = 0.07 * np.exp(rng_r.normal(0.0, 0.35, size=len(seeds.departements)))
    curve = 0.8 + 0.5 * np.arange(days) / max(days - 1, 1) + rng_r.normal(0.0, 0.05, size=days)
    p_pos = np.clip(base[persons["dep_idx"].to_numpy()[r_person]] * curve[r_day] * np.where(r_kind == 2, 0.85, 1.0),
                    0.005, 0.6)
    u = rng_r.random(n_req)
    r_cls = np.where(u < 0.015, "INVALID", np.where(rng_r.random(n_req) < p_pos, "POS", "NEG")).astype(object)

    reg_idx = np.flatnonzero(r_kind == 0)
    rep_r, rep_t = _explode_panels(rng_r, seeds, len(reg_idx))
    cov_idx = np.flatnonzero(r_kind > 0)
    test_pcr = seeds.catalog.filter(pl.col("test_key") == "sars_cov2_pcr")["test"].item()
    test_ag = seeds.catalog.filter(pl.col("test_key") == "sars_cov2_ag")["test"].item()

    res_req = np.concatenate([reg_idx[rep_r], cov_idx])
    res_test = np.concatenate([rep_t, np.where(r_kind[cov_idx] == 1, test_pcr, test_ag)])
    order = np.lexsort((res_test, res_req))
    res_req, res_test = res_req[order], res_test[order]
    # keep only tests the lab performs
    avail = np.zeros((n_labs, seeds.catalog.height), bool)
    avail[seeds.lab_tests["lab"].to_numpy(), seeds.lab_tests["test"].to_numpy()] = True
    ok = avail[r_lab[res_req], res_test]
    res_req, res_test = res_req[ok], res_test[ok]
    if len(res_req) < need:  # pragma: no cover - the 25 % margin makes this practically impossible
        raise RuntimeError("not enough requests drawn; increase the margin")
    res_req, res_test = res_req[:need], res_test[:need]

    # append scenario requests (one result each) after the regular ones
    n_req_all = n_req + n_sc_rows
    if n_sc_rows:
        sc_lab = rng_s.choice(n_labs, size=n_sc_rows, p=lw / lw.sum())
        r_lab = np.r_[r_lab, sc_lab]
        r_person = np.r_[r_person, sc["person"]]
        r_kind = np.r_[r_kind, sc["kind"]]
        r_coll, r_recv, r_val = np.r_[r_coll, sc["coll"]], np.r_[r_recv, sc["recv"]], np.r_[r_val, sc["val"]]
        r_cls = np.r_[r_cls, sc["cls"]]
        r_scen = np.r_[np.full(n_req, -1), sc["scenario"]]
        res_req = np.r_[res_req, np.arange(n_req, n_req_all)]
        res_test = np.r_[res_test, np.where(sc["kind"] == 1, test_pcr, test_ag)]
    else:
        r_scen = np.full(n_req, -1)

    # request numbers: per lab, in collection order, over the requests that have results
    used = np.zeros(n_req_all, bool)
    used[res_req] = True
    ord_req = np.lexsort((np.arange(n_req_all), r_coll, r_lab))
    ord_req = ord_req[used[ord_req]]
    seq = np.zeros(n_req_all, np.int64)
    lab_sorted = r_lab[ord_req]
    first_of_lab = np.r_[0, np.flatnonzero(lab_sorted[1:] != lab_sorted[:-1]) + 1]
    rank = np.arange(len(ord_req)) - np.repeat(first_of_lab, np.diff(np.r_[first_of_lab, len(ord_req)]))
    seq[ord_req] = rank + 1 + rng_r.integers(1000, 50000, size=n_labs)[lab_sorted]
    prog("requests", 1, 1)

    # ---- results --------------------------------------------------------------------------------
    prog("results", 0, 1)
    n = len(res_req)
    cat = seeds.catalog
    kind_num = (cat["kind"] == "num").to_numpy()
    mean = cat["mean"].fill_null(1.0).to_numpy()
    sd = cat["sd"].fill_null(0.0).to_numpy()
    s2 = np.log1p((sd / mean) ** 2)
    mu = np.log(mean) - s2 / 2
    canon = np.exp(mu[res_test] + np.sqrt(s2[res_test]) * rng_v.standard_normal(n))
    is_num = kind_num[res_test]
    key_arr = cat["test_key"].to_numpy()
    is_covid = np.isin(res_test, [test_pcr, test_ag])
    qcls = np.where(rng_v.random(n) < 0.01, "INVALID", np.where(rng_v.random(n) < 0.02, "POS", "NEG")).astype(object)
    res_cls = np.where(is_num, None, np.where(is_covid, r_cls[res_req], qcls))

    df = pl.DataFrame({
        "rid": np.arange(n, dtype=np.int64),
        "req": res_req.astype(np.int64),
        "lab": r_lab[res_req].astype(np.int32),
        "person": r_person[res_req].astype(np.int32),
        "test": res_test.astype(np.int32),
        "coll": r_coll[res_req].astype(np.int64),
        "recv": r_recv[res_req].astype(np.int64),
        "val": r_val[res_req].astype(np.int64),
        "seq": seq[res_req],
        "scenario": r_scen[res_req].astype(np.int32),
        "canon": canon,
        "result_class": pl.Series(res_cls.tolist(), dtype=pl.Utf8),
    }).join(seeds.lab_tests, on=["lab", "test"], how="left", maintain_order="left")
    df = df.join(cat.select("test", "test_key", "loinc_num", "kind"), on="test", how="left", maintain_order="left")
    df = df.with_columns(
        pl.when(pl.col("kind") == "num")
        .then(pl.max_horizontal((pl.col("canon") * pl.col("factor") * pl.lit(10.0).pow(pl.col("dec"))).round(0),
                                pl.lit(1.0)).cast(pl.Int64))
        .alias("iv"),
    )
    # qualitative words
    words = np.empty(n, dtype=object)
    sero = np.isin(key_arr[res_test], list(SEROLOGY_KEYS))
    for cls_name, plain, ser in (("POS", vocab.WORDS_POS, vocab.WORDS_POS_SERO),
                                 ("NEG", vocab.WORDS_NEG, vocab.WORDS_NEG_SERO),
                                 ("INVALID", vocab.WORDS_INV, vocab.WORDS_INV)):
        for is_sero, wl in ((False, plain), (True, ser)):
            m = (res_cls == cls_name) & (sero == is_sero)
            words[m] = _pick_words(rng_v, wl, int(m.sum()))
    df = df.with_columns(pl.Series("word", words.tolist(), dtype=pl.Utf8))
    prog("results", 1, 1)

    # ---- corrections ----------------------------------------------------------------------------
    prog("defects", 0, 2)
    regular = (df["scenario"] == -1).to_numpy()
    cls_np = df["result_class"].to_numpy()
    n_corr = int(round(rates.correction * n))
    chosen: list[np.ndarray] = []
    if n_corr > 0:
        k_flip = max(2, n_corr // 10)
        for c in ("POS", "NEG"):
            cand = np.flatnonzero(regular & is_covid & (cls_np == c))
            chosen.append(rng_c.choice(cand, size=min(k_flip, len(cand)), replace=False))
        rest = np.setdiff1d(np.flatnonzero(regular), np.concatenate(chosen))
        chosen.append(rng_c.choice(rest, size=max(0, min(n_corr - sum(len(c) for c in chosen), len(rest))),
                                   replace=False))
    corr_rows = np.sort(np.concatenate(chosen)) if chosen else np.array([], np.int64)
    nc = len(corr_rows)
    corr = df[corr_rows]
    new_val = corr["val"].to_numpy() + rng_c.integers(1440, 4320, size=nc)
    iv = corr["iv"].to_numpy()
    num_c = (corr["kind"] == "num").to_numpy()
    iv_new = np.where(num_c, np.rint(np.nan_to_num(iv, nan=1) * (1 + rng_c.choice([-1, 1], size=nc)
                                                              * rng_c.uniform(0.1, 0.3, size=nc))), 0)
    iv_new = np.maximum(iv_new, 1).astype(np.int64)
    iv_old = np.nan_to_num(corr["iv"].fill_null(0).to_numpy()).astype(np.int64)
    iv_new = np.where(num_c & (iv_new == iv_old), iv_new + 1, iv_new)
    old_cls = corr["result_class"].to_numpy()
    new_cls = np.where(old_cls == "POS", "NEG", np.where(old_cls == "NEG", "POS",
                       np.where(rng_c.random(nc) < 0.5, "POS", "NEG"))).astype(object)
    new_cls = np.where(num_c, None, new_cls)
    csero = np.isin(corr["test_key"].to_numpy(), list(SEROLOGY_KEYS))
    new_word = np.empty(nc, dtype=object)
    for cls_name, plain, ser in (("POS", vocab.WORDS_POS, vocab.WORDS_POS_SERO),
                                 ("NEG", vocab.WORDS_NEG, vocab.WORDS_NEG_SERO)):
        for is_sero, wl in ((False, plain), (True, ser)):
            m = (new_cls == cls_name) & (csero == is_sero)
            new_word[m] = _pick_words(rng_c, wl, int(m.sum()))
    corr = corr.with_columns(
        pl.Series("val", new_val, dtype=pl.Int64),
        pl.Series("iv", np.where(num_c, iv_new, 0), dtype=pl.Int64),
        pl.Series("result_class", new_cls.tolist(), dtype=pl.Utf8),
        pl.Series("word", new_word.tolist(), dtype=pl.Utf8),
        pl.lit("C").alias("status"),
        pl.lit("correction").alias("defect"),
        pl.col("rid").alias("corrects"),
    ).with_columns(pl.when(pl.col("kind") == "num").then(pl.col("iv")).otherwise(None).alias("iv"))

    # ---- defects: at most one per eligible row (regular, not involved in a correction) ----------
    eligible = regular.copy()
    eligible[corr_rows] = False
    u = rng_d.random(n)
    thresholds = np.cumsum([getattr(rates, d) for d in DEFECTS])
    which = np.searchsorted(thresholds, u, side="right")
    defect = np.where(eligible & (which < len(DEFECTS)), np.asarray(DEFECTS + ("",), dtype=object)[which], None)
    # at most one unknown code per request (two would share FINESS + N_DEMANDE + CODE_ANALYSE)
    unk_rows = np.flatnonzero(defect == "unknown_code")
    _, first_unk = np.unique(res_req[unk_rows], return_index=True)
    extra_unk = np.setdiff1d(unk_rows, unk_rows[first_unk])
    defect[extra_unk] = None
    not_csv = np.array([f != "csv" for f in fmt_of_lab])
    if not_csv.any():
        csv_only = pl.Series(defect.tolist(), dtype=pl.Utf8).is_in(CSV_ONLY_DEFECTS).fill_null(False).to_numpy()
        defect[csv_only & not_csv[df["lab"].to_numpy()]] = None
    superseded = np.zeros(n, bool)
    superseded[corr_rows] = True
    df = df.with_columns(
        pl.Series("defect", defect.tolist(), dtype=pl.Utf8),
        pl.lit("F").alias("status"),
        pl.lit(None, pl.Int64).alias("corrects"),
        pl.Series("superseded", superseded),
    )
    df = pl.concat([df, corr.with_columns(pl.lit(False).alias("superseded")).select(df.columns)])
    N = df.height
    # test identities: (person, lab) pairs of the labs whose format carries the INS OID per result
    test_labs = [i for i, f in enumerate(fmt_of_lab) if f in TEST_IDENTITY_FORMATS]
    if test_labs and rates.test_identity > 0:
        pairs = (df.filter(pl.col("lab").is_in(test_labs) & (pl.col("scenario") == -1))
                 .select("person", "lab").unique().sort("person", "lab"))
        flagged = pairs.filter(pl.Series(rng_t.random(pairs.height) < rates.test_identity))
        df = df.join(flagged.with_columns(pl.lit(True).alias("_test")), on=["person", "lab"], how="left",
                     maintain_order="left").with_columns(
            pl.when(pl.col("_test")).then(pl.lit("test_identity")).otherwise(pl.col("defect")).alias("defect"),
        ).drop("_test")
    d_np = df["defect"].to_numpy()

    # unknown local codes: the row becomes a test the lab has not mapped
    unk = np.flatnonzero(d_np == "unknown_code")
    lab_np = df["lab"].to_numpy()
    u_code = np.empty(len(unk), object)
    u_label = np.empty(len(unk), object)
    u_unit = np.empty(len(unk), object)
    u_iv = np.zeros(len(unk), np.int64)
    u_dec = np.zeros(len(unk), np.int32)
    pick = rng_d.integers(0, 3, size=len(unk))
    z = rng_d.standard_normal(len(unk))
    for i, (li, pi) in enumerate(zip(lab_np[unk], pick)):
        code, label, unit, m_, s_, dec = vocab.UNMAPPED[labs[li].source][pi % len(vocab.UNMAPPED[labs[li].source])]
        s2_ = np.log1p((s_ / m_) ** 2)
        v = np.exp(np.log(m_) - s2_ / 2 + np.sqrt(s2_) * z[i])
        u_code[i], u_label[i], u_unit[i], u_dec[i] = code, label, unit, dec
        u_iv[i] = max(1, int(round(v * 10**dec)))
    if len(unk):
        upd = pl.DataFrame({"rid_pos": unk, "u_code": u_code.tolist(), "u_label": u_label.tolist(),
                            "u_unit": u_unit.tolist(), "u_iv": u_iv, "u_dec": u_dec},
                           schema={"rid_pos": pl.Int64, "u_code": pl.Utf8, "u_label": pl.Utf8, "u_unit": pl.Utf8,
                                   "u_iv": pl.Int64, "u_dec": pl.Int32})
        df = df.with_row_index("rid_pos").with_columns(pl.col("rid_pos").cast(pl.Int64)).join(
            upd, on="rid_pos", how="left", maintain_order="left").sort("rid_pos")
        is_u = pl.col("u_code").is_not_null()
        df = df.with_columns(
            pl.when(is_u).then(pl.col("u_code")).otherwise(pl.col("code")).alias("code"),
            pl.when(is_u).then(pl.col("u_label")).otherwise(pl.col("label")).alias("label"),
            pl.when(is_u).then(pl.col("u_unit")).otherwise(pl.col("unit")).alias("unit"),
            pl.when(is_u).then(pl.col("u_iv")).otherwise(pl.col("iv")).alias("iv"),
            pl.when(is_u).then(pl.col("u_dec")).otherwise(pl.col("dec")).alias("dec"),
            pl.when(is_u).then(pl.lit("num")).otherwise(pl.col("kind")).alias("kind"),
            pl.when(is_u).then(None).otherwise(pl.col("result_class")).alias("result_class"),
            pl.when(is_u).then(None).otherwise(pl.col("loinc_num")).alias("loinc_num"),
            pl.when(is_u).then(None).otherwise(pl.col("test_key")).alias("test_key"),
            pl.when(is_u).then(None).otherwise(pl.col("factor")).alias("factor"),
            (~is_u).alias("mapped"),
        ).drop("rid_pos", "u_code", "u_label", "u_unit", "u_iv", "u_dec")
    else:
        df = df.with_columns(pl.lit(True).alias("mapped"))
    prog("defects", 1, 2)

    # ---- rendering ------------------------------------------------------------------------------
    lab_info = pl.DataFrame({
        "lab": np.arange(n_labs, dtype=np.int32),
        "finess": [lb.finess for lb in labs],
        "compact": [lb.date_style == "compact" for lb in labs],
        "with_ref": [lb.source not in LABS_WITHOUT_REF for lb in labs],
        "req_prefix": [REQ_FORMATS.get(lb.source, (lb.source[:3].upper(), 8))[0] for lb in labs],
        "req_width": [REQ_FORMATS.get(lb.source, (lb.source[:3].upper(), 8))[1] for lb in labs],
    }, schema_overrides={"req_width": pl.Int32})
    df = df.join(lab_info, on="lab", how="left", maintain_order="left").join(persons, on="person", how="left", maintain_order="left")
    # names as each lab writes them
    name_rows = []
    all_first = vocab.FIRST_NAMES_F + vocab.FIRST_NAMES_M
    for lb in labs:
        fs, ps = vocab.NAME_STYLES.get(lb.source, ("as_is", "as_is"))
        for i, s in enumerate(vocab.FAMILY_NAMES):
            name_rows.append((lb.index, 0, i, vocab.render_name(s, fs)))
        for i, s in enumerate(all_first):
            name_rows.append((lb.index, 1, i, vocab.render_name(s, ps)))
    names = pl.DataFrame(name_rows, schema={"lab": pl.Int32, "what": pl.Int32, "i": pl.Int32, "s": pl.Utf8},
                         orient="row")
    df = df.join(names.filter(pl.col("what") == 0).select("lab", pl.col("i").alias("fam"), pl.col("s").alias("NOM")),
                 on=["lab", "fam"], how="left", maintain_order="left")
    df = df.join(names.filter(pl.col("what") == 1).select("lab", pl.col("i").alias("first"),
                                                          pl.col("s").alias("PRENOM")),
                 on=["lab", "first"], how="left", maintain_order="left")

    def ts(col: str) -> pl.Expr:
        dt = pl.from_epoch(pl.col(col) * 60, time_unit="s")
        return pl.when(pl.col("compact")).then(dt.dt.strftime("%Y%m%d%H%M")).otherwise(dt.dt.strftime("%d/%m/%Y %H:%M"))

    dfmt = pl.when(pl.col("compact")).then(pl.col("birth_date").dt.strftime("%Y%m%d")).otherwise(
        pl.col("birth_date").dt.strftime("%d/%m/%Y"))
    mean_np = cat["mean"].to_numpy()
    sd_np = cat["sd"].to_numpy()
    refs = seeds.lab_tests.join(cat.select("test", "kind"), on="test").filter(pl.col("kind") == "num")
    t_idx = refs["test"].to_numpy()
    f_np = refs["factor"].to_numpy()
    dec_np = refs["dec"].to_numpy()
    lo = np.rint(np.maximum(mean_np[t_idx] - 1.96 * sd_np[t_idx], 0) * f_np * 10.0**dec_np).astype(np.int64)
    hi = np.rint((mean_np[t_idx] + 1.96 * sd_np[t_idx]) * f_np * 10.0**dec_np).astype(np.int64)
    refs = refs.select("lab", "test", pl.Series("lo", lo), pl.Series("hi", hi), "dec").with_columns(
        pl.concat_str([_fmt_scaled(pl.col("lo"), pl.col("dec")), pl.lit("-"), _fmt_scaled(pl.col("hi"), pl.col("dec"))])
        .alias("ref")
    ).select("lab", "test", "ref")
    df = df.join(refs, on=["lab", "test"], how="left", maintain_order="left")

    d = pl.col("defect")
    df = df.with_columns(
        pl.col("nir").alias("NIR"),
        pl.when(pl.col("no_birth")).then(pl.lit("")).otherwise(dfmt).alias("DATE_NAISSANCE"),
        pl.when(pl.col("no_sex")).then(pl.lit("")).otherwise(pl.col("sex_true")).alias("SEXE"),
        ts("coll").alias("DATE_PRELEVEMENT"),
        ts("recv").alias("DATE_RECEPTION"),
        ts("val").alias("DATE_VALIDATION"),
        pl.when(pl.col("kind") == "num").then(_fmt_scaled(pl.col("iv"), pl.col("dec"))).otherwise(pl.col("word"))
        .alias("RESULTAT"),
        pl.when(pl.col("with_ref") & pl.col("mapped")).then(pl.col("ref").fill_null("")).otherwise(pl.lit(""))
        .alias("VALEURS_REFERENCE"),
        pl.concat_str([pl.col("req_prefix"), pl.col("seq").cast(pl.Utf8).str.zfill(pl.col("req_width"))])
        .alias("N_DEMANDE"),
    )
    # defects on fields
    nd = int((df["defect"] == "nir_key").sum())
    wrong = ((df.filter(d == "nir_key")["nir_key"].to_numpy() - 1 + rng_d.integers(1, 97, size=nd)) % 97) + 1
    di = df.filter(d == "date_invalid")
    on_birth = (~di["no_birth"]).to_numpy() & (rng_d.random(di.height) < 0.5)
    pair = rng_d.integers(0, len(IMPOSSIBLE_DAY_MONTH), size=di.height)
    dd = np.array([IMPOSSIBLE_DAY_MONTH[p][0] for p in pair], dtype=object)
    mm = np.array([IMPOSSIBLE_DAY_MONTH[p][1] for p in pair], dtype=object)
    n_do = int((df["defect"] == "date_order").sum())
    bad_nir = pl.Series("bad_key", np.zeros(N, np.int32))
    bad_nir = bad_nir.scatter(np.flatnonzero((df["defect"] == "nir_key").to_numpy()), wrong.astype(np.int32))
    di_pos = np.flatnonzero((df["defect"] == "date_invalid").to_numpy())
    inv_col = pl.Series("inv_col", [None] * N, dtype=pl.Utf8).scatter(
        di_pos, np.where(on_birth, "birth_date", "collected_at").tolist())
    inv_dd = pl.Series("inv_dd", [None] * N, dtype=pl.Utf8).scatter(di_pos, dd.tolist())
    inv_mm = pl.Series("inv_mm", [None] * N, dtype=pl.Utf8).scatter(di_pos, mm.tolist())
    do_pos = np.flatnonzero((df["defect"] == "date_order").to_numpy())
    back_min = rng_d.integers(60, 2880, size=n_do)
    # a validation at exactly 00:00:00 reads as a date sent without its time, compared at day
    # precision (docs/formats.md): a minute earlier, the defect stays a validation before the collection
    back_min = back_min + ((df["coll"].to_numpy()[do_pos].astype(np.int64) - back_min) % 1440 == 0)
    back = pl.Series("back", np.zeros(N, np.int64)).scatter(do_pos, back_min)
    df = df.with_columns(bad_nir, inv_col, inv_dd, inv_mm, back)
    coll_dt = pl.from_epoch(pl.col("coll") * 60, time_unit="s")
    inv_coll = pl.when(pl.col("compact")).then(pl.concat_str([
        coll_dt.dt.strftime("%Y"), pl.col("inv_mm"), pl.col("inv_dd"), coll_dt.dt.strftime("%H%M")])).otherwise(
        pl.concat_str([pl.col("inv_dd"), pl.lit("/"), pl.col("inv_mm"), pl.lit("/"), coll_dt.dt.strftime("%Y %H:%M")]))
    inv_birth = pl.when(pl.col("compact")).then(pl.concat_str([
        pl.col("birth_date").dt.strftime("%Y"), pl.col("inv_mm"), pl.col("inv_dd")])).otherwise(
        pl.concat_str([pl.col("inv_dd"), pl.lit("/"), pl.col("inv_mm"), pl.lit("/"),
                       pl.col("birth_date").dt.strftime("%Y")]))
    early = pl.from_epoch((pl.col("coll") - pl.col("back")) * 60, time_unit="s")
    df = df.with_columns(
        pl.when(d == "nir_key").then(pl.col("nir13") + pl.col("bad_key").cast(pl.Utf8).str.zfill(2))
        .otherwise(pl.col("NIR")).alias("NIR"),
        pl.when(pl.col("inv_col") == "collected_at").then(inv_coll).otherwise(pl.col("DATE_PRELEVEMENT"))
        .alias("DATE_PRELEVEMENT"),
        pl.when(pl.col("inv_col") == "birth_date").then(inv_birth).otherwise(pl.col("DATE_NAISSANCE"))
        .alias("DATE_NAISSANCE"),
        pl.when(d == "date_order").then(
            pl.when(pl.col("compact")).then(early.dt.strftime("%Y%m%d%H%M")).otherwise(early.dt.strftime("%d/%m/%Y %H:%M"))
        ).otherwise(pl.col("DATE_VALIDATION")).alias("DATE_VALIDATION"),
    )
    df = df.with_columns(
        pl.concat_str([
            pl.col("finess"), pl.col("N_DEMANDE"), pl.col("NIR"), pl.col("NOM"), pl.col("PRENOM"),
            pl.col("DATE_NAISSANCE"), pl.col("SEXE"), pl.col("postal_code"), pl.col("DATE_PRELEVEMENT"),
            pl.col("DATE_RECEPTION"), pl.col("DATE_VALIDATION"), pl.col("code"), pl.col("label"),
            pl.col("RESULTAT"), pl.col("unit").fill_null(""), pl.col("VALEURS_REFERENCE"), pl.col("status"),
        ], separator=";").alias("line")
    )
    # malformed lines (few): truncated, one field missing, one field too many
    mal = np.flatnonzero((df["defect"] == "malformed").to_numpy())
    if len(mal):
        lines = df["line"].gather(mal).to_list()
        variant = rng_d.integers(0, 4, size=len(mal))
        out = []
        for ln, v in zip(lines, variant):
            f = ln.split(";")
            if v <= 1:  # truncated line
                cut = int(rng_d.integers(5, ln.rfind(";")))
                out.append(ln[:cut])
            elif v == 2:  # a field missing
                del f[int(rng_d.integers(1, len(f)))]
                out.append(";".join(f))
            else:  # an extra field
                pos = int(rng_d.integers(1, len(f)))
                f.insert(pos, ("", "?", "NA", f[pos - 1])[int(rng_d.integers(0, 4))])
                out.append(";".join(f))
        df = df.with_columns(df["line"].scatter(mal, out))
    # the same content as typed canonical rows, for the labs that send HL7 v2, CDA or HPRIM
    canonical: list[str] = []
    if not_csv.any():
        at = lambda minutes: pl.from_epoch(minutes * 60, time_unit="s").cast(pl.Datetime("us"))  # noqa: E731
        with_loinc = [i for i, f in enumerate(fmt_of_lab) if f in LOINC_SENDING_FORMATS]
        typed = {
            "lab_finess": pl.col("finess"),
            "request_id": pl.col("N_DEMANDE"),
            "patient_nir": pl.col("NIR"),
            "ins_oid": pl.when(d == "test_identity").then(pl.lit(TEST_INS_OID)).otherwise(pl.lit(NIR_OID)),
            "family_name": pl.col("NOM"),
            "first_name": pl.col("PRENOM"),
            "birth_date": pl.when(pl.col("no_birth")).then(None).otherwise(pl.col("birth_date")),
            "sex": pl.when(pl.col("no_sex")).then(None).otherwise(pl.col("sex_true")),
            "postal_code": pl.col("postal_code"),
            "collected_at": at(pl.col("coll")),
            "received_at": at(pl.col("recv")),
            "validated_at": at(pl.when(d == "date_order").then(pl.col("coll") - pl.col("back"))
                               .otherwise(pl.col("val"))),
            "local_code": pl.col("code"),
            "local_label": pl.col("label"),
            # HL7 v2 and CR-BIO labs send the LOINC next to their own code (the Ségur rule); an
            # unknown local code has none, so it stays unmapped there too
            "loinc_code_src": pl.when(pl.col("lab").is_in(with_loinc) & pl.col("mapped")).then(pl.col("loinc_num")),
            "value_type": pl.when(pl.col("kind") == "num").then(pl.lit("NM")).otherwise(pl.lit("ST")),
            "value_raw": pl.when(pl.col("kind") == "num").then(_fmt_scaled(pl.col("iv"), pl.col("dec"), "."))
            .otherwise(pl.col("word")),
            "unit_raw": pl.col("unit"),
            "ref_range": pl.col("VALEURS_REFERENCE").str.replace_all(",", ".", literal=True).replace("", None),
            "abnormal_flag": pl.lit(None, pl.Utf8),
            "result_status": pl.col("status"),
            "specimen": pl.lit(None, pl.Utf8),
        }
        canonical = [f"c_{k}" for k in typed]
        df = df.with_columns(v.alias(f"c_{k}") for k, v in typed.items())
    df = df.select("lab", "val", "seq", "test", "defect", "line", "inv_col", "superseded", "kind", "iv", "dec",
                   "mapped", "factor", "loinc_num", "person", "result_class", "status", "test_key", "code",
                   "scenario", "nir", "coll", "no_sex", "sex_true", "no_birth", "birth_date", "postal_code",
                   *canonical)
    prog("defects", 2, 2)

    # ---- files ----------------------------------------------------------------------------------
    prog("layout", 0, 1)
    df = df.with_columns(
        (pl.col("val") // 1440).alias("file_day"),
        pl.col("val").alias("order_ts"),
        pl.lit(0, pl.Int8).alias("copy"),
        pl.col("test").fill_null(-1).alias("test"),
    )
    dsrc = df.filter(pl.col("defect") == "duplicate_row")
    dup = dsrc.with_columns(
        (pl.col("order_ts") + pl.Series(rng_d.integers(1, 720, size=dsrc.height))).alias("order_ts"),
        pl.lit(1, pl.Int8).alias("copy"),
        pl.lit("duplicate_copy").alias("defect"),
    )
    df = pl.concat([df, dup]).sort(["lab", "file_day", "order_ts", "seq", "test", "copy"], maintain_order=True)
    df = df.with_columns((pl.int_range(pl.len()).over("lab", "file_day") + 2).cast(pl.Int64).alias("line_no"))
    src_names = pl.DataFrame({"lab": np.arange(n_labs, dtype=np.int32), "source": [lb.source for lb in labs],
                              "encoding": [lb.encoding for lb in labs],
                              "format": fmt_of_lab, "suffix": [SUFFIXES[f] for f in fmt_of_lab]})
    df = df.join(src_names, on="lab", how="left", maintain_order="left")
    df = df.with_columns(
        pl.concat_str([pl.col("source"), pl.lit("/"), pl.col("source"), pl.lit("_"),
                       (pl.col("file_day").cast(pl.Int32).cast(pl.Date)).dt.strftime("%Y%m%d"), pl.col("suffix")])
        .alias("file")
    )
    prog("layout", 1, 1)

    # ---- write ----------------------------------------------------------------------------------
    landing = home / "landing"
    truth_dir = home / "truth"
    for lb in labs:
        folder = landing / lb.source
        if folder.exists():
            for old in folder.glob(f"{lb.source}_*"):
                if old.suffix in SUFFIXES.values():
                    old.unlink()
        folder.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    files_col = df["file"].to_numpy()
    bounds = np.r_[0, np.flatnonzero(files_col[1:] != files_col[:-1]) + 1, len(files_col)]
    lines_all = df["line"].to_list()
    enc_all = df["encoding"].to_numpy()
    fmt_all = df["format"].to_numpy()
    line_no = df["line_no"].to_numpy().copy()
    written: list[Path] = []
    n_files = len(bounds) - 1
    for fi in range(n_files):
        a, b = bounds[fi], bounds[fi + 1]
        path = landing / files_col[a]
        fmt = fmt_all[a]
        if fmt == "csv":
            text = HEADER + "\n" + "\n".join(lines_all[a:b]) + "\n"
            path.write_bytes(text.encode(enc_all[a]))
        else:
            rows_ = df.slice(a, b - a).select(pl.col(c).alias(c[2:]) for c in canonical)
            if fmt == "hl7v2":
                _formats.write_hl7v2(rows_, path, id_prefix=f"F{fi:05d}-")
            else:
                _formats.WRITERS[fmt](rows_, path)
            line_no[a:b] = _result_lines(path, fmt, b - a)
        written.append(path)
        if fi % 10 == 0 or fi == n_files - 1:
            prog("write", fi + 1, n_files)
    del lines_all
    df = df.drop("line", *canonical).with_columns(pl.Series("line_no", line_no, dtype=pl.Int64))

    # re-delivered files: an identical copy under <source>_<YYYYMMDD>_renvoi.<suffix>
    n_dup_files = int(round(rates.duplicate_file * n_files))
    if rates.duplicate_file > 0 and n_files >= 2:
        n_dup_files = max(1, n_dup_files)
    dup_idx = np.sort(rng_f.choice(n_files, size=min(n_dup_files, n_files), replace=False)) if n_dup_files else []
    copies = []
    for fi in dup_idx:
        src = written[fi]
        dst = src.with_name(src.stem + "_renvoi" + src.suffix)
        dst.write_bytes(src.read_bytes())
        copies.append((files_col[bounds[fi]], dst.relative_to(landing).as_posix()))
        written.append(dst)

    # ---- truth ----------------------------------------------------------------------------------
    prog("truth", 0, 2)
    # an impossible birth date (31/02/1980) costs the result nothing: kept, its age unknown, flagged
    # BIRTH_DATE_INVALID (docs/formats.md); its defect is named birth_date_invalid
    birth_unknown = (d == "date_invalid") & (pl.col("inv_col") == "birth_date")
    df = df.with_columns(pl.when(birth_unknown).then(pl.lit("birth_date_invalid")).otherwise(d).alias("defect"),
                         (pl.col("no_birth") | birth_unknown).alias("no_age"))
    reason = (
        pl.when(d == "nir_key").then(pl.lit("NIR_KEY"))
        .when(d == "date_invalid").then(pl.lit("DATE_INVALID"))
        .when(d == "date_order").then(pl.lit("DATE_ORDER"))
        .when(d == "malformed").then(pl.lit("MALFORMED_LINE"))
        .when(d == "duplicate_copy").then(pl.lit("DUPLICATE_ROW"))
        .when(d == "test_identity").then(pl.lit("TEST_IDENTITY"))
        .otherwise(None)
    )
    column = (
        pl.when(d == "nir_key").then(pl.lit("patient_nir"))
        .when(d == "date_invalid").then(pl.col("inv_col"))
        .when(d == "date_order").then(pl.lit("validated_at"))
        .when(d == "test_identity").then(pl.lit("ins_oid"))
        .otherwise(None)
    )
    scen_names = pl.DataFrame({"scenario": np.arange(len(SCENARIOS), dtype=np.int32), "scenario_name": SCENARIOS})
    rows = df.with_columns(reason.alias("reason"), column.alias("column")).with_columns(
        pl.when(pl.col("reason").is_null()).then(pl.lit("valid")).otherwise(pl.lit("quarantined")).alias("fate"),
    ).with_columns(
        (~((pl.col("fate") == "valid") & pl.col("superseded"))).alias("is_current"),
        pl.when(pl.col("kind") == "num").then(pl.col("iv") / pl.lit(10.0).pow(pl.col("dec")))
        .otherwise(None).alias("value_num"),
    ).with_columns(
        pl.when(pl.col("mapped") & (pl.col("kind") == "num")).then(pl.col("value_num") / pl.col("factor"))
        .otherwise(None).alias("value_canonical"),
        pl.when(d == "duplicate_copy").then(pl.lit("duplicate_row")).when(d == "duplicate_row").then(None)
        .when(pl.col("superseded")).then(pl.lit("superseded")).otherwise(d).alias("defect"),
    ).join(scen_names, on="scenario", how="left", maintain_order="left")
    truth_cols = ["file", "line_no", "fate", "reason", "column", "is_current", "mapped", "loinc_num", "person",
                  "result_class", "source", "status", "test_key", "local_code", "value_num", "value_canonical",
                  "defect", "scenario"]
    rows = rows.with_columns(pl.col("code").alias("local_code"),
                             pl.col("scenario_name").alias("scenario_str"))
    # event time and place of each row, for aggregate truths computed from rows.parquet (truth_mdo.py)
    coll_date = pl.from_epoch(pl.col("coll") * 60, time_unit="s").dt.date()
    bd = pl.col("birth_date")
    age = (coll_date.dt.year() - bd.dt.year()) - (
        (coll_date.dt.month() < bd.dt.month())
        | ((coll_date.dt.month() == bd.dt.month()) & (coll_date.dt.day() < bd.dt.day()))).cast(pl.Int32)
    place = rows.select("postal_code").unique().join(seeds.postal_dep, on="postal_code", how="left")
    rows = rows.join(place.rename({"dep_code": "dep"}), on="postal_code", how="left", maintain_order="left")
    out_rows = rows.select(*[c for c in truth_cols if c != "scenario"], pl.col("scenario_str").alias("scenario"),
                           coll_date.alias("collected_date"), "dep",
                           pl.when(pl.col("no_age")).then(None).otherwise(age).cast(pl.Int64).alias("age"))
    copy_frames = []
    for orig, copy_name in copies:
        copy_frames.append(out_rows.filter(pl.col("file") == orig).with_columns(
            pl.lit(copy_name).alias("file"), pl.lit("duplicate_file").alias("fate"),
            pl.lit(None, pl.Utf8).alias("reason"), pl.lit(None, pl.Utf8).alias("column"),
            pl.lit(True).alias("is_current"), pl.lit("duplicate_file").alias("defect")))
    out_rows = pl.concat([out_rows, *copy_frames]).with_columns(
        pl.col("line_no").cast(pl.Int64), pl.col("person").cast(pl.Int64)
    ).sort("file", "line_no")
    out_rows.write_parquet(truth_dir / "rows.parquet", statistics=False)

    # SI-DEP: valid, current, SARS-CoV-2 rows (identity as written: unknown sex/birth stays unknown)
    events = rows.filter(
        (pl.col("fate") == "valid") & pl.col("is_current") & pl.col("loinc_num").is_in(COVID_LOINC)
    ).select(
        pl.col("nir"),
        pl.from_epoch(pl.col("coll") * 60, time_unit="s").dt.date().alias("jour"),
        "coll",
        "result_class",
        pl.when(pl.col("no_sex")).then(None).otherwise(pl.col("sex_true")).alias("sex"),
        pl.when(pl.col("no_age")).then(None).otherwise(pl.col("birth_date")).alias("birth_date"),
        "postal_code",
    )
    sidep = sidep_daily(events, seeds.postal_dep, seeds.sidep_geography)
    write_sidep(sidep, truth_dir / "sidep_daily.csv")
    prog("truth", 1, 2)

    n_rows = out_rows.height
    fate_counts = dict(out_rows.group_by("fate").len().sort("fate").iter_rows())
    reason_counts = dict(out_rows.drop_nulls("reason").group_by("reason").len().sort("reason").iter_rows())
    defect_counts = dict(out_rows.drop_nulls("defect").group_by("defect").len().sort("defect").iter_rows())
    lab_counts = dict(out_rows.group_by("source").len().sort("source").iter_rows())
    all0 = sidep.filter(pl.col("cl_age90") == 0)
    summary = {
        "seed": seed,
        "n_results": n_results,
        "days": days,
        "start": start.isoformat(),
        "rows_written": n_rows,
        "files_written": len(written),
        "files_redelivered": len(copies),
        "rows_by_fate": fate_counts,
        "rows_by_reason": reason_counts,
        "rows_by_defect": defect_counts,
        "rows_by_lab": lab_counts,
        "corrections": nc,
        "persons": int(out_rows["person"].n_unique()),
        "persons_valid": int(out_rows.filter(pl.col("fate") == "valid")["person"].n_unique()),
        "sidep": {"P": int(all0["P"].sum()), "T": int(all0["T"].sum()),
                  "first_jour": str(sidep["jour"].min()) if sidep.height else None,
                  "last_jour": str(sidep["jour"].max()) if sidep.height else None},
        "scenario_persons_per_type": k,
        "defect_rates": asdict(rates),
        "formats": {s: f for s, f in lab_format.items() if f != "csv"},
    }
    (truth_dir / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n",
                                            encoding="utf-8")
    write_generated_manifest(home, written)
    prog("truth", 2, 2)
    return GenerateResult(landing_files=written, truth_dir=truth_dir, n_rows=n_rows, summary=summary,
                          seconds=time.perf_counter() - t0)


# The landing files the generator wrote, with their sha256 (QA regr2 F5): ``biolake demo`` refuses a
# home whose landing holds any other file (a real delivery not yet run), which it would otherwise
# load with the public demo key or delete with --fresh.
GENERATED_MANIFEST = "generated_landing_files.json"


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def write_generated_manifest(home: Path, written: list[Path]) -> None:
    """Record ``written`` (landing files) in <home>/truth/generated_landing_files.json, keeping the
    entries of earlier generations whose file is still there unchanged."""
    landing, path = home / "landing", home / "truth" / GENERATED_MANIFEST
    known = generated_manifest(home)
    kept = {rel: digest for rel, digest in known.items() if (landing / rel).is_file()
            and _sha256(landing / rel) == digest}
    kept.update({p.relative_to(landing).as_posix(): _sha256(p) for p in written})
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dict(sorted(kept.items())), indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)


def generated_manifest(home: Path) -> dict[str, str]:
    """landing-relative path -> sha256 of the files the generator wrote in ``home`` ({} when none)."""
    try:
        return json.loads((Path(home) / "truth" / GENERATED_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def foreign_landing_files(home: Path) -> list[str]:
    """The files under <home>/landing the generator did not write, or that changed since (landing-
    relative paths, sorted): a real delivery, never to be loaded with the demo key nor deleted."""
    landing = Path(home) / "landing"
    if not landing.is_dir():
        return []
    known = generated_manifest(home)
    out = []
    for p in sorted(landing.rglob("*")):
        if p.is_file() or p.is_symlink():
            rel = p.relative_to(landing).as_posix()
            if known.get(rel) is None or not p.is_file() or _sha256(p) != known[rel]:
                out.append(rel)
    return out
