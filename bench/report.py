"""Derived figures of a benchmark run, its targets, and its markdown tables."""

from __future__ import annotations

import re
from pathlib import Path

STAGES = ("ingest", "validate", "transcode", "publish")
GB = 1024**3
# the targets of the benchmark issue: (size they apply at, limit)
RATIO_TARGET = (5_000_000, 2.0)
MEMORY_TARGET = (20_000_000, 4 * GB)
OVERHEAD_TARGET = (5_000_000, 0.10)
README_START = "<!-- bench:table:start -->"
README_END = "<!-- bench:table:end -->"


def _per_second(rows: int, seconds: float | None) -> float | None:
    return round(rows / seconds) if seconds else None


def _others(stages: dict) -> float:
    return sum(v for k, v in stages.items() if k not in STAGES)


def size_result(n: int, landing: dict, floor: dict, prefect: dict, plain: dict | None) -> dict:
    rows = prefect["rows_in"]
    wall = prefect["pipeline_seconds"]
    stages = prefect["stage_seconds"]
    out = {
        "n_results": n,
        "landing": {k: landing[k] for k in ("files", "bytes", "data_lines", "redeliveries")},
        "rows_in": rows,
        "floor": floor,
        "prefect": prefect,
        "plain": plain,
        "pipeline_seconds": wall,
        "floor_ratio": round(wall / floor["seconds"], 2),
        # the four stages the target names (ingest, validate, transcode, publish) in wall time: the
        # run's wall time without the stages run once on the flow's thread (reference load, discovery,
        # DuckDB views, quality gate). The per-file stages' own seconds are summed over the worker
        # threads, so they can add up to more than the wall time.
        "stages_seconds": round(wall - _others(stages), 3),
        "stages_floor_ratio": round((wall - _others(stages)) / floor["seconds"], 2),
        "rows_per_second": {s: _per_second(rows, stages.get(s)) for s in STAGES},
        "pipeline_rows_per_second": _per_second(rows, wall),
        "floor_rows_per_second": _per_second(floor["rows"], floor["seconds"]),
        "peak_rss_bytes": prefect["peak_rss_bytes"],
        "peak_tree_rss_bytes": prefect["peak_tree_rss_bytes"],
        # the orchestration overhead: the flow's wall time beyond the work timed inside its tasks
        # (Prefect's engine, API calls, futures, artifacts)
        "orchestration_seconds": round(wall - prefect["work_seconds"], 3),
        "orchestration_share": round((wall - prefect["work_seconds"]) / wall, 3),
        # biolake's own per-task setup (settings, context, terminology lookup), counted as work above
        "task_setup_seconds": prefect["work_by_category"].get("task_setup", 0.0),
    }
    if plain is not None:
        # the same steps without Prefect: also catches the work slowed down by Prefect's server
        # competing for the same cores
        over = wall - plain["pipeline_seconds"]
        out |= {
            "plain_seconds": plain["pipeline_seconds"],
            "plain_floor_ratio": round(plain["pipeline_seconds"] / floor["seconds"], 2),
            "plain_rows_per_second": {s: _per_second(rows, plain["stage_seconds"].get(s)) for s in STAGES},
            "vs_plain_seconds": round(over, 3),
            "vs_plain_share": round(over / wall, 3),
        }
    return out


def _at(results: list[dict], n: int) -> dict | None:
    return next((r for r in results if r["n_results"] == n), None)


def targets(results: list[dict]) -> list[dict]:
    out = []
    r = _at(results, RATIO_TARGET[0])
    out.append({"target": f"pipeline within {RATIO_TARGET[1]:g}x the floor at {RATIO_TARGET[0]:,} results",
                "measured": r and r["floor_ratio"], "met": r and r["floor_ratio"] <= RATIO_TARGET[1],
                "stages": r and r.get("stages_floor_ratio")})
    r = _at(results, MEMORY_TARGET[0])
    out.append({"target": f"peak memory under {MEMORY_TARGET[1] / GB:g} GB at {MEMORY_TARGET[0]:,} results",
                "measured": r and round(r["peak_rss_bytes"] / GB, 2),
                "met": r and r["peak_rss_bytes"] < MEMORY_TARGET[1]})
    r = _at(results, OVERHEAD_TARGET[0])
    share = r.get("orchestration_share") if r else None
    out.append({"target": f"orchestration overhead under {OVERHEAD_TARGET[1]:.0%} of wall time at "
                          f"{OVERHEAD_TARGET[0]:,} results",
                "measured": share, "met": None if share is None else share < OVERHEAD_TARGET[1]})
    return out


def _n(x: float | None, fmt: str = "{:,.0f}") -> str:
    return "-" if x is None else fmt.format(x)


def _size(n: int) -> str:
    return f"{n / 1e6:g} M" if n >= 1_000_000 else f"{n:,}"


