"""Incremental cost: with a month of history in the warehouse, what does a new day cost?

    uv run python -m bench.incremental [--results-per-day 30000] [--days 30] [--home DIR]

Generates ``days + 1`` days of extracts, holds back the files of the last validation day, runs the
pipeline on the month (history), then delivers the held-back day and runs again. Prints both wall
times, the day's share of the rows, and what the second run recomputed (fct partitions rewritten,
SI-DEP days recomputed). The claim it checks: a new day's run costs about what that day's data
costs, not what the month costs. Each run is a separate process (embedded Prefect included).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _run(home: Path) -> tuple[float, dict]:
    env = dict(os.environ, BIOLAKE_DEMO="1", BIOLAKE_HOME=str(home), PREFECT_HOME=str(home / "prefect"))
    env.pop("PREFECT_API_URL", None)
    out = home / "summary.json"
    code = ("import json,sys; from flows.cli import configure_prefect; from flows.settings import Settings; "
            "configure_prefect(Settings(demo=True)); from flows.pipeline import pipeline; "
            f"s = pipeline(home={str(home)!r}, reports=False); json.dump(s, open({str(out)!r}, 'w'), default=str)")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True)
    return time.perf_counter() - t0, json.loads(out.read_text())


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results-per-day", type=int, default=30_000)
    ap.add_argument("--days", type=int, default=30, help="days of history before the new day")
    ap.add_argument("--home", type=Path, default=None)
    args = ap.parse_args(argv)
    from transforms.synthetic import generate

    home = args.home or Path(tempfile.mkdtemp(prefix="biolake-incremental-"))
    if home.exists():
        shutil.rmtree(home)
    days = args.days + 1
    generate(home, n_results=args.results_per_day * days, seed=11, days=days)
    files = sorted(p for p in (home / "landing").rglob("*.csv"))
    size: dict[str, int] = {}
    for p in files:
        size[p.stem.split("_")[2]] = size.get(p.stem.split("_")[2], 0) + p.stat().st_size
    typical = sorted(size.values())[len(size) // 2]
    # the newest day with a normal volume (the very last days hold only late stragglers)
    last = max(d for d, n in size.items() if n >= typical / 2)
    late = [p for p in files if p.stem.split("_")[2] >= last]
    held = home / "held"
    for p in late:
        (held / p.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.move(p, held / p.parent.name / p.name)
    t_month, s_month = _run(home)
    for p in late:
        shutil.move(held / p.parent.name / p.name, p)
    t_day, s_day = _run(home)
    result = {
        "history_rows": s_month["rows_in"], "history_files": s_month["files_new"], "history_seconds": round(t_month, 1),
        "new_day_rows": s_day["rows_in"], "new_day_files": s_day["files_new"], "new_day_seconds": round(t_day, 1),
        "row_share": round(s_day["rows_in"] / max(1, s_month["rows_in"] + s_day["rows_in"]), 4),
        "time_ratio_day_over_month": round(t_day / t_month, 3),
        "incremental": s_day["incremental"],
        "stage_seconds_month": s_month["stage_seconds"], "stage_seconds_day": s_day["stage_seconds"],
    }
    work = ("ingest", "validate", "transcode", "publish")
    result["work_seconds_month"] = round(sum(s_month["stage_seconds"].get(k, 0) for k in work), 2)
    result["work_seconds_day"] = round(sum(s_day["stage_seconds"].get(k, 0) for k in work), 2)
    print(json.dumps(result, indent=2))
    print(f"\nmonth of history: {result['history_rows']:,} rows in {t_month:.1f} s; "
          f"new day: {result['new_day_rows']:,} rows in {t_day:.1f} s "
          f"({result['row_share']:.1%} of the rows, {result['time_ratio_day_over_month']:.1%} of the time; "
          "both include ~10-15 s of Prefect start-up per process and the quality gate)")
    print(f"work stages (ingest, validate, transcode, publish): month {result['work_seconds_month']} s, "
          f"new day {result['work_seconds_day']} s")
    return result


if __name__ == "__main__":
    main()
