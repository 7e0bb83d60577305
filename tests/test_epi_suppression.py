"""Disclosure control: small counts hidden, and no hidden cell recomputable from the margins."""

from __future__ import annotations

import random
from itertools import product

import numpy as np
import pytest

from transforms.epi.suppression import DisclosureRule, Tree, check_protection, margin_attack, suppress


def leaves(tree: Tree, node):
    kids = tree.children.get(node)
    return [node] if not kids else [x for k in kids for x in leaves(tree, k)]


def build_cube(seed: int, n_dep: int = 14, per_reg: int = 4, days: int = 10):
    """A dep -> reg -> FR x age -> all x day -> week cube whose every cell is the sum of its leaves."""
    rng = random.Random(seed)
    deps = {f"d{i:02d}": f"r{i // per_reg}" for i in range(n_dep)}
    geo = Tree({**deps, **{r: "FR" for r in set(deps.values())}, "FR": None})
    age = Tree({**{a: 0 for a in (9, 19, 29, 39)}, 0: None})
    day_ids = [f"j{i:02d}" for i in range(days)]
    time = Tree({**{d: f"w{i // 7 + 1}" for i, d in enumerate(day_ids)}, **{f"w{i // 7 + 1}": None for i in range(days)}})
    dims = (geo, age, time)
    leaf = {c: rng.choice([0, 0, 0, 1, 2, 3, 5, 8, 12, 15, 20, 40]) for c in product(deps, (9, 19, 29, 39), day_ids)}
    cells = {}
    for c in product(*(t.parent for t in dims)):
        cells[c] = sum(leaf[x] for x in product(*(leaves(t, n) for t, n in zip(dims, c))))
    return dims, cells


def equations(dims, cells):
    for c in cells:
        for d, tree in enumerate(dims):
            if tree.children.get(c[d]):
                yield c, [c[:d] + (k,) + c[d + 1:] for k in tree.children[c[d]]]


def determined(dims, cells, hidden) -> set:
    """Exact null-space test (dense): hidden cells the equations determine, combined in any way."""
    idx = {c: i for i, c in enumerate(sorted(hidden, key=str))}
    rows = []
    for total, parts in equations(dims, cells):
        row = np.zeros(len(idx))
        for c, s in [(total, 1.0), *((p, -1.0) for p in parts)]:
            if c in idx:
                row[idx[c]] += s
        if row.any():
            rows.append(row)
    if not rows:
        return set(hidden)
    a = np.array(rows)
    w, v = np.linalg.eigh(a.T @ a)
    null = v[:, w < 1e-9 * max(1.0, w.max())]
    return {c for c, i in idx.items() if not null.size or np.linalg.norm(null[i]) < 1e-7}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_suppressed_cell_can_be_recomputed_from_the_margins(seed):
    dims, cells = build_cube(seed)
    values = {c: v for c, v in cells.items() if v}
    rule = DisclosureRule()
    primary, secondary = suppress(values, dims, lambda c: True, rule)
    assert primary == {c for c, v in cells.items() if 1 <= v <= 10}
    assert primary and secondary and not primary & secondary
    hidden = primary | secondary
    known = {c: v for c, v in cells.items() if c not in hidden}
    assert margin_attack(known, hidden, dims, lambda c: True) == {}
    assert determined(dims, cells, hidden) == set()
    assert all(cells[c] > 10 or cells[c] == 0 for c in cells if c not in hidden)


def test_the_attack_works_when_only_small_counts_are_hidden():
    dims, cells = build_cube(5)
    values = {c: v for c, v in cells.items() if v}
    primary, secondary = suppress(values, dims, lambda c: True, DisclosureRule(secondary="none"))
    assert secondary == set()
    known = {c: v for c, v in cells.items() if c not in primary}
    found = margin_attack(known, primary, dims, lambda c: True)
    assert len(found) > 10 and all(cells[c] == v for c, v in found.items())
    assert set(found) <= determined(dims, cells, primary)


