"""Units: what labs write -> UCUM, and numeric results -> their LOINC's canonical unit.

Resolution of a written unit (``to_ucum``), in order:
1. normalise the text (Unicode NFKC so 'µ'/'²' become 'μ'/'2', micro signs -> 'u', no spaces);
2. the alias table (seeds/terminology/unit_aliases.csv): ``exact`` rows match case-sensitively
   (needed where case carries meaning: 'G/L' is giga per litre, 'g/L' grams per litre), then
   ``nocase`` rows match case-insensitively;
3. the text itself if it is valid UCUM (checked with the ucumvert parser).
Anything else is unknown (``unit_unknown``); nothing is guessed.

Conversion (``conversion_factor``) uses ucumvert/pint for the arithmetic and refuses what pint
would accept but a lab would not: units built on arbitrary units ([IU], [arb'U]) only convert to
units built on the same ones (except [IU] == U on catalytic-activity tests, the French 'UI' being
the enzyme unit there), mass <-> molar concentration needs the analyte's molar mass
(seeds/terminology/molar_masses.csv), and dimensionless units only convert within one kind of
fraction (``fraction_kind``: mmol/mol is never %, HbA1c IFCC -> NGSP is not a unit change).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import polars as pl

DEFAULT_TERMINOLOGY_DIR = Path(__file__).resolve().parents[2] / "seeds" / "terminology"

# conversion_status values
OK, SAME_UNIT, NO_UNIT, NOT_NUMERIC = "ok", "same_unit", "no_unit", "not_numeric"
UNIT_UNKNOWN, INCOMPATIBLE, NO_MOLAR_MASS = "unit_unknown", "incompatible_dimension", "no_molar_mass"
NO_LOINC, NO_CANONICAL_UNIT = "no_loinc", "no_canonical_unit"
TEXT_ON_QUANTITATIVE = "text_on_quantitative"
CONVERTED = (OK, SAME_UNIT)

CONVERSION_STATUSES: dict[str, str] = {
    OK: "converted to the canonical unit",
    SAME_UNIT: "already in the canonical unit",
    NO_UNIT: "numeric result sent without a unit; value kept",
    NOT_NUMERIC: "not a numeric result: qualitative or text on a test without a canonical unit, or no value at all "
                 "(status X, not obtained, or D)",
    TEXT_ON_QUANTITATIVE: "text where a number was expected: the test has a canonical unit (result and unit "
                          "swapped, '1.234,5', 'NaN', 'non fait'...); no value",
    UNIT_UNKNOWN: "the unit as written is neither a known alias nor valid UCUM; value kept",
    INCOMPATIBLE: "the unit's dimension does not match the canonical unit's; value kept",
    NO_MOLAR_MASS: "mass <-> molar conversion needed but no molar mass for this analyte; value kept",
    NO_LOINC: "no LOINC code (unmapped), so no canonical unit; value kept",
    NO_CANONICAL_UNIT: "the LOINC code has no canonical unit; value kept",
}


@dataclass(frozen=True, eq=False)  # hashed by identity: resolvers are cached per table set
class UnitTables:
    """The seed tables units.py works from (see ``load_unit_tables``)."""

    aliases: pl.DataFrame  # unit_as_written, match (exact|nocase), ucum
    loinc_units: pl.DataFrame  # loinc_num, property_class, canonical_ucum, basis
    molar_masses: pl.DataFrame  # loinc_num, analyte, molar_mass_g_per_mol, formula, source


def load_unit_tables(terminology_dir: Path) -> UnitTables:
    d = Path(terminology_dir)
    read = functools.partial(pl.read_csv, infer_schema=False)
    aliases = read(d / "unit_aliases.csv")
    bad = aliases.filter(~pl.col("match").is_in(["exact", "nocase"]))
    if bad.height:
        raise ValueError(f"{d / 'unit_aliases.csv'}: match must be exact or nocase: {bad.row(0)}")
    masses = read(d / "molar_masses.csv").with_columns(pl.col("molar_mass_g_per_mol").cast(pl.Float64))
    return UnitTables(aliases=aliases, loinc_units=read(d / "loinc_units.csv"), molar_masses=masses)


@functools.cache
def default_unit_tables() -> UnitTables:
    """The tables shipped in the repository's seeds/terminology."""
    return load_unit_tables(DEFAULT_TERMINOLOGY_DIR)


