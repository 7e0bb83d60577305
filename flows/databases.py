"""The two DuckDB files as the commands open them, re-pointed first at the home they are given.

A home copied or restored to another path (``cp -r data /backup/data``, a restore to a new disk)
keeps databases whose views read the original home's Parquet files (warehouse/location.py says
how that is seen). ``biolake sql`` calls :func:`ensure_built_here` before it queries: a database
built for another home is rebuilt for this one by the usual builders (``build_views``,
``build_analyst_db``), under the warehouse lock. A rebuild renames a new file over the database;
without the lock it could race a run on this home (the run compacts the partitions and rebuilds
the databases at its end: the older of the two builds could land last, its views naming files the
run has moved). The lock is never waited for: a busy warehouse is a one-line refusal
(:class:`CannotRepoint`), never a query of the other home, and the run that holds it rebuilds the
databases for this home anyway. ``biolake views`` rebuilds both databases at once, whatever they
read (what the documentation says to run after copying or restoring a home).
"""

from __future__ import annotations

import shlex
from pathlib import Path

from warehouse.analyst import ANALYST_DB_NAME
from warehouse.location import built_elsewhere

ENGINEERS_DB_NAME = "biolake.duckdb"


class CannotRepoint(RuntimeError):
    """A database built for another home that cannot be rebuilt for this one now (one line)."""


def database_path(home: Path, analyst: bool) -> Path:
    return Path(home) / (ANALYST_DB_NAME if analyst else ENGINEERS_DB_NAME)


def rebuild(ctx, analyst: bool, by: str) -> Path:
    """Build one of the two databases for ``ctx``'s home (the caller holds the warehouse lock). The
    analysts' database is refused, as by ``biolake analyst-db``, over tables an earlier biolake
    wrote that the next run must upgrade first; its build is audited like every other."""
    if not analyst:
        from warehouse.views import build_views

        return build_views(ctx.wh)
    from flows.privacy import audit
    from flows.steps import check_upgradable
    from warehouse.analyst import build_analyst_db

    check_upgradable(ctx, migrated=True)
    path = build_analyst_db(ctx.wh)
    audit(ctx, "analyst_db_built", str(path), by=by)
    return path


def _context(settings, command: str):
    import uuid
    from datetime import datetime

    from flows.steps import Context

    return Context.create(settings, f"{command}-{datetime.now():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}")


def ensure_built_here(settings, analyst: bool, by: str) -> str | None:
    """Rebuild ``<home>/biolake.duckdb`` (or with ``analyst`` ``analyst.duckdb``) when its views read
    another home's files; returns that other home, or None when the database was built for this one
    (one read-only catalog query, nothing written) or does not exist. Raises :class:`CannotRepoint`
    when a run holds the warehouse lock or this account cannot write the home, and
    ``WarehouseFormatError`` as ``biolake analyst-db`` does."""
    from flows.lock import LockTimeout, warehouse_lock
    from warehouse.store import Warehouse

    home = settings.home_abs
    db = database_path(home, analyst)
    if not db.exists():
        return None
    wh = Warehouse(home)
    other = built_elsewhere(db, wh.root)
    if other is None:
        return None
    situation = f"{db} was built for another home ({other}; this one was copied or restored from there)"
    try:
        with warehouse_lock(wh.home, timeout=0):
            if built_elsewhere(db, wh.root) is not None:  # else a run rebuilt it while we looked
                rebuild(_context(settings, by.replace(" ", "-")), analyst, by)
    except LockTimeout:
        raise CannotRepoint(
            f"{situation} and a biolake run holds this home's warehouse lock: it must be rebuilt for "
            f"{home} before it is queried, which that run does at its end; query again when the run is "
            "done") from None
    except PermissionError as err:
        raise CannotRepoint(
            f"{situation} and this account cannot rebuild it for {home} ({err.strerror}: {err.filename}): "
            f"run `biolake views --home {shlex.quote(str(home))}` as the account that runs the pipeline") from None
    return other


def rebuild_both(settings, by: str = "views", timeout: float | None = None) -> list[Path]:
    """``biolake views``: both databases rebuilt for the home, under the warehouse lock (waiting for a
    run at most ``timeout``, by default ``BIOLAKE_LOCK_TIMEOUT``)."""
    from flows.lock import warehouse_lock

    ctx = _context(settings, by)
    wait = settings.lock_timeout if timeout is None else timeout
    with warehouse_lock(ctx.wh.home, timeout=wait):
        from flows.steps import check_upgradable

        check_upgradable(ctx, migrated=True)  # before either is written: both, or neither
        return [rebuild(ctx, False, by), rebuild(ctx, True, by)]
