"""Write canonical result rows as HL7 v2.5 ORU^R01, CR-BIO CDA or HPRIM Santé files.

The generator produces the *logical* content of a lab delivery as canonical rows
(transforms.canonical); these writers give that content the shape real labs send, so that each
parser can be tested on files whose expected rows are known. The contract is a round trip:
parsing a written file gives back the same canonical rows, in the same order, except the lineage
columns (``file_id``, ``line_no``, ``message_id``, ``source``), for rows as the parsers produce
them:

* ``value_num`` and ``value_comparator`` are derived from ``value_type``/``value_raw`` (NM, or SN
  with a plain number or a comparator and a number such as ``<^0.5``);
* ``local_code`` is filled whenever ``loinc_code_src`` is;
* composite values (CE, CWE, SN) are written HL7-style, ``code^label^system`` / ``<^0.5``,
  without trailing empty components; empty strings are nulls;
* rows with a test INS OID (.10/.11) are written but come back as TEST_IDENTITY rejects;
* CDA only: value types other than NM, SN, ST, TX, CE, CWE and TS come back as ST; SN values
  that are neither a comparator, a ``low-high`` range, a ``n:d`` ratio nor a plain number come
  back as ST; a unit on a value that is not NM or SN is not carried; ``observation_sub_id`` is not
  carried (CDA has no OBX-4), ``observed_at`` is the observation's effectiveTime;
* HL7 v2 with ``embed_cda``: ``observed_at`` does not come back (the parser gives an embedded
  document's rows no own time: transforms/versions.py).

The time a message, document or file was made (MSH-7; CDA effectiveTime and author time; the
HPRIM H record) is the latest validation time among its rows.

Grouping: consecutive rows with the same request and patient make one message (HL7: one ORU;
CDA: one document, corrections -- status C -- in a separate replacement document; HPRIM: one P
record), and within it consecutive rows with the same collection, reception, specimen (and, for
CDA, lab) make one order (OBR / act).
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from pathlib import Path
from xml.sax.saxutils import escape as _xml_escape

import polars as pl

from transforms.parsers.cda import (
    FINESS_OID,
    LOINC_OID,
    SPECIMEN_RECEIVED,
    STATUS_TO_CDA,
    SYSTEM_OIDS,
)
from transforms.parsers.er7 import INS_OIDS, STRUCTURED_TYPES, escape

__all__ = ["write_hl7v2", "write_cda", "write_hprim", "hl7v2_messages", "cda_documents", "WRITERS"]

_PATIENT = ("patient_nir", "ins_oid", "family_name", "first_name", "birth_date", "sex", "postal_code")
_MESSAGE_KEY = ("request_id", *_PATIENT)
_ORDER_KEY = ("collected_at", "received_at", "specimen")
_INS_NAMESPACE = {"1.2.250.1.213.1.4.8": "ASIP-SANTE-INS-NIR", "1.2.250.1.213.1.4.9": "ASIP-SANTE-INS-NIA",
                  "1.2.250.1.213.1.4.10": "ASIP-SANTE-INS-NIR-TEST", "1.2.250.1.213.1.4.11": "ASIP-SANTE-INS-NIA-TEST"}
_IHE_ACT_CODES = "1.3.5.1.4.1.19376.1.5.3.2"
_NOW = datetime(2024, 1, 1, 12, 0)  # the time of a message whose rows carry no validation time


def _sent(rows: Iterable[dict]) -> datetime:
    """When a message, document or file is made: the latest validation among its rows."""
    return max((r["validated_at"] for r in rows if isinstance(r["validated_at"], datetime)), default=_NOW)


# --------------------------------------------------------------------------------------------
# shared helpers


def _ts(v: datetime | date | None) -> str:
    """HL7/CDA timestamp text: YYYYMMDD, or YYYYMMDDHHMMSS[.ffffff]."""
    if v is None:
        return ""
    if not isinstance(v, datetime):
        return f"{v.year:04d}{v.month:02d}{v.day:02d}"
    out = f"{v.year:04d}{v.month:02d}{v.day:02d}{v.hour:02d}{v.minute:02d}{v.second:02d}"
    return out + (f".{v.microsecond:06d}" if v.microsecond else "")


def _groups(rows: list[dict], key: tuple[str, ...]) -> Iterator[list[dict]]:
    """Runs of consecutive rows sharing the values of ``key``."""
    run: list[dict] = []
    last = None
    for r in rows:
        k = tuple(r[c] for c in key)
        if run and k != last:
            yield run
            run = []
        run.append(r)
        last = k
    if run:
        yield run


def _rows(df: pl.DataFrame) -> list[dict]:
    return list(df.iter_rows(named=True))


def _common_lab(rows: Iterable[dict]) -> str | None:
    labs = {r["lab_finess"] for r in rows}
    return labs.pop() if len(labs) == 1 else None


def _e(v: object) -> str:
    return escape(str(v)) if v is not None else ""


def _composite(value: str | None, value_type: str | None) -> str:
    """OBX-5 text: composite types keep ``^``/``~`` as structure, others are escaped whole."""
    if value is None:
        return ""
    if (value_type or "").upper() in STRUCTURED_TYPES:
        return "~".join("^".join(escape(c) for c in rep.split("^")) for rep in value.split("~"))
    return escape(value)


def _repeating(value: str | None) -> str:
    return "~".join(escape(x) for x in value.split("~")) if value else ""


def _code_field(r: dict, local_system: str = "L") -> str:
    local, label, loinc = r["local_code"], r["local_label"], r["loinc_code_src"]
    if loinc and (not local or local == loinc):
        return f"{_e(loinc)}^{_e(label)}^LN"
    if loinc:
        return f"{_e(local)}^{_e(label)}^{local_system}^{_e(loinc)}^^LN"
    if local is None and label is None:
        return ""
    return f"{_e(local)}^{_e(label)}^{local_system}"


def _cx(nir: str | None, oid: str | None) -> str:
    if nir is None and oid is None:
        return ""
    if oid:
        authority = f"{_INS_NAMESPACE.get(oid, '')}&{oid}&ISO"
        return f"{_e(nir)}^^^{authority}^{'INS' if oid in INS_OIDS else 'PI'}"
    return f"{_e(nir)}^^^^PI"


def _fields(*values: str) -> str:
    out = list(values)
    while out and out[-1] == "":
        out.pop()
    return "|".join(out)


# --------------------------------------------------------------------------------------------
# HL7 v2.5 ORU^R01


def hl7v2_messages(df: pl.DataFrame, *, id_prefix: str = "BIOLAKE", embed_cda: bool = False) -> Iterator[list[str]]:
    """The segments of each ORU^R01 message for ``df`` (see the module docstring)."""
    for n, msg_rows in enumerate(_groups(_rows(df), _MESSAGE_KEY), start=1):
        first = msg_rows[0]
        lab = _common_lab(msg_rows)
        segs = [
            "MSH|^~\\&|BIOLAKE|" + (lab or "BIOLAKE") + "|BIOLAKE|BIOLAKE|" + _ts(_sent(msg_rows))
            + f"||ORU^R01^ORU_R01|{id_prefix}{n:08d}|P|2.5|||||FRA|UNICODE UTF-8",
            _fields(
                "PID", "1", "", _cx(first["patient_nir"], first["ins_oid"]), "",
                f"{_e(first['family_name'])}^{_e(first['first_name'])}^^^^^L"
                if first["family_name"] is not None or first["first_name"] is not None else "",
                "", _ts(first["birth_date"]), _e(first["sex"]), "", "",
                f"^^^^{_e(first['postal_code'])}^^H" if first["postal_code"] is not None else "",
            ),
        ]
        req = _e(first["request_id"])
        segs.append(_fields("ORC", "RE", req, req))
        if embed_cda:
            segs.append(_fields("OBR", "1", req, req, "11502-2^CR d'examens biologiques^LN"))
            for i, part in enumerate(_correction_parts(msg_rows), start=1):
                correction = part[0]["result_status"] == "C"
                doc = "".join(_cda_document(part, f"{id_prefix}{n:08d}:{i}", correction))
                b64 = base64.b64encode(doc.encode("utf-8")).decode("ascii")
                segs.append(f"OBX|{i}|ED|11502-2^CR d'examens biologiques^LN||^text^XML^Base64^{b64}")
            yield segs
            continue
        k = 0
        for order in _groups(msg_rows, _ORDER_KEY):
            k += 1
            o = order[0]
            segs.append(
                _fields("OBR", str(k), req, req, _code_field(o), "", "", _ts(o["collected_at"]),
                        "", "", "", "", "", "", _ts(o["received_at"]))
            )
            for i, r in enumerate(order, start=1):
                segs.append(_obx(i, r))
            if o["specimen"] is not None:
                segs.append(f"SPM|1|||{_e(o['specimen'])}")
        yield segs


def _obx(i: int, r: dict) -> str:
    lab = r["lab_finess"]
    xon = f"LABO^^^^^FINESS&{FINESS_OID}&ISO^FINEG^^^{lab}" if lab else ""
    return _fields(
        "OBX", str(i), _e(r["value_type"]), _code_field(r), _e(r.get("observation_sub_id")),
        _composite(r["value_raw"], r["value_type"]),
        _e(r["unit_raw"]), _e(r["ref_range"]), _repeating(r["abnormal_flag"]), "", "", _e(r["result_status"]),
        "", "", _ts(r.get("observed_at")), "", "", "", "", _ts(r["validated_at"]), "", "", "", xon,
    )


def write_hl7v2(
    df: pl.DataFrame, path: Path, *, line_ending: str = "\r", batch: bool = False, embed_cda: bool = False,
    id_prefix: str = "BIOLAKE",
) -> int:
    """Write ``df`` as an ORU^R01 file (FHS/BHS-wrapped when ``batch``); returns the message count.

    ``embed_cda`` sends each message's results as one base64 CR-BIO document in an OBX of type ED
    (the Ségur way) instead of one OBX per result.
    """
    n = 0
    with Path(path).open("w", encoding="utf-8", newline="") as fh:
        if batch:
            fh.write("FHS|^~\\&|BIOLAKE" + line_ending + "BHS|^~\\&|BIOLAKE" + line_ending)
        for segs in hl7v2_messages(df, id_prefix=id_prefix, embed_cda=embed_cda):
            fh.write(line_ending.join(segs) + line_ending)
            n += 1
        if batch:
            fh.write(f"BTS|{n}{line_ending}FTS|1{line_ending}")
    return n


# --------------------------------------------------------------------------------------------
# CR-BIO (CDA R2 level 3)


_XML_PLAIN = re.compile(r"[^&<>\"\r\n\t]*")  # nothing to escape, in text or in an attribute


def _a(v: object) -> str:
    """An XML attribute value, quoted, with newlines and tabs kept as character references."""
    text = str(v)
    if not _XML_PLAIN.fullmatch(text):
        text = _xml_escape(text, {'"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"})
    return f'"{text}"'


def _t(v: object) -> str:
    text = str(v)
    return text if _XML_PLAIN.fullmatch(text) else _xml_escape(text).replace("\r", "&#13;")


def _attrs(**kw: object) -> str:
    return "".join(f" {k}={_a(v)}" for k, v in kw.items() if v is not None and v != "")


def _oid(text: str) -> str:
    return "2.25." + str(uuid.uuid5(uuid.NAMESPACE_URL, "biolake:" + text).int)


def _cda_code(r: dict) -> str:
    local, label, loinc = r["local_code"], r["local_label"], r["loinc_code_src"]
    if loinc and (not local or local == loinc):
        return f"<code{_attrs(code=loinc, codeSystem=LOINC_OID, displayName=label)}/>"
    if loinc:
        return (f"<code{_attrs(code=loinc, codeSystem=LOINC_OID, displayName=label)}>"
                f"<translation{_attrs(code=local, codeSystemName='L', displayName=label)}/></code>")
    return f"<code{_attrs(code=local, codeSystemName='L', displayName=label)}/>"


def _sn_parts(raw: str) -> list[str] | None:
    parts = raw.split("^")
    if len(parts) > 4 or "~" in raw:
        return None
    return parts + [""] * (4 - len(parts))


def _cda_value(r: dict) -> str:
    vt = (r["value_type"] or "").upper()
    raw, unit = r["value_raw"], r["unit_raw"]
    if raw is None:
        xtype = {"NM": "PQ", "SN": "IVL_PQ", "TX": "ED", "CWE": "CD", "CE": "CE", "TS": "TS"}.get(vt, "ST")
        if not vt:
            return ""
        return f'<value xsi:type="{xtype}" nullFlavor="NI"{_attrs(unit=unit if xtype in ("PQ", "IVL_PQ") else None)}/>'
    if vt == "NM":
        return f'<value xsi:type="PQ"{_attrs(value=raw, unit=unit)}/>'
    if vt == "SN":
        p = _sn_parts(raw)
        if p is not None:
            comp, n1, sep, n2 = p
            if comp == "" and n1 and not sep and not n2:
                return f'<value xsi:type="IVL_PQ"><center{_attrs(value=n1, unit=unit)}/></value>'
            if comp in ("<", "<=") and n1 and not sep and not n2:
                inc = "false" if comp == "<" else "true"
                return f'<value xsi:type="IVL_PQ"><high{_attrs(value=n1, unit=unit, inclusive=inc)}/></value>'
            if comp in (">", ">=") and n1 and not sep and not n2:
                inc = "false" if comp == ">" else "true"
                return f'<value xsi:type="IVL_PQ"><low{_attrs(value=n1, unit=unit, inclusive=inc)}/></value>'
            if comp == "" and n1 and sep == "-" and n2:
                return (f'<value xsi:type="IVL_PQ"><low{_attrs(value=n1, unit=unit)}/>'
                        f"<high{_attrs(value=n2, unit=unit)}/></value>")
            if comp == "" and n1 and sep == ":" and n2 and not unit:
                return (f'<value xsi:type="RTO"><numerator{_attrs(value=n1)}/>'
                        f"<denominator{_attrs(value=n2)}/></value>")
        return f'<value xsi:type="ST">{_t(raw)}</value>'
    if vt in ("CE", "CWE"):
        parts = (raw.split("^") + ["", "", ""])[:3]
        code, display, system = parts
        system_oid = SYSTEM_OIDS.get(system) or (system if system.replace(".", "").isdigit() else "")
        system_name = "" if system_oid else system
        xtype = "CE" if vt == "CE" else "CD"
        return f'<value xsi:type="{xtype}"{_attrs(code=code, displayName=display, codeSystem=system_oid, codeSystemName=system_name)}/>'
    if vt == "TX":
        return f'<value xsi:type="ED" mediaType="text/plain">{_t(raw)}</value>'
    if vt == "TS":
        return f'<value xsi:type="TS"{_attrs(value=raw)}/>'
    return f'<value xsi:type="ST">{_t(raw)}</value>'


def _cda_observation(r: dict) -> str:
    out = ['<component><observation classCode="OBS" moodCode="EVN">', _cda_code(r)]
    if r["result_status"] is not None:
        out.append(f"<statusCode{_attrs(code=STATUS_TO_CDA.get(r['result_status'], r['result_status']))}/>")
    if r.get("observed_at") is not None:
        out.append(f"<effectiveTime{_attrs(value=_ts(r['observed_at']))}/>")
    out.append(_cda_value(r))
    for flag in (r["abnormal_flag"] or "").split("~"):
        if flag:
            out.append(f'<interpretationCode{_attrs(code=flag, codeSystem="2.16.840.1.113883.5.83")}/>')
    if r["validated_at"] is not None:
        out.append(f'<participant typeCode="AUTHEN"><time{_attrs(value=_ts(r["validated_at"]))}/>'
                   '<participantRole><id nullFlavor="NI"/></participantRole></participant>')
    if r["ref_range"] is not None:
        out.append(f'<referenceRange typeCode="REFV"><observationRange><text>{_t(r["ref_range"])}</text>'
                   "</observationRange></referenceRange>")
    out.append("</observation></component>")
    return "\n".join(out)


def _cda_act(rows: list[dict]) -> str:
    o = rows[0]
    out = ['<entry typeCode="DRIV"><act classCode="ACT" moodCode="EVN">',
           f'<code code="26436-6" codeSystem="{LOINC_OID}" displayName="Examens de laboratoire"/>',
           '<statusCode code="completed"/>']
    if o["lab_finess"]:
        out.append('<performer typeCode="PRF"><assignedEntity><id nullFlavor="NI"/><representedOrganization>'
                   f'<id{_attrs(root=FINESS_OID, extension="1" + o["lab_finess"])}/>'
                   "</representedOrganization></assignedEntity></performer>")
    if o["collected_at"] is not None or o["specimen"] is not None or o["received_at"] is not None:
        out.append('<entryRelationship typeCode="COMP"><procedure classCode="PROC" moodCode="EVN">'
                   '<code code="33882-2" codeSystem="2.16.840.1.113883.6.1" displayName="Prélèvement"/>')
        if o["collected_at"] is not None:
            out.append(f"<effectiveTime{_attrs(value=_ts(o['collected_at']))}/>")
        if o["specimen"] is not None:
            out.append('<participant typeCode="PRD"><participantRole classCode="SPEC"><playingEntity>'
                       f"<code{_attrs(code=o['specimen'])}/></playingEntity></participantRole></participant>")
        if o["received_at"] is not None:
            out.append('<entryRelationship typeCode="COMP"><act classCode="ACT" moodCode="EVN">'
                       f'<code code="{SPECIMEN_RECEIVED}" codeSystem="{_IHE_ACT_CODES}"/>'
                       f"<effectiveTime{_attrs(value=_ts(o['received_at']))}/></act></entryRelationship>")
        out.append("</procedure></entryRelationship>")
    out.append('<entryRelationship typeCode="COMP"><organizer classCode="BATTERY" moodCode="EVN">'
               '<statusCode code="completed"/>')
    out.extend(_cda_observation(r) for r in rows)
    out.append("</organizer></entryRelationship></act></entry>")
    return "\n".join(out)


def _correction_parts(rows: list[dict]) -> Iterator[list[dict]]:
    """Runs of rows that are / are not corrections: a correction travels in a replacement document."""
    for r in rows:
        r["_correction"] = r["result_status"] == "C"
    yield from _groups(rows, ("_correction",))


def _cda_document(rows: list[dict], doc_key: str, correction: bool) -> Iterator[str]:
    p = rows[0]
    doc_id = _oid(doc_key)
    yield '<?xml version="1.0" encoding="UTF-8"?>\n'
    yield ('<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
           '<realmCode code="FR"/>\n<typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>\n'
           '<templateId root="1.3.6.1.4.1.19376.1.3.3" extension="2021.01"/>\n'
           f"<id{_attrs(root=doc_id)}/>\n"
           f'<code code="11502-2" codeSystem="{LOINC_OID}" displayName="CR d\'examens biologiques"/>\n'
           "<title>Compte rendu d'examens biologiques</title>\n"
           f'<effectiveTime value="{_ts(_sent(rows))}"/>\n'
           '<confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25"/>\n<languageCode code="fr-FR"/>\n'
           f"<setId{_attrs(root=_oid('set:' + doc_key))}/>\n"
           f'<versionNumber value="{2 if correction else 1}"/>\n')
    ident = _attrs(root=p["ins_oid"], extension=p["patient_nir"]) or ' nullFlavor="NI"'
    patient = [f"<recordTarget><patientRole><id{ident}/>"]
    if p["postal_code"] is not None:
        patient.append(f"<addr><postalCode>{_t(p['postal_code'])}</postalCode></addr>")
    patient.append('<patient classCode="PSN">')
    if p["family_name"] is not None or p["first_name"] is not None:
        patient.append("<name>")
        if p["family_name"] is not None:
            patient.append(f'<family qualifier="BR">{_t(p["family_name"])}</family>')
        if p["first_name"] is not None:
            patient.append(f"<given>{_t(p['first_name'])}</given>")
        patient.append("</name>")
    if p["sex"] is not None:
        patient.append(f'<administrativeGenderCode{_attrs(code=p["sex"], codeSystem="2.16.840.1.113883.5.1")}/>')
    if p["birth_date"] is not None:
        patient.append(f"<birthTime{_attrs(value=_ts(p['birth_date']))}/>")
    patient.append("</patient></patientRole></recordTarget>\n")
    yield "".join(patient)
    yield (f'<author><time value="{_ts(_sent(rows))}"/><assignedAuthor><id nullFlavor="NI"/></assignedAuthor></author>\n'
           "<custodian><assignedCustodian><representedCustodianOrganization>"
           f"<id{_attrs(root=_oid('biolake'))}/><name>biolake</name>"
           "</representedCustodianOrganization></assignedCustodian></custodian>\n")
    if p["request_id"] is not None:
        yield f"<inFulfillmentOf><order><id{_attrs(root=_oid('orders'), extension=p['request_id'])}/></order></inFulfillmentOf>\n"
    if correction:
        yield (f'<relatedDocument typeCode="RPLC"><parentDocument><id{_attrs(root=_oid(doc_key + ":v1"))}/>'
               "</parentDocument></relatedDocument>\n")
    yield ('<component><structuredBody><component><section>\n'
           f'<code code="18719-5" codeSystem="{LOINC_OID}" displayName="Biochimie"/>\n'
           "<title>Résultats</title>\n<text>Résultats d'examens de biologie médicale</text>\n")
    for act in _groups(rows, (*_ORDER_KEY, "lab_finess")):
        yield _cda_act(act) + "\n"
    yield "</section></component></structuredBody></component>\n</ClinicalDocument>\n"


def cda_documents(df: pl.DataFrame) -> Iterator[str]:
    """One CR-BIO document (as text) per request; corrections (status C) in replacement documents."""
    n = 0
    for msg_rows in _groups(_rows(df), _MESSAGE_KEY):
        for part in _correction_parts(msg_rows):
            correction = part[0]["result_status"] == "C"
            n += 1
            yield "".join(_cda_document(part, f"doc:{n}:{part[0]['request_id']}", correction))


def write_cda(df: pl.DataFrame, path: Path) -> int:
    """Write ``df`` as CR-BIO documents one after the other in one file; returns the count."""
    n = 0
    with Path(path).open("w", encoding="utf-8", newline="\n") as fh:
        for doc in cda_documents(df):
            fh.write(doc)
            n += 1
    return n


# --------------------------------------------------------------------------------------------
# HPRIM Santé 2.x


HPRIM_LINE = 220


def _hprim_lines(record: str) -> list[str]:
    """A record cut into lines of at most 220 characters, continued on ``A|`` lines."""
    if len(record) <= HPRIM_LINE:
        return [record]
    lines = [record[:HPRIM_LINE]]
    rest = record[HPRIM_LINE:]
    step = HPRIM_LINE - 2
    lines.extend("A|" + rest[i : i + step] for i in range(0, len(rest), step))
    return lines


def hprim_records(df: pl.DataFrame) -> Iterator[str]:
    """The records (before line cutting) of an HPRIM Santé file for ``df``."""
    rows = _rows(df)
    lab = _common_lab(rows)
    yield f"H|~^\\&|BIOLAKE.HPR||{lab or 'BIOLAKE'}^BIOLAKE||ORU|||BIOLAKE||P|H2.2^C|{_ts(_sent(rows))}"
    count = 0
    for k, prows in enumerate(_groups(rows, _PATIENT), start=1):
        p = prows[0]
        name = f"{_e(p['family_name'])}^{_e(p['first_name'])}" if p["family_name"] is not None or p["first_name"] is not None else ""
        address = f"^^^^{_e(p['postal_code'])}" if p["postal_code"] is not None else ""
        yield _fields("P", str(k), _cx(p["patient_nir"], p["ins_oid"]), "", "", name, "",
                      _ts(p["birth_date"]), _e(p["sex"]), "", address)
        for j, order in enumerate(_groups(prows, ("request_id", *_ORDER_KEY)), start=1):
            o = order[0]
            yield _fields("OBR", str(j), "", _e(o["request_id"]), "", "", "", _ts(o["collected_at"]),
                          "", "", "", "", "", "", _ts(o["received_at"]), _e(o["specimen"]))
            for i, r in enumerate(order, start=1):
                count += 1
                yield _fields(
                    "OBX", str(i), _e(r["value_type"]), _code_field(r), _e(r.get("observation_sub_id")),
                    _composite(r["value_raw"], r["value_type"]),
                    _e(r["unit_raw"]), _e(r["ref_range"]), _repeating(r["abnormal_flag"]), "", "",
                    _e(r["result_status"]), "", "", _ts(r.get("observed_at")), _e(r["lab_finess"]), "", "", "",
                    _ts(r["validated_at"]),
                )
    yield f"L|1|||{count}"


def write_hprim(df: pl.DataFrame, path: Path, *, line_ending: str = "\r\n", encoding: str = "utf-8") -> int:
    """Write ``df`` as one HPRIM Santé file (lines cut at 220 characters); returns the OBX count."""
    n = 0
    with Path(path).open("w", encoding=encoding, newline="") as fh:
        for record in hprim_records(df):
            n += record.startswith("OBX|")
            for line in _hprim_lines(record):
                fh.write(line + line_ending)
    return n


WRITERS = {"hl7v2": write_hl7v2, "cda": write_cda, "hprim": write_hprim}
