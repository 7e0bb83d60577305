"""The pipe-and-hat encoding shared by HL7 v2 (ER7) and HPRIM Santé 2.x.

Both formats split a record into fields with a field separator (``|``), fields into repetitions
(``~``), components (``^``) and subcomponents (``&``), and protect those characters inside data
with escape sequences introduced by an escape character (``\\``). The delimiters are declared by
the data itself (MSH-1/MSH-2 in HL7, the H record in HPRIM): :class:`Delimiters` holds them.

This module also holds what both parsers read the same way: the OBX result layout (HPRIM's OBX
copies HL7's), FINESS detection in organisation fields and the INS OIDs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from transforms.parsers.base import decode_8bit, decode_utf8

INS_OIDS = frozenset(
    {
        "1.2.250.1.213.1.4.8",  # INS-NIR
        "1.2.250.1.213.1.4.9",  # INS-NIA
        "1.2.250.1.213.1.4.10",  # INS-NIR test
        "1.2.250.1.213.1.4.11",  # INS-NIA test
    }
)
TEST_INS_OIDS = frozenset({"1.2.250.1.213.1.4.10", "1.2.250.1.213.1.4.11"})
# a test INS OID written anywhere (not part of a longer number: 1.2.250.1.213.1.4.100 is not one)
_TEST_OID_RE = re.compile(r"(?<![0-9])1\.2\.250\.1\.213\.1\.4\.1[01](?![0-9])")
_TEST_OID_STEM = "1.2.250.1.213.1.4.1"


def test_oid_in(text: str) -> str:
    """The test INS OID (.10 or .11) written anywhere in ``text`` (a PID segment, a P record), else ''.

    Defence in depth: a patient whose identity fields hold a test OID is a test identity even
    when the OID did not reach ``ins_oid`` (another INS repetition picked first, fields mis-split by
    wrong delimiters, the OID in an unexpected component)."""
    if _TEST_OID_STEM not in text:
        return ""
    m = _TEST_OID_RE.search(text)
    return m.group(0) if m else ""


FINESS_RE = re.compile(r"(?:\d{2}|2[AB])\d{7}")
LOINC_SYSTEMS = frozenset({"LN", "LOINC", "2.16.840.1.113883.6.1"})
# OBX-2 value types whose OBX-5 is a composite: value_raw keeps the components joined by "^"
STRUCTURED_TYPES = frozenset({"CE", "CWE", "CNE", "CF", "SN", "CX", "XCN", "XON", "XAD", "XPN", "HD", "EI"})
# OBX-2 value types whose repetitions are lines of text
TEXT_TYPES = frozenset({"TX", "FT"})


@dataclass(frozen=True)
class Delimiters:
    """The five delimiter characters of one message or file."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    @classmethod
    def from_declaration(cls, field: str, declared: str) -> Delimiters:
        """Build from the field separator and the encoding characters as declared.

        ``declared`` is MSH-2 (component, repetition, escape, subcomponent) for HL7; callers of
        other formats reorder before calling. Missing characters take the HL7 defaults; raises
        ``ValueError`` when the characters are not distinct or are letters, digits or spaces.
        """
        defaults = "^~\\&"
        chars = [declared[i] if i < len(declared) else defaults[i] for i in range(4)]
        allc = [field, *chars]
        if len(set(allc)) != 5 or any(c.isalnum() or c.isspace() for c in allc):
            raise ValueError("delimiters must be five distinct punctuation characters")
        return cls(field, chars[0], chars[1], chars[2], chars[3])


HL7_DEFAULT = Delimiters()


def unescape(text: str, d: Delimiters) -> str:
    """Decode the escape sequences of ``text`` (call only when ``d.escape in text``).

    ``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\`` give back the delimiters, ``\\.br\\`` (and ``\\.sp\\``) a
    newline, ``\\Xhh..\\`` the bytes ``hh..`` (read as UTF-8, else Windows-1252); highlighting and
    character-set switches (``\\H\\ \\N\\ \\Cxxyy\\ \\Mxxyyzz\\``) and other formatting commands
    are dropped. An unterminated or unknown sequence is kept as written.
    """
    e = d.escape
    parts = text.split(e)
    if len(parts) < 3:
        return text
    out = [parts[0]]
    i = 1
    n = len(parts)
    while i < n:
        if i + 1 >= n:  # an escape character that opens no complete sequence
            out.append(e + parts[i])
            break
        seq = parts[i]
        decoded = _decode_sequence(seq, d)
        if decoded is None:
            # not a sequence: keep the escape character literally and go on from here
            out.append(e + seq)
            i += 1
            continue
        out.append(decoded)
        out.append(parts[i + 1])
        i += 2
    return "".join(out)


