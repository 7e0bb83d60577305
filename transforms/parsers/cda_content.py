"""What a CR-BIO document says: a light element tree built by expat handlers, and the rows.

:class:`Builder` receives expat events for one ``ClinicalDocument``. It keeps the header as a
small tree of :class:`Node` and reads each body ``entry`` as soon as it closes (then drops it),
so that memory holds one entry at a time; :func:`document_rows` turns the header plus the
observations read into rows in the :data:`~transforms.parsers.resultrows.RAW_COLUMNS` layout.
The mapping is described in transforms/parsers/cda.py and docs/formats.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from transforms.parsers.er7 import FINESS_RE, INS_OIDS, TEST_INS_OIDS, test_oid_in
from transforms.parsers.resultrows import type_of_value

HL7_NS = "urn:hl7-org:v3"
LOINC_OID = "2.16.840.1.113883.6.1"
FINESS_OID = "1.2.250.1.71.4.2.2"
SPECIMEN_RECEIVED = "SPRECEIVE"
# coded-value systems shown by their HL7 v2 short names
SYSTEM_NAMES = {LOINC_OID: "LN", "2.16.840.1.113883.6.96": "SCT"}
SYSTEM_OIDS = {v: k for k, v in SYSTEM_NAMES.items()}
STATUS_FROM_CDA = {"completed": "F", "aborted": "X", "cancelled": "X", "nullified": "D", "active": "P"}
STATUS_TO_CDA = {"F": "completed", "C": "completed", "X": "aborted", "D": "nullified", "P": "active"}
CODED_TYPES = {"CD": "CWE", "CV": "CWE", "CO": "CWE", "CS": "CWE", "CE": "CE"}
# value type of a null-flavoured value, from its xsi:type
_NULL_TYPES = {"PQ": "NM", "INT": "NM", "REAL": "NM", "IVL_PQ": "SN", "ED": "TX", "SC": "ST", "BL": "ST", **CODED_TYPES}

# subtrees that never hold results and may be huge (base64 media, narrative blocks)
_SKIPPED = frozenset({"nonXMLBody", "observationMedia", "regionOfInterest"})
_TEXT_TAGS = frozenset({"family", "given", "postalCode", "value", "text", "originalText"})
_DESCEND = frozenset({"entry", "act", "organizer", "observation", "component", "entryRelationship"})
# the narrative elements whose end separates texts: a referred table row reads its cells apart
_NARRATIVE_BREAKS = frozenset({"td", "th", "tr", "paragraph", "item", "br", "caption", "list", "table"})
# characters of a document's narrative blocks kept for the texts a coded value refers to
# (``originalText/reference value="#id"``): the elements carrying an ID, up to this many in all
NARRATIVE_CAP = 1 << 20
# parse issue of a coded value whose only text is a reference to the narrative that is not there
# (quality/schemas.py gives the detail)
TEXT_NOT_FOUND_ISSUE = "VALUE_INVALID:value_raw:text_reference"


# --------------------------------------------------------------------------------------------
# a minimal element tree, built by expat handlers


class Node:
    """An element: local tag name, attributes (local names), children, text when kept, line."""

    __slots__ = ("tag", "attrs", "children", "parts", "line")

    def __init__(self, tag: str, attrs: dict[str, str], line: int):
        self.tag = tag
        self.attrs = attrs
        self.children: list[Node] = []
        self.parts: list[str] | None = None
        self.line = line

    @property
    def text(self) -> str:
        return "".join(self.parts) if self.parts else ""

    def get(self, key: str) -> str:
        return self.attrs.get(key, "")

    def child(self, *path: str) -> Node | None:
        node: Node | None = self
        for tag in path:
            if node is None:
                return None
            node = next((c for c in node.children if c.tag == tag), None)
        return node

    def kids(self, tag: str) -> list[Node]:
        return [c for c in self.children if c.tag == tag]


class RootClosed(Exception):
    pass


def ignore(_data: str) -> None:
    return None


_NAMES_CACHED = 4096  # element and attribute names remembered (a document's vocabulary is small)
_LOCAL: dict[str, str] = {}
_ATTR: dict[str, str] = {}


def _local(name: str) -> str:
    local = _LOCAL.get(name)
    if local is None:
        ns, _, local = name.rpartition(" ")
        local = local if ns in ("", HL7_NS) else name
        if len(_LOCAL) < _NAMES_CACHED:
            _LOCAL[name] = local
    return local


_PLAIN_KEYS: dict[tuple[str, ...], bool] = {}  # attribute name sets without a namespace


def _plain_keys(keys: tuple[str, ...]) -> bool:
    plain = not any(" " in k for k in keys)
    if len(_PLAIN_KEYS) < _NAMES_CACHED:
        _PLAIN_KEYS[keys] = plain
    return plain


def _attr_name(name: str) -> str:
    local = _ATTR.get(name)
    if local is None:
        local = name.rpartition(" ")[2]
        if len(_ATTR) < _NAMES_CACHED:
            _ATTR[name] = local
    return local


@dataclass
class _Observation:
    line: int
    ctx: dict[str, str]
    local_code: str
    local_label: str
    loinc: str
    value_type: str
    value_raw: str
    unit: str
    ref_range: str
    flag: str
    status_code: str
    obs_time: str
    text_ref: str = ""  # a coded value's text by reference ('#res1'), resolved with the narrative


class Builder:
    """expat handlers building the header tree and extracting each ``entry`` as it closes.

    A document that declares a DOCTYPE or entities, or whose root is not a ClinicalDocument, is
    *refused*: nothing more of it is kept, but expat reads on to its end so that the next
    document of the file is found. Internal entities are never expanded (a default handler is
    set, see :class:`_Document`), external ones never fetched.
    """

    def __init__(self, line_of, byte_of):
        self.line_of = line_of  # () -> current absolute line
        self.byte_of = byte_of  # () -> byte index of the current event in the parser's stream
        self.event_byte = 0  # where the root closed (read in the handler: expat moves on after)
        self.stack: list[Node] = []
        self.root: Node | None = None
        self.depth = 0
        self.skip = 0
        self.refused: tuple[str, str] | None = None  # (reason, detail)
        self.observations: list[_Observation] = []
        # the narrative's texts by ID (<content ID="res1">Détecté</content>): what a coded value's
        # originalText may refer to; `open_ids` while inside a narrative block (skipped unbuilt)
        self.narrative: dict[str, str] = {}
        self.open_ids: list[tuple[int, str, list[str]]] | None = None
        self.narrative_chars = 0

    def start(self, name: str, attrs: dict[str, str]) -> None:
        self.depth += 1
        if self.skip or self.refused:
            self.skip += 1
            if self.open_ids is not None and attrs and "ID" in attrs:
                self.open_ids.append((self.skip, attrs["ID"], []))
            return
        tag = _LOCAL.get(name) or _local(name)
        stack = self.stack
        if self.root is None:
            if tag != "ClinicalDocument":
                self.refuse("MALFORMED_MESSAGE", f"root element <{tag.split(' ')[-1]}> is not a CDA ClinicalDocument")
                self.skip = 1
                return
        elif tag in _SKIPPED:
            self.skip = 1
            return
        elif tag == "text" and stack and stack[-1].tag == "section":
            self.skip = 1  # the narrative is not built, only its texts with an ID are kept
            self.open_ids = []
            return
        if attrs:
            keys = tuple(attrs)
            plain = _PLAIN_KEYS.get(keys)
            if plain is None:
                plain = _plain_keys(keys)
            if not plain:  # xsi:type and other namespaced attributes: their local names
                attrs = {(_ATTR.get(k) or _attr_name(k)): v for k, v in attrs.items()}
        node = Node(tag, attrs, self.line_of())  # expat hands each element a dict of its own
        if stack:
            stack[-1].children.append(node)
        else:
            self.root = node
        stack.append(node)

    def end(self, name: str) -> None:
        self.depth -= 1
        if self.skip:
            open_ids = self.open_ids
            if open_ids is not None:
                if open_ids and name.rsplit(" ", 1)[-1] in _NARRATIVE_BREAKS:
                    for _, _, parts in open_ids:  # a table row's cells are words apart (QA regr F7)
                        parts.append(" ")
                if open_ids and open_ids[-1][0] == self.skip:
                    _, ref_id, parts = open_ids.pop()
                    self.narrative.setdefault(ref_id, " ".join("".join(parts).split()))
                if self.skip == 1:
                    self.open_ids = None
            self.skip -= 1
        else:
            node = self.stack.pop()
            if node.tag == "entry" and self.stack:
                _walk(node, {}, self.observations)
                self.stack[-1].children.pop()  # free the entry: only its rows are kept
        if self.depth == 0:
            self.event_byte = self.byte_of()
            raise RootClosed()

    def chars(self, data: str) -> None:
        if self.skip:
            if self.open_ids and self.narrative_chars < NARRATIVE_CAP:
                self.narrative_chars += len(data)
                for _, _, parts in self.open_ids:
                    parts.append(data)
            return
        if not self.stack:
            return
        node = self.stack[-1]
        if node.tag in _TEXT_TAGS:
            if node.parts is None:
                node.parts = [data]
            else:
                node.parts.append(data)

    def refuse(self, reason: str, detail: str) -> None:
        if self.refused is None:
            self.refused = (reason, detail)
            self.observations = []
            self.open_ids = None
            if self.stack:  # drop what was built; keep counting depth to find the end
                self.skip = len(self.stack)
                self.stack = []
                self.root = None

    def refuse_doctype(self, *_args) -> None:
        self.refuse("UNSAFE_XML", "the document declares a DOCTYPE; DTDs and entities are refused")

    def refuse_entity(self, *_args) -> None:
        self.refuse("UNSAFE_XML", "the document declares an entity; entities are refused")


# --------------------------------------------------------------------------------------------
# reading observations and their context


def _ts(node: Node | None, prefer_high: bool = False) -> str:
    """A TS or IVL_TS value: @value, else low/high (high first when ``prefer_high``)."""
    if node is None:
        return ""
    v = node.get("value")
    if v:
        return v
    order = ("high", "low") if prefer_high else ("low", "high")
    for tag in order:
        b = node.child(tag)
        if b is not None and b.get("value"):
            return b.get("value")
    center = node.child("center")
    return center.get("value") if center is not None else ""


def finess_from_ids(ids: list[Node]) -> str:
    """The FINESS among ``id`` elements: root 1.2.250.1.71.4.2.2, extension ``1``/``3`` + FINESS
    (the national structure identifier) or the bare 9-character FINESS."""
    for i in ids:
        if i.get("root") != FINESS_OID:
            continue
        ext = i.get("extension").strip()
        if len(ext) == 10 and ext[0] in "13" and FINESS_RE.fullmatch(ext[1:]):
            return ext[1:]
        if FINESS_RE.fullmatch(ext):
            return ext
    return ""


def _org_finess(container: Node | None, *path: str) -> str:
    org = container.child(*path) if container is not None else None
    return finess_from_ids(org.kids("id")) if org is not None else ""


def _context(node: Node, ctx: dict[str, str]) -> dict[str, str]:
    """``ctx`` updated with what ``node``'s own children say (performer, AUTHEN, specimen...)."""
    new: dict[str, str] | None = None

    def put(key: str, value: str) -> None:
        nonlocal new
        if value:
            if new is None:
                new = dict(ctx)
            new[key] = value

    for c in node.children:
        t = c.tag
        if t == "performer":
            put("lab", _org_finess(c, "assignedEntity", "representedOrganization"))
        elif t == "participant" and c.get("typeCode") == "AUTHEN":
            put("validated", _ts(c.child("time"), prefer_high=True))
        elif t == "specimen":
            code = c.child("specimenRole", "specimenPlayingEntity", "code")
            put("specimen", code.get("code") if code is not None else "")
        elif t == "entryRelationship":
            proc = c.child("procedure")
            if proc is not None:
                put("collected", _ts(proc.child("effectiveTime")))
                for part in proc.kids("participant"):
                    code = part.child("participantRole", "playingEntity", "code")
                    if code is not None and code.get("code"):
                        put("specimen", code.get("code"))
                        break
                for rel in proc.kids("entryRelationship"):
                    act = rel.child("act")
                    code = act.child("code") if act is not None else None
                    if code is not None and code.get("code") == SPECIMEN_RECEIVED:
                        put("received", _ts(act.child("effectiveTime")))
    return new if new is not None else ctx