# --- UCUM machinery (ucumvert on a private pint registry) ----------------------------------------
@functools.cache
def _ucum():
    from pint import UnitRegistry
    from ucumvert import UcumToPintTransformer, get_ucum_parser
    import ucumvert

    reg = UnitRegistry()
    reg.load_definitions(Path(ucumvert.__file__).resolve().parent / "pint_ucum_defs.txt")
    return reg, get_ucum_parser(), UcumToPintTransformer(ureg=reg)


_ANNOTATION_ONLY = re.compile(r"^\{[^{}]*\}$")


@functools.lru_cache(maxsize=4096)
def ucum_quantity(code: str):
    """pint Quantity for one UCUM ``code`` (annotation-only codes like {ratio} are unity), or None
    when ``code`` is not valid UCUM."""
    from ucumvert import parse_ucum

    reg, parser, transformer = _ucum()
    if _ANNOTATION_ONLY.match(code) or code == "1":
        return reg.Quantity(1, "")
    try:
        q = transformer.transform(parse_ucum(code, parser))
    except Exception:  # noqa: BLE001 - the parser raises several kinds; all mean "not UCUM"
        return None
    if not hasattr(q, "dimensionality"):
        return None
    return q


def is_valid_ucum(code: str) -> bool:
    return ucum_quantity(code) is not None


def normalise_unit_text(raw: str) -> str:
    text = unicodedata.normalize("NFKC", raw)
    text = text.replace("μ", "u").replace("µ", "u")
    return re.sub(r"\s+", "", text)


class UnitResolver:
    """``resolve(raw) -> UCUM code or None`` from an alias table plus UCUM validation."""

    def __init__(self, aliases: pl.DataFrame):
        self.exact: dict[str, str] = {}
        self.nocase: dict[str, str] = {}
        for written, match, ucum in aliases.select("unit_as_written", "match", "ucum").iter_rows():
            key = normalise_unit_text(written)
            (self.exact if match == "exact" else self.nocase)[key if match == "exact" else key.casefold()] = ucum

    @functools.lru_cache(maxsize=8192)  # noqa: B019 - resolvers live as long as their tables
    def resolve(self, raw: str | None) -> str | None:
        if raw is None:
            return None
        text = normalise_unit_text(raw)
        if not text:
            return None
        if text in self.exact:
            return self.exact[text]
        if text.casefold() in self.nocase:
            return self.nocase[text.casefold()]
        return text if is_valid_ucum(text) else None


@functools.cache
def _resolver_for(tables: UnitTables) -> UnitResolver:
    return UnitResolver(tables.aliases)


def resolver(tables: UnitTables) -> UnitResolver:
    return _resolver_for(tables)


def to_ucum(raw: str | None, tables: UnitTables | None = None) -> str | None:
    return resolver(tables or default_unit_tables()).resolve(raw)


def to_ucum_series(units: pl.Series, tables: UnitTables | None = None) -> pl.Series:
    """Vectorised ``to_ucum``: resolves each distinct value once."""
    r = resolver(tables or default_unit_tables())
    uniq = units.drop_nulls().unique()
    mapping = {u: r.resolve(u) for u in uniq.to_list()}
    return units.replace_strict(mapping, default=None, return_dtype=pl.Utf8)


