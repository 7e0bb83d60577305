"""Many small landing files: what a warehouse that has loaded thousands of small deliveries costs.

    uv run python -m bench.many_files [--files 1000] [--rows-per-file 200] [--home DIR]
                                      [--reports | --no-reports] [--seed 42] [--out bench/results]

Real deliveries are many small files (dozens of labs, one file per lab and day, for months), and
each landing file leaves several Parquet files in the warehouse (raw, rejected lines, staging,
quarantine, coded, fct, ...). This benchmark builds such a warehouse and times what the next runs
cost once it is there:

1. a landing of ``--files`` CSV files of about ``--rows-per-file`` results each, from the synthetic
   generator (bench/landing.py: one file per lab and validation day, over as many days as needed,
   ending a week before today so that no collection date is in the future;
   the generator's re-deliveries, ``*_renvoi.csv``, are left out, so every file is new). One more
   lab-day file, of a typical size and among the newest days, is held back. Generation is not timed
   (it is cached under ``<home>/generated`` and reused by a later call with the same parameters);
2. first load: the pipeline on all of it;
3. no-op run: the pipeline again, with nothing new in the landing;
4. one new file: the held-back file is delivered and the pipeline runs again.

Each run is a separate process (``flows.pipeline.pipeline`` with its embedded Prefect, as
``biolake run`` does; with ``--no-reports`` the weekly and data-quality reports are skipped), whose
wall time and peak resident memory are measured (bench/measure.py: the process's own peak, and the
sampled peak of its process tree with the embedded Prefect server). "pipeline" is the flow call
alone (without Python's imports and Prefect's start-up, timed apart by a trivial flow run first);
the stages are the flow's own ``stage_seconds`` (the per-file stages, ingest/validate/transcode,
are summed over the worker threads). After each run the warehouse is measured without assuming its
layout: every ``*.parquet`` under ``<home>/warehouse`` (rglob), the distinct ones (hard links counted
once) and the size on disk of everything under it (allocated blocks, hard links once).

Everything is written under ``--home`` (default: a new directory under $TMPDIR/biolake-bench/, kept
after the run for inspection); the figures are printed and written to
``<out>/many_files-<timestamp>.json`` and ``<out>/many_files-latest.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MARKER = ".biolake-many-files"  # a home this benchmark made: it may empty it on a later call
KEEP = ("generated", MARKER)  # what a later call keeps in such a home (the generated landing)
MAIN_STAGES = ("views", "quality gate", "reports", "publish", "compact")  # those the flow has are shown


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# the child process: one pipeline run
# ----------------------------------------------------------------------------------------------
def run_once(home: Path, out: Path, reports: bool) -> None:
    """One pipeline run on ``home`` (in the child process); its figures to ``out``."""
    t_start = time.perf_counter()
    os.environ["BIOLAKE_DEMO"] = "1"  # synthetic data: the built-in pseudonym secret
    from flows.cli import configure_prefect
    from flows.settings import Settings

    configure_prefect(Settings(home=home, demo=True))
    from prefect import flow

    from flows.pipeline import pipeline
    from flows.quality_gate import summary_of

    imports = time.perf_counter() - t_start

    @flow(name="biolake-bench-warmup")
    def warmup() -> int:
        return 1

    t0 = time.perf_counter()
    warmup()  # starts the embedded Prefect server: not part of the pipeline's time
    startup = time.perf_counter() - t0
    t0 = time.perf_counter()
    state = pipeline(home=str(home), reports=reports, return_state=True)
    wall = time.perf_counter() - t0
    summary = summary_of(state)  # a failed quality gate still returns the summary
    if isinstance(summary, BaseException):
        raise summary
    gate = summary.get("quality_gate") or {}
    result = {
        "imports_seconds": round(imports, 3), "prefect_startup_seconds": round(startup, 3),
        "pipeline_seconds": round(wall, 3), "stage_seconds": summary.get("stage_seconds", {}),
        **{k: summary.get(k) for k in ("files_seen", "files_new", "files_duplicate", "files_failed", "rows_in",
                                       "rows_valid", "rows_quarantined", "incremental", "marts")},
        "quality_gate_ok": gate.get("ok"), "quality_gate_failures": gate.get("failures"),
        "state": state.type.value if hasattr(state.type, "value") else str(state.type),
        "self_peak_rss_bytes": _peak_rss(),
    }
    out.write_text(json.dumps(result, indent=2, default=str))


def _peak_rss() -> int | None:
    from bench.pipeline_once import self_peak_rss  # VmHWM: not what the process inherited

    return self_peak_rss()


def _child_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["BIOLAKE_HOME"] = str(home)
    env["BIOLAKE_DEMO"] = "1"
    env.pop("BIOLAKE_PSEUDONYM_SECRET", None)  # synthetic data: always the demo's own key
    for var in ("PREFECT_HOME", "PREFECT_API_URL"):
        env.pop(var, None)  # each home gets its own embedded Prefect under <home>/prefect
    return env


def pipeline_run(home: Path, name: str, reports: bool) -> dict:
    """Run the pipeline once in a child process; its figures, wall time and peak memory."""
    from bench.measure import run_measured

    logs = home / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    out, log = logs / f"{name}.json", logs / f"{name}.log"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "bench.many_files", "_run-once", str(home), str(out),
           "--reports" if reports else "--no-reports"]
    m = run_measured(cmd, env=_child_env(home), cwd=REPO, log=log)
    if m.returncode != 0 or not out.exists():
        tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
        raise RuntimeError(f"the {name} run failed (exit {m.returncode}); end of {log}:\n{tail}")
    res = json.loads(out.read_text())
    peak = res.get("self_peak_rss_bytes") or m.peak_rss_bytes
    return {**res, "process_seconds": round(m.seconds, 3), "peak_rss_bytes": peak,
            "peak_tree_rss_bytes": max(m.peak_tree_rss_bytes, peak), "log": str(log)}


# ----------------------------------------------------------------------------------------------
# the landing
# ----------------------------------------------------------------------------------------------
def _lab_day(path: Path) -> tuple[str, str]:
    """(YYYYMMDD, lab) of a generated file ``<lab>/<lab>_<YYYYMMDD>.csv``."""
    return path.stem.rsplit("_", 1)[1], path.parent.name


def _data_lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 20), b"")) - 1


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def build_landing(home: Path, n_files: int, rows_per_file: int, seed: int) -> dict:
    """Generate (or reuse) the files, link ``n_files`` of them into ``<home>/landing`` and hold one
    more back under ``<home>/held``; describe what was chosen."""
    from bench import landing
    from transforms.synthetic.seeds import load_seeds

    n_labs = len(load_seeds().labs)
    # one file per lab and validation day; a margin for lab-days without any result (small labs
    # on Sundays) and for the days cut off at the end
    days = math.ceil((n_files + 1) / n_labs * 1.1) + 3
    n_results = rows_per_file * n_labs * days
    batch = 2_000_000
    k = max(1, math.ceil(n_results / batch))  # bench/landing.py: ``days`` days per generator batch
    days_per_batch = math.ceil(days / k)
    t0 = time.perf_counter()
    # the period ends a week before today (landing.default_start): future collection dates are quarantined
    info = landing.build(home / "generated", n_results, seed=seed, batch=min(batch, math.ceil(n_results / k)),
                         progress=_say, days=days_per_batch)
    generated = home / "generated" / "landing"
    files = sorted((p for p in generated.rglob("*.csv") if p.is_file() and not p.stem.endswith("_renvoi")),
                   key=_lab_day)
    if len(files) < n_files + 1:
        raise RuntimeError(f"the generator wrote {len(files)} files, {n_files + 1} needed: "
                           "raise --rows-per-file or lower --files")
    chosen = files[: n_files + 1]
    lines = {p: _data_lines(p) for p in chosen}
    typical = sorted(lines.values())[len(lines) // 2]
    # the held-back file: the newest of a typical size (the very last lab-day may be a small lab's Sunday)
    held = next(p for p in reversed(chosen) if lines[p] >= typical / 2)
    for p in chosen:
        rel = p.relative_to(generated)
        _link(p, (home / "held" if p == held else home / "landing") / rel)
    loaded = [p for p in chosen if p != held]
    sizes = sorted(lines[p] for p in loaded)
    return {
        "files": len(loaded), "labs": len({p.parent.name for p in loaded}),
        "days": len({_lab_day(p)[0] for p in loaded}),
        "first_day": _lab_day(loaded[0])[0], "last_day": max(_lab_day(p)[0] for p in loaded),
        "data_lines": sum(sizes), "bytes": sum(p.stat().st_size for p in loaded),
        "lines_per_file": {"min": sizes[0], "median": sizes[len(sizes) // 2], "mean": round(sum(sizes) / len(sizes), 1),
                           "max": sizes[-1]},
        "new_file": {"path": held.relative_to(generated).as_posix(), "data_lines": lines[held],
                     "bytes": held.stat().st_size},
        "generator": {"results": n_results, "days": days_per_batch * k, "batches": k,
                      "files_written": info["files"], "seconds": info.get("seconds"),
                      "this_call_seconds": round(time.perf_counter() - t0, 1)},
    }


def deliver_held(home: Path) -> None:
    held = home / "held"
    for p in sorted(held.rglob("*")):
        if p.is_file():
            dst = home / "landing" / p.relative_to(held)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(p, dst)
            os.utime(dst)  # delivered now


# ----------------------------------------------------------------------------------------------
# the warehouse
# ----------------------------------------------------------------------------------------------
def measure_warehouse(home: Path) -> dict:
    """Parquet files and size of ``<home>/warehouse`` whatever its layout (hard links counted once
    for the distinct files and the size on disk)."""
    root = home / "warehouse"
    parquet = 0
    inodes: set[tuple[int, int]] = set()
    pq_inodes: set[tuple[int, int]] = set()
    disk = apparent = pq_disk = 0
    where: Counter = Counter()
    if root.is_dir():
        for p in root.rglob("*"):
            try:
                st = p.lstat()
            except OSError:
                continue  # gone meanwhile
            if not p.is_file() or p.is_symlink():
                continue
            key = (st.st_dev, st.st_ino)
            is_pq = p.suffix == ".parquet"
            if is_pq:
                parquet += 1
                parts = p.relative_to(root).parts[:-1]
                # grouped by the first two folders, whatever they are (no layout assumed)
                where["/".join(parts[:2]) or "."] += 1
            if key in inodes:
                continue
            inodes.add(key)
            disk += st.st_blocks * 512
            apparent += st.st_size
            if is_pq:
                pq_inodes.add(key)
                pq_disk += st.st_blocks * 512
    duckdb_bytes = sum(p.stat().st_size for p in home.rglob("*.duckdb") if p.is_file()
                       and "generated" not in p.relative_to(home).parts)
    return {"parquet_files": parquet, "parquet_files_distinct": len(pq_inodes), "files_distinct": len(inodes),
            "disk_bytes": disk, "apparent_bytes": apparent, "parquet_disk_bytes": pq_disk,
            "duckdb_bytes": duckdb_bytes, "parquet_files_by_folder": dict(where.most_common())}


# ----------------------------------------------------------------------------------------------
# the benchmark
# ----------------------------------------------------------------------------------------------
def _prepare_home(home: Path | None, n_files: int, rows: int) -> Path:
    if home is None:
        base = Path(tempfile.gettempdir()) / "biolake-bench"
        base.mkdir(parents=True, exist_ok=True)
        home = Path(tempfile.mkdtemp(prefix=f"many-files-{n_files}x{rows}-", dir=base))
    home = home.expanduser().resolve()
    if home == REPO or REPO in home.parents:
        raise SystemExit(f"--home {home} is inside the repository: choose a directory outside it")
    if home.exists() and any(home.iterdir()):
        if not (home / MARKER).exists():
            raise SystemExit(f"--home {home} exists and was not made by this benchmark: choose a new or empty "
                             "directory")
        for p in home.iterdir():  # an earlier call's home: start afresh, keep the generated files
            if p.name in KEEP:
                continue
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    home.mkdir(parents=True, exist_ok=True)
    (home / MARKER).write_text("made by bench/many_files.py; emptied by its next call on this home\n")
    return home


def code_version() -> dict:
    """The code measured: the repository's commit and the files changed since it (before/after
    comparisons of uncommitted work), when it is a git checkout."""
    import subprocess

    def git(*args: str) -> str | None:
        try:
            res = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return res.stdout if res.returncode == 0 else None

    return {"repo": str(REPO), "commit": (git("rev-parse", "HEAD") or "").strip() or None,
            "modified": [line[3:] for line in (git("status", "--porcelain", "--untracked-files=no") or "").splitlines()]}


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:,.0f}"


def _s(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def table(result: dict) -> str:
    runs = result["runs"]
    stage_names = [s for s in MAIN_STAGES if any(s in r["stage_seconds"] for r in runs.values())]
    head = ["run", "landing files", "new files", "rows in", "wall s", "pipeline s", "Prefect start s",
            *[f"{s} s" for s in stage_names], "other stages s", "peak RSS MB (+Prefect)", "parquet files",
            "distinct", "warehouse MB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in runs.items():
        st = r["stage_seconds"]
        other = sum(v for k, v in st.items() if k not in stage_names)
        wh = r["warehouse"]
        lines.append("| " + " | ".join([
            name, f"{r['landing_files']:,}", f"{r['files_new']:,}", f"{r['rows_in']:,}", _s(r["process_seconds"]),
            _s(r["pipeline_seconds"]), _s(r["prefect_startup_seconds"]), *[_s(st.get(s)) for s in stage_names],
            _s(other), f"{_mb(r['peak_rss_bytes'])} ({_mb(r['peak_tree_rss_bytes'])})", f"{wh['parquet_files']:,}",
            f"{wh['parquet_files_distinct']:,}", _mb(wh["disk_bytes"]),
        ]) + " |")
    return "\n".join(lines)


def summary_text(result: dict) -> str:
    land, runs = result["landing"], result["runs"]
    first, noop, one = runs["first load"], runs["no-op"], runs["one new file"]
    wh = first["warehouse"]
    out = [
        f"landing: {land['files']:,} CSV files ({land['labs']} labs x {land['days']} days, {land['first_day']} to "
        f"{land['last_day']}), {land['data_lines']:,} lines, {land['bytes'] / 1e6:.1f} MB; lines per file "
        f"min {land['lines_per_file']['min']}, median {land['lines_per_file']['median']}, "
        f"max {land['lines_per_file']['max']}; new file {land['new_file']['path']} "
        f"({land['new_file']['data_lines']} lines)",
        "",
        table(result),
        "",
        f"Parquet files per loaded file: {wh['parquet_files'] / max(1, first['files_new']):.1f} "
        f"({wh['parquet_files_distinct'] / max(1, first['files_new']):.1f} distinct); "
        f"mean Parquet file {wh['parquet_disk_bytes'] / max(1, wh['parquet_files_distinct']) / 1e3:.1f} kB on disk; "
        f"DuckDB files {_mb(wh['duckdb_bytes'])} MB",
        "Parquet files by folder (after the first load): " + ", ".join(
            f"{k} {v:,}" for k, v in list(wh["parquet_files_by_folder"].items())[:12]),
        f"no-op run: {noop['process_seconds']:.1f} s wall, of which Prefect start-up "
        f"{noop['prefect_startup_seconds']:.1f} s, imports {noop['imports_seconds']:.1f} s, pipeline "
        f"{noop['pipeline_seconds']:.1f} s ({max(0.0, noop['pipeline_seconds'] - sum(noop['stage_seconds'].values())):.1f}"
        " s of it outside the timed stages); stages: "
        + ", ".join(f"{k} {v:.1f}" for k, v in sorted(noop["stage_seconds"].items(), key=lambda kv: -kv[1])
                    if v >= 0.05),
        f"one new file: {one['process_seconds']:.1f} s wall for {one['rows_in']:,} rows; stages: "
        + ", ".join(f"{k} {v:.1f}" for k, v in sorted(one["stage_seconds"].items(), key=lambda kv: -kv[1])
                    if v >= 0.05),
        f"quality gate passed: first {first['quality_gate_ok']}, no-op {noop['quality_gate_ok']}, "
        f"one new file {one['quality_gate_ok']}",
    ]
    return "\n".join(out)


def run(n_files: int, rows_per_file: int, home: Path | None, reports: bool, seed: int, out: Path | None) -> dict:
    from bench.run import machine

    if n_files < 1 or rows_per_file < 1:
        raise SystemExit("--files and --rows-per-file must be at least 1")
    home = _prepare_home(home, n_files, rows_per_file)
    started = datetime.now()
    _say(f"home: {home}")
    t0 = time.perf_counter()
    land = build_landing(home, n_files, rows_per_file, seed)
    _say(f"landing: {land['files']:,} files, {land['data_lines']:,} lines ({time.perf_counter() - t0:.0f} s, "
         "not timed)")
    result = {"started_at": started.isoformat(timespec="seconds"), "machine": machine(), "code": code_version(),
              "home": str(home),
              "settings": {"files": n_files, "rows_per_file": rows_per_file, "reports": reports, "seed": seed,
                           "workers": os.environ.get("BIOLAKE_WORKERS")},
              "landing": land, "runs": {}}
    for name in ("first load", "no-op", "one new file"):
        if name == "one new file":
            deliver_held(home)
        n_landing = sum(1 for p in (home / "landing").rglob("*") if p.is_file())
        _say(f"{name}: running on {n_landing:,} landing files ...")
        r = pipeline_run(home, name.replace(" ", "-"), reports)
        r["landing_files"] = n_landing
        r["warehouse"] = measure_warehouse(home)
        result["runs"][name] = r
        _say(f"{name}: {r['process_seconds']:.1f} s wall ({r['pipeline_seconds']:.1f} s pipeline), "
             f"{r['files_new']} new file(s), {r['warehouse']['parquet_files']:,} Parquet files")
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result["finished_at"] = datetime.now().isoformat(timespec="seconds")
    first, noop = result["runs"]["first load"], result["runs"]["no-op"]
    result["figures"] = {
        "files_loaded": first["files_new"],
        "parquet_files": first["warehouse"]["parquet_files"],
        "parquet_files_distinct": first["warehouse"]["parquet_files_distinct"],
        "parquet_files_per_input_file": round(first["warehouse"]["parquet_files"] / max(1, first["files_new"]), 2),
        "warehouse_disk_bytes": first["warehouse"]["disk_bytes"],
        **{f"{k.replace(' ', '_').replace('-', '_')}_seconds": r["process_seconds"]
           for k, r in result["runs"].items()},
        "noop_stage_seconds": {s: noop["stage_seconds"].get(s) for s in MAIN_STAGES if s in noop["stage_seconds"]},
    }
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        stamp = started.strftime("%Y%m%dT%H%M%S")
        for name in (f"many_files-{stamp}", "many_files-latest"):
            (out / f"{name}.json").write_text(json.dumps(result, indent=2, default=str))
        result["written_to"] = str(out / f"many_files-{stamp}.json")
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_run-once"]:  # the child process of one run (internal)
        ap = argparse.ArgumentParser(prog="bench.many_files _run-once")
        ap.add_argument("home", type=Path)
        ap.add_argument("out", type=Path)
        ap.add_argument("--reports", action=argparse.BooleanOptionalAction, default=True)
        args = ap.parse_args(argv[1:])
        run_once(args.home.resolve(), args.out, args.reports)
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=1000, help="landing files in the first load (default %(default)s)")
    ap.add_argument("--rows-per-file", type=int, default=200, help="about how many results per file "
                    "(default %(default)s)")
    ap.add_argument("--home", type=Path, default=None,
                    help="where everything is written (default: a new directory under $TMPDIR/biolake-bench)")
    ap.add_argument("--reports", action=argparse.BooleanOptionalAction, default=True,
                    help="build the reports in every run, as `biolake run` does (default: yes)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results",
                    help="where the JSON goes (default %(default)s)")
    args = ap.parse_args(argv)
    result = run(args.files, args.rows_per_file, args.home, args.reports, args.seed, args.out)
    print(summary_text(result))
    if result.get("written_to"):
        print(f"\nJSON: {result['written_to']}; home kept: {result['home']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
