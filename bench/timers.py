"""Wall-clock timers around the pipeline's step functions, to split a Prefect run into work and overhead.

The Prefect tasks of flows/pipeline.py call the steps through their modules (``steps.ingest(...)``,
``pub.publish_fct(...)``), so replacing those module attributes with timed wrappers measures the
work each task does without touching the flow code. Only the outermost timed call of a thread adds
to the work total (``read_refs`` calls ``read_ref``: counted once); every wrapper also keeps its own
total for the breakdown.

The per-file tasks may run on several worker threads at once (BIOLAKE_WORKERS): the work time set
against the flow's wall time is then the time during which at least one step was running (the union
of the outermost calls' intervals, ``work_seconds``); their plain sum is ``work_thread_seconds``.
The orchestration overhead, the wall time beyond ``work_seconds``, is the time when no step ran.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import defaultdict

# (module, attribute, category). Categories: the pipeline stage the work belongs to, or
# "task_setup" for what biolake itself redoes in every task (settings, context, terminology lookup).
# Entries the code base does not (or no longer) define are skipped: the flows evolve.
TIMED: tuple[tuple[str, str, str], ...] = (
    ("flows.steps", "load_ref", "reference"),
    ("flows.steps", "load_terminology", "reference"),
    ("flows.steps", "discover", "discover"),
    ("flows.steps", "ingest", "ingest"),
    ("flows.steps", "ingested", "ingest"),
    ("flows.steps", "quarantine_file_failure", "ingest"),
    ("flows.steps", "validate", "validate"),
    ("flows.steps", "read_ref", "validate"),
    ("flows.steps", "transcode", "transcode"),
    ("flows.steps", "log_file", "file_log"),
    ("flows.privacy", "audit", "file_log"),
    ("flows.steps", "mappings_changed", "transcode"),
    ("flows.steps", "save_mappings_fingerprint", "transcode"),
    ("flows.publish", "publish_fct", "publish"),
    ("flows.publish", "publish_quality", "publish"),
    ("flows.epi", "publish_epi", "publish"),
    ("flows.steps", "read_refs", "publish"),
    ("flows.steps", "compact", "compact"),
    ("flows.steps", "refresh_views", "views"),
    ("warehouse.analyst", "build_analyst_db", "views"),
    ("warehouse.analyst", "restrict_raw_permissions", "run_log"),
    ("flows.quality_gate", "run_quality_gate", "quality gate"),
    ("flows.steps", "write_run_log", "run_log"),
    ("flows.steps", "count_rows", "run_log"),
    ("flows.pipeline", "_ctx", "task_setup"),
    ("flows.pipeline", "terminology_for", "task_setup"),
)
# finer pieces, nested inside the steps above (reported, never added to the work total twice)
NESTED: tuple[tuple[str, str, str], ...] = (
    ("flows.steps", "validate_rows", "validate.pandera"),
    ("flows.steps", "to_staging", "validate.staging"),
)


class WorkTimer:
    def __init__(self) -> None:
        self.by_name: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.by_category: dict[str, float] = defaultdict(float)
        self.work_total = 0.0
        self.intervals: list[tuple[float, float]] = []  # outermost work calls (start, end)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._installed: list[tuple[object, str, object]] = []

    def _wrap(self, fn, name: str, category: str, counts_as_work: bool):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            depth = getattr(self._local, "depth", 0)
            self._local.depth = depth + 1
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t0
                self._local.depth = depth
                with self._lock:
                    self.by_name[name] += dt
                    self.calls[name] += 1
                    if counts_as_work and depth == 0:
                        self.by_category[category] += dt
                        self.work_total += dt
                        self.intervals.append((t0, t0 + dt))

        timed.__bench_original__ = fn  # type: ignore[attr-defined]
        return timed

    def install(self) -> "WorkTimer":
        import importlib

        for specs, counts in ((TIMED, True), (NESTED, False)):
            for mod_name, attr, category in specs:
                try:
                    mod = importlib.import_module(mod_name)
                except ImportError:
                    continue
                original = getattr(mod, attr, None)
                if original is None:
                    continue
                self._installed.append((mod, attr, original))
                setattr(mod, attr, self._wrap(original, f"{mod_name}.{attr}", category, counts))
        return self

    def uninstall(self) -> None:
        for mod, attr, original in reversed(self._installed):
            setattr(mod, attr, original)
        self._installed.clear()

    def covered_seconds(self) -> float:
        """The length of the union of the work intervals: wall time with at least one step running."""
        total, end = 0.0, float("-inf")
        for a, b in sorted(self.intervals):
            if b <= end:
                continue
            total += b - max(a, end)
            end = b
        return total

    def report(self) -> dict:
        return {
            "work_seconds": round(self.covered_seconds(), 3),
            "work_thread_seconds": round(self.work_total, 3),
            "work_by_category": {k: round(v, 3) for k, v in sorted(self.by_category.items())},
            "by_function": {k: {"seconds": round(v, 3), "calls": self.calls[k]}
                            for k, v in sorted(self.by_name.items())},
        }
