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
from the margins, however the equations are combined.

Counts are never negative, and a reader knows it: a hypercube protects only as far as its corners
can move. Adding t times its signed vector keeps every corner >= 0 for t from minus the smallest
value of its +1 corners to the smallest value of its -1 corners. A corner holding 0 stops the
movement in its direction; with zeros on both signs the primary cell is pinned to its true value
(a reader finds it exactly with a linear program, while no equation gives it). So a hypercube is
chosen among those that can move at least one way by 1 (every +1 corner at least 1, or every -1
corner at least 1); the one hiding the least (sum of the values of the newly suppressed cells)
wins, and on a tie the two-sided one (the primary can be one more or one less). One always exists:
the hypercube "up to the totals" has only +1 corners and can always grow. A primary cell that is a
total (all ages, a week...) goes down to its children along one non-empty leaf cell in all such
dimensions at once, so that the cells between are not empty. :func:`check_protection` verifies
every primary cell's hypercube afterwards, as a proof: balanced against every equation, every
published corner hidden, the movement possible.

The guarantee is against exact recomputation (the rule the manifest states), non-negativity
included: a reader may still bound a hidden value on one side (a one-sided hypercube leaves
[v, v + 1] or [v - 1, v] at least).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Hashable, Mapping
from dataclasses import asdict, dataclass
from itertools import product

Node = Hashable
Cell = tuple
Signed = list[tuple[Cell, int]]  # a hypercube: its corners, each with its sign
ZERO_COST = 1e6  # a corner holding 0 blocks the hypercube in one direction: avoided when ranking sides


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

    def describe(self, dataset: str = "sidep") -> str:
        """The rule in words; ``dataset`` 'mdo' names the totals of the MDO files (weekly cases by
        département and France) instead of SI-DEP's."""
        text = f"counts from {self.min_count} to {self.threshold} are suppressed (empty cell)"
        if self.secondary == "hypercube":
            totals = ("départements -> régions -> France" if dataset == "mdo" else
                      "age classes -> all ages (cl_age90 = 0), départements -> régions -> France, "
                      "days -> ISO week, women + men -> all")
            text += ("; secondary suppression (hypercube method) so that no suppressed cell can be "
                     f"recomputed from the published totals: {totals}")
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

    def leaves(self, x: Node) -> list[Node]:
        kids = self.children.get(x)
        return [x] if not kids else [leaf for k in kids for leaf in self.leaves(k)]

    def path_down(self, x: Node, leaf: Node) -> list[Node]:
        """The nodes from below ``x`` down to ``leaf`` (a descendant of ``x``, or ``x`` itself: [])."""
        out = []
        while leaf != x:
            out.append(leaf)
            leaf = self.parent[leaf]
        return out

    def vectors(self, x: Node, cost: Callable[[Node], float], down: list[Node] | None = None
                ) -> list[dict[Node, int]]:
        """Balanced signed node sets containing ``x`` with sign +1 (candidates for a hypercube side).
        ``down``: the path below ``x`` to follow (else its cheapest child, and so on, to a leaf)."""
        down_x = {n: 1 for n in down} if down is not None else self._down(x, 1, cost)
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
             rule: DisclosureRule, proofs: dict[Cell, Signed] | None = None) -> tuple[set[Cell], set[Cell]]:
    """Primary and secondary suppressed cells of one cube.

    ``values``: count of every non-zero cell, unpublished ones included where known (missing cells
    are zero, which is the cautious reading: a zero corner protects in one direction only);
    ``published``: whether a cell appears in a published file (unpublished cells are hidden anyway
    and cost nothing). ``proofs``, when given, receives for every primary cell the hypercube that
    protects it (for :func:`check_protection`).
    """
    primary = {c for c, v in values.items() if v and rule.sensitive(v) and published(c)}
    if rule.secondary == "none":
        return primary, set()
    hidden = set(primary)
    covered: dict[Cell, Signed] = {}

    def cost(c: Cell) -> float:
        """What hiding ``c`` loses: its count (a published zero: a little)."""
        if c in hidden or not published(c):
            return 0.0
        v = values.get(c, 0)
        return float(v) if v else 0.5

    def rank(c: Cell) -> float:
        """How a side's nodes are ranked: by cost, an empty cell last (it stops the movement)."""
        return cost(c) if values.get(c, 0) else ZERO_COST

    for p in sorted(primary, key=lambda c: tuple(map(str, c))):
        if p in covered:
            continue
        cube = _cheapest_hypercube(p, dims, cost, rank, rule.candidates_per_dimension, lambda c: values.get(c, 0))
        for corner, _ in cube:
            covered.setdefault(corner, cube)
            if published(corner):
                hidden.add(corner)
    if proofs is not None:
        proofs.update({p: covered[p] for p in primary})
    return primary, hidden - primary


