"""Cut an HL7 v2 byte stream into messages: MSH to the next MSH or batch header.

:class:`MessageSplitter` receives the blocks of :func:`~transforms.parsers.linereader.iter_blocks`
and appends complete messages to ``out`` as ``(lines, line_nos, bad)``. Batch
wrappers (FHS/BHS/BTS/FTS) close a message and are dropped; lines outside any message are kept
(up to 1 MiB) for one junk unit. A block without blank lines, indented or control-prefixed lines
(MLLP framing), batch headers or over-long lines -- the usual case -- is decoded at once when it
is plain UTF-8 without an MSH-18 character set and cut with ``str.split`` on ``\nMSH``: no Python
loop over its lines.
"""

from __future__ import annotations

import re

from transforms.parsers.linereader import BLOCK_SIZE, LineBlock

BATCH_SEGMENTS = frozenset({b"FHS", b"BHS", b"BTS", b"FTS"})
MAX_MESSAGE_BYTES = 256 << 20
# a block where a line does not start with a capital letter (blank lines, MLLP framing,
# indentation, garbage) or starts a batch header takes the line-by-line path
_SPECIAL = re.compile(rb"\n(?:[^A-Z]|FHS|BHS|BTS|FTS)")


class MessageSplitter:
    """Stateful cutter: ``feed`` each block, drain :attr:`out`, ``close`` at end of file.

    Message lines are ``bytes``, or ``str`` when their block could be decoded whole; ``bad`` is
    True for a message holding a truncated line or beyond :data:`MAX_MESSAGE_BYTES`, and for the
    junk unit (lines outside any message).
    """

    def __init__(self) -> None:
        self.out: list[tuple[list, range | list[int], bool]] = []
        self.cur: list[bytes] | None = None
        self.nos: list[int] = []
        self.size = 0
        self.bad = False
        self.junk: list[bytes] = []
        self.junk_nos: list[int] = []
        self.junk_size = 0
        self.block = 0
        self.seen_msh = False
        self.seen_any = False

    def feed(self, block: LineBlock) -> None:
        data, first = block.data, block.first_line_no
        if block.truncated or not data or not 65 <= data[0] <= 90 or data[:3] in BATCH_SEGMENTS \
                or data.endswith(b"\n") or _SPECIAL.search(data):
            truncated = block.truncated
            for k, line in enumerate(block.lines):
                self._line(first + k, line, bool(truncated) and (first + k) in truncated)
            return
        self.seen_any = True
        # decode the whole block at once when it is plain UTF-8 and no message in it names
        # another character set (MSH-18); otherwise each message is decoded on its own
        src: bytes | str = data
        if b"8859/" not in data and b"\x1f" not in data:  # MSH-18 "8859/n": decode per message
            try:
                src = data.decode("utf-8")
            except UnicodeDecodeError:
                src = data
        nl, msh = ("\n", "MSH") if isinstance(src, str) else (b"\n", b"MSH")
        pieces = src.split(nl + msh)
        line = first
        if src[:3] != msh:  # the end of the message left open by the previous block (or junk)
            lead = pieces.pop(0).split(nl)
            self._append(lead, line)
            line += len(lead)
            if not pieces:
                return
            pieces[0] = msh + pieces[0]
        self.close()
        self.seen_msh = True
        out = self.out
        last = len(pieces) - 1
        for i, piece in enumerate(pieces):
            segs = piece.split(nl)
            if i:
                segs[0] = msh + segs[0]
            n = len(segs)
            if i < last:  # wholly inside the block: ranges for the line numbers
                out.append((segs, range(line, line + n), False))
            else:  # may go on in the next block
                self._start()
                self.block = first
                self.size = BLOCK_SIZE
                self.cur, self.nos = segs, list(range(line, line + n))
            line += n

    def _start(self) -> None:
        self.seen_msh = True
        self.cur, self.nos, self.size, self.bad, self.block = [], [], 0, False, 0

    def _append(self, lines: list, first: int) -> None:
        """Lines that continue the open message (or, outside any message, junk)."""
        if self.cur is None:
            for k, line in enumerate(lines):
                self._keep_junk(first + k, line.encode("utf-8") if isinstance(line, str) else line)
            return
        if first != self.block:  # a message spanning more blocks than the size limit is refused
            self.block = first
            self.size += BLOCK_SIZE
            if self.size > MAX_MESSAGE_BYTES:
                self.bad = True
        if self.bad and self.size > MAX_MESSAGE_BYTES:
            return
        if self.cur and isinstance(self.cur[0], str) != isinstance(lines[0], str):
            self._as_bytes()
            lines = [ln.encode("utf-8") if isinstance(ln, str) else ln for ln in lines]
        self.cur.extend(lines)
        self.nos.extend(range(first, first + len(lines)))

    def _as_bytes(self) -> None:
        """Make the open message bytes again (it spans a block that could not be decoded whole)."""
        if self.cur and isinstance(self.cur[0], str):
            self.cur = [ln.encode("utf-8") for ln in self.cur]

    def close(self) -> None:
        """End the open message (and the pending junk unit); call once more at end of file."""
        if self.cur is not None:
            if self.cur:
                self.out.append((self.cur, self.nos, self.bad))
            self.cur = None
        if self.junk_nos:
            self.out.append((self.junk, self.junk_nos, True))
            self.junk, self.junk_nos, self.junk_size = [], [], 0

    def _keep_junk(self, no: int, line: bytes) -> None:
        if self.junk_size < (1 << 20):
            self.junk.append(line)
            self.junk_nos.append(no)
            self.junk_size += len(line)

    def _line(self, no: int, line: bytes, truncated: bool) -> None:
        if not line:
            return
        if line[0] <= 32:  # MLLP framing, stray control characters, indentation
            line = line.strip(b"\x00\x0b\x1c \t\x0c")
            if not line:
                return
        head = line[:3]
        if head == b"MSH":
            self.close()
            self._start()
        elif head in BATCH_SEGMENTS:
            self.close()
            return
        self.seen_any = True
        if self.cur is None:
            self._keep_junk(no, line)
            return
        self._as_bytes()
        self.size += len(line)
        if self.size > MAX_MESSAGE_BYTES:
            self.bad = True
            return
        self.cur.append(line)
        self.nos.append(no)
        self.bad = self.bad or truncated
