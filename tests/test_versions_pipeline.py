"""Result versions end to end (transforms/versions.py through flows/publish.py and the epi marts), on
small hand-made CSV extracts delivered one run at a time, as a lab integrator would (QA reports on
corrections, deletions and serial measurements). Run ids and temporary homes only; the pseudonym
secret is the test one (tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from flows import epi
from tests.epi_support import run_steps
from tests.helpers import HEADER, line, nir
from warehouse import catalog as cat
from warehouse import catalog_epi as ce

LAB = "labo_alpha"

# name -> (NIR body, family name, first name, birth date, sex, postal code)
PEOPLE = {
    "benoit": ("1610509122201", "BERTRAND", "Benoit", "01/05/1961", "M", "09000"),
    "chloe": ("2910509122202", "CHARPENTIER", "Chloe", "02/05/1991", "F", "09000"),
    "simon": ("1660622278305", "SIMON", "Sami", "03/06/1966", "M", "22000"),
    "sophie": ("2660722278306", "SAULNIER", "Sophie", "03/07/1966", "F", "22000"),
    "gilles": ("1550604070107", "GARNIER", "Gilles", "06/06/1955", "M", "04000"),
    "theo": ("1720511069204", "TESSIER", "Theo", "04/05/1972", "M", "11000"),
}


def result(req: str, who: str, collected: str, validated: str, value: str, status: str = "F",
           code: str = "COVPCR") -> str:
    body, family, first, born, sex, postal = PEOPLE[who]
    label, unit = {"COVPCR": ("SARS-CoV-2 RT-PCR", ""), "GLY": ("Glycémie à jeun", "mmol/L")}[code]
    return line(FINESS="690001235", N_DEMANDE=req, NIR=nir(body), NOM=family, PRENOM=first, DATE_NAISSANCE=born,
                SEXE=sex, CODE_POSTAL=postal, DATE_PRELEVEMENT=collected, DATE_RECEPTION=collected,
                DATE_VALIDATION=validated, CODE_ANALYSE=code, LIBELLE_ANALYSE=label, RESULTAT=value, UNITE=unit,
                VALEURS_REFERENCE="", STATUT=status)


class Home:
    """A fresh home whose lab folder receives one file per ``deliver``, each followed by a run (the
    fact table, then the epi marts)."""

    def __init__(self, tmp_path: Path):
        self.home = tmp_path / "home"
        (self.home / "landing" / LAB).mkdir(parents=True)
        self.runs = 0
        self.ctx = None

    def deliver(self, name: str, *lines: str) -> Home:
        (self.home / "landing" / LAB / name).write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")
        self.runs += 1
        self.ctx, refs = run_steps(self.home, f"run-{self.runs}")
        epi.publish_epi(self.ctx, refs)
        return self

    def fct(self) -> list[tuple]:
        """(request, family name, collection dd/mm HH:MM, value, status, is_current), delivery order."""
        wh = self.ctx.wh
        raw = wh.read(cat.RAW_RESULTS).select("file_id", "result_no", "request_id", "family_name")
        fct = wh.read(cat.FCT_LAB_RESULTS).join(raw, on=["file_id", "result_no"], how="left")
        return fct.sort("file_seq", "line_no").select(
            "request_id", "family_name", pl.col("collected_at").dt.strftime("%d/%m %H:%M"), "value_raw",
            "result_status", "is_current").rows()

    def current(self) -> set[tuple]:
        """(request, family name, value, status) of the current rows."""
        return {(r, n, v, s) for r, n, _, v, s, cur in self.fct() if cur}

    def sidep(self) -> list[tuple]:
        """(jour dd/mm, dep, P, T) of the all-ages COVID-19 rows counting someone."""
        d = self.ctx.wh.read(ce.SIDEP_DEP_DAILY).filter(
            (pl.col("disease") == "covid19") & (pl.col("cl_age90") == 0) & ((pl.col("P") > 0) | (pl.col("T") > 0)))
        return d.sort("jour", "dep").select(pl.col("jour").dt.strftime("%d/%m"), "dep", "P", "T").rows()


def test_an_identity_correction_on_a_daily_request_number_leaves_the_other_days_positive(tmp_path):
    """QA F2 (HIGH): the lab numbers requests from 1 each day; it finds that the 03/11 sample of
    request 1 was Benoit's, not Chloe's. The correction replaced Benoit's 02/11 positive (same
    number, other day): Benoit vanished from P and the MDO cases, T counted two persons on 03/11."""
    h = Home(tmp_path).deliver(
        "1_day1_day2.csv",
        result("1", "benoit", "02/11/2026 10:00", "03/11/2026 08:00", "Positif"),
        result("1", "chloe", "03/11/2026 10:00", "04/11/2026 08:00", "Négatif"))
    h.deliver("2_identity_correction.csv",
              result("1", "benoit", "03/11/2026 10:00", "05/11/2026 08:00", "Négatif", "C"))
    assert h.fct() == [("1", "BERTRAND", "02/11 10:00", "Positif", "F", True),
                       ("1", "CHARPENTIER", "03/11 10:00", "Négatif", "F", False),
                       ("1", "BERTRAND", "03/11 10:00", "Négatif", "C", True)]
    # Benoit positive on 02/11 (and not again: the same person, tested negative), Chloe no longer tested
    assert h.sidep() == [("02/11", "09", 1, 1), ("03/11", "09", 0, 1)]
    cases = h.ctx.wh.read(ce.MDO_CASES).filter(pl.col("mdo_id") == "covid19")
    assert cases.select(pl.col("jour").dt.strftime("%d/%m")).to_series().to_list() == ["02/11"]


def test_an_undated_correction_or_deletion_delivered_before_its_original_is_not_undone_by_it(tmp_path):
    """QA F4 (HIGH): a C and a D sent without a validation time, delivered before their originals
    (validated): the originals became current, the wrong person positive and a deleted test counted."""
    h = Home(tmp_path).deliver(
        "1_corrections_first.csv",
        result("R2200", "simon", "02/11/2026 10:00", "", "Positif", "C"),
        result("R2201", "sophie", "02/11/2026 10:00", "", "", "D"))
    h.deliver("2_originals_later.csv",
              result("R2200", "simon", "02/11/2026 10:00", "03/11/2026 08:00", "Négatif"),
              result("R2201", "sophie", "02/11/2026 10:00", "03/11/2026 08:00", "Positif"))
    assert h.current() == {("R2200", "SIMON", "Positif", "C")}  # corrected; Sophie's deleted
    assert h.sidep() == [("02/11", "22", 1, 1)]
    # the originals sent again, with their times or without (a cumulative extract): still undone
    h.deliver("3_originals_again.csv",
              result("R2200", "simon", "02/11/2026 10:00", "03/11/2026 08:00", "Négatif"),
              result("R2201", "sophie", "02/11/2026 10:00", "", "Positif"))
    assert h.current() == {("R2200", "SIMON", "Positif", "C")}
    assert h.sidep() == [("02/11", "22", 1, 1)]


def test_an_original_sent_again_without_a_time_does_not_undo_a_dated_correction(tmp_path):
    """The same rule the other way round: F, then its C (validated), then a cumulative extract
    re-sending the F without a validation time; a later F with a later validation still wins."""
    h = Home(tmp_path).deliver("1.csv", result("R1", "simon", "02/11/2026 10:00", "02/11/2026 18:00", "Négatif"))
    h.deliver("2.csv", result("R1", "simon", "02/11/2026 10:00", "03/11/2026 09:00", "Positif", "C"))
    h.deliver("3.csv", result("R1", "simon", "02/11/2026 10:00", "", "Négatif"))
    assert h.current() == {("R1", "SIMON", "Positif", "C")}
    h.deliver("4.csv", result("R1", "simon", "02/11/2026 10:00", "04/11/2026 09:00", "Négatif"))
    assert h.current() == {("R1", "SIMON", "Négatif", "F")}


def test_a_tolerance_test_with_two_equal_values_keeps_its_three_measurements(tmp_path):
    """QA F1 (MEDIUM): one file, request R400, glucose at 08:00 (5,0), 09:00 (7,5) and 10:00 (5,0):
    the 08:00 measurement was marked replaced by the 10:00 one."""
    h = Home(tmp_path).deliver("tolerance.csv", *(
        result("R400", "gilles", f"02/11/2026 {t}", "03/11/2026 10:00", v, code="GLY")
        for t, v in (("08:00", "5,0"), ("09:00", "7,5"), ("10:00", "5,0"))))
    assert [(at, v, cur) for _, _, at, v, _, cur in h.fct()] == [
        ("02/11 08:00", "5,0", True), ("02/11 09:00", "7,5", True), ("02/11 10:00", "5,0", True)]


def _gate(h: Home) -> dict:
    from flows.quality_gate import run_quality_gate

    return run_quality_gate(h.ctx)


def test_a_deletion_without_a_collection_date_deletes_its_result_and_passes_the_gate(tmp_path):
    """QA F3 (MEDIUM): the lab deletes Theo's positive with a D line without collection date nor
    value; it was quarantined (MISSING_VALUE collected_at) and the positive stayed published."""
    h = Home(tmp_path).deliver("1.csv", result("R1100", "theo", "02/11/2026 10:00", "03/11/2026 08:00", "Positif"))
    assert h.sidep() == [("02/11", "11", 1, 1)]
    h.deliver("2_deletion.csv", result("R1100", "theo", "", "05/11/2026 08:00", "", "D"))
    assert h.fct() == [("R1100", "TESSIER", "02/11 10:00", "Positif", "F", False),
                       ("R1100", "TESSIER", None, None, "D", False)]
    assert h.sidep() == [] and h.ctx.wh.read(ce.MDO_CASES).is_empty()
    gate = _gate(h)
    assert gate["ok"], gate["failures"]
    assert not [w for w in gate["warnings"] if "n_collected_null" in w or "n_deletions_unmatched" in w]


def test_a_deletion_without_a_date_that_names_no_single_result_is_kept_and_warned_about(tmp_path):
    """A daily request number gave Theo request R1 on 02/11 and on 03/11: a D without a date
    cannot tell which one it deletes. It deletes neither, stays in the fact table, and the gate
    warns (without blocking the exports)."""
    h = Home(tmp_path).deliver("1.csv", result("R1", "theo", "02/11/2026 10:00", "03/11/2026 08:00", "Positif"),
                               result("R1", "theo", "03/11/2026 10:00", "04/11/2026 08:00", "Négatif"))
    h.deliver("2_deletion.csv", result("R1", "theo", "", "05/11/2026 08:00", "", "D"))
    assert [cur for *_, cur in h.fct()] == [True, True, False]
    assert h.sidep() == [("02/11", "11", 1, 1), ("03/11", "11", 0, 1)]  # both results still count
    gate = _gate(h)
    assert gate["ok"], gate["failures"]
    unmatched = [w for w in gate["warnings"] if "n_deletions_unmatched" in w]
    assert len(unmatched) == 1 and "line 2" in unmatched[0], gate["warnings"]


def test_a_correction_whose_same_day_original_was_quarantined_leaves_the_other_days_alone(tmp_path):
    """QA regr2 F1 (HIGH): request numbers restart every day. Theo's R1 of 19/11 is positive; the R1
    of 20/11 arrives with its reception before its collection (quarantined) and again as a
    correction, on the day the R1 of 21/11 was validated. The correction replaced the 19/11
    positive (the same person's nearest other day), which vanished from P, and the gate said nothing."""
    h = Home(tmp_path).deliver("1.csv", result("R1", "theo", "19/11/2026 08:00", "19/11/2026 18:00", "Positif"))
    body, family, first, born, sex, postal = PEOPLE["theo"]

    def r1(collected: str, received: str, validated: str, value: str, status: str) -> str:
        return line(FINESS="690001235", N_DEMANDE="R1", NIR=nir(body), NOM=family, PRENOM=first,
                    DATE_NAISSANCE=born, SEXE=sex, CODE_POSTAL=postal, DATE_PRELEVEMENT=collected,
                    DATE_RECEPTION=received, DATE_VALIDATION=validated, CODE_ANALYSE="COVPCR",
                    LIBELLE_ANALYSE="SARS-CoV-2 RT-PCR", RESULTAT=value, UNITE="", VALEURS_REFERENCE="",
                    STATUT=status)
    h.deliver("2.csv",
              r1("21/11/2026 08:00", "21/11/2026 08:10", "21/11/2026 08:30", "Négatif", "F"),
              r1("20/11/2026 08:00", "20/11/2026 07:00", "20/11/2026 18:00", "Négatif", "F"),  # quarantined
              r1("20/11/2026 08:00", "20/11/2026 09:00", "21/11/2026 09:00", "Négatif", "C"))
    assert [(at, v, st, cur) for _, _, at, v, st, cur in h.fct()] == [
        ("19/11 08:00", "Positif", "F", True), ("21/11 08:00", "Négatif", "F", True),
        ("20/11 08:00", "Négatif", "C", True)]
    assert h.sidep() == [("19/11", "11", 1, 1), ("20/11", "11", 0, 1), ("21/11", "11", 0, 1)]
    gate = _gate(h)
    assert not [w for w in gate["warnings"] if "n_versions_moved_day" in w], gate["warnings"]

    # the quarantined original delivered after its correction: the next run settles it the same way
    late = Home(tmp_path / "late")
    late.deliver("1.csv", result("R1", "theo", "19/11/2026 08:00", "19/11/2026 18:00", "Positif"),
                 r1("21/11/2026 08:00", "21/11/2026 08:10", "21/11/2026 08:30", "Négatif", "F"),
                 r1("20/11/2026 08:00", "20/11/2026 09:00", "21/11/2026 09:00", "Négatif", "C"))
    assert [cur for *_, cur in late.fct()] == [True, False, True]  # a corrected date, as far as it knows
    assert [w for w in _gate(late)["warnings"] if "n_versions_moved_day" in w]
    late.deliver("2.csv", r1("20/11/2026 08:00", "20/11/2026 07:00", "20/11/2026 18:00", "Négatif", "F"))
    assert [cur for *_, cur in late.fct()] == [True, True, True]
    assert late.sidep() == h.sidep()


def test_a_correction_that_moves_a_result_to_another_day_is_warned_about(tmp_path):
    """A correction of the collection date (03/11 typed for 02/11, validated 03/11) moves the result
    to 02/11: legitimate, but the gate says so (QA regr2 F1: it was silent)."""
    h = Home(tmp_path).deliver("1.csv", result("R5", "theo", "03/11/2026 10:00", "03/11/2026 18:00", "Positif"))
    h.deliver("2.csv", result("R5", "theo", "02/11/2026 10:00", "04/11/2026 08:00", "Positif", "C"))
    assert [cur for *_, cur in h.fct()] == [False, True]
    assert h.sidep() == [("02/11", "11", 1, 1)]
    gate = _gate(h)
    assert gate["ok"], gate["failures"]
    moved = [w for w in gate["warnings"] if "n_versions_moved_day" in w]
    assert len(moved) == 1 and "line 2" in moved[0], gate["warnings"]


def test_a_deletion_and_a_correction_more_than_a_year_later_retract_the_positives(tmp_path):
    """QA cal F5: a lab retracts two positives of 01/10/2025 on 20/11/2026, one deleted (D), one
    corrected to negative (C). Both were quarantined 'collected more than 366 days before its
    validation' and the two positives kept counting."""
    h = Home(tmp_path).deliver(
        "alpha_20251001.csv",
        result("R1", "benoit", "01/10/2025 08:00", "01/10/2025 18:00", "Positif"),
        result("R2", "chloe", "01/10/2025 08:10", "01/10/2025 18:00", "Positif"))
    assert h.sidep() == [("01/10", "09", 2, 2)]
    h.deliver("alpha_corrections_20261120.csv",
              result("R1", "benoit", "01/10/2025 08:00", "20/11/2026 09:00", "", status="D"),
              result("R2", "chloe", "01/10/2025 08:10", "20/11/2026 09:00", "Négatif", status="C"))
    assert h.ctx.wh.read(cat.QUARANTINE).is_empty()
    assert h.current() == {("R2", "CHARPENTIER", "Négatif", "C")}
    assert h.sidep() == [("01/10", "09", 0, 1)]


def test_a_late_correction_corrects_only_its_own_collection_day_and_otherwise_does_not_count(tmp_path):
    """QA regr F1: a correction validated 05/11/2026 of a result typed as collected 02/11/2025 (the
    year mistyped; the original positive is of 02/11/2026) moved that current positive a year back,
    and a correction of 01/09/2025 whose original was never delivered added a year-old positive;
    both passed, the row checks exempting a C or D from the 366 days (QA cal F5). Now the first
    corrects nothing, the original keeps counting on its day, and neither is current: the gate names
    both. A late deletion does not move either."""
    h = Home(tmp_path).deliver(
        "1.csv",
        result("R1", "benoit", "02/11/2026 10:00", "02/11/2026 18:00", "Positif"),
        result("R2", "chloe", "02/11/2026 10:10", "02/11/2026 18:00", "Positif"))
    assert h.sidep() == [("02/11", "09", 2, 2)]
    h.deliver("2.csv",
              result("R1", "benoit", "02/11/2025 10:00", "05/11/2026 09:00", "Négatif", status="C"),  # year typo
              result("R9", "benoit", "01/09/2025 10:00", "20/11/2026 09:00", "Positif", status="C"),  # no original
              result("R2", "chloe", "02/11/2025 10:10", "05/11/2026 09:00", "", status="D"))  # year typo
    assert h.ctx.wh.read(cat.QUARANTINE).is_empty()  # kept in the warehouse, not counted
    assert h.current() == {("R1", "BERTRAND", "Positif", "F"), ("R2", "CHARPENTIER", "Positif", "F")}
    assert h.sidep() == [("02/11", "09", 2, 2)]
    gate = _gate(h)
    assert gate["ok"], gate["failures"]
    unmatched = [w for w in gate["warnings"] if "n_corrections_unmatched" in w]
    assert len(unmatched) == 1 and "line 2" in unmatched[0] and "line 3" in unmatched[0], gate["warnings"]
    assert [w for w in gate["warnings"] if "n_deletions_unmatched" in w and "line 4" in w], gate["warnings"]
    assert not [w for w in gate["warnings"] if "n_versions_moved_day" in w or "n_versions_inconsistent" in w]
