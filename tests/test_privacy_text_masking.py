"""A NIR, name or birth date typed into free text is masked before staging (transforms/identity_text.py).

Table-driven: what must be masked, what must not; then the frame function (pre-filter + per-row
masking) against mask_text on every row, the flag and the emptied number in to_staging, and the
qualitative reading of a masked text."""

from __future__ import annotations

import random
from datetime import date, datetime

import polars as pl
import pytest

from tests.helpers import bad_nir, nir
from transforms import identity_text as it
from transforms.identity_text import MASK, MASKED_COLUMN, mask_identities_in_text, mask_text

M = MASK
BORN = date(1980, 5, 12)
DUPONT = ("Dupont", "Marie", BORN)  # family name, first name, birth date

MASKED = [
    # the QA cases
    ("Positif - patiente DUPONT Marie NIR 280057511100116", f"Positif - patiente {M} NIR {M}"),
    ("Bilan DUPONT Marie 280057511100116", f"Bilan {M}"),
    ("controle DUPONT Marie 12/05/1980", f"controle {M}"),
    # NIR shapes: spaced, dotted, dashed, Corsica, without key, wrong key, glued to letters
    ("2 80 05 75 111 001 16", M),
    ("NIR: 2.80.05.75.111.001.16.", f"NIR: {M}."),
    ("2-80-05-75-111-001 16", M),
    ("1 80 05 2A 111 001 16 vu", f"{M} vu"),
    ("ins 180052b11100116", f"ins {M}"),
    ("2800575111001", M),
    (f"cle fausse {bad_nir('2800575111001')}", f"cle fausse {M}"),
    ("NIR280057511100116x", f"NIR{M}x"),
    ("999999999999999", M),  # any 15-digit number
    ("\u00a0２８００５７５１１１００１１６", f"\u00a0{M}"),  # full-width digits
    # the row's own names: case, accents, order, separators, parts
    ("dupont", M), ("Dupônt", M), ("DUPONT, Marie", M), ("Marie Dupont", M), ("Mme DUPONT", f"Mme {M}"),
    ("vu par marie", f"vu par {M}"),
    ("Contrôle (Dupont)", f"Contrôle ({M})"),
    # the row's own birth date, in the usual forms
    ("né le 12/05/1980", f"né le {M}"), ("12-05-1980", M), ("12.05.1980", M), ("12/5/1980", M),
    ("12 05 1980", M), ("DDN 12/05/80", f"DDN {M}"), ("1980-05-12", M), ("19800512", M), ("12051980", M),
    ("12 mai 1980", M), ("12 MAI 80", M), ("le 12-mai-1980.", f"le {M}."),
    # everything at once: one mask
    ("DUPONT Marie, 12/05/1980 - 2 80 05 75 111 001 16", M),
]

KEPT = [
    "5,4", "140", "<0,5", ">100", "3,9-5,8", "0.50-1.20", "12.5 - 80.5", "1,2 10*9/L",
    "Positif", "Négatif", "Positif faible (Ct=32)", "Glycémie à jeun", "SARS-CoV-2 ARN", "mmol/L", "SANG",
    "02/11/2026 08:30",          # the collection date
    "12/05/1981", "13/05/1980", "12/06/1980", "1980", "05/1980",  # other dates, partial dates
    "5012345678900",             # 13 digits, not NIR-shaped (first digit 5): a barcode
    "9780201379624",             # an ISBN-13
    "28005751110",               # too short
    "12345678901234567",         # 17 digits: no NIR inside a longer number
    "Marielle", "DUPONTEL", "Mariés",  # the name inside another word
    "DUPOND Maria",              # another person
    "Cellules à 12.05",          # a decimal
]


@pytest.mark.parametrize(("text", "expected"), MASKED)
def test_masked(text, expected):
    assert mask_text(text, *DUPONT) == expected


@pytest.mark.parametrize("text", KEPT)
def test_kept(text):
    assert mask_text(text, *DUPONT) == text


