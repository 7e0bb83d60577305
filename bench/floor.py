"""The floor: DuckDB's own copy of the landing CSV files to one Parquet file.

    python -m bench.floor --landing DIR --out floor.parquet --json timings.json

The least work that turns these files into Parquet: every file, read by DuckDB's CSV reader with
the columns named by the header and kept as text (no sniffing, no type inference, no checks; short
or long lines padded or cut instead of failing), written with the same compression as the warehouse
(zstd), without keeping the input order (as the pipeline's own DuckDB connections; keeping it
doubles the copy's time at 5 M rows). Files are grouped by encoding (``seeds/labs.csv``; UTF-8 for
unknown senders) and by header, one ``read_csv`` per group, all in one ``COPY``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import duckdb

from warehouse.views import sql_literal

REPO = Path(__file__).resolve().parents[1]


def lab_encodings(seeds: Path = REPO / "seeds") -> dict[str, str]:
    with (seeds / "labs.csv").open(encoding="utf-8") as fh:
        return {r["source"]: r["encoding"] for r in csv.DictReader(fh)}


def _groups(landing: Path) -> dict[tuple[str, tuple[str, ...]], list[str]]:
    encodings = lab_encodings()
    groups: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for path in sorted(landing.rglob("*.csv")):
        enc = encodings.get(path.relative_to(landing).parts[0], "utf-8")
        with path.open("rb") as fh:
            header = fh.readline().decode(enc).strip().lstrip("\ufeff")
        groups.setdefault((enc, tuple(header.split(";"))), []).append(str(path))
    return groups


def read_sql(landing: Path, filename: bool = False) -> str:
    """A SELECT of every landing CSV's rows as text (one ``read_csv`` per group), with each row's
    file name as ``filename`` when asked."""
    selects = []
    for (enc, header), files in _groups(landing).items():
        columns = ", ".join(f"{sql_literal(c)}: 'VARCHAR'" for c in header)
        file_list = "[" + ", ".join(sql_literal(f) for f in files) + "]"
        selects.append(
            f"SELECT * FROM read_csv({file_list}, delim=';', header=true, auto_detect=false, quote='', "
            f"escape='', columns={{{columns}}}, encoding={sql_literal(enc)}, strict_mode=false, null_padding=true"
            f"{', filename=true' if filename else ''})")
    return " UNION ALL BY NAME ".join(selects)


def copy_sql(landing: Path, out: Path) -> str:
    return f"COPY ({read_sql(landing)}) TO {sql_literal(str(out))} (FORMAT parquet, COMPRESSION zstd)"


def run(landing: Path, out: Path) -> dict:
    con = duckdb.connect(":memory:")
    con.execute("SET preserve_insertion_order = false")
    try:
        sql = copy_sql(Path(landing), Path(out))
        t0 = time.perf_counter()
        con.execute(sql)
        seconds = time.perf_counter() - t0
        rows = con.execute(f"SELECT count(*) FROM read_parquet({sql_literal(str(out))})").fetchone()[0]
    finally:
        con.close()
    return {"seconds": round(seconds, 3), "rows": rows, "parquet_bytes": Path(out).stat().st_size}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--landing", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--json", type=Path, required=True)
    args = ap.parse_args(argv)
    args.json.write_text(json.dumps(run(args.landing, args.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
