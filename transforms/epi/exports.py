"""Published files in the Santé publique France open-data shapes, with disclosure control.

Shapes (``;``-separated, UTF-8, one header row, ``\\n`` line ends, suppressed cells empty):

| file | columns |
|---|---|
| sp-pos-quot-dep-<disease>.csv | dep;jour;P;T;cl_age90;pop |
| sp-pos-quot-reg-<disease>.csv | reg;jour;P_f;P_h;P;T_f;T_h;T;cl_age90;pop |
| sp-pos-quot-fra-<disease>.csv | fra;jour;P_f;P_h;P;T_f;T_h;T;cl_age90;pop |
| sp-pos-heb-dep-<disease>.csv | dep;semaine;P;T;cl_age90;pop |
| sp-pos-heb-reg-<disease>.csv | reg;semaine;P_f;P_h;P;T_f;T_h;T;cl_age90;pop |
| sp-pos-heb-fra-<disease>.csv | fra;semaine;P_f;P_h;P;T_f;T_h;T;cl_age90;pop |
| mdo-heb-dep.csv | dep;semaine;mdo;cas |
| mdo-heb-fra.csv | fra;semaine;mdo;cas |

``jour`` is ISO (2026-11-02), ``semaine`` the ISO week as SpF wrote it (2026-S45), ``cl_age90``
as in SpF files (0 all ages, 09, 19, ... 89, 90), ``pop`` the population, ``fra`` = FR.

All files of one disease are suppressed together (one cube, see suppression.py) because they are
linked by sums; the MDO files are another cube per disease. A disease published as SI-DEP
indicators is left out of the MDO files (its new cases are the SI-DEP P: publishing both would
give the hidden cells away).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import polars as pl

from transforms.epi.indicators import COUNTS, FRA
from transforms.epi.suppression import DisclosureRule, Tree, check_protection, margin_attack, suppress

SEX_OF = {"P_f": ("P", "f"), "P_h": ("P", "h"), "P": ("P", "all"),
          "T_f": ("T", "f"), "T_h": ("T", "h"), "T": ("T", "all")}
FORMULA_PATTERN = r"^[=+\-@\t\r]"


@dataclass
class PublishedFile:
    name: str
    frame: pl.DataFrame  # as written (suppressed cells null)
    dataset: str  # sidep | mdo
    disease: str
    level: str
    frequency: str  # daily | weekly
    period_col: str
    cells_primary: int = 0
    cells_secondary: int = 0
    meta: dict = field(default_factory=dict)

    @property
    def period(self) -> tuple[str | None, str | None]:
        col = self.frame[self.period_col].cast(pl.Utf8)
        return (col.min(), col.max()) if self.frame.height else (None, None)


# --------------------------------------------------------------------------------------------
# cells
# --------------------------------------------------------------------------------------------
def neutralise_formulas(df: pl.DataFrame) -> pl.DataFrame:
    """Text cells starting with = + - @ (or a tab / carriage return) get a leading apostrophe, so a
    spreadsheet shows them as text instead of running them. Numeric columns are left alone: -3 is a
    number."""
    text = [c for c, t in df.schema.items() if t == pl.Utf8]
    return df.with_columns(
        pl.when(pl.col(c).str.contains(FORMULA_PATTERN)).then(pl.lit("'") + pl.col(c)).otherwise(pl.col(c)).alias(c)
        for c in text
    )


def age_label(col: str = "cl_age90") -> pl.Expr:
    """0 stays 0; classes are written on two digits (09, 19, ...) as in SpF's files."""
    return pl.when(pl.col(col) == 0).then(pl.lit("0")).otherwise(pl.col(col).cast(pl.Utf8).str.zfill(2)).alias(col)


def pop_column(df: pl.DataFrame) -> pl.Expr:
    pop = df["pop"].drop_nulls()
    integral = pop.len() == 0 or bool((pop == pop.round(0)).all())
    return pl.col("pop").round(0).cast(pl.Int64) if integral else pl.col("pop")


def csv_bytes(df: pl.DataFrame) -> bytes:
    return neutralise_formulas(df).write_csv(separator=";", line_terminator="\n", null_value="").encode("utf-8")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------
