"""HL7 v2.5 ORU^R01 parser (IHE LAB with the French extensions), streaming and fast.

A file holds one or many messages, with or without FHS/BHS/BTS/FTS batch wrappers (skipped), with
segments ended by ``\\r``, ``\\n`` or ``\\r\\n`` (mixed is fine; a lone ``\\n`` in a message whose
segments end with ``\\r`` is a line break inside a field when no segment follows it: see
hl7v2_framing), optionally MLLP-framed. Each message starts at an ``MSH`` line; its delimiters
come from MSH-1/MSH-2 and its character set from MSH-18 (``UNICODE UTF-8``, ``8859/1``...; a
declared 8859 charset gives way to UTF-8 when the message is valid UTF-8 holding multi-byte
sequences; ``8859/1`` and undeclared 8-bit text are read as Windows-1252, what Windows senders
write), else UTF-8 with a Windows-1252 fallback for that message.

One canonical row per OBX (see docs/formats.md for the field map):

* patient from the PID in force (PID-3: the repetition whose assigning authority is an INS OID,
  else the first identifier; PID-5 the ``L`` (birth) name, else the first; PID-7; PID-8 (its first
  component) read as every format reads a sex (transforms/parsers/sex.py: ``U``/``O``/``A``/``N``,
  HL7 table 0001's neither F nor M, are unknown); PID-11 postal code of the home address);
* request id from OBR-3 (filler), OBR-2, ORC-3, ORC-2;
* times: collected_at OBR-7, else SPM-17, else OBX-14 (the specimen's collection, which the
  indicators count by); received_at SPM-18, else OBR-14; validated_at OBX-19, else OBR-22; the
  OBX's own time OBX-14 also in observed_at (offsets dropped, never applied: see resultrows);
* observation_sub_id OBX-4: with OBX-3 it identifies an observation within its order (an
  antibiogram's isolates; transforms/versions.py keeps such results apart);
* lab_finess: a FINESS in OBX-23, else MSH-4, else ORC-21 (null when none carries 9 FINESS
  characters);
* OBX-3 code (LOINC ``LN`` system to loinc_code_src, the code also in local_code), OBX-2 value
  type, OBX-5 value (escape-decoded), OBX-6 unit, OBX-7 range, OBX-8 flag, OBX-11 status kept
  as sent (the pipeline applies C/D/X), specimen from SPM-4 or OBR-15;
* an OBX of type ED holding a base64 CDA gives the CDA's observations as rows (cda.py), at the
  OBX's line and with the message's id; other ED contents (a PDF) are ``NO_RESULT`` rejects.

Rejects: a message whose MSH-9 is not ORU^R01 is ONE ``UNSUPPORTED_MESSAGE_TYPE`` reject and one
whose MSH-11 processing ID is not P (T training, D debugging; empty is read as P) ONE
``NON_PRODUCTION`` reject, whatever their segments (:func:`check_header`); a message without PID
or OBR, with an OBX before its OBR, with a line that is not a segment or with broken delimiters is
ONE ``MALFORMED_MESSAGE`` reject at the line of its MSH (message-level rejects are at that line); a
message without OBX is a ``NO_RESULT`` reject; an OBX whose patient has a test INS OID
(.10/.11: as its INS, or anywhere in its PID; for an embedded CDA, also anywhere in the
document's recordTarget) is a ``TEST_IDENTITY`` reject. Lines before the first MSH that are not
batch headers form one malformed unit. A batch wrapper that shows a truncated delivery (a BTS or
FTS count that does not match, a BHS or FHS without its trailer) is a ``MALFORMED_MESSAGE`` reject
at its line. ``line_no`` is the physical line of the OBX; ``units_seen`` counts messages (and such
junk units). A message (or junk unit) rejected whole says how many OBX it held (:func:`not_read`).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from transforms.identity import normalise_ins
from transforms.parsers import cda
from transforms.parsers.base import (
    Chunk,
    FileFormatError,
    control_byte,
    decode_utf8,
    holds_control,
    holds_utf8_sequences,
    open_input,
)
from transforms.parsers.er7 import (
    HL7_DEFAULT,
    TEST_INS_OIDS,
    Delimiters,
    components,
    decode,
    finess_of_org,
    first_component,
    pick_identifier,
    result_columns,
    test_oid_in,
)
from transforms.parsers.hl7v2_framing import MessageSplitter
from transforms.parsers.hl7v2_obx import CTX_FIELDS, obx_frame
from transforms.parsers.linereader import decode_text, iter_blocks
from transforms.parsers.resultrows import IDX, SEP, ResultSink, relaxed_gc

_ORDER_ENDS = frozenset({"OBR", "ORC", "PID", "MSH"})
_PAD = [""] * 32
_CHARSETS = {
    "UNICODE UTF-8": "utf-8",
    "UNICODE": "utf-8",
    "UTF-8": "utf-8",
    "ASCII": "utf-8",
    # Windows senders declare 8859/1 on Windows-1252 text (base.decode_8bit: QA fmt F3)
    "8859/1": "cp1252",
    "8859/15": "iso8859-15",
    "8859/2": "iso8859-2",
    "8859/9": "iso8859-9",
}
_PATIENT_FIELDS = ("patient_nir", "ins_oid", "family_name", "first_name", "birth_date", "sex", "postal_code")
_I_STATUS = IDX["result_status"]
_I_OBSERVED = IDX["observed_at"]
# columns an embedded CDA row takes from the HL7 message when the document leaves them empty
_MERGED = tuple(
    IDX[n]
    for n in ("lab_finess", "request_id", *_PATIENT_FIELDS, "collected_at", "received_at", "validated_at", "specimen")
)


class _Malformed(Exception):
    """The message cannot be read; the text says why (never with patient data)."""


class _Refused(Exception):
    """A readable message that is not production lab results: ``reason`` and a detail naming why."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


