"""LOINC codes: check digit, and the two ways the platform gets a LOINC table.

* ``load_loinc_seed`` reads the subset biolake ships (seeds/reference/loinc.csv, built by
  seeds/build_seeds.py from public sources).
* ``load_official_loinc`` reads the official distribution (Loinc.csv, plus optionally the French
  linguistic variant frFRxxLinguisticVariant.csv) from paths the operator gives; the official
  table is licensed and is never shipped.

Both return the same columns (``LOINC_SCHEMA``). Every loader refuses a malformed code with an
error naming the file and the line, because a bad code in a reference table silently breaks every
mapping that points at it.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import polars as pl

LOINC_PATTERN = r"^[0-9]{1,8}-[0-9]$"
_BODY_WIDTH = 8  # LOINC numbers have at most 6 digits today; leading zeros do not change Luhn

LOINC_SCHEMA = pl.Schema(
    {
        "loinc_num": pl.Utf8(),
        "display_fr": pl.Utf8(),
        "display_en": pl.Utf8(),
        "component_fr": pl.Utf8(),
        "property": pl.Utf8(),  # as given: French variant label, else the official abbreviation
        "system": pl.Utf8(),
        "scale": pl.Utf8(),
        "method": pl.Utf8(),
        "example_ucum_unit": pl.Utf8(),
        "property_class": pl.Utf8(),  # normalised LOINC property (MCNC, SCNC, NCNC...), see below
        "status": pl.Utf8(),  # official STATUS (ACTIVE, DEPRECATED...), null for the shipped subset
    }
)


class LoincFormatError(ValueError):
    """A LOINC table holds a malformed code; the message names file and line."""


def loinc_check_ok(code: str | None) -> bool:
    """True when ``code`` is digits, a dash and the right mod-10 (Luhn) check digit.

    >>> loinc_check_ok("2345-7"), loinc_check_ok("2345-8"), loinc_check_ok("xx625-4")
    (True, False, False)
    """
    if not isinstance(code, str) or re.fullmatch(LOINC_PATTERN, code) is None:
        return False
    body, check = code.split("-")
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:  # rightmost digit of the body is doubled
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return (10 - total % 10) % 10 == int(check)


def loinc_valid_expr(col: str) -> pl.Expr:
    """Vectorised ``loinc_check_ok`` on column ``col``: a boolean, False (never null) for nulls."""
    c = pl.col(col)
    well_formed = c.str.contains(LOINC_PATTERN).fill_null(False)
    body = c.str.split("-").list.first().str.pad_start(_BODY_WIDTH, "0")
    check = c.str.split("-").list.last()
    total = pl.lit(0, dtype=pl.Int32)
    for j in range(_BODY_WIDTH):
        digit = body.str.slice(j, 1).cast(pl.Int32, strict=False)
        if (_BODY_WIDTH - 1 - j) % 2 == 0:  # position counted from the right is even: doubled
            d2 = digit * 2
            digit = pl.when(d2 > 9).then(d2 - 9).otherwise(d2)
        total = total + digit
    ok = ((10 - total % 10) % 10) == check.cast(pl.Int32, strict=False)
    return pl.when(well_formed).then(ok.fill_null(False)).otherwise(False)


# --- property axis -----------------------------------------------------------------------------
# LOINC's PROPERTY axis as the official abbreviation, its English long-name bracket and the French
# linguistic-variant label, normalised to one class code. Only the classes biolake reasons about
# (unit dimension, suggestion) are listed; others keep a null class.
PROPERTY_CLASSES: dict[str, tuple[str, ...]] = {
    "MCNC": ("MCnc", "Mass/volume", "Masse/Volume"),
    "SCNC": ("SCnc", "Moles/volume", "Moles/Volume"),
    "NCNC": ("NCnc", "#/volume", "Nombre/Volume"),
    "CCNC": ("CCnc", "Enzymatic activity/volume", "Catalytique/Volume"),
    "ACNC": ("ACnc", "Units/volume", "Arbitrary concentration", "Unités arbitraires/Volume"),
    "VFR": ("VFr", "Volume Fraction", "Fraction volumique"),
    "MFR": ("MFr", "Mass Fraction", "Fraction massique"),
    "NFR": ("NFr", "Number Fraction", "Fraction de nombres"),
    "SFR": ("SFr", "Moles Fraction", "Fraction molaire"),
    "RATIO": ("Ratio", "Ratio"),
    "MRTO": ("MRto", "Mass Ratio", "Masse ratio", "Ratio massique"),
    "ENTVOL": ("EntVol", "Entitic volume", "Volume d'entité"),
    "ENTMASS": ("EntMass", "Entitic mass", "Masse d'entité"),
    "TIME": ("Time", "Time", "Temps"),
    "RLTM": ("RelTime", "Relative time", "Temps relatif"),
    "ARVRAT": ("ArVRat", "Volume Rate/Area", "Volume arbitraire/Temps"),
    "VRAT": ("VRat", "Volume rate", "Débit volumique"),
    "TITR": ("Titr", "Titer", "Titre"),
    "PRTHR": ("PrThr", "Presence", "Presence or Threshold", "Seuil de présence", "Présence"),
    "PRID": ("Prid", "Identifier", "Identification"),
    "TYPE": ("Type",),
    "SUSC": ("Susc", "Susceptibility", "Sensibilité"),
}
_PROPERTY_LOOKUP: dict[str, str] = {
    label.casefold(): cls for cls, labels in PROPERTY_CLASSES.items() for label in labels
}


def property_class_expr(*cols: str) -> pl.Expr:
    """First of ``cols`` (property labels, or English long names with a ``[bracket]``) that names a
    known LOINC property, as its class code (``MCNC``...); null when none does."""
    candidates = []
    for col in cols:
        raw = pl.col(col)
        bracket = raw.str.extract(r"\[([^\]]+)\]")
        text = pl.coalesce(bracket, raw).str.strip_chars().str.to_lowercase()
        candidates.append(text.replace_strict(_PROPERTY_LOOKUP, default=None, return_dtype=pl.Utf8))
    return pl.coalesce(candidates)


# --- loaders -----------------------------------------------------------------------------------
def _physical_line(path: Path, record_index: int, encoding: str = "utf-8") -> int:
    """Line (1-based) where data record ``record_index`` (0-based, header excluded) starts, exact
    even when quoted fields span lines. Only used on the error path."""
    with path.open(encoding=encoding, newline="") as fh:
        reader = csv.reader(fh)
        start = 1
        for i, _ in enumerate(reader):
            if i == record_index + 1:
                return start
            start = reader.line_num + 1
    return record_index + 2


def _reject_bad_codes(df: pl.DataFrame, col: str, path: Path, what: str) -> None:
    bad = (
        df.with_row_index("_i")
        .filter(~loinc_valid_expr(col))
        .select("_i", col)
        .head(5)
    )
    if bad.height:
        details = "; ".join(
            f"{path}:{_physical_line(path, i)}: {what} {code!r} is not a valid LOINC code"
            f" (digits, dash, mod-10 check digit)"
            for i, code in bad.iter_rows()
        )
        n = df.select((~loinc_valid_expr(col)).sum()).item()
        raise LoincFormatError(f"{n} malformed LOINC code(s): {details}")


def _reject_duplicates(df: pl.DataFrame, path: Path) -> None:
    dup = df.with_row_index("_i").filter(pl.col("loinc_num").is_duplicated()).head(2)
    if dup.height:
        i, code = dup.select("_i", "loinc_num").row(1)
        raise LoincFormatError(f"{path}:{_physical_line(path, i)}: LOINC code {code!r} appears twice")


def _nullify_empty(df: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns(
        [
            pl.col(c).str.strip_chars().replace("", None)
            for c, t in df.schema.items()
            if t == pl.Utf8()
        ]
    )


def load_loinc_seed(path: Path) -> pl.DataFrame:
    """Read the shipped LOINC subset (seeds/reference/loinc.csv) into ``LOINC_SCHEMA``."""
    path = Path(path)
    df = pl.read_csv(path, infer_schema=False, encoding="utf8")
    required = [c for c in LOINC_SCHEMA if c not in ("property_class", "status")]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise LoincFormatError(f"{path}:1: header lacks columns {missing}")
    df = _nullify_empty(df)
    _reject_bad_codes(df, "loinc_num", path, "loinc_num")
    _reject_duplicates(df, path)
    df = df.with_columns(
        property_class=property_class_expr("property", "display_en"),
        status=pl.lit(None, dtype=pl.Utf8),
    )
    return df.select([pl.col(c).cast(t) for c, t in LOINC_SCHEMA.items()])


_OFFICIAL_REQUIRED = (
    "LOINC_NUM", "COMPONENT", "PROPERTY", "TIME_ASPCT", "SYSTEM", "SCALE_TYP", "METHOD_TYP",
    "LONG_COMMON_NAME",
)
_VARIANT_REQUIRED = (
    "LOINC_NUM", "COMPONENT", "PROPERTY", "TIME_ASPCT", "SYSTEM", "SCALE_TYP", "METHOD_TYP",
)


def _read_official_csv(path: Path, required: tuple[str, ...]) -> pl.DataFrame:
    try:
        df = pl.read_csv(path, infer_schema=False, encoding="utf8-lossy", quote_char='"')
    except pl.exceptions.PolarsError as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise LoincFormatError(f"{path}:1: not a CSV file in the official LOINC layout ({first})") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise LoincFormatError(f"{path}:1: not the official LOINC layout, header lacks {missing}")
    df = _nullify_empty(df)
    _reject_bad_codes(df, "LOINC_NUM", path, "LOINC_NUM")
    _reject_duplicates(df.rename({"LOINC_NUM": "loinc_num"}), path)
    return df


def _french_display() -> pl.Expr:
    """'Composant [Grandeur] Milieu ; Échelle ; Technique', the French LOINC display shape."""
    head = pl.concat_str(
        [pl.col("fr_component"), pl.lit(" ["), pl.col("fr_property"), pl.lit("] "), pl.col("fr_system")]
    )
    scale = pl.when(pl.col("fr_scale").is_not_null()).then(pl.lit(" ; ") + pl.col("fr_scale")).otherwise(pl.lit(""))
    method = pl.when(pl.col("fr_method").is_not_null()).then(pl.lit(" ; ") + pl.col("fr_method")).otherwise(pl.lit(""))
    return pl.concat_str([head, scale, method])


def load_official_loinc(loinc_csv: Path, linguistic_variant_csv: Path | None = None) -> pl.DataFrame:
    """Read the official LOINC table (Loinc.csv) and optionally its French linguistic variant.

    ``display_en`` is LONG_COMMON_NAME; ``display_fr`` is the variant's LONG_COMMON_NAME when it
    is French (differs from the English one), else its LinguisticVariantDisplayName, else the parts
    joined as "Composant [Grandeur] Milieu ; Échelle ; Technique". ``property``, ``system``,
    ``scale``, ``method`` and ``component_fr`` come from the variant when given (French labels),
    otherwise from Loinc.csv (English abbreviations) with ``component_fr`` null.
    """
    loinc_csv = Path(loinc_csv)
    main = _read_official_csv(loinc_csv, _OFFICIAL_REQUIRED)
    opt = lambda name: pl.col(name) if name in main.columns else pl.lit(None, dtype=pl.Utf8)  # noqa: E731
    out = main.select(
        loinc_num=pl.col("LOINC_NUM"),
        display_en=pl.col("LONG_COMMON_NAME"),
        en_property=pl.col("PROPERTY"),
        en_system=pl.col("SYSTEM"),
        en_scale=pl.col("SCALE_TYP"),
        en_method=pl.col("METHOD_TYP"),
        example_ucum_unit=opt("EXAMPLE_UCUM_UNITS"),
        status=opt("STATUS"),
    )
    if linguistic_variant_csv is not None:
        linguistic_variant_csv = Path(linguistic_variant_csv)
        fr = _read_official_csv(linguistic_variant_csv, _VARIANT_REQUIRED)
        fopt = lambda name: pl.col(name) if name in fr.columns else pl.lit(None, dtype=pl.Utf8)  # noqa: E731
        fr = fr.select(
            loinc_num=pl.col("LOINC_NUM"),
            fr_component=pl.col("COMPONENT"),
            fr_property=pl.col("PROPERTY"),
            fr_system=pl.col("SYSTEM"),
            fr_scale=pl.col("SCALE_TYP"),
            fr_method=pl.col("METHOD_TYP"),
            fr_long=fopt("LONG_COMMON_NAME"),
            fr_display=fopt("LinguisticVariantDisplayName"),
        )
        out = out.join(fr, on="loinc_num", how="left", maintain_order="left")
        fr_long = pl.when(pl.col("fr_long") != pl.col("display_en")).then(pl.col("fr_long"))
        out = out.with_columns(
            display_fr=pl.coalesce(fr_long, pl.col("fr_display"), _french_display()),
            component_fr=pl.col("fr_component"),
            property=pl.coalesce("fr_property", "en_property"),
            system=pl.coalesce("fr_system", "en_system"),
            scale=pl.coalesce("fr_scale", "en_scale"),
            method=pl.coalesce("fr_method", "en_method"),
        )
    else:
        out = out.with_columns(
            display_fr=pl.lit(None, dtype=pl.Utf8),
            component_fr=pl.lit(None, dtype=pl.Utf8),
            property=pl.col("en_property"),
            system=pl.col("en_system"),
            scale=pl.col("en_scale"),
            method=pl.col("en_method"),
        )
    out = out.with_columns(property_class=property_class_expr("en_property", "property", "display_en"))
    return out.select([pl.col(c).cast(t) for c, t in LOINC_SCHEMA.items()])


# --- the table in use ---------------------------------------------------------------------------
class LoincTableError(LoincFormatError):
    """A configured LOINC file is missing, not a file, or unreadable; the message names it."""


_FRENCH_COLUMNS = ("display_fr", "component_fr", "property", "system", "scale", "method")


def combine_loinc(seed: pl.DataFrame, official: pl.DataFrame) -> pl.DataFrame:
    """The official table completed by the shipped subset (both ``LOINC_SCHEMA``).

    * every code of the official table, with its status, English name and property class;
    * for a code the subset also holds, the French columns (``display_fr``, ``component_fr``,
      ``property``, ``system``, ``scale``, ``method``, taken together) come from the official
      table when it has a French name for it (its French variant was given), else from the subset;
      ``example_ucum_unit`` is the official one, else the subset's;
    * codes of the subset the official table lacks (a release older than the code) are kept, so
      the codes the pipeline relies on (SI-DEP, MDO rules, the demo labs' mappings) never vanish.
    Official codes first, in their order, then the subset's extra codes.
    """
    s = seed.select(list(LOINC_SCHEMA)).rename({c: f"_s_{c}" for c in LOINC_SCHEMA if c != "loinc_num"})
    joined = official.select(list(LOINC_SCHEMA)).join(s, on="loinc_num", how="left", maintain_order="left")
    use_seed_fr = pl.col("display_fr").is_null() & pl.col("_s_display_fr").is_not_null()
    out = joined.with_columns(
        [pl.when(use_seed_fr).then(pl.col(f"_s_{c}")).otherwise(pl.col(c)).alias(c) for c in _FRENCH_COLUMNS]
        + [
            pl.coalesce("display_en", "_s_display_en").alias("display_en"),
            pl.coalesce("example_ucum_unit", "_s_example_ucum_unit").alias("example_ucum_unit"),
            pl.coalesce("property_class", "_s_property_class").alias("property_class"),
        ]
    ).select(list(LOINC_SCHEMA))
    extra = seed.join(official.select("loinc_num"), on="loinc_num", how="anti", maintain_order="left")
    return pl.concat([out, extra.select(list(LOINC_SCHEMA))])


def _check_file(path: Path, setting: str) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise LoincTableError(f"{setting}: {path} does not exist (give the path of the file from the LOINC "
                              "download of loinc.org, e.g. LoincTable/Loinc.csv)")
    if not path.is_file():
        raise LoincTableError(f"{setting}: {path} is not a file (give the CSV file itself, e.g. "
                              "LoincTable/Loinc.csv in the LOINC download)")
    return path


def load_loinc_table(seed_csv: Path, loinc_csv: Path | None = None,
                     linguistic_variant_csv: Path | None = None) -> pl.DataFrame:
    """The LOINC table in use: the shipped subset alone, or the official ``Loinc.csv`` (with its
    French variant when given) completed by the subset (``combine_loinc``). Raises
    ``LoincTableError`` (a ``LoincFormatError``) in one line naming the setting and the file."""
    seed = load_loinc_seed(seed_csv)
    if loinc_csv is None:
        if linguistic_variant_csv is not None:
            raise LoincTableError("BIOLAKE_LOINC_FR_TABLE is set but BIOLAKE_LOINC_TABLE is not: the French "
                                  "linguistic variant only completes the official Loinc.csv; set both")
        return seed
    main = _check_file(loinc_csv, "BIOLAKE_LOINC_TABLE")
    fr = _check_file(linguistic_variant_csv, "BIOLAKE_LOINC_FR_TABLE") if linguistic_variant_csv else None
    try:
        official = load_official_loinc(main, fr)
    except LoincFormatError as err:
        setting = "BIOLAKE_LOINC_FR_TABLE" if fr is not None and str(fr) in str(err) else "BIOLAKE_LOINC_TABLE"
        raise LoincTableError(f"{setting}: {err}") from None
    return combine_loinc(seed, official)
