"""Derive seeds/terminology/loinc_units.csv and molar_masses.csv (biolake's unit reference).

Run from the repository root after seeds/build_seeds.py:

    uv run python seeds/build_terminology_seeds.py

Inputs (no network, nothing from ../shared at run time):
* seeds/reference/loinc.csv - the shipped LOINC subset (built by seeds/build_seeds.py);
* seeds/terminology/unit_aliases.csv - hand-kept alias table (used to read labunits' units);
* the installed PyPI package labunits 0.2.1 (MIT), file labunits/data/analytes.json: per LOINC
  code a traditional unit, an SI unit and the factor between them.
* the molecular formulas and IUPAC standard atomic weights written below.

Outputs:
* loinc_units.csv: loinc_num, property_class, canonical_ucum, basis - the unit every numeric
  result of that code is stored in, and why;
* molar_masses.csv: loinc_num, analyte, molar_mass_g_per_mol, formula, source.
Provenance and licences: seeds/SOURCES.md ("Terminology seeds").
"""

from __future__ import annotations

import csv
import json
import re
import sys
from importlib import metadata, resources
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from transforms.terminology.loinc import load_loinc_seed  # noqa: E402
from transforms.terminology.units import (  # noqa: E402
    UnitResolver,
    conversion_factor,
    dimension_of,
    property_dimensions,
    ucum_quantity,
    unit_fits_property,
)

OUT = HERE / "terminology"

# IUPAC 2007 standard atomic weights (Wieser & Berglund, Pure Appl. Chem. 81:2131-2156, 2009),
# the precision behind the molar masses clinical chemistry publishes (glucose 180.16,
# cholesterol 386.65, bilirubin 584.66 g/mol).
ATOMIC_WEIGHTS = {
    "H": 1.00794, "C": 12.0107, "N": 14.0067, "O": 15.9994, "Na": 22.98977, "Mg": 24.3050,
    "P": 30.973762, "S": 32.065, "Cl": 35.453, "K": 39.0983, "Ca": 40.078, "Fe": 55.845,
    "Pb": 207.2,  # 207.2(1): lead's isotopic composition varies in nature, hence one decimal
}

# analyte -> (molecular formula, note, LOINC codes of the shipped subset measuring it)
ANALYTES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "glucose": ("C6H12O6", "", ("2339-0", "2345-7", "2342-4", "14749-6", "40193-5", "88365-2", "53049-3", "16915-1")),
    "creatinine": ("C4H7N3O", "", ("2160-0", "14682-9")),
    "urea": ("CH4N2O", "", ("22664-7",)),
    "urea nitrogen": ("N2", "BUN is expressed as nitrogen: 2 N per urea molecule", ("3094-0",)),
    "cholesterol": ("C27H46O", "HDL/LDL cholesterol are cholesterol amounts", ("2093-3", "35200-5", "2085-9", "2089-1", "13457-7")),
    "triglycerides": ("C57H104O6", "expressed as triolein (885.4 g/mol, the usual SI conversion); some French reports use x1.14, i.e. ~877 g/mol", ("2571-8", "35217-9")),
    "bilirubin": ("C33H36N4O6", "", ("1975-2", "14631-6", "29760-6")),
    "uric acid": ("C5H4N4O3", "", ()),
    "magnesium": ("Mg", "", ("19123-9", "2601-3")),
    "calcium": ("Ca", "", ("17864-0",)),
    "sodium": ("Na", "", ("2951-2",)),
    "potassium": ("K", "", ("2823-3",)),
    "chloride": ("Cl", "", ("2075-0", "2070-1")),
    "iron": ("Fe", "", ()),
    "lead": ("Pb", "blood lead (plombémie), reported in ug/L or umol/L", ("10368-9",)),
}

# Canonical storage unit per property class when the LOINC table gives no usable example unit.
# Units French labs report most, so most results need no conversion.
CLASS_DEFAULTS = {
    "MCNC": "g/L", "SCNC": "mmol/L", "NCNC": "10*9/L", "CCNC": "U/L", "VFR": "%", "MFR": "%",
    "NFR": "%", "ENTVOL": "fL", "ENTMASS": "pg", "TIME": "s", "RATIO": "{ratio}", "MRTO": "{ratio}",
    "ARVRAT": "mL/min/{1.73_m2}",
}

# Example units replaced by the identical-magnitude unit French reports use (G/L, ug/L).
SAME_MAGNITUDE = {"10*3/uL": "10*9/L", "10*6/uL": "10*12/L", "ng/mL": "ug/L"}

# LOINC short names end with the property ("Lead BldC-mCnc").
SHORTNAME_PROPERTY = {"mcnc": "MCNC", "scnc": "SCNC", "ncnc": "NCNC", "ccnc": "CCNC", "acnc": "ACNC",
                      "vfr": "VFR", "mfr": "MFR", "nfr": "NFR", "titr": "TITR", "prthr": "PRTHR"}


def molar_mass(formula: str) -> float:
    total = 0.0
    for element, count in re.findall(r"([A-Z][a-z]?)(\d*)", formula):
        total += ATOMIC_WEIGHTS[element] * (int(count) if count else 1)
    return round(total + 1e-9, 2)  # half up: Mg 24.3050 -> 24.31


def labunits_entries() -> dict[str, dict]:
    with resources.files("labunits").joinpath("data/analytes.json").open(encoding="utf-8") as fh:
        return json.load(fh)


