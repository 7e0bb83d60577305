"""Warehouse tables of the privacy side, declared like those of warehouse/catalog.py.

``quality.audit_events`` is the audit trail: one row per run start and end, per input file seen,
per export written and per identity purge, each saying what produced it (biolake version, git
commit, flow/task). flows/privacy.py appends to it (``audit``), one small Parquet file per event,
so concurrent writers never rewrite each other's rows. It holds no patient data: subjects are
paths of landing files and exports, details are counts and codes.

Import ``warehouse.catalog`` before this module (the catalog imports it back to list its tables).
"""

from __future__ import annotations

from warehouse.catalog import TS, U, C, Table

AUDIT_KINDS: tuple[str, ...] = (
    "run_started",  # a pipeline run began (subject: home)
    "run_finished",  # it ended (details: totals, status)
    "file_ingested",  # a landing file was parsed and loaded (subject: path, sha256: content)
    "file_skipped",  # a landing file was not loaded: re-delivery, unsafe name (details: why)
    "file_failed",  # a landing file could not be parsed at all (details: reason code)
    "export_written",  # an export / report file was written (subject: its path, sha256: its bytes)
    "purge",  # identities were purged from the raw layer (details: cutoff, counts)
    "analyst_db_built",  # the analyst database was rebuilt (subject: its path)
    "gate_overridden",  # a publication written although the quality gate failed (details: its failures)
    "mappings_changed",  # the mappings or qualitative words changed: earlier files re-coded (details: counts)
    "reprocess_requested",  # `biolake reprocess`: loaded files to read again (details: counts, labs)
    "issue_replaced",  # a past publication issue written again (`epi export --replace`; details: why, files)
)

AUDIT_EVENTS = Table(
    "quality", "audit_events",
    "Audit trail: every run, input file, export and identity purge, with what produced it. "
    "No patient data.",
    (
        C("event_id", U, "unique, time-ordered id of the event"),
        C("at", TS, "when the event was recorded (local time)"),
        C("run_id", U, "run (Prefect flow run id, or a local id for CLI commands)"),
        C("kind", U, "one of " + ", ".join(AUDIT_KINDS)),
        C("subject", U, "what the event is about: landing path, export path, table"),
        C("sha256", U, "sha256 of the subject's bytes when it is a file"),
        C("producer", U, "biolake version, git commit when known, flow/task or command"),
        C("details", U, "JSON object: counts, reason codes, parameters (never patient data)"),
    ),
    key=("event_id",),
    file_key="event_id",
)

TABLES: tuple[Table, ...] = (AUDIT_EVENTS,)
