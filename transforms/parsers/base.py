"""What every parser returns: canonical rows plus the lines it had to reject, chunk by chunk.

A parser is a generator function ``parse(path, *, file_id, source, chunk_rows) -> Iterator[Chunk]``.
It streams (never reads a large file whole), and accounts for every line or message it saw: each
ends either as a canonical row (possibly with ``parse_issues`` for the validator to judge) or as a
reject with a reason code (quality/reasons.py), its line number and its raw text.
"""

from __future__ import annotations

import codecs
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

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


# ``parse_issues`` entries are ``REASON:column``, or ``REASON:column:detail`` (a detail without
# ``;``). A birth date known only to its year, or its year and month (HL7/CDA TS ``1980``,
# ``198003``; HPRIM ``19800000``; CSV ``00/00/1980``, ``00/03/1980``): the validator keeps the result
# with an unknown birth date and age, flagged BIRTH_DATE_PARTIAL (quality/schemas.py)
PARTIAL_BIRTH_ISSUE = "DATE_INVALID:birth_date:partial"
_BIRTH_YEAR = r"(?:1[89]|20)[0-9]{2}"
_MONTH_OR_00 = r"(?:0[0-9]|1[0-2])"
# a timestamp (HL7 v2, CDA, HPRIM) of year or month precision, or with 00 for the unknown parts
PARTIAL_BIRTH_TS = rf"^\s*{_BIRTH_YEAR}(?:{_MONTH_OR_00}(?:00)?)?\s*(?:[+-][0-9]{{2,4}}|Z)?\s*$"
# the CSV extract's forms: 00/00/1980, 00/03/1980, 03/1980, 1980, 19800000, 19800300, 198003, 1980-03[-00]
PARTIAL_BIRTH_CSV = (rf"^(?:00/{_MONTH_OR_00}/{_BIRTH_YEAR}|{_MONTH_OR_00}/{_BIRTH_YEAR}|{_BIRTH_YEAR}"
                     rf"|{_BIRTH_YEAR}{_MONTH_OR_00}(?:00)?|{_BIRTH_YEAR}-{_MONTH_OR_00}(?:-00)?)$")


def birth_date_issue(text: pl.Expr, partial_pattern: str) -> pl.Expr:
    """The parse issue of a birth date that did not read as a date: partial, or unreadable."""
    return (pl.when(text.str.contains(partial_pattern)).then(pl.lit(PARTIAL_BIRTH_ISSUE))
            .otherwise(pl.lit("DATE_INVALID:birth_date")))


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


# a valid UTF-8 sequence of two or three bytes (an accented letter, µ, €): Latin-1 text almost never
# holds one (é is one byte, followed by ASCII; as UTF-8 read as Latin-1 it would be Ã©)
_UTF8_SEQUENCE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}")
# the bytes French UTF-8 text cannot do without (Ã and Â in Latin-1: rare; é, à, µ, €, ’ in UTF-8):
# a plain search for them spares the regular expression (ten times slower) on Latin-1 text
_UTF8_LEADS = (b"\xc3", b"\xc2", b"\xe2\x80", b"\xe2\x82")


def holds_utf8_sequences(data: bytes, french_only: bool = False) -> bool:
    """Whether ``data`` holds UTF-8 multi-byte sequences: text written in UTF-8, even where other
    bytes (a Latin-1 line) or a declared charset say otherwise. ``french_only``: look only for the
    sequences French text uses, much faster on large blocks of Latin-1 text."""
    if french_only and not any(lead in data for lead in _UTF8_LEADS):
        return False
    return _UTF8_SEQUENCE.search(data) is not None


# --- comparators ('<0,5', '>100', SN '<^0.5', 'inf. à 5') -----------------------------------------
# French SGLs print a bound in words as often as with a sign (QA fmt F6: 'inf. à 5', 'sup. à 1000'
# stayed text, without their number): 'inf.', 'inf', 'inférieur(e)', 'sup.', 'sup', 'supérieur(e)',
# each followed by 'à', optionally with 'ou égal(e)' before it; also a sign followed by 'à' ('< à 5').
# Any case, with or without accents, blanks optional (the CSV extract reads its values without them).
# Other wordings ('moins de 5', 'inf 5' without 'à', a unit or a second bound after the number) stay
# text: they are not read as a number.
_LESS_WORD = r"inf(?:\.|[ée]rieure?)?"
_MORE_WORD = r"sup(?:\.|[ée]rieure?)?"
_OR_EQUAL = r"(?:\s*ou\s*[ée]gale?)?"
_TO = r"\s*[àa]"
_COMPARATOR_GROUP = rf"((?i:(?:<=|>=|<|>|≤|≥)(?:{_TO})?|(?:{_LESS_WORD}|{_MORE_WORD}){_OR_EQUAL}{_TO}))"


