"""Derive the compact reference tables biolake ships in seeds/reference/.

Run from the repository root with the shared reference folder beside the checkout:

    uv run python seeds/build_seeds.py --reference ../shared/reference

The product never reads ../shared at run time; it reads only what this script writes (committed
files under seeds/reference/). Provenance and licences are in seeds/SOURCES.md.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.util
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "reference"


def read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def write(name: str, header: list[str], rows: list[list[object]]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with (OUT / name).open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    print(f"wrote seeds/reference/{name}: {len(rows)} rows")


def loinc_check_ok(code: str) -> bool:
    body, _, check = code.partition("-")
    if not body.isdigit() or not check.isdigit() or len(check) != 1:
        return False
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return (10 - total % 10) % 10 == int(check)


def _numbered_after(postal_code: str, dep_code: str) -> bool:
    """Whether a postal code starts with its département's number (2A/2B: 20; overseas: 3 digits)."""
    number = "20" if dep_code in ("2A", "2B") else dep_code
    return postal_code.startswith(number)


def whole_populations(rows: list[dict[str, str]]) -> list[list[object]]:
    """dep_code, cl_age90, pop with every pop a whole number, the age classes of each code summing
    exactly to its all-ages row.

    Santé publique France's file (seeds/SOURCES.md) gives whole numbers everywhere except the age
    classes of Saint-Pierre-et-Miquelon (975) and Saint-Martin (978), apportioned as fractions
    (975 age 9: 703.704828175651) whose sum is the whole all-ages row (5997, 35334). The seed
    rounds them by the largest-remainder method: each class gets the whole part of its value, and
    the inhabitants left (the all-ages row minus the sum of the whole parts) go one each to the
    classes with the largest fractional parts (ties: the younger class). Whole values are kept as
    they are, the all-ages rows are never changed, so the France total stays 67,114,995 and no
    class moves by one inhabitant or more. The script stops if the source breaks these premises.
    """
    by_dep: dict[str, dict[int, float]] = defaultdict(dict)
    for r in rows:
        by_dep[r["dep_code"]][int(r["cl_age90"])] = float(r["pop"])
    out: list[list[object]] = []
    for dep, classes in by_dep.items():
        total = classes.pop(0)
        if total != int(total):
            raise SystemExit(f"population of {dep}, all ages, is not a whole number: {total}")
        whole = {age: int(v // 1) for age, v in classes.items()}
        left = int(total) - sum(whole.values())
        if not 0 <= left <= len(classes) or abs(sum(classes.values()) - total) > 1e-6 * max(total, 1):
            raise SystemExit(f"population of {dep}: the age classes do not sum to the all-ages row {total}")
        for age in sorted(classes, key=lambda a: (-(classes[a] - whole[a]), a))[:left]:
            whole[age] += 1
        assert sum(whole.values()) == total and all(abs(whole[a] - v) < 1 for a, v in classes.items())
        out += [[dep, 0, int(total)]] + [[dep, age, whole[age]] for age in sorted(whole)]
    return out


def build(ref: Path) -> None:
    deps = read(ref / "geo/departements.csv")
    write(
        "departements.csv",
        ["dep_code", "dep_name", "region_code", "region_name", "zone", "is_com"],
        [[d["dep_code"], d["dep_name"], d["region_code"], d["region_name"], d["zone"], d["is_com"]] for d in deps],
    )

    # Postal code -> département: one row per postal code. A postal code spanning several
    # départements is resolved to the département holding most of its communes and flagged, so the
    # rule is data every component reads, not logic each re-implements. Ties go to the département
    # the postal code is numbered after (42620 -> 42: its distributing office), then the lowest code.
    pcs = read(ref / "geo/postal_codes.csv")
    by_pc: dict[str, Counter[str]] = defaultdict(Counter)
    for r in pcs:
        if r["commune_type"] == "commune-actuelle":
            by_pc[r["postal_code"]][r["dep_code"]] += 1
    for r in pcs:  # postal codes held only by arrondissements
        if r["postal_code"] not in by_pc:
            by_pc[r["postal_code"]][r["dep_code"]] += 1
    rows = []
    for pc in sorted(by_pc):
        counts = by_pc[pc]
        best = sorted(counts.items(), key=lambda kv: (-kv[1], not _numbered_after(pc, kv[0]), kv[0]))[0][0]
        rows.append([pc, best, sum(counts.values()), "yes" if len(counts) > 1 else "no"])
    write("postal_codes.csv", ["postal_code", "dep_code", "n_communes", "multi_dep"], rows)

    # Communes, for the generator (residence drawn from real communes).
    write(
        "communes.csv",
        ["commune_insee_code", "commune_name", "postal_code", "dep_code"],
        [
            [r["commune_insee_code"], r["commune_name"], r["postal_code"], r["dep_code"]]
            for r in pcs
            if r["commune_type"] == "commune-actuelle"
        ],
    )

    # Reference population of 2021 (identical to 2020's in the source), whole numbers (see
    # whole_populations: the fractional age classes of 975 and 978 rounded by largest remainder).
    pop = read(ref / "population/pop_dep_age.csv")
    write("population.csv", ["dep_code", "cl_age90", "pop"], whole_populations([p for p in pop if p["year"] == "2021"]))

    loinc = read(ref / "loinc/loinc_fr_subset.csv")
    bad = [r["loinc_num"] for r in loinc if not loinc_check_ok(r["loinc_num"])]
    if bad:
        raise SystemExit(f"LOINC codes with a bad check digit in the reference: {bad}")
    cols = ["loinc_num", "display_fr", "display_en", "component_fr", "property", "system", "scale", "method",
            "example_ucum_unit"]
    write("loinc.csv", cols, [[r[c] for c in cols] for r in loinc])

    mdo = read(ref / "mdo/mdo_list.csv")
    write(
        "mdo_list.csv",
        ["mdo_id", "name_fr", "name_en", "lab_confirmable", "typical_lab_criterion_fr", "candidate_loinc"],
        [[m["mdo_id"], m["name_fr"], m["name_en"], m["lab_confirmable"], m["typical_lab_criterion_fr"],
          m["candidate_loinc"]] for m in mdo],
    )
    cand = read(ref / "mdo/mdo_loinc_candidates.csv")
    write(
        "mdo_loinc_candidates.csv",
        ["mdo_id", "loinc_num", "display_en", "match_level"],
        [[c["mdo_id"], c["loinc_num"], c["display_en"], c["match_level"]] for c in cand],
    )

    # Record the inputs' checksums so a reviewer can tie every seed to its reference version.
    inputs = ["geo/departements.csv", "geo/postal_codes.csv", "population/pop_dep_age.csv",
              "loinc/loinc_fr_subset.csv", "mdo/mdo_list.csv", "mdo/mdo_loinc_candidates.csv"]
    write(
        "inputs_sha256.csv",
        ["reference_file", "sha256"],
        [[p, hashlib.sha256((ref / p).read_bytes()).hexdigest()] for p in inputs],
    )
    # the SI-DEP test definition (and the covid19 MDO rules) follow the candidates just written
    spec = importlib.util.spec_from_file_location("build_test_definitions", HERE / "build_test_definitions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.build(HERE)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reference", type=Path, default=HERE.parent.parent / "shared" / "reference")
    build(ap.parse_args().reference)
