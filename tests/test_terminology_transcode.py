"""transcode(): mapping join, versioned mappings, source LOINC fallback, qualitative results and
unit conversion, with exact expected outputs."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from tests.helpers import mappings_of, seed_loinc
from transforms.terminology.transcode import TRANSCODE_COLUMNS, coverage, transcode



@pytest.fixture(scope="module")
def loinc() -> pl.DataFrame:
    return seed_loinc()


@pytest.fixture(scope="module")
def mappings(tmp_path_factory, loinc) -> pl.DataFrame:
    return mappings_of(tmp_path_factory.mktemp("mappings"), loinc, [
        "GLY,Glycémie à jeun,,,14749-6,,",  # a lab in g/L mapped to the molar code
        "LEUCO,Leucocytes,,,6690-2,,",
        "HB,Hémoglobine,,,718-7,,",
        "CREA,Créatinine,,,2160-0,,2024-02-29",  # remapped from 1 March 2024 (valid_to inclusive)
        "CREA,Créatinine,,,14682-9,2024-03-01,",
        "LEU,Leucocytes,,Urine,24122-4,,",  # same code, specimen decides
        "LEU,Leucocytes,,,6690-2,,",
        "BICAR,Bicarbonates,,,1963-8,,",
        "COV,PCR SARS-CoV-2,,,94500-6,,",
    ])


def results(rows: list[tuple]) -> pl.DataFrame:
    cols = ["source", "local_code", "local_label", "loinc_code_src", "unit_raw", "specimen", "collected_at",
            "value_raw", "value_num", "line_no"]
    return pl.DataFrame(
        rows,
        schema={"source": pl.Utf8, "local_code": pl.Utf8, "local_label": pl.Utf8, "loinc_code_src": pl.Utf8,
                "unit_raw": pl.Utf8, "specimen": pl.Utf8, "collected_at": pl.Datetime("us"),
                "value_raw": pl.Utf8, "value_num": pl.Float64, "line_no": pl.Int64},
        orient="row",
    ).select(cols)


D = dt.datetime


def test_transcode_exact_outputs(mappings, loinc):
    df = results(
        [
            ("labo_a", "GLY", "Glycémie à jeun", None, "g/L", "Sérum", D(2024, 5, 2, 8), "1,08", 1.08, 1),
            ("labo_a", "LEUCO", "Leucocytes", None, "G/L", "Sang", D(2024, 5, 2, 8), "7,2", 7.2, 2),
            ("labo_a", "LEUCO", "Leucocytes", None, "/mm3", "Sang", D(2024, 5, 2, 8), "7200", 7200.0, 3),
            ("labo_a", "HB", "Hémoglobine", None, "g/l", "Sang", D(2024, 5, 2, 8), "135", 135.0, 4),
            ("labo_a", "CREA", "Créatinine", None, "mg/L", "Sérum", D(2024, 2, 29, 23, 59), "9", 9.0, 5),
            ("labo_a", "CREA", "Créatinine", None, "µmol/L", "Sérum", D(2024, 3, 1, 0, 1), "80", 80.0, 6),
            ("labo_a", "LEU", "Leucocytes", None, "/mL", "urine", D(2024, 5, 2), "10000", 10000.0, 7),
            ("labo_a", "LEU", "Leucocytes", None, "giga/l", "Sang", D(2024, 5, 2), "5,1", 5.1, 8),
            ("labo_a", "BICAR", "Bicarbonates", None, "mg/L", "Sérum", D(2024, 5, 2), "1500", 1500.0, 9),
            ("labo_a", "GLY", "Glycémie à jeun", None, "UI/L", "Sérum", D(2024, 5, 2), "3", 3.0, 10),
            ("labo_a", "GLY", "Glycémie à jeun", None, "gr/litre", "Sérum", D(2024, 5, 2), "1", 1.0, 11),
            ("labo_a", "COV", "PCR SARS-CoV-2", None, None, "NP", D(2024, 5, 2), "Non détecté", None, 12),
            ("labo_a", "COV", "PCR SARS-CoV-2", None, None, "NP", D(2024, 5, 2), "POSITIF", None, 13),
            ("labo_a", "COV", "PCR SARS-CoV-2", None, None, "NP", D(2024, 5, 2), "ininterprétable", None, 14),
            ("labo_b", "X9", "Hémoglobine", "718-7", "g/dL", "Sang", D(2024, 5, 2), "13,5", 13.5, 15),
            ("labo_b", "X8", "Truc", "718-6", "g/dL", "Sang", D(2024, 5, 2), "13,5", 13.5, 16),  # bad check digit
            ("labo_b", "X7", "Machin", None, None, None, D(2024, 5, 2), "12", 12.0, 17),
            ("labo_a", "HB", "Hémoglobine", None, None, "Sang", D(2024, 5, 2), "13", 13.0, 18),
        ]
    )
    out = transcode(df, mappings, loinc)
    assert out.columns == df.columns + list(TRANSCODE_COLUMNS)
    assert out["line_no"].to_list() == list(range(1, 19))  # order and count kept
    got = out.select(
        "loinc_code", "mapping_status", "result_qual", "result_class", "unit_ucum",
        pl.col("value_canonical").round(4), "unit_canonical", "conversion_status",
    ).rows()
    assert got == [
        ("14749-6", "mapped", None, None, "g/L", 5.9947, "mmol/L", "ok"),  # 1.08 / 180.16 g/mol
        ("6690-2", "mapped", None, None, "10*9/L", 7.2, "10*9/L", "same_unit"),
        ("6690-2", "mapped", None, None, "/mm3", 7.2, "10*9/L", "ok"),
        ("718-7", "mapped", None, None, "g/L", 13.5, "g/dL", "ok"),
        ("2160-0", "mapped", None, None, "mg/L", 0.9, "mg/dL", "ok"),  # before the remap date
        ("14682-9", "mapped", None, None, "umol/L", 80.0, "umol/L", "same_unit"),  # from 1 March 2024
        ("24122-4", "mapped", None, None, "/mL", 10000.0, "/mL", "same_unit"),  # urine row wins
        ("6690-2", "mapped", None, None, "10*9/L", 5.1, "10*9/L", "same_unit"),
        ("1963-8", "mapped", None, None, "mg/L", 1500.0, "mg/L", "no_molar_mass"),  # kept as sent
        ("14749-6", "mapped", None, None, "[IU]/L", 3.0, "[IU]/L", "incompatible_dimension"),
        ("14749-6", "mapped", None, None, None, 1.0, "gr/litre", "unit_unknown"),
        ("94500-6", "mapped", "260415000", "NEG", None, None, None, "not_numeric"),
        ("94500-6", "mapped", "10828004", "POS", None, None, None, "not_numeric"),
        ("94500-6", "mapped", "419984006", "INVALID", None, None, None, "not_numeric"),
        ("718-7", "source_loinc", None, None, "g/dL", 13.5, "g/dL", "same_unit"),
        (None, "unmapped", None, None, "g/dL", 13.5, "g/dL", "no_loinc"),
        (None, "unmapped", None, None, None, 12.0, None, "no_loinc"),
        ("718-7", "mapped", None, None, None, 13.0, None, "no_unit"),
    ]
    assert round(out["value_canonical"][0], 2) == 5.99


def test_mapping_wins_over_source_loinc_and_empty_input(mappings, loinc):
    df = results([("labo_a", "HB", "Hb", "20509-6", "g/dL", "Sang", D(2024, 1, 1), "13", 13.0, 1)])
    assert transcode(df, mappings, loinc)["loinc_code"].to_list() == ["718-7"]
    empty = transcode(df.clear(), mappings, loinc)
    assert empty.height == 0 and empty.columns == df.columns + list(TRANSCODE_COLUMNS)


def test_coverage(mappings, loinc):
    df = results(
        [
            ("labo_a", "HB", "Hb", None, "g/dL", "Sang", D(2024, 1, 1), "13", 13.0, 1),
            ("labo_a", "ZZ", "Zz", None, None, None, D(2024, 1, 1), "1", 1.0, 2),
            ("labo_a", "ZZ", "Zz", None, None, None, D(2024, 1, 1), "1", 1.0, 3),
            ("labo_b", "X", "Hb", "718-7", "g/dL", "Sang", D(2024, 1, 1), "13", 13.0, 4),
        ]
    )
    cov = coverage(transcode(df, mappings, loinc))
    assert cov.rows() == [("labo_a", 3, 1, 0, 2, 1, 0.3333), ("labo_b", 1, 0, 1, 0, 0, 1.0)]
    assert cov.columns == ["source", "n_results", "n_mapped", "n_source_loinc", "n_unmapped", "n_unmapped_codes",
                           "share_coded"]


def test_mapping_join_on_many_codes(mappings, loinc):
    """200,000 rows x 3,000 codes map exactly, in order (its speed is measured by the benchmark,
    not asserted here: these machines are shared)."""
    n_codes, n = 3000, 200_000
    codes = loinc["loinc_num"].to_list()
    big_map = pl.DataFrame(
        {
            "source": ["labo_z"] * n_codes,
            "local_code": [f"C{i}" for i in range(n_codes)],
            "local_label": ["x"] * n_codes,
            "unit": [None] * n_codes,
            "specimen": [None] * n_codes,
            "loinc_num": [codes[i % len(codes)] for i in range(n_codes)],
            "valid_from": [None] * n_codes,
            "valid_to": [None] * n_codes,
            "origin": ["t"] * n_codes,
        },
        schema=mappings.schema,
    )
    df = pl.DataFrame(
        {
            "source": ["labo_z"] * n,
            "local_code": [f"C{i % (n_codes + 7)}" for i in range(n)],
            "local_label": ["x"] * n,
            "loinc_code_src": [None] * n,
            "unit_raw": ["g/L", "G/L", "mmol/l", None][0:1] * n,
            "specimen": ["Sang"] * n,
            "collected_at": [D(2024, 1, 1)] * n,
            "value_raw": ["1"] * n,
            "value_num": [1.0] * n,
        },
        schema_overrides={"loinc_code_src": pl.Utf8},
    )
    transcode(df.head(10), big_map, loinc)  # warm caches (UCUM parser)
    out = transcode(df, big_map, loinc)
    assert out["local_code"].equals(df["local_code"])
    expected = [codes[int(c[1:]) % len(codes)] if int(c[1:]) < n_codes else None for c in df["local_code"][:20]]
    assert out["loinc_code"][:20].to_list() == expected


def test_row_without_collection_date_takes_the_version_in_force(mappings, loinc):
    df = results([("labo_a", "CREA", "Créatinine", None, "µmol/L", "Sérum", None, "80", 80.0, 1)])
    assert transcode(df, mappings, loinc).select("loinc_code", "conversion_status").rows() == [("14682-9", "same_unit")]


def test_unit_differing_from_the_mapping_still_maps_but_contradicting_specimen_does_not(tmp_path, loinc):
    m = mappings_of(tmp_path, loinc, ["GLY,Glycémie,g/L,Plasma,2339-0,,"], lab="labo_u")
    df = results(
        [
            ("labo_u", "GLY", "Glycémie", None, "mmol/l", "Plasma", D(2024, 1, 1), "5,5", 5.5, 1),  # other unit
            ("labo_u", "GLY", "Glycémie", None, "g/l", None, D(2024, 1, 1), "1", 1.0, 2),  # specimen not stated
            ("labo_u", "GLY", "Glycémie", None, "g/l", "LCR", D(2024, 1, 1), "0,6", 0.6, 3),  # contradicts
        ]
    )
    out = transcode(df, m, loinc)
    assert out.select("loinc_code", pl.col("value_canonical").round(4), "unit_canonical", "conversion_status").rows() == [
        ("2339-0", 0.9909, "g/L", "ok"),  # 5.5 mmol/L x 180.16 g/mol
        ("2339-0", 1.0, "g/L", "same_unit"),
        (None, 0.6, "g/L", "no_loinc"),
    ]


def test_a_result_without_a_value_is_not_numeric_not_text_on_a_quantitative_test(mappings, loinc):
    """QA: a leucocyte count sent with status X and no value counted as text where a number was
    expected, and inflated the lab's share of results not converted in the data-quality report."""
    df = results([
        ("labo_a", "LEUCO", "Leucocytes", None, "G/L", "Sang", D(2024, 5, 2, 8), None, None, 1),
        ("labo_a", "LEUCO", "Leucocytes", None, "G/L", "Sang", D(2024, 5, 2, 8), "non fait", None, 2),
        ("labo_a", "LEUCO", "Leucocytes", None, "G/L", "Sang", D(2024, 5, 2, 8), "7,2", 7.2, 3),
    ])
    out = transcode(df, mappings, loinc)
    assert out["conversion_status"].to_list() == ["not_numeric", "text_on_quantitative", "same_unit"]