def test_unpublished_cells_are_free_but_equations_still_bind():
    """Régions unpublished (as in the MDO files): a hidden département is protected by another
    département anywhere, and France equal to one département is hidden with it."""
    deps = {"d1": "r1", "d2": "r1", "d3": "r2", "d4": "r3"}
    geo = Tree({**deps, "r1": "FR", "r2": "FR", "r3": "FR", "FR": None})
    week = Tree({"w": None})
    cells = {("d1", "w"): 0, ("d2", "w"): 0, ("d3", "w"): 3, ("d4", "w"): 40, ("r1", "w"): 0, ("r2", "w"): 3,
             ("r3", "w"): 40, ("FR", "w"): 43}
    published = lambda c: not c[0].startswith("r")  # noqa: E731
    primary, secondary = suppress({c: v for c, v in cells.items() if v}, (geo, week), published, DisclosureRule())
    assert primary == {("d3", "w")} and len(secondary) == 1
    hidden = primary | secondary | {c for c in cells if not published(c)}
    assert determined((geo, week), cells, hidden) & set(filter(published, cells)) == set()


def test_threshold_and_minimum_are_configurable_and_zeros_are_published():
    dims, cells = build_cube(7)
    values = {c: v for c, v in cells.items() if v}
    primary, _ = suppress(values, dims, lambda c: True, DisclosureRule(threshold=3))
    assert primary == {c for c, v in cells.items() if 1 <= v <= 3}
    primary, _ = suppress(values, dims, lambda c: True, DisclosureRule(threshold=5, min_count=2))
    assert primary == {c for c, v in cells.items() if 2 <= v <= 5}
    with pytest.raises(ValueError):
        DisclosureRule(min_count=0)
    with pytest.raises(ValueError):
        DisclosureRule(threshold=5, min_count=6)
    assert "from 2 to 5" in DisclosureRule(threshold=5, min_count=2).describe()


def test_every_candidate_side_is_balanced():
    dims, _ = build_cube(1)
    for tree in dims:
        for node in tree.parent:
            for v in tree.vectors(node, lambda n: 0.0):
                assert v[node] == 1 and tree.balanced(v), (node, v)


def lp_range(dims, cells, hidden, target, published=lambda c: True) -> tuple[float, float]:
    """What a reader who knows that counts are never negative can say of a hidden cell: its least
    and greatest value over every table consistent with the published cells (a linear program,
    scipy's HiGHS). Unpublished cells are unknown to the reader too."""
    from scipy.optimize import linprog

    unknown = sorted({c for c in cells if c in hidden or not published(c)}, key=str)
    idx = {c: i for i, c in enumerate(unknown)}
    rows, rhs = [], []
    for total, parts in equations(dims, cells):
        row, const = np.zeros(len(idx)), 0.0
        for c, s in [(total, 1.0), *((q, -1.0) for q in parts)]:
            if c in idx:
                row[idx[c]] += s
            else:
                const += s * cells.get(c, 0)
        if row.any():
            rows.append(row)
            rhs.append(-const)
    goal = np.zeros(len(idx))
    goal[idx[target]] = 1.0
    lo = linprog(goal, A_eq=np.array(rows), b_eq=rhs, bounds=(0, None), method="highs")
    hi = linprog(-goal, A_eq=np.array(rows), b_eq=rhs, bounds=(0, None), method="highs")
    assert lo.status == 0 and hi.status == 0, (lo.message, hi.message)
    return lo.fun, -hi.fun


def sidep_like_cube(leaf: dict) -> tuple[tuple, dict]:
    """geography FR -> région 84 -> départements 01, 69 x age 0 -> 19, 39, 59 x week -> day x
    sex all -> f, h, every cell the sum of its leaves ``leaf[(dep, age, sex)]`` (one day)."""
    geo = Tree({"dep:01": "reg:84", "dep:69": "reg:84", "reg:84": "fra:FR", "fra:FR": None})
    age = Tree({0: None, 19: 0, 39: 0, 59: 0})
    time = Tree({"s:2026-S04": None, "j:2026-01-19": "s:2026-S04"})
    sex = Tree({"all": None, "f": "all", "h": "all"})
    dims = (geo, age, time, sex)
    cells = {}
    for c in product(*(t.parent for t in dims)):
        cells[c] = sum(leaf.get((g, a, s), 0) for g in leaves(geo, c[0]) for a in leaves(age, c[1])
                       for s in leaves(sex, c[3]))
    return dims, cells