# MSH-11 processing IDs (HL7 table 0103) other than P: never production data
_PROCESSING_IDS = {"T": "training", "D": "debugging"}


def _shown(text: str) -> str:
    """A header value as quoted in a reject detail: printable, at most 20 characters."""
    text = "".join(c if c.isprintable() else "?" for c in text[:20])
    return text or "(empty)"


def check_header(mf: list[str], d: Delimiters) -> None:
    """Refuse a message that is not a result message or not production data (MSH-9, MSH-11).

    ``mf`` is the MSH split on the field separator (``mf[8]`` = MSH-9, ``mf[10]`` = MSH-11).
    Read: ``ORU^R01`` (its structure ``ORU_R01`` or none in MSH-9.3), ``ORU`` without a trigger
    event, and an empty MSH-9 (the segments still have to make an ORU: PID, OBR, OBX). Refused
    (``UNSUPPORTED_MESSAGE_TYPE``): every other type -- orders (ORM, OML), admissions (ADT),
    acknowledgements, and the result messages whose structure differs from ORU_R01 (OUL^R22 and
    OUL^R24 put the specimen and its OBX before the OBR; ORU^R30 to R32 are point-of-care
    messages). Refused (``NON_PRODUCTION``): MSH-11 processing ID T (training), D (debugging) or
    any value outside table 0103; an empty MSH-11 is read as P (many senders leave it empty);
    the processing mode (MSH-11.2: archive, restore, initial load) does not matter. A type refused
    under the declared delimiters but written with another of them (or ``^``) in place of the
    component separator is ``MALFORMED_MESSAGE``: the detail points at MSH-2, not at the type.
    """
    mt = mf[8]
    oru = "ORU" + d.component + "R01"
    if mt and mt != oru and not mt.startswith(oru + d.component):
        c = mt.split(d.component)
        code = c[0].strip().upper()
        trigger = c[1].strip().upper() if len(c) > 1 else ""
        if code or trigger:
            if code != "ORU" or trigger not in ("R01", ""):
                misfit = [c for c in dict.fromkeys("^" + d.repetition + d.subcomponent + d.escape)
                          if c != d.component and c in mt]
                if misfit:
                    # written with another separator than the declared component: the declaration is wrong
                    raise _Malformed(
                        f"MSH-2 declares {_shown(d.component + d.repetition + d.escape + d.subcomponent)} "
                        f"(component {d.component}) but MSH-9 {_shown(mt)} is written with {misfit[0]}: "
                        "the delimiter declaration does not match the message"
                    )
                shown = _shown(code + "^" + trigger if trigger else code)
                if code in ("ORU", "OUL"):
                    detail = f"result message {shown} not read: its structure is not ORU_R01 (only ORU^R01 is read)"
                else:
                    detail = f"not a result message: {shown}"
                raise _Refused("UNSUPPORTED_MESSAGE_TYPE", detail)
    pt = mf[10]
    if pt and pt != "P":
        pid = pt.split(d.component, 1)[0].strip().upper()
        if pid and pid != "P":
            meaning = _PROCESSING_IDS.get(pid)
            if meaning:
                detail = f"processing ID {pid} ({meaning}): not production data"
            else:
                detail = f"processing ID {_shown(pid)} is not P (production), T or D: not loaded as production data"
            raise _Refused("NON_PRODUCTION", detail)