def unit_match_key(units: pl.Series, tables: UnitTables | None = None) -> pl.Series:
    """Key to compare two written units: their UCUM code when known ('g/l' == 'g/L', 'G/L' ==
    'giga/l' == '10*9/L', but 'G/L' != 'g/L'), else the text without case or spaces."""
    r = resolver(tables or default_unit_tables())
    mapping = {}
    for u in units.drop_nulls().unique().to_list():
        ucum = r.resolve(u)
        text = normalise_unit_text(u).casefold()
        mapping[u] = ucum if ucum is not None else (("?" + text) if text else None)
    return units.cast(pl.Utf8).replace_strict(mapping, default=None, return_dtype=pl.Utf8)


# --- dimensions and factors ----------------------------------------------------------------------
_ARBITRARY = re.compile(r"\[[^\]]*\]")  # [IU], [arb'U], [iU]... (bracketed UCUM atoms)
_ARBITRARY_ATOMS = {"[IU]", "[iU]", "[arb'U]", "[U]", "[APL'U]", "[GPL'U]", "[MPL'U]", "[USP'U]"}


_EQUIVALENTS = re.compile(r"(?:^|[./(])(?:[munpk]?)eq(?=$|[./)0-9])")


def _arbitrary_atoms(code: str) -> frozenset[str]:
    """Atoms a unit is built on that pint would convert but a lab must not: arbitrary units, and
    equivalents (pint makes 1 eq = 1 mol, wrong for divalent ions such as Mg2+ or Ca2+)."""
    atoms = {a for a in _ARBITRARY.findall(code) if a in _ARBITRARY_ATOMS}
    if _EQUIVALENTS.search(code):
        atoms.add("eq")
    return frozenset("[IU]" if a == "[iU]" else a for a in atoms)


def dimension_of(code: str | None) -> str | None:
    """Readable dimension of a UCUM code ('[mass] / [length] ** 3'), arbitrary atoms appended."""
    if code is None:
        return None
    q = ucum_quantity(code)
    if q is None:
        return None
    dim = str(q.dimensionality)
    atoms = _arbitrary_atoms(code)
    return dim + ("" if not atoms else " " + "".join(sorted(atoms)))


# Reference units of each LOINC property class: a unit fits the class when it has the dimension
# (and the arbitrary atoms) of one of them. Used by suggestion and by the seed builder.
PROPERTY_UNITS: dict[str, tuple[str, ...]] = {
    "MCNC": ("g/L",),
    "SCNC": ("mol/L",),
    "NCNC": ("/L",),
    "CCNC": ("U/L", "[IU]/L"),
    "ACNC": ("[IU]/L", "[arb'U]/L", "/L"),
    "VFR": ("1",),
    "MFR": ("1",),
    "NFR": ("1",),
    "SFR": ("1",),
    "RATIO": ("1",),
    "MRTO": ("1",),
    "RLTM": ("1",),
    "ENTVOL": ("L",),
    "ENTMASS": ("g",),
    "TIME": ("s",),
    "ARVRAT": ("L/s",),
    "VRAT": ("L/s",),
}


@functools.cache
def property_dimensions(property_class: str) -> frozenset[str]:
    return frozenset(dimension_of(u) for u in PROPERTY_UNITS.get(property_class, ()))


# --- kinds of fraction ---------------------------------------------------------------------------
# pint reduces mol/mol, g/g, L/L and % alike to "dimensionless", yet 48 mmol/mol of HbA1c (IFCC,
# a substance fraction) is not 4.8 % (NGSP, a mass-fraction scale). A dimensionless unit built on
# moles, grams or litres is a fraction of that kind; %, 1, 10*-3, {ratio} are generic and fit any.
_FRACTION_KINDS = {"[substance]": "substance", "[mass]": "mass", "[length] ** 3": "volume"}
# Explicit kinds each fraction class of LOINC accepts (generic units always fit). A number fraction
# accepts a substance fraction: an amount of substance counts entities. RATIO and RLTM: any kind.
PROPERTY_FRACTION_KINDS: dict[str, frozenset[str]] = {
    "MFR": frozenset({"mass"}),
    "MRTO": frozenset({"mass"}),
    "SFR": frozenset({"substance"}),
    "VFR": frozenset({"volume"}),
    "NFR": frozenset({"substance"}),
}
_ANNOTATIONS = re.compile(r"\{[^{}]*\}")


