"""Epidemiology steps: SI-DEP indicators and MDO cases (marts), publications (exports), revisions.

Plain functions taking the pipeline's Context (flows/steps.py), so the Prefect flow wraps them as
tasks and tests call them directly:

- ``publish_epi(ctx, refs)``: recompute the epi marts for the days and weeks whose counts changed
  since the last run (all of them the first time), log what was rewritten in quality.epi_revisions;
  it also keeps the counted person-days (``staging.sidep_person_days``) and the foundation's SI-DEP
  contract table (``marts.sidep_daily``, covid19, derived from ``marts.sidep_dep_daily``), so that
  SI-DEP is computed in one place;
- ``export_publication(ctx, refs, issue_date)``: write ``<home>/publication/<issue_date>/``, the
  SpF-shaped CSV files with disclosure control and a manifest; earlier issues stay side by side;
- ``compare_issues(home, a, b)``: the cells that changed between two issues.

``epi_app`` is the matching Typer sub-app (``biolake epi export | compare | issues``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import uuid
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Optional

import polars as pl
import typer

from flows.cli_errors import fail, require_warehouse
from flows.settings import Settings
from flows.steps import Context
from transforms.epi import exports, indicators, mdo, revisions
from transforms.epi.suppression import DisclosureRule
from transforms.identity import person_links
from warehouse import catalog as cat
from warehouse import catalog_epi as ce

RESULT_COLUMNS = mdo.RESULT_COLUMNS
SIDEP_CONTRACT_DISEASE = "covid19"  # the test definition marts.sidep_daily holds (README: SI-DEP)
DAILY_TABLES = {"dep": ce.SIDEP_DEP_DAILY, "reg": ce.SIDEP_REGION_DAILY, "fra": ce.SIDEP_FRANCE_DAILY}


def disclosure_rule(settings: Settings | None = None) -> DisclosureRule:
    """The suppression rule of the settings (BIOLAKE_SUPPRESSION_THRESHOLD / _MIN_COUNT)."""
    settings = settings or Settings()
    return DisclosureRule(threshold=settings.suppression_threshold, min_count=settings.suppression_min_count)


class NothingToPublish(RuntimeError):
    pass


# --------------------------------------------------------------------------------------------
# marts
# --------------------------------------------------------------------------------------------
def rules_path(ctx: Context) -> Path:
    return ctx.settings.mdo_rules or ctx.settings.seeds_dir / "mdo_rules.csv"


def load_rules(ctx: Context, refs: dict[str, pl.DataFrame]) -> pl.DataFrame:
    return mdo.load_rules(rules_path(ctx), known_mdo=set(refs["mdo_list"]["mdo_id"].to_list()),
                          loinc=refs["loinc"], canonical_units=lambda codes: canonical_units(ctx, codes))


def check_rules(ctx: Context) -> pl.DataFrame:
    """The MDO rules table checked as publish_epi reads it, from the seeds (not the ref tables a
    run writes): called before a run reads any file (CLI preflight, start of the pipeline flow), so
    an invalid table (BIOLAKE_MDO_RULES) is refused in one line naming its file and line before
    anything is ingested (QA regr2 F7). Raises ``mdo.MdoRulesError``."""
    from flows.steps import loinc_table

    path = rules_path(ctx)
    if not path.is_file():
        raise mdo.MdoRulesError(f"invalid MDO rules: no file {path} (BIOLAKE_MDO_RULES)")
    mdo_list = pl.read_csv(ctx.settings.seeds_dir / cat.REF_SEEDS["mdo_list"], infer_schema=False)
    return mdo.load_rules(path, known_mdo=set(mdo_list["mdo_id"].to_list()), loinc=loinc_table(ctx.settings),
                          canonical_units=lambda codes: canonical_units(ctx, codes))


def canonical_units(ctx: Context, codes: list[str]) -> dict[str, str | None]:
    """The canonical UCUM unit results of each of ``codes`` are converted to (as transcode does:
    the shipped seeds/terminology/loinc_units.csv, else the LOINC table's example unit when it fits)."""
    from flows.steps import loinc_table
    from transforms.terminology.units import default_unit_tables, loinc_unit_table

    table = loinc_table(ctx.settings).filter(pl.col("loinc_num").is_in(codes))
    per_code = loinc_unit_table(table, default_unit_tables())  # the tables transcode converts with
    return dict(per_code.filter(pl.col("loinc_num").is_in(codes)).select("loinc_num", "canonical_ucum").iter_rows())


def linked_persons(ctx: Context, results: pl.DataFrame) -> pl.DataFrame:
    """``results`` with each person_key replaced by its person's id: the pseudonyms that share a
    link key (names and birth date) anywhere in marts.fct_lab_results are one person
    (transforms.identity.person_links): a result sent with the INS and one without, or one without
    the sex, are the same person's."""
    links = person_links(ctx.wh.scan(cat.FCT_LAB_RESULTS).select("person_key", "link_key"))
    if links.is_empty():
        return results
    return (results.join(links, on="person_key", how="left", maintain_order="left")
            .with_columns(pl.coalesce("person_id", "person_key").alias("person_key")).drop("person_id"))


def data_period(ctx: Context) -> tuple[date, date] | None:
    """The period the data cover: the first and the last collection day of the current results of
    marts.fct_lab_results, whatever their test (None when there is none). A week holding only some
    of its days (the data start or end inside it, the current week) is partial: marts.mdo_weekly
    gives each week its ``days`` in this period, and the weekly files keep the complete weeks."""
    first, last = ctx.wh.scan(cat.FCT_LAB_RESULTS).filter("is_current").select(
        pl.col("collected_date").min().alias("a"), pl.col("collected_date").max().alias("b")).collect().row(0)
    return None if first is None else (first, last)


def publish_epi(ctx: Context, refs: dict[str, pl.DataFrame], diseases: list[str] | None = None) -> dict:
    """Bring the epi marts up to date with marts.fct_lab_results, rewriting only what changed.

    Returns {'sidep': {disease: {'days': [...], 'weeks': [...]}}, 'mdo': {'weeks': [...], 'cases': n},
    'partitions_rewritten': n}.
    """
    defs = indicators.load_test_definitions(ctx.settings.seeds_dir / "test_definitions.csv")
    rules = load_rules(ctx, refs)
    geo = indicators.geography(refs["departements"], refs["population"])
    pops = indicators.populations(refs["population"], geo)
    diseases = sorted(diseases or defs["disease"].unique().to_list())
    codes = {d: indicators.definition_loincs(defs, d) for d in diseases}
    wanted = sorted(set().union(*codes.values()) | set(mdo.rule_loincs(rules)))
    results = linked_persons(
        ctx,
        ctx.wh.scan(cat.FCT_LAB_RESULTS)
        # status X, "cannot be obtained": whatever its value says, no result (QA: a "Positif" sent
        # with X counted as a positive person); D (deleted) is never current
        .filter(pl.col("is_current") & pl.col("loinc_code").is_in(wanted)
                & (pl.col("result_status") != "X").fill_null(True))
        # the text is read only by the organism rules: kept on their codes only (memory)
        .with_columns(pl.when(pl.col("loinc_code").is_in(mdo.organism_loincs(rules))).then(pl.col("value_raw"))
                      .alias("value_raw"))
        .select(RESULT_COLUMNS).collect(),
    )
    state = _state(ctx)
    reference = _fingerprint(geo, pops["dep"])
    force = state.get("reference") != reference
    stored = ctx.wh.read(ce.EPI_DIGESTS)
    log: list[dict] = []
    digests: list[pl.DataFrame] = []
    summary: dict = {"sidep": {}, "mdo": {}}
    person_days: dict[str, pl.DataFrame] = {}
    for disease in diseases:
        rows = results.filter(pl.col("loinc_code").is_in(codes[disease]))
        old = stored.filter((pl.col("dataset") == "sidep") & (pl.col("disease") == disease))
        person_days[disease] = indicators.person_days(rows, sidep_episode_days(rules, disease))
        summary["sidep"][disease], new = _publish_sidep(ctx, disease, person_days[disease], geo, pops, old, force,
                                                        log)
        digests.append(new.with_columns(pl.lit("sidep").alias("dataset"), pl.lit(disease).alias("disease")))
    changed = [d for d in diseases if summary["sidep"][d]["days"]]
    _store_person_days(ctx, person_days, rewrite=force or bool(changed))
    if SIDEP_CONTRACT_DISEASE in diseases:
        _store_sidep_daily(ctx, rewrite=force or SIDEP_CONTRACT_DISEASE in changed)
    mdo_ids = sorted(rules.filter("active")["mdo_id"].unique().to_list())
    old = stored.filter(pl.col("dataset") == "mdo")
    summary["mdo"], new = _publish_mdo(ctx, results, rules, mdo_ids, geo, old,
                                       force or state.get("mdo_ids") != mdo_ids, log, data_period(ctx))
    digests.append(new.with_columns(pl.lit("mdo").alias("dataset")))
    # positives whose specimen is read as neither sterile nor not: listed, never silent (QA regr2 F2)
    ctx.wh.write_table(ce.MDO_UNREAD_SPECIMENS, ctx.wh.conform(ce.MDO_UNREAD_SPECIMENS,
                                                               mdo.unread_specimens(results, rules)))
    keep = stored.filter(~(((pl.col("dataset") == "sidep") & pl.col("disease").is_in(diseases))
                           | (pl.col("dataset") == "mdo")))
    table = pl.concat([keep, *(ctx.wh.conform(ce.EPI_DIGESTS, d) for d in digests)]).sort("dataset", "disease",
                                                                                         "period")
    # written after every partition: a run that dies before this point is redone by the next one
    if force or log or not table.equals(stored.sort("dataset", "disease", "period")):
        ctx.wh.write_table(ce.EPI_DIGESTS, table)
    if log:
        ctx.wh.write_partition_file(ce.EPI_REVISIONS, f"{_safe(ctx.run_id)}-{uuid.uuid4().hex[:8]}",
                                    pl.DataFrame(log, schema=ce.EPI_REVISIONS.schema))
    _save_state(ctx, state | {"reference": reference, "mdo_ids": mdo_ids})
    summary["partitions_rewritten"] = len(log)
    return summary


def _store_person_days(ctx: Context, person_days: dict[str, pl.DataFrame], rewrite: bool) -> None:
    """staging.sidep_person_days: the counted person-days of the given test definitions replace theirs
    (those of other definitions are kept), when some changed or the table is not there yet."""
    t = cat.SIDEP_PERSON_DAYS
    if not rewrite and ctx.wh.files(t):
        return
    kept = ctx.wh.read(t).filter(~pl.col("disease").is_in(list(person_days)))
    new = [days.with_columns(pl.lit(d).alias("disease")).select(t.schema.names()) for d, days in person_days.items()]
    ctx.wh.write_table(t, pl.concat([kept, *new], how="vertical_relaxed").sort("disease", "person_key", "jour"))


def _store_sidep_daily(ctx: Context, rewrite: bool) -> None:
    """marts.sidep_daily (the SI-DEP contract: covid19 by day, département and age class) is the
    covid19 part of marts.sidep_dep_daily, without the disease, week and population columns."""
    t = cat.SIDEP_DAILY
    if not rewrite and ctx.wh.files(t):
        return
    daily = (ctx.wh.scan(ce.SIDEP_DEP_DAILY).filter(pl.col("disease") == SIDEP_CONTRACT_DISEASE)
             .select(t.schema.names()).sort("jour", "dep", "cl_age90").collect())
    ctx.wh.write_table(t, daily)


def _publish_sidep(ctx: Context, disease: str, new: pl.DataFrame, geo: pl.DataFrame,
                   pops: dict[str, pl.DataFrame], old: pl.DataFrame, force: bool, log: list[dict]
                   ) -> tuple[dict, pl.DataFrame]:
    """Recompute one test definition's marts for the days whose counted person-days (``new``) changed."""
    digests = revisions.digests(new, "jour")
    affected, period = revisions.affected_days(old, digests)
    if force:
        affected |= {date.fromisoformat(p) for p in old["period"].to_list()} | set(period)
    if not affected:
        return {"days": [], "weeks": []}, digests
    in_period = sorted(affected & set(period))
    dep_rows = indicators.daily_dep(new, geo, in_period, pops)
    daily = {"dep": dep_rows, "reg": indicators.roll_up(dep_rows, geo, "reg", pops),
             "fra": indicators.roll_up(dep_rows, geo, "fra", pops)}
    weeks = sorted(revisions.weeks_of(affected))
    for w in weeks:
        days_w = sorted(d for d in affected if indicators.semaine_of(d) == w)
        for level, table in DAILY_TABLES.items():
            part = daily[level].filter(pl.col("semaine") == w).with_columns(pl.lit(disease).alias("disease"))
            _merge(ctx, table, w, disease, pl.col("jour").is_in(days_w), part, log, _days_text(days_w))
        week_rows = pl.concat([
            indicators.weekly(_read_daily(ctx, level, disease, [w]), level).rename({level: "geo"})
            .with_columns(pl.lit(level).alias("level"))
            for level in DAILY_TABLES
        ], how="diagonal").with_columns(pl.lit(disease).alias("disease"))
        _merge(ctx, ce.SIDEP_WEEKLY, w, disease, pl.lit(True), week_rows, log, w)
    # 7-day rates depend on the 6 days before: recompute the days whose window holds an affected day
    rate_days = revisions.rate_days(affected, period)
    dropped = rate_days | (affected - set(period))
    lo = min(dropped).toordinal() - 6
    need = revisions.weeks_of(date.fromordinal(o) for o in range(lo, max(dropped).toordinal() + 1))
    parts = []
    for level in DAILY_TABLES:
        src = _read_daily(ctx, level, disease, sorted(need))
        parts.append(indicators.sliding_7d(src, level, sorted(rate_days), period[0] if period else date.min)
                     .rename({level: "geo"}).with_columns(pl.lit(level).alias("level")))
    rates = pl.concat(parts, how="diagonal").with_columns(pl.lit(disease).alias("disease"))
    for w in sorted(revisions.weeks_of(dropped)):
        days_w = sorted(d for d in dropped if indicators.semaine_of(d) == w)
        _merge(ctx, ce.SIDEP_RATES, w, disease, pl.col("jour").is_in(days_w),
               rates.filter(pl.col("semaine") == w), log, _days_text(days_w))
    return {"days": sorted(d.isoformat() for d in affected), "weeks": weeks}, digests


def _publish_mdo(ctx: Context, results: pl.DataFrame, rules: pl.DataFrame, mdo_ids: list[str],
                 geo: pl.DataFrame, old: pl.DataFrame, force: bool, log: list[dict],
                 period: tuple[date, date] | None) -> tuple[dict, pl.DataFrame]:
    """Recompute the MDO cases, and the weekly counts of the weeks whose cases or days changed
    (``period``: the days the data cover, see ``data_period``)."""
    new = mdo.cases(mdo.positive_results(results, rules), mdo.episode_days(rules))
    digests = pl.concat([
        revisions.digests(new.filter(pl.col("mdo_id") == m), "semaine").with_columns(pl.lit(m).alias("disease"))
        for m in mdo_ids
    ], how="diagonal") if mdo_ids else pl.DataFrame(schema={"period": pl.Utf8, "rows": pl.Int64,
                                                            "digest": pl.Utf8, "disease": pl.Utf8})
    changed = old.select("disease", "period", "digest").join(
        digests.select("disease", "period", "digest"), on=["disease", "period"], how="full", coalesce=True,
        suffix="_new").filter(~pl.col("digest").eq_missing(pl.col("digest_new")))
    tested = results.filter(pl.col("loinc_code").is_in(mdo.rule_loincs(rules)))
    weeks = sorted(revisions.weeks_of(revisions.period_days(tested, "collected_date")))
    old_weeks = set(ctx.wh.partitions(ce.MDO_WEEKLY))
    affected = set(changed["period"].to_list()) | (old_weeks ^ set(weeks))
    # a week whose days changed (a later delivery completes the week the data ended inside) is
    # rewritten even when its cases did not; so is every week of files written before the column
    # existed (read as null): the first run of this code rewrites the mart whole
    days = {w: indicators.week_days(w, *period) for w in weeks} if period else {}
    if old_weeks & set(weeks):
        stored = ctx.wh.scan(ce.MDO_WEEKLY).select("semaine", "days").unique().collect()
        affected |= {w for w, d in stored.iter_rows() if w in days and d != days[w]}
    ids = set(changed["disease"].to_list())
    if force:
        affected |= set(weeks) | old_weeks
        ids |= set(mdo_ids) | set(ctx.wh.partitions(ce.MDO_CASES))
    for mdo_id in sorted(ids):
        rows = new.filter(pl.col("mdo_id") == mdo_id)
        if rows.is_empty():
            ctx.wh.delete_partition(ce.MDO_CASES, mdo_id)
        else:
            ctx.wh.write_partition(ce.MDO_CASES, mdo_id, [rows])
        log.append(_log_row(ctx, ce.MDO_CASES, mdo_id, f"mdo_id={mdo_id}", "",
                            "rewritten" if rows.height else "removed", rows.height))
    deps = geo["dep"].to_list()
    for w in sorted(affected):
        if w in weeks:
            rows = mdo.weekly_cases(new.filter(pl.col("semaine") == w), deps, [w], mdo_ids, period)
            ctx.wh.write_partition(ce.MDO_WEEKLY, w, [rows])
            log.append(_log_row(ctx, ce.MDO_WEEKLY, "*", f"semaine={w}", w, "rewritten", rows.height))
        else:
            ctx.wh.delete_partition(ce.MDO_WEEKLY, w)
            log.append(_log_row(ctx, ce.MDO_WEEKLY, "*", f"semaine={w}", w, "removed", 0))
    return {"weeks": sorted(affected), "cases": new.height}, digests


def _read_daily(ctx: Context, level: str, disease: str, weeks: list[str]) -> pl.DataFrame:
    t = DAILY_TABLES[level]
    have = set(ctx.wh.partitions(t))
    return ctx.wh.read(t, [w for w in weeks if w in have]).filter(pl.col("disease") == disease).drop("disease")


def _merge(ctx: Context, t, part: str, disease: str, drop: pl.Expr, new: pl.DataFrame, log: list[dict],
           periods: str) -> None:
    """Replace, in partition ``part`` of ``t``, the rows of ``disease`` matching ``drop`` by ``new``."""
    existing = ctx.wh.read(t, [part]) if part in ctx.wh.partitions(t) else t.empty()
    keep = existing.filter(~((pl.col("disease") == disease) & drop))
    out = pl.concat([keep, ctx.wh.conform(t, new)]).sort(list(t.key))
    if out.is_empty():
        ctx.wh.delete_partition(t, part)
        action = "removed"
    else:
        ctx.wh.write_partition(t, part, [out])
        action = "rewritten"
    log.append(_log_row(ctx, t, disease, f"semaine={part}", periods, action, new.height))


def _log_row(ctx: Context, t, disease: str, partition: str, periods: str, action: str, rows: int) -> dict:
    return {"run_id": ctx.run_id, "revised_at": datetime.now(), "table_name": t.qualified, "disease": disease,
            "partition": partition, "periods": periods, "action": action, "rows": rows}


def _days_text(days) -> str:
    return ";".join(d.isoformat() for d in sorted(days))


def _fingerprint(*frames: pl.DataFrame) -> str:
    h = hashlib.sha256()
    for f in frames:
        h.update(f.sort(f.columns).write_csv().encode())
    return h.hexdigest()[:16]


def _state_path(ctx: Context) -> Path:
    return ctx.wh.root / "epi_state.json"


def _state(ctx: Context) -> dict:
    p = _state_path(ctx)
    return json.loads(p.read_text()) if p.exists() else {}


def _save_state(ctx: Context, state: dict) -> None:
    p = _state_path(ctx)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(f".{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    os.replace(tmp, p)


def _safe(key: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in key) or "run"


# --------------------------------------------------------------------------------------------
# publications
# --------------------------------------------------------------------------------------------
def publication_root(home: Path) -> Path:
    return Path(home).resolve() / "publication"


# what a reader of the files must know of who is in them (QA: the national files left out persons
# without a known département and said nothing); in manifest.json
COVERAGE_NOTE = (
    "Persons are counted at their département of residence. Persons whose département is unknown "
    "(a missing or malformed postal code, or a well-formed one that is in no reference such as 99999) or "
    "outside the published geography (the COM 984, 986 to 989) "
    "are in no row of any file, the national files included (SI-DEP and MDO): the national figures are the "
    "sums of the départements. How many, per disease and ISO week: not_in_files (a count from min_count to "
    "threshold is given as null, suppressed like a published cell). docs/epidemiology.md, SI-DEP indicators.")


def not_in_files(ctx: Context, geo: pl.DataFrame, rule: DisclosureRule, sidep: list[str],
                 mdo_excluded: list[str], mdo_weeks: set[str]) -> dict:
    """What the national files leave out (manifest.json ``not_in_files``; QA mdo F6): per disease and
    ISO week, the SI-DEP person-days of the test definitions ``sidep`` (P and T, every week: the
    daily files hold each day) and the MDO cases (the weeks the MDO files publish, ``mdo_weeks``;
    the diseases ``mdo_excluded``, published as SI-DEP files, left out) whose département is unknown
    or outside the published geography. Only non-zero rows; a count the disclosure rule would
    suppress is null with ``suppressed`` true (these counts add to no published cell, so they reveal
    none; hiding the small ones keeps a rare disease's few cases from being singled out)."""
    deps = geo["dep"].implode()
    outside = pl.col("dep").is_null() | ~pl.col("dep").is_in(deps)

    def shown(n: int) -> dict:
        return {"value": None, "suppressed": True} if rule.sensitive(n) else {"value": n, "suppressed": False}

    days = (ctx.wh.scan(cat.SIDEP_PERSON_DAYS).filter(pl.col("disease").is_in(sidep) & outside)
            .group_by("disease", indicators.semaine_expr(pl.col("jour")).alias("semaine"))
            .agg(P=pl.col("positive").sum().cast(pl.Int64), T=pl.len().cast(pl.Int64))
            .sort("disease", "semaine").collect())
    cases = (ctx.wh.scan(ce.MDO_CASES).filter(~pl.col("mdo_id").is_in(mdo_excluded) & outside
                                              & pl.col("semaine").is_in(sorted(mdo_weeks)))
             .group_by("mdo_id", "semaine").agg(cas=pl.len().cast(pl.Int64)).sort("mdo_id", "semaine").collect())
    return {
        "sidep": [{"disease": d, "semaine": w, "P": shown(p), "T": shown(t)} for d, w, p, t in days.iter_rows()],
        "mdo": [{"mdo": m, "semaine": w, "cas": shown(n)} for m, w, n in cases.iter_rows()],
    }


def export_publication(ctx: Context, refs: dict[str, pl.DataFrame], issue_date: str | None = None,
                       rule: DisclosureRule | None = None, diseases: list[str] | None = None,
                       gate: dict | None = None, replace: str | None = None) -> dict:
    """Write ``<home>/publication/<issue_date>/``: SpF-shaped files, suppressed, plus manifest.csv/.json.
    ``gate``: what manifest.json says of the quality gate (an override: its why and failures).

    An issue holds the warehouse as it is when written. Today's issue may be written again (the
    day's latest export replaces it, atomically); a past one only with ``replace`` (why, audited);
    a new issue dated before the latest one is refused (:func:`check_issue_date`). Other issues are
    never touched.
    """
    issue = _issue(issue_date)
    check_issue_date(ctx.wh.home, issue, replace)
    rule = rule or disclosure_rule(ctx.settings)
    geo = indicators.geography(refs["departements"], refs["population"])
    published = sidep_diseases(ctx)
    diseases = sorted(diseases or published)
    # the weekly files keep the weeks the data cover entirely (marts.mdo_weekly's days = 7)
    period = data_period(ctx)
    weeks = indicators.complete_weeks(*period) if period else set()
    files: list[exports.PublishedFile] = []
    audit: dict = {}
    for disease in diseases:
        daily, weekly = sidep_marts(ctx, disease)
        if daily["dep"].is_empty():
            raise NothingToPublish(f"no SI-DEP rows for {disease!r}: run the pipeline first")
        hidden = sidep_suppression(ctx, disease, daily, weekly, geo, rule)
        audit[disease] = {fam: len(h[2]) for fam, h in hidden.items()}
        files += exports.sidep_files(disease, daily, weekly, hidden, weeks)
    mdo_weekly = mdo_marts(ctx, published)
    if mdo_weekly.height:
        flags, mdo_audit = mdo_suppression(ctx, mdo_weekly, geo, rule)
        files += exports.mdo_files(mdo_weekly, flags, weeks)
        audit["mdo"] = mdo_audit
    if not files:
        raise NothingToPublish("nothing to publish: run the pipeline first")
    leaks = {k: v for k, v in audit.items() if any(v.values())}
    if leaks and rule.secondary != "none":  # cannot happen with the hypercube method: refuse to publish
        raise RuntimeError(f"disclosure audit failed, suppressed cells a reader could pin: {leaks}")
    missing = not_in_files(ctx, geo, rule, diseases, published, weeks)
    replaced = (publication_root(ctx.wh.home) / issue / "manifest.json").exists() and bool(replace)
    out = _write_issue(ctx, issue, files, rule, audit, gate, missing)
    if replaced:
        from flows.privacy import audit as audit_event

        audit_event(ctx, "issue_replaced", f"publication/{issue}", None,
                    {"issue_date": issue, "why": replace.strip(), "files": len(out["files"])})
    return out


# --------------------------------------------------------------------------------------------
# one suppression pattern for everything published
# --------------------------------------------------------------------------------------------
# The exports and the weekly report show cells of the same cubes. Suppressed separately, each would
# be safe alone, but their patterns differ and a reader holding both subtracts one from the other
# (QA recovered a hidden 9 from a région file and the report's département count). Both therefore
# take their hidden cells from these functions, memoised per warehouse, rule and data: a run's
# exports and report share one computation.
_PATTERNS: dict = {}
_PATTERNS_LOCK = threading.Lock()


def _digest(*frames: pl.DataFrame) -> tuple:
    """Order-independent fingerprint of frames (their rows' hashes summed, heights, schemas)."""
    return tuple((f.height, tuple(f.schema.items()), int(f.hash_rows().sum()) if f.height else 0) for f in frames)


def _memo(key: tuple, compute):
    with _PATTERNS_LOCK:
        if key not in _PATTERNS:
            if len(_PATTERNS) >= 32:
                _PATTERNS.clear()
            _PATTERNS[key] = compute()
        return _PATTERNS[key]


def sidep_diseases(ctx: Context) -> list[str]:
    """The test definitions with SI-DEP marts (only the disease column is read)."""
    return sorted(ctx.wh.scan(ce.SIDEP_DEP_DAILY).select("disease").unique().collect()["disease"].to_list())


def sidep_marts(ctx: Context, disease: str) -> tuple[dict[str, pl.DataFrame], pl.DataFrame]:
    """The daily tables by level and the weekly table of one test definition."""
    daily = {lvl: ctx.wh.read(t).filter(pl.col("disease") == disease).drop("disease")
             for lvl, t in DAILY_TABLES.items()}
    return daily, ctx.wh.read(ce.SIDEP_WEEKLY).filter(pl.col("disease") == disease).drop("disease")


def sidep_episode_days(rules: pl.DataFrame, disease: str) -> int:
    """The episode length of a test definition's P: the MDO disease's of the same name (its active
    rules' ``episode_days``), else SI-DEP's 60 days. A disease published as SI-DEP files is left out
    of the MDO files, its cases being the SI-DEP P: that holds only with one episode length (QA
    recompute F1: hepatitis A as a test definition counted a reinfection after 60 days that its MDO
    definition, 365 days, does not)."""
    from transforms.epi.sidep import EPISODE_DAYS

    return mdo.episode_days(rules.filter("active")).get(disease, EPISODE_DAYS)


def mdo_marts(ctx: Context, sidep_diseases: list[str]) -> pl.DataFrame:
    """marts.mdo_weekly without the diseases published as SI-DEP files (their cases are there)."""
    return ctx.wh.read(ce.MDO_WEEKLY).filter(~pl.col("mdo_id").is_in(sidep_diseases))


class SuppressionCache:
    """quality.epi_suppression for one rule: the suppression pattern of each week already computed
    (cell keys only, never counts), found again when the week's digest is unchanged
    (``exports.suppress_by_week``). ``computed``: the (label, week) computed by this object, for
    the tests and the logs."""

    def __init__(self, ctx: Context, rule: DisclosureRule):
        self.ctx = ctx
        self.rule = "/".join(str(v) for v in rule.as_dict().values())
        try:
            table = ctx.wh.read(ce.EPI_SUPPRESSION)
        except (OSError, pl.exceptions.PolarsError):  # an unreadable cache (a concurrent rewrite, an old file) is an empty one
            table = ce.EPI_SUPPRESSION.empty()
        self.rows = {(r["dataset"], r["disease"], r["family"], r["semaine"], r["rule"]): r
                     for r in table.iter_rows(named=True)}
        self.seen: set = set()
        self.labels: set = set()
        self.computed: list[tuple] = []
        self.changed = False

    def get(self, label: tuple, week: str, digest: str) -> tuple[set, set] | None:
        key = (*label, _plain_week(week), self.rule)
        self.seen.add(key)
        self.labels.add(label)
        row = self.rows.get(key)
        if row is None or row["digest"] != digest:
            self.computed.append((label, week))
            return None
        return _cells(row["primary_cells"]), _cells(row["secondary_cells"])

    def put(self, label: tuple, week: str, digest: str, primary: set, secondary: set) -> None:
        key = (*label, _plain_week(week), self.rule)
        self.rows[key] = dict(zip(ce.EPI_SUPPRESSION.schema.names(), (
            *key, digest, _cells_json(primary), _cells_json(secondary), str(self.ctx.run_id))))
        self.changed = True

    def save(self) -> None:
        """Write the table when something changed; the weeks of a cube computed here that it no
        longer has (and under this rule) are dropped. A failed write only loses the cache."""
        stale = [k for k in self.rows if k[:3] in self.labels and k[4] == self.rule and k not in self.seen]
        for k in stale:
            del self.rows[k]
        if not (self.changed or stale):
            return
        t = ce.EPI_SUPPRESSION
        table = pl.DataFrame([self.rows[k] for k in sorted(self.rows)], schema=t.schema, orient="row")
        try:
            self.ctx.wh.write_table(t, table)
        except OSError:
            pass
        self.changed = False


def _plain_week(week: str) -> str:
    return week[2:] if week.startswith("s:") else week


def _cells_json(cells: set) -> str:
    return json.dumps(sorted((list(c) for c in cells), key=repr), ensure_ascii=False)


def _cells(text: str) -> set:
    return {tuple(c) for c in json.loads(text)}


def sidep_suppression(ctx: Context, disease: str, daily: dict[str, pl.DataFrame], weekly: pl.DataFrame,
                      geo: pl.DataFrame, rule: DisclosureRule) -> dict:
    """``exports.suppress_sidep`` of these marts, computed once per warehouse, rule and data, and
    week by week only for the weeks whose cells changed since quality.epi_suppression kept them."""
    key = ("sidep", str(ctx.wh.root), disease, tuple(sorted(rule.as_dict().items())),
           _digest(daily["dep"], daily["reg"], daily["fra"], weekly, geo))

    def compute():
        cache = SuppressionCache(ctx, rule)
        out = exports.suppress_sidep(daily, weekly, geo, rule, cache, disease)
        cache.save()
        return out

    return _memo(key, compute)


def mdo_suppression(ctx: Context, weekly: pl.DataFrame, geo: pl.DataFrame, rule: DisclosureRule
                    ) -> tuple[pl.DataFrame, dict]:
    """``exports.suppress_mdo`` of these marts, computed once per warehouse, rule and data (weeks
    kept in quality.epi_suppression are not computed again)."""
    key = ("mdo", str(ctx.wh.root), tuple(sorted(rule.as_dict().items())), _digest(weekly, geo))

    def compute():
        cache = SuppressionCache(ctx, rule)
        out = exports.suppress_mdo(weekly, geo, rule, cache)
        cache.save()
        return out

    return _memo(key, compute)


def published_pattern(ctx: Context, refs: dict[str, pl.DataFrame], rule: DisclosureRule | None = None) -> dict:
    """What the exports hide, for other products showing the same cells (the weekly report):
    {'rule': DisclosureRule, 'sidep': {disease: {'P': cells, 'T': cells}} (cells of
    ``exports.sidep_cube_values``: ('dep:01' | 'reg:84' | 'fra:FR', cl_age90, 'j:2026-11-02' |
    's:2026-S45', 'all' | 'f' | 'h')), 'mdo': {(mdo_id, 'dep' | 'fra', geo, '2026-S45')},
    'mdo_excluded': the diseases the MDO files leave to the SI-DEP files}."""
    rule = rule or disclosure_rule(ctx.settings)
    geo = indicators.geography(refs["departements"], refs["population"])
    diseases = sidep_diseases(ctx)
    out: dict = {"rule": rule, "sidep": {}, "mdo": set(), "mdo_excluded": set(diseases)}
    for disease in diseases:
        daily, weekly = sidep_marts(ctx, disease)
        if daily["dep"].is_empty():
            continue
        hidden = sidep_suppression(ctx, disease, daily, weekly, geo, rule)
        out["sidep"][disease] = {fam: primary | secondary for fam, (primary, secondary, _) in hidden.items()}
    mdo_weekly = mdo_marts(ctx, diseases)
    if mdo_weekly.height:
        flags, _ = mdo_suppression(ctx, mdo_weekly, geo, rule)
        out["mdo"] = set(flags.select("mdo_id", "_level", "_geo", "semaine").iter_rows())
    return out


def refresh_databases(ctx: Context, by: str | None = None) -> None:
    """Rebuild biolake.duckdb and analyst.duckdb after a publication outside a run: a view built
    while its table had no file is an empty stand-in (quality.publications before the first issue)
    until the next build, and analyst.duckdb's copy of the audit trail lacks the export's events."""
    from flows.privacy import audit as audit_event
    from flows.steps import refresh_views
    from warehouse.analyst import build_analyst_db

    refresh_views(ctx)
    audit_event(ctx, "analyst_db_built", str(build_analyst_db(ctx.wh)), by=by)


def _gate_before_export(ctx: Context, ignore_gate: str | None) -> tuple[str | None, dict | None]:
    """The quality gate, run on the warehouse as it is now (QA: `epi export` published marts the gate
    had blocked). Returns (the reason the export must not go out, or None; what the manifest says
    of an override, or None). With ``ignore_gate`` (the operator's why) a failed gate is recorded in
    the audit trail and in the manifest, and the export goes on."""
    from flows.privacy import audit as audit_event
    from flows.quality_gate import block_reason, run_quality_gate

    gate = run_quality_gate(ctx)
    reason = block_reason(gate)
    if reason is None:
        return None, None
    if ignore_gate is not None and ignore_gate.strip():
        note = {"overridden": True, "why": ignore_gate.strip()[:500],
                "failures": [f[:300] for f in gate.get("failures", [])][:20]}
        audit_event(ctx, "gate_overridden", "publication", details={k: note[k] for k in ("why", "failures")},
                    by="epi-export")
        return None, note
    return reason, None


def _issue(issue_date: str | None) -> str:
    """The issue date as its folder's name: YYYY-MM-DD only. (Python's ``fromisoformat`` also takes
    20261126 and 2026-W48-4: QA cal F2 saw one day published in four folders, listed as four issues.)"""
    issue = issue_date or date.today().isoformat()
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", issue):
            raise ValueError(issue)
        date.fromisoformat(issue)
    except ValueError as err:
        raise ValueError(f"issue date must be YYYY-MM-DD, not {issue!r}") from err
    return issue


class IssueRefused(ValueError):
    """An issue date that would rewrite a past publication, or label today's data with a past date."""


def check_issue_date(home: Path, issue: str, replace: str | None = None, today: date | None = None) -> None:
    """Refuse an export that would change what was published (QA months F1: exporting a past issue
    date again replaced its files with weeks of newer data, silently, and ``epi compare`` of that
    issue with a later one then showed no difference): a past issue that exists, unless ``replace``
    says why (audited as ``issue_replaced``); a new issue dated before the latest one (the files
    would hold today's data under an earlier date). Today's issue (or a later date) may be written
    again: the day's latest export is its issue."""
    today = today or date.today()
    issues = sorted(i["issue_date"] for i in list_issues(home))
    if date.fromisoformat(issue) >= today:
        return
    if issue in issues:
        if replace and replace.strip():
            return
        raise IssueRefused(
            f"issue {issue} was already published and is never rewritten: its files hold the warehouse as it "
            f"was then (`biolake epi issues` lists the issues; `biolake epi compare {issue} <later issue>` shows "
            "what changed since). Publish today's issue (no --issue-date), or replace it with --replace \"why\" "
            "(kept in the audit trail)")
    later = [i for i in issues if i > issue]
    if later:
        raise IssueRefused(
            f"issue date {issue} is before the latest issue ({later[-1]}): its files would hold today's data "
            "under an earlier date. Publish today's issue (no --issue-date)")


def _write_issue(ctx: Context, issue: str, files: list[exports.PublishedFile], rule: DisclosureRule,
                 audit: dict, gate: dict | None = None, missing: dict | None = None) -> dict:
    root = publication_root(ctx.wh.home)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{issue}.{uuid.uuid4().hex}.tmp"
    tmp.mkdir()
    now = datetime.now().replace(microsecond=0)
    manifest = []
    for f in files:
        data = exports.csv_bytes(f.frame)
        (tmp / f.name).write_bytes(data)
        start, end = f.period
        manifest.append({
            "issue_date": issue, "file": f.name, "dataset": f.dataset, "disease": f.disease, "level": f.level,
            "frequency": f.frequency, "rows": f.frame.height, "sha256": exports.sha256(data),
            "period_start": start, "period_end": end, "rule": rule.describe(f.dataset), "threshold": rule.threshold,
            "cells_primary": f.cells_primary, "cells_secondary": f.cells_secondary,
            "published_at": now, "run_id": ctx.run_id,
        })
    table = pl.DataFrame(manifest, schema=ce.PUBLICATIONS.schema)
    (tmp / "manifest.csv").write_bytes(exports.csv_bytes(
        table.drop("published_at", "run_id").with_columns(pl.col(pl.Utf8).fill_null(""))))
    doc = {"issue_date": issue, "published_at": now.isoformat(), "run_id": ctx.run_id,
           "coverage": COVERAGE_NOTE, "not_in_files": missing or {"sidep": [], "mdo": []},
           **({"quality_gate": gate} if gate else {}),
           "disclosure": {"rule": rule.describe(), **rule.as_dict(),
                          "audit_recomputable_cells": audit},
           "files": [{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in m.items()} for m in manifest]}
    (tmp / "manifest.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    final = root / issue
    trash = None
    if final.exists():
        trash = root / f".{issue}.{uuid.uuid4().hex}.old"
        os.replace(final, trash)
    os.replace(tmp, final)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)
    ctx.wh.write_partition_file(ce.PUBLICATIONS, _safe(issue), table)
    from flows.privacy import audit as audit_event

    for m in manifest:
        audit_event(ctx, "export_written", f"publication/{issue}/{m['file']}", m["sha256"],
                    {"issue_date": issue, "dataset": m["dataset"], "disease": m["disease"], "rows": m["rows"],
                     "rule": m["rule"]})
    return {"issue_date": issue, "folder": str(final), "files": manifest, "rule": rule.describe()}


def list_issues(home: Path) -> list[dict]:
    root = publication_root(home)
    out = []
    for d in sorted(root.iterdir()) if root.exists() else []:
        m = d / "manifest.json"
        if d.is_dir() and not d.name.startswith(".") and m.exists():
            doc = json.loads(m.read_text(encoding="utf-8"))
            out.append({"issue_date": doc["issue_date"], "published_at": doc["published_at"],
                        "files": len(doc["files"]), "rule": doc["disclosure"]["rule"]})
    return out


def read_issue_file(home: Path, issue: str, name: str) -> pl.DataFrame | None:
    path = publication_root(home) / _issue(issue) / name
    if not path.exists():
        return None
    return pl.read_csv(path, separator=";", infer_schema=False)


def compare_issues(home: Path, before: str, after: str, files: list[str] | None = None) -> pl.DataFrame:
    """Cells that differ between two issues: file, key, column, before, after (text, empty = suppressed)."""
    names = []
    for issue in (before, after):
        m = publication_root(home) / _issue(issue) / "manifest.json"
        if not m.exists():
            raise FileNotFoundError(f"no publication {issue} under {publication_root(home)}")
        names += [f["file"] for f in json.loads(m.read_text(encoding="utf-8"))["files"]]
    wanted = sorted(set(names) if files is None else set(files))
    parts = [exports.compare_frames(n, read_issue_file(home, before, n), read_issue_file(home, after, n))
             for n in wanted]
    return pl.concat(parts) if parts else exports.compare_frames("", None, None)


# --------------------------------------------------------------------------------------------
# command line: biolake epi ...
# --------------------------------------------------------------------------------------------
epi_app = typer.Typer(add_completion=False, no_args_is_help=True,
                      help="SI-DEP and MDO publications: export, compare issues.")
HomeOpt = Annotated[Optional[Path], typer.Option("--home", help="data directory (env BIOLAKE_HOME, default ./data)")]


def _cli_ctx(home: Path | None) -> tuple[Context, dict]:
    """Context of a command, with the reference tables the last run stored (read-only)."""
    from flows.settings import Settings
    from flows.steps import read_refs

    settings = Settings(**({"home": home} if home is not None else {}))
    ctx = Context.create(settings, run_id=datetime.now().strftime("export-%Y%m%dT%H%M%S"))
    try:
        return ctx, read_refs(ctx)
    except FileNotFoundError as err:
        raise NothingToPublish(f"no warehouse under {settings.home_abs}: run `biolake run` first") from err


@epi_app.command("export")
def export_cmd(
    home: HomeOpt = None,
    issue_date: Annotated[Optional[str], typer.Option("--issue-date", help="YYYY-MM-DD (default today)")] = None,
    threshold: Annotated[Optional[int], typer.Option(help="largest count suppressed (default 10)")] = None,
    min_count: Annotated[Optional[int], typer.Option(help="smallest count suppressed (default 1)")] = None,
    ignore_gate: Annotated[Optional[str], typer.Option(
        "--ignore-gate", metavar="WHY",
        help="publish although the quality gate fails; WHY is kept in the audit trail")] = None,
    replace: Annotated[Optional[str], typer.Option(
        "--replace", metavar="WHY",
        help="write a past issue again (it is otherwise never rewritten); WHY is kept in the audit trail")] = None,
) -> None:
    """Write <home>/publication/<issue-date>/: SpF-shaped CSV files with disclosure control and a manifest.
    The quality gate runs first: when a critical expectation fails nothing is written (exit 1)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    base = disclosure_rule()
    from flows.lock import LockTimeout, warehouse_lock
    from flows.settings import WarehouseFormatError
    from flows.steps import check_upgradable

    try:
        # an explicit value is used or refused as the settings refuse it, never replaced by the
        # default (QA: --threshold 0 silently published with 10)
        for option, value in (("--threshold", threshold), ("--min-count", min_count)):
            if value is not None and value < 1:
                raise ValueError(f"{option} {value}: Input should be greater than or equal to 1")
        rule = DisclosureRule(threshold=base.threshold if threshold is None else threshold,
                              min_count=base.min_count if min_count is None else min_count)
        ctx, refs = _cli_ctx(home)
        check_issue_date(ctx.wh.home, _issue(issue_date), replace)  # before the gate: a line, no work
        # read the marts while no run rewrites them
        with warehouse_lock(ctx.wh.home, timeout=ctx.settings.lock_timeout):
            check_upgradable(ctx, migrated=True)  # marts of an earlier biolake: a line, not a traceback
            blocked, overridden = _gate_before_export(ctx, ignore_gate)
            if blocked:
                console.print(f"[red]{escape(blocked)}[/red]", soft_wrap=True)
                console.print("Nothing was written. Fix the data (`biolake report gate` shows the gate; "
                              "quality.expectation_results keeps it), or publish anyway with "
                              "--ignore-gate \"why\" (kept in the audit trail).", soft_wrap=True)
                raise typer.Exit(1)
            out = export_publication(ctx, refs, issue_date=issue_date, rule=rule, gate=overridden, replace=replace)
            refresh_databases(ctx, by="epi-export")  # quality.publications shows the issue now
    except (ValueError, NothingToPublish, LockTimeout, WarehouseFormatError) as err:
        fail(err)
    t = Table(title=f"publication {out['issue_date']} -> {out['folder']}", show_edge=False)
    for c in ("file", "rows", "period", "suppressed (primary+secondary)", "sha256"):
        t.add_column(c)
    for f in out["files"]:
        t.add_row(f["file"], str(f["rows"]), f"{f['period_start']} .. {f['period_end']}",
                  f"{f['cells_primary']}+{f['cells_secondary']}", f["sha256"][:12])
    console.print(t)
    console.print(f"disclosure rule: {out['rule']}")


@epi_app.command("compare")
def compare_cmd(
    before: Annotated[str, typer.Argument(help="earlier issue date")],
    after: Annotated[str, typer.Argument(help="later issue date")],
    home: HomeOpt = None,
    file: Annotated[Optional[list[str]], typer.Option("--file", help="only this file (repeatable)")] = None,
    csv: Annotated[bool, typer.Option("--csv", help="print every difference as CSV")] = False,
) -> None:
    """Revisions between two issues: every cell whose value changed (empty = suppressed)."""
    from rich.console import Console

    from flows.settings import Settings

    console = Console()
    settings = Settings(**({"home": home} if home is not None else {}))
    try:
        diff = compare_issues(settings.home_abs, before, after, file or None)
    except (FileNotFoundError, ValueError) as err:
        fail(err)
    if csv:
        typer.echo(exports.csv_bytes(diff).decode("utf-8"), nl=False)
        return
    if diff.is_empty():
        console.print(f"no difference between {before} and {after}")
        return
    from rich.markup import escape
    from rich.table import Table

    summary = Table(title=f"cells that differ, {before} -> {after}", show_edge=False)
    changes = ["revised", "now suppressed", "no longer suppressed", "new row", "row removed"]
    for c in ("file", *changes):  # file names whole, never cut (QA: 'sp-pos-quot-…' told nothing apart)
        summary.add_column(c, justify="left" if c == "file" else "right", no_wrap=c == "file",
                           overflow="fold", min_width=len(c) if c != "file" else None)
    counts = diff.group_by("file", "change").len()
    for f in sorted(counts["file"].unique().to_list()):
        got = dict(counts.filter(pl.col("file") == f).select("change", "len").iter_rows())
        summary.add_row(escape(f), *[f"{got.get(c, 0):,}" for c in changes])
    console.print(summary)
    first = Table(title=f"the first {min(30, diff.height)} of {diff.height:,} (--csv for all; an empty value is "
                        "suppressed, or the row is absent: see change)", show_edge=False)
    for c in ("file", "key", "column", "before", "after", "change"):
        first.add_column(c)
    for row in diff.head(30).iter_rows():
        first.add_row(*["" if v is None else escape(str(v)) for v in row])
    console.print(first)


@epi_app.command("issues")
def issues_cmd(home: HomeOpt = None) -> None:
    """List the publications kept under <home>/publication."""
    from rich.console import Console

    from flows.settings import Settings

    settings = Settings(**({"home": home} if home is not None else {}))
    require_warehouse(settings.home_abs)  # a typo in --home listed nothing, with success
    issues = list_issues(settings.home_abs)
    if not issues:
        Console().print(f"no publication yet under {settings.home_abs / 'publication'} (biolake epi export)",
                        markup=False)
    for i in issues:
        Console().print(f"{i['issue_date']}  {i['files']} files  published {i['published_at']}")