def _coded(node: Node) -> str:
    """``code^displayName^system`` for a coded value, trailing empty parts dropped. Without a
    displayName the label is the value's ``originalText`` (QA fmt F2: a result word with no code in
    the value set comes as ``<value xsi:type="CD" nullFlavor="OTH"><originalText>Détecté</originalText>``,
    read as ``^Détecté``, as the qualitative normaliser reads an HL7 CWE sent with its text only)."""
    system = node.get("codeSystem")
    system = SYSTEM_NAMES.get(system, system) or node.get("codeSystemName")
    return _joined([node.get("code"), node.get("displayName") or _original_text(node)[0], system])


def _joined(parts: list[str]) -> str:
    while parts and not parts[-1]:
        parts.pop()
    return "^".join(parts)


def _original_text(node: Node) -> tuple[str, str]:
    """(text, reference) of a value's ``originalText``: its own text (blanks around dropped: XML
    indentation), else the ``#id`` its ``reference`` names (resolved in the narrative later)."""
    original = node.child("originalText")
    if original is None:
        return "", ""
    text = original.text.strip()
    if text:
        return text, ""
    ref = original.child("reference")
    return "", (ref.get("value").strip() if ref is not None else "")


def _text_reference(v: Node | None, value_type: str) -> str:
    """The ``#id`` a coded value without displayName refers to for its text, else ''."""
    if v is None or value_type not in ("CWE", "CE") or v.get("displayName"):
        return ""
    return _original_text(v)[1]