@functools.lru_cache(maxsize=4096)
def fraction_kind(code: str | None) -> str | None:
    """Kind of fraction a dimensionless UCUM code expresses: 'substance' (mol/mol, mmol/mol),
    'mass' (g/g, mg/g), 'volume' (L/L, mL/dL), another dimension's text (s/s), or 'mixed' when its
    atoms mix kinds; None for a generic unit (%, 1, 10*-3, {ratio}) and for a code that is not a
    dimensionless UCUM unit."""
    if code is None:
        return None
    q = ucum_quantity(code)
    if q is None or not q.dimensionless:
        return None
    kinds = set()
    for atom in re.split(r"[./()]", _ANNOTATIONS.sub("", code)):
        qa = ucum_quantity(atom) if atom else None
        if qa is None or qa.dimensionless:
            continue
        dim = str(qa.dimensionality).lstrip("1/ ")  # L-1 counts as a volume like L
        kinds.add(_FRACTION_KINDS.get(dim, dim))
    if not kinds:
        return None
    return kinds.pop() if len(kinds) == 1 else "mixed"


def fraction_kinds_compatible(src: str | None, dst: str | None, property_class: str | None = None) -> bool:
    """May a value in the dimensionless unit ``src`` be stated in ``dst`` on a code of
    ``property_class``? Only within one kind of fraction (generic units fit any), and never in a
    kind the property class excludes (a substance fraction on a mass-fraction code)."""
    kinds = {k for k in (fraction_kind(src), fraction_kind(dst)) if k is not None}
    if len(kinds) > 1 or "mixed" in kinds:
        return False
    allowed = PROPERTY_FRACTION_KINDS.get(property_class or "")
    return allowed is None or kinds <= allowed


def unit_fits_property(code: str | None, property_class: str | None) -> bool | None:
    """True/False when both are known, None when either is unknown. Mass and molar concentration
    count as fitting each other (convertible with a molar mass)."""
    dim = dimension_of(code)
    if dim is None or property_class not in PROPERTY_UNITS:
        return None
    allowed = set(property_dimensions(property_class))
    if property_class in ("MCNC", "SCNC"):
        allowed |= property_dimensions("MCNC") | property_dimensions("SCNC")
    if dim in allowed and property_class in PROPERTY_FRACTION_KINDS:
        return fraction_kinds_compatible(code, None, property_class)
    return dim in allowed


def _round_factor(x: float) -> float:
    return float(f"{x:.12g}")  # pint's float arithmetic leaves 0.9999999999999999


def conversion_factor(
    src: str | None,
    dst: str | None,
    molar_mass_g_per_mol: float | None = None,
    property_class: str | None = None,
) -> tuple[float | None, str]:
    """Factor f such that value_in_dst = value_in_src * f, with a status from CONVERSION_STATUSES.

    ``src`` and ``dst`` are UCUM codes. ``property_class`` 'CCNC' allows [IU] == U.
    """
    if dst is None:
        return None, NO_CANONICAL_UNIT
    if src is None:
        return None, UNIT_UNKNOWN
    if src == dst:
        return 1.0, SAME_UNIT
    if property_class == "CCNC":
        src, dst = (re.sub(r"\[i?IU\]", "U", c) for c in (src, dst))
        if src == dst:
            return 1.0, OK
    q_src, q_dst = ucum_quantity(src), ucum_quantity(dst)
    if q_src is None:
        return None, UNIT_UNKNOWN
    if q_dst is None:
        return None, NO_CANONICAL_UNIT
    if _arbitrary_atoms(src) != _arbitrary_atoms(dst):
        return None, INCOMPATIBLE
    if q_src.dimensionless and q_dst.dimensionless and not fraction_kinds_compatible(src, dst, property_class):
        return None, INCOMPATIBLE
    if q_src.dimensionality == q_dst.dimensionality:
        return _round_factor((q_src / q_dst).to("dimensionless").magnitude), OK
    reg = _ucum()[0]
    mass = reg.Quantity(1, "gram / liter").dimensionality
    molar = reg.Quantity(1, "mole / liter").dimensionality
    dims = {q_src.dimensionality, q_dst.dimensionality}
    if dims == {mass, molar}:
        if not molar_mass_g_per_mol:
            return None, NO_MOLAR_MASS
        mw = reg.Quantity(molar_mass_g_per_mol, "gram / mole")
        ratio = q_src / mw / q_dst if q_src.dimensionality == mass else q_src * mw / q_dst
        return _round_factor(ratio.to("dimensionless").magnitude), OK
    return None, INCOMPATIBLE


