"""transcode()'s prepared terminology: reused across calls, never served stale when a mapping,
LOINC or unit table changes (new frame or the same frame changed in place), and the per-text memos
give the same answers as computing each call afresh."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from tests.helpers import ROOT, mappings_of, seed_loinc
from transforms.terminology.transcode import map_local_codes, prepared_terminology, transcode
from transforms.terminology.units import convert_units, default_unit_tables, load_unit_tables

D = dt.datetime


@pytest.fixture(scope="module")
def loinc() -> pl.DataFrame:
    return seed_loinc()


@pytest.fixture(scope="module")
def mappings(tmp_path_factory, loinc) -> pl.DataFrame:
    return mappings_of(tmp_path_factory.mktemp("mappings"), loinc, [
        "GLY,Glycémie,g/L,,14749-6,,", "HB,Hémoglobine,,,718-7,,", "CREA,Créatinine,,,2160-0,,2024-02-29",
        "CREA,Créatinine,,,14682-9,2024-03-01,", "LEU,Leucocytes,,Urine,24122-4,,", "LEU,Leucocytes,,,6690-2,,",
        "COV,PCR SARS-CoV-2,,,94500-6,,",
    ])


def results() -> pl.DataFrame:
    rows = [
        ("labo_a", "GLY", None, "g/l", "Sérum", D(2024, 5, 2), "1,08", 1.08),
        ("labo_a", "GLY", None, "mmol/L", "Sérum", D(2024, 5, 2), "6", 6.0),
        ("labo_a", "HB", None, "g/L", "Sang", D(2024, 5, 2), "135", 135.0),
        ("labo_a", "CREA", None, "mg/L", "Sérum", D(2024, 2, 29, 23), "9", 9.0),
        ("labo_a", "CREA", None, "µmol/L", "Sérum", D(2024, 3, 1, 1), "80", 80.0),
        ("labo_a", "CREA", None, "µmol/L", "Sérum", None, "80", 80.0),
        ("labo_a", "LEU", None, "/mL", "URINE ", D(2024, 5, 2), "10000", 10000.0),
        ("labo_a", "LEU", None, "G/L", "Sang", D(2024, 5, 2), "5,1", 5.1),
        ("labo_a", "COV", None, None, "NP", D(2024, 5, 2), "Non détecté", None),
        ("labo_a", "COV", None, None, "NP", D(2024, 5, 2), "POSITIF", None),
        ("labo_b", "X9", "718-7", "g/dL", "Sang", D(2024, 5, 2), "13,5", 13.5),
        ("labo_b", "X8", "718-6", "g/dL", "Sang", D(2024, 5, 2), "13,5", 13.5),  # bad check digit
        ("labo_b", "X7", None, None, None, D(2024, 5, 2), "12", 12.0),
    ]
    return pl.DataFrame(
        rows,
        schema={"source": pl.Utf8, "local_code": pl.Utf8, "loinc_code_src": pl.Utf8, "unit_raw": pl.Utf8,
                "specimen": pl.Utf8, "collected_at": pl.Datetime("us"), "value_raw": pl.Utf8,
                "value_num": pl.Float64},
        orient="row",
    )


def test_prepared_terminology_is_reused_for_equal_tables(mappings, loinc):
    units = default_unit_tables()
    first = prepared_terminology(mappings, loinc, units)
    # equal content in new frames (a reload): served from the cache
    assert prepared_terminology(mappings.clone(), loinc.clone(), units) is first
    # different content: a new preparation
    assert prepared_terminology(mappings.head(3), loinc, units) is not first


def test_transcode_matches_the_unprepared_building_blocks(mappings, loinc):
    df = results()
    out = transcode(df, mappings, loinc)
    out = transcode(df, mappings, loinc)  # second call: served from the prepared terminology
    assert out.columns[: df.width] == df.columns and out.height == df.height
    assert out.select(df.columns).equals(df)
    # the mapping part equals map_local_codes, which prepares its table afresh on each call
    mapped = map_local_codes(df, mappings)
    assert out.filter(pl.col("mapping_status") == "mapped")["loinc_code"].to_list() == mapped.drop_nulls().to_list()
    assert out["loinc_code"].to_list() == [
        "14749-6", "14749-6", "718-7", "2160-0", "14682-9", "14682-9", "24122-4", "6690-2", "94500-6",
        "94500-6", "718-7", None, None,
    ]
    assert out["mapping_status"].to_list()[-3:] == ["source_loinc", "unmapped", "unmapped"]
    assert out["result_class"].to_list()[8:10] == ["NEG", "POS"]
    # the unit part equals convert_units, which rebuilds the LOINC unit table on each call
    converted = convert_units(out.select("loinc_code", "unit_raw", "value_num"), loinc)
    cols = ["unit_ucum", "value_canonical", "unit_canonical", "conversion_status"]
    assert out.select(cols).equals(converted.select(cols))
    assert out["conversion_status"].to_list()[:3] == ["ok", "same_unit", "ok"]


def test_changed_mapping_is_not_served_from_a_stale_cache(mappings, loinc):
    df = results()
    assert transcode(df, mappings, loinc)["loinc_code"][2] == "718-7"
    # a new frame with one mapping changed
    remapped = mappings.with_columns(
        loinc_num=pl.when(pl.col("local_code") == "HB").then(pl.lit("20509-6")).otherwise(pl.col("loinc_num")))
    assert transcode(df, remapped, loinc)["loinc_code"][2] == "20509-6"
    # the same frame object changed in place: its snapshot in the cache must not match any more
    inplace = mappings.clone()
    assert transcode(df, inplace, loinc)["loinc_code"][2] == "718-7"
    inplace.replace_column(inplace.get_column_index("loinc_num"), remapped["loinc_num"])
    assert transcode(df, inplace, loinc)["loinc_code"][2] == "20509-6"
    # a single cell set in place
    cell = mappings.clone()
    assert transcode(df, cell, loinc)["loinc_code"][2] == "718-7"
    cell[cell["local_code"].index_of("HB"), "loinc_num"] = "20509-6"
    assert transcode(df, cell, loinc)["loinc_code"][2] == "20509-6"
    # and back: the original table still gives the original answer
    assert transcode(df, mappings, loinc)["loinc_code"][2] == "718-7"


def test_changed_loinc_table_is_not_served_from_a_stale_cache(mappings, loinc):
    df = results()
    assert transcode(df, mappings, loinc)["mapping_status"][10] == "source_loinc"
    # 718-7 no longer known: the source's own code is refused
    without = loinc.filter(pl.col("loinc_num") != "718-7")
    out = transcode(df, mappings, without)
    assert out["mapping_status"][10] == "unmapped" and out["loinc_code"][10] is None
    # in place: the canonical unit of 718-7 disappears, so g/dL is kept as sent
    inplace = loinc.clone()
    assert transcode(df, mappings, inplace)["conversion_status"][10] == "same_unit"
    inplace.replace_column(inplace.get_column_index("loinc_num"),
                           inplace["loinc_num"].replace("718-7", "99999-9"))
    out = transcode(df, mappings, inplace)
    assert out["mapping_status"][10] == "unmapped" and out["conversion_status"][10] == "no_loinc"


def test_changed_unit_tables_are_not_served_from_a_stale_cache(mappings, loinc):
    df = results()
    base = default_unit_tables()
    out = transcode(df, mappings, loinc, base)
    assert out["unit_canonical"][2] == "g/dL" and out["value_canonical"][2] == pytest.approx(13.5)
    # other unit tables (another object): hemoglobin's canonical unit given as g/L
    other = load_unit_tables(ROOT / "seeds" / "terminology")
    other = type(other)(
        aliases=other.aliases,
        loinc_units=other.loinc_units.with_columns(
            canonical_ucum=pl.when(pl.col("loinc_num") == "718-7").then(pl.lit("g/L"))
            .otherwise(pl.col("canonical_ucum"))),
        molar_masses=other.molar_masses,
    )
    out = transcode(df, mappings, loinc, other)
    assert out["unit_canonical"][2] == "g/L" and out["conversion_status"][2] == "same_unit"
    assert transcode(df, mappings, loinc, base)["unit_canonical"][2] == "g/dL"