def _decode_sequence(seq: str, d: Delimiters) -> str | None:
    if seq == "F":
        return d.field
    if seq == "S":
        return d.component
    if seq == "T":
        return d.subcomponent
    if seq == "R":
        return d.repetition
    if seq == "E":
        return d.escape
    if seq in ("H", "N"):
        return ""
    if seq.startswith("X") and len(seq) > 1:
        hexpart = seq[1:]
        try:
            raw = bytes.fromhex(hexpart)
        except ValueError:
            return None
        try:
            return decode_utf8(raw)
        except UnicodeDecodeError:
            return decode_8bit(raw)
    if seq.startswith("."):
        if seq in (".br", ".sp") or seq.startswith(".sp"):
            return "\n"
        if re.fullmatch(r"\.(?:fi|nf|ce|in[+-]?\d*|ti[+-]?\d*|sk[+-]?\d*)", seq):
            return ""
        return None
    if re.fullmatch(r"C[0-9A-Fa-f]{4}|M[0-9A-Fa-f]{4,6}|Z.*", seq):
        return ""
    return None


def escape(text: str, d: Delimiters = HL7_DEFAULT) -> str:
    """Encode ``text`` for a field: delimiters become escape sequences, newlines ``\\.br\\``."""
    if d is HL7_DEFAULT and _PLAIN_DEFAULT.fullmatch(text):
        return text  # the common case: nothing to encode
    e = d.escape
    out = text.replace(e, f"{e}E{e}")
    out = out.replace(d.field, f"{e}F{e}").replace(d.component, f"{e}S{e}")
    out = out.replace(d.subcomponent, f"{e}T{e}").replace(d.repetition, f"{e}R{e}")
    if "\n" in out or "\r" in out:
        out = out.replace("\r", f"{e}X0D{e}").replace("\n", f"{e}.br{e}")
    return out


_PLAIN_DEFAULT = re.compile(r"[^|^~\\&\r\n]*")


def decode(text: str, d: Delimiters) -> str:
    """``text`` with its escape sequences decoded (a no-op without the escape character)."""
    return unescape(text, d) if d.escape in text else text


def components(field: str, d: Delimiters, n: int) -> list[str]:
    """The first ``n`` components of the first repetition of ``field``, decoded, padded with ''."""
    if d.repetition in field:
        field = field.split(d.repetition, 1)[0]
    comps = field.split(d.component, n)[:n] if d.component in field else [field]
    if d.escape in field:
        comps = [unescape(c, d) if d.escape in c else c for c in comps]
    if len(comps) < n:
        comps.extend([""] * (n - len(comps)))
    return comps


def first_component(field: str, d: Delimiters) -> str:
    """Component 1 of repetition 1, subcomponent 1, decoded (a TS, an EI, an ID...)."""
    for sep in (d.repetition, d.component, d.subcomponent):
        if sep in field:
            field = field.split(sep, 1)[0]
    return unescape(field, d) if d.escape in field else field


def field_value(field: str, d: Delimiters, value_type: str) -> str:
    """OBX-5 as one string, escapes decoded.

    Composite types (CE, CWE, SN...) keep their components joined by ``^`` with trailing empty
    components dropped (``POS^Positif^L``, ``<^0.5``); text types (TX, FT) join their repetitions
    with newlines; other types are the field as sent, decoded.
    """
    if not field:
        return field
    if value_type in STRUCTURED_TYPES:
        reps = field.split(d.repetition) if d.repetition in field else [field]
        out = []
        for rep in reps:
            comps = rep.split(d.component)
            while comps and comps[-1] == "":
                comps.pop()
            if d.escape in rep:
                comps = [unescape(c, d) if d.escape in c else c for c in comps]
            out.append("^".join(comps))
        return "~".join(out)
    if value_type in TEXT_TYPES and d.repetition in field:
        return "\n".join(decode(r, d) for r in field.split(d.repetition))
    return unescape(field, d) if d.escape in field else field


_FINESS_CACHE: dict[tuple[str, str], str | None] = {}


def finess_of_org(field: str, d: Delimiters) -> str | None:
    """The FINESS carried by an XON (OBX-23, ORC-21) or an HD (MSH-4) field, if any.

    Looks at XON-10 (organisation identifier), XON-3 (id number), component 2 (HD universal id)
    and component 1 (name or namespace id), in that order, for 9 characters shaped like a FINESS
    (two digits or 2A/2B, then seven digits).
    """
    if not field:
        return None
    key = (field, d.component)
    try:
        return _FINESS_CACHE[key]
    except KeyError:
        pass
    first = field.split(d.repetition, 1)[0] if d.repetition in field else field
    comps = first.split(d.component)
    found = None
    for p in (9, 2, 1, 0):
        if p < len(comps):
            c = comps[p].strip(" \t")
            if FINESS_RE.fullmatch(c):
                found = c
                break
    if len(_FINESS_CACHE) > 8192:
        _FINESS_CACHE.clear()
    _FINESS_CACHE[key] = found
    return found


_LN_FAST = frozenset({"LN", "ln", "LOINC", "loinc", "2.16.840.1.113883.6.1"})
_EMPTY = ("",) * 8


def _is_loinc_system(system: str) -> bool:
    return system in _LN_FAST or (bool(system) and system.upper() in LOINC_SYSTEMS)


