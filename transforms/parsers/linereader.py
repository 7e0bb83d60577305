"""Stream a file as physical lines, whatever its line endings, in bounded memory.

HL7 v2 files end their segments with ``\\r`` (the standard), ``\\n`` or ``\\r\\n`` (after a trip
through Windows or a mail gateway), sometimes mixed in one file; HPRIM files are usually ``\\r\\n``.
:func:`iter_blocks` reads the file by blocks of 1 MiB and yields the complete lines of each
block as ``bytes`` (decoding is left to the caller, which knows the unit -- message, record -- it
decodes at once). Every terminator counts as one line: ``\\r\\n`` is one terminator, so line
numbers match what an editor shows for any of the three conventions.

A line longer than ``max_line`` bytes (a binary file without newlines, a runaway segment) is cut at
``max_line``; the rest of it is read and dropped, and its number is reported as truncated so the
caller can reject the unit that holds it. Memory therefore stays bounded by the block size plus
``max_line``, whatever the file size.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import BinaryIO

from transforms.parsers.base import decode_8bit, decode_utf8

BLOCK_SIZE = 1 << 20
MAX_LINE = 64 << 20
UTF8_BOM = b"\xef\xbb\xbf"


_TERMINATOR = re.compile(rb"\r\n|\r|\n")


class LineBlock:
    """Complete lines read at once: ``data`` is the lines joined by ``\\n`` (terminators
    normalised), ``first_line_no`` the number of the first one; :attr:`lines` splits on demand.

    ``lone_lf`` holds the numbers of the lines that follow a lone ``\\n`` (not part of ``\\r\\n``)
    once the file has shown a ``\\r``: in a file whose lines end with ``\\r`` or ``\\r\\n``, such a
    ``\\n`` may be a line break inside a field rather than a terminator, which only the caller can
    judge. It stays empty for ``\\n``-only files and for data without a lone ``\\n``; every ``\\n``
    still counts as a terminator in ``data`` and in the line numbers.
    """

    __slots__ = ("first_line_no", "data", "truncated", "lone_lf", "_lines")

    def __init__(self, first_line_no: int, data: bytes, truncated: frozenset[int],
                 lone_lf: frozenset[int] = frozenset()):
        self.first_line_no = first_line_no
        self.data = data
        self.truncated = truncated
        self.lone_lf = lone_lf
        self._lines: list[bytes] | None = None

    @property
    def lines(self) -> list[bytes]:
        if self._lines is None:
            self._lines = self.data.split(b"\n")
        return self._lines

    def __len__(self) -> int:
        return self.data.count(b"\n") + 1


def iter_blocks(fh: BinaryIO, *, block_size: int | None = None, max_line: int = MAX_LINE) -> Iterator[LineBlock]:
    """Yield the file as :class:`LineBlock` s of about ``block_size`` bytes of whole lines.

    A UTF-8 byte-order mark at the very start of the file is dropped. ``block_size`` defaults to
    the module's :data:`BLOCK_SIZE` (read at call time). A line longer than ``max_line`` (it can
    only span several blocks) is cut and its number reported in ``truncated``.
    """
    block_size = block_size or BLOCK_SIZE
    line_no = 1
    parts: list[bytes] = []  # pieces of the line that is still open across blocks
    parts_len = 0
    overflow = False  # the open line already exceeded max_line
    held_cr = b""  # a trailing \r kept back in case the next block starts with \n
    seen_cr = False  # the file holds \r terminators: a lone \n may be data (LineBlock.lone_lf)
    lone: set[int] = set()  # numbers of lines that follow a lone \n in a block holding \r (LineBlock)
    at_start = True
    while True:
        data = fh.read(block_size)
        eof = not data
        if at_start:
            while not eof and len(data) < len(UTF8_BOM) and UTF8_BOM.startswith(data):
                more = fh.read(block_size)
                if not more:
                    break
                data += more
            if data.startswith(UTF8_BOM):
                data = data[len(UTF8_BOM) :]
            at_start = False
        if held_cr:
            data = held_cr + data
            held_cr = b""
        if not eof and data.endswith(b"\r"):
            held_cr = b"\r"
            data = data[:-1]
        has_cr = b"\r" in data
        seen_cr = seen_cr or has_cr
        if seen_cr and b"\n" in data and data.count(b"\n") != data.count(b"\r\n"):
            # lone \n in a file that uses \r: note the lines that follow them (line_no is the
            # number of the line open at the start of data)
            k = line_no
            for m in _TERMINATOR.finditer(data):
                k += 1
                if m.end() - m.start() == 1 and data[m.start()] == 10:
                    lone.add(k)
        if has_cr:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        cut = data.rfind(b"\n")
        if cut < 0 and not eof:
            # no terminator in this block: the open line goes on
            if data and not overflow:
                room = max_line - parts_len
                if len(data) > room:
                    data = data[:room]
                    overflow = True
                parts.append(data)
                parts_len += len(data)
            continue
        if eof:
            if not data and not parts and not overflow:
                return
            body, rest = (data[:-1] if data.endswith(b"\n") else data), b""
        else:
            body, rest = data[:cut], data[cut + 1 :]
        truncated: set[int] = set()
        if parts or overflow:
            nl = body.find(b"\n")
            head, tail = (body, b"") if nl < 0 else (body[:nl], body[nl:])
            if not overflow and len(head) > max_line - parts_len:
                head = head[: max_line - parts_len]
                overflow = True
            if overflow:
                head = b""
                truncated.add(line_no)
            body = b"".join(parts) + head + tail
            parts, parts_len, overflow = [], 0, False
        if rest:
            if len(rest) > max_line:
                rest = rest[:max_line]
                overflow = True
            parts, parts_len = [rest], len(rest)
        block = LineBlock(line_no, body, frozenset(truncated))
        if lone:
            end = line_no + len(block)
            block.lone_lf = frozenset(n for n in lone if n < end)
            lone = {n for n in lone if n >= end}  # the line left open for the next block
        yield block
        line_no += len(block)
        if eof:
            return


def decode_text(data: bytes, preferred: str | None = None) -> str:
    """Decode ``data`` with ``preferred`` (when given and it fits), else UTF-8, else as 8-bit
    Windows-1252 text (:func:`~transforms.parsers.base.decode_8bit`, which never fails).

    A Windows SGL's export ("ANSI", declared ``8859/1`` or not at all) is read with its Œ, ’ and €,
    a UTF-8 one as UTF-8, without guessing from the file name. ``preferred`` ``cp1252`` is read
    the same way (its five undefined bytes as Latin-1 C1 controls, refused by the parsers).
    """
    if preferred == "cp1252":
        return decode_8bit(data)
    if preferred and preferred != "utf-8":
        try:
            return data.decode(preferred)
        except (UnicodeDecodeError, LookupError):
            pass
    try:
        return decode_utf8(data)
    except UnicodeDecodeError:
        return decode_8bit(data)
