"""MDO (notifiable diseases): case rules, new cases per person and episode, weekly counts.

A rule (seeds/mdo_rules.csv, explained in seeds/mdo_rules.md) maps a LOINC code plus a result
condition to a disease:

- ``pos``: the qualitative result is positive (result_class POS: positif, détecté, présence...);
- ``organism``: for identification codes, whose result is the organism found: the result class is
  POS, or (no class) the text names the rule's ``agent`` and nothing else
  (``transforms.terminology.organisms.names_agent``: 'Legionella pneumophila sérogroupe 1',
  'Virus de la rage isolé'; never 'Legionella non isolée' or another organism: texts that
  ``organisms.reads_not_agent`` reads as not the agent are negatives for the rule, kept off
  quality.unrecognised_results but counted in no case, as every text the rule does not read);
- ``ge`` / ``gt``: the numeric value in the LOINC's canonical unit (value_canonical, unit_canonical)
  is >= / > ``threshold``; ``unit`` must equal the canonical unit, otherwise the result is not
  evaluated (a unit that could not be converted never makes a case). A bound (value_comparator
  set, value_canonical the bound) meets the condition only when it proves it: ``>b`` or ``>=b``
  with ``b >= threshold`` for ``ge``; ``>b`` with ``b >= threshold`` or ``>=b`` with
  ``b > threshold`` for ``gt``; ``<``/``<=`` never do (``>100 ug/dL`` is a lead case, ``<0,5``
  is not);
- ``min_age`` / ``max_age`` (optional): the patient's age in full years at collection must be in
  range; an unknown age never matches a rule with an age condition;
- ``specimen`` (optional column): ``sterile_site`` for diseases whose criterion needs the agent in
  a normally sterile site (listeriosis), ``sterile_site_or_purpura`` when a purpuric skin lesion
  counts too (invasive meningococcal disease). The result's stated
  specimen (``specimen``: OBR-15/SPM-4, CDA, HPRIM, free text or codes) and the LOINC's system
  (``in Cerebral spinal fluid``, ``in Blood``; ``in Specimen`` says nothing) are read with the
  specimen families of the terminology (``SPECIMEN_FAMILIES``) plus the sites below: a stated
  non-sterile specimen (gorge, pharyngé, selles, urine...) never counts, whatever the code; a
  stated sterile specimen (sang, hémoculture, LCR, liquide articulaire...) counts; a stated
  specimen read as neither counts only on a code whose system is a sterile site, and is listed
  (``unread_specimens``, quality.mdo_unread_specimens) so the wording is seen; no stated
  specimen counts unless the code's system is a non-sterile site (CSV extracts carry no specimen:
  an "in Specimen" code is counted as before, see seeds/mdo_rules.md).

Only ``active = yes`` rows count. A person counts once per disease episode: a positive result
opens a case when it is the person's first for that disease or comes ``episode_days`` or more
after the collection day of the person's last *counted* case; positives in between belong to the
same episode. Cases are dated by collection day and placed at the département of residence of
the result that opened them (when it gives none, that of the case's other positive result of that
day that gives one; the same for the age class and the sex: see ``cases``).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import date
from pathlib import Path

import polars as pl

import re

from transforms.epi.indicators import semaine_expr, week_days
from transforms.terminology import organisms
from transforms.terminology.loinc import loinc_check_ok
from transforms.terminology.organisms import agent_phrases
from transforms.terminology.suggest import SPECIMEN_FAMILIES, normalise_label

RULE_COLUMNS = ("mdo_id", "loinc_num", "condition", "threshold", "unit", "min_age", "max_age", "specimen",
                "agent", "episode_days", "active", "note")
OPTIONAL_RULE_COLUMNS = ("specimen", "agent", "note")  # a rules table written before the column still reads
CONDITIONS = ("pos", "ge", "gt", "organism")
SPECIMEN_CONDITIONS = ("sterile_site", "sterile_site_or_purpura")
RESULT_COLUMNS = ("source", "person_key", "loinc_code", "result_class", "value_raw", "value_canonical", "value_comparator",
                  "unit_canonical", "age", "specimen",
                  "collected_date", "collected_at", "dep", "cl_age90", "sex", "file_seq", "line_no")

# Specimen words (as normalise_label writes them: lower case, no accents, punctuation to spaces) of
# normally sterile and of non-sterile sites: the terminology's families (blood, serum/plasma, CSF;
# urine, respiratory) plus the sites and HL7 table 0487 codes the criterion needs.
STERILE_SITE_WORDS = frozenset(
    w for fam in ("BLOOD", "SERPL", "CSF") for w in SPECIMEN_FAMILIES[fam]) | frozenset((
        "hemoculture", "hemocultures", "blood culture", "bldc", "blda", "bldv", "plas", "cerebrospinal",
        "spinal fluid", "cephalo rachidien", "cephalorachidien", "ponction lombaire", "liquide articulaire",
        "articulaire", "synovial", "synoviale", "snv", "pleural", "pleurale", "plr", "ascite", "peritoneal",
        "peritoneale", "prt", "pericardique", "pericardial", "moelle", "bone marrow", "marrow",
        # QA regr2 F2: adjectives and abbreviations of blood and CSF, punctures of closed cavities
        "sanguin", "sanguine", "sanguins", "sanguines", "hemoc", "hemocs", "lcs", "cerebro spinal",
        "ponction", "ponctions", "amniotique",
    ))
# A purpuric skin lesion (biopsy, scraping, swab of the lesion): not a normally sterile site, but
# part of the invasive meningococcal criterion (rule specimen ``sterile_site_or_purpura``).
PURPURA_WORDS = frozenset(("purpura", "purpuras", "purpurique", "purpuriques", "purpuric"))
NON_STERILE_SITE_WORDS = frozenset(
    w for fam in ("URINE", "RESP") for w in SPECIMEN_FAMILIES[fam]) | frozenset((
        "urines", "gorge", "pharynx", "pharynge", "pharyngee", "pharyngeal", "oropharynge", "oropharynx",
        "nasopharynge", "nasopharyngee", "nasal", "nasale", "narine", "narines", "amygdale", "throat", "thrt",
        "nps", "nos", "nasph", "selles", "selle", "feces", "fecal", "fecale", "stool", "stl", "rectal",
        "rectale", "anal", "anale", "vaginal", "vaginale", "vag", "uretral", "uretrale", "endocol", "col uterin",
        "expectorations", "crachats", "spt", "aspiration bronchique", "lavage broncho alveolaire", "lba",
        "bronchial", "conjonctival", "conjonctivale", "plaie", "pus", "ur",
    ))
_UNSPECIFIED_SYSTEM = re.compile(r"^(unspecified )?specimens?$|^isolate$|^xxx$", re.IGNORECASE)

CASE_COLUMNS = ("mdo_id", "person_key", "jour", "semaine", "dep", "cl_age90", "sex", "loinc_code")


class MdoRulesError(ValueError):
    """The rules table is wrong; the message names the file and the line."""


def load_rules(path: Path, known_mdo: set[str] | None = None, loinc: pl.DataFrame | None = None,
               canonical_units: Callable[[list[str]], dict[str, str | None]] | None = None) -> pl.DataFrame:
    """Read and check the rules table. Returns every row (active or not), typed, with ``code_site``
    (``sterile``, ``non_sterile`` or null: the site the LOINC's system names, from ``loinc``'s
    ``display_en``; null for all rows without ``loinc``).

    ``canonical_units(codes)`` gives the canonical UCUM unit results of each LOINC code are
    converted to (None: the code has none): a numeric rule must be written in that unit (a
    spelling of it, 'µg/dL', is read as the UCUM code), else the table is refused, the message
    giving the threshold converted when the units convert (a rule in ug/L on a test stored in
    ug/dL would silently never match)."""
    problems: list[str] = []
    rows: list[dict] = []
    with Path(path).open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = set(RULE_COLUMNS) - set(OPTIONAL_RULE_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise MdoRulesError(f"{path}: missing columns {sorted(missing)}")
        for line, r in enumerate(reader, start=2):
            where = f"{path}:{line}"
            r = {k: (v or "").strip() for k, v in r.items() if k is not None}
            if not r.get("mdo_id"):
                problems.append(f"{where}: empty mdo_id")
                continue
            if known_mdo is not None and r["mdo_id"] not in known_mdo:
                problems.append(f"{where}: unknown disease {r['mdo_id']!r} (not in ref.mdo_list)")
            if not loinc_check_ok(r["loinc_num"]):
                problems.append(f"{where}: malformed LOINC code {r['loinc_num']!r} (format or check digit)")
            if r["condition"] not in CONDITIONS:
                problems.append(f"{where}: condition must be one of {CONDITIONS}, not {r['condition']!r}")
            threshold = _number(r.get("threshold"), float, where, "threshold", problems)
            if r["condition"] in ("ge", "gt") and (threshold is None or not r.get("unit")):
                problems.append(f"{where}: a numeric condition needs a threshold and its unit")
            episode = _number(r.get("episode_days"), int, where, "episode_days", problems)
            if episode is None or episode < 1:
                problems.append(f"{where}: episode_days must be a whole number of days >= 1")
            specimen = r.get("specimen") or None
            if specimen is not None and specimen not in SPECIMEN_CONDITIONS:
                problems.append(f"{where}: specimen must be empty or one of {SPECIMEN_CONDITIONS}, not {specimen!r}")
            agent = r.get("agent") or None
            if r["condition"] == "organism" and not agent_phrases((agent or "").split("|")):
                problems.append(f"{where}: condition organism needs the agent's names in the agent column "
                                "(e.g. legionella|légionelle)")
            elif agent is not None and r["condition"] != "organism":
                problems.append(f"{where}: agent is read by condition organism only, not {r['condition']!r}")
            active = r.get("active", "yes").lower() or "yes"
            if active not in ("yes", "no"):
                problems.append(f"{where}: active must be yes or no")
            rows.append({
                "mdo_id": r["mdo_id"], "loinc_num": r["loinc_num"], "condition": r["condition"],
                "threshold": threshold, "unit": r.get("unit") or None,
                "min_age": _number(r.get("min_age"), int, where, "min_age", problems),
                "max_age": _number(r.get("max_age"), int, where, "max_age", problems),
                "specimen": specimen, "agent": agent, "episode_days": episode, "active": active == "yes",
                "note": r.get("note") or None,
                "line": line,
            })
    if canonical_units is not None:
        _check_units(rows, canonical_units, path, problems)
    rules = pl.DataFrame(rows, schema={"mdo_id": pl.Utf8, "loinc_num": pl.Utf8, "condition": pl.Utf8,
                                       "threshold": pl.Float64, "unit": pl.Utf8, "min_age": pl.Int64,
                                       "max_age": pl.Int64, "specimen": pl.Utf8, "agent": pl.Utf8,
                                       "episode_days": pl.Int64,
                                       "active": pl.Boolean, "note": pl.Utf8, "line": pl.Int64})
    dup = rules.filter(pl.struct("mdo_id", "loinc_num").is_duplicated())
    for mdo_id, code, line in dup.select("mdo_id", "loinc_num", "line").iter_rows():
        problems.append(f"{path}:{line}: duplicate rule for ({mdo_id}, {code})")
    episodes = rules.group_by("mdo_id").agg(pl.col("episode_days").drop_nulls().unique().alias("e"))
    for mdo_id, e in episodes.filter(pl.col("e").list.len() > 1).iter_rows():
        problems.append(f"{path}: {mdo_id} has several episode lengths {sorted(e)}: one per disease")
    systems = {} if loinc is None else dict(loinc.select("loinc_num", "display_en").iter_rows())
    for code, agent, line in rules.filter(pl.col("condition") == "organism").select(
            "loinc_num", "agent", "line").iter_rows():
        name = systems.get(code)
        if name and agent and not any(organisms.names_within(p, name) for p in agent_phrases(agent.split("|"))):
            problems.append(f"{path}:{line}: none of the agent's names {agent!r} is in the name of {code} "
                            f"({name!r}): give the organism the code identifies")
    if problems:
        raise MdoRulesError("invalid MDO rules: " + "; ".join(problems))  # one line (QA regr2 F7)
    return rules.drop("line").with_columns(
        pl.Series("code_site", [loinc_system_site(systems.get(c)) for c in rules["loinc_num"]], dtype=pl.Utf8))


def site_of(text: str | None) -> str | None:
    """``non_sterile``, ``sterile``, ``purpura`` or None (no text, or none of the words of the
    lists) for a specimen as a lab writes it or a LOINC system; a non-sterile word wins ('Ecouvillon
    de gorge', 'Sang/selles' are non-sterile), then a sterile one, then a purpuric lesion
    ('Biopsie cutanée lésion purpurique')."""
    padded = f" {normalise_label(text)} " if text else ""
    if not padded.strip():
        return None
    if any(f" {w} " in padded for w in NON_STERILE_SITE_WORDS):
        return "non_sterile"
    if any(f" {w} " in padded for w in STERILE_SITE_WORDS):
        return "sterile"
    if any(f" {w} " in padded for w in PURPURA_WORDS):
        return "purpura"
    return None


def loinc_system_site(display_en: str | None) -> str | None:
    """The site a LOINC's English name gives as its system ('... in Cerebral spinal fluid by NAA' ->
    sterile, '... in Stool' -> non_sterile); None for 'in Specimen', 'in Isolate' or no system."""
    m = re.search(r"\]\s*(?:by .*?\s)?in (.+?)(?:\s+by\s.*|\s+--.*)?$", display_en or "")
    if m is None or _UNSPECIFIED_SYSTEM.match(m.group(1).strip()):
        return None
    return site_of(m.group(1))


def _check_units(rows: list[dict], canonical_units: Callable[[list[str]], dict[str, str | None]], path: Path,
                 problems: list[str]) -> None:
    """Numeric rules whose unit is not the canonical unit of their LOINC: a problem each (``rows``
    rewritten to the UCUM code when the unit is a spelling of the canonical one)."""
    from transforms.terminology.units import conversion_factor, to_ucum

    numeric = [r for r in rows if r["condition"] in ("ge", "gt") and r["unit"]]
    if not numeric:
        return
    canonical = canonical_units(sorted({r["loinc_num"] for r in numeric}))
    for r in numeric:
        where, code, unit = f"{path}:{r['line']}", r["loinc_num"], r["unit"]
        canon = canonical.get(code)
        if canon is None:
            problems.append(f"{where}: {code} has no canonical unit: a numeric rule on it would never be "
                            "evaluated (use condition pos, or another code)")
            continue
        ucum = to_ucum(unit) or unit
        if ucum == canon:
            r["unit"] = canon
            continue
        factor, _ = conversion_factor(ucum, canon)
        hint = (f": write the threshold in {canon} ({r['threshold']:g} {unit} = {r['threshold'] * factor:g} {canon})"
                if factor is not None and r["threshold"] is not None else f": write the threshold in {canon}")
        problems.append(f"{where}: unit {unit} is not the canonical unit {canon} of {code}, the unit its results "
                        f"are compared in{hint}")


def _number(raw: str | None, kind, where: str, field: str, problems: list[str]):
    if raw in (None, ""):
        return None
    try:
        return kind(raw)
    except ValueError:
        problems.append(f"{where}: {field} is not a number: {raw!r}")
        return None


def rule_loincs(rules: pl.DataFrame) -> list[str]:
    return rules.filter("active")["loinc_num"].unique().sort().to_list()


def organism_loincs(rules: pl.DataFrame) -> list[str]:
    """The codes of the active rules of condition ``organism`` (whose result text is read)."""
    return rules.filter(pl.col("active") & (pl.col("condition") == "organism"))["loinc_num"].unique().sort().to_list()


def episode_days(rules: pl.DataFrame) -> dict[str, int]:
    return dict(rules.group_by("mdo_id").agg(pl.col("episode_days").first()).iter_rows())


def proves(condition: pl.Expr, threshold: pl.Expr, value: pl.Expr, comparator: pl.Expr) -> pl.Expr:
    """Whether a result (``value``, with ``comparator`` null for an exact value or '<', '<=', '>',
    '>=' for a bound) proves ``value <condition> threshold``, for condition ge, gt, le or lt.

    An exact value is compared; a bound proves the condition only when every value it allows does:
    '>b' means value > b, so it proves 'ge t' and 'gt t' when b >= t; '>=b' proves 'ge t' when
    b >= t and 'gt t' when b > t; '<'/'<=' never prove ge/gt. Symmetric for le/lt.
    """
    exact = comparator.is_null()
    return (
        pl.when(condition == "ge").then(
            pl.when(exact).then(value >= threshold)
            .when(comparator.is_in([">", ">="])).then(value >= threshold).otherwise(False))
        .when(condition == "gt").then(
            pl.when(exact).then(value > threshold)
            .when(comparator == ">").then(value >= threshold)
            .when(comparator == ">=").then(value > threshold).otherwise(False))
        .when(condition == "le").then(
            pl.when(exact).then(value <= threshold)
            .when(comparator.is_in(["<", "<="])).then(value <= threshold).otherwise(False))
        .when(condition == "lt").then(
            pl.when(exact).then(value < threshold)
            .when(comparator == "<").then(value <= threshold)
            .when(comparator == "<=").then(value < threshold).otherwise(False))
        .otherwise(False)
    )


def positive_results(results: pl.DataFrame, rules: pl.DataFrame) -> pl.DataFrame:
    """Current results that meet an active rule: one row per (result, disease) with mdo_id."""
    r = _evaluated(results, rules)
    return r.filter(pl.col("_counted")).drop(
        "condition", "threshold", "unit", "min_age", "max_age", "specimen_rule", "code_site", "stated_site",
        "specimen", "agent", "agent_named", "value_raw", "source", "_positive", "_counted")


UNREAD_SPECIMEN_COLUMNS = ("source", "mdo_id", "loinc_code", "specimen", "counted", "n_results", "first_seen",
                           "last_seen")


def unread_specimens(results: pl.DataFrame, rules: pl.DataFrame) -> pl.DataFrame:
    """Positive results on a rule with a ``specimen`` condition whose stated specimen is read as
    neither sterile, nor non-sterile, nor (for ``sterile_site_or_purpura``) a purpuric lesion, per
    lab (``source``), disease, LOINC code and specimen text (as stored in marts.fct_lab_results:
    identities masked, cut at 100 characters): ``counted`` says whether the code's own system (a
    sterile site) made it count anyway; the others are in no case. The next unknown wording of a
    specimen is listed here (quality.mdo_unread_specimens, gate suite mdo_unread_specimen) rather
    than silently dropped (QA regr2 F2)."""
    r = _evaluated(results, rules)
    stated = pl.col("specimen").str.strip_chars()
    unread = r.filter(pl.col("_positive") & pl.col("specimen_rule").is_not_null()
                      & (stated.str.len_chars().fill_null(0) > 0)
                      & (pl.col("stated_site").is_null()
                         | ((pl.col("stated_site") == "purpura") & (pl.col("specimen_rule") == "sterile_site"))))
    return (unread.with_columns(stated.str.slice(0, 100).alias("specimen"), pl.col("_counted").alias("counted"))
            .group_by("source", "mdo_id", "loinc_code", "specimen", "counted")
            .agg(pl.len().cast(pl.Int64).alias("n_results"), pl.col("collected_at").min().alias("first_seen"),
                 pl.col("collected_at").max().alias("last_seen"))
            .select(UNREAD_SPECIMEN_COLUMNS).sort("source", "mdo_id", "loinc_code", "specimen", nulls_last=True))


def _evaluated(results: pl.DataFrame, rules: pl.DataFrame) -> pl.DataFrame:
    """``results`` joined to the active rules of their code, with ``_positive`` (the result and the
    age meet the rule) and ``_counted`` (and the specimen condition too, and a person is known)."""
    if "source" not in results.columns:
        results = results.with_columns(pl.lit(None, pl.Utf8).alias("source"))
    if "specimen" not in results.columns:
        results = results.with_columns(pl.lit(None, pl.Utf8).alias("specimen"))
    if "code_site" not in rules.columns:
        rules = rules.with_columns(pl.lit(None, pl.Utf8).alias("code_site"))
    if "value_raw" not in results.columns:
        results = results.with_columns(pl.lit(None, pl.Utf8).alias("value_raw"))
    for column in ("specimen", "agent"):
        if column not in rules.columns:
            rules = rules.with_columns(pl.lit(None, pl.Utf8).alias(column))
    active = rules.filter("active").select("mdo_id", pl.col("loinc_num").alias("loinc_code"), "condition",
                                           "threshold", "unit", "min_age", "max_age",
                                           pl.col("specimen").alias("specimen_rule"), "code_site", "agent")
    r = results.select(RESULT_COLUMNS).join(active, on="loinc_code", how="inner")
    # each distinct specimen of the rows a specimen condition applies to is read once
    specimens = r.filter(pl.col("specimen_rule").is_not_null())["specimen"].drop_nulls().unique().to_list()
    sites = pl.DataFrame({"specimen": specimens, "stated_site": [site_of(x) for x in specimens]},
                         schema={"specimen": pl.Utf8, "stated_site": pl.Utf8})
    r = r.join(sites, on="specimen", how="left", maintain_order="left")
    # each distinct (agent, text) of the organism rules' rows is read once
    pairs = r.filter(pl.col("agent").is_not_null() & pl.col("value_raw").is_not_null()).select(
        "agent", "value_raw").unique()
    named = pairs.with_columns(pl.Series("agent_named", [
        organisms.names_agent(text, agent_phrases(agent.split("|"))) for agent, text in pairs.iter_rows()],
        dtype=pl.Boolean))
    r = r.join(named, on=["agent", "value_raw"], how="left", maintain_order="left")
    value_ok = pl.col("value_canonical").is_not_null() & (pl.col("unit_canonical") == pl.col("unit"))
    meets = (
        pl.when(pl.col("condition") == "pos").then(pl.col("result_class") == "POS")
        # a positive verdict, or a text naming the agent and nothing else (never a NEG/INVALID one)
        .when(pl.col("condition") == "organism").then(
            (pl.col("result_class") == "POS")
            | (pl.col("result_class").is_null() & pl.col("agent_named").fill_null(False)))
        .when(pl.col("condition").is_in(["ge", "gt"])).then(
            value_ok & proves(pl.col("condition"), pl.col("threshold"), pl.col("value_canonical"),
                              pl.col("value_comparator")))
        .otherwise(False)
    )
    age_ok = (
        (pl.col("min_age").is_null() | (pl.col("age") >= pl.col("min_age")))
        & (pl.col("max_age").is_null() | (pl.col("age") <= pl.col("max_age")))
    )
    stated_any = pl.col("specimen").str.strip_chars().str.len_chars().fill_null(0) > 0
    site_ok = (
        pl.when(pl.col("specimen_rule").is_null()).then(True)
        .when(pl.col("stated_site") == "non_sterile").then(False)
        .when(pl.col("stated_site") == "sterile").then(True)
        # a purpuric lesion: part of the IIM criterion only (rule specimen sterile_site_or_purpura)
        .when((pl.col("stated_site") == "purpura") & (pl.col("specimen_rule") == "sterile_site_or_purpura"))
        .then(True)
        .when(pl.col("code_site") == "non_sterile").then(False)
        .when(stated_any).then(pl.col("code_site") == "sterile")
        .otherwise(True)  # nothing stated on a sterile or unspecified code: counted (seeds/mdo_rules.md)
    )
    positive = (meets & age_ok).fill_null(False)
    return r.with_columns(positive.alias("_positive"),
                          (positive & site_ok.fill_null(False) & pl.col("person_key").is_not_null()).alias("_counted"))


def cases(positives: pl.DataFrame, episodes: dict[str, int]) -> pl.DataFrame:
    """New cases: the positive days that open an episode, per disease and person.

    The case's attributes come from the first positive result of its day (earliest collection, then
    delivery order, then line), so the choice is deterministic. A département, age class or sex
    that result lacks comes from the first of the case's other positive results of that day that
    gives one, in the same order (QA numbers F1, F2; as the SI-DEP person-days): the first result's
    own value wins even when another disagrees; another day's is never borrowed. The LOINC is the
    first result's.
    """
    attributes = ("dep", "cl_age90", "sex")
    day = (
        positives.sort(["mdo_id", "person_key", "collected_date", "collected_at", "file_seq", "line_no"],
                       nulls_last=True)
        .group_by(["mdo_id", "person_key", "collected_date"], maintain_order=True)
        .agg(pl.all().exclude(*attributes).first(), *(pl.col(c).drop_nulls().first() for c in attributes))
    )
    keep: list[bool] = []
    last_key, last_day = None, None
    for mdo_id, person, jour in day.select("mdo_id", "person_key", "collected_date").iter_rows():
        if (mdo_id, person) != last_key:
            last_key, last_day = (mdo_id, person), None
        if last_day is None or (jour - last_day).days >= episodes[mdo_id]:
            keep.append(True)
            last_day = jour
        else:
            keep.append(False)
    out = day.filter(pl.Series(keep, dtype=pl.Boolean)).with_columns(
        pl.col("collected_date").alias("jour"), semaine_expr(pl.col("collected_date")).alias("semaine"))
    return out.select(CASE_COLUMNS).sort("mdo_id", "person_key", "jour")


def weekly_cases(case_rows: pl.DataFrame, departements: list[str], semaines: list[str], mdo_ids: list[str],
                 period: tuple[date, date]) -> pl.DataFrame:
    """mdo_id x semaine x dep grid of new cases, zeros included (cases without a département are
    counted in no row), with ``days``: the days of each week inside ``period`` (first and last day
    the data cover), 7 for a complete week, fewer for a week the period starts or ends inside."""
    grid = (pl.DataFrame({"mdo_id": sorted(mdo_ids)})
            .join(pl.DataFrame({"semaine": sorted(semaines)}), how="cross")
            .join(pl.DataFrame({"dep": departements}), how="cross"))
    counts = case_rows.filter(pl.col("dep").is_not_null()).group_by("mdo_id", "semaine", "dep").agg(
        pl.len().cast(pl.Int64).alias("cases"))
    days = pl.DataFrame({"semaine": sorted(semaines), "days": [week_days(w, *period) for w in sorted(semaines)]},
                        schema={"semaine": pl.Utf8, "days": pl.Int64})
    return (grid.join(counts, on=["mdo_id", "semaine", "dep"], how="left")
            .with_columns(pl.col("cases").fill_null(0)).join(days, on="semaine", how="left")
            .select("mdo_id", "semaine", "dep", "cases", "days").sort("mdo_id", "semaine", "dep"))