def _swapped_declaration(msh: str, declared: str, d: Delimiters) -> Delimiters:
    """MSH-2 ``~^\\&`` declares component ``~`` and repetition ``^``: HPRIM's order, written in an MSH.
    When MSH-9 is written with ``^`` and without ``~`` (``ORU^R01``), the message uses HL7's
    delimiters and is read with component ``^`` and repetition ``~``; otherwise (``ORU~R01``) the
    declaration is honoured."""
    parts = msh.split(d.field, 9)
    mt = parts[8] if len(parts) > 8 else ""
    if "^" in mt and "~" not in mt:
        return _delimiters(d.field, "^~" + declared[2:])
    return d


@lru_cache(maxsize=64)
def _delimiters(fs: str, declared: str) -> Delimiters:
    if fs == "|" and declared == "^~\\&":
        return HL7_DEFAULT
    return Delimiters.from_declaration(fs, declared)


def _ts(field: str, d: Delimiters) -> str:
    """A timestamp field's text (TS component 1); digits-only values skip all decoding."""
    return field if not field or field.isdigit() else first_component(field, d)


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _charset(msh: bytes) -> str | None:
    """The Python codec named by MSH-18 when it is not UTF-8/ASCII (the default), else None."""
    if b"8859/" not in msh or len(msh) < 4 or msh.count(msh[3:4]) < 17:
        return None
    fields = msh.split(msh[3:4])
    if len(fields) > 17 and fields[17]:
        name = fields[17].split(b"^")[0].strip().upper().decode("ascii", "replace")
        return _CHARSETS.get(name)
    return None


def _patient(f: list[str], d: Delimiters) -> tuple:
    """(nir, oid, family, first, birth, sex, postal) from a split PID."""
    nir, oid = pick_identifier(f[3], d) if f[3] else ("", "")
    family = given = ""
    if f[5]:
        reps = f[5].split(d.repetition)
        chosen = reps[0]
        for r in reps:
            c = r.split(d.component)
            if len(c) > 6 and c[6] == "L":
                chosen = r
                break
        # XPN-1 is itself composite (surname&own surname prefix&...): cut before decoding
        raw_family = chosen.split(d.component, 1)[0]
        if d.subcomponent in raw_family:
            chosen = raw_family.split(d.subcomponent, 1)[0] + chosen[len(raw_family):]
        family, given = components(chosen, d, 2)
    birth = first_component(f[7], d) if f[7] else ""
    # as sent (its first component: PID-8 is a CWE from v2.7); read into F, M or unknown with the
    # other formats' vocabulary (transforms/parsers/sex.py, applied in resultrows.finish)
    sex = first_component(f[8], d).strip() if f[8] else ""
    postal = ""
    if f[11]:
        fallback = ""
        for r in f[11].split(d.repetition):
            a = components(r, d, 7)
            if not a[4]:
                continue
            if a[6] == "H":
                postal = a[4]
                break
            if not fallback and a[6] not in ("BDL", "BR", "N"):
                fallback = a[4]
        postal = postal or fallback
    return (nir, oid, family, given, birth, sex, postal)