def _with_label(raw: str, label: str) -> str:
    """``code^label^system`` with ``label`` put in place of the missing one."""
    parts = raw.split("^") if raw else [""]
    parts += [""] * (2 - len(parts))
    parts[1] = label
    return _joined(parts)


def _referred_text(ref: str, narrative: dict[str, str]) -> str:
    """The narrative text ``#id`` names ('' when the reference is not such a pointer, or is not there)."""
    return narrative.get(ref[1:], "") if ref.startswith("#") else ""


def _bound(node: Node | None) -> tuple[str, str, str]:
    if node is None:
        return "", "", ""
    return node.get("value"), node.get("unit"), node.get("inclusive")


def _value(v: Node | None) -> tuple[str, str, str]:
    """(value_type, value_raw, unit) of an observation ``value``."""
    if v is None:
        return "", "", ""
    xtype = v.get("type").rpartition(":")[2].upper()
    if v.get("nullFlavor") and not v.get("value") and not v.get("code") and not v.children and not v.text:
        return _NULL_TYPES.get(xtype, xtype), "", v.get("unit")
    if xtype in ("PQ", "INT", "REAL", "MO"):
        return "NM", v.get("value"), v.get("unit") if xtype == "PQ" else ""
    if xtype.startswith("IVL"):
        low, low_unit, low_inc = _bound(v.child("low"))
        high, high_unit, high_inc = _bound(v.child("high"))
        center, center_unit, _ = _bound(v.child("center"))
        unit = low_unit or high_unit or center_unit
        if center:
            return "SN", f"^{center}", unit
        if low and high:
            return "SN", f"^{low}^-^{high}", unit
        if high:
            return "SN", ("<" if high_inc == "false" else "<=") + f"^{high}", unit
        if low:
            return "SN", (">" if low_inc == "false" else ">=") + f"^{low}", unit
        return "SN", "", unit
    if xtype.startswith("RTO"):
        num = v.child("numerator")
        den = v.child("denominator")
        n = num.get("value") if num is not None else ""
        d = den.get("value") if den is not None else ""
        return "SN", f"^{n}^:^{d}", ""
    if xtype in CODED_TYPES:
        return CODED_TYPES[xtype], _coded(v), ""
    if xtype == "ED":
        if v.get("representation").upper() == "B64":
            return "ED", "", ""
        return "TX", v.text, ""
    if xtype in ("TS", "BL"):
        return ("TS" if xtype == "TS" else "ST"), v.get("value"), ""
    if xtype in ("ST", "SC"):
        return "ST", v.text, ""
    if v.get("value"):
        if not xtype:  # no xsi:type: a number is NM, a comparator and a number SN (QA: read as ST)
            return type_of_value(v.get("value")) or "ST", v.get("value"), v.get("unit")
        return "ST", v.get("value"), v.get("unit")
    if v.get("code"):
        return "CWE", _coded(v), ""
    return ("ST", v.text, "") if v.text else ("", "", "")


