"""Deterministic synthetic lab extracts and their truth (see seeds/README_generator.md).

    from transforms.synthetic import generate, GenerateResult
    res = generate(home, n_results=1_000_000, seed=42, days=7, start=date(2026, 11, 2), progress=None,
                   formats=None)  # or MIXED_FORMATS: some labs send HL7 v2, CDA, HPRIM
"""

from __future__ import annotations

from .generator import FORMATS, HEADER, HEADER_FIELDS, MIXED_FORMATS, DefectRates, GenerateResult, generate

__all__ = ["generate", "GenerateResult", "DefectRates", "HEADER", "HEADER_FIELDS", "FORMATS", "MIXED_FORMATS"]