# SI-DEP: the cube of one disease and its six files
# --------------------------------------------------------------------------------------------
def geo_tree(geo: pl.DataFrame) -> Tree:
    parent: dict = {f"fra:{FRA}": None}
    for reg in geo["reg"].unique().to_list():
        parent[f"reg:{reg}"] = f"fra:{FRA}"
    for dep, reg in geo.select("dep", "reg").iter_rows():
        parent[f"dep:{dep}"] = f"reg:{reg}"
    return Tree(parent)


def age_tree(classes) -> Tree:
    return Tree({0: None, **{c: 0 for c in classes if c != 0}})


def time_tree(days) -> Tree:
    parent: dict = {}
    for d in days:
        y, w, _ = d.isocalendar()
        week = f"s:{y}-S{w:02d}"
        parent[week] = None
        parent[f"j:{d.isoformat()}"] = week
    return Tree(parent)


SEX_TREE = Tree({"all": None, "f": "all", "h": "all"})


def _sidep_published(cell) -> bool:
    return not (cell[0].startswith("dep:") and cell[3] != "all")


def sidep_cube_values(daily: dict[str, pl.DataFrame], weekly: pl.DataFrame) -> dict[str, dict]:
    """{'P': {cell: value}, 'T': {...}}: the non-zero cells of every level, the unpublished ones
    (départements by sex) included: the suppression needs their true values to know how far a
    hypercube can move."""
    values: dict[str, dict] = {"P": {}, "T": {}}

    def add(df: pl.DataFrame, geo_col: str, level: str, time_col: str, prefix: str):
        for col in COUNTS:
            fam, sex = SEX_OF[col]
            if col not in df.columns:
                continue
            nz = df.filter(pl.col(col) > 0).select(geo_col, "cl_age90", time_col, col)
            for g, a, t, v in nz.iter_rows():
                key_t = f"{prefix}:{t.isoformat() if prefix == 'j' else t}"
                values[fam][(f"{level}:{g}", a, key_t, sex)] = v

    for level in ("dep", "reg", "fra"):
        add(daily[level], level, level, "jour", "j")
        add(weekly.filter(pl.col("level") == level), "geo", level, "semaine", "s")
    return values


def suppress_sidep(daily: dict[str, pl.DataFrame], weekly: pl.DataFrame, geo: pl.DataFrame,
                   rule: DisclosureRule, cache: WeekCache | None = None, disease: str = "") -> dict:
    """Suppressed cells of one disease: {'P': (primary, secondary, exposed), 'T': ...}, where
    ``exposed`` is the audit (:func:`disclosure_audit`): the hidden cells a reader could pin.

    Computed week by week (:func:`suppress_by_week`, the same cells as the whole cube at once);
    ``cache``: the weeks already computed (keyed by ``disease``, the family and the week)."""
    days = sorted(daily["dep"]["jour"].unique().to_list())
    classes = sorted(daily["dep"]["cl_age90"].unique().to_list())
    dims = (geo_tree(geo), age_tree(classes), time_tree(days), SEX_TREE)
    out = {}
    for fam, values in sidep_cube_values(daily, weekly).items():
        out[fam] = suppress_by_week(values, dims, 2, _sidep_published, rule, cache, ("sidep", disease, fam))
    return out


def disclosure_audit(values: dict, primary: set, secondary: set, dims: tuple[Tree, ...], published,
                     proofs: dict, rule: DisclosureRule) -> dict:
    """The hidden cells of one cube a reader could pin, with how: recomputed by subtraction along
    the totals (``margin_attack``, the value), or a primary cell whose hypercube does not prove it
    protected once counts are known to be >= 0 (``check_protection``, the reason). Empty when the
    issue may be published; with ``secondary="none"`` the subtraction alone is reported."""
    hidden = primary | secondary
    if not hidden:
        return {}
    known = {c: v for c, v in values.items() if c not in hidden and published(c)}
    exposed: dict = margin_attack(known, hidden, dims, published)
    if rule.secondary != "none":
        exposed.update(check_protection(values, hidden, dims, published, proofs, primary))
    return exposed


