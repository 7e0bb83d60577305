"""Warehouse tables of the epi side, declared like those of warehouse/catalog.py.

Counts are persons (see README "SI-DEP indicators"); every table holds a ``disease`` (test
definition of seeds/test_definitions.csv) or an ``mdo_id`` (seeds/mdo_rules.csv). Aggregates are
partitioned by ISO week (``semaine=2026-S45``) so a late or corrected result rewrites only the
weeks it changes; person-level tables hold only the pseudonymous person_key.

Import ``warehouse.catalog`` before this module (the catalog imports it back to list its tables).
"""

from __future__ import annotations

from transforms.canonical import Column
from warehouse.catalog import B, D, F, I, TS, U, Table

C = Column

_COUNTS = (
    C("P_f", I, "positive women"), C("P_h", I, "positive men"), C("P", I, "positive persons"),
    C("T_f", I, "tested women"), C("T_h", I, "tested men"), C("T", I, "tested persons"),
)
_DAY = (C("disease", U, "test definition (seeds/test_definitions.csv)"), C("jour", D, "collection date"),
        C("semaine", U, "ISO week of jour, YYYY-S##"))
_AGE = C("cl_age90", I, "age class (9 = 0-9 ... 89 = 80-89, 90 = 90+), 0 = all ages")
_POP = C("pop", F, "population (seeds/reference/population.csv)")

SIDEP_DEP_DAILY = Table(
    "marts", "sidep_dep_daily",
    "SI-DEP persons P and T by day, département and age class, for every test definition, with the "
    "population (full grid, zeros included).",
    (*_DAY, C("dep", U, "département of residence"), _AGE, *_COUNTS, _POP),
    key=("disease", "jour", "dep", "cl_age90"), partition_by="semaine",
)

SIDEP_REGION_DAILY = Table(
    "marts", "sidep_region_daily",
    "SI-DEP persons P and T by day, région (sum of its départements) and age class.",
    (*_DAY, C("reg", U, "région code (INSEE)"), _AGE, *_COUNTS, _POP),
    key=("disease", "jour", "reg", "cl_age90"), partition_by="semaine",
)

SIDEP_FRANCE_DAILY = Table(
    "marts", "sidep_france_daily",
    "SI-DEP persons P and T by day and age class for France (the 101 départements and the COM 975, 977, 978).",
    (*_DAY, C("fra", U, "FR"), _AGE, *_COUNTS, _POP),
    key=("disease", "jour", "fra", "cl_age90"), partition_by="semaine",
)

SIDEP_WEEKLY = Table(
    "marts", "sidep_weekly",
    "SI-DEP ISO-week sums of the daily persons by level (dep, reg, fra), with incidence and screening "
    "rate per 100,000 and positivity P/T.",
    (
        C("disease", U, "test definition"), C("semaine", U, "ISO week YYYY-S##"),
        C("level", U, "dep | reg | fra"), C("geo", U, "département, région code or FR"), _AGE, *_COUNTS, _POP,
        C("incidence", F, "P per 100,000 over the week"), C("screening_rate", F, "T per 100,000 over the week"),
        C("positivity", F, "P / T (null when T = 0)"),
        C("days", I, "days of the week the period covers: 7 for a complete week; fewer when the data start "
                     "or end inside it (its counts and rates cover only those days, the weekly files leave it out)"),
    ),
    key=("disease", "semaine", "level", "geo", "cl_age90"), partition_by="semaine",
)

SIDEP_RATES = Table(
    "marts", "sidep_rates",
    "SI-DEP sliding 7-day rates by day and level: incidence and screening rate per 100,000 over the 7 days "
    "ending that day, positivity (7-day and of the day). Null for the first 6 days of the period.",
    (
        *_DAY, C("level", U, "dep | reg | fra"), C("geo", U, "département, région code or FR"), _AGE,
        C("P_7j", I, "P over the 7 days ending jour"), C("T_7j", I, "T over the 7 days ending jour"), _POP,
        C("incidence_7j", F, "P_7j per 100,000"), C("screening_rate_7j", F, "T_7j per 100,000"),
        C("positivity_7j", F, "P_7j / T_7j"), C("positivity", F, "P / T of the day"),
    ),
    key=("disease", "jour", "level", "geo", "cl_age90"), partition_by="semaine",
)

MDO_CASES = Table(
    "marts", "mdo_cases",
    "New notifiable-disease cases: a person's positive result (per seeds/mdo_rules.csv) opening a disease "
    "episode, dated by collection.",
    (
        C("mdo_id", U, "disease (ref.mdo_list)"), C("person_key", U, "the person: the least person_key of the linked pseudonyms (docs/epidemiology.md, Person linkage), not always that of the result that opened the case"),
        C("jour", D, "collection date of the case"), C("semaine", U, "ISO week"),
        C("dep", U, "département of residence"), C("cl_age90", I, "age class, null when unknown"),
        C("sex", U, "F, M or null"), C("loinc_code", U, "test of the result that opened the case"),
    ),
    key=("mdo_id", "person_key", "jour"), partition_by="mdo_id",
)

MDO_WEEKLY = Table(
    "marts", "mdo_weekly",
    "New cases per ISO week, département and notifiable disease (full grid, zeros included), with the "
    "days of each week the data cover (filter days = 7 for complete weeks).",
    (C("mdo_id", U, "disease"), C("semaine", U, "ISO week"), C("dep", U, "département of residence"),
     C("cases", I, "new cases (persons, once per episode)"),
     C("days", I, "days of the week the period covers (first to last collection day of the current results): "
                  "7 for a complete week; fewer when the data start or end inside it, such as the current "
                  "week (its cases cover only those days, the MDO files leave it out)")),
    key=("mdo_id", "semaine", "dep"), partition_by="semaine",
)

