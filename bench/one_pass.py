"""How far a single-pass design is from the floor: DuckDB reads the landing once and writes checked rows.

    python -m bench.one_pass --landing DIR [--repeat 2] [--json FILE]

The pipeline is about 10 times the floor at 5 M results (README, "Benchmarks"). This measures,
against the floor in the same run (alternating, fastest of ``--repeat``), two DuckDB-only passes
over the same CSV files, each one SQL statement from the CSV files to one Parquet file (zstd):

* ``core``: the floor's read, plus typing (the two date styles, numbers with a decimal comma), the
  NIR key check, a SHA-256 of a secret and the NIR as pseudonym, the date checks (impossible date,
  validation before collection) and the LOINC join on the labs' open mappings; every row is kept,
  with its reason (null when valid);
* ``core + duplicate rows``: the same plus the in-file duplicate-row check, in its cheapest form: a
  count per hash of the row's content (file, request, code, status, value, validation), joined back.
  It flags every copy; telling the first copy from its repeats, as the pipeline does, needs the
  line order (a window over the same hash took 14.8 s instead of 11.9 s at 5 M results).

What both leave out, and the pipeline does: line numbers (DuckDB's CSV reader gives none, and
without them no quarantined row can be traced to its line), malformed-line detection (short or long
lines are padded or cut here), corrections and current versions, unit conversion, qualitative
words, per-file partitions and the raw, staging and coded layers the privacy purge and re-coding
need, the marts and the quality gate. So these are lower bounds for any design that keeps those
checks, not a design. Nothing here is part of ``make bench``'s figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import duckdb

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import floor  # noqa: E402
from warehouse.views import sql_literal  # noqa: E402

VARIANTS = ("core", "core + duplicate rows")


def _ts(col: str, with_time: bool = True) -> str:
    dmy, compact = ("%d/%m/%Y %H:%M", "%Y%m%d%H%M") if with_time else ("%d/%m/%Y", "%Y%m%d")
    return f"coalesce(try_strptime({col}, '{dmy}'), try_strptime({col}, '{compact}'))"


def pass_sql(landing: Path, out: Path, seeds: Path, duplicates: bool) -> str:
    maps = sql_literal(str(seeds / "mappings" / "*.csv"))
    key = "hash({f}filename, FINESS, N_DEMANDE, {f}local_code, status, value_raw, validated_at)"
    dup = ",\n  coalesce(d.n > 1, false) AS duplicate_row" if duplicates else ""
    dup_join = (f"\nLEFT JOIN (SELECT {key.format(f='')} AS h, count(*) AS n FROM t GROUP BY 1) d "
                f"ON d.h = {key.format(f='t.')}") if duplicates else ""
    return f"""
COPY (
WITH m AS (
  SELECT regexp_extract(filename, '([^/]+)\\.csv$', 1) AS source, local_code, loinc_num
  FROM read_csv({maps}, filename=true, all_varchar=true) WHERE coalesce(valid_to, '') = ''),
t AS (
  SELECT split_part(parse_dirpath(filename), '/', -1) AS source, filename, FINESS, N_DEMANDE,
    sha256('biolake-bench-secret' || coalesce(NIR, '')) AS pseudonym, NIR,
    {_ts('DATE_NAISSANCE', False)}::DATE AS birth_date, SEXE AS sex, CODE_POSTAL AS postal_code,
    {_ts('DATE_PRELEVEMENT')} AS collected_at, {_ts('DATE_RECEPTION')} AS received_at,
    {_ts('DATE_VALIDATION')} AS validated_at,
    CODE_ANALYSE AS local_code, LIBELLE_ANALYSE AS local_label, RESULTAT AS value_raw,
    TRY_CAST(replace(RESULTAT, ',', '.') AS DOUBLE) AS value_num, UNITE AS unit_raw, STATUT AS status
  FROM ({floor.read_sql(Path(landing), filename=True)}))
SELECT t.* EXCLUDE (NIR), m.loinc_num AS loinc_code,
  CASE WHEN NOT coalesce(length(NIR) = 15 AND 97 - (TRY_CAST(replace(replace(NIR[1:13], '2A', '19'), '2B', '18')
                         AS HUGEINT) % 97) = TRY_CAST(NIR[14:15] AS INT), false) THEN 'NIR_KEY'
       WHEN collected_at IS NULL THEN 'DATE_INVALID'
       WHEN validated_at < collected_at THEN 'DATE_ORDER' END AS reason{dup}
FROM t LEFT JOIN m ON m.source = t.source AND m.local_code = t.local_code{dup_join}
) TO {sql_literal(str(out))} (FORMAT parquet, COMPRESSION zstd)"""


def _timed(sql: str) -> float:
    con = duckdb.connect(":memory:")
    con.execute("SET preserve_insertion_order = false")
    try:
        t0 = time.perf_counter()
        con.execute(sql)
        return time.perf_counter() - t0
    finally:
        con.close()


def run(landing: Path, work: Path, repeat: int = 2, seeds: Path = REPO / "seeds", log=print) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    out = {name: work / f"{name.replace(' ', '_')}.parquet" for name in ("floor", *VARIANTS)}
    sqls = {"floor": floor.copy_sql(Path(landing), out["floor"])}
    for name in VARIANTS:
        sqls[name] = pass_sql(Path(landing), out[name], seeds, duplicates=name != "core")
    best: dict[str, float] = {}
    for i in range(repeat):
        for name, sql in sqls.items():
            s = _timed(sql)
            best[name] = min(best.get(name, s), s)
            log(f"({i + 1}/{repeat}) {name}: {s:.2f} s")
    con = duckdb.connect(":memory:")
    try:
        rows = {name: con.execute(f"SELECT count(*) FROM read_parquet({sql_literal(str(f))})").fetchone()[0]
                for name, f in out.items()}
        checks = con.execute(
            f"SELECT count(loinc_code), count(*) FILTER (reason = 'NIR_KEY'), count(*) FILTER (reason = 'DATE_ORDER'), "
            f"count(*) FILTER (reason = 'DATE_INVALID'), count(*) FILTER (duplicate_row) "
            f"FROM read_parquet({sql_literal(str(out[VARIANTS[1]]))})").fetchone()
    finally:
        con.close()
    return {
        "seconds": {k: round(v, 3) for k, v in best.items()},
        "x_floor": {n: round(best[n] / best["floor"], 2) for n in VARIANTS},
        "rows": rows,
        "found": dict(zip(("coded", "NIR_KEY", "DATE_ORDER", "DATE_INVALID", "duplicate_rows"), checks)),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--landing", type=Path, required=True, help="a landing built by bench.landing (CSV files)")
    ap.add_argument("--work", type=Path, help="where the Parquet files go (default: a temporary directory)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.work is None:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="biolake-one-pass-") as tmp:
            res = run(args.landing, Path(tmp), args.repeat)
    else:
        res = run(args.landing, args.work, args.repeat)
    for name in VARIANTS:
        print(f"{name}: {res['seconds'][name]:.2f} s = {res['x_floor'][name]:.2f}x the floor "
              f"({res['seconds']['floor']:.2f} s), {res['rows'][name]:,} rows")
    print("found:", ", ".join(f"{k} {v:,}" for k, v in res["found"].items()))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
