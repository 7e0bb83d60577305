"""Load the committed seeds the generator needs (never ../shared)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from . import vocab
from .units import factor_for

SEEDS_DIR = Path(__file__).resolve().parents[2] / "seeds"
REFERENCE_DIR = SEEDS_DIR / "reference"
CL_AGE90 = (9, 19, 29, 39, 49, 59, 69, 79, 89, 90)


def _csv(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, infer_schema=False, encoding="utf8")


@dataclass(frozen=True)
class Lab:
    index: int
    source: str
    finess: str
    name: str
    encoding: str
    date_style: str  # "dmy" | "compact"
    decimal: str


@dataclass
class Seeds:
    catalog: pl.DataFrame  # tests_catalog.csv, typed, with column "test" = row index
    labs: list[Lab]
    mappings: dict[str, pl.DataFrame]  # raw mapping rows per source
    lab_tests: pl.DataFrame  # one row per (lab, test) the lab performs (open mapping rows)
    mapped_codes: dict[str, frozenset[str]]  # every local code in a lab's mapping file
    departements: list[str]  # where residents are drawn: is_com = no, sorted as strings
    sidep_geography: list[str]  # the truth's SI-DEP grid: those and the COM with a population (975, 977, 978)
    pop: np.ndarray  # (n_dep, 10) population by département and age class (cl_age90 != 0)
    dep_communes: list[np.ndarray]  # per département: row indices into communes
    communes: pl.DataFrame
    postal_dep: pl.DataFrame  # postal_code -> dep_code


def load_seeds(seeds_dir: Path = SEEDS_DIR) -> Seeds:
    ref = seeds_dir / "reference"
    cat = _csv(seeds_dir / "tests_catalog.csv").with_row_index("test").with_columns(
        pl.col("test").cast(pl.Int32),
        pl.col("mean").cast(pl.Float64, strict=False),
        pl.col("sd").cast(pl.Float64, strict=False),
        pl.col("decimals").cast(pl.Int32, strict=False),
    )
    labs_df = _csv(seeds_dir / "labs.csv")
    labs = [Lab(i, r["source"], r["finess"], r["name"], r["encoding"], r["date_style"], r["decimal"])
            for i, r in enumerate(labs_df.iter_rows(named=True))]
    by_loinc = {r["loinc_num"]: r for r in cat.iter_rows(named=True)}
    mappings: dict[str, pl.DataFrame] = {}
    lab_rows = []
    mapped_codes = {}
    for lab in labs:
        m = _csv(seeds_dir / "mappings" / f"{lab.source}.csv").fill_null("")
        mappings[lab.source] = m
        mapped_codes[lab.source] = frozenset(m["local_code"].to_list())
        for r in m.filter(pl.col("valid_to") == "").iter_rows(named=True):
            t = by_loinc.get(r["loinc_num"])
            if t is None:
                raise ValueError(f"{lab.source}: {r['local_code']} maps to {r['loinc_num']}, not in the catalog")
            if t["kind"] == "num":
                factor, dec = factor_for(t["test_key"], t["canonical_unit"], r["unit"])
                dec = t["decimals"] if dec is None else dec
            else:
                factor, dec = 1.0, 0
            lab_rows.append({"lab": lab.index, "test": t["test"], "code": r["local_code"],
                             "label": r["local_label"], "unit": r["unit"], "factor": factor, "dec": dec})
        for code, *_ in vocab.UNMAPPED[lab.source]:
            if code in mapped_codes[lab.source]:
                raise ValueError(f"{lab.source}: unmapped test code {code} is in the mapping")
    lab_tests = pl.DataFrame(lab_rows, schema={"lab": pl.Int32, "test": pl.Int32, "code": pl.Utf8,
                                               "label": pl.Utf8, "unit": pl.Utf8, "factor": pl.Float64,
                                               "dec": pl.Int32})
    if lab_tests.select(pl.struct("lab", "test").is_duplicated().any()).item():
        raise ValueError("a lab maps one catalog test with two open mapping rows")

    deps_all = _csv(ref / "departements.csv")
    departements = sorted(deps_all.filter(pl.col("is_com") == "no")["dep_code"].to_list())
    pop_df = _csv(ref / "population.csv").with_columns(pl.col("cl_age90").cast(pl.Int32),
                                                       pl.col("pop").cast(pl.Float64))
    with_pop = set(pop_df["dep_code"].to_list())
    sidep_geography = sorted(set(departements) | (set(deps_all["dep_code"].to_list()) & with_pop))
    pop = np.zeros((len(departements), len(CL_AGE90)))
    dep_pos = {d: i for i, d in enumerate(departements)}
    cl_pos = {c: i for i, c in enumerate(CL_AGE90)}
    for d, c, p in pop_df.iter_rows():
        if d in dep_pos and c in cl_pos:
            pop[dep_pos[d], cl_pos[c]] = p
    communes = _csv(ref / "communes.csv").filter(pl.col("dep_code").is_in(departements))
    codes = communes["dep_code"].to_numpy()
    dep_communes = [np.flatnonzero(codes == d) for d in departements]
    if any(len(x) == 0 for x in dep_communes) or (pop.sum(axis=1) == 0).any():
        raise ValueError("a département has no commune or no population")
    postal_dep = _csv(ref / "postal_codes.csv").select("postal_code", "dep_code")
    return Seeds(cat, labs, mappings, lab_tests, mapped_codes, departements, sidep_geography, pop, dep_communes,
                 communes, postal_dep)