def comparator_pattern(number: str) -> str:
    """Regex of a comparator and a number (``number`` a regex without groups), the comparator in
    group 1 and the number in group 2: ``<0,5``, ``< 0.5``, ``<^0.5`` (HL7 SN), ``>=^10``, ``≤ 3``,
    ``inf. à 5``, ``supérieur ou égal à 10``, ``< à 5``."""
    return rf"^{_COMPARATOR_GROUP}\s*\^?\s*({number})$"


def comparator_of(group: pl.Expr) -> pl.Expr:
    """The comparator group of :func:`comparator_pattern` as one of
    :data:`~transforms.canonical.COMPARATORS` (null where it is null): less when it starts with
    ``<``, ``≤`` or ``inf``, greater otherwise; or equal with ``=``, ``≤``, ``≥`` or ``égal``."""
    less = group.str.contains("^(?:<|≤|(?i:inf))")
    or_equal = group.str.contains("[=≤≥]|(?i:[ée]gal)")
    # a small code mapped once: this runs on every value of a file (mostly null), and a chain of
    # when/then building text columns cost the CSV extract a tenth of its parsing time
    code = less.cast(pl.UInt8) * 2 + or_equal.cast(pl.UInt8)
    return code.replace_strict({0: ">", 1: ">=", 2: "<", 3: "<="}, return_dtype=pl.Utf8)


# control characters no lab writes in a value (tab, and the CR and LF that end lines, aside): a NUL
# or another C0 byte inside a name would change the person's linkage key (QA ops F4), so the line
# (CSV) or unit (HL7 message, HPRIM record) holding one is rejected, naming the byte, never the value.
# Five C1 controls too: 8-bit text is read as Windows-1252 (decode_8bit), where bytes 0x80-0x9F are
# letters and signs (Œ œ ’ – €) but for five it leaves undefined (0x81, 0x8D, 0x8F, 0x90, 0x9D), and
# UTF-8 text has the other 27 C1 code points read as the Windows-1252 signs they stand for
# (decode_utf8), so one of these five is left in a text only as a stray byte, never a letter (QA fmt
# F3: read as Latin-1, CŒUR became C\x8cUR, linked as CUR, and one person counted twice; QA regr F3:
# refusing all 32 refused a message for a ’ in its comment that an exporter wrote as U+0092)
CONTROL_CHARS = "[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f\\x81\\x8d\\x8f\\x90\\x9d]"
_CONTROL = re.compile(CONTROL_CHARS)
_CONTROL_NAMES = {0: "NUL", 0x1b: "ESC", 0x7f: "DEL"}


# the bytes that may be such a character, for one pass over a whole message, record or block before
# it is decoded: the C0 controls and DEL are these bytes in every encoding read here; a C1 control is
# one of the five bytes Windows-1252 leaves undefined in 8-bit text (they also occur inside some UTF-8
# letters: then the search on the decoded text finds nothing), or 0xC2 0x80-0x9F in UTF-8
CONTROL_BYTES = bytes(range(0x09)) + b"\x0b\x0c" + bytes(range(0x0e, 0x20)) + b"\x7f" + b"\x81\x8d\x8f\x90\x9d"
_UTF8_C1 = re.compile(b"\xc2[\x81\x8d\x8f\x90\x9d]")


def holds_control(data: bytes) -> bool:
    """Whether ``data`` may hold a control character (:data:`CONTROL_BYTES`, or a C1 control in
    UTF-8). One pass in C (``bytes.translate``), about twice as fast as :func:`control_byte`'s
    regular expression over the decoded text, which then runs only where this found one, to decide
    and to name the character and where it stands (hot path: every HL7 message and HPRIM block is
    checked, and almost none holds one)."""
    if len(data.translate(None, CONTROL_BYTES)) != len(data):
        return True
    return b"\xc2" in data and _UTF8_C1.search(data) is not None