@pytest.mark.parametrize(("text", "identity", "expected"), [
    # compound names: each written way, and each part of 3+ letters on its own
    ("LE GOFF Yann", ("Le Goff", "Yann", None), M),
    ("Le-Goff", ("Le Goff", "Yann", None), M),
    ("legoff", ("Le Goff", "Yann", None), M),
    ("GOFF", ("Le Goff", "Yann", None), M),
    ("Recherche de l'ARN", ("Le Goff", "Yann", None), "Recherche de l'ARN"),
    ("N'Diaye", ("N'DIAYE", "Awa", None), M),
    ("NDIAYE AWA", ("N'Diaye", "Awa", None), M),
    ("Jean-Pierre", ("Martin", "Jean-Pierre Marie", None), M),
    ("PIERRE", ("Martin", "Jean-Pierre Marie", None), M),
    ("Lefèvre Hélène", ("LEFEVRE", "HELENE", None), M),
    ("LEFEVRE HELENE", ("Lefèvre", "Hélène", None), M),
    ("Cœur", ("Cœur-Lévêque", "Anne", None), M),
    ("COEUR-LEVEQUE", ("Cœur-Lévêque", "Anne", None), M),
    # 2-letter names: never alone (units, elements, articles), always next to another trait
    ("ng/mL", ("Ng", "An", None), "ng/mL"),
    ("Na 140 mmol/L", ("Na", "Li", None), "Na 140 mmol/L"),
    ("NG An", ("Ng", "An", None), M),
    ("LY Minh", ("Ly", "Minh", None), M),
    ("Minh LY positif", ("Ly", "Minh", None), f"{M} positif"),
    ("LY positif", ("Ly", "Minh", None), "LY positif"),
    # a 1-letter part is never masked alone
    ("vitamine D", ("D", "Al", None), "vitamine D"),
    # nothing to mask against without an identity, except NIR shapes
    ("Bilan 280057511100116", (None, None, None), f"Bilan {M}"),
    ("Bilan Dupont", (None, None, None), "Bilan Dupont"),
])
def test_names(text, identity, expected):
    assert mask_text(text, *identity) == expected


def test_masking_is_idempotent_and_keeps_empty_values():
    for text, _ in MASKED:
        once = mask_text(text, *DUPONT)
        assert mask_text(once, *DUPONT) == once
    assert mask_text(None, *DUPONT) is None and mask_text("", *DUPONT) == ""


def test_a_combining_accent_goes_with_the_masked_letter():
    assert mask_text("Dupont\u0301e Marie", "Dupont\u0301e", "Marie") == M  # decomposed é


# --------------------------------------------------------------------------------------------
# the frame: pre-filter on distinct values, per-row masking for the rows that match
# --------------------------------------------------------------------------------------------
FAMILY = ["Dupont", "Martin", "Le Goff", "N'Diaye", "Ng", "Ly", "Lefèvre", "Cœur-Lévêque", "Fort", "Na", "O", None]
FIRST = ["Marie", "Jean-Pierre", "An", "Minh", "Hélène", "Zoé, Anne", "Li", None]
PIECES = ["Positif", "négatif", "5,4", "<0,5", "Glycémie", "ng/mL", "Na", "mmol/L", "fort", "-", "(Ct=25)",
          "12/05/1980", "02/11/2026", "1980", "Ng An", "anne", "ZOE", "legoff", "le goff", "N DIAYE", "Cœur",
          "5012345678900", "2 80 05 75 111 001 16", "175036912300280", "12 mai 1980", "19800512", "Li Ng",
          "ly", "MINH", "jean pierre", "Hélène", "HELENE", "O", "", "  "]