def _ref_range(obs: Node) -> str:
    """observationRange text as written, else its IVL_PQ as ``low-high`` / ``<high`` / ``>low``."""
    rng = obs.child("referenceRange", "observationRange")
    if rng is None:
        return ""
    text = rng.child("text")
    written = text.text if text is not None else ""
    if written.strip():
        return written
    value = rng.child("value")
    low = _bound(value.child("low"))[0] if value is not None else ""
    high = _bound(value.child("high"))[0] if value is not None else ""
    if low and high:
        return f"{low}-{high}"
    if high:
        return f"<{high}"
    if low:
        return f">{low}"
    return written


def _codes(code: Node) -> tuple[str, str, str]:
    """(local_code, local_label, loinc) from an observation ``code`` and its translations."""
    translations = code.kids("translation")
    if not code.get("code") and translations:  # a null-flavoured code with translations
        code, translations = translations[0], translations[1:]
    is_loinc = code.get("codeSystem") == LOINC_OID or code.get("codeSystemName").upper() in ("LN", "LOINC")
    if is_loinc:
        local = next((t for t in translations if t.get("codeSystem") != LOINC_OID and t.get("code")), None)
        if local is not None:
            return local.get("code"), local.get("displayName") or code.get("displayName"), code.get("code")
        return code.get("code"), code.get("displayName"), code.get("code")
    loinc = next((t for t in translations if t.get("codeSystem") == LOINC_OID and t.get("code")), None)
    return code.get("code"), code.get("displayName"), loinc.get("code") if loinc is not None else ""