# --------------------------------------------------------------------------------------------
# week by week, with a cache of the weeks already computed
# --------------------------------------------------------------------------------------------
# The time dimension of every cube is a forest: each ISO week is a root (days below it for SI-DEP,
# alone for MDO), with no total across weeks. Every equation "node = sum of children" therefore
# lies within one week, and so does every hypercube (in the time tree a side stays under its root)
# and every subtraction of the audit: the suppression of the cube is the union of the suppressions
# of its weeks, each computed from that week's cells alone (suppress() takes the primary cells in
# a fixed order, and its costs and tie-breaks read only cells of the primary's own week). The tests
# check the equality against the whole cube on generated data. A week whose cells, rule,
# dimensions and code did not change has the same suppression: the cache keeps it.
SUPPRESSION_VERSION = "1"  # bump when suppress(), disclosure_audit() or the cubes' shapes change


class WeekCache(Protocol):
    """Suppression of weeks already computed: only cell keys (never counts) and a digest."""

    def get(self, label: tuple, week: str, digest: str) -> tuple[set, set] | None: ...

    def put(self, label: tuple, week: str, digest: str, primary: set, secondary: set) -> None: ...


def _root(tree: Tree, node) -> object:
    while tree.parent[node] is not None:
        node = tree.parent[node]
    return node


def _tree_signature(tree: Tree, under=None) -> list:
    """The tree's (node, parent) pairs in canonical order; ``under``: only that root and its descendants."""
    if under is None:
        nodes = list(tree.parent)
    else:
        nodes, todo = [], [under]
        while todo:
            nodes.append(todo.pop())
            todo += tree.children.get(nodes[-1], [])
    return sorted((repr(n), repr(tree.parent[n])) for n in nodes)


def week_digest(values: dict, dims: tuple[Tree, ...], t: int, week, rule: DisclosureRule,
                label: tuple, others: list | None = None) -> str:
    """What one week's suppression depends on: the code version, the cube (``label``: dataset,
    disease, family), the rule, the other dimensions, the week's own days, and its cells with their counts in
    canonical order (hashed, never stored)."""
    if others is None:
        others = [_tree_signature(tree) for d, tree in enumerate(dims) if d != t]
    doc = [SUPPRESSION_VERSION, list(label), sorted(rule.as_dict().items()), others,
           _tree_signature(dims[t], week), sorted((repr(c), v) for c, v in values.items())]
    return hashlib.sha256(json.dumps(doc, default=str).encode()).hexdigest()


def suppress_by_week(values: dict, dims: tuple[Tree, ...], t: int, published: Callable, rule: DisclosureRule,
                     cache: WeekCache | None = None, label: tuple = ("", "", "")
                     ) -> tuple[set, set, dict]:
    """``suppress`` and ``disclosure_audit`` of a cube whose dimension ``t`` (time) has one root per
    week, one week at a time: (primary, secondary, exposed), equal to the whole cube's.

    ``cache``: a week found there with the same digest (:func:`week_digest`) is taken from it; a week
    computed is put there when its audit is clean (a week with exposed cells is recomputed every
    time: the audit's recovered values are counts, which the cache never holds)."""
    by_week: dict = {}
    for c, v in values.items():
        by_week.setdefault(_root(dims[t], c[t]), {})[c] = v
    others = [_tree_signature(tree) for d, tree in enumerate(dims) if d != t] if cache is not None else None
    primary: set = set()
    secondary: set = set()
    exposed: dict = {}
    for week in sorted(by_week, key=str):
        sub = by_week[week]
        digest = week_digest(sub, dims, t, week, rule, label, others) if cache is not None else ""
        got = cache.get(label, str(week), digest) if cache is not None else None
        if got is None:
            proofs: dict = {}
            p, s = suppress(sub, dims, published, rule, proofs)
            e = disclosure_audit(sub, p, s, dims, published, proofs, rule)
            if cache is not None and not e:
                cache.put(label, str(week), digest, p, s)
            exposed.update(e)
        else:
            p, s = got
        primary |= p
        secondary |= s
    return primary, secondary, exposed