class _Message:
    """Walks the segments of one decoded message and builds its rows and rejects.

    Rows are built as each OBX is read, with the order (OBR/ORC) and patient (PID) in force; the
    order's SPM, which follows its OBX segments, is looked up when the OBR is read.
    """

    __slots__ = ("d", "msg_id", "msh_lab", "sink", "rows", "rejects", "n_obx", "vectorise")

    def __init__(self, msh: str, sink: ResultSink):
        if msh.startswith("MSH|^~\\&|"):
            d = HL7_DEFAULT
        else:
            if len(msh) < 8 or msh[3].isalnum() or msh[3].isspace():
                raise _Malformed("MSH segment too short or without delimiters")
            end = msh.find(msh[3], 4)
            declared = msh[4:end] if end > 0 else msh[4:]
            try:
                d = _delimiters(msh[3], declared)
            except ValueError as e:
                raise _Malformed(f"MSH-2 encoding characters unusable: {e}") from None
            if d.component == "~" and d.repetition == "^":
                d = _swapped_declaration(msh, declared, d)
        self.d = d
        mf = msh.split(d.field, 11)
        if len(mf) < 12:
            mf.extend(_PAD[: 12 - len(mf)])
        check_header(mf, d)
        msg_id = mf[9]
        self.msg_id = msg_id if msg_id.isalnum() else first_component(msg_id, d)
        self.msh_lab = finess_of_org(mf[3], d) or "" if mf[3] else ""
        self.sink = sink
        self.rows = sink.rows  # rows go straight to the sink; the caller rolls back on failure
        self.rejects: list[tuple] = []
        self.n_obx = 0
        # plain OBX segments of a default-delimited message are handed over unparsed (packed)
        self.vectorise = d is HL7_DEFAULT

    def run(self, segs: list[str], nos: list[int]) -> None:  # noqa: C901 - one pass, kept flat for speed
        d = self.d
        fs = d.field
        msg_id = self.msg_id
        rows = self.rows
        append = rows.append
        patient: tuple | None = None
        orc_req = ""
        orc_lab = ""
        base_lab = self.msh_lab
        in_order = False
        saw_obr = False
        # the order in force: request, collection, reception, report time, specimen, test flag
        req = coll = recv = obr22 = spec = ""
        is_test = False
        test_oid = ""  # the test INS OID of the patient in force (its ins_oid, or anywhere in its PID)
        n_obx = 0
        last_xon, last_lab = "", ""
        esc, rep = d.escape, d.repetition
        ctx: int | None = None  # index of the packed order context in sink.contexts
        sink = self.sink
        packed, packed_nos, packed_ctx, contexts = sink.packed, sink.packed_nos, sink.packed_ctx, sink.contexts
        for i in range(1, len(segs)):
            s = segs[i]
            if s[3:4] != fs and len(s) != 3:
                raise _Malformed(f"line {nos[i]} is not an HL7 segment")
            sid = s[:3]
            if sid == "OBX":
                if not in_order:
                    raise _Malformed(f"OBX at line {nos[i]} comes before any OBR")
                if ctx is not None and esc not in s and rep not in s:
                    p1 = s.find(fs, 4)
                    p2 = s.find(fs, p1 + 1) if p1 > 0 else -1
                    vt = s[p1 + 1 : p2] if p2 > 0 else (s[p1 + 1 :] if p1 > 0 else "")
                    if vt != "ED" and (vt.isupper() or vt.strip(" \t").upper() != "ED"):
                        n_obx += 1
                        if is_test:
                            self.rejects.append(
                                (nos[i], "TEST_IDENTITY", "ins_oid", f"INS OID {test_oid} marks a test identity", s)
                            )
                        else:
                            packed.append(s)
                            packed_nos.append(nos[i])
                            packed_ctx.append(ctx)
                        continue
                f = s.split(fs)
                if len(f) < 24:
                    f.extend(_PAD[: 24 - len(f)])
                n_obx += 1
                vt = f[2]
                if vt == "ED" or (vt and not vt.isupper() and vt.strip().upper() == "ED"):
                    self._embedded(nos[i], s, f, req, coll, recv, obr22, spec, patient, base_lab, test_oid)
                    continue
                if is_test:
                    self.rejects.append(
                        (nos[i], "TEST_IDENTITY", "ins_oid", f"INS OID {test_oid} marks a test identity", s)
                    )
                    continue
                res = result_columns(f, d)
                lab = f[23]
                if lab != last_xon:  # OBX-23 is usually the same for every OBX of a message
                    last_xon, last_lab = lab, (finess_of_org(lab, d) if lab else "")
                lab = last_lab or base_lab
                o14 = f[14]
                if o14 and not o14.isdigit():
                    o14 = first_component(o14, d)
                o19 = f[19]
                if o19 and not o19.isdigit():
                    o19 = first_component(o19, d)
                sub = decode(f[4], d) if f[4] else ""
                append((nos[i], msg_id, lab, req, *patient, coll or o14, recv, o19 or obr22, *res, spec, sub, o14, ""))
            elif sid == "OBR":
                if patient is None:
                    raise _Malformed(f"OBR at line {nos[i]} comes before any PID")
                saw_obr = in_order = True
                f = s.split(fs)
                if len(f) < 23:
                    f.extend(_PAD[: 23 - len(f)])
                req = first_component(f[3], d) or first_component(f[2], d) or orc_req
                coll = _ts(f[7], d)
                recv = _ts(f[14], d)
                obr22 = _ts(f[22], d)
                spec = first_component(f[15], d) if f[15] else ""
                # the order's SPM follows its OBX (ORU_R01 2.5): read it now
                for j in range(i + 1, len(segs)):
                    nxt = segs[j][:3]
                    if nxt == "SPM":
                        f = segs[j].split(fs)
                        if len(f) < 19:
                            f.extend(_PAD[: 19 - len(f)])
                        spm4 = components(f[4], d, 2) if f[4] else ("", "")
                        spec = spm4[0] or spm4[1] or spec
                        coll = coll or (first_component(f[17], d) if f[17] else "")
                        recv = (first_component(f[18], d) if f[18] else "") or recv
                        break
                    if nxt in _ORDER_ENDS:
                        break
                ctx = None
                if self.vectorise:
                    packed_context = SEP.join((msg_id, base_lab, req, *patient, coll, recv, obr22, spec))
                    if packed_context.count(SEP) == CTX_FIELDS - 1:  # else a field holds the separator
                        ctx = len(contexts)
                        contexts.append(packed_context)
            elif sid == "PID":
                in_order = False
                ctx = None
                f = s.split(fs)
                if len(f) < 12:
                    f.extend(_PAD[: 12 - len(f)])
                patient = _patient(f, d)
                test_oid = patient[1] if patient[1] in TEST_INS_OIDS else test_oid_in(s)
                is_test = bool(test_oid)
                orc_req, orc_lab, base_lab = "", "", self.msh_lab
            elif sid == "ORC":
                in_order = False
                ctx = None
                f = s.split(fs)
                if len(f) < 22:
                    f.extend(_PAD[: 22 - len(f)])
                orc_req = first_component(f[3], d) or first_component(f[2], d)
                orc_lab = (finess_of_org(f[21], d) if f[21] else "") or ""
                base_lab = self.msh_lab or orc_lab
            elif not (sid.isalnum() and sid.isupper() and sid[0].isalpha()):
                raise _Malformed(f"line {nos[i]} is not an HL7 segment")
        if patient is None:
            raise _Malformed("no PID segment")
        if not saw_obr:
            raise _Malformed("no OBR segment")
        self.n_obx = n_obx

    def _embedded(self, no, seg, f, req, collected, received, obr22, specimen, patient, base_lab, test_oid) -> None:
        """Rows from the CDA document carried base64-encoded in an OBX of type ED."""
        d = self.d
        ed = components(f[5], d, 5) if f[5] else [""] * 5
        encoding, data = ed[3].strip().upper(), ed[4]
        if encoding not in ("BASE64", "B64") or not data:
            self.rejects.append((no, "NO_RESULT", "value_raw", "OBX of type ED without base64 data", seg))
            return
        try:
            raw = base64.b64decode(data)
        except (binascii.Error, ValueError):
            self.rejects.append((no, "EMBEDDED_DOCUMENT_INVALID", "value_raw", "OBX-5 is not valid base64", seg))
            return
        if raw.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] != b"<":
            kind = "/".join(x for x in (ed[1], ed[2]) if x) or "binary data"
            self.rejects.append((no, "NO_RESULT", "value_raw", f"OBX-5 holds {kind}, not a CDA document", seg))
            return
        doc = cda.extract_document(raw)
        if doc.reason:
            reason = "UNSAFE_XML" if doc.reason == "UNSAFE_XML" else "EMBEDDED_DOCUMENT_INVALID"
            self.rejects.append((no, reason, "value_raw", f"embedded CDA: {doc.detail}", seg))
            return
        if not doc.rows:
            self.rejects.append((no, "NO_RESULT", "value_raw", "embedded CDA holds no result observation", seg))
            return
        # the document's patient must be the message's: an INS in both that differ would file the
        # results under another person (QA: the CDA's patient silently replaced PID's)
        pid_ins = normalise_ins(patient[0] or None)
        doc_ins = {normalise_ins(r[IDX["patient_nir"]] or None) for r in doc.rows} - {None}
        if pid_ins and doc_ins and doc_ins != {pid_ins}:
            self.rejects.append((no, "EMBEDDED_DOCUMENT_INVALID", "patient_nir",
                                 f"embedded CDA: its patient's INS is not PID-3's ({len(doc.rows)} results "
                                 "not read: whose are they?)", seg))
            return
        status = decode(f[11], d)
        lab = (finess_of_org(f[23], d) if f[23] else None) or base_lab
        hl7 = (lab, req, *patient, collected or first_component(f[14], d), received,
               first_component(f[19], d) or obr22, specimen)
        rows = []
        for r in doc.rows:
            row = list(r)
            row[0] = no
            row[1] = self.msg_id
            # the document repeats the message's OBX results (Ségur), which OBX-4 and OBX-14 tell
            # apart; its observations' own times are often the analysis time where OBX-14 holds the
            # collection's, and would keep each result and its copy apart (transforms/versions.py)
            row[_I_OBSERVED] = ""
            for k, idx in enumerate(_MERGED):
                if not row[idx] and hl7[k]:
                    row[idx] = hl7[k]
            if not row[_I_STATUS]:
                row[_I_STATUS] = status
            rows.append(tuple(row))
        oid = rows[0][IDX["ins_oid"]]
        oid = oid if oid in TEST_INS_OIDS else (doc.test_oid or test_oid)
        if oid:
            self.rejects.append(
                (no, "TEST_IDENTITY", "ins_oid",
                 f"INS OID {oid} marks a test identity ({len(rows)} results in the embedded CDA)", seg)
            )
            return
        self.rows.extend(rows)


