"""Cut an HL7 v2 byte stream into messages: MSH to the next MSH or batch header.

:class:`MessageSplitter` receives the blocks of :func:`~transforms.parsers.linereader.iter_blocks`
and appends complete messages to ``out`` as ``(lines, line_nos, bad)``. Batch
wrappers (FHS/BHS/BTS/FTS) close a message and are dropped; lines outside any message are kept
(up to 1 MiB) for one junk unit. MLLP framing bytes (``\\x0b``, ``\\x1c``) are dropped wherever
they stand, and split a line where they stand between text (``...|F\\x1c\\x0bMSH|...``). A block
without blank lines, indented or control-prefixed lines, framing bytes, batch headers, over-long
lines or lone ``\\n`` in a ``\\r`` file -- the usual case -- is decoded at once when it is plain
UTF-8 without an MSH-18 character set and cut with ``str.split`` on ``\\nMSH``: no Python loop over
its lines.

A lone ``\\n`` (not part of ``\\r\\n``, in a file that uses ``\\r``) followed by a line that does
not read as a segment (a segment id HL7 v2.5 defines, ``KNOWN_SEGMENTS``, or a Z-segment, then the
message's field separator or nothing) is kept as a line break inside the field before it -- an NTE comment or an
OBX-5 text on two lines -- unless a lone ``\\n`` of the same message is followed by a segment: then
``\\n`` is one of that message's terminators and such a line stays a line of its own (the parser
rejects the message as malformed, as before). The joined line keeps the number of its first
physical line.
"""

from __future__ import annotations

import re

from transforms.parsers.base import decode_utf8
from transforms.parsers.linereader import BLOCK_SIZE, LineBlock

BATCH_SEGMENTS = frozenset({b"FHS", b"BHS", b"BTS", b"FTS"})
_SEGMENT_ID = re.compile(rb"[A-Z][A-Z0-9]{2}")
# after a lone \n, only a segment HL7 v2.5 defines (or a Z-segment) ends the line before it: text
# such as 'ARN|...' or 'RAS|...' is the field's next line (QA: 'Positif\nARN|' lost its OBX)
KNOWN_SEGMENTS = frozenset(s.encode() for s in (
    "MSH PID PD1 PV1 PV2 NK1 NTE ORC OBR OBX SPM SAC TQ1 TQ2 CTD CTI FT1 DG1 AL1 IN1 IN2 IN3 GT1 ROL PRT "
    "EVN MSA ERR SFT TXA TCD NST BLG MRG ACC UB1 UB2 DSP QAK QRD QPD RCP PRB GOL PTH VAR RXA RXR RXO RXE RXC "
    "RXG RXD FHS BHS BTS FTS ARQ AIS AIG AIL AIP SCH EQU ECD ECR INV SID OM1 OM2 OM3 OM4 OM5 OM6 OM7 CON "
    "IAM DB1 ODS ODT PCR PEO PES PSH PDA DSC ADD OVR UAC LOC LCH LRL LDP LCC MFI MFE STF PRA ORG AFF LAN "
    "EDU CER BPO BPX BTX CSR CSP CSS CM0 CM1 CM2 ABS DRG PR1 RF1 AUT").split())


def is_segment_start(line: bytes, fs: bytes) -> bool:
    """Whether a line after a lone \n starts a segment: a known id or a Z-segment, then the field
    separator or nothing."""
    head = line[:3]
    return (head in KNOWN_SEGMENTS or (head[:1] == b"Z" and _SEGMENT_ID.fullmatch(head) is not None)) \
        and (len(line) == 3 or line[3:4] == fs)
