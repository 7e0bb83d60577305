"""The generator's other formats: labs that send HL7 v2, CR-BIO CDA or HPRIM instead of CSV.

Each written file is read back with the project's own parser and compared, result by result, with
the truth at (file, line_no); the defects that only a CSV line can carry are absent from those labs
and the others (bad NIR key, validation before collection, unknown code, corrections) present, with
test identities (an INS with a test OID) in the HL7 v2 and HPRIM labs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl
import pytest
from stdnum.fr import nir as stdnir

from transforms.parsers.detect import detect_format, get_parser
from transforms.synthetic import MIXED_FORMATS, DefectRates, generate
from transforms.synthetic.generator import CSV_ONLY_DEFECTS, SUFFIXES

N = 8_000
RATES = DefectRates(test_identity=0.02)  # a few test identities even in a small landing


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    home = tmp_path_factory.mktemp("mixed")
    res = generate(home, n_results=N, seed=5, formats=MIXED_FORMATS, rates=RATES)
    truth = pl.read_parquet(home / "truth" / "rows.parquet")
    return home, res, truth


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def _fmt(source: str) -> str:
    return MIXED_FORMATS.get(source, "csv")


def test_each_lab_writes_its_format(mixed):
    home, res, truth = mixed
    landing = home / "landing"
    seen = set()
    for p in res.landing_files:
        source = p.parent.name
        assert p.suffix == SUFFIXES[_fmt(source)], p
        assert detect_format(p) == _fmt(source), p
        seen.add(_fmt(source))
    assert seen == {"csv", "hl7v2", "cda", "hprim"}
    assert res.summary["formats"] == MIXED_FORMATS
    on_disk = {p.relative_to(landing).as_posix() for p in landing.rglob("*") if p.is_file()}
    assert on_disk == set(truth["file"].unique())


def _parsed(home: Path, files: list[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    rows, rejects = [], []
    for rel in files:
        source = rel.split("/", 1)[0]
        for chunk in get_parser(_fmt(source))(home / "landing" / rel, file_id=rel, source=source):
            rows.append(chunk.rows.with_columns(pl.lit(rel).alias("file")))
            rejects.append(chunk.rejects.with_columns(pl.lit(rel).alias("file_id")))
    return pl.concat(rows), pl.concat(rejects)


def test_parsed_results_are_the_truth_line_by_line(mixed):
    home, _, truth = mixed
    other = truth.filter(pl.col("source").is_in(list(MIXED_FORMATS)) & (pl.col("fate") != "duplicate_file"))
    files = sorted(other["file"].unique())
    assert {f.split("/")[0] for f in files} == set(MIXED_FORMATS)
    rows, rejects = _parsed(home, files)
    # a test identity's results are refused one by one, at their own lines; nothing else is refused
    refused = other.filter(pl.col("reason") == "TEST_IDENTITY")
    assert refused.height > 0 and set(refused["source"]) <= {s for s, f in MIXED_FORMATS.items() if f != "cda"}
    got = rejects.select(pl.col("file_id").alias("file"), "line_no", "reason_code", "column").sort("file", "line_no")
    assert got.equals(refused.select("file", "line_no", pl.col("reason").alias("reason_code"), "column")
                      .sort("file", "line_no"))
    other = other.filter(pl.col("reason").ne_missing("TEST_IDENTITY"))
    assert rows["parse_issues"].null_count() == rows.height
    assert rows.height == other.height
    t = other.join(rows, on=["file", "line_no"], how="left", suffix="_got")
    assert t["local_code_got"].null_count() == 0, "a truth row has no parsed result at its line"
    assert (t["local_code"] == t["local_code_got"]).all()
    assert (t["status"] == t["result_status"]).all()
    num = t.filter(pl.col("value_num").is_not_null())
    assert num.height > other.height // 2
    assert ((num["value_num"] - num["value_num_got"]).abs() < 1e-9).all()
    assert t.filter(pl.col("value_num").is_null())["value_num_got"].null_count() == t["value_num"].null_count()
    # the NIR key is wrong exactly on the NIR_KEY rows; validation precedes collection on DATE_ORDER rows
    key_ok = pl.Series([stdnir.is_valid(n) for n in t["patient_nir"]])
    assert (key_ok == (t["reason"] != "NIR_KEY").fill_null(True)).all()
    early = t["validated_at"] < t["collected_at"]
    assert (early == (t["reason"] == "DATE_ORDER").fill_null(False)).all()
    assert t["ins_oid"].unique().to_list() == ["1.2.250.1.213.1.4.8"]
    # HL7 v2 and CDA labs send the LOINC beside their code when the code is mapped; HPRIM labs do not
    sends = pl.col("source").replace_strict(MIXED_FORMATS, default="csv").is_in(["hl7v2", "cda"]) & pl.col("mapped")
    expected = t.select(pl.when(sends).then(pl.col("loinc_num")).alias("x"))["x"]
    assert expected.null_count() < t.height and (expected.is_null() == t["loinc_code_src"].is_null()).all()
    assert (expected.drop_nulls() == t["loinc_code_src"].drop_nulls()).all()


def test_defects_a_format_cannot_carry_are_not_injected(mixed):
    _, _, truth = mixed
    other = truth.filter(pl.col("source").is_in(list(MIXED_FORMATS)))
    csv = truth.filter(~pl.col("source").is_in(list(MIXED_FORMATS)))
    assert other.filter(pl.col("defect").is_in(CSV_ONLY_DEFECTS)).is_empty()
    assert other["reason"].drop_nulls().unique().sort().to_list() == ["DATE_ORDER", "NIR_KEY", "TEST_IDENTITY"]
    assert csv.filter(pl.col("defect") == "test_identity").is_empty()
    for defect in ("nir_key", "date_order", "unknown_code", "correction", "superseded", "test_identity"):
        assert (other["defect"] == defect).sum() > 0, defect
    for defect in ("malformed", "duplicate_row", "date_invalid"):
        assert (csv["defect"] == defect).sum() > 0, defect


def test_redelivered_files_keep_their_format(tmp_path):
    res = generate(tmp_path / "h", n_results=4_000, seed=3, formats={"labo_alpha": "hl7v2", "labo_beta": "cda",
                                                                        "labo_gamma": "hprim", "labo_delta": "hl7v2",
                                                                        "labo_epsilon": "hprim"})
    copies = [p for p in res.landing_files if p.stem.endswith("_renvoi")]
    assert copies
    for p in copies:
        original = p.with_name(p.stem.removesuffix("_renvoi") + p.suffix)
        assert p.suffix != ".csv" and p.read_bytes() == original.read_bytes()
    truth = pl.read_parquet(tmp_path / "h" / "truth" / "rows.parquet")
    assert set(truth.filter(pl.col("fate") == "duplicate_file")["file"]) == {
        p.relative_to(tmp_path / "h" / "landing").as_posix() for p in copies}


def test_same_seed_same_bytes_and_csv_by_default(mixed, tmp_path):
    home, _, _ = mixed
    again = tmp_path / "again"
    generate(again, n_results=N, seed=5, formats=MIXED_FORMATS, rates=RATES)
    assert _digest(again / "landing") == _digest(home / "landing")
    plain = generate(tmp_path / "plain", n_results=N, seed=5)
    assert {p.suffix for p in plain.landing_files} == {".csv"} and plain.summary["formats"] == {}


@pytest.mark.parametrize("formats, message", [
    ({"labo_omega": "hl7v2"}, "unknown lab(s) labo_omega"),
    ({"labo_alpha": "fhir"}, "unknown format(s) fhir"),
])
def test_bad_formats_are_refused_by_name(tmp_path, formats, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        generate(tmp_path, n_results=1000, formats=formats)
