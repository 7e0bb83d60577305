"""Build a benchmark landing area of about N results from the synthetic generator, in bounded memory.

    python -m bench.landing --dest DIR --results 5000000 [--seed 42] [--batch 2000000]

The generator holds a whole landing in memory (about 2 GB per million results), so a large landing is
generated in batches of at most ``batch`` results, one week of collection per batch (batch i starts
i weeks after the first; ``--days`` changes the length; the last one ends a week before the run's day,
see ``default_start``), and the batches are merged into ``<dest>/landing/<lab>/``:

* one file per lab and validation day, as labs deliver them: when two batches wrote the same day
  (results validated in the following week, earlier positives of the scenarios), the later batch's
  data lines are appended to the file (its header dropped);
* request numbers stay unique per lab: batch i > 0 writes its batch number into the two leading
  zeros of every request number (``ALP00012345`` -> ``ALP03012345``);
* re-deliveries (``*_renvoi.csv``) are written last, as byte-identical copies of the merged file.

The truth of the generator is not kept: a benchmark only needs the files. ``<dest>/landing.json``
describes the landing; a later call with the same parameters reuses it.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import sys
import time
from datetime import date, timedelta
from pathlib import Path

DAYS_PER_BATCH = 7
MAX_BATCH = 2_500_000  # request numbers of one lab and batch must stay below 10**6 (two leading zeros)


def _request_pattern() -> re.Pattern[bytes]:
    from transforms.synthetic.generator import REQ_FORMATS

    prefixes = b"|".join(re.escape(p.encode()) for p, _ in sorted(REQ_FORMATS.values(), key=lambda x: -len(x[0])))
    # FINESS (9 digits) ; request prefix, then the two leading zeros of the number
    return re.compile(rb"(?m)^([0-9]{9};(?:" + prefixes + rb"))00(?=[0-9])")


def _renumber(data: bytes, batch_no: int, pattern: re.Pattern[bytes]) -> bytes:
    if batch_no == 0:
        return data
    return pattern.sub(rb"\g<1>" + b"%02d" % batch_no, data)


def batch_sizes(n_results: int, batch: int) -> list[int]:
    k = max(1, math.ceil(n_results / batch))
    return [n_results // k + (1 if i < n_results % k else 0) for i in range(k)]


def default_start(n_batches: int, days: int = DAYS_PER_BATCH, today: date | None = None) -> date:
    """The first collection day of a landing of ``n_batches`` batches of ``days`` days: the Monday on
    or before the day that makes the period end a week before ``today`` (default: the run's day).

    Collection dates after the run's day are quarantined as future dates: a landing reaching past
    today would measure the quarantine instead of the pipeline (the 20 M landing once sent two
    thirds of its rows there). A Monday keeps a landing reusable by the runs of one week."""
    first = (today or date.today()) - timedelta(days=days * n_batches + 7)
    return first - timedelta(days=first.weekday())


def describe(landing: Path) -> dict:
    files = sorted(p for p in landing.rglob("*.csv") if p.is_file())
    n_bytes = sum(p.stat().st_size for p in files)
    lines = 0
    for p in files:
        with p.open("rb") as fh:
            lines += sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 24), b"")) - 1  # minus header
    return {"files": len(files), "bytes": n_bytes, "data_lines": lines,
            "redeliveries": sum(1 for p in files if p.stem.endswith("_renvoi"))}


def build(dest: Path, n_results: int, seed: int = 42, batch: int = 2_000_000, progress=print,
          days: int = DAYS_PER_BATCH, start: date | None = None) -> dict:
    """Write ``<dest>/landing`` (about ``n_results`` results, ``days`` days of collection per batch,
    the first batch's from ``start``, by default ``default_start``) and return its description."""
    from transforms.synthetic import generate

    if not 1 <= batch <= MAX_BATCH:
        raise ValueError(f"batch must be between 1 and {MAX_BATCH}")
    dest = Path(dest)
    sizes = batch_sizes(n_results, batch)
    if start is None:
        start = default_start(len(sizes), days)
    marker = dest / "landing.json"
    params = {"n_results": n_results, "seed": seed, "batch": batch, "start": start.isoformat(),
              "days_per_batch": days}
    if marker.exists():
        known = json.loads(marker.read_text())
        if known.get("params") == params:
            return known
    landing = dest / "landing"
    if landing.exists():
        shutil.rmtree(landing)
    marker.unlink(missing_ok=True)
    landing.mkdir(parents=True)
    pattern = _request_pattern()
    redeliveries: set[str] = set()
    t0 = time.perf_counter()
    if len(sizes) > 100:
        raise ValueError("at most 100 batches (request numbers carry a two-digit batch number)")
    for i, size in enumerate(sizes):
        scratch = dest / f".batch-{i}"
        shutil.rmtree(scratch, ignore_errors=True)
        res = generate(scratch, n_results=size, seed=seed + i, days=days, start=start + timedelta(days=days * i))
        src_landing = scratch / "landing"
        for path in sorted(res.landing_files):
            rel = path.relative_to(src_landing)
            if path.stem.endswith("_renvoi"):
                redeliveries.add(rel.as_posix())
                continue
            data = _renumber(path.read_bytes(), i, pattern)
            out = landing / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            if out.exists():
                with out.open("ab") as fh:
                    fh.write(data[data.index(b"\n") + 1:])
            else:
                out.write_bytes(data)
        shutil.rmtree(scratch, ignore_errors=True)
        progress(f"  batch {i + 1}/{len(sizes)}: {size:,} results ({time.perf_counter() - t0:.0f} s)")
    for rel in sorted(redeliveries):
        original = landing / (rel[: -len("_renvoi.csv")] + ".csv")
        shutil.copyfile(original, landing / rel)
    info = {"params": params, **describe(landing), "seconds": round(time.perf_counter() - t0, 1)}
    marker.write_text(json.dumps(info, indent=2))
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dest", type=Path, required=True)
    ap.add_argument("--results", type=int, required=True)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--batch", type=int, default=2_000_000)
    ap.add_argument("--days", type=int, default=DAYS_PER_BATCH, help="days of collection per batch")
    args = ap.parse_args(argv)
    info = build(args.dest, args.results, args.seed, args.batch, days=args.days)
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