# the 27 C1 code points Windows-1252 defines, as its signs: an exporter converting Windows-1252 text
# to UTF-8 as if it were Latin-1 writes ’ as U+0092, € as U+0080, Œ as U+008C (QA regr F3)
C1_AS_CP1252 = str.maketrans({c: bytes([c]).decode("cp1252") for c in range(0x80, 0xa0)
                              if c not in (0x81, 0x8d, 0x8f, 0x90, 0x9d)})
_UTF8_C1_DEFINED = re.compile(b"\xc2[\x80\x82-\x8c\x8e\x91-\x9c\x9e\x9f]")


def utf8_holds_c1_signs(data: bytes) -> bool:
    """Whether UTF-8 ``data`` holds one of the 27 C1 code points Windows-1252 defines (one C pass)."""
    return b"\xc2" in data and _UTF8_C1_DEFINED.search(data) is not None


def decode_utf8(data: bytes) -> str:
    """``data.decode("utf-8")`` (raises like it), with the C1 code points Windows-1252 defines read
    as its signs (:data:`C1_AS_CP1252`): text converted from Windows-1252 as if it were Latin-1."""
    text = data.decode("utf-8")
    return text.translate(C1_AS_CP1252) if utf8_holds_c1_signs(data) else text


def control_byte(text: str) -> tuple[int, str] | None:
    """(index, ``NUL byte (0x00)``) of the first control character of ``text``, or None. A C1
    control is named by its code point (``control character U+0081``): it may have been one byte
    (8-bit text) or two (UTF-8)."""
    m = _CONTROL.search(text)
    if m is None:
        return None
    code = ord(m.group())
    if code in _CONTROL_NAMES:
        return m.start(), f"{_CONTROL_NAMES[code]} byte (0x{code:02x})"
    if code >= 0x80:
        return m.start(), f"control character U+{code:04X}"
    return m.start(), f"control byte 0x{code:02x}"


# --- 8-bit text -----------------------------------------------------------------------------------
_UNDEFINED_AS_LATIN1 = "biolake-cp1252-undefined-as-latin1"


def _undefined_as_latin1(err: UnicodeDecodeError) -> tuple[str, int]:
    """The bytes Windows-1252 leaves undefined (0x81, 0x8D, 0x8F, 0x90, 0x9D) read as Latin-1 reads
    them: C1 control characters, which the parsers then refuse like the C0 ones (CONTROL_CHARS),
    naming the line, instead of a replacement character silently stored in a name."""
    return err.object[err.start:err.end].decode("latin-1"), err.end


codecs.register_error(_UNDEFINED_AS_LATIN1, _undefined_as_latin1)


def decode_8bit(data: bytes) -> str:
    """Text that is not UTF-8, as the labs' Windows systems write it: Windows-1252 ("ANSI"), which
    is Latin-1 but for 0x80-0x9F, printable there (Œ œ ’ – … €) and C1 controls in Latin-1. French
    SGLs write it and declare ``8859/1`` or nothing (the WHATWG encoding standard reads the label
    ISO-8859-1 as windows-1252 for the same reason); the CSV extract reads it so too. Never fails."""
    return data.decode("cp1252", errors=_UNDEFINED_AS_LATIN1)


# a DOS end-of-file mark (Ctrl-Z, 0x1A) that Windows- and DOS-era export tools and ``copy /b``
# append after the last line, with any blanks or further marks after it: the end of the file, not
# data (QA regr3 F1: HL7 glued it to the last message as a segment and refused the message whole)
_DOS_EOF = re.compile(rb"\x1a[\x1a \t\r\n]*\Z")
_TAIL = 4096


class InputFile(io.RawIOBase):
    """A landing file read up to ``end`` (its size without a trailing DOS end-of-file mark)."""

    def __init__(self, path: Path):
        self._fh = open(path, "rb")  # noqa: SIM115 (closed by close())
        size = os.fstat(self._fh.fileno()).st_size
        self._fh.seek(max(0, size - _TAIL))
        tail = self._fh.read()
        m = _DOS_EOF.search(tail)
        self.end = size - (len(tail) - m.start()) if m else size
        self._fh.seek(0)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        left = self.end - self._fh.tell()
        if left <= 0:
            return 0
        view = memoryview(buffer)[:left]
        return self._fh.readinto(view)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def close(self) -> None:
        self._fh.close()
        super().close()


def open_input(path: Path) -> io.BufferedReader:
    """``path`` opened for the parsers: binary, buffered, without a trailing DOS end-of-file mark."""
    return io.BufferedReader(InputFile(Path(path)), buffer_size=1 << 20)
