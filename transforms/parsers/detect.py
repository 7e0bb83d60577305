"""Tell a lab file's format from its content, never from its name.

:func:`detect_format` reads at most the first 64 KiB:

* ``hl7v2``: the first line starts with ``MSH``, ``FHS`` or ``BHS`` followed by a delimiter
  (MLLP framing characters before it are tolerated);
* ``hprim``: the first line is an H record declaring its delimiters (``H|~^\\&...``; also with
  fewer than three, which the HPRIM parser then refuses with a precise message);
* ``cda``: XML whose root element is ``ClinicalDocument`` in the ``urn:hl7-org:v3`` namespace
  (found with expat, stopping at the first element: nothing is expanded);
* ``csv``: the first line holds ``;`` and looks like a header (names, not values).

A spreadsheet export in another shape is refused with what to do: UTF-16 text (Excel's "Unicode
text") and a header of the extract's columns separated by ``,`` or tabs.

An empty file (or one holding only a byte-order mark and blanks) raises
``FileFormatError("EMPTY_FILE", ...)``; binary content (NUL bytes, archives) or anything else
raises ``FileFormatError("UNPARSEABLE_FILE", "<file>: <why>")``. Binary means control bytes (NUL
and the other C0 controls but tab, LF, VT, FF, CR, FS) making more than 1 % of the first 64 KiB (at
least two) *and* standing in more than half of its lines: a stray NUL, or a stray run of them (the
NUL padding after the end of a cut copy), is the parsers' to reject with its line, whatever the
file's size. UTF-16 text is told as such, with or without its byte-order mark.

:func:`get_parser` returns the ``parse`` function for a format; the CSV parser is imported lazily.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from xml.parsers import expat

from transforms.parsers.base import Chunk, FileFormatError, open_input

FORMATS = ("csv", "hl7v2", "cda", "hprim")
FORMAT_NAMES = {"csv": "CSV extract", "hl7v2": "HL7 v2.5 ORU^R01", "cda": "CR-BIO CDA", "hprim": "HPRIM Santé"}
PREFIX_BYTES = 64 * 1024
HL7_NS = "urn:hl7-org:v3"
_MAGIC = {
    b"\x1f\x8b": "a gzip archive",
    b"PK\x03\x04": "a zip archive",
    b"%PDF": "a PDF document",
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"BZh": "a bzip2 archive",
    b"\xfd7zXZ": "an xz archive",
    b"7z\xbc\xaf": "a 7z archive",
}
_HEADER_NAME = re.compile(r"[^\W\d][\w .'()/%°-]*", re.UNICODE)

Parser = Callable[..., Iterator[Chunk]]


class _Root(Exception):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


# bytes no text file holds: C0 controls but tab, LF, VT (MLLP's start), FF, CR and FS (MLLP's end)
_CONTROL_BYTES = bytes(b for b in range(32) if b not in (9, 10, 11, 12, 13, 28)) + b"\x7f"
BINARY_MIN_CONTROLS = 2  # and more than BINARY_SHARE of the head's bytes
BINARY_SHARE = 0.01
BINARY_LINE_SHARE = 0.5  # and in more than this share of the head's non-blank lines


def _controls(data: bytes) -> int:
    return len(data) - len(data.translate(None, _CONTROL_BYTES))


def _looks_binary(head: bytes) -> bool:
    """Whether the file's first bytes are binary rather than text: at least
    :data:`BINARY_MIN_CONTROLS` control bytes (NUL and the other C0 controls no text format uses)
    making more than 1 % of them, in more than half of their non-blank lines.

    Why both: binary content (random bytes, an unknown archive, a database, UTF-16 text) has control
    bytes all through it, so nearly every "line" between its newline bytes holds one. A text export
    with a stray byte or run of bytes (one NUL in a name; the NUL padding that a cut or pre-allocated
    copy leaves after its end) holds them in one or two lines: the parsers reject the line (CSV),
    message (HL7) or record (HPRIM) that holds them, naming it and the byte, and the rest loads. The
    byte share alone made that depend on the file's size (QA ops F4: one NUL refused a 999-line
    file; QA F4 low: 20 NULs after the last line refused a 3-line CSV as binary, and were one
    quarantined line of a 61 KB one)."""
    controls = _controls(head)
    if controls < BINARY_MIN_CONTROLS or controls <= BINARY_SHARE * len(head):
        return False
    lines = [ln for ln in head.replace(b"\r", b"\n").split(b"\n") if ln.strip()]
    dirty = sum(1 for ln in lines if _controls(ln))
    return dirty > BINARY_LINE_SHARE * len(lines)


def _utf16_order(head: bytes) -> str | None:
    """``utf-16-le`` or ``utf-16-be`` when ``head`` is UTF-16 text without a byte-order mark (mostly
    Latin text: one byte of each pair NUL, the other not), else None. Such a file is not binary:
    it is told what it is, as one with its mark (a CDA document in it is read)."""
    pairs = len(head) // 2
    if pairs < 2:
        return None
    low, high = head[0 : 2 * pairs : 2], head[1 : 2 * pairs : 2]
    for zeros, text, order in ((high, low, "utf-16-le"), (low, high, "utf-16-be")):
        if zeros.count(0) >= 0.9 * pairs and text.count(0) <= 0.1 * pairs:
            return order
    return None


def _xml_root(data: bytes) -> str | None:
    """``"ns local"`` name of the first element in ``data``, or None if none is reached."""
    p = expat.ParserCreate(namespace_separator=" ")
    p.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)

    def on_element(name, _attrs):
        raise _Root(name)

    def on_doctype(name, *_args):
        # the DOCTYPE names the root: stop before any declaration is read
        raise _Root(f"? {name.rpartition(':')[2]}")

    p.StartElementHandler = on_element
    p.StartDoctypeDeclHandler = on_doctype
    try:
        p.Parse(data, False)
    except _Root as r:
        return r.name
    except expat.ExpatError:
        return None
    return None


def _office(head: bytes) -> str | None:
    """What an office file is, from the names its zip container lists first (QA: an .xlsx renamed
    .csv was "a zip archive"): a spreadsheet is saved as CSV (';', UTF-8) from the spreadsheet."""
    if not head.startswith(b"PK\x03\x04"):
        return None
    if b"xl/" in head or b"spreadsheetml" in head:
        return "an Excel workbook: export it as CSV (';' separated) and deliver that"
    if b"word/" in head:
        return "a Word document"
    if b"application/vnd.oasis.opendocument.spreadsheet" in head:
        return "an OpenDocument spreadsheet: export it as CSV (';' separated) and deliver that"
    return None


def _looks_like_header(line: str) -> bool:
    cells = [c.strip().strip('"').strip() for c in line.split(";")]
    named = [c for c in cells if c]
    if len(cells) < 2 or len(named) < 2:
        return False
    good = sum(1 for c in named if _HEADER_NAME.fullmatch(c))
    return good == len(named) or (good >= 0.8 * len(named) and good >= 2)


def _header_separator(line: str) -> str | None:
    """The separator of ``line`` when it is a header of the CSV extract's columns (two or more names
    read as known columns, as the HEADER_INVALID message's rule, and every cell a name): ``;``,
    ``,`` or a tab; None when it does not look like one. Names only are read, never shown."""
    from transforms.parsers.csv_extract import KNOWN_KEYS, column_key  # lazily, as get_parser

    for sep in (";", "\t", ","):
        cells = [c.strip().strip('"').strip() for c in line.split(sep)]
        named = [c for c in cells if c]
        if len(named) >= 2 and sum(1 for c in named if KNOWN_KEYS.get(column_key(c))) >= 2 and all(
                _HEADER_NAME.fullmatch(c) for c in named):
            return sep
    return None


UTF16_EXPORT = "UTF-16 text (Excel 'Unicode text'): export as CSV, ';' separated, UTF-8 or Latin-1"


def _utf16_text(head: bytes, encoding: str = "utf-16") -> str | None:
    """What to say of UTF-16 text that is not XML: a spreadsheet's "Unicode text" export when its
    first line is a header of the extract's columns (QA: "UTF-16 content that is not a CDA
    document" said nothing of what to do); None when it is XML or not text. ``encoding``: the byte
    order when there is no byte-order mark."""
    try:
        text = head[: len(head) // 2 * 2].decode(encoding, errors="strict")
    except UnicodeDecodeError:
        return None
    text = text.lstrip("\ufeff \t\r\n")
    if text.startswith("<"):
        return None
    first = text.split("\n", 1)[0].split("\r", 1)[0]
    if _header_separator(first) is not None:
        return UTF16_EXPORT
    return "UTF-16 text: deliver a CSV extract (';' separated, UTF-8 or Latin-1), HL7 v2, HPRIM or CDA"


def detect_format(path: Path) -> str:
    """One of ``csv``, ``hl7v2``, ``cda``, ``hprim`` for the file at ``path`` (see module doc)."""
    path = Path(path)
    with open_input(path) as fh:
        head = fh.read(PREFIX_BYTES)
    name = path.name
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    if not head.strip():
        raise FileFormatError("EMPTY_FILE", f"{name}: the file is empty")
    for magic, what in _MAGIC.items():
        if head.startswith(magic):
            raise FileFormatError("UNPARSEABLE_FILE", f"{name}: binary content ({_office(head) or what})")
    order = "utf-16" if head.startswith((b"\xff\xfe", b"\xfe\xff")) else _utf16_order(head)
    if order is not None:
        # UTF-16, with a byte-order mark or without (then its NULs made it "binary content"): only
        # XML is expected that way (expat tells the byte order from the first '<')
        root = _xml_root(head)
        if root is not None and root.rpartition(" ")[2] == "ClinicalDocument":
            return "cda"
        raise FileFormatError("UNPARSEABLE_FILE",
                              f"{name}: {_utf16_text(head, order) or 'UTF-16 content that is not a CDA document'}")
    if _looks_binary(head):
        raise FileFormatError("UNPARSEABLE_FILE", f"{name}: binary content (NUL or control bytes)")
    text = head.lstrip(b" \t\r\n\x0b\x1c")
    if text[:3] in (b"MSH", b"FHS", b"BHS") and len(text) > 3 and not text[3:4].isalnum() and text[3:4].strip():
        return "hl7v2"
    if text[:1] == b"H" and len(text) > 5 and not text[1:2].isalnum() and text[1:2].strip():
        fs = text[1:2]
        declared = re.split(rb"[\r\n]", text[2:], maxsplit=1)[0].split(fs, 1)[0]
        # fewer than three delimiters is still an H record: the HPRIM parser says precisely what is
        # wrong with it ("declares fewer than three delimiters") instead of a generic refusal here
        if len(declared) <= 4 and not any(chr(c).isalnum() or chr(c).isspace() for c in declared):
            return "hprim"
    if text[:1] == b"<":
        root = _xml_root(head)
        if root is None:
            raise FileFormatError("UNPARSEABLE_FILE", f"{name}: XML without a readable root element")
        ns, _, local = root.rpartition(" ")
        if local == "ClinicalDocument" and ns in (HL7_NS, "?"):
            return "cda"
        if ns == "?" and b"ClinicalDocument" in head:
            # a DOCTYPE naming something else before a CDA document (an entity attack): the CDA
            # parser refuses that document as UNSAFE_XML, without reading its declarations, and
            # goes on with the file's next documents
            return "cda"
        if local == "ClinicalDocument":
            raise FileFormatError("UNPARSEABLE_FILE", f"{name}: XML root <ClinicalDocument> is not a CDA "
                                                      f"document: not in the HL7 v3 namespace ({HL7_NS})")
        raise FileFormatError("UNPARSEABLE_FILE", f"{name}: XML root <{local}> is not a CDA ClinicalDocument")
    first = text.split(b"\n", 1)[0].split(b"\r", 1)[0]
    try:
        line = first.decode("utf-8")
    except UnicodeDecodeError:
        line = first.decode("latin-1")
    if ";" in line and _looks_like_header(line):
        return "csv"
    if ";" in line:
        raise FileFormatError("UNPARSEABLE_FILE", f"{name}: ';'-separated first line is not a header")
    sep = _header_separator(line)
    if sep is not None:  # QA: a comma- or tab-separated export got the generic message below
        shown = "tabs" if sep == "\t" else f"'{sep}'"
        raise FileFormatError("UNPARSEABLE_FILE", f"{name}: a header separated by {shown}: the CSV extract must be "
                                                  "';' separated (export it again with ';')")
    raise FileFormatError(
        "UNPARSEABLE_FILE", f"{name}: first line is neither HL7 v2 (MSH/FHS/BHS), HPRIM (H|...), CDA XML nor a CSV header"
    )


def get_parser(fmt: str) -> Parser:
    """The ``parse(path, *, file_id, source, chunk_rows)`` function for ``fmt``."""
    if fmt == "hl7v2":
        from transforms.parsers.hl7v2 import parse
    elif fmt == "cda":
        from transforms.parsers.cda import parse
    elif fmt == "hprim":
        from transforms.parsers.hprim import parse
    elif fmt == "csv":
        from transforms.parsers.csv_extract import parse  # written alongside, same signature
    else:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    return parse