def test_zero_corners_cannot_pin_a_suppressed_cell():
    """QA's attack on an issue (the SI-DEP national file, 2026-01-19): one man aged 50 positive among
    27 positives aged 35. The hypercube then chosen hid P_h(50-59) with the empty class 10-19 of
    both sexes as corners: zeros, which cannot go below 0, pinned the cell to 1 for a linear
    program although no equation gives it. No primary cell may be pinned: each can be at least one
    more or one less in a table consistent with everything published."""
    dims, cells = sidep_like_cube({("dep:69", 39, "f"): 7, ("dep:69", 39, "h"): 7, ("dep:69", 59, "h"): 1,
                                   ("dep:01", 39, "f"): 6, ("dep:01", 39, "h"): 6})
    published = lambda c: not (c[0].startswith("dep:") and c[3] != "all")  # noqa: E731 (as the exports)
    values = {c: v for c, v in cells.items() if v}
    proofs: dict = {}
    primary, secondary = suppress(values, dims, published, DisclosureRule(), proofs)
    assert ("fra:FR", 59, "j:2026-01-19", "h") in primary
    hidden = primary | secondary
    assert check_protection(values, hidden, dims, published, proofs, primary) == {}
    for p in primary:
        lo, hi = lp_range(dims, cells, hidden, p, published)
        assert hi - lo >= 1 - 1e-6, (p, cells[p], lo, hi)


@pytest.mark.parametrize("seed", [1, 2])
def test_no_suppressed_cell_can_be_bracketed_to_its_value(seed):
    """Against a reader using non-negativity too (a linear program over every equation): no primary
    cell of a random cube is pinned, and most can move both ways."""
    dims, cells = build_cube(seed, n_dep=8, days=8)
    values = {c: v for c, v in cells.items() if v}
    proofs: dict = {}
    primary, secondary = suppress(values, dims, lambda c: True, DisclosureRule(), proofs)
    hidden = primary | secondary
    assert check_protection(values, hidden, dims, lambda c: True, proofs, primary) == {}
    two_sided = 0
    for p in sorted(primary, key=str):
        lo, hi = lp_range(dims, cells, hidden, p)
        assert hi - lo >= 1 - 1e-6, (p, cells[p], lo, hi)
        two_sided += lo <= cells[p] - 1 + 1e-6 and hi >= cells[p] + 1 - 1e-6
    assert two_sided > len(primary) / 2


def test_a_broken_proof_is_reported():
    dims, cells = sidep_like_cube({("dep:69", 59, "h"): 1, ("dep:69", 39, "f"): 30, ("dep:69", 39, "h"): 30})
    values = {c: v for c, v in cells.items() if v}
    proofs: dict = {}
    primary, secondary = suppress(values, dims, lambda c: True, DisclosureRule(), proofs)
    p = ("dep:69", 59, "j:2026-01-19", "h")
    hidden = primary | secondary
    assert check_protection(values, hidden, dims, lambda c: True, proofs, primary) == {}
    shown = next(c for c, _ in proofs[p] if c != p)
    assert "is published" in check_protection(values, hidden - {shown}, dims, lambda c: True, proofs, {p})[p]
    lopsided = {p: [(c, s) for c, s in proofs[p] if c != shown]}
    assert "not balanced" in check_protection(values, hidden, dims, lambda c: True, lopsided, {p})[p]
    zero = dict(values)
    for c, _ in proofs[p]:
        if c != p:
            zero[c] = 0
    assert "pinned" in check_protection(zero, hidden, dims, lambda c: True, proofs, {p})[p]