def readme_table(result: dict) -> str:
    rows = result["results"]
    lines = [
        "| results | landing | floor: DuckDB CSV → Parquet | pipeline (Prefect) | × floor | ingest to publish "
        "| × floor | orchestration overhead | same steps without Prefect | × floor "
        "| peak RSS pipeline (+ Prefect server) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {_size(r['n_results'])} ({r['rows_in']:,} rows) | {r['landing']['bytes'] / 1e6:,.0f} MB, "
            f"{r['landing']['files']} files | {r['floor']['seconds']:.1f} s | {r['pipeline_seconds']:.1f} s | "
            f"{r['floor_ratio']:.1f} | {_n(r.get('stages_seconds'), '{:.1f} s')} | "
            f"{_n(r.get('stages_floor_ratio'), '{:.1f}')} | "
            f"{r['orchestration_seconds']:.1f} s ({r['orchestration_share']:.0%}) | "
            f"{_n(r.get('plain_seconds'), '{:.1f} s')} | {_n(r.get('plain_floor_ratio'), '{:.1f}')} | "
            f"{r['peak_rss_bytes'] / GB:.2f} GB ({r['peak_tree_rss_bytes'] / GB:.2f} GB) |")
    lines += [
        "",
        "Rows per second per stage and per thread, under Prefect (without Prefect, in brackets); "
        "Prefect start-up is paid once per process, outside the pipeline's time:",
        "",
        "| results | ingest | validate | transcode | publish | whole pipeline | floor | Prefect start-up |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        plain = r.get("plain_rows_per_second") or {}
        cells = [f"{_n(r['rows_per_second'][s])} ({_n(plain.get(s))})" for s in STAGES]
        lines.append(f"| {_size(r['n_results'])} | {' | '.join(cells)} | {_n(r['pipeline_rows_per_second'])} | "
                     f"{_n(r['floor_rows_per_second'])} | {r['prefect']['prefect_startup_seconds']:.1f} s |")
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    for t in result["targets"]:
        met = "not run" if t["met"] is None else ("yes" if t["met"] else "**no**")
        measured = "-" if t["measured"] is None else t["measured"]
        if isinstance(measured, float) and "overhead" in t["target"]:
            measured = f"{measured:.0%}"
        elif isinstance(measured, float) and "memory" in t["target"]:
            measured = f"{measured:.2f} GB"
        elif isinstance(measured, float):
            measured = f"{measured:.1f}x"
            if t.get("stages") is not None:
                measured += f" (ingest to publish alone: {t['stages']:.1f}x)"
        lines.append(f"| {t['target']} | {measured} | {met} |")
    m = result["machine"]
    lines += ["", f"Measured {result['started_at'][:10]} on {m['cpus']} cores, {m['memory_bytes'] / GB:.0f} GB RAM, "
                  f"Python {m['python']}, polars {m['polars']}, DuckDB {m['duckdb']}, Prefect {m['prefect']}; "
                  f"load average {m['load_average_at_start'][0]} at start, "
                  f"{m.get('load_average_at_end', ['?'])[0]} at end."]
    return "\n".join(lines)


def markdown(result: dict) -> str:
    lines = [f"# biolake benchmark, {result['started_at']}", "", readme_table(result), "",
             "## Time per stage (seconds)", "",
             "| results | run | reference | discover | ingest | validate | transcode | publish | views | quality gate "
             "| total | every repeat |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    cols = ("reference", "discover", "ingest", "validate", "transcode", "publish", "views", "quality gate")
    for r in result["results"]:
        for label, run in (("Prefect", r["prefect"]), ("without Prefect", r["plain"])):
            if run is None:
                continue
            st = run["stage_seconds"]
            lines.append(f"| {_size(r['n_results'])} | {label} | "
                         + " | ".join(_n(st.get(c), "{:.2f}") for c in cols)
                         + f" | {run['pipeline_seconds']:.2f} | "
                         + ", ".join(f"{x:.1f}" for x in run.get("all_pipeline_seconds", [run["pipeline_seconds"]]))
                         + " |")
    lines += ["", "## Inside the Prefect run", "",
              "Work timed inside the tasks (the step functions), of which biolake's own per-task setup "
              "(settings, context, terminology lookup); the orchestration overhead is the rest (Prefect's "
              "engine, API calls, futures, artifacts). The same steps without Prefect also show how much the "
              "work itself slows down when Prefect's API server competes for the cores:", "",
              "| results | wall | timed work | of which per-task setup | orchestration overhead | "
              "same steps without Prefect | difference |", "|---|---|---|---|---|---|---|"]
    for r in result["results"]:
        p = r["prefect"]
        lines.append(f"| {_size(r['n_results'])} | {p['pipeline_seconds']:.1f} s | {p['work_seconds']:.1f} s | "
                     f"{r['task_setup_seconds']:.1f} s | {r['orchestration_seconds']:.1f} s "
                     f"({r['orchestration_share']:.0%}) | {_n(r.get('plain_seconds'), '{:.1f} s')} | "
                     f"{_n(r.get('vs_plain_seconds'), '{:.1f} s')} ({_n(r.get('vs_plain_share'), '{:.0%}')}) |")
    return "\n".join(lines) + "\n"


def update_readme(readme: Path, table: str) -> None:
    """Replace the text between the Benchmarks section's markers with ``table``."""
    text = readme.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(README_START) + r".*?" + re.escape(README_END), re.S)
    if not pattern.search(text):
        raise ValueError(f"{readme} has no {README_START} ... {README_END} block")
    readme.write_text(pattern.sub(lambda _: f"{README_START}\n{table}\n{README_END}", text), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.report [RESULT.json] [--update-readme]``: print (and publish) a saved run's tables."""
    import argparse
    import json

    repo = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("result", type=Path, nargs="?", default=repo / "bench" / "results" / "latest.json")
    ap.add_argument("--update-readme", action="store_true", help="put the table into README.md's Benchmarks section")
    args = ap.parse_args(argv)
    result = json.loads(args.result.read_text())
    print(markdown(result))
    if args.update_readme:
        update_readme(repo / "README.md", readme_table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
