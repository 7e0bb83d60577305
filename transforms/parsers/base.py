"""What every parser returns: canonical rows plus the lines it had to reject, chunk by chunk.

A parser is a generator function ``parse(path, *, file_id, source, chunk_rows) -> Iterator[Chunk]``.
It streams (never reads a large file whole), and accounts for every line or message it saw: each
ends either as a canonical row (possibly with ``parse_issues`` for the validator to judge) or as a
reject with a reason code (quality/reasons.py), its line number and its raw text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

REJECT_SCHEMA = pl.Schema(
    {
        "file_id": pl.Utf8(),
        "line_no": pl.Int64(),
        "reason_code": pl.Utf8(),
        "column": pl.Utf8(),
        "detail": pl.Utf8(),  # free text without patient data
        "raw_text": pl.Utf8(),  # the rejected line/message; identifying, raw layer only
    }
)


@dataclass
class Chunk:
    rows: pl.DataFrame  # canonical columns (transforms.canonical.CANONICAL_SCHEMA)
    rejects: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=REJECT_SCHEMA))
    units_seen: int = 0  # lines (CSV/HPRIM) or messages (HL7/CDA) consumed by this chunk


class FileFormatError(Exception):
    """The whole file cannot be parsed; the message names the file and the cause."""

    def __init__(self, reason_code: str, message: str):
        super().__init__(message)
        self.reason_code = reason_code
