"""Disclosure control of published counts: primary and secondary cell suppression.

Published tables are linked by exact sums: the age classes add up to the all-ages row, the
départements to their région and to France, the days to their ISO week, women + men to all. A
reader who knows one hidden cell's margin and the other cells can subtract: suppressing the small
counts alone (primary suppression) does not protect them.

The model: a *cube* of cells, one coordinate per dimension (geography, age class, time, sex...),
each dimension a tree (a node is the sum of its children). Every published file is a slice of the
cube; cells of the cube that no file publishes are unknown to a reader too. The reader's equations
are "node = sum of children" along each dimension, the other coordinates fixed.

Secondary suppression uses the hypercube method: for each primary cell not yet protected, pick in
every dimension a small set of nodes with signs (+1 / -1) that is balanced (each node's sign equals
the sum of its children's signs: two siblings +1/-1, a node and its parent +1/+1, ...); the
product of these sets is a hypercube of cells whose signed indicator satisfies every equation of
the cube. Once all its published corners are suppressed, adding any multiple of that vector to the
hidden values keeps every published number unchanged, so none of its corners can be recomputed
from the margins, however the equations are combined. Among the candidate hypercubes, the one
hiding the least (sum of the values of the newly suppressed cells) is chosen.

The guarantee is against exact recomputation (the rule the manifest states). It does not bound
how narrowly a reader can bracket a hidden value using non-negativity.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
import heapq
from dataclasses import asdict, dataclass
from itertools import product

Node = Hashable
Cell = tuple


@dataclass(frozen=True)
class DisclosureRule:
    """Counts from ``min_count`` to ``threshold`` (inclusive) are suppressed; zeros are published."""

    threshold: int = 10
    min_count: int = 1
    secondary: str = "hypercube"  # "hypercube", or "none" (primary only: never for publication)
    candidates_per_dimension: int = 2

    def __post_init__(self):
        if self.min_count < 1 or self.threshold < self.min_count:
            raise ValueError("disclosure rule: need 1 <= min_count <= threshold")
        if self.secondary not in ("hypercube", "none"):
            raise ValueError("disclosure rule: secondary must be 'hypercube' or 'none'")

    def sensitive(self, value: int) -> bool:
        return self.min_count <= value <= self.threshold

    def describe(self) -> str:
        text = f"counts from {self.min_count} to {self.threshold} are suppressed (empty cell)"
        if self.secondary == "hypercube":
            text += ("; secondary suppression (hypercube method) so that no suppressed cell can be "
                     "recomputed from the published totals: age classes -> all ages (cl_age90 = 0), "
                     "départements -> régions -> France, days -> ISO week, women + men -> all")
        return text

    def as_dict(self) -> dict:
        return asdict(self)


class Tree:
    """One dimension: each node with its parent (None for a root); a node is the sum of its children."""

    def __init__(self, parent: Mapping[Node, Node | None]):
        self.parent = dict(parent)
        self.children: dict[Node, list[Node]] = {}
        for node, par in self.parent.items():
            if par is not None:
                if par not in self.parent:
                    raise ValueError(f"parent {par!r} of {node!r} is not a node")
                self.children.setdefault(par, []).append(node)
        for kids in self.children.values():
            kids.sort(key=str)

    def ancestors(self, x: Node) -> list[Node]:
        out, p = [], self.parent[x]
        while p is not None:
            out.append(p)
            p = self.parent[p]
        return out

    def _down(self, x: Node, sign: int, cost: Callable[[Node], float]) -> dict[Node, int]:
        """Signs making an internal node balanced: its cheapest child, then that child's, to a leaf."""
        out: dict[Node, int] = {}
        while self.children.get(x):
            x = min(self.children[x], key=lambda c: (cost(c), str(c)))
            out[x] = sign
        return out

    def vectors(self, x: Node, cost: Callable[[Node], float]) -> list[dict[Node, int]]:
        """Balanced signed node sets containing ``x`` with sign +1 (candidates for a hypercube side)."""
        down_x = self._down(x, 1, cost)
        par = self.parent[x]
        if par is None:
            return [{x: 1, **down_x}]
        opts = []
        for y in self.children[par]:  # a sibling with the opposite sign
            if y != x:
                opts.append({x: 1, y: -1, **down_x, **self._down(y, -1, cost)})
        opts.append({x: 1, **{a: 1 for a in self.ancestors(x)}, **down_x})  # up to the root
        grand = self.parent[par]
        if grand is not None:  # a cousin: x, its parent +1; an uncle and its cheapest child -1
            for uncle in self.children[grand]:
                if uncle == par or not self.children.get(uncle):
                    continue
                y = min(self.children[uncle], key=lambda c: (cost(c), str(c)))
                opts.append({x: 1, par: 1, uncle: -1, y: -1, **down_x, **self._down(y, -1, cost)})
        return opts

    def balanced(self, v: Mapping[Node, int]) -> bool:
        """Each internal node's sign equals the sum of its children's (used by tests)."""
        return all(v.get(n, 0) == sum(v.get(c, 0) for c in kids) for n, kids in self.children.items())


