"""Benchmark: the four parsers on the same logical content, each lab sending one format.

Run from the repository root::

    .venv/bin/python -m bench.bench_formats                    # 200,000 results per format
    .venv/bin/python -m bench.bench_formats --results 5000     # smoke run

For each format (CSV extract, HL7 v2.5 ORU^R01, CR-BIO CDA, HPRIM Santé) it generates the same
week of results (same seed) with every lab sending that format (``generate(formats=...)``; the
defects a format cannot carry are left out, and HL7/HPRIM test identities are refused by the parser,
so the parsed results differ by a few tenths of a percent),
then parses every landing file (re-deliveries left out) with the parser the pipeline would pick
(``detect_format``, ``get_parser``) up to canonical polars chunks, in one thread, ``--repeat``
times, keeping the fastest. It prints, per format: files, results, bytes, seconds (wall and CPU),
results per second and MB per second, and the CDA/HL7/HPRIM time relative to CSV; ``--json``
writes the same figures. Nothing is asserted about speed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from transforms.parsers.detect import FORMAT_NAMES as NAMES  # noqa: E402
from transforms.parsers.detect import FORMATS, detect_format, get_parser  # noqa: E402
from transforms.synthetic import generate  # noqa: E402
from transforms.synthetic.seeds import load_seeds  # noqa: E402


def parse_landing(files: list[Path], expected: str) -> tuple[int, float, float]:
    """(results, wall seconds, CPU seconds) to parse ``files`` one after the other."""
    rows = 0
    w0, c0 = time.perf_counter(), time.process_time()
    for path in files:
        fmt = detect_format(path)
        if fmt != expected:
            raise SystemExit(f"{path}: detected as {fmt}, written as {expected}")
        for chunk in get_parser(fmt)(path, file_id=path.stem, source=path.parent.name):
            rows += chunk.rows.height
    return rows, time.perf_counter() - w0, time.process_time() - c0


def run(results: int, seed: int, repeat: int, work: Path, log=print) -> list[dict]:
    labs = [lab.source for lab in load_seeds().labs]
    out = []
    for fmt in FORMATS:
        home = work / fmt
        res = generate(home, n_results=results, seed=seed, formats={lab: fmt for lab in labs})
        files = sorted(p for p in res.landing_files if not p.stem.endswith("_renvoi"))
        size = sum(p.stat().st_size for p in files)
        best = None
        for _ in range(repeat):
            got = parse_landing(files, fmt)
            best = got if best is None or got[1] < best[1] else best
        rows, wall, cpu = best
        out.append({"format": fmt, "files": len(files), "results": rows, "bytes": size, "seconds": round(wall, 3),
                    "cpu_seconds": round(cpu, 3), "results_per_s": round(rows / wall), "mb_per_s": round(size / wall / 1e6, 1)})
        log(f"{NAMES[fmt]}: {rows:,} results in {len(files)} files ({size / 1e6:.1f} MB) parsed in {wall:.2f} s "
            f"({rows / wall:,.0f} results/s)")
    return out


def table(figures: list[dict]) -> str:
    csv = next(f for f in figures if f["format"] == "csv")
    lines = ["| format | files | results | MB | seconds (CPU) | results/s | MB/s | time per result vs CSV |",
             "|---|---|---|---|---|---|---|---|"]
    for f in figures:
        per = (f["seconds"] / f["results"]) / (csv["seconds"] / csv["results"])
        lines.append(f"| {NAMES[f['format']]} | {f['files']} | {f['results']:,} | {f['bytes'] / 1e6:.1f} | "
                     f"{f['seconds']:.2f} ({f['cpu_seconds']:.2f}) | {f['results_per_s']:,} | {f['mb_per_s']} | "
                     f"{per:.1f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=int, default=200_000, help="results per format (default 200,000)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--repeat", type=int, default=2, help="parse each landing N times, keep the fastest")
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="biolake-formats-") as tmp:
        figures = run(args.results, args.seed, args.repeat, Path(tmp))
    print()
    print(table(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