_CODE_CACHE: dict[str, tuple[str, str, str]] = {}
_UNIT_CACHE: dict[str, str] = {}


def code_columns(field: str, d: Delimiters) -> tuple[str, str, str]:
    """(local_code, local_label, loinc_code_src) from a CE/CWE test code (OBX-3).

    ``LOC^Label^L^1234-5^^LN`` gives the local code, its label and the LOINC alternate;
    ``1234-5^Label^LN`` gives the LOINC as both local code and LOINC (the source has no other
    code); ``1234-5^Label^LN^LOC^Libellé^L`` keeps the local alternate as local code. Missing
    parts are ''. A lab uses a few thousand codes: results are cached (default delimiters).
    """
    if d is HL7_DEFAULT:
        hit = _CODE_CACHE.get(field)
        if hit is None:
            hit = _code_columns(field, d)
            if len(_CODE_CACHE) > 50_000:
                _CODE_CACHE.clear()
            _CODE_CACHE[field] = hit
        return hit
    return _code_columns(field, d)


def _code_columns(field: str, d: Delimiters) -> tuple[str, str, str]:
    if d.repetition in field:
        field = field.split(d.repetition, 1)[0]
    c = field.split(d.component)
    if len(c) < 6:
        c.extend(_EMPTY[: 6 - len(c)])
    if d.escape in field:
        c = [unescape(x, d) if d.escape in x else x for x in c]
    s1 = c[2]
    if s1 in _LN_FAST or (s1 and s1 != "L" and s1.upper() in LOINC_SYSTEMS):
        loinc = c[0]
        if c[3] and not _is_loinc_system(c[5]):
            return c[3], c[4] or c[1], loinc
        return c[0], c[1], loinc
    if c[3] and _is_loinc_system(c[5]):
        return c[0], c[1], c[3]
    return c[0], c[1], ""


def result_columns(f: list[str], d: Delimiters) -> tuple:
    """The result part of a row from a split OBX (``f[n]`` is OBX-n, padded to 24 fields).

    Returns ``(local_code, local_label, loinc_code_src, value_type, value_raw, unit_raw,
    ref_range, abnormal_flag, result_status)``. Written for speed: escape decoding and component
    splitting only happen when the field holds the characters that need them.
    """
    esc = d.escape
    vt = f[2]
    if not (vt.isalpha() and vt.isupper()):
        vt = vt.strip(" \t").upper()
    local_code, local_label, loinc = code_columns(f[3], d)
    value = f[5]
    if value and (esc in value or vt in STRUCTURED_TYPES or (vt in TEXT_TYPES and d.repetition in value)):
        value = field_value(value, d, vt)
    unit = f[6]
    if unit and (d.component in unit or esc in unit or d.repetition in unit):
        hit = _UNIT_CACHE.get(unit) if d is HL7_DEFAULT else None
        if hit is None:
            u = components(unit, d, 2)
            hit = u[0] or u[1]
            if d is HL7_DEFAULT and len(_UNIT_CACHE) < 50_000:
                _UNIT_CACHE[unit] = hit
        unit = hit
    ref = f[7]
    if esc in ref:
        ref = unescape(ref, d)
    flag = f[8]
    if esc in flag:
        flag = unescape(flag, d)
    status = f[11]
    if esc in status:
        status = unescape(status, d)
    return (local_code, local_label, loinc, vt, value, unit, ref, flag, status)


def pick_identifier(field: str, d: Delimiters) -> tuple[str, str]:
    """(identifier, assigning-authority OID) from a repeating CX field (PID-3, HPRIM ids).

    The repetition whose assigning authority (CX-4, ``namespace&OID&ISO``) is an INS OID wins,
    else the first one typed ``INS`` (CX-5) with an identifier, else the first repetition with an
    identifier (else the first repetition). The OID is CX-4.2 (or a bare OID in CX-4.1). Whether a
    non-INS identifier is a NIR is decided at validation (flows/steps.local_ids_are_not_ins): the
    parser only extracts. (QA fmt note: an INS sent without its OID after the IPP,
    ``IPP^^^LAB^PI~<NIR>^^^^INS``, was passed over for the IPP, and the patient linked by traits.)
    The legacy PID-19 (SSN) is never read: it may hold the insured person's number, a parent's for
    a child, which would link two persons as one.
    """
    first: tuple[str, str] | None = None
    typed: tuple[str, str] | None = None
    for rep in field.split(d.repetition):
        c = rep.split(d.component)
        ident = decode(c[0], d) if c else ""
        oid = ""
        if len(c) > 3 and c[3]:
            hd = c[3].split(d.subcomponent)
            if len(hd) > 1 and hd[1]:
                oid = hd[1]
            elif re.fullmatch(r"\d+(?:\.\d+)+", hd[0]):
                oid = hd[0]
        if oid in INS_OIDS:
            return ident, oid
        if typed is None and ident and len(c) > 4 and c[4].strip().upper() == "INS":
            typed = (ident, oid)
        if first is None or (not first[0] and ident):
            first = (ident, oid)
    return typed or first or ("", "")