def slack(cube: Signed, value: Callable[[Cell], int]) -> tuple[float, float]:
    """How far a hypercube's signed vector can be added, every corner staying >= 0: (down, up),
    t from -down to +up (``math.inf`` when no corner bounds that direction)."""
    down = min((value(c) for c, s in cube if s > 0), default=math.inf)
    up = min((value(c) for c, s in cube if s < 0), default=math.inf)
    return down, up


MAX_LEAVES = 20_000  # leaf cells under a primary total searched for the one to go down to


def _heaviest_leaf(p: Cell, dims: tuple[Tree, ...], value: Callable[[Cell], int]) -> Cell | None:
    """The leaf cell under ``p`` (p itself in the dimensions where it is a leaf) holding the most.

    A primary cell that is a total (all ages, a week...) moves with one of its children in each such
    dimension: going down to one non-empty leaf cell in all of them at once makes every cell between
    ``p`` and that leaf at least 1, where independent choices could meet at an empty cell."""
    per_dim = [tree.leaves(n) for tree, n in zip(dims, p)]
    if math.prod(len(x) for x in per_dim) > MAX_LEAVES:
        return None
    best = max(product(*per_dim), key=lambda c: (value(c), tuple(map(str, c))))
    return best if value(best) >= 1 else None


def _cheapest_hypercube(p: Cell, dims: tuple[Tree, ...], cost: Callable[[Cell], float],
                        rank: Callable[[Cell], float], k: int, value: Callable[[Cell], int]) -> Signed:
    sides = []
    leaf = _heaviest_leaf(p, dims, value) if any(t.children.get(n) for t, n in zip(dims, p)) else None
    for d, tree in enumerate(dims):
        memo: dict = {}

        def edge(node, d=d, memo=memo):
            if node not in memo:
                memo[node] = rank(p[:d] + (node,) + p[d + 1:])
            return memo[node]

        opts = tree.vectors(p[d], edge, tree.path_down(p[d], leaf[d]) if leaf else None)
        # the k sides hiding least along this dimension alone (ties: enumeration order, deterministic),
        # and always the side up to the root (only +1 signs: the fallback that can always move)
        scored = [(sum(edge(n) for n in v if n != p[d]), len(v), i) for i, v in enumerate(opts)]
        keep = [i for _, _, i in heapq.nsmallest(k, scored)]
        up = next(i for i, v in enumerate(opts) if all(s > 0 for s in v.values()))
        sides.append([opts[i] for i in (keep if up in keep else [*keep, up])])
    best: tuple[tuple[bool, float, bool], Signed] | None = None
    for combo in product(*sides):
        cube = [(corner, math.prod(v[n] for v, n in zip(combo, corner)))
                for corner in product(*[list(v) for v in combo])]
        down, up = slack(cube, value)
        # never pinned (a corner at 0 on each side); then hiding least; then two-sided if that ties
        key = (max(down, up) < 1, sum(cost(c) for c, _ in cube), min(down, up) < 1)
        if best is None or key < best[0]:
            best = (key, cube)
    assert best is not None
    return best[1]