EPI_DIGESTS = Table(
    "quality", "epi_digests",
    "What the epi marts were last computed from: per test definition and day (SI-DEP counted person-days) "
    "or per disease and week (MDO cases), the number of rows and a digest of them. A run recomputes the "
    "days and weeks whose digest changed (late or corrected results).",
    (
        C("dataset", U, "sidep | mdo"), C("disease", U, "test definition or MDO disease"),
        C("period", U, "jour (YYYY-MM-DD) or semaine (YYYY-S##)"), C("rows", I, "person-days or cases"),
        C("digest", U, "sha256 prefix of the sorted rows (pseudonymous keys only)"),
    ),
    key=("dataset", "disease", "period"),
)

EPI_SUPPRESSION = Table(
    "quality", "epi_suppression",
    "The disclosure control's pattern of each ISO week already computed, per cube (SI-DEP test "
    "definition and family P or T, MDO disease) and rule: which cells are suppressed, never their counts. "
    "A week whose digest is unchanged is not computed again (see docs/epidemiology.md, Disclosure control).",
    (
        C("dataset", U, "sidep | mdo"), C("disease", U, "test definition or MDO disease"),
        C("family", U, "P or T (SI-DEP positives or tested), cases (MDO)"),
        C("semaine", U, "ISO week YYYY-S##"),
        C("rule", U, "the disclosure rule's parameters (threshold/min_count/secondary/candidates per dimension)"),
        C("digest", U, "sha256 of what the week's pattern was computed from (code version, rule, dimensions, "
                       "the week's cells and counts); the counts themselves are not stored"),
        C("primary_cells", U, "JSON list of the week's cells suppressed because small (cell keys: geography, "
                              "age class, day or week, sex; no count)"),
        C("secondary_cells", U, "JSON list of the week's cells suppressed to protect them (cell keys, no count)"),
        C("run_id", U, "run or command that computed it"),
    ),
    key=("dataset", "disease", "family", "semaine", "rule"),
)

EPI_REVISIONS = Table(
    "quality", "epi_revisions",
    "What each run recomputed in the epi marts: the days or weeks whose counts changed (late or "
    "corrected results) and the partitions rewritten.",
    (
        C("run_id", U, "run"), C("revised_at", TS, "when"), C("table_name", U, "mart"),
        C("disease", U, "test definition or MDO disease ('*' for all)"),
        C("partition", U, "partition rewritten (semaine=...) or removed"),
        C("periods", U, "';'-joined days or weeks recomputed in that partition"),
        C("action", U, "rewritten | removed"), C("rows", I, "rows written"),
    ),
    key=("run_id", "table_name", "disease", "partition"),
)

PUBLICATIONS = Table(
    "quality", "publications",
    "Every file of every publication (issue): rows, sha256, period and the disclosure rule applied.",
    (
        C("issue_date", U, "issue (publication/<issue_date>/)"), C("file", U, "file name"),
        C("dataset", U, "sidep | mdo"), C("disease", U, "test definition or '*' (MDO)"),
        C("level", U, "dep | reg | fra"), C("frequency", U, "daily | weekly"),
        C("rows", I, "data rows"), C("sha256", U, "sha256 of the file"),
        C("period_start", U, "first jour or semaine"), C("period_end", U, "last jour or semaine"),
        C("rule", U, "disclosure rule as text"), C("threshold", I, "largest suppressed count"),
        C("cells_primary", I, "cells suppressed because small"),
        C("cells_secondary", I, "cells suppressed to protect them"),
        C("published_at", TS, "when the issue was written"), C("run_id", U, "run or command that wrote it"),
    ),
    key=("issue_date", "file"),
)

MDO_UNREAD_SPECIMENS = Table(
    "quality", "mdo_unread_specimens",
    "Positive results on an MDO rule that needs a normally sterile site (seeds/mdo_rules.csv column "
    "specimen) whose stated specimen biolake reads as neither sterile nor non-sterile (nor a purpuric "
    "lesion where the rule accepts one), per lab, disease, test and specimen text: counted only when "
    "the code's own system is a sterile site; teach the word in transforms/epi/mdo.py (QA regr2 F2).",
    (
        C("source", U, "lab"), C("mdo_id", U, "disease"), C("loinc_code", U, "LOINC code of the rule"),
        C("specimen", U, "the specimen as in marts.fct_lab_results (identities masked), cut at 100 characters"),
        C("counted", B, "true: counted all the same (the code's system is a sterile site); false: in no case"),
        C("n_results", I, "current positive results"),
        C("first_seen", TS, "first collection time"), C("last_seen", TS, "last collection time"),
    ),
    key=("source", "mdo_id", "loinc_code", "specimen", "counted"),
)

TABLES: tuple = (SIDEP_DEP_DAILY, SIDEP_REGION_DAILY, SIDEP_FRANCE_DAILY, SIDEP_WEEKLY,
                 SIDEP_RATES, MDO_CASES, MDO_WEEKLY, EPI_DIGESTS, EPI_SUPPRESSION, EPI_REVISIONS,
                 PUBLICATIONS, MDO_UNREAD_SPECIMENS)