def not_read(segments: list) -> str:
    """`` (4 results not read)``: the OBX segments among ``segments`` (str or bytes) of a message
    rejected whole, so that the results a file delivered can be reconciled with those stored and
    quarantined (a message-level reject counts one unit: QA ledger F7); nothing when it held none."""
    n = sum(1 for s in segments if s[:3] in ("OBX", b"OBX"))
    return f" ({n} result{'s' if n > 1 else ''} not read)" if n else ""


def _control_check(segs: list[str], nos: list[int], raw: bytes | None = None) -> None:
    """Refuse the message when a segment holds a NUL or another control byte (QA ops F4: it was read
    into the patient's name, changing the linkage key): named by the byte, the segment (when it is
    a known one: never input text) and the line.

    One pass over the message's bytes (``raw``, else its segments joined and encoded) tells whether
    it holds one at all; only then are its segments searched one by one to name it. Every message
    is checked and almost none holds one: a regular expression per segment cost about twice as
    much (docs/formats.md, "Speed")."""
    if not holds_control(raw if raw is not None else "\r".join(segs).encode("utf-8", "replace")):
        return
    for i, seg in enumerate(segs):
        found = control_byte(seg)
        if found is not None:
            name = seg[:3] if seg[:3] in _KNOWN_SEGMENTS else "a segment"
            line = f" at line {nos[i]}" if i < len(nos) else ""
            raise _Malformed(f"{found[1]} in {name}{line}: the message is not read (a stray byte, or a damaged file?)")


