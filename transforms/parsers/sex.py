"""The patient's sex as every parser reads it: one vocabulary for CSV, HL7 v2, CDA and HPRIM.

A sex is read case- and accent-blind, surrounding blanks and a final dot ignored:

* ``F``: ``F``, ``2`` (the NIR's digit), ``féminin``, ``féminine``, ``femme``, ``female``, ``woman``;
* ``M``: ``M``, ``H``, ``1``, ``masculin``, ``masculine``, ``homme``, ``male``, ``man``;
* unknown (null, no further flag): the codes that say the sex is neither F nor M or not known
  (HL7 table 0001 ``U``/``O``/``A``/``N``, CDA ``UN``/``UNK``, HPRIM ``U``/``I``, ``0`` and ``9``
  of numeric codings) and the words ``inconnu``, ``indéterminé``, ``autre``, ``unknown``, ``other``;
* anything else is unreadable: null too, plus the parse issue ``SEX_INVALID:sex``.

Domain: a missing sex is a data-quality flag, not a reason to drop the result. So an unreadable sex
never costs the result: the validator keeps it with an unknown sex, flagged ``SEX_INVALID`` (and
staging adds ``SEX_UNKNOWN``): it counts in P and T, in neither the ``_f`` nor the ``_h`` columns
(quality/schemas.py). The value itself is never quoted in an issue or a flag.
"""

from __future__ import annotations

import unicodedata

import polars as pl

SEX_INVALID = "SEX_INVALID"  # the validator's and staging's flag of a kept result (quality/schemas.py)
SEX_ISSUE = f"{SEX_INVALID}:sex"
_FEMALE = ("F", "2", "FEMININ", "FEMININE", "FEMME", "FEMALE", "WOMAN")
_MALE = ("M", "H", "1", "MASCULIN", "MASCULINE", "HOMME", "MALE", "MAN")
_UNKNOWN = ("U", "I", "O", "A", "N", "0", "9", "UN", "UNK",
            "INCONNU", "INCONNUE", "INDETERMINE", "INDETERMINEE", "AUTRE", "UNKNOWN", "OTHER")
SEX_WORDS: dict[str, str | None] = {**{w: "F" for w in _FEMALE}, **{w: "M" for w in _MALE},
                                    **{w: None for w in _UNKNOWN}}
UNREADABLE = "?"  # what ``read_sex`` returns for a value outside the vocabulary


def _folded(text: str) -> str:
    """``text`` upper-cased without accents, blanks around it and a final dot."""
    bare = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return bare.strip().rstrip(".").strip().upper()


def read_sex(text: str | None) -> str | None:
    """``F``, ``M``, None (empty or an unknown sex) or :data:`UNREADABLE`."""
    if text is None or not text.strip():
        return None
    return SEX_WORDS.get(_folded(text), UNREADABLE)


def sex_columns(values: pl.Series) -> tuple[pl.Expr, pl.Expr]:
    """(sex, issue) expressions over the column ``values.name`` of the frame ``values`` comes from:
    ``sex`` is F, M or null, ``issue`` is :data:`SEX_ISSUE` for an unreadable value, else null.
    The vocabulary is applied to the column's distinct values only (a handful per file)."""
    distinct = [v for v in values.unique().to_list() if v is not None]
    read = {v: read_sex(v) for v in distinct}
    col = pl.col(values.name)
    sex = col.replace_strict({v: (r if r != UNREADABLE else None) for v, r in read.items()},
                             default=None, return_dtype=pl.Utf8)
    unreadable = [v for v, r in read.items() if r == UNREADABLE]
    issue = (pl.when(col.is_in(pl.Series(unreadable, dtype=pl.Utf8).implode())).then(pl.lit(SEX_ISSUE))
             .otherwise(pl.lit(None, dtype=pl.Utf8)))
    return sex, issue