def check_protection(values: Mapping[Cell, int], hidden: set[Cell], dims: tuple[Tree, ...],
                     published: Callable[[Cell], bool], proofs: Mapping[Cell, Signed],
                     primary: set[Cell]) -> dict[Cell, str]:
    """The primary cells whose protection does not hold, each with why (empty: all protected).

    Each primary cell's hypercube (``proofs``) is checked as a proof that no reader can recompute
    the cell, combining the equations in any way and knowing that counts are never negative: the
    cell is a corner; every published corner is hidden; along every dimension, every equation
    "node = sum of children" touching a corner sums the corners' signs to zero (adding the vector
    changes no published number); and the vector can be added at t = 1 or t = -1 with every corner
    still >= 0 (``values``: true counts, missing cells zero)."""
    bad: dict[Cell, str] = {}
    verdicts: dict[int, str | None] = {}  # a hypercube protecting several primary cells: checked once
    for p in sorted(primary, key=lambda c: tuple(map(str, c))):
        cube = proofs.get(p)
        if not cube:
            bad[p] = "no hypercube"
            continue
        if all(c != p for c, _ in cube):
            bad[p] = "not a corner of its hypercube"
            continue
        if id(cube) not in verdicts:
            verdicts[id(cube)] = _disproof(cube, values, hidden, dims, published)
        if verdicts[id(cube)]:
            bad[p] = verdicts[id(cube)]
    return bad


def _disproof(cube: Signed, values: Mapping[Cell, int], hidden: set[Cell], dims: tuple[Tree, ...],
              published: Callable[[Cell], bool]) -> str | None:
    """Why a hypercube does not protect its corners, or None when it does (see check_protection)."""
    sign = dict(cube)
    shown = [c for c in sign if published(c) and c not in hidden]
    if shown:
        return f"corner {shown[0]} is published"
    unbalanced = _unbalanced(sign, dims)
    if unbalanced:
        return f"equation of {unbalanced} not balanced"
    down, up = slack(cube, lambda c: values.get(c, 0))
    if max(down, up) < 1:
        return "pinned by zero corners (recomputable knowing counts are >= 0)"
    return None


def _unbalanced(sign: Mapping[Cell, int], dims: tuple[Tree, ...]) -> Cell | None:
    """The total of the first equation touching a corner whose signs do not sum to zero, if any."""
    for total, parts in _equations_around(sign, dims):
        if sign.get(total, 0) != sum(sign.get(x, 0) for x in parts):
            return total
    return None


def margin_attack(known: Mapping[Cell, int], hidden: set[Cell], dims: tuple[Tree, ...],
                  exists: Callable[[Cell], bool]) -> dict[Cell, int]:
    """What a reader recomputes by repeated subtraction: any equation "node = sum of children" with
    exactly one hidden cell gives it; the recovered cell then helps the next equation.

    ``known`` holds the published values (zero cells included or not: missing known cells count as
    zero), ``hidden`` the suppressed cells; ``exists`` says whether a cell is published at all
    (equations touching an unpublished cell are unusable). Returns the recovered cells.

    The equations are taken in a fixed order (their cells' text): the recovered cells do not depend
    on it, but their values do where the sums are inexact (persons of unknown age or sex), and a
    set's order changes from one process to the next.
    """
    equations = sorted(_equations(set(known) | hidden, dims, exists), key=lambda e: (repr(e[0]), repr(e[1])))
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


def _equations_around(cells, dims: tuple[Tree, ...]):
    """Each "node = sum of children" equation a cell takes part in (as total or part), once."""
    seen = set()
    for c in cells:
        for d, tree in enumerate(dims):
            for node in (c[d], tree.parent.get(c[d])):
                if node is None or not tree.children.get(node):
                    continue
                total = c[:d] + (node,) + c[d + 1:]
                if (d, total) in seen:
                    continue
                seen.add((d, total))
                yield total, [c[:d] + (ch,) + c[d + 1:] for ch in tree.children[node]]


def _equations(cells: set[Cell], dims: tuple[Tree, ...], exists: Callable[[Cell], bool]):
    """Every "node = sum of children" equation among published cells around the given cells."""
    return [(total, parts) for total, parts in _equations_around(cells, dims)
            if exists(total) and all(exists(x) for x in parts)]
