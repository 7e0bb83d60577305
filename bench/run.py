"""``make bench``: how fast and how big, measured against DuckDB's own CSV-to-Parquet copy (the floor).

    python -m bench.run [--sizes 1000000,5000000,20000000] [--workdir DIR] [--out bench/results]
                        [--seed 42] [--batch 2000000] [--days 7] [--repeat 1] [--skip-plain] [--keep]
                        [--update-readme]

For each size N (results), in one run:

1. a landing of about N results (bench/landing.py: daily files per lab, built in batches);
2. the floor: DuckDB copies every landing file to Parquet (bench/floor.py);
3. the pipeline under Prefect (``flows.pipeline.pipeline``) on a fresh home: wall time, time per
   stage, peak resident memory, and the work timed inside the tasks (bench/timers.py);
4. the same steps without Prefect on another fresh home (unless ``--skip-plain``): the difference
   is the orchestration overhead.

Each of 2-4 runs in its own process, whose peak memory is measured (bench/measure.py);
``--repeat N`` runs 2-4 N times and keeps the fastest of each (and the highest memory peak). Results go
to ``<out>/bench-<timestamp>.json`` and ``.md``, and ``<out>/latest.json`` / ``latest.md``;
``--update-readme`` also replaces the table of the README's Benchmarks section.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from bench import report
from bench.measure import run_measured

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SIZES = (1_000_000, 5_000_000, 20_000_000)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def link_tree(src: Path, dst: Path) -> None:
    """``dst`` as a copy of ``src`` made of hard links (plain copies across file systems)."""
    for path in sorted(src.rglob("*")):
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)


def _fresh_home(base: Path, name: str, landing: Path) -> Path:
    home = base / name
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    link_tree(landing, home / "landing")
    return home


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PYTHONPATH", str(REPO))
    if not env.get("BIOLAKE_PSEUDONYM_SECRET"):
        env["BIOLAKE_DEMO"] = "1"  # synthetic data: the built-in secret is fine
    for var in ("PREFECT_HOME", "PREFECT_API_URL"):
        env.pop(var, None)  # each run gets its own embedded Prefect under <home>/prefect
    return env


class Runner:
    """Runs each part in a child process (``in_process=False``) or here (smoke tests)."""

    def __init__(self, workdir: Path, in_process: bool = False):
        self.workdir, self.in_process = workdir, in_process

    def _child(self, module: str, args: list[str], result: Path, log: Path) -> tuple[dict, dict]:
        m = run_measured([sys.executable, "-m", module, *args], env=_child_env(), cwd=REPO, log=log)
        if m.returncode != 0:
            tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
            raise RuntimeError(f"{module} failed (exit {m.returncode}); end of {log}:\n{tail}")
        mem = {"process_seconds": round(m.seconds, 3), "peak_rss_bytes": m.peak_rss_bytes,
               "peak_tree_rss_bytes": m.peak_tree_rss_bytes}
        return json.loads(result.read_text()), mem

    @staticmethod
    def _self_mem() -> dict:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return {"process_seconds": None, "peak_rss_bytes": peak, "peak_tree_rss_bytes": peak, "in_process": True}

    def landing(self, base: Path, n: int, seed: int, batch: int, days: int) -> dict:
        if self.in_process:
            from bench import landing

            return landing.build(base, n, seed, batch, progress=_say, days=days)
        info, _ = self._child("bench.landing", ["--dest", str(base), "--results", str(n), "--seed", str(seed),
                                                "--batch", str(batch), "--days", str(days)],
                              base / "landing.json", base / "landing.log")
        return info

    def floor(self, base: Path, landing: Path) -> dict:
        out = base / "floor.parquet"
        try:
            if self.in_process:
                from bench import floor

                return {**floor.run(landing, out), **self._self_mem()}
            res, mem = self._child("bench.floor", ["--landing", str(landing), "--out", str(out), "--json",
                                                   str(base / "floor.json")], base / "floor.json", base / "floor.log")
            return {**res, **mem}
        finally:
            out.unlink(missing_ok=True)

    def pipeline(self, home: Path, plain: bool) -> dict:
        if self.in_process:
            from bench import pipeline_once

            res = pipeline_once.run_plain(home) if plain else pipeline_once.run(home, configure=False)
            return {**res, **self._self_mem()}
        out = home.parent / f"{home.name}.json"
        args = ["--home", str(home), "--out", str(out), *(["--plain"] if plain else [])]
        res, mem = self._child("bench.pipeline_once", args, out, home.parent / f"{home.name}.log")
        if res.get("self_peak_rss_bytes"):
            # the pipeline process's own VmHWM: ru_maxrss from wait4 may also count the parent's
            # memory at fork (small here) or a waited child's peak (the embedded Prefect server)
            mem["peak_rss_bytes"] = res["self_peak_rss_bytes"]
            mem["peak_tree_rss_bytes"] = max(mem["peak_tree_rss_bytes"], res["self_peak_rss_bytes"])
        return {**res, **mem}


def _best_of(runs: list[dict], key: str) -> dict:
    """The fastest of repeated runs (the least disturbed by other work on the machine), with every
    run's time and the highest memory peak of all."""
    best = dict(min(runs, key=lambda r: r[key]))
    best[f"all_{key}"] = [r[key] for r in runs]
    for k in ("peak_rss_bytes", "peak_tree_rss_bytes"):
        best[k] = max(r[k] for r in runs)
    return best


