"""Unmapped backlog, LOINC suggestions, and the work-queue export / edit / import round trip."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from transforms.terminology.loinc import load_loinc_seed
from transforms.terminology.mappings import MappingError, load_mappings
from transforms.terminology.suggest import normalise_label, suggest, unmapped_backlog
from transforms.terminology.transcode import transcode
from transforms.terminology.workqueue import (
    WORKQUEUE_COLUMNS,
    export_workqueue,
    import_workqueue,
    write_approved_mappings,
)

ROOT = Path(__file__).resolve().parents[1]
D = dt.datetime


@pytest.fixture(scope="module")
def loinc() -> pl.DataFrame:
    return load_loinc_seed(ROOT / "seeds" / "reference" / "loinc.csv")


def results(rows):
    return pl.DataFrame(
        rows,
        schema={"source": pl.Utf8, "local_code": pl.Utf8, "local_label": pl.Utf8, "loinc_code_src": pl.Utf8,
                "unit_raw": pl.Utf8, "specimen": pl.Utf8, "collected_at": pl.Datetime("us"),
                "value_raw": pl.Utf8, "value_num": pl.Float64},
        orient="row",
    )


@pytest.fixture(scope="module")
def unmapped(loinc) -> pl.DataFrame:
    df = results(
        [
            ("labo_a", "GLYJ", "Glycémie à jeun", None, "g/L", "Plasma", D(2024, 1, 3), "1,08", 1.08),
            ("labo_a", "GLYJ", "Glycémie à jeun", None, "g/L", "Plasma", D(2024, 1, 1), "0,95", 0.95),
            ("labo_a", "GLYJ", "Glycémie à jeun", None, "g/L", "Plasma", D(2024, 2, 1), "1,20", 1.2),
            ("labo_a", "HBX", "Hémoglobine", None, "g/dL", "Sang", D(2024, 1, 5), "13,1", 13.1),
            ("labo_a", "HBX", "Hémoglobine", None, "g/dL", "Sang", D(2024, 1, 6), "14", 14.0),
            ("labo_b", "PLQ", "Plq", None, "G/L", "Sang", D(2024, 1, 7), "250", 250.0),
            ("labo_b", "K", "Kaliémie", None, "mmol/L", "Sérum", D(2024, 1, 7), "4,1", 4.1),
        ]
    )
    empty = pl.DataFrame(schema={"source": pl.Utf8, "local_code": pl.Utf8, "local_label": pl.Utf8, "unit": pl.Utf8,
                                 "specimen": pl.Utf8, "loinc_num": pl.Utf8, "valid_from": pl.Date,
                                 "valid_to": pl.Date, "origin": pl.Utf8})
    return transcode(df, empty, loinc)


def test_unmapped_backlog(unmapped):
    bl = unmapped_backlog(unmapped)
    assert bl.rows() == [
        ("labo_a", "GLYJ", "Glycémie à jeun", "g/L", 3, D(2024, 1, 1), D(2024, 2, 1), "Plasma"),
        ("labo_a", "HBX", "Hémoglobine", "g/dL", 2, D(2024, 1, 5), D(2024, 1, 6), "Sang"),
        ("labo_b", "K", "Kaliémie", "mmol/L", 1, D(2024, 1, 7), D(2024, 1, 7), "Sérum"),
        ("labo_b", "PLQ", "Plq", "G/L", 1, D(2024, 1, 7), D(2024, 1, 7), "Sang"),
    ]


@pytest.mark.parametrize(
    ("label", "expanded"),
    [("Glycémie à jeun", "glucose a jeun"), ("Hb", "hemoglobine"), ("PLQ", "plaquettes"),
     ("Taux de prothrombine", "temps de quick"), ("T.C.A.", "temps de cephaline activee"),
     ("  Créatininémie ", "creatinine")],
)
def test_label_normalisation(label, expanded):
    assert normalise_label(label) == expanded


def test_suggestions_rank_the_right_code_first(unmapped, loinc):
    sug = suggest(unmapped_backlog(unmapped), loinc, k=5)
    assert sug.height == 4 * 5
    top = sug.filter(pl.col("rank") == 1).select("local_code", "loinc_num").rows()
    assert top == [("GLYJ", "40193-5"), ("HBX", "718-7"), ("K", "2823-3"), ("PLQ", "777-3")]
    glyj = sug.filter(pl.col("local_code") == "GLYJ")
    assert set(glyj["loinc_num"].head(3)) <= {"40193-5", "2339-0", "14749-6", "2345-7", "88365-2", "53049-3"}
    first = glyj.row(0, named=True)
    assert first["reasons"] == "label 100; unit g/L fits Moles/Volume via molar mass; specimen Plasma matches"
    assert first["score"] == 118.0
    # a unit contradicting the property pulls a code down and says so
    hb = sug.filter(pl.col("local_code") == "HBX")
    assert hb["loinc_num"].head(2).to_list() == ["718-7", "20509-6"]
    assert (sug.filter(pl.col("local_code") == "PLQ")["score"].is_sorted(descending=True))


def test_workqueue_round_trip(unmapped, loinc, tmp_path):
    sug = suggest(unmapped_backlog(unmapped), loinc, k=3)
    wq = export_workqueue(sug, tmp_path / "queue.csv")
    with wq.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(WORKQUEUE_COLUMNS)
    assert len(rows) == 12 and all(r["decision"] == "" for r in rows)
    # the engineer approves rank 1 everywhere but rejects the K suggestions, and fixes a date
    for r in rows:
        if r["local_code"] == "K":
            r["decision"] = "reject"
        elif r["rank"] == "1":
            r["decision"] = "approve"
            if r["local_code"] == "GLYJ":
                r["valid_from"] = "01/01/2024"
    with wq.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(WORKQUEUE_COLUMNS))
        w.writeheader()
        w.writerows(rows)
    approved = import_workqueue(wq, loinc)
    assert approved.drop("origin").rows() == [
        ("labo_a", "GLYJ", "Glycémie à jeun", "g/L", "Plasma", "40193-5", dt.date(2024, 1, 1), None),
        ("labo_a", "HBX", "Hémoglobine", "g/dL", "Sang", "718-7", None, None),
        ("labo_b", "PLQ", "Plq", "G/L", "Sang", "777-3", None, None),
    ]
    assert approved["origin"].to_list() == [f"{wq}:2", f"{wq}:5", f"{wq}:11"]

    approved_dir = tmp_path / "approved"
    (approved_dir).mkdir()
    (approved_dir / "labo_a.csv").write_text(
        "local_code,local_label,unit,specimen,loinc_num,valid_from,valid_to\n"
        "HBX,Hémoglobine,g/dL,Sang,20509-6,,\n"  # replaced by the new approval (same key)
        "OLD,Autre,,,2345-7,,\n",  # kept
        encoding="utf-8",
    )
    written = write_approved_mappings(approved, approved_dir, loinc)
    assert written == [approved_dir / "labo_a.csv", approved_dir / "labo_b.csv"]
    assert (approved_dir / "labo_a.csv").read_text(encoding="utf-8") == (
        "local_code,local_label,unit,specimen,loinc_num,valid_from,valid_to\n"
        "GLYJ,Glycémie à jeun,g/L,Plasma,40193-5,2024-01-01,\n"
        "HBX,Hémoglobine,g/dL,Sang,718-7,,\n"
        "OLD,Autre,,,2345-7,,\n"
    )
    # the approved directory is read after the seeds and the codes are now mapped
    seeds_dir = tmp_path / "seeds"
    seeds_dir.mkdir()
    mappings = load_mappings([seeds_dir, approved_dir], loinc)
    again = transcode(unmapped.select("source", "local_code", "local_label", "loinc_code_src", "unit_raw",
                                      "specimen", "collected_at", "value_raw", "value_num"), mappings, loinc)
    assert again.select("local_code", "loinc_code", "mapping_status").rows() == [
        ("GLYJ", "40193-5", "mapped"), ("GLYJ", "40193-5", "mapped"), ("GLYJ", "40193-5", "mapped"),
        ("HBX", "718-7", "mapped"), ("HBX", "718-7", "mapped"),
        ("PLQ", "777-3", "mapped"), ("K", None, "unmapped"),
    ]
    assert round(again["value_canonical"][0], 2) == 5.99


def test_import_errors_name_file_and_line(loinc, tmp_path):
    wq = tmp_path / "queue.csv"
    header = ",".join(WORKQUEUE_COLUMNS) + "\n"

    def line(decision, code, loinc_num, valid_from=""):
        values = {c: "" for c in WORKQUEUE_COLUMNS} | {"decision": decision, "source": "labo_a",
                                                       "local_code": code, "loinc_num": loinc_num,
                                                       "valid_from": valid_from}
        return ",".join(values[c] for c in WORKQUEUE_COLUMNS) + "\n"

    wq.write_text(
        header
        + line("maybe", "A", "718-7")  # 2
        + line("approve", "B", "718-6")  # 3: bad check digit
        + line("approve", "C", "718-7")  # 4
        + line("approve", "C", "20509-6")  # 5: second approval for C
        + line("approve", "D", "1234-4")  # 6: unknown LOINC
        + line("approve", "", "718-7")  # 7
        + line("", "E", "718-7")  # 8: undecided, ignored
        + line("reject", "F", "xx")  # 9: rejected, ignored even if malformed
        + line("approve", "[masqué]", "718-7"),  # 10: an identity masked in staging (QA regr2 F2)
        encoding="utf-8",
    )
    with pytest.raises(MappingError) as err:
        import_workqueue(wq, loinc)
    assert err.value.issues == [
        (f"{wq}:2", "decision 'maybe' is not approve, reject or empty"),
        (f"{wq}:7", "missing required field local_code"),
        (f"{wq}:10", "local_code '[masqué]' is an identity masked in staging, not a code: it cannot be mapped "
                     "(ask the lab to send the test's code)"),
        (f"{wq}:3", "LOINC '718-6' is malformed or has a bad check digit"),
        (f"{wq}:6", "unknown LOINC '1234-4' (not in the LOINC table)"),
        (f"{wq}:5", f"conflicting (different LOINC, overlapping validity) with {wq}:4: 718-7 vs 20509-6 for local_code 'C'"),
    ]


def test_semicolon_workqueue_from_excel(loinc, tmp_path):
    wq = tmp_path / "queue.csv"
    wq.write_text("\ufeffdecision;source;local_code;local_label;unit;specimen;loinc_num\n"
                  "Approve;labo_a;HB;Hémoglobine;g/dL;Sang;718-7\n", encoding="utf-8")
    assert import_workqueue(wq, loinc).select("local_code", "loinc_num").rows() == [("HB", "718-7")]


def test_windows_1252_binary_and_unknown_lab(loinc, tmp_path):
    """QA: a queue saved by French Excel (Windows-1252) crashed with a UnicodeDecodeError; a lab typo
    wrote a mapping file for a lab that does not exist."""
    wq = tmp_path / "queue.csv"
    wq.write_bytes("decision;source;local_code;local_label;unit;specimen;loinc_num\n"
                   "approve;labo_a;HB;Hémoglobine;g/dL;Sang;718-7\n".encode("cp1252"))
    rows = import_workqueue(wq, loinc, known_sources={"labo_a"})
    assert rows.select("local_label", "loinc_num").rows() == [("Hémoglobine", "718-7")]
    with pytest.raises(MappingError) as err:
        import_workqueue(wq, loinc, known_sources={"labo_b"})
    assert err.value.issues == [(f"{wq}:2", "source 'labo_a' is not a lab of this platform (known: labo_b)")]
    wq.write_bytes(b"PK\x03\x04\x00\x00binary")
    with pytest.raises(MappingError, match="not a text CSV file"):
        import_workqueue(wq, loinc)


def test_write_approved_refuses_a_broken_directory_and_changes_nothing(loinc, tmp_path):
    broken = tmp_path / "labo_a.csv"
    text = "local_code,local_label,unit,specimen,loinc_num,valid_from,valid_to\nHB,Hb,,,718-6,,\n"
    broken.write_text(text, encoding="utf-8")
    rows = pl.DataFrame(
        [("labo_a", "GLY", "Glycémie", None, None, "2339-0", None, None, "q.csv:2")],
        schema=dict(load_mappings([tmp_path / "none"], loinc).schema), orient="row",
    )
    with pytest.raises(MappingError, match=f"{broken}:2: LOINC '718-6'"):
        write_approved_mappings(rows, tmp_path)  # loinc optional: check digits and conflicts only
    assert broken.read_text(encoding="utf-8") == text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labo_a.csv"]


def _backlog(rows):
    return pl.DataFrame(rows, schema=["source", "local_code", "local_label", "unit_raw", "n_results", "specimen"],
                        orient="row")


def test_a_generic_word_is_no_confident_match(loinc):
    """QA: 'Protéine C réactive' (CRP, absent from the subset) got total protein 2885-2 first with
    102.8, as confident as a true match: approving rank 1 mis-codes every CRP."""
    sug = suggest(_backlog([("labo_a", "CRP", "Protéine C réactive", "mg/l", 40, None),
                            ("labo_a", "HB", "Hémoglobine", "g/dL", 40, "Sang")]), loinc, k=5)
    crp = sug.filter(pl.col("local_code") == "CRP")
    assert set(crp["confidence"]) == {"low"}
    first = crp.row(0, named=True)
    assert first["score"] < 80 and "label words not in the name: c, reactive" in first["reasons"]
    # a true match stays high: its score and confidence are far above
    hb = sug.filter(pl.col("local_code") == "HB").row(0, named=True)
    assert (hb["loinc_num"], hb["confidence"]) == ("718-7", "high") and hb["score"] - first["score"] > 40
    # a name word that merely contains the label's is not the same word (Methemoglobin)
    assert "15082-1" not in sug.filter(pl.col("local_code") == "HB")["loinc_num"].head(3).to_list()


def test_generic_specimen_codes_and_the_usual_unit_break_ties(loinc):
    """QA: 'PCR SARS-CoV-2' without specimen got only specimen-specific codes; 'Leucocytes' in giga/l
    ranked a urine count tied with the blood count 6690-2."""
    sug = suggest(_backlog([("labo_a", "PCR", "PCR SARS-CoV-2", None, 40, None),
                            ("labo_a", "GB", "Leucocytes", "giga/l", 40, None)]), loinc, k=5)
    pcr = sug.filter(pl.col("local_code") == "PCR")
    assert pcr["loinc_num"][0] == "94500-6" and "94309-2" in pcr["loinc_num"].head(3).to_list()
    assert "no specimen stated, code for any specimen" in pcr["reasons"][0]
    gb = sug.filter(pl.col("local_code") == "GB")
    assert gb["loinc_num"].head(2).to_list() == ["6690-2", "24122-4"] and gb["score"][0] > gb["score"][1]
    assert "10*9/L is the code's usual unit" in gb["reasons"][0]


def test_export_has_the_confidence_column(unmapped, loinc, tmp_path):
    wq = export_workqueue(suggest(unmapped_backlog(unmapped), loinc, k=2), tmp_path / "q.csv")
    queue = pl.read_csv(wq, infer_schema=False)
    assert queue.columns == list(WORKQUEUE_COLUMNS) and "confidence" in queue.columns
    assert queue.filter(pl.col("rank") == "1")["confidence"].to_list() == ["high"] * 4


def _queue(path, rows):
    """A work queue as an engineer leaves it: ``rows`` are dicts of the columns that matter."""
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(WORKQUEUE_COLUMNS))
        w.writeheader()
        for r in rows:
            w.writerow({c: "" for c in WORKQUEUE_COLUMNS} | {"source": "labo_a"} | r)
    return path


def test_unit_spellings_make_one_item(loinc, tmp_path):
    """QA: the export listed g/L and g/l (umol/L and µmol/l) as separate items."""
    from transforms.terminology.suggest import merge_unit_spellings

    when = D(2024, 1, 1)
    backlog = pl.DataFrame(
        [("labo_a", "ALB", "Albumine", "g/L", 10, when, D(2024, 1, 9), "Sérum"),
         ("labo_a", "ALB", "Albumine", "g/l", 3, D(2023, 12, 1), when, "Plasma"),
         ("labo_a", "CREA", "Créatinine", "µmol/l", 2, when, when, None),
         ("labo_a", "CREA", "Créatinine", "umol/L", 5, when, when, "Sérum"),
         ("labo_a", "GB", "Leucocytes", "G/L", 4, when, when, "Sang"),  # giga per litre, not grams
         ("labo_a", "GB", "Leucocytes", "g/L", 1, when, when, "Sang"),
         ("labo_a", "X", "Sans unité", None, 1, when, when, None)],
        schema=["source", "local_code", "local_label", "unit_raw", "n_results", "first_seen", "last_seen",
                "specimen"], orient="row")
    items = merge_unit_spellings(backlog)
    assert items.select("local_code", "unit_raw", "n_results", "first_seen", "last_seen", "specimen",
                        "unit_spellings").rows() == [
        ("ALB", "g/L", 13, D(2023, 12, 1), D(2024, 1, 9), "Sérum", "g/L; g/l"),
        ("CREA", "umol/L", 7, when, when, "Sérum", "umol/L; µmol/l"),
        ("GB", "G/L", 4, when, when, "Sang", None),
        ("GB", "g/L", 1, when, when, "Sang", None),
        ("X", None, 1, when, when, None, None),
    ]
    wq = export_workqueue(suggest(items, loinc, k=1), tmp_path / "q.csv")
    queue = pl.read_csv(wq, infer_schema=False)
    assert queue.filter(pl.col("local_code") == "ALB")["notes"].to_list() == [
        "unit written g/L; g/l (one item: same unit)"]


def test_approvals_that_are_one_mapping_once_the_unit_is_normalised(loinc, tmp_path):
    """QA: approving the g/L and the g/l item with the same LOINC failed with 'duplicate of line N'
    and no hint."""
    from transforms.terminology.workqueue import read_workqueue

    wq = _queue(tmp_path / "q.csv", [
        {"decision": "approve", "local_code": "ALB", "unit": "g/L", "loinc_num": "1751-7"},
        {"decision": "approve", "local_code": "ALB", "unit": "g/l", "loinc_num": "1751-7"},
        {"decision": "approve", "local_code": "CREA", "unit": "umol/L", "loinc_num": "14682-9"},
        {"decision": "approve", "local_code": "CREA", "unit": "µmol/l", "loinc_num": "14682-9"},
    ])
    got = read_workqueue(wq, loinc)
    assert got.approved.select("local_code", "unit", "loinc_num").rows() == [
        ("ALB", "g/L", "1751-7"), ("CREA", "umol/L", "14682-9")]
    assert got.notes == [(f"{wq}:3", f"same mapping as {wq}:2 (unit 'g/l' is 'g/L'): kept once"),
                         (f"{wq}:5", f"same mapping as {wq}:4 (unit 'µmol/l' is 'umol/L'): kept once")]
    # two different codes for one unit spelt twice: refused, and the message says why they collide
    _queue(wq, [{"decision": "approve", "local_code": "ALB", "unit": "g/L", "loinc_num": "1751-7"},
                {"decision": "approve", "local_code": "ALB", "unit": "g/l", "loinc_num": "2885-2"}])
    with pytest.raises(MappingError) as err:
        read_workqueue(wq, loinc)
    assert err.value.issues == [(f"{wq}:3", f"conflicting (different LOINC, overlapping validity) with {wq}:2: "
                                           "1751-7 vs 2885-2 for local_code 'ALB' (units 'g/l' and 'g/L' are one "
                                           "unit, g/L)")]


def test_import_refuses_a_unit_the_run_cannot_use(loinc, tmp_path):
    """QA: unit=gr/litre (unknown spelling) was written as-is into the mappings; G/L (giga per litre)
    approved onto glucose 14749-6 (Moles/Volume) was accepted though the queue's own reason said the
    unit did not fit, and the results then stayed incompatible_dimension."""
    from transforms.terminology.workqueue import read_workqueue

    wq = _queue(tmp_path / "q.csv", [
        {"decision": "approve", "local_code": "GLY1", "unit": "gr/litre", "loinc_num": "2339-0"},  # 2
        {"decision": "approve", "local_code": "GLY2", "unit": "G/L", "loinc_num": "14749-6"},  # 3
        {"decision": "approve", "local_code": "GLY3", "unit": "g/L", "loinc_num": "14749-6"},  # 4: molar mass known
        {"decision": "approve", "local_code": "HBA", "unit": "mmol/mol", "loinc_num": "4548-4"},  # 5: IFCC on NGSP
        {"decision": "approve", "local_code": "NA", "unit": "mEq/L", "loinc_num": "2951-2"},  # 6: noted
        {"decision": "approve", "local_code": "BIC", "unit": "mg/L", "loinc_num": "1963-8"},  # 7: no molar mass
        {"decision": "approve", "local_code": "GLY4", "unit": "", "loinc_num": "14749-6"},  # 8: no unit, no check
    ])
    with pytest.raises(MappingError) as err:
        read_workqueue(wq, loinc)
    assert [(o, m.split(":")[0]) for o, m in err.value.issues] == [
        (f"{wq}:2", "unit 'gr/litre' is not a unit biolake can read (not in seeds/terminology/unit_aliases.csv, "
                    "not UCUM)"),
        (f"{wq}:3", "unit 'G/L' (10*9/L) does not fit 14749-6 (Moles/Volume, in mmol/L)"),
        (f"{wq}:5", "unit 'mmol/mol' does not fit 4548-4 (Fraction massique, in %)"),
    ]
    assert "would stay incompatible_dimension" in err.value.issues[1][1]
    assert "would keep conversion_status unit_unknown" in err.value.issues[0][1]
    # without the three refused rows the import passes, with notes for what will not convert
    text = wq.read_text(encoding="utf-8").splitlines()
    wq.write_text("\n".join([text[0], text[3], *text[5:]]) + "\n", encoding="utf-8")
    got = read_workqueue(wq, loinc)
    assert got.approved["local_code"].to_list() == ["GLY3", "NA", "BIC", "GLY4"]
    assert [(o.rsplit(":", 1)[1], m.split(":")[0]) for o, m in got.notes] == [
        ("3", "unit 'mEq/L' (meq/L) on 2951-2 (SCNC, in mmol/L)"),
        ("4", "unit 'mg/L' on 1963-8 (SCNC, in mmol/L)"),
    ]


def test_rejections_are_kept_per_lab_and_an_approval_overrides_them(loinc, tmp_path):
    from transforms.terminology.workqueue import load_rejections, read_workqueue, remember_rejections

    wq = _queue(tmp_path / "q.csv", [
        {"decision": "reject", "local_code": "CRP", "local_label": "CRP", "unit": "mg/L", "loinc_num": "2885-2"},
        {"decision": "reject", "local_code": "CRP", "local_label": "CRP", "unit": "mg/l", "loinc_num": "27818-4"},
        {"decision": "reject", "local_code": "ALB", "unit": "", "loinc_num": "2885-2"},
    ])
    got = read_workqueue(wq, loinc)
    ops = tmp_path / "mappings"
    assert remember_rejections(got.rejected, ops, today="2026-01-05") == [ops / "rejected" / "labo_a.csv"]
    assert (ops / "rejected" / "labo_a.csv").read_text(encoding="utf-8") == (
        "local_code,local_label,unit,loinc_num,rejected_on\n"
        "ALB,,,2885-2,2026-01-05\nCRP,CRP,mg/L,2885-2,2026-01-05\nCRP,CRP,mg/l,27818-4,2026-01-05\n")
    # the same rejection again keeps its first date; load_mappings never reads the rejected/ folder
    remember_rejections(got.rejected.head(1), ops, today="2026-02-01")
    assert load_rejections(ops)["rejected_on"].unique().to_list() == ["2026-01-05"]
    assert load_mappings([ops], loinc).is_empty()
    # a rejection holds for the item's unit in any spelling, and for every unit when it has none
    backlog = _backlog([("labo_a", "CRP", "Protéine C réactive", "mg/l", 5, None),
                        ("labo_a", "ALB", "Albumine", "g/L", 5, None)])
    sug = suggest(backlog, loinc, k=5, rejected=load_rejections(ops))
    assert not set(sug.filter(pl.col("local_code") == "CRP")["loinc_num"]) & {"2885-2", "27818-4"}
    assert "2885-2" not in sug.filter(pl.col("local_code") == "ALB")["loinc_num"].to_list()
    assert sug.filter(pl.col("local_code") == "CRP")["rejected_before"].unique().to_list() == ["27818-4; 2885-2"]
    # approving a code rejected earlier forgets that rejection
    _queue(wq, [{"decision": "approve", "local_code": "CRP", "unit": "MG/L", "loinc_num": "2885-2"}])
    got = read_workqueue(wq, loinc)
    remember_rejections(got.rejected, ops, approved=got.approved)
    assert load_rejections(ops).select("local_code", "loinc_num").rows() == [("ALB", "2885-2"), ("CRP", "27818-4")]
