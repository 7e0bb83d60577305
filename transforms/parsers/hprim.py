"""HPRIM Santé 2.x parser: H/P/OBR/OBX/C/L records, streaming.

The H record declares the delimiters right after its type: ``H|~^\\&`` is field ``|``,
repetition ``~``, component ``^``, escape ``\\``, subcomponent ``&``; ``H|^~\\&`` (HL7's order,
copied from an MSH) is read the same way: ``^`` is never a repetition nor ``~`` a component
separator. Any other declaration is honoured in HPRIM's order. A record longer than a line
continues on lines starting with ``A|``: what follows ``A|`` is appended to the record as is.
Records are decoded one at a time, UTF-8 else Windows-1252 (base.decode_8bit). Fields are
numbered like HL7's, the record type being field 0 (``OBX-5`` is the value); the OBR and OBX
records follow the HL7 layout.

Mapping (see docs/formats.md): P-2/P-3/P-4 identifiers (the one qualified by an INS OID, else the
first present), P-5 ``family^first``, P-6 birth name (preferred as family name when given), P-7
birth date, P-8 sex (``U``/``I`` unknown; read as every format reads it: transforms/parsers/sex.py),
P-10 address (component 5 postal code); OBR-3 (else OBR-2) request, OBR-7 collection, OBR-14
reception, OBR-15 specimen, OBR-22 report time; OBX-2 type, OBX-3 code, OBX-4 sub-ID, OBX-5 value,
OBX-6 unit, OBX-7 ranges (``low^high`` read as ``low-high``), OBX-8 flag, OBX-11 status, OBX-14
observation time (observed_at; collection fallback), OBX-15 producing lab (its FINESS, else the
FINESS in H-4, the sender), OBX-19 validation time.

Rejects: lines before the first H form one ``MALFORMED_MESSAGE`` reject; a line that is not a
record, a record of a type the parser does not know (``RES``, ``OBXX``: anything but H, P, OBR, OBX
and the types without results, C, L, AP, AC, FAC, ACT, REG, NTE), an OBR/OBX before any P, an OBX
before any OBR are ``MALFORMED_MESSAGE`` rejects of that record; an OBX whose patient carries a test INS OID (as its INS, or anywhere in its P record) is
a ``TEST_IDENTITY`` reject. An H whose P/OBR/OBX records are not closed by an L record before the end of the
file or the next H is a truncated delivery: one ``MALFORMED_MESSAGE`` reject at the H's line. ``line_no``
is the first physical line of the record; ``units_seen`` counts physical lines.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from transforms.parsers.base import Chunk, FileFormatError, control_byte, holds_control, open_input
from transforms.parsers.er7 import (
    INS_OIDS,
    TEST_INS_OIDS,
    Delimiters,
    components,
    decode,
    first_component,
    finess_of_org,
    pick_identifier,
    result_columns,
    test_oid_in,
)
from transforms.parsers.linereader import decode_text, iter_blocks
from transforms.parsers.resultrows import relaxed_gc, ResultSink

_PAD = [""] * 32
_RECORD_TYPE = re.compile(r"[A-Z][A-Z0-9]{0,3}")
# record types HPRIM Santé defines that carry no result: read past (C comment, L end, AP/AC/FAC/ACT/REG
# of the billing messages, NTE note). Any other type is a reject (never naming it): a result sent in a record
# the parser does not read (RES, a mistyped OBXX) must never vanish silently.
_IGNORED = frozenset({"C", "L", "AP", "AC", "FAC", "ACT", "REG", "NTE"})
_SECTION_RECORDS = frozenset({"P", "OBR", "OBX"})
# the detail of a record of an unknown type: it never quotes the type (QA: a broken line starting
# with a family name, ``ROUX|Denis|...``, reached the analysts' database as "record type ROUX")
UNKNOWN_RECORD_DETAIL = ("unknown HPRIM record type (not quoted: it may be patient data): not read (results "
                         "travel in OBX records; the line's text is in raw.rejected_lines, for data engineers)")


def header_delimiters(text: str) -> Delimiters:
    """Delimiters declared by an H record (``H|~^\\&...``); ``ValueError`` when unusable."""
    if len(text) < 5 or text[0] != "H":
        raise ValueError("not an H record")
    fs = text[1]
    end = text.find(fs, 2)
    declared = text[2:end] if end > 0 else text[2:]
    if len(declared) < 3:
        raise ValueError("the H record declares fewer than three delimiters")
    rep, comp, esc = declared[0], declared[1], declared[2]
    if rep == "^" and comp == "~":
        # HL7's order (MSH-2 copied into the H record: ``H|^~\\&``): ``^`` is the component and ``~``
        # the repetition separator in both standards, never the other way round (QA: read as
        # declared, P fields were mis-split and a test INS OID was loaded as a valid identity)
        rep, comp = "~", "^"
    sub = declared[3] if len(declared) > 3 else "&"
    return Delimiters.from_declaration(fs, comp + rep + esc + sub)


class _State:
    """What the records read so far say: delimiters, sender lab, patient, request."""

    def __init__(self) -> None:
        self.d: Delimiters | None = None
        self.lab: str | None = None
        self.patient: tuple | None = None
        self.test_oid = ""  # a test INS OID of the patient (ins_oid, or anywhere in its P record)
        self.obr: tuple | None = None
        # the H record (line, text) in force, whether its records are closed by an L (else the
        # delivery is truncated when the file or the next H comes first), the last P/OBR/OBX read
        # and the OBX read since the last OBR
        self.h: tuple[int, str] | None = None
        self.closed = True
        self.last: tuple[str, int] | None = None
        self.obr_obx = 0
        # the P or OBR record (type, line) refused for a control byte, whose records are not read
        self.refused: tuple[str, int] | None = None


def _close_section(st: _State, sink: ResultSink, where: str) -> None:
    """An H whose records end without an L record: a truncated delivery (QA: a file cut after a P
    and an OBR loaded silently). One ``MALFORMED_MESSAGE`` reject at the H's line; the results read
    are kept."""
    if st.h is None or st.closed:
        return
    no, text = st.h
    st.closed = True
    extra = ""
    if st.last is not None:
        rtype, at = st.last
        if rtype == "OBR" and not st.obr_obx:
            extra = f"; the last record, an OBR at line {at}, has no OBX"
        elif rtype == "P":
            extra = f"; the last record, a P at line {at}, has no OBR"
        else:
            extra = f"; the last record is an {rtype} at line {at}"
    sink.reject(no, "MALFORMED_MESSAGE", None,
                f"truncated delivery: the H record at line {no} is not closed by an L record before {where}{extra}",
                text)


def _patient(f: list[str], d: Delimiters) -> tuple:
    found: tuple[str, str] | None = None
    for k in (2, 3, 4):
        if f[k]:
            ident, o = pick_identifier(f[k], d)
            if o in INS_OIDS:
                found = (ident, o)
                break
            if found is None or (not found[0] and ident):
                found = (ident, o)
    nir, oid = found if found is not None else ("", "")
    name = components(f[5], d, 2)
    birth_name = first_component(f[6], d) if f[6] else ""
    family = birth_name or name[0]
    birth = first_component(f[7], d) if f[7] else ""
    # as sent: read into F, M or unknown in resultrows.finish (transforms/parsers/sex.py)
    sex = first_component(f[8], d).strip() if f[8] else ""
    postal = components(f[10], d, 5)[4] if f[10] else ""
    return (nir, oid, family, name[1], birth, sex, postal)


def _ranges(field: str, d: Delimiters) -> str | None:
    """``low^high`` reference ranges as ``low-high``; None when the field is not in that form."""
    if d.component in field and d.repetition not in field:
        c = field.split(d.component)
        if len(c) == 2 and (c[0] or c[1]):
            return f"{decode(c[0], d)}-{decode(c[1], d)}"
    return None


def _under_refused(st: _State, rtype: str, this: str = "OBX") -> str | None:
    """``OBX record under the P record at line 3, not read (a control byte)`` when the record
    ``rtype`` it belongs to was refused for a control byte; None otherwise."""
    if st.refused is None or st.refused[0] != rtype:
        return None
    return f"{this} record under the {rtype} record at line {st.refused[1]}, not read (a control byte)"


def _record(text: str, no: int, st: _State, sink: ResultSink, check: bool = True) -> None:
    """Apply one logical record (continuations already joined). ``check``: the record's block held a
    control byte, so the record is searched for one (:func:`parse`)."""
    if text[:1] == "H" and len(text) > 1 and not text[1].isalnum():
        _close_section(st, sink, f"the next H record at line {no}")
        st.h, st.last, st.obr_obx = None, None, 0
        try:
            d = header_delimiters(text)
        except ValueError as e:
            st.d = None
            sink.reject(no, "MALFORMED_MESSAGE", None, f"H record unusable: {e}", text)
            return
        st.d = d
        st.h, st.closed = (no, text), False
        f = text.split(d.field)
        st.lab = finess_of_org(f[4], d) if len(f) > 4 else None
        st.patient = st.obr = None
        return
    d = st.d
    if d is None:
        sink.reject(no, "MALFORMED_MESSAGE", None, "record outside any H header", text)
        return
    f = text.split(d.field)
    rtype = f[0]
    if len(f) < 24:
        f.extend(_PAD[: 24 - len(f)])
    if rtype in _SECTION_RECORDS:  # records an L record must close
        st.closed = False
        st.last = (rtype, no)
        if rtype == "OBX":
            st.obr_obx += 1
        elif rtype == "OBR":
            st.obr_obx = 0
        found = control_byte(text) if check else None
        if found is not None:  # QA ops F4: a NUL was read into the name, or the value
            if rtype != "OBX":
                st.obr, st.refused = None, (rtype, no)
                if rtype == "P":
                    st.patient = None
            below = {"P": ", nor the OBR and OBX records under it", "OBR": ", nor the OBX records under it"}
            sink.reject(no, "MALFORMED_MESSAGE", None, f"{found[1]} in the {rtype} record at line {no}: the record "
                        f"is not read{below.get(rtype, '')} (a stray byte, or a damaged file?)", text)
            return
        if rtype == "P" or (rtype == "OBR" and st.patient is not None):
            st.refused = None
    if rtype == "OBX":
        if st.patient is None:
            sink.reject(no, "MALFORMED_MESSAGE", None, _under_refused(st, "P") or "OBX record before any P record", text)
        elif st.obr is None:
            sink.reject(no, "MALFORMED_MESSAGE", None, _under_refused(st, "OBR") or "OBX record before any OBR record", text)
        elif st.test_oid:
            sink.reject(no, "TEST_IDENTITY", "ins_oid", f"INS OID {st.test_oid} marks a test identity", text)
        else:
            req, obr7, obr14, obr15, obr22 = st.obr
            res = result_columns(f, d)
            lab = (finess_of_org(f[15], d) if f[15] else None) or st.lab
            o14 = first_component(f[14], d) if f[14] else ""
            o19 = first_component(f[19], d) if f[19] else ""
            ranges = _ranges(f[7], d) if f[7] else None
            if ranges is not None:
                res = (*res[:6], ranges, *res[7:])
            sub = decode(f[4], d) if f[4] else ""
            sink.rows.append(
                (no, None, lab, req, *st.patient, obr7 or o14, obr14, o19 or obr22, *res, obr15, sub, o14, None)
            )
    elif rtype == "OBR":
        if st.patient is None:
            sink.reject(no, "MALFORMED_MESSAGE", None, _under_refused(st, "P", "OBR") or "OBR record before any P record", text)
            st.obr = None
            return
        st.obr = (
            first_component(f[3], d) or first_component(f[2], d),
            first_component(f[7], d) if f[7] else "",
            first_component(f[14], d) if f[14] else "",
            first_component(f[15], d) if f[15] else "",
            first_component(f[22], d) if f[22] else "",
        )
    elif rtype == "P":
        st.patient = _patient(f, d)
        st.test_oid = st.patient[1] if st.patient[1] in TEST_INS_OIDS else test_oid_in(text)
        st.obr = None
    elif rtype == "L":
        st.patient = st.obr = None
        st.closed = True
    elif rtype in _IGNORED:
        return
    elif _RECORD_TYPE.fullmatch(rtype):
        sink.reject(
            no, "MALFORMED_MESSAGE", None,
            # never the type itself: a line broken by a raw CR/LF may start with a name (ROUX|Denis|...)
            # and the detail reaches the analysts (QA); the line's text stays in raw.rejected_lines
            f"line {no}: {UNKNOWN_RECORD_DETAIL}", text,
        )
    else:
        found = control_byte(text) if check else None
        # a line of NUL bytes after the last record: the padding a cut or pre-allocated copy leaves
        why = f": it holds a {found[1]} (a stray byte, or the padding of a cut copy?)" if found else ""
        sink.reject(no, "MALFORMED_MESSAGE", None, f"line {no} is not an HPRIM record{why}", text)


def parse(path: Path, *, file_id: str, source: str, chunk_rows: int = 200_000) -> Iterator[Chunk]:
    """Parse an HPRIM Santé file into canonical chunks (one unit = one physical line)."""
    path = Path(path)
    sink = ResultSink(file_id, source, chunk_rows)
    st = _State()
    parts: list[bytes] = []
    rec_no = 0
    bad = False
    junk: list[bytes] = []
    junk_no = 0
    seen_h = False
    cont = b"A|"
    dirty = False  # the open record's lines came from a block holding a control byte
    with open_input(path) as fh, relaxed_gc():
        for block in iter_blocks(fh):
            first, lines, truncated = block.first_line_no, block.lines, block.truncated
            # one pass over the block's bytes; its records are searched for a control byte (to name
            # it and its record) only when it holds one, as almost none does (hot path)
            held = holds_control(block.data)
            no = first - 1
            for line in lines:
                no += 1
                sink.units += 1
                if not line.strip():
                    continue
                if parts and line.startswith(cont):
                    parts.append(line[2:])
                    bad = bad or (bool(truncated) and no in truncated)
                    dirty = dirty or held
                    continue
                if parts:
                    _flush(parts, rec_no, bad, st, sink, dirty)
                    parts = []
                    if sink.ready():
                        yield sink.take()
                if line[:1] == b"H" and len(line) > 5 and not line[1:2].isalnum():
                    if junk:
                        _junk(junk, junk_no, sink)
                        junk = []
                    seen_h = True
                    cont = b"A" + line[1:2]
                elif not seen_h:
                    if not junk:
                        junk_no = no
                    if sum(map(len, junk)) < (1 << 20):
                        junk.append(line)
                    continue
                parts = [line]
                rec_no = no
                bad = bool(truncated) and no in truncated
                dirty = held
    if parts:
        _flush(parts, rec_no, bad, st, sink, dirty)
    _close_section(st, sink, "the end of the file")
    if not seen_h:
        if junk:
            raise FileFormatError("UNPARSEABLE_FILE", f"{path.name}: no H record: not an HPRIM file")
        raise FileFormatError("EMPTY_FILE", f"{path.name}: no HPRIM record in the file")
    if junk:
        _junk(junk, junk_no, sink)
    if sink.pending():
        yield sink.take()


def _flush(parts: list[bytes], no: int, bad: bool, st: _State, sink: ResultSink, check: bool = True) -> None:
    text = decode_text(b"".join(parts))
    if bad:
        sink.reject(no, "MALFORMED_MESSAGE", None, "record longer than the parser's line limit", text)
        return
    _record(text, no, st, sink, check)


def _junk(lines: list[bytes], no: int, sink: ResultSink) -> None:
    sink.reject(
        no, "MALFORMED_MESSAGE", None, f"{len(lines)} line(s) before any H record", decode_text(b"\n".join(lines))
    )