def _blank(df: pl.DataFrame, geo_col: str, level: str, time_col: str, prefix: str, hidden: dict
           ) -> tuple[pl.DataFrame, int, int]:
    """Null the suppressed cells of one file; returns the frame and its primary/secondary counts."""
    n_prim = n_sec = 0
    exprs = []
    for col in [c for c in COUNTS if c in df.columns]:
        fam, sex = SEX_OF[col]
        primary, secondary, _ = hidden[fam]
        rows = [(g[len(level) + 1:], a, t[2:], kind)
                for kind, cells in (("p", primary), ("s", secondary))
                for g, a, t, s in cells
                if s == sex and g.startswith(level + ":") and t.startswith(prefix + ":")]
        if not rows:
            continue
        flags = pl.DataFrame(rows, schema={geo_col: pl.Utf8, "cl_age90": pl.Int64, "_t": pl.Utf8, "_k": pl.Utf8},
                             orient="row")
        joined = df.select(geo_col, "cl_age90", pl.col(time_col).cast(pl.Utf8).alias("_t")).join(
            flags, on=[geo_col, "cl_age90", "_t"], how="left", maintain_order="left")["_k"]
        n_prim += int((joined == "p").sum())
        n_sec += int((joined == "s").sum())
        exprs.append(pl.when(joined.is_null()).then(pl.col(col)).otherwise(None).alias(col))
    return (df.with_columns(exprs) if exprs else df), n_prim, n_sec


def sidep_files(disease: str, daily: dict[str, pl.DataFrame], weekly: pl.DataFrame, hidden: dict,
                weeks: set[str] | None = None) -> list[PublishedFile]:
    """The six SpF files of one test definition; ``weeks``: the weeks the weekly files keep (the
    complete ones), all when None. Leaving cells out never weakens the suppression."""
    if weeks is not None:
        weekly = weekly.filter(pl.col("semaine").is_in(sorted(weeks)))
    files = []
    for freq, prefix, time_col in (("daily", "j", "jour"), ("weekly", "s", "semaine")):
        for level in ("dep", "reg", "fra"):
            if freq == "daily":
                df = daily[level]
            else:
                df = weekly.filter(pl.col("level") == level).rename({"geo": level})
            counts = ["P", "T"] if level == "dep" else list(COUNTS)
            df = df.sort(level, time_col, "cl_age90").select(level, time_col, *counts, "cl_age90", "pop")
            df, n_p, n_s = _blank(df, level, level, time_col, prefix, hidden)
            out = df.with_columns(
                pl.col(time_col).cast(pl.Utf8), age_label(), pop_column(df),
            ).select(level, time_col, *counts, "cl_age90", "pop")
            name = f"sp-pos-{'quot' if freq == 'daily' else 'heb'}-{level}-{disease}.csv"
            files.append(PublishedFile(name, out, "sidep", disease, level, freq, time_col, n_p, n_s))
    return files


# --------------------------------------------------------------------------------------------
# MDO: weekly new cases by département and France, one cube per disease
# --------------------------------------------------------------------------------------------
def _mdo_published(cell) -> bool:
    return not cell[0].startswith("reg:")


def suppress_mdo(weekly: pl.DataFrame, geo: pl.DataFrame, rule: DisclosureRule, cache: WeekCache | None = None
                 ) -> tuple[pl.DataFrame, dict]:
    """The suppressed cells of the MDO cubes (one per disease, every week of ``weekly``: rows
    mdo_id, semaine, dep, cases) as rows mdo_id, _level ('dep' | 'fra'), _geo, semaine, _k ('p'
    primary | 's' secondary), and the audit per disease (hidden cells a reader could pin).
    Computed week by week (every week is a root of the time dimension), ``cache`` as for SI-DEP."""
    fra = weekly.group_by("mdo_id", "semaine").agg(pl.col("cases").sum()).with_columns(pl.lit(FRA).alias("fra"))
    gtree = geo_tree(geo)
    weeks = sorted(weekly["semaine"].unique().to_list())
    ttree = Tree({f"s:{w}": None for w in weeks})
    hidden_rows = []
    audit = {}
    for mdo_id in sorted(weekly["mdo_id"].unique().to_list()):
        values: dict = {}
        for level, df, col in (("dep", weekly, "dep"), ("fra", fra, "fra")):
            for g, w, v in df.filter((pl.col("mdo_id") == mdo_id) & (pl.col("cases") > 0)).select(
                    col, "semaine", "cases").iter_rows():
                values[(f"{level}:{g}", f"s:{w}")] = v
        for (g, w), v in list(values.items()):  # the régions (unpublished): their true counts
            if g.startswith("dep:"):
                reg = (gtree.parent[g], w)
                values[reg] = values.get(reg, 0) + v
        primary, secondary, exposed = suppress_by_week(values, (gtree, ttree), 1, _mdo_published, rule, cache,
                                                       ("mdo", mdo_id, "cases"))
        audit[mdo_id] = len(exposed)
        for kind, cells in (("p", primary), ("s", secondary)):
            hidden_rows += [(mdo_id, g.split(":", 1)[0], g.split(":", 1)[1], w[2:], kind) for g, w in cells]
    flags = pl.DataFrame(hidden_rows, schema={"mdo_id": pl.Utf8, "_level": pl.Utf8, "_geo": pl.Utf8,
                                              "semaine": pl.Utf8, "_k": pl.Utf8}, orient="row")
    return flags, audit


