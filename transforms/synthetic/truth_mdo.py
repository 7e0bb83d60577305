"""The expected MDO weekly new cases, computed from the generator's own truth (rows.parquet).

Independent of the pipeline (nothing from transforms/epi): it reads the case rules table as plain
CSV and applies its definition (seeds/mdo_rules.md) to the rows the generator knows are valid and
current:

- a row is a positive for a disease when an active rule names its LOINC (``loinc_num``) and the
  condition holds: ``pos`` = result class POS; ``organism`` = result class POS too (the generator
  writes verdicts, never an organism's name, on identification codes); ``ge``/``gt`` = the value in the catalog's canonical
  unit (``value_canonical``) compared with the threshold, when the rule's unit is that canonical
  unit; ``min_age``/``max_age`` bound the age at collection (unknown age: no match);
- persons are the generator's persons (same NIR); per disease and person, positive days are walked
  in date order: a day is a new case when it is the person's first or comes ``episode_days`` or more
  after the person's last counted case;
- a case is counted in the ISO week (``YYYY-S##``) of its collection date, at the département of
  the person's residence (``dep`` of rows.parquet).

Returns only the non-zero (mdo_id, semaine, dep) counts.
"""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import polars as pl

from .seeds import SEEDS_DIR


def read_rules(path: Path = SEEDS_DIR / "mdo_rules.csv") -> list[dict]:
    with Path(path).open(encoding="utf-8", newline="") as fh:
        return [r for r in csv.DictReader(fh) if (r.get("active") or "yes").strip().lower() == "yes"]


def canonical_units(path: Path = SEEDS_DIR / "tests_catalog.csv") -> dict[str, str]:
    with Path(path).open(encoding="utf-8", newline="") as fh:
        return {r["loinc_num"]: r["canonical_unit"] for r in csv.DictReader(fh)}


def _meets(rule: dict, row: dict, units: dict[str, str]) -> bool:
    age = row["age"]
    if rule["min_age"] and (age is None or age < int(rule["min_age"])):
        return False
    if rule["max_age"] and (age is None or age > int(rule["max_age"])):
        return False
    if rule["condition"] in ("pos", "organism"):
        return row["result_class"] == "POS"
    value = row["value_canonical"]
    if value is None or units.get(row["loinc_num"]) != rule["unit"]:
        return False
    threshold = float(rule["threshold"])
    return value >= threshold if rule["condition"] == "ge" else value > threshold


def mdo_weekly(rows: pl.DataFrame, rules: list[dict] | None = None, units: dict[str, str] | None = None
               ) -> pl.DataFrame:
    rules = read_rules() if rules is None else rules
    units = canonical_units() if units is None else units
    by_code: dict[str, list[dict]] = {}
    for r in rules:
        by_code.setdefault(r["loinc_num"], []).append(r)
    episode = {r["mdo_id"]: int(r["episode_days"]) for r in rules}
    valid = rows.filter((pl.col("fate") == "valid") & pl.col("is_current")
                        & pl.col("loinc_num").is_in(list(by_code)))
    positive_days: dict[tuple[str, int], dict[date, str]] = {}
    for row in valid.select("loinc_num", "result_class", "value_canonical", "age", "person", "collected_date",
                            "dep").iter_rows(named=True):
        for rule in by_code[row["loinc_num"]]:
            if _meets(rule, row, units):
                positive_days.setdefault((rule["mdo_id"], row["person"]), {})[row["collected_date"]] = row["dep"]
    counts: dict[tuple[str, str, str], int] = {}
    for (mdo_id, _person), days in positive_days.items():
        last = None
        for day in sorted(days):
            if last is None or (day - last).days >= episode[mdo_id]:
                last = day
                y, w, _ = day.isocalendar()
                key = (mdo_id, f"{y}-S{w:02d}", days[day])
                counts[key] = counts.get(key, 0) + 1
    return pl.DataFrame(
        [(*k, v) for k, v in sorted(counts.items())],
        schema={"mdo_id": pl.Utf8, "semaine": pl.Utf8, "dep": pl.Utf8, "cases": pl.Int64}, orient="row",
    )
