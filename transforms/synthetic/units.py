"""How a lab's unit relates to the catalog's canonical (UCUM) unit, for the generator.

``lab_value = canonical_value * factor``, rounded to ``decimals`` (None: the catalog's decimals).
Spelling variants of the canonical unit have factor 1. Analyte-specific conversions (mass <->
molar) use the molar mass: glucose 180.16 g/mol, creatinine 113.12, urea 60.06, bilirubin 584.66,
cholesterol 386.65, triglycerides (as triolein, C57H104O6) 885.43.
"""

from __future__ import annotations

# canonical unit -> spellings labs use for the same unit (factor 1)
SPELLINGS: dict[str, tuple[str, ...]] = {
    "10*9/L": ("10*9/L", "G/L", "G/l", "giga/l", "10^9/L", "10^9/l"),
    "10*12/L": ("10*12/L", "T/L", "tera/l", "10^12/L", "10^12/l"),
    "g/dL": ("g/dL", "g/dl"),
    "g/L": ("g/L", "g/l"),
    "mmol/L": ("mmol/L", "mmol/l"),
    "umol/L": ("umol/L", "µmol/L", "µmol/l", "umol/l"),
    "U/L": ("U/L", "U/l", "UI/L", "UI/l"),
    "ug/L": ("ug/L", "µg/L", "µg/l", "ng/mL", "ng/ml"),
    "%": ("%",),
    "fL": ("fL", "fl"),
    "pg": ("pg",),
    "s": ("s", "sec"),
}

# (test_key, lab unit) -> (factor from canonical to lab unit, decimals in the lab unit)
CONVERSIONS: dict[tuple[str, str], tuple[float, int]] = {
    ("glucose", "g/l"): (0.18016, 2),
    ("glucose", "g/L"): (0.18016, 2),
    ("creatinine", "mg/l"): (0.11312, 1),
    ("creatinine", "mg/L"): (0.11312, 1),
    ("uree", "g/l"): (0.06006, 2),
    ("uree", "g/L"): (0.06006, 2),
    ("bilirubine", "mg/l"): (0.58466, 1),
    ("bilirubine", "mg/L"): (0.58466, 1),
    ("hemoglobine", "g/L"): (10.0, 0),
    ("hemoglobine", "g/l"): (10.0, 0),
    ("ccmh", "g/L"): (10.0, 0),
    ("cholesterol", "mmol/L"): (1 / 0.38665, 2),
    ("hdl", "mmol/L"): (1 / 0.38665, 2),
    ("triglycerides", "mmol/L"): (1 / 0.88543, 2),
    ("hematocrite", "L/L"): (0.01, 3),
}


def factor_for(test_key: str, canonical_unit: str, lab_unit: str) -> tuple[float, int | None]:
    """(factor, decimals or None) turning a canonical value into the lab's unit; KeyError if unknown."""
    if (test_key, lab_unit) in CONVERSIONS:
        return CONVERSIONS[(test_key, lab_unit)]
    if lab_unit in SPELLINGS.get(canonical_unit, ()):
        return 1.0, None
    raise KeyError(f"no conversion from {canonical_unit!r} to {lab_unit!r} for {test_key}")
