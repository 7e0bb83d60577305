"""Where a result counts: the SI-DEP geography (101 départements and the COM with a population),
postal codes spanning two départements, malformed postal codes (QA's cases, end to end)."""

from __future__ import annotations

from datetime import date

import polars as pl

from tests.helpers import HEADER, line, nir, with_request_ids


def covid(req: str, postal: str, body13: str) -> str:
    """A positive of a person of their own (names differ: one name and birth date is one person)."""
    return line(N_DEMANDE=req, NIR=nir(body13), NOM=f"Martin-{req}", CODE_ANALYSE="COVPCR", LIBELLE_ANALYSE="SARS-CoV-2 RT-PCR",
                RESULTAT="Positif", UNITE="", VALEURS_REFERENCE="", CODE_POSTAL=postal,
                DATE_PRELEVEMENT="15/01/2026 09:00", DATE_RECEPTION="15/01/2026 10:00",
                DATE_VALIDATION="15/01/2026 18:00")


def test_com_residents_count_and_bad_postal_codes_are_flags_not_quarantine(tmp_path):
    from flows.epi import publish_epi
    from flows.quality_gate import run_quality_gate
    from tests.epi_support import run_steps
    from warehouse import catalog as cat
    from warehouse import catalog_epi as ce

    people = {  # request: (postal code, NIR body)
        "SBH": ("97133", "2850297701040"),  # Saint-Barthélemy (977): a COM SI-DEP counts
        "SPM": ("97500", "1790597501031"),  # Saint-Pierre-et-Miquelon (975)
        "PYF": ("98714", "1800199123456"),  # Polynésie française (987): no population, no row
        "ZERO": ("1000", "2750101053012"),  # an Ain code (01000) whose leading zero was lost
        "NOZERO": ("1999", "2750101053029"),  # 4 digits, but 01999 is no postal code
        "LOIRE": ("42620", "1690742001012"),  # one commune in 03, one in 42: numbered after 42
    }
    landing = tmp_path / "home" / "landing" / "labo_alpha"
    landing.mkdir(parents=True)
    lines = [HEADER, *(covid(req, pc, body) for req, (pc, body) in people.items())]
    (landing / "labo_alpha_20260116.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    ctx, refs = run_steps(tmp_path / "home")

    fct = with_request_ids(ctx.wh, ctx.wh.read(cat.FCT_LAB_RESULTS))
    assert fct.height == len(people) and ctx.wh.read(cat.QUARANTINE).height == 0  # nothing dropped
    where = {r["request_id"]: (r["dep"], r["dq_flags"]) for r in
             fct.select("request_id", "dep", "dq_flags").iter_rows(named=True)}
    assert where == {"SBH": ("977", None), "SPM": ("975", None), "PYF": ("987", None),
                     "ZERO": ("01", "POSTAL_CODE_PADDED"), "NOZERO": (None, "POSTAL_CODE_INVALID;DEP_UNKNOWN"),
                     "LOIRE": ("42", None)}

    publish_epi(ctx, refs)
    day = date(2026, 1, 15)
    dep = ctx.wh.read(ce.SIDEP_DEP_DAILY).filter((pl.col("disease") == "covid19") & (pl.col("cl_age90") == 0)
                                                 & (pl.col("jour") == day))
    assert dep["dep"].n_unique() == 104 and "987" not in dep["dep"].to_list()
    positives = dict(dep.filter(pl.col("P") > 0).select("dep", "P").iter_rows())
    assert positives == {"975": 1, "977": 1, "42": 1, "01": 1}
    fra = ctx.wh.read(ce.SIDEP_FRANCE_DAILY).filter((pl.col("disease") == "covid19") & (pl.col("cl_age90") == 0)
                                                    & (pl.col("jour") == day))
    assert fra["P"].to_list() == [4] and fra["pop"].to_list() == [67_114_995]
    reg = ctx.wh.read(ce.SIDEP_REGION_DAILY).filter((pl.col("disease") == "covid19") & (pl.col("cl_age90") == 0)
                                                    & (pl.col("jour") == day) & (pl.col("P") > 0))
    assert dict(reg.select("reg", "P").iter_rows()) == {"975": 1, "977": 1, "84": 2}  # each COM its own région

    # a resident of a COM without a population is a warning, never a blocked publication
    gate = run_quality_gate(ctx)
    assert gate["ok"], gate["failures"]
    assert any("984, 986 to 989" in w and "1" in w.rsplit("-", 1)[-1] for w in gate["warnings"]), gate["warnings"]


def test_a_postal_code_whose_leading_zero_a_spreadsheet_dropped_finds_its_departement():
    """QA fmt F5: an Excel-saved extract writes 01000 as 1000 and 06000 as 6000. Four digits can only
    be such a code: read as 0 + code when that is a postal code (flagged POSTAL_CODE_PADDED), else
    malformed as before."""
    from datetime import datetime

    from flows.steps import with_lineage_keys
    from tests.helpers import nir
    from transforms.canonical import CANONICAL_SCHEMA
    from transforms.staging import to_staging

    base = {c: None for c in CANONICAL_SCHEMA}
    base.update(file_id="f", source="lab", lab_finess="690001235", request_id="D1",
                patient_nir=nir("2800575111001"), family_name="DUPONT", first_name="Marie",
                birth_date=date(1980, 5, 12), sex="F", collected_at=datetime(2026, 11, 2, 8, 30),
                local_code="GLY", value_type="NM", value_raw="5", value_num=5.0, result_status="F")
    sent = ["1000", "6000", "01000", "06000", "1999", "7501", "100A", "01000 ", "99999", None, "75011", "10000", "2000"]
    valid = pl.DataFrame([dict(base, line_no=i + 1, postal_code=p) for i, p in enumerate(sent)],
                         schema=CANONICAL_SCHEMA).with_columns(result_no=pl.col("line_no"))
    pc = pl.DataFrame({"postal_code": ["01000", "06000", "75011", "10000", "02000"],
                       "dep_code": ["01", "06", "75", "10", "02"]})
    secret = b"0123456789abcdef"
    out = to_staging(with_lineage_keys(valid, secret), file_seq=1, postal_codes=pc, secret=secret)
    got = list(zip(sent, out["dep"].to_list(), out["dq_flags"].to_list()))
    assert got == [
        ("1000", "01", "POSTAL_CODE_PADDED"), ("6000", "06", "POSTAL_CODE_PADDED"),
        ("01000", "01", None), ("06000", "06", None),
        ("1999", None, "POSTAL_CODE_INVALID;DEP_UNKNOWN"),  # 01999 is no postal code
        ("7501", None, "POSTAL_CODE_INVALID;DEP_UNKNOWN"),
        ("100A", None, "POSTAL_CODE_INVALID;DEP_UNKNOWN"), ("01000 ", None, "POSTAL_CODE_INVALID;DEP_UNKNOWN"),
        ("99999", None, "DEP_UNKNOWN"), (None, None, "DEP_UNKNOWN"), ("75011", "75", None),
        ("10000", "10", None), ("2000", "02", "POSTAL_CODE_PADDED"),
    ]
