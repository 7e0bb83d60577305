"""Privacy operations: landing-name checks, the audit trail, identity retention, and their CLI.

- ``landing_name_problem(rel_path)``: why a landing file's name is unsafe to process (path
  traversal, control characters, undecodable bytes, absurd length, formula characters), or None.
  steps.discover calls it before opening the file; ``safe_display_name`` gives a printable form
  of such a name for the logs.
- ``audit(ctx, kind, subject, sha256=None, details=None)``: appends one event to
  ``quality.audit_events`` (one small Parquet file per event, so concurrent writers never clash).
- ``purge_identities(ctx, older_than_days, now=None)``: after the retention delay, rewrites the
  raw partitions of old files with the identity typed into their text and request numbers masked,
  the identity columns emptied and the rejected lines' raw text redacted (and deletes the landing
  files they came from); results, pseudonyms and every analyst table stay as they are.
- ``privacy_app``: the ``biolake purge``, ``biolake audit`` and ``biolake analyst-db`` commands;
  ``flows.scheduled.purge_flow``: the purge as a Prefect flow, to schedule next to the pipeline.

docs/privacy.md describes the whole privacy model.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
import unicodedata
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Optional

import polars as pl
import typer

from flows.cli_errors import fail, require_warehouse
from transforms.canonical import IDENTIFYING_COLUMNS
from warehouse import catalog as cat
from warehouse.catalog_privacy import AUDIT_EVENTS, AUDIT_KINDS

REPO_ROOT = Path(__file__).resolve().parent.parent

# --------------------------------------------------------------------------------------------
# landing file names
# --------------------------------------------------------------------------------------------
MAX_PATH_CHARS = 512  # a lab file path is a few dozen characters
MAX_PART_BYTES = 255  # the usual file-system limit for one name
# categories never legitimate in a file name: controls, format characters (bidi overrides,
# zero-width), surrogates (bytes that are not UTF-8, see os.fsdecode), private use, unassigned,
# line and paragraph separators
_BAD_CATEGORIES = {"Cc": "a control character", "Cf": "an invisible formatting character (bidi, zero-width)",
                   "Cs": "bytes that are not valid UTF-8", "Co": "a private-use character",
                   "Cn": "an unassigned character", "Zl": "a line separator", "Zp": "a paragraph separator"}
FORMULA_CHARS = ("=", "+", "-", "@")


def landing_name_problem(rel_path: str) -> str | None:
    """Why the landing file ``rel_path`` (relative to ``<home>/landing``, ``/``-separated, as
    ``Path.relative_to(...).as_posix()`` gives it) must not be processed, or None when its name is
    fine. Only the name is looked at; the file is never opened.

    Names are refused for: an empty, absolute or drive-qualified path; ``.``/``..`` or empty
    segments (traversal); a backslash; a NUL byte or any control, bidi-override, zero-width,
    private-use or unassigned character; bytes that are not UTF-8 (os.fsdecode turns them into
    surrogates); leading or trailing blanks in a segment; a segment starting with ``=``, ``+``,
    ``-`` or ``@`` (spreadsheet formula or command-line option when the name is shown or exported);
    more than 512 characters in all or more than 255 bytes in one segment. Hidden names (a segment
    starting with ``.``: partial uploads) are not a problem here: discover skips them first.
    The message never repeats the name.
    """
    if not isinstance(rel_path, str):
        return "the name is not text"
    if not rel_path:
        return "empty path"
    if len(rel_path) > MAX_PATH_CHARS:
        return f"path longer than {MAX_PATH_CHARS} characters"
    if "\x00" in rel_path:
        return "NUL byte in the name"
    if rel_path.startswith("/") or (len(rel_path) > 1 and rel_path[1] == ":" and rel_path[0].isalpha()):
        return "absolute path"
    if "\\" in rel_path:
        return "backslash in the name (a path separator elsewhere)"
    for ch in rel_path:
        cat_ = unicodedata.category(ch)
        if cat_ in _BAD_CATEGORIES:
            return f"the name holds {_BAD_CATEGORIES[cat_]} (U+{ord(ch):04X})"
    parts = rel_path.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            return "path traversal or empty segment ('..', '.', '//')"
        if len(part.encode("utf-8")) > MAX_PART_BYTES:
            return f"a name segment longer than {MAX_PART_BYTES} bytes"
        if part != part.strip():
            return "leading or trailing blank in a name segment"
        if part.startswith(FORMULA_CHARS):
            return "a name segment starts with =, +, - or @ (formula or option injection)"
    return None


PERSON_NAMED_FOLDER = "<folder named like a person>"  # how such a lab folder is shown (never its name)


def lab_folder_problem(name: str) -> str | None:
    """Why the folder ``name`` at the root of the landing area cannot be a lab's, or None. A lab
    folder's name becomes ``source`` in every analyst table (QA priv F4: ``ROUXQZ Denis 05-05-1972``,
    a patient's folder dropped at the root, was loaded as a lab). A lab's id never holds a blank nor
    a date or NIR: a folder whose name does (what the free-text masking looks for:
    transforms/identity_text.py) looks like a person's (``DURAND Alice``, ``DURAND_Alice_12031985``)
    and its files are refused unread (LAB_FOLDER_NAME). The message never repeats the name."""
    from transforms.identity_text import looks_like_identity

    if any(ch.isspace() for ch in name):
        return "a blank in its name (a lab's id has none; 'NAME First name' is a person's)"
    if looks_like_identity(name):
        return "a date or a NIR-shaped number in its name (a person's birth date or NIR?)"
    return None


def safe_display_name(rel_path: str, limit: int = 200) -> str:
    """A printable, bounded form of an untrusted name for logs and tables: every character outside
    plain printable text is escaped (``\\x1b``, ``\\u202e``, undecodable bytes as ``\\xff``)."""
    out = []
    for ch in rel_path:
        cp = ord(ch)
        if 0xDC80 <= cp <= 0xDCFF:  # os.fsdecode's surrogateescape of a non-UTF-8 byte
            out.append(f"\\x{cp - 0xDC00:02x}")
        elif ch == "\\":
            out.append("\\\\")
        elif unicodedata.category(ch) in _BAD_CATEGORIES:
            out.append(f"\\x{cp:02x}" if cp < 0x100 else f"\\u{cp:04x}" if cp < 0x10000 else f"\\U{cp:08x}")
        else:
            out.append(ch)
    text = "".join(out)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------------------------
# audit trail
# --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def biolake_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("biolake")
    except PackageNotFoundError:
        return "unknown"


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the running code, read from the repository's .git files (no git command);
    None when biolake does not run from a checkout."""
    git = REPO_ROOT / ".git"
    try:
        if git.is_file():  # a worktree: "gitdir: <path>"
            git = Path(git.read_text().split(":", 1)[1].strip())
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head or None
        ref = head.split(":", 1)[1].strip()
        ref_file = git / ref
        if ref_file.exists():
            return ref_file.read_text().strip() or None
        packed = git / "packed-refs"
        if packed.exists():
            for line in packed.read_text().splitlines():
                if line.endswith(" " + ref):
                    return line.split(" ", 1)[0]
    except (OSError, IndexError):
        return None
    return None


