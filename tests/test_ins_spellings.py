"""An INS written with blanks, dots or dashes ('2 79 07 29 100 851 43', as on the carte Vitale) is the
same INS in every format (QA fmt F4: CSV loaded it with blanks and quarantined it with dots; HL7
quarantined it with blanks), and the pseudonyms of well-formed NIRs do not move."""

from __future__ import annotations

from datetime import date, datetime

import polars as pl

from tests.helpers import HEADER, line
from transforms.canonical import conform
from transforms.identity import pseudonym, pseudonyms
from transforms.parsers import cda, csv_extract, hl7v2, hprim
from transforms.synthetic import formats

NIR = "279072910085143"  # QA's example, a valid key
CORSICAN = "185022A12345682"
SPELLINGS = [
    "2 79 07 29 100 851 43",  # the carte Vitale's grouping
    "2.79.07.29.100.851-43",
    "2-79-07-29-100-851-43",
    " 2 79 07 29 100 851 43 ",
    "2\u00a079\u00a007\u00a029\u00a0100\u00a0851\u00a043",  # no-break spaces (a word processor's)
    "2 79 07 29 100 851\u201343",  # an en dash
    "2790729100851 43",
]
NOT_A_NIR = ["2 79 07 29 100 851", "IPP-12 345", "2.79.07.29.100.851-4X"]


def test_well_formed_nirs_keep_their_pseudonyms():
    """A pseudonym that moved would split every person with an INS between the runs before and after
    (the digests were computed by the code before the INS rule changed)."""
    secret = b"golden-secret"
    golden = {NIR: "2dc0546912cd45b7c58c98faec75e479", CORSICAN: "00ecb056f3d1dc95786962d41e6744aa"}
    for nir, digest in golden.items():
        assert pseudonym(secret, ins=nir) == digest
    ids = pl.DataFrame({"patient_nir": list(golden), "family_name": ["A", "B"], "first_name": ["C", "D"],
                        "birth_date": [date(1979, 7, 17)] * 2, "sex": ["F", "M"]})
    assert pseudonyms(ids, secret).to_list() == list(golden.values())
    assert {pseudonym(secret, ins=s) for s in SPELLINGS} == {golden[NIR]}
    assert pseudonym(secret, ins="185022a12345682") == golden[CORSICAN]


def _canonical(nirs: list[str], oid: str | None = "1.2.250.1.213.1.4.8") -> pl.DataFrame:
    """One glucose result per NIR spelling, each its own request (and message, document, P record)."""
    base = dict(lab_finess="750000001", ins_oid=oid, family_name="MARTIN", first_name="Marie",
                birth_date=date(1979, 7, 17), sex="F", postal_code="69003",
                collected_at=datetime(2026, 11, 4, 8, 30), received_at=datetime(2026, 11, 4, 10),
                validated_at=datetime(2026, 11, 4, 18), local_code="GLY", local_label="Glycémie",
                loinc_code_src="2345-7", value_type="NM", value_raw="5.5", unit_raw="mmol/L", result_status="F")
    return conform(pl.DataFrame([{**base, "request_id": f"R{i}", "patient_nir": n} for i, n in enumerate(nirs)]))


def _parsed(parser, path) -> pl.DataFrame:
    chunks = list(parser(path, file_id="f", source="lab", chunk_rows=100))
    assert all(c.rejects.is_empty() for c in chunks)
    return pl.concat([c.rows for c in chunks])


def _every_format(df: pl.DataFrame, tmp_path) -> dict[str, pl.DataFrame]:
    writers = {
        "hl7v2": (lambda p: formats.write_hl7v2(df, p), hl7v2.parse),
        "hl7v2_embedded_cda": (lambda p: formats.write_hl7v2(df, p, embed_cda=True), hl7v2.parse),
        "cda": (lambda p: formats.write_cda(df, p), cda.parse),
        "hprim": (lambda p: formats.write_hprim(df, p), hprim.parse),
    }
    out = {}
    for name, (write, parse) in writers.items():
        path = tmp_path / f"nir.{name}"
        write(path)
        out[name] = _parsed(parse, path)
    csv = tmp_path / "nir.csv"
    lines = [line(N_DEMANDE=r["request_id"], NIR=r["patient_nir"]) for r in df.iter_rows(named=True)]
    csv.write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")
    out["csv"] = _parsed(csv_extract.parse, csv)
    return out