def main() -> None:
    loinc = load_loinc_seed(HERE / "reference" / "loinc.csv")
    aliases_path = OUT / "unit_aliases.csv"
    import polars as pl

    resolver = UnitResolver(pl.read_csv(aliases_path, infer_schema=False))
    lab = labunits_entries()
    version = metadata.version("labunits")

    units_rows = []
    for rec in loinc.iter_rows(named=True):
        code, pc, ex = rec["loinc_num"], rec["property_class"], rec["example_ucum_unit"]
        inferred_unit = None
        basis = "LOINC property (French variant or English long name)" if pc else ""
        if pc is None and rec["display_en"]:
            m = re.search(r"-(\w+)$", rec["display_en"])
            if m and m.group(1).lower() in SHORTNAME_PROPERTY:
                pc, basis = SHORTNAME_PROPERTY[m.group(1).lower()], "LOINC short name suffix"
        if pc is None and code in lab:
            trad = resolver.resolve(lab[code]["traditional_units"])
            q = ucum_quantity(trad) if trad else None
            dim = str(q.dimensionality) if q is not None else None
            for cls in ("MCNC", "SCNC", "CCNC"):
                # equivalents count as amounts of substance for the class (never for conversion)
                if dim is not None and dimension_of(trad.replace("eq", "mol")) in property_dimensions(cls):
                    pc, basis = cls, f"dimension of labunits {version} traditional unit {lab[code]['traditional_units']}"
                    # store in the SI unit when it measures the same property (French labs report
                    # SI: albumin g/L, ferritin ug/L, potassium mmol/L rather than mEq/L)
                    si = resolver.resolve(lab[code]["si_units"])
                    si_q = ucum_quantity(si) if si else None
                    same = si_q is not None and str(si_q.dimensionality) == dim and "eq" not in si
                    same = same and cls != "CCNC"  # enzymes: U/L as French labs report, not ukat/L
                    inferred_unit = si if same else trad
                    if "eq" in trad and not same:
                        inferred_unit = None  # never store in equivalents
        canon, why = None, ""
        if ex and pc and unit_fits_property(ex, pc):
            canon, why = ex, "example_ucum_unit"
        if canon in SAME_MAGNITUDE:
            canon, why = SAME_MAGNITUDE[canon], f"{ex} written the way French labs write it (same magnitude)"
        if pc == "CCNC" and canon and "[IU]" in canon:
            canon, why = canon.replace("[IU]", "U"), "enzyme unit: the sources' [IU]/L is the French 'UI/L' of catalytic activity"
        if canon is None and inferred_unit:
            canon, why = inferred_unit, f"labunits {version} unit for this code (magnitude suited to the analyte)"
        if canon is None and pc in CLASS_DEFAULTS:
            canon, why = CLASS_DEFAULTS[pc], f"default for {pc}"
        if pc or canon:
            units_rows.append([code, pc or "", canon or "", "; ".join(x for x in (basis, why) if x)])

    mass_rows = []
    known = set(loinc["loinc_num"].to_list())
    seen = set()
    for analyte, (formula, note, codes) in ANALYTES.items():
        mw = molar_mass(formula)
        for code in codes:
            if code not in known:
                raise SystemExit(f"{code} ({analyte}) is not in seeds/reference/loinc.csv")
            src = f"computed from formula {formula} with IUPAC 2007 standard atomic weights"
            if note:
                src += f"; {note}"
            if code in lab:  # cross-check against labunits' conversion factor
                derived = _mw_from_labunits(lab[code], resolver)
                if derived and abs(derived - mw) / mw > 0.01:
                    print(f"warning: {code} {analyte}: formula {mw} vs labunits-derived {derived:.2f}")
                if derived:
                    src += f"; labunits {version} factor implies {derived:.2f}"
            mass_rows.append([code, analyte, f"{mw:.2f}", formula, src])
            seen.add(code)
    # labunits-only analytes are NOT given a molar mass: some of its factors imply impossible
    # masses (norepinephrine pg/mL -> nmol/L gives 0.17 g/mol), so they serve as a cross-check only.

    _write("loinc_units.csv", ["loinc_num", "property_class", "canonical_ucum", "basis"], units_rows)
    _write("molar_masses.csv", ["loinc_num", "analyte", "molar_mass_g_per_mol", "formula", "source"], mass_rows)


def _mw_from_labunits(entry: dict, resolver: UnitResolver) -> float | None:
    """labunits gives si = traditional * factor; for a mass -> molar pair that fixes the molar mass."""
    trad, si = resolver.resolve(entry["traditional_units"]), resolver.resolve(entry["si_units"])
    if not trad or not si:
        return None
    if dimension_of(trad) != "[mass] / [length] ** 3" or dimension_of(si) != "[substance] / [length] ** 3":
        return None
    f_mass, _ = conversion_factor(trad, "g/L")
    f_molar, _ = conversion_factor(si, "mol/L")
    # 1 trad = factor si  =>  f_mass g/L = factor * f_molar mol/L  =>  M = f_mass / (factor * f_molar)
    return f_mass / (entry["conversion_factor"] * f_molar)


def _write(name: str, header: list[str], rows: list[list[str]]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with (OUT / name).open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    print(f"wrote seeds/terminology/{name}: {len(rows)} rows")


if __name__ == "__main__":
    main()
