"""Parquet storage of the warehouse tables, with atomic writes and compaction.

Layout: ``<home>/warehouse/<layer>/<table>/`` holds, for whole tables, a single ``data.parquet``;
for partitioned tables, each partition value (a file id, a week) either in a sub-folder of its own,
``<column>=<value>/part-00000.parquet`` (a *loose* partition), or packed with many others in one
file ``_packs/pack-<seq>-<id>.parquet``, whose rows carry the value in their ``<column>`` column and
whose footer lists the values it holds with their row counts (key ``biolake.partitions``). The logs
written a row or a run at a time (``Table.file_key``: file log, audit events, run log) keep one small
file per value, ``<value>.parquet``, loose in the same way until packed.

Every write goes first under ``<home>/warehouse/_tmp/`` and is moved into place with one rename, so
a reader (or a run killed midway) never sees a partial file. Which copy of a partition is the
true one follows two rules, so that every step of a compaction (or a run killed between them)
leaves the data whole and never counted twice:

1. a loose folder wins over every pack (it was written after the pack: a re-coding, a purge); a
   folder holding only the ``_deleted`` marker is a *tombstone*: the partition was deleted;
2. among packs, the one with the highest ``seq`` wins.

A pack row whose partition is held by a loose folder, a tombstone or a newer pack is *stale*:
readers here (``scan``, ``parts``, ``sql_source``) skip it, and the next ``compact`` rewrites its
pack without it. ``compact`` (each run, before the DuckDB views are built) packs the small loose
partitions of the tables partitioned per landing file and the small files of the logs: each landing
file left about eight Parquet files, and a warehouse of thousands of small daily files otherwise made every query open
tens of thousands of files (QA: a run with nothing new took 87 to 100 s at 2,840 files).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from warehouse.catalog import Table

PACKS = "_packs"
DELETED = "_deleted"
PACK_INDEX_KEY = b"biolake.partitions"
PACK_ROW_GROUP = 65_536


def sql_literal(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


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


@dataclass(frozen=True)
class Pack:
    path: Path
    seq: int
    rows: dict[str, int]  # partition value -> rows (0 for a partition written with no row)


@dataclass
class Layout:
    """Where each partition of one table is, at one moment (``Warehouse.layout``)."""

    loose: dict[str, Path]  # value -> folder (not a tombstone); may hold no Parquet file
    tombstones: dict[str, Path]
    packs: list[Pack]  # by seq, ascending
    holder: dict[str, Pack] = field(default_factory=dict)  # value -> the pack holding it (not loose)

    def __post_init__(self):
        shadowed = self.loose.keys() | self.tombstones.keys()
        for pack in self.packs:  # ascending seq: a newer pack replaces an older one
            for value in pack.rows:
                if value not in shadowed:
                    self.holder[value] = pack

    def live(self, pack: Pack) -> list[str]:
        return [v for v in pack.rows if self.holder.get(v) is pack]

    def is_clean(self, pack: Pack) -> bool:
        return all(self.holder.get(v) is pack for v in pack.rows)

    @property
    def clean(self) -> bool:
        """No stale pack row and no tombstone: every Parquet file of the table is wholly true."""
        return not self.tombstones and all(self.is_clean(p) for p in self.packs)


class Warehouse:
    def __init__(self, home: Path):
        self.home = Path(home).resolve()
        self.root = self.home / "warehouse"
        self.tmp = self.root / "_tmp"
        self._pack_rows: dict[Path, dict[str, int]] = {}  # packs never change once written

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

    def packs_dir(self, t: Table) -> Path:
        return self.table_dir(t) / PACKS

    def glob(self, t: Table) -> str:
        return str(self.table_dir(t) / "**" / "*.parquet")

    def files(self, t: Table) -> list[Path]:
        """Every Parquet file of the table (loose partitions and packs). They are all true rows only
        when ``layout(t).clean``: read through ``scan`` or ``sql_source`` otherwise."""
        d = self.table_dir(t)
        return sorted(d.rglob("*.parquet")) if d.exists() else []

    def _pack_index(self, path: Path) -> dict[str, int]:
        if path not in self._pack_rows:
            import pyarrow.parquet as pq

            meta = pq.read_metadata(path).metadata or {}
            self._pack_rows[path] = json.loads(meta[PACK_INDEX_KEY]) if PACK_INDEX_KEY in meta else {}
        return self._pack_rows[path]

    def _packs(self, t: Table) -> list[Pack]:
        """The table's packs, by seq ascending (a listing of ``_packs/``; indexes kept once read)."""
        d = self.packs_dir(t)
        if not d.is_dir():
            return []
        packs = [Pack(p, int(p.name.split("-")[1]), self._pack_index(p)) for p in d.glob("pack-*.parquet")]
        return sorted(packs, key=lambda k: (k.seq, k.path.name))

    def layout(self, t: Table) -> Layout:
        d = self.table_dir(t)
        loose: dict[str, Path] = {}
        tombstones: dict[str, Path] = {}
        if _col(t) is None or not d.exists():
            return Layout(loose, tombstones, [])
        if t.file_key is not None:  # one file per value at the table's root
            loose = {p.stem: p for p in d.glob("*.parquet")}
            return Layout(loose, tombstones, self._packs(t))
        prefix = f"{t.partition_by}="
        for p in d.iterdir():
            if p.is_dir() and p.name.startswith(prefix):
                value = p.name[len(prefix):]
                if (p / DELETED).exists():
                    tombstones[value] = p
                else:
                    loose[value] = p
        return Layout(loose, tombstones, self._packs(t))

    def _holder(self, t: Table, value: str, lay: Layout | None = None) -> Path | Pack | None:
        """Where one partition's rows are: its folder (loose, possibly without file), the pack
        holding it, or None (never written, or deleted). Looks at that folder and the packs only,
        not at every partition (per-file steps call it for each file)."""
        if lay is not None:
            return lay.loose.get(value) or lay.holder.get(value)
        d = self._loose_path(t, value)
        if t.file_key is not None:
            if d.exists():
                return d
        elif d.is_dir():
            return None if (d / DELETED).exists() else d
        listing = [p for p in self._packs(t) if value in p.rows]
        return listing[-1] if listing else None

    def partitions(self, t: Table) -> list[str]:
        lay = self.layout(t)
        return sorted(lay.loose.keys() | lay.holder.keys())

    def files_of(self, t: Table, value: str) -> list[Path]:
        """The Parquet files of a loose partition ([] for a packed one: see ``holds``, ``parts``)."""
        d = self._loose_path(t, value)
        if t.file_key is not None:
            return [d] if d.exists() else []
        return sorted(d.glob("*.parquet")) if d.exists() else []

    def _loose_path(self, t: Table, value: str) -> Path:
        """The folder of a partition, or the file of a keyed table's value."""
        if t.file_key is not None:
            _check_key(value)
            return self.table_dir(t) / f"{value}.parquet"
        return self.partition_dir(t, value)

    def holds(self, t: Table, value: str, lay: Layout | None = None) -> bool:
        """Whether the partition was written with at least one part (possibly of no row)."""
        where = self._holder(t, value, lay)
        return isinstance(where, Pack) or (where is not None and bool(self.files_of(t, value)))

    def partition_rows(self, t: Table) -> dict[str, int]:
        """Rows per partition value, from Parquet footers and pack indexes only (no data read)."""
        import pyarrow.parquet as pq

        lay = self.layout(t)
        out = {v: pack.rows[v] for v, pack in lay.holder.items()}
        for v in lay.loose:
            files = self.files_of(t, v)
            if files:
                out[v] = sum(pq.read_metadata(f).num_rows for f in files)
        return out

    def read_partition(self, t: Table, value: str, columns: list[str] | None = None,
                       lay: Layout | None = None) -> pl.DataFrame | None:
        """One partition's rows (or ``columns`` of them) as its parts hold them, None when it
        holds no part."""
        where = self._holder(t, value, lay)
        if isinstance(where, Pack):
            lf = self._scan_files(t, [where.path]).filter(pl.col(_col(t)) == value)
            return (lf.select(columns) if columns is not None else lf).collect()
        files = self.files_of(t, value) if where is not None else []
        return pl.read_parquet(files, columns=columns) if files else None

    def partition_columns(self, t: Table, value: str, lay: Layout | None = None) -> set[str] | None:
        """The column names of a partition's first part (None when it holds none)."""
        where = self._holder(t, value, lay)
        if isinstance(where, Pack):
            return set(pl.read_parquet_schema(where.path))
        files = self.files_of(t, value) if where is not None else []
        return set(pl.read_parquet_schema(files[0])) if files else None

    # -- reads -----------------------------------------------------------------------------
    def _scan_files(self, t: Table, files: list[Path]) -> pl.LazyFrame:
        return pl.scan_parquet([str(f) for f in files], schema=t.schema, missing_columns="insert")

    def _where(self, t: Table, partitions: Iterable[str] | None) -> tuple[list[Path], list[tuple[Pack, list[str]]]]:
        """The loose files and the packs (with the values to read in each) of the table's true rows,
        or of some partitions. A few partitions (a file's steps) are looked up one by one, without
        listing the table's every folder."""
        if partitions is not None:
            wanted = sorted(set(partitions))
            if len(wanted) <= 16:
                loose: list[Path] = []
                packed: dict[Path, tuple[Pack, list[str]]] = {}
                for v in wanted:
                    where = self._holder(t, v)
                    if isinstance(where, Pack):
                        packed.setdefault(where.path, (where, []))[1].append(v)
                    elif where is not None:
                        loose += self.files_of(t, v)
                return loose, list(packed.values())
        lay = self.layout(t)
        keep = None if partitions is None else set(partitions)
        loose = [f for v in sorted(lay.loose) if keep is None or v in keep for f in self.files_of(t, v)]
        packs = [(pack, [v for v in lay.live(pack) if keep is None or v in keep]) for pack in lay.packs]
        return loose, [(pack, take) for pack, take in packs if take]

    def scan(self, t: Table, partitions: Iterable[str] | None = None) -> pl.LazyFrame:
        if _col(t) is None:
            files = self.files(t)
            return self._scan_files(t, files) if files else t.empty().lazy()
        loose, packs = self._where(t, partitions)
        frames = [self._scan_files(t, loose)] if loose else []
        for pack, take in packs:
            lf = self._scan_files(t, [pack.path])
            if len(take) < len(pack.rows):
                lf = lf.filter(pl.col(_col(t)).is_in(take))
            frames.append(lf)
        if not frames:
            return t.empty().lazy()
        return frames[0] if len(frames) == 1 else pl.concat(frames, how="vertical")

    def read(self, t: Table, partitions: Iterable[str] | None = None) -> pl.DataFrame:
        return self.scan(t, partitions).collect()

    def parts(self, t: Table, value: str, kept: KeptFrames | None = None) -> Iterator[pl.DataFrame]:
        """The frames of one partition: those ``kept`` holds when it held them all (no read), else
        each part file of a loose partition read in turn, or its rows of the pack holding it."""
        if kept is not None and kept.frames is not None:
            yield from kept.frames
            return
        where = self._holder(t, value)
        if isinstance(where, Pack):
            yield self._scan_files(t, [where.path]).filter(pl.col(_col(t)) == value).collect()
        elif where is not None:
            for path in self.files_of(t, value):
                yield pl.read_parquet(path)

    def sql_source(self, t: Table, partitions: Iterable[str] | None = None, union_by_name: bool = True,
                   pinned: bool = False) -> str:
        """A DuckDB ``FROM`` item over the table's true rows (or those of some partitions): a
        ``read_parquet`` of its files, with the packs holding stale rows filtered; an empty typed
        relation when there is none, so queries never fail on a young warehouse.

        ``pinned``: the files named, never a glob, for SQL kept beyond this moment (the DuckDB
        views). A glob would also read a partition rewritten later beside the pack still holding it,
        until the views are rebuilt: a purge killed between its rewrite and its compaction left
        raw.results counting 385,888 rows for 300,007 (QA crash F3). Named files are read as they
        were; one a later step removed makes the query fail, until the next run or ``biolake views``."""
        opts = f"{'union_by_name = true, ' if union_by_name else ''}hive_partitioning = false"
        if partitions is None and (_col(t) is None or self.layout(t).clean):
            files = self.files(t)
            if files and pinned and _col(t) is not None:  # a table kept whole is replaced whole
                return f"read_parquet([{', '.join(sql_literal(str(f)) for f in files)}], {opts})"
            if files:  # the whole table as a glob: short SQL however many files
                return f"read_parquet({sql_literal(self.glob(t))}, {opts})"
            return empty_relation(t)
        whole, packs = self._where(t, partitions)
        filtered: list[tuple[Path, list[str]]] = []
        for pack, take in packs:
            if len(take) == len(pack.rows):
                whole.append(pack.path)
            else:
                filtered.append((pack.path, take))
        selects = []
        if whole:
            selects.append(f"SELECT * FROM read_parquet([{', '.join(sql_literal(str(f)) for f in whole)}], {opts})")
        for path, take in filtered:
            values = ", ".join(sql_literal(v) for v in take)
            selects.append(f'SELECT * FROM read_parquet({sql_literal(str(path))}, {opts}) '
                           f'WHERE "{_col(t)}" IN ({values})')
        if not selects:
            return empty_relation(t)
        if len(selects) == 1 and not filtered:
            return selects[0][len("SELECT * FROM "):]
        return "(" + " UNION ALL BY NAME ".join(selects) + ")"

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

        The partition is written loose, which makes any packed copy stale (rule 1). With ``keep``,
        the frames as written (conformed to the table's schema) are also kept in memory, up to
        ``keep.max_rows`` rows, for the next step to use instead of reading the partition back."""
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
        _check_key(key)
        df = self.conform(t, df)
        tmp = self._tmp_path()
        df.write_parquet(tmp)
        final = self.table_dir(t) / f"{key}.parquet"
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)

    def delete_partition(self, t: Table, value: str) -> None:
        """Delete one partition: its folder, or, when a pack lists it, a tombstone in its place."""
        d = self.partition_dir(t, value)
        if any(value in pack.rows for pack in self._packs(t)):
            staging = self._tmp_path()
            staging.mkdir()
            (staging / DELETED).touch()
            self._swap_in(staging, d)
        elif d.exists():
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

    # -- compaction ------------------------------------------------------------------------
    def compact(self, t: Table, min_loose: int = 32, small_rows: int = 10_000,
                pack_rows: int = 1_000_000) -> dict:
        """Pack the table's small loose partitions, and rewrite the packs that hold stale rows.

        Runs when at least ``min_loose`` loose partitions of at most ``small_rows`` rows wait, or
        when a pack holds stale rows or a tombstone waits. The small loose partitions, the live rows
        of stale packs and of packs under half of ``pack_rows`` go, in order of partition value,
        into new packs of about ``pack_rows`` rows (a newer seq: rule 2); then the loose folders
        and old packs they replace are removed, then the tombstones no pack lists any more. A
        partition whose parts do not have the table's columns (written by an earlier biolake) or
        whose rows do not all carry its value stays loose. Returns what was done."""
        import pyarrow.parquet as pq

        col = _col(t)
        if col is None:
            raise ValueError(f"{t.qualified} is neither partitioned nor kept as a file per value")
        lay = self.layout(t)
        want = list(t.schema)
        small: dict[str, int] = {}
        for v in lay.loose:
            files = self.files_of(t, v)
            if not files:
                continue  # an empty partition is a folder, no file: nothing to gain
            metas = [pq.read_metadata(f) for f in files]
            rows = sum(m.num_rows for m in metas)
            if rows <= small_rows and all(_packable(m, want, col, v) for m in metas):
                small[v] = rows
        stale = [p for p in lay.packs if not lay.is_clean(p)]
        if len(small) < min_loose and not stale and not lay.tombstones:
            return {"table": t.qualified, "packed": 0, "packs_written": 0, "packs_removed": 0, "tombstones": 0}
        repack = [p for p in lay.packs
                  if not lay.is_clean(p) or (small and sum(p.rows[v] for v in lay.live(p)) < pack_rows // 2)]
        sizes = dict(small)
        held: dict[str, Pack] = {}
        for p in repack:
            for v in lay.live(p):
                sizes[v] = p.rows[v]
                held[v] = p
        groups: list[list[str]] = [[]]
        filled = 0
        for v in sorted(sizes):
            if groups[-1] and filled + sizes[v] > pack_rows:
                groups.append([])
                filled = 0
            groups[-1].append(v)
            filled += sizes[v]
        next_seq = max((p.seq for p in lay.packs), default=0) + 1
        # the slow part first, out of every reader's sight: the new packs written under _tmp/
        ready: list[tuple[Path, Path]] = []
        for group in groups:
            if not group:
                continue
            # one scan per pack kept (a scan per value read a row group per value: seconds per
            # hundred), one per loose partition; sorted by value again when packs are merged in, so
            # that reading one value from the new pack skips the row groups of the others
            from_packs: dict[Path, list[str]] = {}
            for v in group:
                if v in held:
                    from_packs.setdefault(held[v].path, []).append(v)
            frames = [self._scan_files(t, [path]).filter(pl.col(col).is_in(vals)) for path, vals in from_packs.items()]
            frames += [self._scan_files(t, self.files_of(t, v)) for v in group if v not in held]
            lf = pl.concat(frames, how="vertical")
            if from_packs:
                lf = lf.sort(col, maintain_order=True)
            tmp = self._write_pack(lf, {v: sizes[v] for v in group})
            ready.append((tmp, self.packs_dir(t) / f"pack-{next_seq:08d}-{uuid.uuid4().hex[:8]}.parquet"))
            next_seq += 1
        # then renames only, so that a query listing the files meanwhile (a glob: the DuckDB views)
        # has milliseconds, not the packs' writing time, to see a row twice: the packs in, the
        # loose copies of their rows and the packs they replace out (each step keeps the rules true)
        trash = self._tmp_path()
        trash.mkdir()
        if ready:
            self.packs_dir(t).mkdir(parents=True, exist_ok=True)
        for tmp, final in ready:
            os.replace(tmp, final)
        for v in small:
            os.replace(self._loose_path(t, v), trash / uuid.uuid4().hex)
        lay = self.layout(t)
        replaced = [p for p in lay.packs if not lay.live(p)]
        for p in replaced:
            os.replace(p.path, trash / p.path.name)
            self._pack_rows.pop(p.path, None)
        listed = {v for p in lay.packs if p not in replaced for v in p.rows}
        gone = [v for v in lay.tombstones if v not in listed]
        for v in gone:
            os.replace(lay.tombstones[v], trash / uuid.uuid4().hex)
        shutil.rmtree(trash, ignore_errors=True)
        return {"table": t.qualified, "packed": len(small), "packs_written": len(ready),
                "packs_removed": len(replaced), "tombstones": len(gone)}

    def _write_pack(self, lf: pl.LazyFrame, index: dict[str, int]) -> Path:
        """Stream ``lf`` (the partitions of ``index``, in its order) into a new pack under _tmp/."""
        tmp = self._tmp_path()
        lf.sink_parquet(tmp, compression="zstd", statistics=True, row_group_size=PACK_ROW_GROUP,
                        maintain_order=True, metadata={PACK_INDEX_KEY.decode(): json.dumps(index, sort_keys=True)})
        return tmp


def _col(t: Table) -> str | None:
    """The column whose value names a partition (or a keyed table's file); None for whole tables."""
    return t.partition_by or t.file_key


def _check_key(key: str) -> None:
    if not key or "/" in key or key.startswith("."):
        raise ValueError(f"bad key {key!r}")


def _packable(meta, columns: list[str], col: str, value: str) -> bool:
    """A loose part may go into a pack when it has the table's columns, in order, and its footer's
    statistics show every row carrying the partition's value (a pack is read back by value)."""
    if meta.schema.to_arrow_schema().names != columns:
        return False
    i = columns.index(col)
    for g in range(meta.num_row_groups):
        rg = meta.row_group(g)
        if rg.num_rows == 0:
            continue
        stats = rg.column(i).statistics
        if stats is None or not stats.has_min_max or stats.null_count or stats.min != value or stats.max != value:
            return False
    return True


def empty_relation(t: Table) -> str:
    """A typed relation of the table's columns and no row: reading a table without files never fails."""
    from warehouse.views import duckdb_type

    cols = ", ".join(f'CAST(NULL AS {duckdb_type(c)}) AS "{c.name}"' for c in t.columns)
    return f"(SELECT {cols} WHERE false)"
