"""Helpers of the epi tests: run the pipeline's steps without Prefect, read the truth."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl

from flows import publish, steps
from flows.settings import Settings


def run_steps(home: Path, run_id: str = "test-run") -> tuple[steps.Context, dict]:
    """The pipeline of flows/pipeline.py as plain calls (same order, no Prefect): ingest every new
    file, validate, transcode, publish the fact table (the caller runs flows.epi.publish_epi). Returns
    the context and the ref tables."""
    ctx = steps.Context.create(Settings(home=home), run_id)
    ctx.wh.clean_tmp()
    refs = steps.load_ref(ctx)
    loinc, mappings, fingerprint = steps.load_terminology(ctx, refs)
    changed = []
    for t in steps.discover(ctx):
        if t.status == "duplicate":
            steps.log_file(ctx, t, fmt=None, status="duplicate")
            continue
        got = steps.ingest(ctx, t)
        assert "failed" not in got, got
        val = steps.validate(ctx, t, refs["postal_codes"])
        steps.transcode(ctx, t.file_id, loinc, mappings)
        changed.append(t.file_id)
        steps.log_file(ctx, t, fmt=got["format"], status="loaded", rows_in=got["rows_in"],
                       rows_valid=val["rows_valid"], rows_quarantined=val["rows_quarantined"])
    if steps.mappings_changed(ctx, fingerprint):
        steps.save_mappings_fingerprint(ctx, fingerprint)
    publish.publish_fct(ctx, changed)
    return ctx, refs


def copy_home(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def read_truth_sidep(home: Path) -> pl.DataFrame:
    truth = pl.read_csv(home / "truth" / "sidep_daily.csv", separator=";", schema_overrides={"dep": pl.Utf8})
    return truth.with_columns(pl.col("jour").str.to_date())


# --------------------------------------------------------------------------------------------
# an attacker working from the published files only (independent of transforms/epi/suppression)
# --------------------------------------------------------------------------------------------
SEX_PARTS = {"P": ("P_f", "P_h"), "T": ("T_f", "T_h")}


def published_cells(folder: Path, disease: str) -> dict[tuple, int | None]:
    """Every cell of the six SI-DEP files of ``disease``: (level, geo, period, cl_age90, column) ->
    value, None when suppressed. ``period`` is 'j:<jour>' or 's:<semaine>'."""
    cells: dict[tuple, int | None] = {}
    for freq, period_col, prefix in (("quot", "jour", "j"), ("heb", "semaine", "s")):
        for level in ("dep", "reg", "fra"):
            df = pl.read_csv(folder / f"sp-pos-{freq}-{level}-{disease}.csv", separator=";", infer_schema=False)
            measures = [c for c in df.columns if c in ("P_f", "P_h", "P", "T_f", "T_h", "T")]
            long = df.unpivot(measures, index=[level, period_col, "cl_age90"], variable_name="col").select(
                pl.lit(level).alias("level"), pl.col(level).alias("geo"),
                (pl.lit(prefix + ":") + pl.col(period_col)).alias("period"), pl.col("cl_age90").cast(pl.Int64),
                "col", pl.col("value").cast(pl.Int64))
            keys = long.select(pl.exclude("value")).rows()
            cells.update(zip(keys, long["value"].to_list()))
    return cells


def margin_equations(cells: dict[tuple, int | None], dep_reg: dict[str, str], exact_only: bool = False
                     ) -> list[tuple[tuple, list[tuple]]]:
    """(total, parts) equations a reader knows: age classes -> all ages, women + men -> all,
    départements -> région, régions -> France, départements -> France, days -> ISO week.

    The first two hold only approximately (persons of unknown age or sex count in the totals
    only); a cautious publisher assumes the reader takes them as exact. ``exact_only`` keeps the
    exact ones (geography and weeks)."""
    from datetime import date

    eqs = []
    groups: dict[tuple, list[tuple]] = {}
    for c in cells:
        level, geo, period, age, col = c
        if age != 0 and not exact_only:
            groups.setdefault(("age", level, geo, period, col), []).append(c)
    for (_, level, geo, period, col), parts in groups.items():
        eqs.append(((level, geo, period, 0, col), parts))
    for c in cells:
        level, geo, period, age, col = c
        if col in SEX_PARTS and (level, geo, period, age, SEX_PARTS[col][0]) in cells and not exact_only:
            eqs.append((c, [(level, geo, period, age, s) for s in SEX_PARTS[col]]))
    geo_groups: dict[tuple, list[tuple]] = {}
    for c in cells:
        level, geo, period, age, col = c
        if level == "dep":
            geo_groups.setdefault(("reg", dep_reg[geo], period, age, col), []).append(c)
            geo_groups.setdefault(("fra", "FR", period, age, col), []).append(c)
        elif level == "reg":
            geo_groups.setdefault(("fra", "FR", period, age, col, "r"), []).append(c)
    for key, parts in geo_groups.items():
        total = key[:5]
        if total in cells:
            eqs.append((total, parts))
    week_groups: dict[tuple, list[tuple]] = {}
    for c in cells:
        level, geo, period, age, col = c
        if period.startswith("j:"):
            y, w, _ = date.fromisoformat(period[2:]).isocalendar()
            week_groups.setdefault((level, geo, f"s:{y}-S{w:02d}", age, col), []).append(c)
    for total, parts in week_groups.items():
        if total in cells:
            eqs.append((total, parts))
    return eqs


def subtraction_attack(cells: dict[tuple, int | None], eqs) -> dict[tuple, int]:
    """Repeatedly solve any equation with a single unknown (and use what it gives in the next
    ones); returns what was recomputed."""
    value = {c: v for c, v in cells.items() if v is not None}
    by_cell: dict[tuple, list[int]] = {}
    for i, (total, parts) in enumerate(eqs):
        for c in (total, *parts):
            if c not in value:
                by_cell.setdefault(c, []).append(i)
    found: dict[tuple, int] = {}
    todo = [i for i, (total, parts) in enumerate(eqs) if any(c not in value for c in (total, *parts))]
    while todo:
        total, parts = eqs[todo.pop()]
        unknown = [c for c in (total, *parts) if c not in value]
        if len(unknown) != 1:
            continue
        u = unknown[0]
        rest = sum(value[p] for p in parts if p != u)
        value[u] = rest if u == total else value[total] - rest
        found[u] = value[u]
        todo.extend(by_cell.get(u, ()))
    return found


def linear_algebra_attack(cells: dict[tuple, int | None], eqs, tries: int = 2, seed: int = 0) -> set[tuple]:
    """Suppressed cells that the margin equations determine, however they are combined.

    With A the equations restricted to the suppressed cells, cell i is determined iff its unit
    vector lies in A's row space, i.e. iff every null vector of A is zero at i. A random vector r
    minus its projection on the row space (least squares by CGLS, sparse) is a random null vector:
    it is zero (to rounding) exactly at the determined cells. Returns those cells.
    """
    import numpy as np

    hidden = [c for c, v in cells.items() if v is None]
    idx = {c: i for i, c in enumerate(hidden)}
    rows, cols, vals = [], [], []
    r = 0
    for total, parts in eqs:
        hid = [(c, s) for c, s in ((total, 1.0), *((p, -1.0) for p in parts)) if c in idx]
        if hid:
            for c, s in hid:
                rows.append(r)
                cols.append(idx[c])
                vals.append(s)
            r += 1
    if not hidden or r == 0:
        return set(hidden)
    rows_a, cols_a, vals_a = np.array(rows), np.array(cols), np.array(vals)
    n = len(hidden)

    def a_mul(x):
        return np.bincount(rows_a, weights=vals_a * x[cols_a], minlength=r)

    def at_mul(y):
        return np.bincount(cols_a, weights=vals_a * y[rows_a], minlength=n)

    rng = np.random.default_rng(seed)
    free = np.zeros(n)
    for _ in range(tries):
        z = rng.standard_normal(n)
        b = a_mul(z)
        x = np.zeros(n)  # CGLS from 0 stays in the row space: converges to the projection of z
        res = b.copy()
        s = at_mul(res)
        p, gamma = s.copy(), s @ s
        for _ in range(20 * n):
            q = a_mul(p)
            alpha = gamma / (q @ q)
            x += alpha * p
            res -= alpha * q
            s = at_mul(res)
            g2 = s @ s
            if g2 < 1e-26 * max(1.0, b @ b):
                break
            p = s + (g2 / gamma) * p
            gamma = g2
        null = z - x
        assert np.abs(a_mul(null)).max() < 1e-6, "CGLS did not converge"
        free = np.maximum(free, np.abs(null))
    return {c for c, i in idx.items() if free[i] < 1e-6}