def producer(by: str | None = None) -> str:
    """``biolake <version> [git <commit>] <flow>/<task>`` (or ``by`` when given, e.g. a CLI command)."""
    parts = [f"biolake {biolake_version()}"]
    commit = git_commit()
    if commit:
        parts.append(f"git {commit[:12]}")
    if by is None and "prefect" in sys.modules:  # no flow can be running unless Prefect was imported
        try:
            from prefect.context import FlowRunContext, TaskRunContext

            f, t = FlowRunContext.get(), TaskRunContext.get()
            names = [x for x in (f.flow.name if f else None, t.task.name if t else None) if x]
            by = "/".join(names) or None
        except Exception:  # noqa: BLE001 - the producer is informative, never a reason to fail
            by = None
    parts.append(by or "python")
    return " ".join(parts)


def _check_details(details: dict[str, Any]) -> None:
    bad = set(details) & (IDENTIFYING_COLUMNS | {"raw_text", "nir", "ins", "name", "birth_date"})
    if bad:
        raise ValueError(f"audit details must not carry identities: {sorted(bad)}")


def audit(ctx, kind: str, subject: str, sha256: str | None = None, details: dict | None = None, *,
          by: str | None = None) -> str:
    """Append one event to ``quality.audit_events``; returns its id.

    ``kind`` is one of ``AUDIT_KINDS``; ``subject`` the landing path, export path or table the
    event concerns; ``details`` a small JSON-able dict of counts and codes (never patient data:
    keys named like identity columns are refused). ``by`` overrides the flow/task part of the
    producer (CLI commands).
    """
    if kind not in AUDIT_KINDS:
        raise ValueError(f"unknown audit kind {kind!r}; expected one of {AUDIT_KINDS}")
    details = dict(details or {})
    _check_details(details)
    at = datetime.now()
    event_id = f"{at:%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:12]}"
    row = {
        "event_id": event_id, "at": at, "run_id": str(ctx.run_id), "kind": kind,
        "subject": safe_display_name(str(subject), limit=2000),
        "sha256": sha256, "producer": producer(by),
        "details": json.dumps(details, sort_keys=True, default=str, ensure_ascii=False),
    }
    ctx.wh.write_partition_file(AUDIT_EVENTS, event_id, pl.DataFrame([row], schema=AUDIT_EVENTS.schema))
    return event_id


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def audit_file(ctx, kind: str, path: Path, details: dict | None = None, *, by: str | None = None) -> str:
    """``audit`` for a file just written (an export, a report): hashes it; the subject is its path
    relative to the data home when it lies inside it."""
    path = Path(path).resolve()
    try:
        subject = path.relative_to(ctx.wh.home).as_posix()
    except ValueError:
        subject = str(path)
    return audit(ctx, kind, subject, sha256=file_sha256(path), details=details, by=by)


