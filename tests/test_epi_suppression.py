"""Disclosure control: small counts hidden, and no hidden cell recomputable from the margins."""

from __future__ import annotations

import random
from itertools import product

import numpy as np
import pytest

from transforms.epi.suppression import DisclosureRule, Tree, margin_attack, suppress


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
    time = Tree({**{d: ("w1" if i < 7 else "w2") for i, d in enumerate(day_ids)}, "w1": None, "w2": None})
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
