"""The pipeline's steps as plain functions: each reads and writes warehouse tables by path.

flows/pipeline.py wraps them as Prefect tasks; tests call them directly too. Every function
records what happened (file log, quarantine) so that, for every file,
rows_in = rows_valid + rows_quarantined.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import stat
import os
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import polars as pl

from flows.settings import Settings
from quality.reasons import REASONS
from quality.schemas import validate_rows
from transforms import finess
from transforms.parsers.base import FileFormatError
from transforms.parsers.detect import detect_format, get_parser
from transforms.staging import to_staging
from warehouse import catalog as cat
from warehouse.store import KeptFrames, Warehouse
from warehouse.views import build_views, sql_literal

HASH_BLOCK = 8 * 1024 * 1024
PARSER_VERSION = "8"  # bump when a parser's output changes: earlier ingests are then not reused
# "3": HPRIM H|^~\& read in HL7's order, unknown record types and cut deliveries are rejects; HL7 MSH-2
# ~^\& read as ^~\& when MSH-9 says so, MLLP bytes glued to a segment dropped, batch counts checked;
# a test INS OID anywhere in the patient's identity refuses it; a value without its type typed NM/SN.
# "4": a partial or impossible birth date is kept with an unknown age (it was a reject); a time written
# in UTC (Z, +0000) is converted to Paris time; reject details never quote the input's text (an HPRIM
# record type); an HL7 message rejected whole counts the results it held
# "5": a date without its time keeps its day whatever its offset (20261114+0000 was 01:00 Paris
# time); a time in UTC is converted to the lab's own zone when its FINESS is an overseas
# département's (9701-9704), to Paris time otherwise (QA regr2 F3, F4). CSV: a quoted field holding
# line breaks makes one record up to 100 lines (it was 5), a longer one is one reject naming the
# cause, a record is compared whole for duplicates (QA regr2 F6); the header repeated in another
# spelling is one 'repeated header line' reject, a row of quoted empty fields is skipped (F8)
# "6": CSV: a last line without a line break is a truncated-delivery reject whatever its field count
# (QA ops F1); a NUL or other control byte rejects its CSV line, HL7 message or HPRIM record, and a
# file is binary only when control bytes exceed 1 % of its first 64 KiB (F4); CDA: XML errors name
# the file's line, a file ending inside a tag is 'document truncated' (F2); every format reads the
# sex with one vocabulary (transforms/parsers/sex.py): the words (masculin/féminin, homme/femme,
# male/female, any case or accents) are M/F; a value it cannot read (X) is null with
# SEX_INVALID:sex, kept by the validator with an unknown sex (it was quarantined: QA numbers F5);
# HL7 PID-8 is read to its first component; I, 0, 9 are unknown in HL7/CDA too, UN in CSV; a DOS
# end-of-file mark (0x1A) after the last line is the end of the file in every format (QA regr3 F1)
# "7": a file is binary only when its control bytes also stand in most of the lines of its first
# 64 KiB: a run of NULs after the last line (a cut copy's padding) is one rejected line, not a
# refused file, whatever its size; an HL7 line of NUL bytes is a reject at its line (it was dropped
# without a trace), an HPRIM one names the byte; UTF-16 without its byte-order mark is told as such
# (F4 low); CSV: a quoted record of several lines that the file ends in is one truncated-delivery
# reject at its first line (it was two: an unbalanced quote and a truncated last line; F5 low)
# CSV: a birth date written with a time ('15/06/1980 00:00') is its date (it was unreadable: QA cal F1)
# validation: a C or D validated over 366 days after the collection is valid (QA cal F5); times in
# the hour repeated as the clocks go back are not out of order (QA cal F4)
# every format reads an INS written with blanks, dots or dashes, or a lower-case 2a/2b, as the NIR
# it spells (QA fmt F4: HL7 quarantined '2 79 07 29 100 851 43' NIR_FORMAT, the CSV extract removed
# blanks only); a value that is still no NIR is kept as sent (the CSV extract upper-cased it and
# removed its blanks). Well-formed NIRs and their pseudonyms are unchanged. Staging (written with the
# validation, so also read again by biolake reprocess): a 4-digit postal code is read as 0 + code when
# that is a postal code, flagged POSTAL_CODE_PADDED (QA fmt F5: Excel dropped 01000's leading zero).
# A bound in French words ('inf. à 5', 'supérieur ou égal à 10', '< à 5') is read as the comparator and
# its number in every format, like '<5' (QA fmt F6: such values stayed text, without a number)
# HL7 v2 (undeclared or MSH-18 8859/1) and HPRIM 8-bit text is read as Windows-1252, not Latin-1:
# Œ œ ’ – € were C1 controls in names and values (QA fmt F3); a C1 control left (a byte Windows-1252
# leaves undefined, or one written in UTF-8) refuses its unit like a C0 control byte
# CDA: a coded value without displayName takes its originalText (or the narrative text its reference
# names) as label: nullFlavor OTH + originalText was quarantined as no value (QA fmt F2)
# HL7/HPRIM OBX-4 is read (observation_sub_id) and OBX-14 kept (observed_at; a CDA observation's own
# effectiveTime too, none for a CDA embedded in HL7): repeated measurements of one test in one request
# were merged (QA fmt F1); collected_at is unchanged
# "8": CSV: a byte Windows-1252 leaves undefined in 8-bit text refuses its line like a C1 control in
# HL7/HPRIM (it was read as U+FFFD and stored in the name and its pseudonym); CDA: a document
# declaring ISO-8859-1, or not UTF-8, is read as Windows-1252 (it was Latin-1), and one holding a byte
# Windows-1252 leaves undefined is refused naming it; HL7: in a file without BHS, an FTS-1 above its
# number of messages is a truncated-delivery reject; PID-3: an identifier typed INS (CX-5) without
# its OID is read before the IPP (the IPP was read, and the patient linked by traits); UTF-8 text:
# the 27 C1 code points Windows-1252 defines are read as its signs (U+0092 as ’), not refused as
# controls (QA regr F3); only the five it leaves undefined refuse their unit; CDA: a coded value's
# text by reference to a table row or paragraph reads its cells and lines apart (QA regr F7)

# bump when the coded rows change shape or meaning: part of the coding fingerprint, so the next run
# re-codes (and republishes) every earlier file. "2": the version key became a keyed hash (it was
# the plain lab|request|test|specimen, which showed the lab's request number to analysts).
# "3": staging holds request_key and message_key (keyed hashes) instead of request_id and
# message_id, and the version key is computed from request_key. "4": the version key is the parts
# joined (lab|request_key|test|specimen), no second hash: request_key already hides the number, and
# a keyed hash per row cost about 8 s at 5 M results.
# "5": a result without a value (status X or D) is not_numeric, not text_on_quantitative; the
# version key no longer holds the specimen (transforms/versions.py compares it: a row without one,
# an OBX beside the embedded CDA that states it, is the same result). The re-coding it brings
# republishes every file, so an earlier fact table's versions are settled again the current way.
# "6": staging, coded and fct hold observation_sub_id and observed_at (QA fmt F1): the bump makes the
# next run look for partitions without them again and add them as null (NULL_WHEN_MISSING).
# "7": a late correction (validated over 366 days after its collection) that corrected nothing is
# not current, provisionally too (QA regr F1); own times under 5 minutes apart no longer tell two
# rows of one message apart (QA regr F5): re-coding and republishing settles earlier ones so.
CODING_FORMAT = "7"


# --------------------------------------------------------------------------------------------
# context
# --------------------------------------------------------------------------------------------
@dataclass
class Context:
    settings: Settings
    wh: Warehouse
    run_id: str
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @classmethod
    def create(cls, settings: Settings, run_id: str) -> "Context":
        return cls(settings=settings, wh=Warehouse(settings.home_abs), run_id=run_id)


@dataclass
class FileTicket:
    """A file the run will process (or has recognised as a re-delivery)."""

    log_id: str
    path: str  # relative to landing/
    source: str
    sha256: str
    file_id: str
    file_seq: int
    size_bytes: int
    status: str  # new | duplicate | unsafe | settling (modified too recently: left for the next run)
    duplicate_of: str | None = None
    detail: str | None = None  # why an unsafe file is refused
    reason: str = "UNSAFE_FILE_NAME"  # an unsafe file's reason code (NOT_A_FILE: a symbolic link)
    raw_name: str | None = None  # an unsafe file's name as found (never logged; the audit escapes it)
    # a loaded file read again (``biolake reprocess``): its first registration, kept in the file log
    registered_at: datetime | None = None


# --------------------------------------------------------------------------------------------
# reference tables
# --------------------------------------------------------------------------------------------
def load_ref(ctx: Context) -> dict[str, pl.DataFrame]:
    """Read the seed CSVs (all columns as text, codes keep their leading zeros) and store them as ref tables."""
    refs: dict[str, pl.DataFrame] = {}
    for name, rel in cat.REF_SEEDS.items():
        if name == "loinc":  # the table in use: the subset, or the official table completed by it
            df = loinc_table(ctx.settings).select([c.name for c in cat.REF_TABLES["loinc"].columns])
        elif name == "mdo_rules":  # the table in use: the operator's (BIOLAKE_MDO_RULES), else the seed,
            # in the catalog's columns (an optional one absent is empty) and 'yes'/'no' as mdo.load_rules reads
            df = pl.read_csv(ctx.settings.mdo_rules or ctx.settings.seeds_dir / rel, infer_schema=False)
            df = df.select([(pl.col(c.name) if c.name in df.columns else pl.lit(None, pl.Utf8)).alias(c.name)
                            for c in cat.REF_TABLES["mdo_rules"].columns])
            df = df.with_columns(pl.col("active").str.strip_chars().str.to_lowercase().replace("", None)
                                 .fill_null("yes"))
        else:
            df = pl.read_csv(ctx.settings.seeds_dir / rel, infer_schema=False)
        if name == "population":
            df = df.with_columns(pl.col("cl_age90").cast(pl.Int64), pl.col("pop").cast(pl.Float64))
        refs[name] = df
        out = ctx.wh.root / "ref" / name
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / f".data.{uuid.uuid4().hex}.tmp"
        df.write_parquet(tmp)
        os.replace(tmp, out / "data.parquet")
    return refs


def read_ref(ctx: Context, name: str) -> pl.DataFrame:
    """A ref table as stored by load_ref (the seeds of this run)."""
    return pl.read_parquet(ctx.wh.root / "ref" / name / "data.parquet")


def read_refs(ctx: Context) -> dict[str, pl.DataFrame]:
    return {name: read_ref(ctx, name) for name in cat.REF_SEEDS}


def count_rows(ctx: Context, t) -> int:
    return ctx.wh.scan(t).select(pl.len()).collect().item()


# --------------------------------------------------------------------------------------------
# discover and register
# --------------------------------------------------------------------------------------------
def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


class LandingHashes:
    """The sha256 of each landing file, kept between runs in ``warehouse/landing_hashes.json`` with
    the file's identity on disk (size, modification and change times in ns, inode, device): a file
    whose identity is unchanged is not read again (a run used to hash the whole landing area, 1.3
    to 1.8 s per 500 MB, so minutes a run for years of deliveries). Any write to the file changes
    its change time, which no program can set back, and a copied or restored landing area has new
    inodes: either way the file is hashed again. A file changed less than ``FRESH_NS`` before it was
    hashed is not kept (a write in the same clock tick could leave its times as they were)."""

    FRESH_NS = 2_000_000_000

    def __init__(self, ctx: Context):
        self.path = ctx.wh.root / "landing_hashes.json"
        try:
            self.kept: dict[str, list] = json.loads(self.path.read_text()) if self.path.exists() else {}
        except (OSError, ValueError):  # unreadable: every file is hashed, as before the cache
            self.kept = {}
        self.now: dict[str, list] = {}

    @staticmethod
    def _identity(st: os.stat_result) -> list:
        return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]

    def digest(self, path: Path, rel: str) -> str:
        before = self._identity(path.stat())
        kept = self.kept.get(rel)
        if kept is not None and kept[:5] == before:
            self.now[rel] = kept
            return kept[5]
        digest = sha256_of(path)
        after = self._identity(path.stat())
        if after == before and time.time_ns() - max(after[1], after[2]) > self.FRESH_NS:
            self.now[rel] = [*after, digest]
        return digest

    def save(self) -> None:
        """Keep the files seen by this run (those gone from the landing area are forgotten)."""
        if self.now == self.kept:
            return
        self._write(self.path, self.now)

    @staticmethod
    def _write(path: Path, kept: dict) -> None:
        """Written 0600 (it names every landing file, and labs name files after patients: QA priv F3)."""
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(json.dumps(kept, separators=(",", ":"), sort_keys=True))
            os.replace(tmp, path)
        except OSError:  # a cache: failing to keep it costs the next run its hashing, nothing else
            tmp.unlink(missing_ok=True)

    @classmethod
    def forget(cls, ctx: Context, rels: set[str]) -> int:
        """Drop these landing paths from the kept hashes (the purge deleted their files: their names,
        which may be patients', must not outlive them). Returns how many were dropped."""
        path = ctx.wh.root / "landing_hashes.json"
        try:
            kept = json.loads(path.read_text()) if path.exists() else {}
        except (OSError, ValueError):
            kept = {}
        left = {k: v for k, v in kept.items() if k not in rels}
        if len(left) != len(kept) or (path.exists() and stat.S_IMODE(path.stat().st_mode) != 0o600):
            cls._write(path, left)
        return len(kept) - len(left)


def _skipped_name(name: str) -> bool:
    """Names discover passes over without a trace: hidden files and folders (a name starting with
    ``.``: partial uploads by convention) and office lock files (``~$name.xlsx``, ``~$name.csv``:
    written by a spreadsheet while the file is open, never a delivery)."""
    return name.startswith((".", "~$"))


def walk_landing(landing: Path) -> tuple[list[Path], list[OSError]]:
    """The landing area's files and symbolic links (never followed, to files or folders), in path
    order, without descending into skipped folders; and the errors of the folders that could not be
    listed (QA: ``rglob`` passed over an unreadable folder in silence, its files seen nowhere)."""
    entries: list[Path] = []
    errors: list[OSError] = []
    for top, dirs, files in os.walk(landing, onerror=errors.append):
        top_path = Path(top)
        keep = []
        for d in dirs:
            if _skipped_name(d):
                continue
            if (top_path / d).is_symlink():  # a link to a folder: an entry, never walked into
                entries.append(top_path / d)
            else:
                keep.append(d)
        dirs[:] = sorted(keep)
        for name in files:
            p = top_path / name
            if p.is_symlink() or p.is_file():
                entries.append(p)
    return sorted(entries), sorted(errors, key=lambda e: str(e.filename))


def _os_error(err: OSError) -> str:
    """The operating system's error without the absolute path it names."""
    return f"[Errno {err.errno}] {err.strerror}" if err.errno is not None else type(err).__name__


def _sighting_id(kind: str, shown: str, path: Path) -> str:
    """The log id of a landing entry refused unread: the same entry in the same state (size,
    modification time) is logged once; changed (a new delivery under the same name) it is logged
    again."""
    try:
        st = path.lstat()
        state = f"{st.st_size}\0{st.st_mtime_ns}"
    except OSError:
        state = ""
    return hashlib.sha256(f"{kind}\0{state}\0{shown}".encode()).hexdigest()[:16]


def unreadable_log_id(landing: Path, rel: str) -> str:
    """The log id of a file that could not be read: not its content's (which a later run gives the
    file once it is readable, so that it is then loaded), but one of this path in this state."""
    return _sighting_id("unreadable", rel, landing / rel)


def root_log_id(landing: Path, rel: str) -> str:
    """The log id of a file refused unread at the root of the landing area (NOT_IN_LAB_FOLDER): one
    of this name in this state (size, modification time). The purge deletes such a file only while
    it is still in the logged state (its content was never read, so no hash proves it)."""
    from flows.privacy import safe_display_name

    return _sighting_id("root", safe_display_name(rel), landing / rel)


def _size(path: Path) -> int:
    try:
        return path.lstat().st_size
    except OSError:
        return 0


def _modified_within(path: Path, seconds: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime < seconds
    except OSError:
        return False  # gone or unreadable: the checks below say so


def known_lab_folders(ctx: Context, log: pl.DataFrame | None = None) -> set[str]:
    """The landing folders that are labs whatever their name (``flows.privacy.lab_folder_problem``
    is for new folders only): one a file was loaded from, one listed in seeds/labs.csv (its
    ``source`` column), one with a mapping file (``mappings/<lab>.csv``). QA regr2 F1: after the
    rule came, existing labs named with a blank or a SIRET stopped loading, their loaded files were
    logged failed, and renaming the folder would make a new lab."""
    log = ctx.wh.read(cat.FILE_LOG) if log is None else log
    known = set(log.filter(pl.col("status") == "loaded")["source"].unique().to_list()) if log.height else set()
    labs = ctx.settings.seeds_dir / "labs.csv"
    if labs.is_file():
        seeded = pl.read_csv(labs, infer_schema=False)
        if "source" in seeded.columns:
            known |= set(seeded["source"].drop_nulls().to_list())
    for d in mapping_dirs(ctx):
        if d.is_dir():
            known |= {p.stem for p in d.glob("*.csv")}
    return known


def discover(ctx: Context) -> list[FileTicket]:
    """Files in landing/<source>/ not yet logged, in path order, each hashed and registered.

    A file whose content was already loaded (same sha256, any name) is a re-delivery: it is logged
    as duplicate and skipped. Refused without being read (status unsafe, with their reason): a file
    with a hostile name (traversal, control characters, bytes that are not UTF-8...), a symbolic
    link, a file at the root of the landing area (outside a lab folder); refused as well, each
    logged once and looked at again by every run: a file that cannot be read and a folder that
    cannot be listed. Hidden files and folders and office lock files (``~$...``) are skipped.
    """
    from flows.privacy import PERSON_NAMED_FOLDER, lab_folder_problem, landing_name_problem, safe_display_name

    landing = ctx.settings.landing
    if not landing.exists():
        return []
    log = ctx.wh.read(cat.FILE_LOG)
    seen_logs = set(log["log_id"].to_list())
    loaded = {fid: p for fid, p, st in log.select("file_id", "path", "status").iter_rows() if st == "loaded"}
    # the delivery order (file_seq, a tie-break between versions) given to files a run registered
    # but did not finish (killed): a re-run gives them the same numbers, so that files processed
    # in parallel and logged out of order end up numbered as in an uninterrupted run
    pending: dict[str, int] = _state(ctx).get("pending_file_seq", {})
    # loaded files an operator asked to read again (``mark_reprocess``): log id -> their log row
    again = set(_state(ctx).get("reprocess", []))
    logged_rows = ({r["log_id"]: r for r in log.filter(pl.col("log_id").is_in(list(again))).iter_rows(named=True)}
                   if again else {})
    next_seq = max([(log["file_seq"].max() or 0) if log.height else 0, *pending.values()]) + 1
    tickets: list[FileTicket] = []
    known_labs = known_lab_folders(ctx, log)

    def refuse(uid: str, shown: str, source: str, path: Path, problem: str, reason: str, raw: str) -> None:
        if uid not in seen_logs:  # logged once
            tickets.append(FileTicket(uid, shown, source, "", uid, 0, _size(path), "unsafe", detail=problem,
                                      reason=reason, raw_name=raw))

    entries, folder_errors = walk_landing(landing)
    hashes = LandingHashes(ctx)
    settle = ctx.settings.landing_settle_seconds
    logged_size = dict(log.select("path", "size_bytes").iter_rows()) if settle else {}
    for err in folder_errors:  # a folder that cannot be listed: its files are seen by no run until it can
        folder = Path(err.filename or landing)
        rel = folder.relative_to(landing).as_posix() if folder != landing else "."
        shown = safe_display_name(rel) + "/"
        problem = (f"{shown}: the folder cannot be listed ({_os_error(err)}): the files inside are not seen; "
                   "listed again by every run")
        refuse(_sighting_id(f"folder\0{err.errno}", shown, folder), shown,
               safe_display_name(rel.split("/")[0]) if rel != "." else "_unknown", folder, problem,
               "FOLDER_UNREADABLE", f"{rel}/")
    for path in entries:
        rel = path.relative_to(landing).as_posix()
        if any(_skipped_name(part) for part in rel.split("/")):
            continue  # hidden files (partial uploads by convention) and office lock files
        shown = safe_display_name(rel)
        problem, reason, salt = landing_name_problem(rel), "UNSAFE_FILE_NAME", "unsafe"
        folder_problem = (not problem and "/" in rel and rel.split("/")[0] not in known_labs
                          and lab_folder_problem(rel.split("/")[0]))
        if folder_problem:  # a patient's folder at the root, not a lab's (QA priv F4): never shown, never read
            below = rel.split("/", 1)[1]
            shown = f"{PERSON_NAMED_FOLDER}/{safe_display_name(below)}"
            refuse(_sighting_id("person-folder", rel, path), shown, "_unknown", path,
                   f"{shown}: in a new folder at the root of the landing area whose name cannot be a lab's "
                   f"({folder_problem}): not read, the folder not named. A patient's folder? Move it out of the "
                   "landing area. A new lab? Name its folder without blanks, dates or long numbers "
                   "(labo_pasteur), or list it in seeds/labs.csv or give it a mapping file (docs/privacy.md)",
                   "LAB_FOLDER_NAME", rel)
            continue
        if not problem and path.is_symlink():  # never followed (it may point anywhere), but logged
            problem = f"{shown}: a symbolic link, not followed (deliver the file itself)"
            reason, salt = "NOT_A_FILE", f"symlink\0{os.readlink(path)}"
        if problem:  # refused without being opened, logged once
            refuse(hashlib.sha256(f"{salt}\0{shown}".encode()).hexdigest()[:16], shown,
                   safe_display_name(rel.split("/")[0]) if "/" in rel else "_unknown", path, problem, reason, rel)
            continue
        source = rel.split("/")[0] if "/" in rel else "_unknown"
        if "/" not in rel:  # the folder is the lab's identity: a file outside one belongs to no lab
            refuse(root_log_id(landing, rel), shown, source, path,
                   f"{shown}: at the root of the landing area, outside any lab folder: not read "
                   "(deliver into landing/<lab>/, the folder names the lab)", "NOT_IN_LAB_FOLDER", rel)
            continue
        # a file already logged at this size is a delivery seen before (a copied landing area has
        # fresh times; QA): hashed as usual, and skipped when its content is the logged one
        if settle and logged_size.get(rel) != _size(path) and _modified_within(path, settle):
            # QA: a file still being copied was loaded half-written, then again whole (raw, staging
            # and the quarantined cut line kept both); left untouched and unlogged for the next run
            tickets.append(FileTicket("", rel, source, "", "", 0, _size(path), "settling",
                                      detail=f"{rel}: modified less than {settle:g} s ago, still being written? "
                                             "Left for the next run (BIOLAKE_LANDING_SETTLE_SECONDS)"))
            continue
        try:
            digest = hashes.digest(path, rel)
        except FileNotFoundError:  # moved or deleted while the run looked: the next run sees it if it is back
            continue
        except OSError as err:  # QA: one unreadable file stopped the whole run
            refuse(unreadable_log_id(landing, rel), rel, source, path,
                   f"{rel}: cannot be read ({_os_error(err)}); read again by every run until it can be",
                   "FILE_UNREADABLE", rel)
            continue
        log_id = hashlib.sha256(f"{rel}\0{digest}".encode()).hexdigest()[:16]
        if log_id in logged_rows and logged_rows[log_id]["status"] == "loaded":
            # read again as it was delivered: same file id, same place in the delivery order
            row = logged_rows[log_id]
            tickets.append(FileTicket(log_id, rel, source, digest, row["file_id"], row["file_seq"], _size(path),
                                      "new", registered_at=row["registered_at"]))
            continue
        if log_id in seen_logs:
            continue
        file_id = digest[:16]
        if file_id in loaded:
            tickets.append(FileTicket(log_id, rel, source, digest, file_id, 0, _size(path), "duplicate",
                                      loaded[file_id]))
            continue
        loaded[file_id] = rel
        seq = pending.get(log_id)
        if seq is None:
            seq, next_seq = next_seq, next_seq + 1
        tickets.append(FileTicket(log_id, rel, source, digest, file_id, seq, _size(path), "new"))
    hashes.save()
    _save_state(ctx, pending_file_seq={t.log_id: t.file_seq for t in tickets if t.status == "new"})
    return tickets


def mark_reprocess(ctx: Context, labs: list[str] | None = None) -> dict[str, list[str]]:
    """Ask the next run to read again the loaded files still in the landing area with the content
    they were loaded with (of ``labs`` when given): each is parsed, validated and coded again by the
    current code, keeping its file id and its place in the delivery order, and every file is then
    re-coded and republished (state ``recode_all``: "reprocess"), so that the versions of every
    result are settled again. Returns {"marked": paths, "missing": paths no longer there as loaded,
    "purged": paths of files whose identities were purged}.

    What an upgrade whose parser or validation changed needs: a re-coding alone (done by the runs)
    does not re-read the rows, so a parser fix did not reach the files loaded before it. Call it
    under the warehouse lock. Files whose identities a purge removed are never read again
    (``purged``): the landing copy, when kept, would bring the identities back."""
    log = ctx.wh.read(cat.FILE_LOG).filter(pl.col("status") == "loaded")
    if labs:
        log = log.filter(pl.col("source").is_in(labs))
    landing = ctx.settings.landing
    marked, missing, purged = [], [], []
    gone_ids = purged_file_ids(ctx)
    for log_id, rel, sha, fid in log.sort("file_seq").select("log_id", "path", "sha256", "file_id").iter_rows():
        if fid in gone_ids:  # its identities were purged: reading the landing copy would bring them back
            purged.append((log_id, rel))
            continue
        path = landing / rel
        try:
            same = path.is_file() and not path.is_symlink() and sha256_of(path) == sha
        except OSError:
            same = False
        (marked if same else missing).append((log_id, rel))
    ids = sorted(set(_state(ctx).get("reprocess", [])) | {i for i, _ in marked})
    _save_state(ctx, reprocess=ids, recode_all="reprocess")
    return {"marked": [r for _, r in marked], "missing": [r for _, r in missing],
            "purged": [r for _, r in purged]}


def parsed_earlier(ctx: Context) -> list[str]:
    """File ids of the loaded files an earlier parser read (their ingest record names another
    PARSER_VERSION, or they were loaded before the record existed), purged files left out: what
    ``biolake reprocess`` would read again to give them this version's reading."""
    log = ctx.wh.read(cat.FILE_LOG).filter(pl.col("status") == "loaded")
    purged = purged_file_ids(ctx) if log.height else set()
    out = []
    for fid in log["file_id"].unique().sort().to_list():
        if fid in purged:
            continue
        marker = _marker_of(ctx, fid)
        try:
            version = json.loads(marker.read_text()).get("parser_version")
        except (OSError, ValueError):
            version = None
        if version != PARSER_VERSION:
            out.append(fid)
    return out


def purged_file_ids(ctx: Context) -> set[str]:
    """File ids whose identities a purge removed (the purge's audit events name them)."""
    from warehouse.catalog_privacy import AUDIT_EVENTS

    events = ctx.wh.read(AUDIT_EVENTS).filter(pl.col("kind") == "purge")
    out: set[str] = set()
    for details in events["details"].to_list():
        try:
            out |= set(json.loads(details or "{}").get("file_ids", []))
        except ValueError:
            continue
    return out


def reprocess_pending(ctx: Context) -> list[str]:
    """Log ids of the files still to be read again (``mark_reprocess``)."""
    return list(_state(ctx).get("reprocess", []))


def reprocessed(ctx: Context, tickets: list[FileTicket], failed: list[FileTicket]) -> None:
    """These files were read again. One that failed now (the current parser refuses it) loses the
    rows its earlier reading left in raw, staging, the coded rows and the fact table: the file log
    says failed, and its results no longer count, as in a warehouse built afresh. Settlements of
    quarantined results (quality.quarantine_settled) involving them are found again by the
    publication (their result numbers may have changed)."""
    done = {t.log_id for t in [*tickets, *failed]}
    again = set(_state(ctx).get("reprocess", []))
    if not done & again:
        return
    fids = {t.file_id for t in [*tickets, *failed] if t.log_id in again}
    for t in failed:
        if t.log_id in again:
            for table in (cat.RAW_RESULTS, cat.STG_RESULTS, cat.STG_RESULTS_CODED, cat.FCT_LAB_RESULTS):
                ctx.wh.delete_partition(table, t.file_id)
    from flows.publish import forget_quarantine_keys

    forget_quarantine_keys(ctx, fids)  # their quarantine was written again
    _save_state(ctx, settled_checked_seq=0)  # their results are compared with every later file again
    settled = ctx.wh.read(cat.QUARANTINE_SETTLED)
    if settled.height:
        ctx.wh.write_table(cat.QUARANTINE_SETTLED, settled.filter(
            ~pl.col("file_id").is_in(list(fids)) & ~pl.col("settled_by_file_id").is_in(list(fids))))
    _save_state(ctx, reprocess=sorted(again - done))


def log_file(ctx: Context, t: FileTicket, *, fmt: str | None, status: str, rows_in: int = 0,
             rows_valid: int = 0, rows_quarantined: int = 0, reason_code: str | None = None,
             detail: str | None = None) -> dict:
    row = {
        "log_id": t.log_id, "path": t.path, "source": t.source, "sha256": t.sha256, "file_id": t.file_id,
        "file_seq": t.file_seq, "size_bytes": t.size_bytes, "format": fmt, "status": status,
        "duplicate_of": t.duplicate_of, "rows_in": rows_in, "rows_valid": rows_valid,
        "rows_quarantined": rows_quarantined, "reason_code": reason_code, "detail": detail,
        "registered_at": t.registered_at or datetime.now(), "run_id": ctx.run_id,
    }
    df = pl.DataFrame([row], schema=cat.FILE_LOG.schema)
    ctx.wh.write_partition_file(cat.FILE_LOG, t.log_id, df)
    return row


# --------------------------------------------------------------------------------------------
# ingest: parse into raw.results and raw.rejected_lines
# --------------------------------------------------------------------------------------------
def ingest(ctx: Context, t: FileTicket, keep: KeptFrames | None = None) -> dict:
    """Parse one file into raw parts. Returns {'format', 'rows_in', 'rows_parsed', 'rejected'}
    or, for a file that cannot be parsed at all, {'failed': reason, 'detail': message}. With
    ``keep``, the raw rows as written are also kept in memory while small (for ``validate``)."""
    path = ctx.settings.landing / t.path
    now = datetime.now()
    rejects: list[pl.DataFrame] = []
    units = 0
    parsed = 0

    def rows():
        nonlocal units, parsed
        for chunk in parser(path, file_id=t.file_id, source=t.source, chunk_rows=ctx.settings.chunk_rows):
            units += chunk.units_seen
            if chunk.rejects.height:
                rejects.append(chunk.rejects)
            yield chunk.rows.with_columns(
                pl.int_range(parsed + 1, parsed + 1 + chunk.rows.height, dtype=pl.Int64).alias("result_no"),
                pl.lit(now).cast(pl.Datetime("us")).alias("ingested_at"))
            parsed += chunk.rows.height

    _ingest_marker(ctx, t).unlink(missing_ok=True)
    try:
        fmt = detect_format(path)
        parser = get_parser(fmt)
        ctx.wh.write_partition(cat.RAW_RESULTS, t.file_id, rows(), keep=keep)
    except FileFormatError as err:
        ctx.wh.delete_partition(cat.RAW_RESULTS, t.file_id)
        return {"failed": err.reason_code, "detail": str(err)}
    except FileNotFoundError:  # QA: a file moved away mid-run aborted the whole run
        ctx.wh.delete_partition(cat.RAW_RESULTS, t.file_id)
        return {"failed": "FILE_GONE", "detail": f"{t.path}: no longer in the landing area (moved, renamed or "
                                                 "deleted during the run); read when it is back"}
    except OSError as err:
        if err.filename is None or Path(err.filename) != path:
            raise  # not the landing file's fault (the warehouse's disk, ...)
        # read once to hash it, unreadable now (its permissions changed during the run)
        ctx.wh.delete_partition(cat.RAW_RESULTS, t.file_id)
        return {"failed": "FILE_UNREADABLE", "detail": f"{t.path}: cannot be read ({_os_error(err)}); read again "
                                                       "by every run until it can be"}
    rej = pl.concat(rejects) if rejects else cat.RAW_REJECTED.empty()
    ctx.wh.write_partition(cat.RAW_REJECTED, t.file_id, [rej])
    n_rej = rej["line_no"].n_unique()
    got = {"format": fmt, "rows_in": parsed + n_rej, "units_seen": units, "rows_parsed": parsed,
           "rejected_lines": n_rej}
    _write_ingest_marker(ctx, t, got)
    return got


def _ingest_marker(ctx: Context, t: FileTicket) -> Path:
    return _marker_of(ctx, t.file_id)


def _marker_of(ctx: Context, file_id: str) -> Path:
    return ctx.wh.root / "raw" / "_ingested" / f"{file_id}.json"


def _write_ingest_marker(ctx: Context, t: FileTicket, got: dict) -> None:
    """Written last, once both raw partitions are in place: proof that the ingest of this content
    completed (a run killed before it leaves no marker, and the file is parsed again)."""
    marker = _ingest_marker(ctx, t)
    marker.parent.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_name(f".{marker.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps({"sha256": t.sha256, "parser_version": PARSER_VERSION, **got}))
    os.replace(tmp, marker)


def ingested(ctx: Context, t: FileTicket) -> dict | None:
    """The result of an earlier complete ingest of the same content by the same parser, when its
    raw partitions are still there (a re-run after a crash need not parse again); else None."""
    marker = _ingest_marker(ctx, t)
    if not marker.exists():
        return None
    try:
        got = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    if got.pop("sha256", None) != t.sha256 or got.pop("parser_version", None) != PARSER_VERSION:
        return None
    if not ctx.wh.holds(cat.RAW_RESULTS, t.file_id) or not ctx.wh.holds(cat.RAW_REJECTED, t.file_id):
        return None
    return got


def quarantine_file_failure(ctx: Context, t: FileTicket, reason: str, detail: str) -> None:
    q = pl.DataFrame(
        [{"file_id": t.file_id, "path": t.path, "source": t.source, "line_no": None, "result_no": None,
          "reason_code": reason,
          "column": None, "detail": detail}], schema=cat.QUARANTINE.schema)
    ctx.wh.write_partition(cat.QUARANTINE, t.file_id, [q])


# --------------------------------------------------------------------------------------------
# validate: pandera model -> staging rows + quarantine
# --------------------------------------------------------------------------------------------
def local_ids_are_not_ins(rows: pl.DataFrame) -> pl.DataFrame:
    """In message formats the patient identifier may be a local number (MRN, IPP) rather than an
    INS: one whose assigning authority is not an INS OID and that is not a NIR (its shape and its
    key) is dropped, and the patient is linked by name, first name, birth date and sex instead. An
    identifier without the INS OID whose key is wrong is not trusted as one (QA regr2 F3: an INS
    typed without its OID, read before the IPP since, was quarantined NIR_KEY where the row loaded
    through its traits before); with the INS OID, a wrong key is quarantined."""
    from transforms.identity import INS_OID_NIA, INS_OID_NIR, INS_OID_TEST, nir_format_ok_expr, nir_key_ok_expr

    ins_oids = [INS_OID_NIR, INS_OID_NIA, *INS_OID_TEST]
    nir = (nir_format_ok_expr("patient_nir") & nir_key_ok_expr("patient_nir")).fill_null(False)
    local = (~pl.col("ins_oid").fill_null("").is_in(ins_oids)) & ~nir
    return rows.with_columns(pl.when(local).then(None).otherwise(pl.col("patient_nir")).alias("patient_nir"))


def validate(ctx: Context, t: FileTicket, postal_codes: pl.DataFrame, fmt: str = "csv",
             raw: KeptFrames | None = None, keep: KeptFrames | None = None) -> dict:
    """The file's raw rows (those ``raw`` kept as ingest wrote them, else read from raw.results) checked
    against the model: valid rows to staging.stg_results (also kept in ``keep`` while small, for
    ``transcode``), the others and the rejected lines to quarantine."""
    secret = ctx.settings.secret_bytes()
    quarantines: list[pl.DataFrame] = []
    n_valid = 0
    bad_finess: Counter = Counter()  # invalid FINESS values of the valid rows -> rows (flagged, kept)
    run_time = datetime.now(timezone.utc)  # the future check's clock: UTC, never the host's zone

    def staged():
        nonlocal n_valid
        for part in ctx.wh.parts(cat.RAW_RESULTS, t.file_id, raw):
            rows = part.drop("ingested_at")
            if fmt != "csv":  # the CSV extract's NIR column is a NIR: a malformed one is quarantined
                rows = local_ids_are_not_ins(rows)
            # the model judges rows by line_no; several results can share a line (a CDA embedded in
            # one OBX), so validate with the unique result_no in its place and put the line back
            lines = rows.select("result_no", "line_no")
            valid, q = validate_rows(rows.with_columns(pl.col("result_no").alias("line_no")), now=run_time)
            valid = valid.rename({"line_no": "result_no"}).join(lines, on="result_no", how="left",
                                                                 maintain_order="left")
            q = q.rename({"line_no": "result_no"}).join(lines, on="result_no", how="left", maintain_order="left")
            quarantines.append(q)
            n_valid += valid.height
            bad_finess.update(finess.failures(valid["lab_finess"]))
            yield to_staging(with_lineage_keys(valid, secret), file_seq=t.file_seq, postal_codes=postal_codes,
                             secret=secret)

    ctx.wh.write_partition(cat.STG_RESULTS, t.file_id, staged(), keep=keep)
    rejected = ctx.wh.read(cat.RAW_REJECTED, [t.file_id]).select(
        "line_no", pl.lit(None, dtype=pl.Int64).alias("result_no"), "reason_code", "column", "detail")
    q = pl.concat([rejected, *quarantines], how="diagonal_relaxed") if quarantines else rejected
    q = q.with_columns(file_id=pl.lit(t.file_id), path=pl.lit(t.path), source=pl.lit(t.source))
    ctx.wh.write_partition(cat.QUARANTINE, t.file_id, [q])
    # a rejected line/message counts once; a parsed result that failed counts once
    n_quarantined = rejected["line_no"].n_unique() + q["result_no"].drop_nulls().n_unique()
    return {"rows_valid": n_valid, "rows_quarantined": n_quarantined,
            "reasons": q.group_by("reason_code").len().sort("reason_code").rows(),
            "finess_invalid": dict(bad_finess)}


def with_lineage_keys(df: pl.DataFrame, secret: bytes) -> pl.DataFrame:
    """``request_key`` and ``message_key``: keyed hashes (HMAC-SHA256 under the pseudonymisation
    secret, 128 bits) of the lab with its request number and with its message id. Labs build request
    numbers from identities (QA saw a NIR followed by a birth date, and 'MARTIN19750303'): only
    these hashes leave the raw layer; an engineer finds the raw line by file_id and line_no."""
    from transforms.identity import keyed_hashes

    parts = df.select(
        pl.concat_str([pl.col("source"), pl.col("request_id")], separator="|").alias("r"),
        pl.concat_str([pl.col("source"), pl.col("message_id")], separator="|").alias("m"))
    return df.with_columns(keyed_hashes(parts["r"], secret, "REQUEST").alias("request_key"),
                           keyed_hashes(parts["m"], secret, "MESSAGE").alias("message_key"))


# --------------------------------------------------------------------------------------------
# warehouses written by earlier code: what the current code migrates, and what it refuses
# --------------------------------------------------------------------------------------------
STAGING_FORMAT_PLAIN_COLUMNS = ("request_id", "message_id")  # what a staging partition of before held
# columns a staging (or raw) partition of an earlier format lacks that are added as null when it is
# rewritten: the earlier code never filled them, so null keeps each old row's reading.
# value_comparator: before it, the parsers read a bound ('<0,5', '>100', SN '<^0.5') as no number at
# all (value_num null), so every old value_num is an exact value, as a null comparator says; the old
# bounds stay without a number (a fresh build from the landing files gives them their bound).
# observation_sub_id, observed_at: before them, the parsers did not read OBX-4 nor keep OBX-14 (or a
# CDA observation's own time); null says "none stated", which tells old results apart exactly as
# they were (`biolake reprocess` reads their files again: QA fmt F1)
NULL_WHEN_MISSING = ("value_comparator", "observation_sub_id", "observed_at")
# columns an earlier staging lacks that no migration can give honestly, and why
STAGING_UNMIGRATABLE = {
    # staging never held the names; raw.results loses them at the purge; null would leave those
    # results unlinked from the same person's later ones, and the counts neither old nor new
    "link_key": "a keyed hash of the patient's names and birth date, which staging does not hold",
}
_UPGRADED_TABLES = (cat.STG_RESULTS, cat.STG_RESULTS_CODED, cat.FCT_LAB_RESULTS)


@dataclass
class EarlierFormat:
    """What earlier code left in staging, coded and fct (read from each partition's column names)."""

    old: dict[str, list[str]]  # table -> file ids of its partitions not in the current format
    blocking: dict[str, dict[str, int]]  # column no migration can give -> {table: partitions lacking it}
    partitions: dict[str, int]  # table -> partitions

    def message(self, home: Path) -> str:
        parts = []
        for col, tables in self.blocking.items():
            where = ", ".join(f"{t} ({n} of {self.partitions[t]} files)" for t, n in tables.items())
            parts.append(f"{where} lack{'s' if len(tables) == 1 else ''} {col}, "
                         f"{STAGING_UNMIGRATABLE.get(col, 'which no migration gives')}")
        return (f"{home} was built by an earlier biolake and cannot be upgraded: " + "; ".join(parts)
                + ". Build a fresh home from its landing files with the same BIOLAKE_PSEUDONYM_SECRET; this one "
                "is left unchanged (docs/operations.md, 'Upgrading a warehouse')")


def earlier_format(ctx: Context) -> EarlierFormat:
    """The staging, coded and fct partitions whose columns are not the catalog's (one Parquet
    schema read per partition), and the columns staging lacks that no migration can give (with
    the tables lacking them)."""
    old: dict[str, list[str]] = {}
    missing: dict[str, dict[str, int]] = {}  # column -> {table: partitions lacking it}
    unmigratable: set[str] = set()
    sizes: dict[str, int] = {}
    for t in _UPGRADED_TABLES:
        want = set(t.schema)
        lay = ctx.wh.layout(t)
        fids = ctx.wh.partitions(t)
        sizes[t.qualified] = len(fids)
        for fid in fids:
            cols = ctx.wh.partition_columns(t, fid, lay)
            if cols is None or cols == want:
                continue
            old.setdefault(t.qualified, []).append(fid)
            for col in sorted(want - cols):
                by_table = missing.setdefault(col, {})
                by_table[t.qualified] = by_table.get(t.qualified, 0) + 1
                if t is cat.STG_RESULTS and not _migratable(col, cols):
                    unmigratable.add(col)
    return EarlierFormat(old, {c: missing[c] for c in sorted(unmigratable)}, sizes)


def _migratable(col: str, cols: set[str]) -> bool:
    """Whether migrate_staging gives a staging partition with columns ``cols`` the column ``col``."""
    if col in NULL_WHEN_MISSING:
        return True
    return col in ("request_key", "message_key") and set(STAGING_FORMAT_PLAIN_COLUMNS) <= cols


def _earlier_upgradable(ctx: Context) -> EarlierFormat | None:
    """None when the state records every partition current (nothing read); else what earlier code
    left, after refusing (WarehouseNeedsRebuild) a warehouse lacking a column no migration gives."""
    if _state(ctx).get("staging_format") == CODING_FORMAT:
        return None  # checked before: every partition written since has the current columns
    found = earlier_format(ctx)
    if found.blocking:
        from flows.settings import WarehouseNeedsRebuild

        raise WarehouseNeedsRebuild(found.message(ctx.wh.home))
    return found


def check_upgradable(ctx: Context, *, migrated: bool = False) -> None:
    """Before anything runs: refuse a warehouse no migration brings to the current format
    (WarehouseNeedsRebuild); with ``migrated``, also one that the next run would migrate but has not
    yet (WarehouseNeedsUpgrade: commands that read the tables as they are). Free once a run has
    found every partition current (the state records it); else a schema read per partition."""
    from flows.settings import WarehouseNeedsUpgrade

    found = _earlier_upgradable(ctx)
    if found is not None and migrated and found.old:
        tables = ", ".join(f"{t} ({len(f)} of {found.partitions[t]} files)" for t, f in found.old.items())
        raise WarehouseNeedsUpgrade(
            f"{ctx.wh.home} was built by an earlier biolake ({tables} in an earlier format): run `biolake run` "
            "first, it upgrades the warehouse (docs/operations.md, 'Upgrading a warehouse')")


def migrate_staging(ctx: Context) -> list[str]:
    """Bring the staging partitions written by earlier code to the current format: those written
    before request_key and message_key existed (they hold the plain request_id and message_id: the
    keys replace them) and those written before value_comparator (added as null, see
    NULL_WHEN_MISSING); nothing else changes. Refuses (WarehouseNeedsRebuild), before writing
    anything, a warehouse lacking a column no migration can give (STAGING_UNMIGRATABLE).
    Returns the file ids to re-code and republish: the staging partitions rewritten, and those whose
    coded or fct partition is still in an earlier format (a run interrupted before re-coding or
    publishing them). Works from staging itself, not from raw, so that files whose identities were
    purged are migrated too. Each partition is swapped in atomically and recognised by its columns:
    an interrupted migration resumes where it stopped. Once a run finds nothing left in an earlier
    format, the state records it and later runs skip the check (a schema read per partition)."""
    found = _earlier_upgradable(ctx)
    if found is None:
        return []
    secret = ctx.settings.secret_bytes()

    def current(df: pl.DataFrame) -> pl.DataFrame:
        if set(STAGING_FORMAT_PLAIN_COLUMNS) <= set(df.columns):
            df = with_lineage_keys(df, secret)
        return df.with_columns([pl.lit(None, dtype=cat.STG_RESULTS.schema[c]).alias(c)
                                for c in NULL_WHEN_MISSING if c not in df.columns])

    done = set()
    for fid in found.old.get(cat.STG_RESULTS.qualified, []):
        ctx.wh.write_partition(cat.STG_RESULTS, fid, (current(part) for part in ctx.wh.parts(cat.STG_RESULTS, fid)))
        done.add(fid)
    staged = set(ctx.wh.partitions(cat.STG_RESULTS))
    for t in (cat.STG_RESULTS_CODED, cat.FCT_LAB_RESULTS):  # staging migrated, the run stopped before these
        done |= {fid for fid in found.old.get(t.qualified, []) if fid in staged}
    if not found.old:  # nothing left in an earlier format: later runs skip the check
        _save_state(ctx, staging_format=CODING_FORMAT)
    return sorted(done)


# bump when transforms/identity_text.py masks more: the staging partitions written before are then
# masked again by the next run (mask_staging_text), re-coded and republished
# 2: NIRs spelt with any run of the NIR field's separators (QA regr F4); 3: the codes masked too and a FINESS
# of another shape emptied (QA priv F1, F2)
TEXT_MASKING = "3"
_IDENTITY_FOR_MASKING = ("result_no", "family_name", "first_name", "birth_date")


def _masked_staging(part: pl.DataFrame, ids: pl.DataFrame) -> pl.DataFrame | None:
    """``part`` (staging rows) with the identities in its free text and codes masked as ``to_staging``
    masks them, each row with its own names and birth date from ``ids`` (raw.results by result_no; null
    once purged: only NIR-shaped numbers are masked then), flagged IDENTITY_IN_TEXT, and a FINESS that
    has no FINESS's shape emptied (``staging.finess_kept``); None when nothing changes (a partition
    staged by the current code, or without identity in its text)."""
    from transforms.identity_text import FLAG, MASKED_COLUMN, STAGING_MASKED_COLUMNS, mask_identities_in_text
    from transforms.staging import finess_kept

    rows = mask_identities_in_text(part.join(ids, on="result_no", how="left", maintain_order="left"),
                                   STAGING_MASKED_COLUMNS)
    finess = "lab_finess" in part.columns and part.select(
        pl.col("lab_finess").ne_missing(finess_kept(pl.col("lab_finess"))).any()).item()
    if not rows.get_column(MASKED_COLUMN).any() and not finess:
        return None
    flags = pl.col("dq_flags")
    flagged = flags.fill_null("").str.split(";").list.contains(FLAG)
    if finess:
        rows = rows.with_columns(finess_kept(pl.col("lab_finess")).alias("lab_finess"))
    return rows.with_columns(
        pl.when(pl.col(MASKED_COLUMN) & ~flagged)
        .then(pl.concat_str([flags, pl.lit(FLAG)], separator=";", ignore_nulls=True))
        .otherwise(flags).alias("dq_flags")).select(part.columns)


def _masked_or_same(part: pl.DataFrame, ids: pl.DataFrame) -> pl.DataFrame:
    masked = _masked_staging(part, ids)
    return part if masked is None else masked


def mask_staging_text(ctx: Context) -> list[str]:
    """Mask the identities typed into the free text of staging partitions written before the
    masking existed (transforms/identity_text.py: ``to_staging`` masks the rows it stages since),
    exactly as it masks them: NIR-shaped numbers always, the row's own names and birth date when
    raw.results still holds them (joined by file_id and result_no; a purged row has lost them, so
    only NIR-shaped numbers can be masked in it). Each partition that changes is swapped in
    atomically, after its file id is recorded in the state as owed a re-coding (``recode_owed``,
    cleared by ``recoded`` once the run has re-coded it and recorded its publication). Returns the
    file ids owed a re-coding (to re-code and republish). Masking is idempotent, so an interrupted
    pass resumes by running again; once a pass is complete the state records it
    (``text_masking``) and later runs skip it: the pass reads every staging partition's text
    columns and the names of raw.results, once."""
    from transforms.identity_text import STAGING_MASKED_COLUMNS

    state = _state(ctx)
    owed = set(state.get("recode_owed", []))
    if state.get("text_masking") == TEXT_MASKING:
        return sorted(owed)
    t = cat.STG_RESULTS
    light = ["result_no", *STAGING_MASKED_COLUMNS, "lab_finess", "value_num", "value_comparator", "dq_flags"]
    lay, raw_lay = ctx.wh.layout(t), ctx.wh.layout(cat.RAW_RESULTS)
    for fid in ctx.wh.partitions(t):
        # the text columns first (the usual partition has nothing to mask: no full read, no write)
        text = ctx.wh.read_partition(t, fid, columns=light, lay=lay)
        if text is None:
            continue
        ids = (ctx.wh.scan(cat.RAW_RESULTS, [fid]).select(_IDENTITY_FOR_MASKING).collect()
               if ctx.wh.holds(cat.RAW_RESULTS, fid, raw_lay) else pl.DataFrame(schema={
                   c: cat.RAW_RESULTS.schema[c] for c in _IDENTITY_FOR_MASKING}))
        if _masked_staging(text, ids) is None:
            continue
        owed.add(fid)
        _save_state(ctx, recode_owed=sorted(owed))  # before the swap: a run killed after it re-codes it
        ctx.wh.write_partition(t, fid, (_masked_or_same(part, ids) for part in ctx.wh.parts(t, fid)))
    _save_state(ctx, text_masking=TEXT_MASKING)
    return sorted(owed)


def recoded(ctx: Context, file_ids: list[str]) -> None:
    """These files, owed a re-coding by a migration, are re-coded and their publication recorded
    (``save_owed``): no longer owed."""
    owed = set(_state(ctx).get("recode_owed", []))
    if owed & set(file_ids):
        _save_state(ctx, recode_owed=sorted(owed - set(file_ids)))


# --------------------------------------------------------------------------------------------
# transcode: LOINC, qualitative results, units
# --------------------------------------------------------------------------------------------
def mapping_dirs(ctx: Context) -> list[Path]:
    return [ctx.settings.seeds_dir / "mappings", ctx.settings.operator_mappings]


def qualitative_words(ctx: Context) -> pl.DataFrame:
    """The operator's extra qualitative words (``<mappings dir>/qualitative/*.csv``; seeds first)."""
    from transforms.terminology.qualitative import load_qualitative_words

    return load_qualitative_words([d for d in mapping_dirs(ctx) if d.exists()])


_LOINC_CACHE: dict[tuple, pl.DataFrame] = {}


def file_stamp(path: Path | None) -> tuple | None:
    if path is None:
        return None
    try:
        st = Path(path).expanduser().stat()
    except OSError:
        return (str(path), None)
    return (str(path), st.st_mtime_ns, st.st_size, st.st_ino)


def loinc_table(settings: Settings) -> pl.DataFrame:
    """The LOINC table in use (``load_loinc_table``): the shipped subset, or the official table
    of ``BIOLAKE_LOINC_TABLE`` (+ ``BIOLAKE_LOINC_FR_TABLE``) completed by it. Read once per process
    for a given state of the files; a missing or unreadable file raises ``LoincTableError``."""
    from transforms.terminology.loinc import load_loinc_table

    seed = settings.seeds_dir / cat.REF_SEEDS["loinc"]
    key = tuple(file_stamp(p) for p in (seed, settings.loinc_table, settings.loinc_fr_table))
    if key not in _LOINC_CACHE:
        table = load_loinc_table(seed, settings.loinc_table, settings.loinc_fr_table)
        _LOINC_CACHE.clear()  # one table at a time: the official one is large
        _LOINC_CACHE[key] = table
    return _LOINC_CACHE[key]


def load_terminology(ctx: Context, refs: dict[str, pl.DataFrame]):
    """LOINC table, lab mappings and the fingerprint of what coding depends on: the mappings,
    the operator's qualitative words, the version of the qualitative rules and, when the official
    LOINC table is in use, its codes, property classes and example units (a change of any
    re-codes the earlier files)."""
    from transforms.terminology.mappings import load_mappings
    from transforms.terminology.qualitative import RULES_VERSION

    loinc = loinc_table(ctx.settings)
    mappings = load_mappings([d for d in mapping_dirs(ctx) if d.exists()], loinc)
    words = qualitative_words(ctx)
    h = hashlib.sha256(mappings.drop("origin", strict=False).sort(pl.all()).write_csv().encode())
    h.update(words.select("key", "code").sort(pl.all()).write_csv().encode())
    if ctx.settings.loinc_table is not None:  # the subset alone changes only with the code (CODING_FORMAT)
        h.update(b"official loinc\n")
        h.update(loinc.select("loinc_num", "property_class", "example_ucum_unit").sort("loinc_num")
                 .write_csv().encode())
    # the code's part apart from the operator's: an upgrade is not said to be a mapping change
    return loinc, mappings, f"{coding_version(RULES_VERSION)}|{h.hexdigest()}"


def coding_version(rules_version: str | None = None) -> str:
    """The code's part of the coding fingerprint: CODING_FORMAT and the qualitative rules' version."""
    if rules_version is None:
        from transforms.terminology.qualitative import RULES_VERSION as rules_version
    return f"coding format {CODING_FORMAT}, qualitative rules {rules_version}"


def version_key_expr() -> pl.Expr:
    """The key the rows of one lab's request and test share: lab, request (its keyed hash
    ``request_key``: the lab's request number cannot be read from it), test (local code, else the
    LOINC the lab sent). Missing parts are skipped (like SQL concat_ws). Which of its rows are
    versions of one result (person, day, specimen, value) is settled by transforms/versions.py."""
    return pl.concat_str(
        [pl.col("source"), pl.col("request_key"), pl.coalesce("local_code", "loinc_code_src", pl.lit(""))],
        separator="|", ignore_nulls=True)


def with_provisional_versions(df: pl.DataFrame) -> pl.DataFrame:
    """The version columns as they are for a result that has no other version: current unless its
    status is D (deleted) or it is a late correction (which corrected nothing, then:
    transforms/versions.py), superseded by nothing. The publication corrects them across files."""
    from transforms.versions import late_replacement_expr

    return df.with_columns(
        version_key_expr().alias("version_key"),
        ((pl.col("result_status") != "D").fill_null(True) & ~late_replacement_expr()).alias("is_current"),
        pl.lit(None, dtype=pl.Utf8).alias("superseded_by"),
    )


def transcode(ctx: Context, file_id: str, loinc: pl.DataFrame, mappings: pl.DataFrame,
              staged: KeptFrames | None = None) -> dict:
    """The file's staging rows (those ``staged`` kept as validate wrote them, else read from
    staging.stg_results) coded into staging.stg_results_coded."""
    from transforms.terminology.transcode import transcode as do_transcode

    n = mapped = 0
    words = qualitative_words(ctx)

    def coded():
        nonlocal n, mapped
        for part in ctx.wh.parts(cat.STG_RESULTS, file_id, staged):
            df = with_provisional_versions(do_transcode(part, mappings, loinc, words=words))
            n += df.height
            mapped += df["loinc_code"].is_not_null().sum()
            yield df

    ctx.wh.write_partition(cat.STG_RESULTS_CODED, file_id, coded())
    return {"rows": n, "mapped": mapped}


# --------------------------------------------------------------------------------------------
# publish: marts and quality tables over every file
# --------------------------------------------------------------------------------------------
def duck(ctx: Context) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    con.execute("SET preserve_insertion_order = false")
    if ctx.settings.duckdb_memory_limit:
        # DuckDB otherwise takes up to 80% of the machine's memory; above the limit it spills to disk
        con.execute(f"SET memory_limit = {sql_literal(ctx.settings.duckdb_memory_limit)}")
    tmp = ctx.wh.tmp / "duckdb"
    tmp.mkdir(parents=True, exist_ok=True)
    con.execute(f"SET temp_directory = {sql_literal(str(tmp))}")
    return con


def write_run_log(ctx: Context, started: datetime, totals: dict) -> None:
    row = {
        "run_id": ctx.run_id, "started_at": started, "finished_at": datetime.now(),
        "files_new": totals.get("files_new", 0), "files_duplicate": totals.get("files_duplicate", 0),
        "files_failed": totals.get("files_failed", 0), "rows_in": totals.get("rows_in", 0),
        "rows_valid": totals.get("rows_valid", 0), "rows_quarantined": totals.get("rows_quarantined", 0),
        "stage_seconds": json.dumps(ctx.stage_seconds),
    }
    ctx.wh.write_partition_file(cat.RUN_LOG, ctx.run_id, pl.DataFrame([row], schema=cat.RUN_LOG.schema))


def refresh_views(ctx: Context) -> Path:
    return build_views(ctx.wh)


def compact(ctx: Context) -> dict:
    """Pack the small per-file partitions of the tables partitioned per landing file, and the small
    files of the logs kept as a file per value (file log, audit events, run log, expectation
    results), once ``compact_min_files`` of them wait in a table, and rewrite the packs holding rows
    a later write replaced (warehouse/store.py). Returns the Parquet files of those tables before
    and after, and per table what was done."""
    n = ctx.settings.compact_min_files
    tables = [t for t in cat.TABLES if t.partition_by == "file_id" or t.file_key]
    before = sum(len(ctx.wh.files(t)) for t in tables)
    done = [ctx.wh.compact(t, min_loose=n) for t in tables] if n else []
    return {"parquet_files_before": before, "parquet_files_after": sum(len(ctx.wh.files(t)) for t in tables),
            "tables": [d for d in done if d["packs_written"] or d["packs_removed"] or d["tombstones"]]}


def reason_descriptions() -> dict[str, str]:
    return dict(REASONS)


# --------------------------------------------------------------------------------------------
# mapping changes trigger a re-coding of earlier files
# --------------------------------------------------------------------------------------------
def _state_path(ctx: Context) -> Path:
    return ctx.wh.root / "state.json"


def _state(ctx: Context) -> dict:
    p = _state_path(ctx)
    return json.loads(p.read_text()) if p.exists() else {}


def mappings_changed(ctx: Context, fingerprint: str) -> bool:
    return _state(ctx).get("mappings_fingerprint") != fingerprint


def recoding_cause(ctx: Context, fingerprint: str) -> str | None:
    """Why the earlier files must be re-coded, read before this run migrates anything: None (the
    fingerprint is the one recorded), "mappings" (the operator's mappings, qualitative words or
    LOINC table changed) or "upgrade" (this version codes otherwise: CODING_FORMAT or the
    qualitative rules; QA regr: an upgrade was said, and audited, to be a mapping change). A home
    of before the split fingerprint is upgraded when its staging format is not the current one."""
    state = _state(ctx)
    stored = state.get("mappings_fingerprint")
    if stored == fingerprint or stored is None:
        return None if stored == fingerprint or not ctx.wh.partitions(cat.STG_RESULTS_CODED) else "mappings"
    if "|" in stored:
        # the operator's part (after the |) decides; the code's part alone changed is an upgrade
        return "mappings" if stored.split("|", 1)[1] != fingerprint.split("|", 1)[1] else "upgrade"
    return "upgrade" if state.get("staging_format") != CODING_FORMAT else "mappings"


def first_coding(ctx: Context) -> bool:
    """No mappings recorded and no file coded yet: a new home (a home of before the record, with
    coded files, is re-coded once by the next run, as when its mappings change)."""
    return "mappings_fingerprint" not in _state(ctx) and not ctx.wh.partitions(cat.STG_RESULTS_CODED)


def recode_requested(ctx: Context) -> str | None:
    """Why every file must be re-coded although the mappings did not change ("reprocess"), or None."""
    return _state(ctx).get("recode_all")


def _save_state(ctx: Context, **values) -> None:
    state = _state(ctx) | values
    p = _state_path(ctx)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, p)


def save_mappings_fingerprint(ctx: Context, fingerprint: str) -> None:
    """The mappings every file is now coded with; a requested re-coding of every file is done."""
    _save_state(ctx, mappings_fingerprint=fingerprint, recode_all=None)


# --------------------------------------------------------------------------------------------
# publication owed: files processed but not yet (or not completely) published
# --------------------------------------------------------------------------------------------
def owed_publication(ctx: Context) -> list[str]:
    """The files a run must publish besides its own: those an interrupted run processed (and logged
    as loaded) but did not publish. A killed run left them in the state (``save_owed``), or they
    have coded rows and no fact-table partition (QA: they were never published again). A file
    without a coded row (a header and no result: "nothing today") has nothing to publish: its coded
    partition holds no Parquet file, publish_fct writes no fact partition for it, and it is never
    owed (QA: it was reported as owed by every later run)."""
    owed = set(_state(ctx).get("publish_owed", []))
    lay = ctx.wh.layout(cat.STG_RESULTS_CODED)
    coded = set(ctx.wh.partitions(cat.STG_RESULTS_CODED))
    maybe = (owed & coded) | (coded - set(ctx.wh.partitions(cat.FCT_LAB_RESULTS)))
    return sorted(fid for fid in maybe if ctx.wh.holds(cat.STG_RESULTS_CODED, fid, lay))


def save_owed(ctx: Context, file_ids: list[str]) -> None:
    """Before publishing: what must be published, should this run be interrupted; [] once done."""
    _save_state(ctx, publish_owed=sorted(set(file_ids)))


# --------------------------------------------------------------------------------------------
# the pseudonymisation key: one per warehouse
# --------------------------------------------------------------------------------------------
def key_check_value(secret: bytes) -> str:
    """An HMAC of a constant under the secret: tells two keys apart, reveals nothing of either."""
    return hmac.new(secret, b"biolake key check v1", hashlib.sha256).hexdigest()[:24]


def recorded_key_check(ctx: Context) -> str | None:
    """The check value of the key the warehouse was built with (None before its first run)."""
    return _state(ctx).get("key_check")


def check_key(ctx: Context, save: bool = True) -> None:
    """Refuse to run with a pseudonymisation secret other than the one the warehouse was built with:
    every person would get a second pseudonym and be counted twice (QA). The first run records it."""
    from flows.settings import SecretChanged

    value = key_check_value(ctx.settings.secret_bytes())
    stored = recorded_key_check(ctx)
    if stored is not None and stored != value:
        raise SecretChanged(
            f"BIOLAKE_PSEUDONYM_SECRET is not the key the warehouse in {ctx.wh.root} was built with: its "
            "pseudonyms would no longer match, and every person would be counted twice. Run with the original "
            "key; a new key needs a new home (the pseudonyms cannot be converted).")
    if stored is None and save:
        _save_state(ctx, key_check=value)