def read_audit(wh) -> pl.DataFrame:
    """Every audit event, oldest first."""
    return wh.read(AUDIT_EVENTS).sort("event_id")


# --------------------------------------------------------------------------------------------
# retention: purge identities from the raw layer
# --------------------------------------------------------------------------------------------
def _raw_identity_columns() -> list[str]:
    return [c.name for c in cat.RAW_RESULTS.columns if c.identifying]


def _ingestion_times(ctx) -> dict[str, datetime]:
    """file_id -> when it was ingested: raw.results' ingested_at, else the file log's first
    registration of that content."""
    wh = ctx.wh
    times: dict[str, datetime] = {}
    log = wh.read(cat.FILE_LOG)
    if log.height:
        first = log.group_by("file_id").agg(pl.col("registered_at").min())
        times.update({fid: at for fid, at in first.iter_rows() if at is not None})
    first = (wh.scan(cat.RAW_RESULTS).group_by("file_id").agg(pl.col("ingested_at").min())
             .filter(pl.col("ingested_at").is_not_null()).collect())
    times.update(dict(first.iter_rows()))
    return times


# raw.results' text columns a lab can type an identity into (QA ledger F3: NIRs, names and birth
# dates survived a purge in request_id, value_raw, ref_range and local_label): the free text staging
# masks (transforms.identity_text.FREE_TEXT_COLUMNS), the lab's and sender's identifiers, the codes;
# not the lineage (file_id, source) nor the enumerations (ins_oid, sex, value_type, value_comparator,
# result_status, parse_issues)
PURGE_MASKED_COLUMNS: tuple[str, ...] = ("value_raw", "local_label", "ref_range", "unit_raw", "specimen",
                                         "abnormal_flag", "request_id", "message_id", "local_code",
                                         "loinc_code_src", "lab_finess", "observation_sub_id")


def _purged_part(part: pl.DataFrame, id_cols: list[str]) -> tuple[pl.DataFrame, int]:
    """A raw.results part with the identity typed into its text columns masked, each row with its
    own names and birth date (as staging masks its free text: ``mask_identities_in_text``), then its
    identity columns emptied; and how many rows had text masked."""
    from transforms.identity_text import MASKED_COLUMN, mask_identities_in_text

    part = _with_added_columns(part)
    masked = mask_identities_in_text(part, PURGE_MASKED_COLUMNS)
    n = int(masked.get_column(MASKED_COLUMN).sum())
    nulls = [pl.lit(None, dtype=cat.RAW_RESULTS.schema[c]).alias(c) for c in id_cols]
    return masked.drop(MASKED_COLUMN).with_columns(nulls), n


def _purged_rejects(part: pl.DataFrame) -> pl.DataFrame:
    """A raw.rejected_lines part without its raw text; an HPRIM detail of an earlier version that
    quoted an unknown record type (possibly a family name, QA ledger F1) is rewritten."""
    from transforms.parsers.hprim import UNKNOWN_RECORD_DETAIL

    return part.with_columns(
        pl.lit(None, dtype=pl.Utf8).alias("raw_text"),
        pl.col("detail").str.replace(r"unknown HPRIM record type [A-Z][A-Z0-9]{0,3}: not read \(results travel in "
                                     r"OBX records\)", UNKNOWN_RECORD_DETAIL, literal=False))


def _has_identities(wh, t, fid: str, columns: list[str]) -> bool:
    if not wh.holds(t, fid):
        return False
    present = wh.scan(t, [fid]).select(pl.any_horizontal([pl.col(c).is_not_null().any() for c in columns])).collect().item()
    return bool(present)


