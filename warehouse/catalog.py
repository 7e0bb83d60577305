"""Every warehouse table, declared once: layer, columns and types, grain (key), partitioning.

The Parquet files under ``<home>/warehouse/<layer>/<table>/`` are the truth; the DuckDB file
``<home>/biolake.duckdb`` only holds views over them (warehouse/views.py), all derived from here.
Layers and what they may hold:

- raw: what arrived, with lineage; the only layer with patient identities.
- staging: validated, typed, pseudonymised rows (no identity).
- marts: what analysts query (facts and aggregates).
- quality: file log, quarantine, coverage, run log (no identity).
- ref: reference tables shipped in seeds/ (geography, population, LOINC, mappings).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from transforms.canonical import CANONICAL_COLUMNS, Column

LAYERS = ("raw", "staging", "marts", "quality", "ref")


@dataclass(frozen=True)
class Table:
    layer: str
    name: str
    description: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    partition_by: str | None = None  # one sub-folder per value, e.g. file_id=<id>
    # rows written as one small file per value of this column, <value>.parquet (Warehouse.write_partition_file),
    # packed together by compaction like small partitions (warehouse/store.py)
    file_key: str | None = None
    identifying: bool = False  # holds patient identity: raw layer only

    @property
    def qualified(self) -> str:
        return f"{self.layer}.{self.name}"

    @property
    def schema(self) -> pl.Schema:
        return pl.Schema({c.name: c.dtype for c in self.columns})

    def empty(self) -> pl.DataFrame:
        return pl.DataFrame(schema=self.schema)


def C(name: str, dtype: pl.DataType, description: str) -> Column:
    return Column(name, dtype, description)


U, I, F, B, D = pl.Utf8(), pl.Int64(), pl.Float64(), pl.Boolean(), pl.Date()
TS = pl.Datetime("us")

_ingested = C("ingested_at", TS, "when biolake parsed the row")
_result_no = C("result_no", I, "order of the result in its file (1, 2, ...): with file_id, the row's key "
               "(line_no alone is not unique: results of a CDA embedded in one OBX share its line)")

RAW_RESULTS = Table(
    "raw", "results",
    "Every parsed result row as it arrived (canonical columns) with lineage; holds identities.",
    CANONICAL_COLUMNS + (_result_no, _ingested),
    key=("file_id", "result_no"), partition_by="file_id", identifying=True,
)

RAW_REJECTED = Table(
    "raw", "rejected_lines",
    "Lines or messages a parser could not turn into a result row, with their raw text.",
    (
        C("file_id", U, "input file"), C("line_no", I, "first line of the rejected line/message"),
        C("reason_code", U, "reason (quality/reasons.py)"), C("column", U, "offending column, if any"),
        C("detail", U, "what was wrong (no patient data)"), C("raw_text", U, "the rejected text"),
    ),
    key=("file_id", "line_no", "reason_code"), partition_by="file_id", identifying=True,
)

STAGING_RESULT_COLUMNS: tuple[Column, ...] = (
    C("file_id", U, "input file (sha256 prefix)"),
    C("line_no", I, "line or segment of the result in its file"),
    _result_no,
    C("file_seq", I, "order in which biolake registered the file (later corrections win ties)"),
    C("message_key", U, "keyed hash (HMAC, 128 bits) of lab and message or document id: equal for the "
                        "results of one message, unreadable (the id is in raw.results)"),
    C("source", U, "landing folder = sending lab"),
    C("lab_finess", U, "FINESS of the lab"),
    C("request_key", U, "keyed hash (HMAC, 128 bits) of lab and request number: equal for the results of "
                        "one request, unreadable (the number is in raw.results; file_id + line_no lead there)"),
    C("person_key", U, "keyed pseudonym of the patient (HMAC)"),
    C("link_key", U, "keyed pseudonym (HMAC) of the normalised family name, first name and birth date, "
                     "null when one is missing: results sharing it are one person in the counts"),
    C("sex", U, "F, M or null"),
    C("age", I, "age in full years at collection, null when birth date unknown"),
    C("cl_age90", I, "10-year age class (9, 19, ... 89, 90), null when age unknown"),
    C("dep", U, "département of residence (from postal code)"),
    C("collected_at", TS, "specimen collection time (event time); null only on a deletion (D) sent without it"),
    C("collected_date", D, "specimen collection date; null only on a deletion (D) sent without it"),
    C("received_at", TS, "reception at the lab"),
    C("validated_at", TS, "biological validation (report time)"),
    C("local_code", U, "lab's local test code"),
    C("local_label", U, "lab's local test label"),
    C("loinc_code_src", U, "LOINC given by the source"),
    C("value_type", U, "HL7 value type"),
    C("value_raw", U, "result as sent"),
    C("value_num", F, "numeric value; a bound when value_comparator is set (filter value_comparator IS NULL "
                      "for exact values)"),
    C("value_comparator", U, "'<', '<=', '>' or '>=' when the result is a bound ('<0,5', '>100'): value_num "
                             "and value_canonical are then the bound; null for an exact value"),
    C("unit_raw", U, "unit as sent"),
    C("ref_range", U, "reference range"),
    C("abnormal_flag", U, "abnormal flag"),
    C("result_status", U, "F, C, X or D"),
    C("specimen", U, "specimen type"),
    C("observation_sub_id", U, "observation sub-ID as sent (HL7/HPRIM OBX-4): results of one request and test with "
                               "different sub-IDs in one message are different results (isolate 1 and 2 of an "
                               "antibiogram); null when the format or the lab sends none"),
    C("observed_at", TS, "the observation's own time as sent (HL7/HPRIM OBX-14, CDA observation effectiveTime): "
                         "a timed series' point (a tolerance test's T0, T60, T120) or the analysis time; "
                         "collected_at stays the specimen's collection, which the counts use"),
    C("dq_flags", U, "';'-joined data-quality flags (AGE_UNKNOWN, BIRTH_DATE_PARTIAL: the birth date was sent "
                     "with its year, or year and month, only, BIRTH_DATE_INVALID: the birth date sent could not be "
                     "read or is impossible for this result (after the collection, more than 125 years before "
                     "it), both with AGE_UNKNOWN, SEX_UNKNOWN, SEX_INVALID: the sex sent could not be read "
                     "(with SEX_UNKNOWN), POSTAL_CODE_INVALID, POSTAL_CODE_PADDED: a 4-digit postal code read with "
                     "its leading zero put back (1000 as 01000), DEP_UNKNOWN, "
                     "IDENTITY_IN_TEXT: a NIR, name or birth date was masked in the free text, "
                     "FINESS_INVALID: the lab's FINESS is not 9 characters or fails its check digit)"),
)

STG_RESULTS = Table(
    "staging", "stg_results",
    "Validated results, typed and pseudonymised: no name, NIR, birth date or address.",
    STAGING_RESULT_COLUMNS, key=("file_id", "result_no"), partition_by="file_id",
)

CODED_COLUMNS: tuple[Column, ...] = (
    C("loinc_code", U, "LOINC code, null when unmapped"),
    C("mapping_status", U, "mapped | source_loinc | unmapped"),
    C("result_qual", U, "SNOMED CT qualifier of a qualitative result"),
    C("result_class", U, "POS | NEG | INVALID for qualitative results; null for a number, a text not recognised (quality.unrecognised_results) or an organism name (read by the MDO organism rules)"),
    C("unit_ucum", U, "unit as UCUM"),
    C("value_canonical", F, "value in the LOINC's canonical unit; a bound when value_comparator is set "
                            "(filter value_comparator IS NULL for exact values)"),
    C("unit_canonical", U, "canonical UCUM unit"),
    C("conversion_status", U, "unit conversion outcome"),
)

VERSION_COLUMNS = (
    C("version_key", U, "lab|request_key|test: the rows of one request and test share it (request_key is a "
                        "keyed hash: the request number cannot be read from it); transforms/versions.py tells "
                        "their results apart by person, day, specimen, value, sub-ID and own time"),
    C("is_current", B, "latest version of its result (false when replaced or deleted)"),
    C("superseded_by", U, "file_id:result_no of the version that replaced it"),
)

# The coded table has the fct's columns, the version flags as they are when the result has no
# other version (is_current unless deleted, superseded_by null): the publication settles them
# across files, and a file none of whose flags change is published as a hard link to its coded
# partition instead of being rewritten (flows/publish.py).
STG_RESULTS_CODED = Table(
    "staging", "stg_results_coded",
    "Validated results with their LOINC code, normalised qualitative result and canonical unit; "
    "is_current and superseded_by are provisional (the file alone): marts.fct_lab_results has them "
    "settled across files.",
    STAGING_RESULT_COLUMNS + CODED_COLUMNS + VERSION_COLUMNS, key=("file_id", "result_no"), partition_by="file_id",
)

FCT_LAB_RESULTS = Table(
    "marts", "fct_lab_results",
    "One row per valid result. is_current is false for a result replaced by a later correction "
    "(status C) or deleted (status D); counts use current rows only.",
    STAGING_RESULT_COLUMNS + CODED_COLUMNS + VERSION_COLUMNS,
    key=("file_id", "result_no"), partition_by="file_id",
)

SIDEP_PERSON_DAYS = Table(
    "staging", "sidep_person_days",
    "Counted SI-DEP person-days (after same-day and 60-day episode rules), per disease.",
    (
        C("disease", U, "test definition (seeds/test_definitions.csv)"),
        C("person_key", U, "the person: the least person_key of the linked pseudonyms (an INS and the traits of one person: docs/epidemiology.md, Person linkage), not always the counted result's own"), C("jour", D, "collection date"), C("dep", U, "département"),
        C("cl_age90", I, "age class, null when unknown"), C("sex", U, "F, M or null"),
        C("positive", B, "counted in P (else a negative counted in T only)"),
    ),
    key=("disease", "person_key", "jour"),
)

SIDEP_DAILY = Table(
    "marts", "sidep_daily",
    "SARS-CoV-2 persons positive (P) and tested (T) by collection day, département of residence, "
    "age class (0 = all ages) and sex, as defined in the README.",
    (
        C("jour", D, "collection date"), C("dep", U, "département of residence"),
        C("cl_age90", I, "age class, 0 = all ages"),
        C("P_f", I, "positive women"), C("P_h", I, "positive men"), C("P", I, "positive persons"),
        C("T_f", I, "tested women"), C("T_h", I, "tested men"), C("T", I, "tested persons"),
    ),
    key=("jour", "dep", "cl_age90"),
)

FILE_LOG = Table(
    "quality", "file_log",
    "One row per file seen in the landing area: registration, format, row accounting.",
    (
        C("log_id", U, "id of this sighting (hash of path and content)"),
        C("path", U, "path relative to the landing folder"),
        C("source", U, "landing folder = sending lab"),
        C("sha256", U, "sha256 of the content"),
        C("file_id", U, "content id (sha256 prefix) shared by identical deliveries"),
        C("file_seq", I, "registration order"),
        C("size_bytes", I, "size"),
        C("format", U, "csv | hl7v2 | cda | hprim | null when unknown"),
        C("status", U, "loaded | duplicate | failed"),
        C("duplicate_of", U, "path of the first delivery of the same content"),
        C("rows_in", I, "lines/messages read (header excluded)"),
        C("rows_valid", I, "rows that reached staging"),
        C("rows_quarantined", I, "rows or messages in quarantine"),
        C("reason_code", U, "file-level reason when status is failed"),
        C("detail", U, "file-level error message"),
        C("registered_at", TS, "when biolake first saw it"),
        C("run_id", U, "run that processed it"),
    ),
    key=("log_id",),
    file_key="log_id",
)

QUARANTINE = Table(
    "quality", "quarantine",
    "One row per rejected row or message and reason (a row may have several reasons).",
    (
        C("file_id", U, "input file"), C("path", U, "file path relative to the landing folder"),
        C("source", U, "landing folder"), C("line_no", I, "line or message start"),
        C("result_no", I, "the result's order in its file when a parsed result failed validation, "
                          "null when the line or message itself was rejected"),
        C("reason_code", U, "reason (see quality.reason_codes)"),
        C("column", U, "offending canonical column, null when the whole line is at fault"),
        C("detail", U, "explanation, without patient data"),
    ),
    key=("file_id", "line_no", "result_no", "reason_code", "column"), partition_by="file_id",
)

QUARANTINE_SETTLED = Table(
    "quality", "quarantine_settled",
    "Quarantined results a later delivery settled: a later file of the same lab holds a valid result "
    "of the same request and local test code (the same collection day when the quarantined one's "
    "could be read). The quarantine itself keeps what was refused and why (quality/settled.py).",
    (
        C("file_id", U, "file of the quarantined result, as in quality.quarantine"),
        C("result_no", I, "the quarantined result, as in quality.quarantine"),
        C("settled_by_file_id", U, "the earliest later file holding a valid result of its request and test"),
        C("settled_at", TS, "when biolake registered that file"),
    ),
    key=("file_id", "result_no"),
)

RUN_LOG = Table(
    "quality", "run_log",
    "One row per pipeline run: timing per stage and totals.",
    (
        C("run_id", U, "run id"), C("started_at", TS, "start"), C("finished_at", TS, "end"),
        C("files_new", I, "files processed"), C("files_duplicate", I, "re-deliveries skipped"),
        C("files_failed", I, "unreadable files"), C("rows_in", I, "rows read"),
        C("rows_valid", I, "rows valid"), C("rows_quarantined", I, "rows quarantined"),
        C("stage_seconds", U, "JSON: seconds per stage"),
    ),
    key=("run_id",),
    file_key="run_id",
)

UNMAPPED_BACKLOG = Table(
    "quality", "unmapped_backlog",
    "Local codes with no LOINC mapping: the mapping work queue, with volumes.",
    (
        C("source", U, "lab"), C("local_code", U, "local code"), C("local_label", U, "local label"),
        C("unit_raw", U, "unit as sent"), C("n_results", I, "results waiting"),
        C("first_seen", TS, "first collection time"), C("last_seen", TS, "last collection time"),
        C("specimen", U, "specimen most seen with it"),
        C("surveillance_loinc", U, "when the label reads like a test SI-DEP or MDO counts: the LOINC code it "
          "looks like (its results are missing from those counts until the code is mapped)"),
        C("surveillance", U, "what that code counts in (e.g. 'SI-DEP covid19, MDO covid19')"),
    ),
    key=("source", "local_code", "local_label", "unit_raw"),
)

MAPPING_COVERAGE = Table(
    "quality", "mapping_coverage",
    "Share of valid results with a LOINC code, per lab.",
    (
        C("source", U, "lab"), C("n_results", I, "valid results"),
        C("n_mapped", I, "coded through the lab's mapping"), C("n_source_loinc", I, "coded by the source itself"),
        C("n_unmapped", I, "without LOINC"), C("n_unmapped_codes", I, "distinct local codes without LOINC"),
        C("share_coded", F, "(n_mapped + n_source_loinc) / n_results"),
    ),
    key=("source",),
)

UNIT_CONVERSION = Table(
    "quality", "unit_conversion",
    "Numeric results by lab and unit-conversion outcome (ok/same_unit reached the canonical unit).",
    (
        C("source", U, "lab"), C("conversion_status", U, "outcome (see docs/terminology.md)"),
        C("n_results", I, "numeric results"), C("share", F, "share of the lab's numeric results"),
    ),
    key=("source", "conversion_status"),
)

UNRECOGNISED_RESULTS = Table(
    "quality", "unrecognised_results",
    "Text results on tests without a canonical unit whose wording biolake does not recognise, and numbers "
    "sent on such a test that SI-DEP or an MDO rule reads as a verdict "
    "(result_class null: counted in neither SI-DEP nor MDO), per lab, test and distinct text: the "
    "qualitative work list (docs/terminology.md says how to teach a wording).",
    (
        C("source", U, "lab"), C("local_code", U, "lab's local test code"),
        C("loinc_code", U, "LOINC code, null when unmapped"),
        C("value_raw", U, "the text as sent (spaces trimmed, cut at 200 characters)"),
        C("n_results", I, "current results with this text"),
        C("first_seen", TS, "first collection time"), C("last_seen", TS, "last collection time"),
        C("surveillance", U, "what the test counts in (e.g. 'SI-DEP covid19, MDO covid19'), null when nothing"),
        C("reason", U, "text_not_recognised (a wording), or number_on_qualitative_test (a number sent on a test "
                       "SI-DEP or an MDO rule reads as a verdict, such as an IgM index: no verdict either)"),
    ),
    key=("source", "local_code", "loinc_code", "value_raw"),
)

QUALITATIVE_COVERAGE = Table(
    "quality", "qualitative_coverage",
    "Per lab: current text results on tests without a canonical unit, and how many were not "
    "recognised, overall and on the tests that count in SI-DEP or an MDO rule.",
    (
        C("source", U, "lab"), C("n_text_results", I, "text results on tests without a canonical unit"),
        C("n_unrecognised", I, "of which not recognised (result_class null)"),
        C("n_surveillance_text", I, "text results on tests counted in SI-DEP or an MDO rule"),
        C("n_surveillance_unrecognised", I, "of which not recognised"),
        C("share_unrecognised", F, "n_unrecognised / n_text_results (null without text results)"),
        C("share_surveillance_unrecognised", F, "n_surveillance_unrecognised / n_surveillance_text "
                                                "(null without such results)"),
    ),
    key=("source",),
)

REASON_CODES = Table(
    "quality", "reason_codes",
    "The quarantine reason vocabulary (quality/reasons.py): every reason_code of quality.quarantine, "
    "quality.file_log and raw.rejected_lines, with its meaning.",
    (C("reason_code", U, "reason code, as in quality.quarantine.reason_code"),
     C("description", U, "what the code means")),
    key=("reason_code",),
)

CORE_TABLES: tuple[Table, ...] = (
    RAW_RESULTS, RAW_REJECTED, STG_RESULTS, STG_RESULTS_CODED, FCT_LAB_RESULTS, SIDEP_PERSON_DAYS, SIDEP_DAILY,
    FILE_LOG, QUARANTINE, QUARANTINE_SETTLED, RUN_LOG, UNMAPPED_BACKLOG, MAPPING_COVERAGE, UNIT_CONVERSION,
    UNRECOGNISED_RESULTS, QUALITATIVE_COVERAGE, REASON_CODES,
)


def _all_tables() -> tuple[Table, ...]:
    # tables of the other sides live in their own modules (declared the same way)
    from warehouse import catalog_epi, catalog_privacy, catalog_reports

    return CORE_TABLES + catalog_epi.TABLES + catalog_privacy.TABLES + catalog_reports.TABLES

# ref tables are CSV seeds converted at each run (flows/steps.load_ref: text columns, as the code
# reading them expects, except population's cl_age90 and pop); their columns come from the seed files.
REF_SEEDS: dict[str, str] = {
    "departements": "reference/departements.csv",
    "postal_codes": "reference/postal_codes.csv",
    "population": "reference/population.csv",
    "loinc": "reference/loinc.csv",
    "mdo_list": "reference/mdo_list.csv",
    # what counts: the analysts can check the marts from the fact table with these (QA recompute F4)
    "test_definitions": "test_definitions.csv",
    "mdo_rules": "mdo_rules.csv",  # or the operator's table, BIOLAKE_MDO_RULES (flows/steps.load_ref)
}

I32 = pl.Int32()

# The ref views of both DuckDB files, one per seed: columns in the seed's order, typed as declared
# here (the Parquet files keep the seeds' text: 'yes'/'no' become BOOLEAN, counts INTEGER, in the
# views only; warehouse/views.ref_view_sql). Provenance of each seed: seeds/SOURCES.md.
REF_TABLES: dict[str, Table] = {t.name: t for t in (
    Table(
        "ref", "departements",
        "The 101 départements and the 8 collectivités d'outre-mer (INSEE COG, seeds/reference/departements.csv); "
        "the geography of the indicators is the départements and the COM with a population (975, 977, 978).",
        (
            C("dep_code", U, "département code: 2 characters (01 ... 95, 2A, 2B) or 3 digits overseas (971 ... 989)"),
            C("dep_name", U, "département name"),
            C("region_code", U, "INSEE région code; a COM is its own région (its own code)"),
            C("region_name", U, "région name"),
            C("zone", U, "metro (metropolitan France), drom (overseas départements) or com (collectivités d'outre-mer)"),
            C("is_com", B, "true for a collectivité d'outre-mer (975, 977, 978, 984, 986 to 989)"),
        ),
        key=("dep_code",),
    ),
    Table(
        "ref", "postal_codes",
        "Every French postal code with the département its residents are counted in "
        "(seeds/reference/postal_codes.csv; public reference data, not about patients).",
        (
            C("postal_code", U, "5-digit postal code"),
            C("dep_code", U, "département holding most of its communes (a tie: the one it is numbered after, "
                             "then the lowest code): the dep of a result"),
            C("n_communes", I32, "communes (or arrondissements) sharing the postal code"),
            C("multi_dep", B, "true when the postal code spans two départements"),
        ),
        key=("postal_code",),
    ),
    Table(
        "ref", "population",
        "Reference population by département (and COM 975, 977, 978) and age class, as in Santé publique "
        "France's SI-DEP files (seeds/reference/population.csv): the denominators of the rates.",
        (
            C("dep_code", U, "département code (ref.departements.dep_code)"),
            C("cl_age90", I, "10-year age class (9 = 0-9 ... 89 = 80-89, 90 = 90+), 0 = all ages"),
            C("pop", F, "inhabitants (whole numbers; the age classes of a code sum to its all-ages row)"),
        ),
        key=("dep_code", "cl_age90"),
    ),
    Table(
        "ref", "loinc",
        "The LOINC table biolake codes to: the shipped subset (seeds/reference/loinc.csv, 824 laboratory codes), "
        "or, when BIOLAKE_LOINC_TABLE is set, the official table completed by the subset (docs/terminology.md). "
        "This material "
        "contains content from LOINC (https://loinc.org), copyright Regenstrief Institute, Inc. and the LOINC "
        "Committee, available at no cost under the license at https://loinc.org/license.",
        (
            C("loinc_num", U, "LOINC code (with its check digit)"),
            C("display_fr", U, "French display name where a public source (or the official French variant) gives "
                               "one, else empty"),
            C("display_en", U, "English display name, empty when unknown"),
            C("component_fr", U, "component (analyte), in French, parsed from display_fr"),
            C("property", U, "LOINC property in French (Masse/Volume, Moles/Volume...), parsed from display_fr"),
            C("system", U, "system (specimen), in French, parsed from display_fr"),
            C("scale", U, "scale in French (Numérique, Résultat nominal...), parsed from display_fr"),
            C("method", U, "method in French, parsed from display_fr, empty when none"),
            C("example_ucum_unit", U, "an example unit (UCUM) given by a public source, empty when none"),
        ),
        key=("loinc_num",),
    ),
    Table(
        "ref", "mdo_list",
        "The notifiable diseases (maladies à déclaration obligatoire, Code de la santé publique D3113-6/7) "
        "with candidate LOINC codes (seeds/reference/mdo_list.csv).",
        (
            C("mdo_id", U, "disease id, as in seeds/mdo_rules.csv and marts.mdo_cases"),
            C("name_fr", U, "disease name in French"),
            C("name_en", U, "disease name in English"),
            C("lab_confirmable", U, "yes, partly or no: whether a lab result can confirm a case"),
            C("typical_lab_criterion_fr", U, "usual lab criterion of a case, in French"),
            C("candidate_loinc", U, "';'-joined LOINC codes whose name matches the agent (candidates, not rules)"),
        ),
        key=("mdo_id",),
    ),
    Table(
        "ref", "test_definitions",
        "The tests each SI-DEP test definition counts (seeds/test_definitions.csv): a current result of "
        "marts.fct_lab_results with one of a disease's LOINC codes and result_class POS or NEG counts in its "
        "P and T (docs/epidemiology.md).",
        (
            C("disease", U, "test definition (the disease column of the SI-DEP marts)"),
            C("loinc_num", U, "a LOINC code it counts"),
            C("method", U, "naat, antigen, igm...: the kind of test"),
            C("display_en", U, "the LOINC code's English name"),
        ),
        key=("disease", "loinc_num"),
    ),
    Table(
        "ref", "mdo_rules",
        "The MDO case rules in use (seeds/mdo_rules.csv, or the operator's BIOLAKE_MDO_RULES; documented in "
        "seeds/mdo_rules.md): a current positive result matching an active rule opens a case of its disease, "
        "once per episode (marts.mdo_cases).",
        (
            C("mdo_id", U, "disease (ref.mdo_list)"),
            C("loinc_num", U, "LOINC code of the result"),
            C("condition", U, "pos (a positive qualitative result), organism (an agent named in the text), "
                               "or ge/gt/le/lt against the threshold"),
            C("threshold", U, "threshold of a ge/gt/le/lt rule, in its unit (as written in the table)"),
            C("unit", U, "unit of the threshold"),
            C("min_age", U, "youngest age (years) a case may have, empty: none"),
            C("max_age", U, "oldest age (years) a case may have, empty: none"),
            C("specimen", U, "specimen the result must be on (e.g. sterile), empty: any"),
            C("agent", U, "agent an organism rule looks for in the text"),
            C("episode_days", I32, "days after a counted case during which the same person's positives are the same "
                                   "case (also the SI-DEP episode of a test definition of that name)"),
            C("active", B, "whether the rule counts"),
            C("note", U, "why the rule is there, or not active"),
        ),
        key=("mdo_id", "loinc_num"),
    ),
)}


TABLES: tuple[Table, ...] = _all_tables()


def table(qualified: str) -> Table:
    for t in TABLES:
        if t.qualified == qualified:
            return t
    raise KeyError(qualified)