# ------------------------------------------------------------------------------------------------
# week by week (exports.suppress_by_week) and its cache
# ------------------------------------------------------------------------------------------------
def whole_cube(values, dims, published, rule):
    """The suppression and audit of the whole cube at once (what suppress_sidep did before)."""
    from transforms.epi.exports import disclosure_audit

    proofs: dict = {}
    primary, secondary = suppress(values, dims, published, rule, proofs)
    return primary, secondary, disclosure_audit(values, primary, secondary, dims, published, proofs, rule)


class DictCache:
    def __init__(self):
        self.rows: dict = {}
        self.computed: list = []

    def get(self, label, week, digest):
        got = self.rows.get((label, week))
        if got is None or got[0] != digest:
            self.computed.append(week)
            return None
        return got[1], got[2]

    def put(self, label, week, digest, primary, secondary):
        self.rows[(label, week)] = (digest, set(primary), set(secondary))


RULES = [DisclosureRule(), DisclosureRule(threshold=5), DisclosureRule(threshold=12, min_count=2),
         DisclosureRule(candidates_per_dimension=3), DisclosureRule(secondary="none")]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_week_by_week_equals_the_whole_cube(seed):
    """The time dimension is a forest (a root per week): every equation lies within a week, so the
    union of the weeks' suppressions is exactly the whole cube's (primary, secondary, audit)."""
    from transforms.epi.exports import suppress_by_week

    dims, cells = build_cube(seed, days=21)
    values = {c: v for c, v in cells.items() if v}
    published = lambda c: not (c[0].startswith("r") and c[1] == 9)  # noqa: E731  (some cells unpublished)
    for rule in RULES:
        whole = whole_cube(values, dims, published, rule)
        assert whole[0] and (whole[1] or rule.secondary == "none")
        assert suppress_by_week(values, dims, 2, published, rule) == whole, rule


def test_the_week_cache_recomputes_only_the_weeks_whose_cells_changed():
    from transforms.epi.exports import suppress_by_week

    dims, cells = build_cube(4, days=14)
    values = {c: v for c, v in cells.items() if v}
    rule = DisclosureRule()
    cache = DictCache()
    first = suppress_by_week(values, dims, 2, lambda c: True, rule, cache, ("sidep", "x", "P"))
    assert sorted(cache.computed) == ["w1", "w2"] and len(cache.rows) == 2
    assert first == whole_cube(values, dims, lambda c: True, rule)
    cache.computed.clear()
    assert suppress_by_week(values, dims, 2, lambda c: True, rule, cache, ("sidep", "x", "P")) == first
    assert cache.computed == []  # nothing changed: no week computed
    # one count of the second week changes: that week alone is computed again, and the result is
    # the whole cube's of the new values
    changed = dict(values)
    c = next(c for c, v in sorted(values.items(), key=str) if c[2] == "j09" and v > 10)
    changed[c] = values[c] + 1
    got = suppress_by_week(changed, dims, 2, lambda c: True, rule, cache, ("sidep", "x", "P"))
    assert cache.computed == ["w2"]
    assert got == whole_cube(changed, dims, lambda c: True, rule)
    # another rule or another cube is another key
    cache.computed.clear()
    suppress_by_week(values, dims, 2, lambda c: True, DisclosureRule(threshold=5), cache, ("sidep", "x", "P"))
    assert sorted(cache.computed) == ["w1", "w2"]


@pytest.mark.parametrize("option", ["--threshold", "--min-count"])
def test_an_explicit_zero_is_refused_not_replaced_by_the_default(tmp_path, option):
    """QA F5: `epi export --threshold 0` (or --min-count 0) published with the default, 10 (or 1),
    without a word; BIOLAKE_SUPPRESSION_THRESHOLD=0 is refused. The option is refused the same way,
    before anything is read or written."""
    from typer.testing import CliRunner

    from flows.epi import epi_app

    res = CliRunner().invoke(epi_app, ["export", "--home", str(tmp_path / "home"), "--issue-date", "2026-11-13",
                                       option, "0"])
    assert res.exit_code == 2
    assert f"{option} 0: Input should be greater than or equal to 1" in res.output
    assert not (tmp_path / "home" / "publication").exists()