def _with_added_columns(part: pl.DataFrame) -> pl.DataFrame:
    """A raw partition of a file loaded by an earlier biolake, with the columns its parsers did not
    have as null (flows/steps.py NULL_WHEN_MISSING: value_comparator, observation_sub_id, observed_at), as
    the upgraded staging."""
    from flows.steps import NULL_WHEN_MISSING

    return part.with_columns([pl.lit(None, dtype=cat.RAW_RESULTS.schema[c]).alias(c)
                              for c in NULL_WHEN_MISSING if c not in part.columns])


def purge_identities(ctx, older_than_days: int, now: datetime | None = None, *, delete_landing: bool = True,
                     dry_run: bool = False) -> dict:
    """Purge patient identities of files ingested more than ``older_than_days`` days before ``now``.

    For each such file: its ``raw.results`` partition is rewritten (atomically, through
    Warehouse.write_partition) with the row's own identity masked in ``PURGE_MASKED_COLUMNS`` (free
    text, request number, message id, codes: ``mask_identities_in_text``, as staging) and then the
    identifying columns (NIR, names, birth date, postal code) set to null; its
    ``raw.rejected_lines`` partition with ``raw_text`` set to null; and, with ``delete_landing``,
    the landing files logged before the cutoff are deleted when their bytes are still the logged
    ones (a new file uploaded under the same name is left alone; a file refused unread at the
    landing root, when its name, size and modification time are still the logged ones). Staging, marts and quality
    tables are untouched: they hold only pseudonyms, so every count stays the same. A partition
    already purged is not rewritten; the purge itself is recorded in ``quality.audit_events``.

    Returns counts: files_purged, rows_purged, rows_text_masked, rejected_lines_redacted, landing_files_deleted,
    files_kept (younger than the delay), plus the cutoff. The caller holds the warehouse lock.
    """
    if older_than_days < 0:
        raise ValueError("older_than_days must be >= 0")
    now = now or datetime.now()
    cutoff = now - timedelta(days=older_than_days)
    wh = ctx.wh
    id_cols = _raw_identity_columns()
    ingested = _ingestion_times(ctx)
    file_ids = sorted(set(wh.partitions(cat.RAW_RESULTS)) | set(wh.partitions(cat.RAW_REJECTED)))
    old = [fid for fid in file_ids if fid in ingested and ingested[fid] < cutoff]
    out = {"older_than_days": older_than_days, "cutoff": cutoff.isoformat(timespec="seconds"),
           "dry_run": dry_run, "files_purged": 0, "rows_purged": 0, "rows_text_masked": 0,
           "rejected_lines_redacted": 0,
           "landing_files_deleted": 0, "files_kept": len(file_ids) - len(old),
           "files_without_ingestion_time": sorted(set(file_ids) - set(ingested))}
    purged_ids: list[str] = []
    for fid in old:
        touched = False
        if _has_identities(wh, cat.RAW_RESULTS, fid, id_cols):
            if dry_run:
                n = wh.scan(cat.RAW_RESULTS, [fid]).select(pl.len()).collect().item()
            else:
                masked = 0

                def purged(parts):
                    nonlocal masked
                    for part in parts:
                        part, k = _purged_part(part, id_cols)
                        masked += k
                        yield part

                n = wh.write_partition(cat.RAW_RESULTS, fid, purged(wh.parts(cat.RAW_RESULTS, fid)))
                out["rows_text_masked"] += masked
            out["rows_purged"] += n
            touched = True
        if _has_identities(wh, cat.RAW_REJECTED, fid, ["raw_text"]):
            n = wh.scan(cat.RAW_REJECTED, [fid]).select(pl.col("raw_text").is_not_null().sum()).collect().item()
            if not dry_run:
                wh.write_partition(cat.RAW_REJECTED, fid, (_purged_rejects(part)
                                                           for part in wh.parts(cat.RAW_REJECTED, fid)))
            out["rejected_lines_redacted"] += n
            touched = True
        if touched:
            out["files_purged"] += 1
            purged_ids.append(fid)
    if purged_ids and not dry_run:
        # a purged partition that was packed (warehouse/store.py) is written loose and its packed
        # copy, identities included, is only stale: the packs holding one are rewritten now
        min_loose = ctx.settings.compact_min_files or 1 << 62
        for t in (cat.RAW_RESULTS, cat.RAW_REJECTED):
            wh.compact(t, min_loose=min_loose)
        # the engineers' database names the Parquet files of these tables (pinned views): rebuilt
        # over the files now there, as a run does after its compaction (QA regr F2: raw.results
        # failed with "No files found" until the next run). The analysts' has no raw layer.
        from warehouse.views import build_views

        build_views(wh)
    if delete_landing:
        deleted = _delete_landing(ctx, cutoff, dry_run)
        out["landing_files_deleted"] = len(deleted)
        if not dry_run and deleted:
            # their names (labs name files after patients) must not outlive them (QA priv F3)
            from flows.steps import LandingHashes

            LandingHashes.forget(ctx, deleted)
    # never read, so never deleted: counted, for the operator to look at (QA priv F6)
    out["hidden_landing_entries"] = hidden_landing_entries(ctx.settings.landing, cutoff)
    if not dry_run and (purged_ids or out["landing_files_deleted"]):
        audit(ctx, "purge", "raw.results, raw.rejected_lines, landing",
              details={k: v for k, v in out.items() if k != "dry_run"} | {"file_ids": purged_ids}, by="purge")
    return out


