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
                     "ZERO": (None, "POSTAL_CODE_INVALID;DEP_UNKNOWN"), "LOIRE": ("42", None)}

    publish_epi(ctx, refs)
    day = date(2026, 1, 15)
    dep = ctx.wh.read(ce.SIDEP_DEP_DAILY).filter((pl.col("disease") == "covid19") & (pl.col("cl_age90") == 0)
                                                 & (pl.col("jour") == day))
    assert dep["dep"].n_unique() == 104 and "987" not in dep["dep"].to_list()
    positives = dict(dep.filter(pl.col("P") > 0).select("dep", "P").iter_rows())
    assert positives == {"975": 1, "977": 1, "42": 1}
    fra = ctx.wh.read(ce.SIDEP_FRANCE_DAILY).filter((pl.col("disease") == "covid19") & (pl.col("cl_age90") == 0)
                                                    & (pl.col("jour") == day))
    assert fra["P"].to_list() == [3] and fra["pop"].to_list() == [67_114_995]
    reg = ctx.wh.read(ce.SIDEP_REGION_DAILY).filter((pl.col("disease") == "covid19") & (pl.col("cl_age90") == 0)
                                                    & (pl.col("jour") == day) & (pl.col("P") > 0))
    assert dict(reg.select("reg", "P").iter_rows()) == {"975": 1, "977": 1, "84": 1}  # each COM its own région

    # a resident of a COM without a population is a warning, never a blocked publication
    gate = run_quality_gate(ctx)
    assert gate["ok"], gate["failures"]
    assert any("984, 986 to 989" in w and "1" in w.rsplit("-", 1)[-1] for w in gate["warnings"]), gate["warnings"]