# --- frames ----------------------------------------------------------------------------------------
def loinc_unit_table(loinc: pl.DataFrame, tables: UnitTables) -> pl.DataFrame:
    """Per LOINC code: property_class, canonical_ucum, molar mass. The seed table
    (loinc_units.csv) wins; codes it lacks fall back on the LOINC table's example_ucum_unit when
    that is valid UCUM fitting the property."""
    base = loinc.select(
        "loinc_num",
        pl.col("property_class").alias("_pc"),
        pl.col("example_ucum_unit").alias("_ex"),
    )
    lu = tables.loinc_units.select("loinc_num", "property_class", "canonical_ucum")
    out = base.join(lu, on="loinc_num", how="full", coalesce=True)
    pairs = out.select("_pc", "_ex").unique().drop_nulls("_ex")
    fits = pl.DataFrame(
        [
            (pc, ex, bool(unit_fits_property(ex, pc)) if pc else is_valid_ucum(ex))
            for pc, ex in pairs.iter_rows()
        ],
        schema={"_pc": pl.Utf8, "_ex": pl.Utf8, "_fits": pl.Boolean},
        orient="row",
    )
    out = out.join(fits, on=["_pc", "_ex"], how="left", nulls_equal=True)
    out = out.with_columns(
        property_class=pl.coalesce("property_class", "_pc"),
        canonical_ucum=pl.coalesce("canonical_ucum", pl.when(pl.col("_fits")).then(pl.col("_ex"))),
    )
    masses = tables.molar_masses.select("loinc_num", "molar_mass_g_per_mol").unique("loinc_num", keep="first")
    out = out.join(masses, on="loinc_num", how="left")
    return out.select("loinc_num", "property_class", "canonical_ucum", "molar_mass_g_per_mol")


@functools.lru_cache(maxsize=16384)
def _cached_factor(
    src: str | None, dst: str | None, molar_mass_g_per_mol: float | None, property_class: str | None
) -> tuple[float | None, str]:
    """``conversion_factor`` memoised: it is a pure function of its arguments, and transcoding
    meets the same few (unit, canonical unit) pairs in every file."""
    return conversion_factor(src, dst, molar_mass_g_per_mol, property_class)


def conversion_factors(keys: pl.DataFrame, per_code: pl.DataFrame) -> pl.DataFrame:
    """Factor and status for each distinct (``_loinc``, ``unit_ucum``) row of ``keys``.

    ``per_code`` is ``loinc_unit_table`` with ``loinc_num`` renamed ``_loinc``. Returns _loinc,
    unit_ucum, _canon, _f, _status (null _loinc: status no_loinc).
    """
    keys = keys.join(per_code, on="_loinc", how="left")
    rows = []
    for code, ucum, pc, canon, mw in keys.select(
        "_loinc", "unit_ucum", "property_class", "canonical_ucum", "molar_mass_g_per_mol"
    ).iter_rows():
        if code is None:
            f, status = None, NO_LOINC
        else:
            f, status = _cached_factor(ucum, canon, mw, pc)
        rows.append((code, ucum, canon, f, status))
    return pl.DataFrame(
        rows,
        schema={"_loinc": pl.Utf8, "unit_ucum": pl.Utf8, "_canon": pl.Utf8, "_f": pl.Float64, "_status": pl.Utf8},
        orient="row",
    )