def mdo_files(weekly: pl.DataFrame, flags: pl.DataFrame, keep_weeks: set[str] | None = None
              ) -> list[PublishedFile]:
    """mdo-heb-dep.csv and mdo-heb-fra.csv from marts.mdo_weekly rows (mdo_id, semaine, dep, cases)
    and their suppressed cells (``suppress_mdo``); ``keep_weeks``: the weeks the files keep (the
    complete ones; the suppression sees every week)."""
    fra = weekly.group_by("mdo_id", "semaine").agg(pl.col("cases").sum()).with_columns(pl.lit(FRA).alias("fra"))
    files = []
    for level, df in (("dep", weekly), ("fra", fra)):
        f = flags.filter(pl.col("_level") == level).select("mdo_id", pl.col("_geo").alias(level), "semaine", "_k")
        if keep_weeks is not None:
            df = df.filter(pl.col("semaine").is_in(sorted(keep_weeks)))
        j = df.join(f, on=["mdo_id", level, "semaine"], how="left").sort(level, "semaine", "mdo_id")
        out = j.select(level, "semaine", pl.col("mdo_id").alias("mdo"),
                       pl.when(pl.col("_k").is_null()).then(pl.col("cases")).otherwise(None).alias("cas"))
        files.append(PublishedFile(f"mdo-heb-{level}.csv", out, "mdo", "*", level, "weekly", "semaine",
                                   int((j["_k"] == "p").sum()), int((j["_k"] == "s").sum())))
    return files


# --------------------------------------------------------------------------------------------
# comparing two issues
# --------------------------------------------------------------------------------------------
MEASURES = frozenset({*COUNTS, "pop", "cas"})


def compare_frames(file: str, before: pl.DataFrame | None, after: pl.DataFrame | None) -> pl.DataFrame:
    """Long table of the cells that differ between two issues of one file (all read as text):
    file, key (the row's non-measure columns), column, before, after, change. ``change`` tells
    what an empty value means: ``new row`` / ``row removed`` (the row is in one issue only),
    ``now suppressed`` / ``no longer suppressed``, else ``revised``."""
    schema = {"file": pl.Utf8, "key": pl.Utf8, "column": pl.Utf8, "before": pl.Utf8, "after": pl.Utf8,
              "change": pl.Utf8}
    frames = [f for f in (before, after) if f is not None]
    if not frames:
        return pl.DataFrame(schema=schema)
    cols = frames[0].columns
    keys = [c for c in cols if c not in MEASURES]
    measures = [c for c in cols if c in MEASURES]
    empty = pl.DataFrame(schema={c: pl.Utf8 for c in cols})
    a = (before if before is not None else empty).with_columns(pl.lit(True).alias("_in_before"))
    b = (after if after is not None else empty).with_columns(pl.lit(True).alias("_in_after"))
    j = a.join(b, on=keys, how="full", coalesce=True, nulls_equal=True, suffix="__after")
    key_expr = pl.concat_str([pl.lit(f"{k}=") + pl.col(k).fill_null("") for k in keys], separator=" ")
    parts = []
    for m in measures:
        x, y = pl.col(m), pl.col(f"{m}__after")
        change = (pl.when(pl.col("_in_before").is_null()).then(pl.lit("new row"))
                  .when(pl.col("_in_after").is_null()).then(pl.lit("row removed"))
                  .when(y.is_null()).then(pl.lit("now suppressed"))
                  .when(x.is_null()).then(pl.lit("no longer suppressed"))
                  .otherwise(pl.lit("revised")))
        diff = j.filter(~x.eq_missing(y)).select(
            pl.lit(file).alias("file"), key_expr.alias("key"), pl.lit(m).alias("column"),
            x.alias("before"), y.alias("after"), change.alias("change"))
        parts.append(diff)
    return pl.concat(parts).sort("file", "key", "column") if parts else pl.DataFrame(schema=schema)