MAX_MESSAGE_BYTES = 256 << 20
# MLLP framing: start block 0x0b, end block 0x1c (then \r). Neither may appear in HL7 data; glued to a
# segment (``...|F\x1c\r``, ``\x1c\x0bMSH|``) they are a boundary, never part of the field
# (QA: OBX-11 read 'F\x1c' and quarantined STATUS_INVALID, an OBX-23 FINESS lost)
_FRAMING = re.compile(rb"[\x0b\x1c]+")
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
        # lines of the open message that follow a lone \n and are not segments: index -> raw line
        self.cont: dict[int, bytes] = {}
        self.lf_ends = False  # a lone \n of the open message is followed by a segment: a terminator
        # batch wrappers: what they announce against what came (truncated deliveries)
        self.n_msh = 0  # messages started so far
        self.batch_from = 0  # n_msh when the open batch began (BHS), or at the last BTS
        self.fhs: tuple[int, bytes] | None = None  # (line, text) of a file header not yet closed by an FTS
        self.bhs: tuple[int, bytes] | None = None  # (line, text) of a batch header not yet closed by a BTS
        self.n_bhs = 0
        self.problems: list[tuple[int, str, bytes]] = []  # (line, detail, raw text) of the wrappers
        self.mllp: tuple[int, bytes] | None = None  # (line, text) of an MLLP frame (0x0b) not yet ended (0x1c)

    def feed(self, block: LineBlock) -> None:
        data, first = block.data, block.first_line_no
        if block.truncated or block.lone_lf or not data or not 65 <= data[0] <= 90 \
                or data[:3] in BATCH_SEGMENTS or data.endswith(b"\n") or _SPECIAL.search(data) \
                or b"\x1c" in data or b"\x0b" in data:
            truncated, lone = block.truncated, block.lone_lf
            for k, line in enumerate(block.lines):
                no = first + k
                self._line(no, line, bool(truncated) and no in truncated, bool(lone) and no in lone)
            return
        self.seen_any = True
        # decode the whole block at once when it is plain UTF-8 and no message in it names
        # another character set (MSH-18); otherwise each message is decoded on its own
        src: bytes | str = data
        if b"8859/" not in data and b"\x1f" not in data:  # MSH-18 "8859/n": decode per message
            try:
                src = decode_utf8(data)
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
        self.n_msh += len(pieces)
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
        self.cont, self.lf_ends = {}, False

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
            if self.cont and not self.lf_ends:
                self._join_continuations()
            if self.cur:
                self.out.append((self.cur, self.nos, self.bad))
            self.cur = None
            self.cont = {}
        if self.junk_nos:
            self.out.append((self.junk, self.junk_nos, True))
            self.junk, self.junk_nos, self.junk_size = [], [], 0

    def _wrapper(self, no: int, head: bytes, line: bytes) -> None:
        """Check a batch wrapper against what it wraps: BTS-1 (batch message count) against the
        messages since its BHS, FTS-1 (file batch count) against the BHS seen; note a header
        whose trailer is still missing when the next header comes."""
        fields = line.split(line[3:4]) if len(line) > 3 else [line]
        count = fields[1].strip() if len(fields) > 1 else b""
        if head == b"FHS":
            self._unclosed("FHS", "FTS", f"the next FHS at line {no}")
            self.fhs = (no, line)
        elif head == b"BHS":
            self._unclosed("BHS", "BTS", f"the next BHS at line {no}")
            self.bhs = (no, line)
            self.n_bhs += 1
            self.batch_from = self.n_msh
        elif head == b"BTS":
            held = self.n_msh - self.batch_from
            if count.isdigit() and int(count) != held:
                self.problems.append((no, f"truncated or incomplete batch: BTS at line {no} counts {int(count)} "
                                          f"message(s), the batch holds {held}", line))
            self.bhs = None
            self.batch_from = self.n_msh
        else:  # FTS
            if count.isdigit() and self.n_bhs and int(count) != self.n_bhs:
                self.problems.append((no, f"truncated or incomplete file: FTS at line {no} counts {int(count)} "
                                          f"batch(es), the file holds {self.n_bhs}", line))
            elif count.isdigit() and not self.n_bhs and int(count) > max(self.n_msh, 1):
                # FHS ... FTS without BHS: senders count their messages in FTS-1 (one implicit batch
                # is 1); more than the file holds is messages lost on the way (QA fmt note)
                self.problems.append((no, f"truncated or incomplete file: FTS at line {no} counts {int(count)}, "
                                          f"the file holds no BHS and {self.n_msh} message(s)", line))
            self._unclosed("BHS", "BTS", f"the FTS at line {no}")
            self.fhs = None

    def _unclosed(self, header: str, trailer: str, where: str) -> None:
        opened = self.fhs if header == "FHS" else self.bhs
        if opened is not None:
            no, text = opened
            self.problems.append((no, f"truncated delivery: the {header} at line {no} has no {trailer} before "
                                      f"{where}", text))
            if header == "FHS":
                self.fhs = None
            else:
                self.bhs = None

    def finish(self) -> None:
        """At the end of the file: a batch or file header without its trailer is a truncated delivery."""
        self.close()
        self._unclosed("BHS", "BTS", "the end of the file")
        self._unclosed("FHS", "FTS", "the end of the file")
        if self.mllp is not None:  # QA: a frame cut before its end byte loaded without a trace
            no, text = self.mllp
            self.problems.append((no, f"truncated delivery: the MLLP frame started at line {no} has no end byte "
                                      "(0x1c) before the end of the file: a message cut short?", text))
            self.mllp = None

    def _nul_line(self, no: int, raw: bytes) -> None:
        """A line of NUL bytes (the padding a cut or pre-allocated copy leaves after its last byte
        written, or a zeroed block): one reject at its line, as a wrapper's problem, whatever
        message it stands in (it is no segment of it). It was dropped without a trace, so a file
        cut at the end of a segment and padded looked whole."""
        self.problems.append((no, f"NUL byte (0x00) at line {no}, a line of NUL bytes: not read (the padding of a "
                                  "cut or pre-allocated copy, or a damaged file?)", raw[:200]))

    def _join_continuations(self) -> None:
        """Keep the lone \n of a message whose segments end with \r as data: each line after such
        a \n that is not a segment goes back, after a newline, to the end of the line before it
        (an NTE comment or an OBX-5 text on two lines). Line numbers stay physical: the joined line
        keeps the number of its first line, the lines after it keep theirs."""
        cur, nos = self.cur, self.nos
        lines: list[bytes] = []
        kept: list[int] = []
        for i, line in enumerate(cur):
            raw = self.cont.get(i)
            if raw is not None and lines:
                lines[-1] = lines[-1] + b"\n" + raw
            else:
                lines.append(line)
                kept.append(nos[i])
        self.cur, self.nos = lines, kept

    def _keep_junk(self, no: int, line: bytes) -> None:
        if self.junk_size < (1 << 20):
            self.junk.append(line)
            self.junk_nos.append(no)
            self.junk_size += len(line)

    def _line(self, no: int, line: bytes, truncated: bool, lone_lf: bool = False) -> None:
        if not line:
            return
        if b"\x1c" in line or b"\x0b" in line:
            # MLLP framing bytes: dropped, and a segment boundary where they stand between text; a
            # frame started (0x0b) and not ended (0x1c) by the end of the file is a truncated one
            for m in _FRAMING.finditer(line):
                frame = m.group()
                if frame.rfind(b"\x0b") > frame.rfind(b"\x1c"):
                    self.mllp = (no, line.strip(b"\x00\x0b\x1c\r\n")[:200])
                elif b"\x1c" in frame:
                    self.mllp = None
            for k, piece in enumerate(p for p in _FRAMING.split(line) if p):
                self._segment(no, piece, truncated, lone_lf and k == 0)
            return
        self._segment(no, line, truncated, lone_lf)

    def _segment(self, no: int, line: bytes, truncated: bool, lone_lf: bool) -> None:
        raw = line
        if line[0] <= 32:  # MLLP framing, stray control characters, indentation
            line = line.strip(b"\x00\x0b\x1c \t\x0c")
            if not line:
                if b"\x00" in raw:
                    self._nul_line(no, raw)
                return
        head = line[:3]
        if head == b"MSH":
            self.close()
            self._start()
            self.n_msh += 1
        elif head in BATCH_SEGMENTS:
            self.close()
            self._wrapper(no, head, line)
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
        if lone_lf and self.cur:
            fs = self.cur[0][3:4]  # the field separator of the message's MSH
            if is_segment_start(line, fs):
                self.lf_ends = True
            else:
                self.cont[len(self.cur)] = raw
        self.cur.append(line)
        self.nos.append(no)
        self.bad = self.bad or truncated