def conversion_columns() -> dict[str, pl.Expr]:
    """value_canonical, unit_canonical and conversion_status from value_num, unit_raw, unit_ucum
    and the _loinc, _canon, _f, _status columns a join on ``conversion_factors`` adds."""
    numeric = pl.col("value_num").is_not_null()
    converted = pl.col("_f").is_not_null()
    no_unit = pl.col("unit_raw").is_null() | (pl.col("unit_raw").str.strip_chars() == "")
    status = (
        pl.when(~numeric & pl.col("_canon").is_not_null()).then(pl.lit(TEXT_ON_QUANTITATIVE))
        .when(~numeric).then(pl.lit(NOT_NUMERIC))
        .when(converted).then(pl.col("_status"))
        .when(no_unit & pl.col("_loinc").is_not_null()).then(pl.lit(NO_UNIT))
        .otherwise(pl.col("_status"))
    )
    kept_unit = pl.coalesce("unit_ucum", pl.col("unit_raw"))
    return {
        "value_canonical": pl.when(~numeric).then(None)
        .when(converted).then(pl.col("value_num") * pl.col("_f"))
        .otherwise(pl.col("value_num")),
        "unit_canonical": pl.when(~numeric).then(None).when(converted).then(pl.col("_canon")).otherwise(kept_unit),
        "conversion_status": status,
    }


def convert_units(
    df: pl.DataFrame,
    loinc: pl.DataFrame,
    tables: UnitTables | None = None,
    *,
    loinc_col: str = "loinc_code",
) -> pl.DataFrame:
    """Add unit_ucum, value_canonical, unit_canonical, conversion_status (row order kept).

    A value that cannot be converted keeps its value and unit (value_canonical = value_num,
    unit_canonical = its UCUM unit, or the unit as written when unknown) and the status says why;
    only 'ok' and 'same_unit' rows are in the LOINC's canonical unit.
    """
    tables = tables or default_unit_tables()
    df = df.with_columns(unit_ucum=to_ucum_series(df["unit_raw"], tables))
    per_code = loinc_unit_table(loinc, tables).rename({"loinc_num": "_loinc"})
    factors = conversion_factors(df.select(pl.col(loinc_col).alias("_loinc"), "unit_ucum").unique(), per_code)
    out = df.with_columns(pl.col(loinc_col).alias("_loinc")).join(
        factors, on=["_loinc", "unit_ucum"], how="left", nulls_equal=True, maintain_order="left"
    )
    out = out.with_columns(**conversion_columns())
    return out.drop("_loinc", "_canon", "_f", "_status")


def conversion_coverage(df: pl.DataFrame) -> pl.DataFrame:
    """Per source: numeric results, how many reached the canonical unit, share, and the count of
    each failure reason (columns named after the status)."""
    numeric = df.filter(pl.col("conversion_status") != NOT_NUMERIC)
    base = numeric.group_by("source").agg(
        n_numeric=pl.len(),
        n_converted=pl.col("conversion_status").is_in(list(CONVERTED)).sum(),
    )
    reasons = (
        numeric.filter(~pl.col("conversion_status").is_in(list(CONVERTED)))
        .group_by("source", "conversion_status")
        .len()
        .pivot(on="conversion_status", index="source", values="len")
    )
    out = base.join(reasons, on="source", how="left").with_columns(
        share_converted=(pl.col("n_converted") / pl.col("n_numeric")).round(4)
    )
    fill = [c for c in out.columns if c not in ("source", "n_numeric", "n_converted", "share_converted")]
    out = out.with_columns([pl.col(c).fill_null(0).cast(pl.UInt32) for c in fill])
    return out.select("source", "n_numeric", "n_converted", "share_converted", *sorted(fill)).sort("source")