def suppress(values: Mapping[Cell, int], dims: tuple[Tree, ...], published: Callable[[Cell], bool],
             rule: DisclosureRule) -> tuple[set[Cell], set[Cell]]:
    """Primary and secondary suppressed cells of one cube.

    ``values``: count of every non-zero cell (missing cells are zero); ``published``: whether a
    cell appears in a published file (unpublished cells are hidden anyway and cost nothing).
    """
    primary = {c for c, v in values.items() if v and rule.sensitive(v) and published(c)}
    if rule.secondary == "none":
        return primary, set()
    hidden = set(primary)
    covered: set[Cell] = set()

    def cost(c: Cell) -> float:
        if c in hidden or not published(c):
            return 0.0
        v = values.get(c, 0)
        return float(v) if v else 0.5

    for p in sorted(primary, key=lambda c: tuple(map(str, c))):
        if p in covered:
            continue
        for corner in _cheapest_hypercube(p, dims, cost, rule.candidates_per_dimension):
            covered.add(corner)
            if published(corner):
                hidden.add(corner)
    return primary, hidden - primary


def _cheapest_hypercube(p: Cell, dims: tuple[Tree, ...], cost: Callable[[Cell], float], k: int) -> list[Cell]:
    sides = []
    for d, tree in enumerate(dims):
        memo: dict = {}

        def edge(node, d=d, memo=memo):
            if node not in memo:
                memo[node] = cost(p[:d] + (node,) + p[d + 1:])
            return memo[node]

        opts = tree.vectors(p[d], edge)
        # the k sides hiding least along this dimension alone (ties: enumeration order, deterministic)
        scored = [(sum(edge(n) for n in v if n != p[d]), len(v), i) for i, v in enumerate(opts)]
        sides.append([opts[i] for _, _, i in heapq.nsmallest(k, scored)])
    best: tuple[float, list[Cell]] | None = None
    for combo in product(*sides):
        corners = list(product(*[list(v) for v in combo]))
        total = sum(cost(c) for c in corners)
        if best is None or total < best[0]:
            best = (total, corners)
    assert best is not None
    return best[1]


def margin_attack(known: Mapping[Cell, int], hidden: set[Cell], dims: tuple[Tree, ...],
                  exists: Callable[[Cell], bool]) -> dict[Cell, int]:
    """What a reader recomputes by repeated subtraction: any equation "node = sum of children" with
    exactly one hidden cell gives it; the recovered cell then helps the next equation.

    ``known`` holds the published values (zero cells included or not: missing known cells count as
    zero), ``hidden`` the suppressed cells; ``exists`` says whether a cell is published at all
    (equations touching an unpublished cell are unusable). Returns the recovered cells.
    """
    equations = _equations(set(known) | hidden, dims, exists)
    unknown = set(hidden)
    value = {c: v for c, v in known.items() if c not in hidden}
    recovered: dict[Cell, int] = {}
    progress = True
    while progress:
        progress = False
        for total, parts in equations:
            cells = [total, *parts]
            missing = [c for c in cells if c in unknown]
            if len(missing) != 1:
                continue
            m = missing[0]
            s = sum(value.get(c, 0) for c in parts if c != m)
            v = value.get(total, 0) - s if m != total else s
            value[m] = v
            recovered[m] = v
            unknown.discard(m)
            progress = True
    return recovered


def _equations(cells: set[Cell], dims: tuple[Tree, ...], exists: Callable[[Cell], bool]):
    """Every "node = sum of children" equation among published cells around the given cells."""
    seen = set()
    out = []
    for c in cells:
        for d, tree in enumerate(dims):
            for node in (c[d], tree.parent.get(c[d])):
                if node is None or not tree.children.get(node):
                    continue
                total = c[:d] + (node,) + c[d + 1:]
                key = (d, total)
                if key in seen:
                    continue
                seen.add(key)
                parts = [c[:d] + (ch,) + c[d + 1:] for ch in tree.children[node]]
                if exists(total) and all(exists(x) for x in parts):
                    out.append((total, parts))
    return out