def hidden_landing_entries(landing: Path, cutoff: datetime) -> dict[str, int]:
    """The hidden landing entries (a name starting with ``.``, or an office lock file ``~$``, or any
    file in a hidden folder: partial uploads, a transfer server's staging folder) last modified
    before ``cutoff``, counted per place: ``{lab folder shown safely: files}`` (``<landing root>``
    for those at the root, :data:`PERSON_NAMED_FOLDER` for a folder that cannot be a lab's). Discovery
    never reads them, so the purge never deletes them (their content was never proved anything);
    but they may hold identities past the retention delay: the purge reports them (QA priv F6)."""
    from flows.steps import _skipped_name

    landing = Path(landing)
    if not landing.is_dir():
        return {}
    limit = cutoff.timestamp()
    out: dict[str, int] = {}
    for top, dirs, files in os.walk(landing):
        rel_top = Path(top).relative_to(landing).parts
        hidden_top = any(_skipped_name(p) for p in rel_top)
        for name in [*files, *(d for d in dirs if Path(top, d).is_symlink())]:
            if not (hidden_top or _skipped_name(name)):
                continue
            try:
                if os.lstat(os.path.join(top, name)).st_mtime >= limit:
                    continue
            except OSError:
                continue
            lab = rel_top[0] if rel_top else None
            if lab is None or _skipped_name(lab):
                where = "<landing root>"
            elif landing_name_problem(lab) or lab_folder_problem(lab):
                where = PERSON_NAMED_FOLDER
            else:
                where = safe_display_name(lab)
            out[where] = out.get(where, 0) + 1
    return dict(sorted(out.items()))


def _delete_landing(ctx, cutoff: datetime, dry_run: bool) -> set[str]:
    """Delete the landing files logged before ``cutoff`` that are still what was logged: the bytes
    of the logged sha256; for a file refused unread at the landing root (NOT_IN_LAB_FOLDER, no
    hash), the same name, size and modification time as when it was logged (QA ledger F3: such a
    file, holding a full identity, was never deleted)."""
    from flows.steps import root_log_id

    landing = ctx.settings.landing.resolve()
    log = ctx.wh.read(cat.FILE_LOG).filter(pl.col("registered_at") < cutoff)
    deleted: set[str] = set()
    rows = log.select("path", "sha256", "size_bytes", "reason_code", "log_id").unique().sort("path", "log_id")
    for rel, sha, size, reason, log_id in rows.iter_rows():
        if not rel or landing_name_problem(rel):
            continue  # never follow an unsafe name out of the landing area
        path = landing / rel
        if path.is_symlink() or not path.is_file():
            continue
        try:
            if reason == "NOT_IN_LAB_FOLDER" and not sha:
                if "/" in rel or root_log_id(landing, rel) != log_id:
                    continue  # changed since it was logged: another delivery, left alone
            elif path.stat().st_size != size or file_sha256(path) != sha:
                continue  # another file now bears that name
        except OSError:
            continue  # cannot be read (FILE_UNREADABLE): cannot be proved the logged content, kept
        if not dry_run:
            path.unlink()
        deleted.add(rel)
    return deleted


# --------------------------------------------------------------------------------------------
# command line (wired into flows/cli.py's app: `app.add_typer(privacy_app)`)
# --------------------------------------------------------------------------------------------
privacy_app = typer.Typer(no_args_is_help=True, help="Privacy: identity retention, audit trail, analyst database.")
HomeOpt = Annotated[Optional[Path], typer.Option("--home", help="data directory (env BIOLAKE_HOME, default ./data)")]


