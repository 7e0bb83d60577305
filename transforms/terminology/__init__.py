"""Terminology: LOINC tables, lab mappings, transcoding, units, qualitative results, work queue.

Pure functions on polars frames; every path is a parameter. See docs/terminology.md.
"""

from transforms.terminology.loinc import (
    LOINC_SCHEMA,
    LoincFormatError,
    LoincTableError,
    combine_loinc,
    load_loinc_seed,
    load_loinc_table,
    load_official_loinc,
    loinc_check_ok,
    loinc_valid_expr,
)
from transforms.terminology.mappings import MAPPING_SCHEMA, MappingError, load_mappings
from transforms.terminology.qualitative import normalise_qualitative
from transforms.terminology.suggest import merge_unit_spellings, suggest, unmapped_backlog
from transforms.terminology.transcode import TRANSCODE_COLUMNS, coverage, transcode
from transforms.terminology.units import (
    DEFAULT_TERMINOLOGY_DIR,
    UnitTables,
    conversion_coverage,
    load_unit_tables,
)
from transforms.terminology.workqueue import (
    export_workqueue,
    import_workqueue,
    load_rejections,
    read_workqueue,
    remember_rejections,
    write_approved_mappings,
)

__all__ = [
    "DEFAULT_TERMINOLOGY_DIR",
    "LOINC_SCHEMA",
    "LoincFormatError",
    "LoincTableError",
    "MAPPING_SCHEMA",
    "MappingError",
    "TRANSCODE_COLUMNS",
    "UnitTables",
    "combine_loinc",
    "conversion_coverage",
    "coverage",
    "export_workqueue",
    "import_workqueue",
    "load_loinc_seed",
    "load_loinc_table",
    "load_mappings",
    "load_official_loinc",
    "load_rejections",
    "load_unit_tables",
    "loinc_check_ok",
    "loinc_valid_expr",
    "merge_unit_spellings",
    "normalise_qualitative",
    "read_workqueue",
    "remember_rejections",
    "suggest",
    "transcode",
    "unmapped_backlog",
    "write_approved_mappings",
]
