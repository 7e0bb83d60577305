"""LOINC check digit, the shipped subset loader and the official-distribution loader."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from transforms.terminology.loinc import (
    LOINC_SCHEMA,
    LoincFormatError,
    load_loinc_seed,
    load_official_loinc,
    loinc_check_ok,
    loinc_valid_expr,
)

SEED = Path(__file__).resolve().parents[1] / "seeds" / "reference" / "loinc.csv"

OFFICIAL_HEADER = (
    '"LOINC_NUM","COMPONENT","PROPERTY","TIME_ASPCT","SYSTEM","SCALE_TYP","METHOD_TYP","CLASS",'
    '"VersionLastChanged","CHNG_TYPE","DefinitionDescription","STATUS","CONSUMER_NAME","CLASSTYPE",'
    '"FORMULA","EXMPL_ANSWERS","SURVEY_QUEST_TEXT","SURVEY_QUEST_SRC","UNITSREQUIRED","RELATEDNAMES2",'
    '"SHORTNAME","ORDER_OBS","HL7_FIELD_SUBFIELD_ID","EXTERNAL_COPYRIGHT_NOTICE","EXAMPLE_UNITS",'
    '"LONG_COMMON_NAME","EXAMPLE_UCUM_UNITS","STATUS_REASON","STATUS_TEXT","CHANGE_REASON_PUBLIC",'
    '"COMMON_TEST_RANK","COMMON_ORDER_RANK","HL7_ATTACHMENT_STRUCTURE","EXTERNAL_COPYRIGHT_LINK",'
    '"PanelType","AskAtOrderEntry","AssociatedObservations","VersionFirstReleased",'
    '"ValidHL7AttachmentRequest","DisplayName"'
)


def official_row(num, comp, prop, sys_, scale, method, long_name, ucum, status="ACTIVE", definition=""):
    fields = [num, comp, prop, "Pt", sys_, scale, method, "CHEM", "2.77", "MIN", definition, status, "", "1",
              "", "", "", "", "Y", "", f"{comp} {sys_}-{prop}", "Both", "", "", ucum, long_name, ucum, "", "",
              "", "10", "0", "", "", "", "", "", "1.0", "", long_name]
    return ",".join('"' + f.replace('"', '""') + '"' for f in fields)


VARIANT_HEADER = (
    '"LOINC_NUM","COMPONENT","PROPERTY","TIME_ASPCT","SYSTEM","SCALE_TYP","METHOD_TYP","CLASS",'
    '"SHORTNAME","LONG_COMMON_NAME","RELATEDNAMES2","LinguisticVariantDisplayName"'
)


@pytest.mark.parametrize(
    ("code", "ok"),
    [
        ("2345-7", True), ("718-7", True), ("14749-6", True), ("94500-6", True), ("111556-7", True),
        ("2345-8", False), ("718-6", False), ("xx625-4", False), ("2345", False), ("2345-77", False),
        ("-7", False), ("", False), (" 718-7", False), (None, False),
    ],
)
def test_check_digit(code, ok):
    assert loinc_check_ok(code) is ok
    got = pl.DataFrame({"c": [code]}, schema={"c": pl.Utf8}).select(loinc_valid_expr("c")).item()
    assert got is ok


def test_vectorised_check_agrees_with_scalar_on_the_whole_seed_and_on_corrupted_codes():
    codes = pl.read_csv(SEED, infer_schema=False)["loinc_num"]
    corrupted = codes.str.slice(0, codes.str.len_chars() - 1) + (
        (codes.str.slice(-1).cast(pl.Int32) + 1) % 10
    ).cast(pl.Utf8)
    both = pl.concat([codes, corrupted]).to_frame("c")
    vec = both.select(loinc_valid_expr("c")).to_series().to_list()
    assert vec == [loinc_check_ok(c) for c in both["c"]]
    assert sum(vec) == codes.len()  # every shipped code valid, every corrupted one invalid


def test_load_seed_columns_and_property_class():
    df = load_loinc_seed(SEED)
    assert df.schema == LOINC_SCHEMA
    assert df.height == 824
    row = df.filter(pl.col("loinc_num") == "718-7").row(0, named=True)
    assert row["display_fr"] == "Hémoglobine [Masse/Volume] Sang ; Numérique"
    assert row["property_class"] == "MCNC"
    assert row["example_ucum_unit"] == "g/dL"
    # property from the English long-name bracket when the French one is missing
    assert df.filter(pl.col("loinc_num") == "2571-8")["property_class"].item() == "MCNC"


def test_load_seed_rejects_bad_code_with_file_and_line(tmp_path):
    bad = tmp_path / "loinc.csv"
    bad.write_text(
        "loinc_num,display_fr,display_en,component_fr,property,system,scale,method,example_ucum_unit\n"
        "718-7,Hémoglobine,,,,,,,\n"
        "2345-8,Glucose,,,,,,,\n",
        encoding="utf-8",
    )
    with pytest.raises(LoincFormatError, match=rf"{bad}:3: loinc_num '2345-8'"):
        load_loinc_seed(bad)


def test_official_loader_reads_english_and_french(tmp_path):
    main = tmp_path / "Loinc.csv"
    main.write_text(
        "\n".join(
            [
                OFFICIAL_HEADER,
                official_row("2345-7", "Glucose", "MCnc", "Ser/Plas", "Qn", "",
                             "Glucose [Mass/volume] in Serum or Plasma", "mg/dL",
                             definition="Line one\nline two of a multi-line definition"),
                official_row("718-7", "Hemoglobin", "MCnc", "Bld", "Qn", "",
                             "Hemoglobin [Mass/volume] in Blood", "g/dL"),
                official_row("14749-6", "Glucose", "SCnc", "Ser/Plas", "Qn", "",
                             "Glucose [Moles/volume] in Serum or Plasma", "mmol/L", status="ACTIVE"),
                official_row("94500-6", "SARS-CoV-2 (COVID-19) RNA", "PrThr", "Respiratory", "Ord",
                             "Probe.amp.tar",
                             "SARS-CoV-2 (COVID-19) RNA [Presence] in Respiratory system specimen by NAA with probe detection",
                             ""),
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    fr = tmp_path / "frFR18LinguisticVariant.csv"
    fr.write_text(
        VARIANT_HEADER + "\n"
        '"2345-7","Glucose","Masse/Volume","Ponctuel","Sérum/Plasma","Numérique","","Chimie","",'
        '"Glucose [Masse/Volume] Sérum/Plasma ; Numérique","",""\n'
        '"718-7","Hémoglobine","Masse/Volume","Ponctuel","Sang","Numérique","","Hématologie","","","",""\n',
        encoding="utf-8",
    )
    en_only = load_official_loinc(main)
    assert en_only.schema == LOINC_SCHEMA
    assert en_only.select("loinc_num", "display_en", "property", "property_class", "example_ucum_unit", "status").rows() == [
        ("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "MCnc", "MCNC", "mg/dL", "ACTIVE"),
        ("718-7", "Hemoglobin [Mass/volume] in Blood", "MCnc", "MCNC", "g/dL", "ACTIVE"),
        ("14749-6", "Glucose [Moles/volume] in Serum or Plasma", "SCnc", "SCNC", "mmol/L", "ACTIVE"),
        ("94500-6", "SARS-CoV-2 (COVID-19) RNA [Presence] in Respiratory system specimen by NAA with probe detection",
         "PrThr", "PRTHR", None, "ACTIVE"),
    ]
    assert en_only["display_fr"].null_count() == 4

    both = load_official_loinc(main, fr)
    assert both.select("loinc_num", "display_fr", "component_fr", "property", "system", "property_class").rows() == [
        ("2345-7", "Glucose [Masse/Volume] Sérum/Plasma ; Numérique", "Glucose", "Masse/Volume", "Sérum/Plasma", "MCNC"),
        # no French long name: built from the French parts
        ("718-7", "Hémoglobine [Masse/Volume] Sang ; Numérique", "Hémoglobine", "Masse/Volume", "Sang", "MCNC"),
        ("14749-6", None, None, "SCnc", "Ser/Plas", "SCNC"),
        ("94500-6", None, None, "PrThr", "Respiratory", "PRTHR"),
    ]


def test_official_loader_names_physical_line_of_bad_code(tmp_path):
    main = tmp_path / "Loinc.csv"
    main.write_text(
        "\n".join(
            [
                OFFICIAL_HEADER,
                official_row("2345-7", "Glucose", "MCnc", "Ser/Plas", "Qn", "", "Glucose", "mg/dL",
                             definition="two\nlines"),
                official_row("718-6", "Hemoglobin", "MCnc", "Bld", "Qn", "", "Hemoglobin", "g/dL"),
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    # record 2 starts on line 4 because record 1 spans lines 2-3
    with pytest.raises(LoincFormatError, match=rf"{main}:4: LOINC_NUM '718-6'"):
        load_official_loinc(main)


def test_official_loader_rejects_other_layouts_and_bad_variant(tmp_path):
    wrong = tmp_path / "Loinc.csv"
    wrong.write_text("code,name\n2345-7,Glucose\n", encoding="utf-8")
    with pytest.raises(LoincFormatError, match="not the official LOINC layout"):
        load_official_loinc(wrong)
    main = tmp_path / "Loinc2.csv"
    main.write_text(OFFICIAL_HEADER + "\n" + official_row("718-7", "Hb", "MCnc", "Bld", "Qn", "", "Hb", "g/dL") + "\n")
    fr = tmp_path / "frFR18LinguisticVariant.csv"
    fr.write_text(VARIANT_HEADER + '\n"7187","Hémoglobine","Masse/Volume","","Sang","Numérique","","","","","",""\n')
    with pytest.raises(LoincFormatError, match=rf"{fr}:2: LOINC_NUM '7187'"):
        load_official_loinc(main, fr)


def _official_file(path: Path) -> Path:
    """A small Loinc.csv in the official layout: CRP (absent from the subset), haemoglobin and
    glucose (in it), a deprecated code."""
    path.write_text(
        "\n".join(
            [
                OFFICIAL_HEADER,
                official_row("1988-5", "C reactive protein", "MCnc", "Ser/Plas", "Qn", "",
                             "C reactive protein [Mass/volume] in Serum or Plasma", "mg/L"),
                official_row("718-7", "Hemoglobin", "MCnc", "Bld", "Qn", "",
                             "Hemoglobin [Mass/volume] in Blood", "g/dL"),
                official_row("14749-6", "Glucose", "SCnc", "Ser/Plas", "Qn", "",
                             "Glucose [Moles/volume] in Serum or Plasma", "mmol/L"),
                official_row("2345-7", "Glucose", "MCnc", "Ser/Plas", "Qn", "",
                             "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", status="DEPRECATED"),
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    return path


def test_table_in_use_is_the_official_one_completed_by_the_subset(tmp_path):
    """QA: biolake always used the 824-code subset; BIOLAKE_LOINC_TABLE gives the official table,
    which the subset completes (French names, codes an older release lacks)."""
    from transforms.terminology.loinc import load_loinc_table

    assert load_loinc_table(SEED).equals(load_loinc_seed(SEED))  # nothing configured: the subset
    main = _official_file(tmp_path / "Loinc.csv")
    table = load_loinc_table(SEED, main)
    assert table.schema == LOINC_SCHEMA
    seed = load_loinc_seed(SEED)
    assert table.height == seed.height + 1  # 1988-5 added, every code of the subset kept
    by = {r["loinc_num"]: r for r in table.iter_rows(named=True)}
    crp = by["1988-5"]
    assert (crp["display_en"], crp["property_class"], crp["example_ucum_unit"], crp["status"], crp["display_fr"]) == (
        "C reactive protein [Mass/volume] in Serum or Plasma", "MCNC", "mg/L", "ACTIVE", None)
    # a code of both: official status and English name, the subset's French columns
    hb = by["718-7"]
    assert (hb["display_fr"], hb["property"], hb["system"], hb["display_en"], hb["status"]) == (
        "Hémoglobine [Masse/Volume] Sang ; Numérique", "Masse/Volume", "Sang", "Hemoglobin [Mass/volume] in Blood",
        "ACTIVE")
    assert by["2345-7"]["status"] == "DEPRECATED"
    # a subset code the official file lacks stays, as the subset has it
    assert by["94500-6"]["display_en"] == seed.filter(pl.col("loinc_num") == "94500-6")["display_en"].item()
    # with the French variant, its French name wins over the subset's
    fr = tmp_path / "frFR18LinguisticVariant.csv"
    fr.write_text(
        VARIANT_HEADER + "\n"
        '"718-7","Hémoglobine","Masse/Volume","Ponctuel","Sang total","Numérique","","Hématologie","",'
        '"Hémoglobine [Masse/Volume] Sang total ; Numérique","",""\n'
        '"1988-5","Protéine C réactive","Masse/Volume","Ponctuel","Sérum/Plasma","Numérique","","Chimie","",'
        '"Protéine C réactive [Masse/Volume] Sérum/Plasma ; Numérique","",""\n',
        encoding="utf-8",
    )
    with_fr = {r["loinc_num"]: r for r in load_loinc_table(SEED, main, fr).iter_rows(named=True)}
    assert with_fr["718-7"]["system"] == "Sang total"
    assert with_fr["1988-5"]["display_fr"] == "Protéine C réactive [Masse/Volume] Sérum/Plasma ; Numérique"


def test_table_in_use_errors_are_one_line_and_name_the_setting(tmp_path):
    from transforms.terminology.loinc import LoincTableError, load_loinc_table

    cases = [
        ((tmp_path / "nope.csv", None), r"BIOLAKE_LOINC_TABLE: .*nope\.csv does not exist"),
        ((tmp_path, None), r"BIOLAKE_LOINC_TABLE: .* is not a file"),
        ((None, tmp_path / "fr.csv"), r"BIOLAKE_LOINC_FR_TABLE is set but BIOLAKE_LOINC_TABLE is not"),
    ]
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("code,name\n2345-7,Glucose\n", encoding="utf-8")
    cases.append(((wrong, None), r"BIOLAKE_LOINC_TABLE: .*wrong\.csv:1: not the official LOINC layout"))
    main = _official_file(tmp_path / "Loinc.csv")
    cases.append(((main, tmp_path / "missing_fr.csv"), r"BIOLAKE_LOINC_FR_TABLE: .*missing_fr\.csv does not exist"))
    binary = tmp_path / "fr.bin"
    binary.write_bytes(b"\x00\x01\x02\xff" * 50)
    cases.append(((main, binary), r"BIOLAKE_LOINC_FR_TABLE: .*fr\.bin"))
    for (loinc_csv, fr), pattern in cases:
        with pytest.raises(LoincTableError, match=pattern) as err:
            load_loinc_table(SEED, loinc_csv, fr)
        assert "\n" not in str(err.value)