def _random_frame(rng: random.Random, n: int) -> pl.DataFrame:
    def text():
        return None if rng.random() < 0.1 else " ".join(rng.choice(PIECES) for _ in range(rng.randint(1, 4)))
    rows = []
    for _ in range(n):
        born = rng.choice([None, BORN, date(1955, 9, 12), date(2001, 1, 2)])
        rows.append({"family_name": rng.choice(FAMILY), "first_name": rng.choice(FIRST), "birth_date": born,
                     "value_raw": text(), "local_label": text(), "ref_range": text(), "unit_raw": text(),
                     "specimen": text(), "abnormal_flag": text(), "value_num": 1.0, "value_comparator": "<"})
    return pl.DataFrame(rows, schema={"family_name": pl.Utf8, "first_name": pl.Utf8, "birth_date": pl.Date,
                                      **{c: pl.Utf8 for c in it.FREE_TEXT_COLUMNS}, "value_num": pl.Float64,
                                      "value_comparator": pl.Utf8})


def test_the_frame_masks_exactly_what_mask_text_masks_on_every_row():
    """The pre-filter only decides where to look: on random texts built of names, dates, NIRs and
    lab words, every row is what mask_text makes of it."""
    df = _random_frame(random.Random(4), 3000)
    out = mask_identities_in_text(df)
    assert out.height == df.height and out.columns == [*df.columns, MASKED_COLUMN]
    changed = 0
    for before, after in zip(df.iter_rows(named=True), out.iter_rows(named=True), strict=True):
        any_change = False
        for c in it.FREE_TEXT_COLUMNS:
            expected = mask_text(before[c], before["family_name"], before["first_name"], before["birth_date"])
            assert after[c] == expected, (c, before[c], before["family_name"], before["first_name"])
            any_change |= expected != before[c]
        assert after[MASKED_COLUMN] == any_change
        numeric_kept = after["value_raw"] == before["value_raw"]
        assert (after["value_num"], after["value_comparator"]) == ((1.0, "<") if numeric_kept else (None, None))
        changed += any_change
    assert 500 < changed < 2900  # both kinds were there


