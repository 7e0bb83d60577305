"""Disclosure control of the counts a report shows, with the exports' rules.

The report's counts form a *cube*: one coordinate per dimension (geography, age class, sex, time),
each dimension a tree whose nodes are the sums of their children (départements -> France, age
classes -> all ages, women + men (+ unknown) -> all, days -> ISO week). A cell is *published* when
the report prints it (or something it can be recomputed from, like T behind a positivity).

:func:`hidden_cells` returns the published cells to hide: counts from 1 to 10 (primary
suppression; zeros are shown) and the cells that would let a reader recompute one of them from
the totals (secondary suppression). It uses ``transforms.epi.suppression`` (the hypercube method
the exports use, so the report and the published files follow one rule); when that module is not
there it falls back to :func:`local_hidden_cells`, a simpler rule: along every equation
"node = sum of children", never exactly one hidden cell.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping

MAX_HIDDEN = 10
HIDDEN_LABEL = "s"  # what a hidden count shows ("secret statistique"): nothing about its value
HIDDEN_NOTE = ("s = not shown: a small count (the rule below says which), or a count that would let a reader "
               "recompute one from the totals (statistical secrecy)")

Cell = tuple


def primary(value: int | None) -> bool:
    """True when a count must be hidden by itself."""
    return value is not None and 1 <= value <= MAX_HIDDEN


def rule_text() -> str:
    """The rule in words, as the exports state it when they can."""
    try:
        from transforms.epi.suppression import DisclosureRule

        return DisclosureRule(threshold=MAX_HIDDEN).describe()
    except ImportError:
        return (f"counts from 1 to {MAX_HIDDEN} are not shown; secondary suppression so that no hidden "
                "count can be recomputed from a single total")


def hidden_cells(values: Mapping[Cell, int], published: set[Cell],
                 parents: tuple[Mapping[Hashable, Hashable | None], ...]) -> set[Cell]:
    """The published cells of one cube to hide.

    ``values``: the count of every published cell, and of the other cells of the cube where known
    (absent cells count as zero, the cautious reading: a hidden cell whose hypercube meets a zero
    can move one way only, so the suppression may hide more); ``published``: the cells the report
    shows; ``parents``: per dimension, each node's parent (None for a root).
    """
    try:
        from transforms.epi.suppression import DisclosureRule, Tree, suppress
    except ImportError:
        return local_hidden_cells(values, published, parents)
    dims = tuple(Tree(p) for p in parents)
    first, second = suppress({c: v for c, v in values.items() if v}, dims, lambda c: c in published,
                             DisclosureRule(threshold=MAX_HIDDEN))
    return (first | second) & published


def _equations(cells: Iterable[Cell], parents: tuple[Mapping, ...]) -> list[list[Cell]]:
    """Every "node = sum of children" equation touching ``cells``, as [total, *parts]."""
    children = []
    for p in parents:
        kids: dict = {}
        for node, par in p.items():
            if par is not None:
                kids.setdefault(par, []).append(node)
        children.append(kids)
    eqs, seen = [], set()
    for c in cells:
        for d, p in enumerate(parents):
            for node in (p.get(c[d]), c[d]):  # the equation of its parent, and its own
                if node is None or node not in children[d] or (d, node, c[:d] + c[d + 1:]) in seen:
                    continue
                seen.add((d, node, c[:d] + c[d + 1:]))
                total = c[:d] + (node,) + c[d + 1:]
                eqs.append([total, *[c[:d] + (k,) + c[d + 1:] for k in children[d][node]]])
    return eqs


def local_hidden_cells(values: Mapping[Cell, int], published: set[Cell],
                       parents: tuple[Mapping[Hashable, Hashable | None], ...]) -> set[Cell]:
    """Fallback rule: primary cells, then along every equation whose cells are all known to the
    reader (published or primary), never exactly one hidden cell: the smallest other positive
    published cell of that equation is hidden too, until nothing changes."""
    hidden = {c for c in published if primary(values.get(c, 0))}
    eqs = [e for e in _equations(published, parents) if all(c in published for c in e)]
    changed = True
    while changed:
        changed = False
        for eq in eqs:
            if sum(c in hidden for c in eq) != 1:
                continue
            others = [c for c in eq if c not in hidden and values.get(c, 0) > 0]
            if others:
                hidden.add(min(others, key=lambda c: (values.get(c, 0), str(c))))
                changed = True
    return hidden