def bench_size(runner: Runner, n: int, seed: int, batch: int, days: int, plain: bool, keep: bool,
               repeat: int = 1) -> dict:
    base = runner.workdir / f"n{n}"
    base.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    _say(f"[{n:,}] landing")
    info = runner.landing(base, n, seed, batch, days)
    landing = base / "landing"
    _say(f"[{n:,}] {info['data_lines']:,} lines in {info['files']} files, {info['bytes'] / 1e6:.0f} MB "
         f"({time.perf_counter() - t0:.0f} s)")
    floors, prefect_runs, plain_runs = [], [], []
    for i in range(repeat):
        tag = f"[{n:,}]" + (f" ({i + 1}/{repeat})" if repeat > 1 else "")
        floors.append(runner.floor(base, landing))
        _say(f"{tag} floor (DuckDB) {floors[-1]['seconds']:.1f} s")
        for is_plain, runs, name in ((False, prefect_runs, "home-prefect"), (True, plain_runs, "home-plain")):
            if is_plain and not plain:
                continue
            home = _fresh_home(base, name, landing)
            runs.append(runner.pipeline(home, plain=is_plain))
            _say(f"{tag} {'without' if is_plain else 'under'} Prefect {runs[-1]['pipeline_seconds']:.1f} s")
            if not keep:
                shutil.rmtree(home, ignore_errors=True)
    return report.size_result(n, info, _best_of(floors, "seconds"), _best_of(prefect_runs, "pipeline_seconds"),
                              _best_of(plain_runs, "pipeline_seconds") if plain_runs else None)


def machine() -> dict:
    import duckdb
    import polars
    import prefect

    import psutil

    return {
        "cpus": os.cpu_count(), "memory_bytes": psutil.virtual_memory().total, "python": platform.python_version(),
        "platform": platform.platform(), "polars": polars.__version__, "duckdb": duckdb.__version__,
        "prefect": prefect.__version__, "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def run(sizes: list[int], workdir: Path, out: Path | None, *, seed: int = 42, batch: int = 2_000_000,
        days: int = 7, plain: bool = True, keep: bool = False, in_process: bool = False, repeat: int = 1) -> dict:
    """Benchmark every size; write JSON and markdown into ``out`` (when given) and return the results."""
    workdir.mkdir(parents=True, exist_ok=True)
    runner = Runner(workdir, in_process=in_process)
    started = datetime.now()
    result = {"started_at": started.isoformat(timespec="seconds"), "machine": machine(),
              "settings": {"sizes": sizes, "seed": seed, "batch": batch, "days_per_batch": days, "plain": plain,
                           "repeat": repeat, "in_process": in_process},
              "results": []}
    for n in sizes:
        result["results"].append(bench_size(runner, n, seed, batch, days, plain, keep, repeat))
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result["finished_at"] = datetime.now().isoformat(timespec="seconds")
    result["targets"] = report.targets(result["results"])
    md = report.markdown(result)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        stamp = started.strftime("%Y%m%dT%H%M%S")
        for name in (f"bench-{stamp}", "latest"):
            (out / f"{name}.json").write_text(json.dumps(result, indent=2))
            (out / f"{name}.md").write_text(md)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default=",".join(str(s) for s in DEFAULT_SIZES),
                    help="comma-separated numbers of results (default %(default)s)")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "biolake-bench",
                    help="landings and homes (landings are reused by later runs; default %(default)s)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--batch", type=int, default=2_000_000, help="results per generator batch (memory)")
    ap.add_argument("--days", type=int, default=7, help="days of collection per batch")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run each measurement this many times and keep the fastest (a shared machine is noisy)")
    ap.add_argument("--skip-plain", action="store_true", help="do not run the steps without Prefect")
    ap.add_argument("--keep", action="store_true", help="keep the processed homes in the workdir")
    ap.add_argument("--update-readme", action="store_true", help="put the table into README.md's Benchmarks section")
    args = ap.parse_args(argv)
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    result = run(sizes, args.workdir, args.out, seed=args.seed, batch=args.batch, days=args.days,
                 plain=not args.skip_plain, keep=args.keep, repeat=max(1, args.repeat))
    md = report.markdown(result)
    print(md)
    if args.update_readme:
        report.update_readme(REPO / "README.md", report.readme_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