def test_the_frame_without_anything_to_mask_is_unchanged_and_python_looks_at_matching_rows_only(monkeypatch):
    """Performance by construction: 20,000 rows with 3 typed identities -> mask_text runs on those
    rows only (the other values are ruled out once per distinct value, in polars)."""
    n = 20_000
    df = pl.DataFrame({
        "family_name": [f"Nom{chr(65 + i % 26)}{chr(65 + i // 26 % 26)}" for i in range(n)],
        "first_name": ["Marie", "Jean"] * (n // 2),
        "birth_date": [date(1950 + i % 50, 1 + i % 12, 1 + i % 28) for i in range(n)],
        "value_raw": [["5,4", "Positif", "Négatif", "12,5", "<0,5"][i % 5] for i in range(n)],
        "local_label": [["Glycémie", "PCR SARS-CoV-2", "Créatinine"][i % 3] for i in range(n)],
        "ref_range": [["3,9-5,8", "0.50-1.20", None][i % 3] for i in range(n)],
        "value_num": [1.0] * n,
    })
    calls = []
    real = it.mask_text
    monkeypatch.setattr(it, "mask_text", lambda *a: calls.append(a) or real(*a))
    assert mask_identities_in_text(df).equals(df.with_columns(pl.lit(False).alias(MASKED_COLUMN)))
    assert not calls
    planted = df.with_columns(df["value_raw"].clone().scatter([10, 500, 7000], [
        "Positif NomKA Marie", "Négatif 280057511100116", f"Positif {df['birth_date'][7000]:%d/%m/%Y}"]))
    out = mask_identities_in_text(planted)
    assert len(calls) == 3
    assert out[MASKED_COLUMN].arg_true().to_list() == [10, 500, 7000]
    assert out["value_raw"].gather([10, 500, 7000]).to_list() == [f"Positif {M}", f"Négatif {M}", f"Positif {M}"]


def test_to_staging_flags_the_row_and_keeps_it():
    from transforms.canonical import CANONICAL_SCHEMA
    from transforms.staging import to_staging

    base = {c: None for c in CANONICAL_SCHEMA}
    base.update(file_id="f", line_no=1, source="lab", lab_finess="750000002", request_id="D1",
                patient_nir=nir("2800575111001"), family_name="DUPONT", first_name="Marie", birth_date=BORN,
                sex="F", postal_code="75011", collected_at=datetime(2026, 11, 2, 8, 30), local_code="PCR",
                local_label="PCR SARS-CoV-2", value_type="ST", value_raw="Positif", result_status="F")
    rows = [dict(base), dict(base, line_no=2, value_raw="Positif - patiente DUPONT Marie NIR 280057511100116",
                             local_label="Bilan DUPONT Marie", ref_range="controle 12/05/1980"),
            dict(base, line_no=3, value_type="NM", value_raw="280057511100116", value_num=280057511100116.0)]
    valid = pl.DataFrame(rows, schema=CANONICAL_SCHEMA).with_columns(result_no=pl.col("line_no"))
    pc = pl.DataFrame({"postal_code": ["75011"], "dep_code": ["75"]})
    from flows.steps import with_lineage_keys

    secret = b"0123456789abcdef"
    out = to_staging(with_lineage_keys(valid, secret), file_seq=1, postal_codes=pc, secret=secret)
    assert out.height == 3
    assert out["dq_flags"].to_list() == [None, "IDENTITY_IN_TEXT", "IDENTITY_IN_TEXT"]
    assert out["value_raw"].to_list() == [
        "Positif", f"Positif - patiente {M} NIR {M}", M]
    assert out["local_label"][1] == f"Bilan {M}" and out["ref_range"][1] == f"controle {M}"
    assert out["value_num"][2] is None  # the NIR read as a number is gone too
    assert len(set(out["person_key"])) == 1  # the pseudonym is computed from the identity, not the text
    values = " ".join(str(v) for row in out.iter_rows() for v in row)
    for planted in ("DUPONT", "Marie", "2800575111001", "12/05/1980", "280057511100116"):
        assert planted not in values


@pytest.mark.parametrize(("text", "result_class"), [
    (f"Positif - patiente {M} NIR {M}", "POS"),
    (f"Positif {M}", "POS"),
    (f"Négatif - Mme {M}, née le {M}", "NEG"),
    (f"Détecté ({M})", "POS"),
    (f"{M} Non détecté", "NEG"),
    (f"Positif, à contrôler {M}", None),  # the rules are unchanged otherwise
    (M, None),
])
def test_a_masked_qualitative_result_still_reads(text, result_class):
    from transforms.terminology.qualitative import DEFAULT_READER

    assert DEFAULT_READER.classify(text)[1] == result_class


def test_the_work_queue_suggestions_ignore_the_mask():
    from transforms.terminology.suggest import normalise_label

    assert normalise_label(f"Glycémie {M}") == normalise_label("Glycémie")


@pytest.mark.parametrize("sep", [" ", "  ", "\u00a0", "\u202f", "\u2013", "\u2014", "\u2010", ". ", ".-", " - ",
                                 "\t", " \u2013 "])
def test_every_nir_spelling_the_nir_field_accepts_is_masked_in_text(sep):
    """QA regr F4: the NIR field reads a run of blanks, dots, hyphens or dashes between the groups
    (transforms/identity.py INS_SEPARATORS); the same spelling typed into a label went to analysts."""
    from transforms.identity import normalise_ins

    spelt = sep.join(["2", "57", "03", "30", "294", "583", "37"])
    assert normalise_ins(spelt) == "257033029458337"
    assert mask_text(f"Glycémie NIR {spelt}") == f"Glycémie NIR {M}"
    assert mask_text(f"NIR {spelt} vu") == f"NIR {M} vu"  # ASCII only: the frame's pre-filter must find it too
    df = pl.DataFrame({"family_name": ["X"], "first_name": ["Y"], "birth_date": [None], "value_raw": [spelt],
                       "local_label": [f"NIR {spelt}"]}, schema_overrides={"birth_date": pl.Date})
    out = mask_identities_in_text(df)
    assert out["value_raw"].to_list() == [M] and out["local_label"].to_list() == [f"NIR {M}"]