_KNOWN_SEGMENTS = frozenset({"MSH", "PID", "PD1", "PV1", "PV2", "ORC", "OBR", "OBX", "NTE", "SPM", "TQ1", "CTI", "NK1"})


def _read_message(lines: list, nos: list[int], truncated: bool, sink: ResultSink) -> None:
    """Decode (unless the lines are already text) and parse one message into ``sink``."""
    sink.units += 1
    text: str | None = None
    raw: bytes | None = None
    if isinstance(lines[0], str):  # decoded with its block (UTF-8, no MSH-18 charset, no U+001F)
        segs = lines
    else:
        raw = b"\r".join(lines)
        charset = _charset(lines[0])
        if charset is None:
            text = decode_text(raw)  # UTF-8, else Windows-1252
        elif holds_utf8_sequences(raw) and _is_utf8(raw):
            # declared 8859 but sent in UTF-8 (a common misconfiguration): é arrives as two bytes
            # that are valid UTF-8, which Latin-1 text practically never holds (it would read Ã©)
            text = decode_utf8(raw)
        else:
            text = decode_text(raw, charset)
        segs = text.split("\r")
    mark = sink.mark()
    try:
        if truncated:
            raise _Malformed("the message holds a segment or a size beyond the parser's limits")
        _control_check(segs, nos, raw)
        msg = _Message(segs[0], sink)
        if text is not None and SEP in text:
            msg.vectorise = False
        msg.run(segs, nos)
    except _Malformed as e:
        sink.rollback(mark)
        sink.reject(nos[0], "MALFORMED_MESSAGE", None, f"{e}{not_read(segs)}",
                    text if text is not None else "\r".join(segs))
        return
    except _Refused as e:  # raised by the MSH, before any row
        sink.rollback(mark)
        sink.reject(nos[0], e.reason, None, f"{e}{not_read(segs)}", text if text is not None else "\r".join(segs))
        return
    if msg.n_obx == 0:
        sink.reject(nos[0], "NO_RESULT", None, "the message holds no OBX segment",
                    text if text is not None else "\r".join(segs))
        return
    for no, reason, column, detail, raw_text in msg.rejects:
        sink.reject(no, reason, column, detail, raw_text)