def _walk(node: Node, ctx: dict[str, str], out: list[_Observation]) -> None:
    tag = node.tag
    if tag in ("act", "organizer", "observation"):
        ctx = _context(node, ctx)
    if tag == "observation" and node.get("moodCode") in ("", "EVN"):
        code = node.child("code")
        if code is not None:
            local_code, local_label, loinc = _codes(code)
            value = node.child("value")
            vt, raw, unit = _value(value)
            status = node.child("statusCode")
            flags = [c.get("code") for c in node.kids("interpretationCode") if c.get("code")]
            out.append(
                _Observation(
                    line=node.line,
                    ctx=ctx,
                    local_code=local_code,
                    local_label=local_label,
                    loinc=loinc,
                    value_type=vt,
                    value_raw=raw,
                    unit=unit,
                    ref_range=_ref_range(node),
                    flag="~".join(flags),
                    status_code=status.get("code") if status is not None else "",
                    obs_time=_ts(node.child("effectiveTime")),
                    text_ref=_text_reference(value, vt),
                )
            )
    for c in node.children:
        if c.tag in _DESCEND:
            _walk(c, ctx, out)


# --------------------------------------------------------------------------------------------
# the document header and the final rows


def _patient(root: Node) -> tuple[str, str, str, str, str, str, str]:
    role = root.child("recordTarget", "patientRole")
    if role is None:
        return ("",) * 7  # type: ignore[return-value]
    ids = role.kids("id")
    chosen = next((i for i in ids if i.get("root") in INS_OIDS), None)
    if chosen is None:
        chosen = next((i for i in ids if i.get("extension")), ids[0] if ids else None)
    nir = chosen.get("extension") if chosen is not None else ""
    oid = chosen.get("root") if chosen is not None else ""
    postal = ""
    for addr in role.kids("addr"):
        pc = addr.child("postalCode")
        if pc is not None and pc.text:
            postal = pc.text
            break
    patient = role.child("patient")
    family = given = birth = sex = ""
    if patient is not None:
        name = patient.child("name")
        if name is not None:
            fams = name.kids("family")
            fam = next((f for f in fams if f.get("qualifier") == "BR"), fams[0] if fams else None)
            givens = name.kids("given")
            giv = next((g for g in givens if g.get("qualifier") == "BR"), givens[0] if givens else None)
            family = fam.text if fam is not None else ""
            given = giv.text if giv is not None else ""
        g = patient.child("administrativeGenderCode")
        # as sent: read into F, M or unknown in resultrows.finish (transforms/parsers/sex.py)
        sex = g.get("code") if g is not None else ""
        b = patient.child("birthTime")
        birth = b.get("value") if b is not None else ""
    return nir, oid, family, given, birth, sex, postal


