"""Units: what labs write -> UCUM, conversion factors, the shipped seed tables, coverage."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from transforms.terminology.loinc import load_loinc_seed
from transforms.terminology.units import (
    conversion_coverage,
    conversion_factor,
    convert_units,
    fraction_kind,
    is_valid_ucum,
    load_unit_tables,
    loinc_unit_table,
    to_ucum,
    unit_fits_property,
)

ROOT = Path(__file__).resolve().parents[1]
TABLES = load_unit_tables(ROOT / "seeds" / "terminology")


@pytest.mark.parametrize(
    ("written", "ucum"),
    [
        ("mmol/l", "mmol/L"), ("MMOL/L", "mmol/L"), ("G/L", "10*9/L"), ("giga/l", "10*9/L"), ("g/l", "g/L"),
        ("g/L", "g/L"), ("µmol/L", "umol/L"), ("μmol/l", "umol/L"), ("umol/l", "umol/L"), ("UI/L", "[IU]/L"),
        ("U/L", "U/L"), ("%", "%"), ("10^9/L", "10*9/L"), ("10*9/L", "10*9/L"), ("/mm3", "/mm3"),
        ("/mm³", "/mm3"), ("T/L", "10*12/L"), ("mg/dL", "mg/dL"), ("mg/L", "mg/L"), ("fL", "fL"), ("fl", "fL"),
        ("pg", "pg"), ("sec", "s"), ("s", "s"), (" g / L ", "g/L"), ("Gpt/L", "10*9/L"),
        ("mL/min/1.73m²", "mL/min/{1.73_m2}"), ("mUI/L", "m[IU]/L"),
        ("gr/litre", None), ("", None), (None, None),
    ],
)
def test_written_units_to_ucum(written, ucum):
    assert to_ucum(written, TABLES) == ucum


def test_every_alias_target_and_canonical_unit_is_valid_ucum():
    targets = set(TABLES.aliases["ucum"]) | set(TABLES.loinc_units["canonical_ucum"].drop_nulls())
    assert sorted(t for t in targets if not is_valid_ucum(t)) == []


def test_canonical_units_fit_their_property():
    lu = TABLES.loinc_units.drop_nulls("canonical_ucum")
    bad = [(c, u, p) for c, p, u in lu.select("loinc_num", "property_class", "canonical_ucum").iter_rows()
           if unit_fits_property(u, p) is False]
    assert bad == []


@pytest.mark.parametrize(
    ("src", "dst", "mw", "pc", "expected"),
    [
        ("g/L", "mmol/L", 180.16, None, (5.55062166963, "ok")),
        ("mmol/L", "g/L", 180.16, None, (0.18016, "ok")),
        ("mg/dL", "umol/L", 113.12, None, (88.4016973126, "ok")),
        ("10*9/L", "10*9/L", None, None, (1.0, "same_unit")),
        ("/mm3", "10*9/L", None, None, (0.001, "ok")),
        ("10*3/uL", "10*9/L", None, None, (1.0, "ok")),
        ("g/L", "g/dL", None, None, (0.1, "ok")),
        ("L/L", "%", None, None, (100.0, "ok")),
        ("L/L", "%", None, "VFR", (100.0, "ok")),  # haematocrit 0.42 L/L -> 42 %
        ("mL/dL", "%", None, "VFR", (1.0, "ok")),
        ("mg/g", "%", None, "MFR", (0.1, "ok")),
        ("10*-3", "%", None, "MFR", (0.1, "ok")),  # generic fractions fit any kind
        ("mmol/mol", "%", None, "SFR", (0.1, "ok")),
        # HbA1c IFCC mmol/mol on the NGSP mass-fraction code: not a unit change (48 is not 4.8 %)
        ("mmol/mol", "%", None, "MFR", (None, "incompatible_dimension")),
        ("%", "mmol/mol", None, "MFR", (None, "incompatible_dimension")),
        ("L/L", "%", None, "MFR", (None, "incompatible_dimension")),
        ("mol/mol", "g/g", None, None, (None, "incompatible_dimension")),  # two explicit kinds
        ("mmol/mol", "mg/g", None, "RATIO", (None, "incompatible_dimension")),
        ("L/L", "mmol/mol", None, None, (None, "incompatible_dimension")),
        ("min", "s", None, None, (60.0, "ok")),
        ("[IU]/L", "U/L", None, "CCNC", (1.0, "ok")),  # French 'UI/L' on an enzyme
        ("[IU]/L", "U/L", None, "ACNC", (None, "incompatible_dimension")),
        ("[IU]/L", "10*9/L", None, None, (None, "incompatible_dimension")),  # pint would say 1e-9
        ("meq/L", "mmol/L", None, None, (None, "incompatible_dimension")),  # valence unknown
        ("g/L", "mmol/L", None, None, (None, "no_molar_mass")),
        ("g/L", "10*9/L", None, None, (None, "incompatible_dimension")),
        (None, "g/L", None, None, (None, "unit_unknown")),
        ("g/L", None, None, None, (None, "no_canonical_unit")),
    ],
)
def test_conversion_factor(src, dst, mw, pc, expected):
    assert conversion_factor(src, dst, mw, pc) == expected


def test_glucose_molar_mass_is_sourced():
    mm = TABLES.molar_masses.filter(pl.col("loinc_num") == "14749-6").row(0, named=True)
    assert mm["molar_mass_g_per_mol"] == 180.16
    assert mm["formula"] == "C6H12O6"
    assert "IUPAC" in mm["source"]


def test_loinc_unit_table_prefers_seed_then_example_unit():
    loinc = load_loinc_seed(ROOT / "seeds" / "reference" / "loinc.csv")
    lu = loinc_unit_table(loinc, TABLES).filter(pl.col("loinc_num").is_in(["14749-6", "1742-6", "6690-2", "2345-7"]))
    assert sorted(lu.rows()) == [
        ("14749-6", "SCNC", "mmol/L", 180.16),
        ("1742-6", "CCNC", "U/L", None),  # sources' [IU]/L stored as the enzyme unit
        ("2345-7", "MCNC", "mg/dL", 180.16),
        ("6690-2", "NCNC", "10*9/L", None),
    ]


def test_convert_units_and_coverage():
    loinc = load_loinc_seed(ROOT / "seeds" / "reference" / "loinc.csv")
    df = pl.DataFrame(
        {
            "source": ["a", "a", "a", "b", "b", "b"],
            "loinc_code": ["14749-6", "6690-2", "14749-6", "6690-2", "94500-6", "14749-6"],
            "unit_raw": ["g/L", "G/L", "UI/L", "bogus", None, "POSITIF"],  # last: result and unit swapped
            "value_num": [1.08, 7.2, 3.0, 5.0, None, None],
        }
    )
    out = convert_units(df, loinc, TABLES)
    assert out.select(pl.col("value_canonical").round(2), "unit_canonical", "conversion_status").rows() == [
        (5.99, "mmol/L", "ok"),
        (7.2, "10*9/L", "same_unit"),
        (3.0, "[IU]/L", "incompatible_dimension"),
        (5.0, "bogus", "unit_unknown"),
        (None, None, "not_numeric"),  # a qualitative test (no canonical unit): text is expected
        (None, None, "text_on_quantitative"),  # glucose has a canonical unit: text is a broken result
    ]
    cov = conversion_coverage(out)
    # the text on a quantitative test counts among the numeric tests, as one not converted
    assert cov.rows() == [("a", 3, 2, 0.6667, 1, 0, 0), ("b", 2, 0, 0.0, 0, 1, 1)]
    assert cov.columns == ["source", "n_numeric", "n_converted", "share_converted", "incompatible_dimension",
                           "text_on_quantitative", "unit_unknown"]


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("mmol/mol", "substance"), ("mol/mol{Hb}", "substance"), ("mg/g", "mass"), ("g/kg", "mass"),
        ("L/L", "volume"), ("mL/dL", "volume"), ("%", None), ("%{HbA1c}", None), ("1", None),
        ("10*-3", None), ("{ratio}", None), ("mmol/L", None), ("bogus", None), (None, None),
    ],
)
def test_fraction_kind(code, kind):
    assert fraction_kind(code) == kind


def test_units_fit_the_kind_of_fraction_of_the_property():
    assert unit_fits_property("%", "MFR") and unit_fits_property("mg/g", "MFR")
    assert unit_fits_property("mmol/mol", "MFR") is False
    assert unit_fits_property("mmol/mol", "SFR") is True
    assert unit_fits_property("L/L", "VFR") is True and unit_fits_property("g/g", "VFR") is False


def test_hba1c_in_mmol_per_mol_is_not_converted_to_percent():
    loinc = load_loinc_seed(ROOT / "seeds" / "reference" / "loinc.csv")
    df = pl.DataFrame(
        {
            "loinc_code": ["4548-4", "4548-4", "4544-3", "4544-3"],
            "unit_raw": ["mmol/mol", "%", "L/L", "l/l"],
            "value_num": [48.0, 6.5, 0.42, 0.40],
        }
    )
    out = convert_units(df, loinc, TABLES)
    assert out.select(pl.col("value_canonical").round(4), "unit_canonical", "conversion_status").rows() == [
        (48.0, "mmol/mol", "incompatible_dimension"),  # kept as sent, never 4.8 %
        (6.5, "%", "same_unit"),
        (42.0, "%", "ok"),  # haematocrit
        (40.0, "%", "ok"),
    ]


def test_blood_lead_in_umol_per_litre_converts_with_the_molar_mass_of_lead():
    mm = TABLES.molar_masses.filter(pl.col("loinc_num") == "10368-9").row(0, named=True)
    assert (mm["analyte"], mm["molar_mass_g_per_mol"], mm["formula"]) == ("lead", 207.2, "Pb")
    loinc = load_loinc_seed(ROOT / "seeds" / "reference" / "loinc.csv")
    df = pl.DataFrame({"loinc_code": ["10368-9"], "unit_raw": ["µmol/L"], "value_num": [0.30]})
    out = convert_units(df, loinc, TABLES)
    # 0.30 umol/L x 207.2 g/mol = 62.16 ug/L = 6.216 ug/dL (the code's canonical unit)
    assert out.select(pl.col("value_canonical").round(4), "unit_canonical", "conversion_status").row(0) == (
        6.216, "ug/dL", "ok",
    )