def parse(path: Path, *, file_id: str, source: str, chunk_rows: int = 200_000) -> Iterator[Chunk]:
    """Parse an HL7 v2 ORU file into canonical chunks (one unit = one message)."""
    path = Path(path)
    sink = ResultSink(file_id, source, chunk_rows, packed_builder=obx_frame)
    split = MessageSplitter()
    with open_input(path) as fh, relaxed_gc():
        for block in iter_blocks(fh):
            split.feed(block)
            if split.out:
                for msg in split.out:
                    _dispatch(msg, sink)
                    if sink.ready():
                        yield sink.take()
                split.out = []
            _wrapper_problems(split, sink)
    split.finish()
    if not split.seen_msh:
        if split.seen_any:
            raise FileFormatError("UNPARSEABLE_FILE", f"{path.name}: no MSH segment: not an HL7 v2 file")
        raise FileFormatError("EMPTY_FILE", f"{path.name}: no HL7 message in the file")
    for msg in split.out:
        _dispatch(msg, sink)
    _wrapper_problems(split, sink)
    if sink.pending():
        yield sink.take()


def _wrapper_problems(split: MessageSplitter, sink: ResultSink) -> None:
    """Batch wrappers that say the delivery is truncated (a BTS count that does not match, a header
    without its trailer): one ``MALFORMED_MESSAGE`` reject each, at the wrapper's line."""
    for no, detail, raw in split.problems:
        sink.reject(no, "MALFORMED_MESSAGE", None, detail, decode_text(raw))
    split.problems.clear()


def _dispatch(msg: tuple[list[bytes], list[int], bool], sink: ResultSink) -> None:
    lines, nos, bad = msg
    if lines[0][:3] in (b"MSH", "MSH"):
        _read_message(lines, nos, bad, sink)
    else:
        _junk(lines, nos, sink)


def _junk(lines: list[bytes], nos: list[int], sink: ResultSink) -> None:
    sink.units += 1
    sink.reject(
        nos[0],
        "MALFORMED_MESSAGE",
        None,
        f"{len(lines)} line(s) outside any message (no MSH before them){not_read(lines)}",
        decode_text(b"\r".join(lines)),
    )