def patient_test_oid(root: Node, ins_oid: str) -> str:
    """The test INS OID (.10/.11) of the document's patient: ``ins_oid`` when it is one, else one
    written anywhere in ``recordTarget`` (an attribute or a text: another id than the one read as
    the INS, an unexpected attribute), else ''."""
    if ins_oid in TEST_INS_OIDS:
        return ins_oid
    stack = root.kids("recordTarget")
    while stack:
        node = stack.pop()
        for value in node.attrs.values():
            found = test_oid_in(value)
            if found:
                return found
        if node.parts:
            found = test_oid_in(node.text)
            if found:
                return found
        stack.extend(node.children)
    return ""


def document_id(root: Node) -> str:
    i = root.child("id")
    if i is None:
        return ""
    return "^".join(p for p in (i.get("root"), i.get("extension")) if p)


def _header_context(root: Node) -> dict[str, str]:
    ctx: dict[str, str] = {}
    ctx["lab"] = (
        _org_finess(root, "author", "assignedAuthor", "representedOrganization")
        or _org_finess(root, "custodian", "assignedCustodian", "representedCustodianOrganization")
        or _org_finess(root, "legalAuthenticator", "assignedEntity", "representedOrganization")
    )
    ctx["validated"] = _ts(root.child("legalAuthenticator", "time"), prefer_high=True)
    prf = next((p for p in root.kids("participant") if p.get("typeCode") == "PRF"), None)
    ctx["collected"] = _ts(prf.child("time"), prefer_high=True) if prf is not None else ""
    order = root.child("inFulfillmentOf", "order", "id")
    ctx["request"] = (order.get("extension") or order.get("root")) if order is not None else ""
    version = root.child("versionNumber")
    replaces = any(r.get("typeCode") == "RPLC" for r in root.kids("relatedDocument"))
    try:
        replaces = replaces or int(version.get("value") or "1") > 1 if version is not None else replaces
    except ValueError:
        pass
    ctx["replacement"] = "1" if replaces else ""
    return ctx


def document_rows(root: Node, observations: list[_Observation], doc_id: str,
                  narrative: dict[str, str] | None = None) -> tuple[list[tuple], str]:
    """The rows of a document's observations; ``narrative`` holds the texts by ID its values may
    refer to (a coded value whose reference is not there gets :data:`TEXT_NOT_FOUND_ISSUE`)."""
    patient = _patient(root)
    head = _header_context(root)
    replacement = bool(head["replacement"])
    rows = []
    for o in observations:
        c = o.ctx
        status = STATUS_FROM_CDA.get(o.status_code, o.status_code)
        if status == "F" and replacement:
            status = "C"
        raw, issue = o.value_raw, None
        if o.text_ref:
            text = _referred_text(o.text_ref, narrative or {})
            if text:
                raw = _with_label(raw, text)
            else:
                issue = TEXT_NOT_FOUND_ISSUE
        rows.append(
            (
                o.line,
                doc_id,
                c.get("lab") or head["lab"],
                head["request"],
                *patient,
                c.get("collected") or o.obs_time or head["collected"],
                c.get("received", ""),
                c.get("validated") or head["validated"],
                o.local_code,
                o.local_label,
                o.loinc,
                o.value_type,
                raw,
                o.unit,
                o.ref_range,
                o.flag,
                status,
                c.get("specimen", ""),
                "",  # no sub-ID in CDA: an observation is told apart by its own time (observed_at)
                o.obs_time,
                issue,
            )
        )
    return rows, patient[1]