def _context(home: Path | None, command: str):
    from flows.steps import Context

    return Context.create(_existing(home), f"{command}-{datetime.now():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}")


def _existing(home: Path | None):
    """The settings of a home that has a warehouse; else an error line and exit status 2."""
    from flows.settings import Settings

    settings = Settings(home=home) if home is not None else Settings()
    require_warehouse(settings.home_abs)
    return settings


@privacy_app.command("purge")
def purge_command(
    older_than: Annotated[Optional[int], typer.Option(
        "--older-than", min=0, metavar="DAYS",
        help="purge identities of files ingested more than DAYS days ago "
             "(default: BIOLAKE_IDENTITY_RETENTION_DAYS when the settings define it)")] = None,
    home: HomeOpt = None,
    keep_landing: Annotated[bool, typer.Option("--keep-landing", help="do not delete the landing files")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="count what would be purged, change nothing")] = False,
) -> None:
    """Empty the identity columns of old raw data (results and pseudonyms stay)."""
    from flows.lock import warehouse_lock

    ctx = _context(home, "purge")
    days = older_than if older_than is not None else getattr(ctx.settings, "identity_retention_days", None)
    if days is None:
        fail("give --older-than DAYS (no retention delay is configured)")
    with warehouse_lock(ctx.wh.home, timeout=getattr(ctx.settings, "lock_timeout", 600)):
        res = purge_identities(ctx, days, delete_landing=not keep_landing, dry_run=dry_run)
    verb = "would purge" if dry_run else "purged"
    typer.echo(f"{verb} identities of {res['files_purged']} file(s) ingested before {res['cutoff']}: "
               f"{res['rows_purged']} result rows ({res['rows_text_masked']} with an identity masked in their text), "
               f"{res['rejected_lines_redacted']} rejected lines; "
               f"{res['landing_files_deleted']} landing file(s) {'to delete' if dry_run else 'deleted'}; "
               f"{res['files_kept']} younger file(s) kept")
    for where, n in res.get("hidden_landing_entries", {}).items():
        typer.echo(f"{n} hidden landing file(s) older than the delay left in {where} (never read by biolake, "
                   "so never deleted: an abandoned upload or a transfer's staging folder? delete by hand)")


@privacy_app.command("audit")
def audit_command(
    home: HomeOpt = None,
    last: Annotated[int, typer.Option(min=1, help="events shown (most recent)")] = 30,
    kind: Annotated[Optional[str], typer.Option(help="only events of this kind")] = None,
) -> None:
    """Show the audit trail (quality.audit_events)."""
    from warehouse.store import Warehouse

    events = read_audit(Warehouse(_existing(home).home_abs))
    if kind is not None:
        if kind not in AUDIT_KINDS:
            fail(f"unknown kind; expected one of {', '.join(AUDIT_KINDS)}")
        events = events.filter(pl.col("kind") == kind)
    for at, k, subject, producer_, details in events.tail(last).select(
            "at", "kind", "subject", "producer", "details").iter_rows():
        typer.echo(f"{at:%Y-%m-%d %H:%M:%S}  {k:<16} {safe_display_name(subject or '')}  [{producer_}]  {details}")


@privacy_app.command("analyst-db")
def analyst_db_command(home: HomeOpt = None) -> None:
    """Rebuild <home>/analyst.duckdb: views over the non-identifying layers only."""
    from flows.lock import warehouse_lock
    from flows.settings import WarehouseFormatError
    from flows.steps import check_upgradable
    from warehouse.analyst import build_analyst_db

    ctx = _context(home, "analyst-db")
    # under the lock: a run moves files (a partition rewritten, packs compacted) and then rebuilds
    # this database itself; built meanwhile, it could name files that are gone, or land last
    with warehouse_lock(ctx.wh.home, timeout=getattr(ctx.settings, "lock_timeout", 600)):
        try:
            check_upgradable(ctx, migrated=True)  # tables of an earlier biolake: a line, not a traceback
        except WarehouseFormatError as err:
            fail(err)
        path = build_analyst_db(ctx.wh)
        audit(ctx, "analyst_db_built", str(path), by="analyst-db")
    typer.echo(f"analyst database: {path} (open it with duckdb -readonly)")


# --------------------------------------------------------------------------------------------
# the purge as a Prefect flow (to schedule it next to the pipeline)
# --------------------------------------------------------------------------------------------
