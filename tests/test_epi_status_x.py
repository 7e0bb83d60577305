"""A result sent with status X ("cannot be obtained") counts nowhere, whatever its value says (QA,
HIGH: a "Positif" sent with X counted as a positive person in SI-DEP). The README: tests with no
usable result (cancelled, uninterpretable, not obtained) count in neither P nor T; nor in MDO."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from flows import epi
from tests.epi_support import run_steps
from tests.helpers import HEADER, MAPPING_HEADER, line
from warehouse import catalog as cat
from warehouse import catalog_epi as ce

LAB = "labo_x"


def _result(req: str, name: str, code: str, result: str, status: str, day: str = "10/11/2026") -> str:
    label = {"PCR": "PCR SARS-CoV-2", "ROUG": "IgM rougeole"}[code]
    return line(N_DEMANDE=req, NIR="", NOM=name, PRENOM="Léa", DATE_NAISSANCE="03/04/1990", CODE_POSTAL="75011",
                CODE_ANALYSE=code, LIBELLE_ANALYSE=label, RESULTAT=result, UNITE="", VALEURS_REFERENCE="",
                STATUT=status, DATE_PRELEVEMENT=f"{day} 09:00", DATE_RECEPTION=f"{day} 10:00",
                DATE_VALIDATION=f"{day} 18:00")


def _deliver(home: Path, name: str, *lines: str) -> None:
    (home / "landing" / LAB / name).write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")


def _sidep(ctx) -> tuple[int, int]:
    d = ctx.wh.read(ce.SIDEP_DEP_DAILY).filter((pl.col("disease") == "covid19") & (pl.col("cl_age90") == 0))
    return d["P"].sum(), d["T"].sum()


def _measles(ctx) -> int:
    return ctx.wh.read(ce.MDO_WEEKLY).filter(pl.col("mdo_id") == "rougeole")["cases"].sum()


def test_a_result_not_obtained_counts_in_neither_p_nor_t_nor_mdo(tmp_path):
    home = tmp_path / "home"
    (home / "mappings").mkdir(parents=True)
    (home / "mappings" / f"{LAB}.csv").write_text(
        MAPPING_HEADER + "PCR,PCR SARS-CoV-2,,,94309-2,,\nROUG,IgM rougeole,,,21503-8,,\n", encoding="utf-8")
    (home / "landing" / LAB).mkdir(parents=True)
    _deliver(home, f"{LAB}_1.csv",
             _result("R1", "Alpha", "PCR", "Positif", "X"),  # not obtained: its value is no result
             _result("R2", "Bravo", "PCR", "Positif", "F"),
             _result("R3", "Charlie", "PCR", "Négatif", "X"),
             _result("R4", "Delta", "ROUG", "Positif", "X"),
             _result("R5", "Echo", "ROUG", "Positif", "F"))
    ctx, refs = run_steps(home, "run-1")
    epi.publish_epi(ctx, refs)
    fct = ctx.wh.read(cat.FCT_LAB_RESULTS)
    assert fct.height == 5 and fct["is_current"].all()  # kept in the warehouse, as sent
    assert _sidep(ctx) == (1, 1)  # Bravo only
    assert _measles(ctx) == 1  # Echo only

    # the lab sends Alpha's result again, obtained this time (a correction): Alpha counts now
    _deliver(home, f"{LAB}_2.csv", _result("R1", "Alpha", "PCR", "Positif", "C"))
    ctx, refs = run_steps(home, "run-2")
    epi.publish_epi(ctx, refs)
    assert _sidep(ctx) == (2, 2)
    # and a correction to X withdraws Echo's measles case
    _deliver(home, f"{LAB}_3.csv", _result("R5", "Echo", "ROUG", "Positif", "X"))
    ctx, refs = run_steps(home, "run-3")
    epi.publish_epi(ctx, refs)
    assert _measles(ctx) == 0