def test_every_format_reads_a_grouped_nir_as_the_nir(tmp_path):
    spellings = [*SPELLINGS, "185022a12345682", "1 85 02 2a 123 456 82"]
    want = [NIR] * len(SPELLINGS) + [CORSICAN] * 2
    for name, rows in _every_format(_canonical(spellings), tmp_path).items():
        assert rows.sort("request_id", descending=False)["patient_nir"].to_list() == want, name


def test_what_is_still_no_nir_is_kept_as_sent(tmp_path):
    """The validator refuses it (NIR_FORMAT) as before, or a message's local id is dropped; the raw
    layer keeps the lab's own text."""
    for name, rows in _every_format(_canonical(NOT_A_NIR), tmp_path).items():
        assert rows.sort("request_id")["patient_nir"].to_list() == NOT_A_NIR, name


QA_HL7 = ("MSH|^~\\&|SGL|330028762|D|D|20261105120000||ORU^R01^ORU_R01|{id}|P|2.5\r"
          "PID|1||{pid3}||MARTIN^Marie^^^^^L||19790717|F|||^^^^69003^^H\r"
          "OBR|1||DEM{id}|X^Y^L|||20261104083000|||||||20261104100000\r"
          "OBX|1|NM|GLY^Glyc^L^2345-7^^LN||5.5|mmol/L|||||F|||20261104083000|||||20261104180000\r")


def test_one_person_whatever_the_spelling_and_the_format_end_to_end(tmp_path):
    """QA's files: the CSV lines with blanks, with dots and a dash, and plain, and the HL7 message with
    blanks (with the INS OID, and without any: a NIR-shaped PID-3 is the INS) all load as the one
    person of the plain NIR; a value that is still no NIR after its separators are removed is
    quarantined NIR_FORMAT, as before."""
    from tests.conftest import TEST_SECRET
    from tests.epi_support import run_steps
    from warehouse import catalog as cat

    home = tmp_path / "home"
    csv_lab, hl7_lab = home / "landing" / "labcsv", home / "landing" / "labhl7"
    csv_lab.mkdir(parents=True)
    hl7_lab.mkdir(parents=True)
    marie = dict(NOM="MARTIN", PRENOM="Marie", DATE_NAISSANCE="17/07/1979", CODE_POSTAL="69003")
    lines = [HEADER, line(N_DEMANDE="C1", NIR="2 79 07 29 100 851 43", **marie),
             line(N_DEMANDE="C2", NIR="2.79.07.29.100.851-43", **marie), line(N_DEMANDE="C3", NIR=NIR, **marie),
             line(N_DEMANDE="C4", NIR="2 79 07 29 100 851", **marie)]
    (csv_lab / "nir_blanks.csv").write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    oid = "^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS"
    (hl7_lab / "nir_spaces.hl7").write_text(
        QA_HL7.format(id="H1", pid3="2 79 07 29 100 851 43" + oid) + QA_HL7.format(id="H2", pid3="2 79 07 29 100 851 43"),
        encoding="utf-8")
    ctx, _ = run_steps(home)
    quarantine = ctx.wh.read(cat.QUARANTINE)
    assert quarantine.select("source", "line_no", "reason_code", "column").rows() == [
        ("labcsv", 5, "NIR_FORMAT", "patient_nir")]
    fct = ctx.wh.read(cat.FCT_LAB_RESULTS)
    assert fct.height == 5
    assert set(fct["person_key"]) == {pseudonym(TEST_SECRET.encode(), ins=NIR)}
