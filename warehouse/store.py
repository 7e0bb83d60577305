"""Parquet storage of the warehouse tables, with atomic writes.

Layout: ``<home>/warehouse/<layer>/<table>/`` holds either one sub-folder per partition value
(``file_id=<id>/part-00000.parquet``) or, for whole tables, a single ``data.parquet``. Everything
is first written under ``<home>/warehouse/_tmp/`` and then moved into place with one rename, so a
reader (or a run killed midway) never sees a partial file.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import polars as pl

from warehouse.catalog import Table


class KeptFrames:
    """The frames of one partition as written, kept in memory while they are small.

    A landing file is usually one parsing chunk: its rows go from one step to the next without
    being read back from Parquet. A file of several chunks is read back part by part by the next
    step, so memory stays bounded by the chunk size whatever the file. ``frames`` is None (read the
    partition) until a ``write_partition`` holding at most ``max_rows`` rows has completed.
    """

    def __init__(self, max_rows: int):
        self.max_rows = max_rows
        self._frames: list[pl.DataFrame] | None = []
        self._rows = 0
        self._complete = False

    def add(self, df: pl.DataFrame) -> None:
        if self._frames is None:
            return
        self._rows += df.height
        if self._rows > self.max_rows:
            self._frames = None  # too big to hold: read back from the partition
        else:
            self._frames.append(df)

    def complete(self) -> None:
        """The partition is in place: the frames added so far are all of it."""
        self._complete = True

    @property
    def frames(self) -> list[pl.DataFrame] | None:
        return self._frames if self._complete else None


class Warehouse:
    def __init__(self, home: Path):
        self.home = Path(home).resolve()
        self.root = self.home / "warehouse"
        self.tmp = self.root / "_tmp"

    # -- locations -------------------------------------------------------------------------
    def table_dir(self, t: Table) -> Path:
        return self.root / t.layer / t.name

    def partition_dir(self, t: Table, value: str) -> Path:
        if t.partition_by is None:
            raise ValueError(f"{t.qualified} is not partitioned")
        safe = str(value)
        if not safe or "/" in safe or safe.startswith("."):
            raise ValueError(f"bad partition value {value!r}")
        return self.table_dir(t) / f"{t.partition_by}={safe}"

    def glob(self, t: Table) -> str:
        return str(self.table_dir(t) / "**" / "*.parquet")

    def files(self, t: Table) -> list[Path]:
        d = self.table_dir(t)
        return sorted(d.rglob("*.parquet")) if d.exists() else []

    def partitions(self, t: Table) -> list[str]:
        d = self.table_dir(t)
        if not d.exists():
            return []
        prefix = f"{t.partition_by}="
        return sorted(p.name[len(prefix):] for p in d.iterdir() if p.is_dir() and p.name.startswith(prefix))

    def files_of(self, t: Table, value: str) -> list[Path]:
        d = self.partition_dir(t, value)
        return sorted(d.glob("*.parquet")) if d.exists() else []

    # -- reads -----------------------------------------------------------------------------
    def scan(self, t: Table, partitions: Iterable[str] | None = None) -> pl.LazyFrame:
        if partitions is None:
            files = self.files(t)
        else:
            files = [f for p in partitions for f in sorted(self.partition_dir(t, p).glob("*.parquet"))]
        if not files:
            return t.empty().lazy()
        return pl.scan_parquet([str(f) for f in files], schema=t.schema, missing_columns="insert")

    def read(self, t: Table, partitions: Iterable[str] | None = None) -> pl.DataFrame:
        return self.scan(t, partitions).collect()

    def parts(self, t: Table, value: str, kept: KeptFrames | None = None) -> Iterator[pl.DataFrame]:
        """The frames of one partition, one per part file: those ``kept`` holds when it held them
        all (no read), else each part file read in turn."""
        if kept is not None and kept.frames is not None:
            yield from kept.frames
            return
        for path in self.files_of(t, value):
            yield pl.read_parquet(path)

    # -- writes ----------------------------------------------------------------------------
    def _tmp_path(self) -> Path:
        self.tmp.mkdir(parents=True, exist_ok=True)
        return self.tmp / uuid.uuid4().hex

    def conform(self, t: Table, df: pl.DataFrame) -> pl.DataFrame:
        missing = [c for c in t.schema if c not in df.columns]
        if missing:
            raise ValueError(f"{t.qualified}: missing columns {missing}")
        return df.select([pl.col(n).cast(d) for n, d in t.schema.items()])

    def write_partition(self, t: Table, value: str, frames: Iterable[pl.DataFrame],
                        keep: KeptFrames | None = None) -> int:
        """Replace one partition with ``frames`` (each written as one part file). Returns rows.

        With ``keep``, the frames as written (conformed to the table's schema) are also kept in
        memory, up to ``keep.max_rows`` rows, for the next step to use instead of reading the
        partition back."""
        staging = self._tmp_path()
        staging.mkdir()
        n = 0
        for i, df in enumerate(frames):
            df = self.conform(t, df)
            n += df.height
            df.write_parquet(staging / f"part-{i:05d}.parquet", compression="zstd", statistics=True)
            if keep is not None:
                keep.add(df)
        self._swap_in(staging, self.partition_dir(t, value))
        if keep is not None:
            keep.complete()
        return n

    def write_table(self, t: Table, df: pl.DataFrame) -> int:
        """Replace a whole (unpartitioned) table with ``df``."""
        df = self.conform(t, df)
        staging = self._tmp_path()
        staging.mkdir()
        df.write_parquet(staging / "data.parquet", compression="zstd", statistics=True)
        self._swap_in(staging, self.table_dir(t))
        return df.height

    def write_table_from(self, t: Table, writer) -> None:
        """Replace a whole table with what ``writer(path)`` writes to a Parquet file (e.g. DuckDB COPY)."""
        staging = self._tmp_path()
        staging.mkdir()
        writer(staging / "data.parquet")
        self._swap_in(staging, self.table_dir(t))

    def write_partition_file(self, t: Table, key: str, df: pl.DataFrame) -> None:
        """Add or replace one small file ``<table>/<key>.parquet`` (file log, run log rows)."""
        if not key or "/" in key or key.startswith("."):
            raise ValueError(f"bad key {key!r}")
        df = self.conform(t, df)
        tmp = self._tmp_path()
        df.write_parquet(tmp)
        final = self.table_dir(t) / f"{key}.parquet"
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)

    def delete_partition(self, t: Table, value: str) -> None:
        d = self.partition_dir(t, value)
        if d.exists():
            trash = self._tmp_path()
            os.replace(d, trash)
            shutil.rmtree(trash, ignore_errors=True)

    def _swap_in(self, staging: Path, final: Path) -> None:
        final.parent.mkdir(parents=True, exist_ok=True)
        trash = None
        if final.exists():
            trash = self._tmp_path()
            os.replace(final, trash)
        os.replace(staging, final)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)

    def clean_tmp(self) -> None:
        """Remove leftovers of an interrupted run (never visible to readers)."""
        if self.tmp.exists():
            shutil.rmtree(self.tmp, ignore_errors=True)
