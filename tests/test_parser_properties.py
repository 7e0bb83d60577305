"""Property tests: any input, valid or mangled, gives rows and rejects, never a crash.

For each parser (HL7 v2, CDA, HPRIM): arbitrary bytes and mutated fixtures either raise
``FileFormatError`` (a whole-file verdict) or parse, quickly, with every unit accounted for --
checked against an independent reading of the input (message starts, OBX records, documents).
Also: the vectorised OBX reader of the HL7 parser agrees with the Python one.
"""

from __future__ import annotations

import re
import atexit
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transforms.parsers import cda, hl7v2, hprim
from transforms.parsers.base import FileFormatError
from transforms.parsers.er7 import HL7_DEFAULT, finess_of_org, first_component, result_columns
from transforms.parsers.resultrows import SEP, finish, raw_frame

FIXTURES = Path(__file__).parent / "fixtures"
SEEDS = {
    "hl7v2": [FIXTURES / "hl7" / "fr_oru_batch.hl7", FIXTURES / "hl7" / "nist" / "ORU_R01_2.5.1_SampleTestCase6.hl7"],
    "cda": [FIXTURES / "cda" / "crbio_sample.xml"],
    "hprim": [FIXTURES / "hprim" / "sample.hpr"],
}
PARSERS = {"hl7v2": hl7v2.parse, "cda": cda.parse, "hprim": hprim.parse}
FAST = settings(
    max_examples=int(__import__("os").environ.get("BIOLAKE_PROP_EXAMPLES", "40")),
    deadline=timedelta(seconds=3),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
WORKDIR = Path(tempfile.mkdtemp(prefix="biolake_props_"))  # hypothesis and function fixtures do not mix
atexit.register(shutil.rmtree, WORKDIR, ignore_errors=True)
# The whole suite's embedded Prefect pings its websocket from another thread with a payload drawn
# from the global ``random``; a ping during a draw makes Hypothesis report "Do not use the random
# module inside strategies" though no strategy here uses it (tests/test_parser_roundtrip.py, same).
pytestmark = pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")


@pytest.fixture(scope="module", autouse=True)
def _warm_up():
    """First calls compile regexes and load polars kernels: keep that out of the deadlines."""
    for fmt, paths in SEEDS.items():
        list(PARSERS[fmt](paths[0], file_id="w", source="w"))


def run(fmt: str, data: bytes, chunk_rows: int = 200_000):
    path = WORKDIR / f"input.{fmt}"
    path.write_bytes(data)
    try:
        chunks = list(PARSERS[fmt](path, file_id="p", source="s", chunk_rows=chunk_rows))
    except FileFormatError as e:
        assert e.reason_code in ("EMPTY_FILE", "UNPARSEABLE_FILE")
        assert str(e).startswith(path.name)
        return None
    rows = pl.concat([c.rows for c in chunks]) if chunks else None
    rejects = pl.concat([c.rejects for c in chunks]) if chunks else None
    return rows, rejects, sum(c.units_seen for c in chunks)


def physical_lines(data: bytes) -> list[bytes]:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


# --------------------------------------------------------------------------------------------
# independent accounting per format


def check_hl7(data: bytes, result) -> None:
    if result is None:
        return
    rows, rejects, units = result
    lines = [ln.strip(b"\x00\x0b\x1c \t\x0c") if ln[:1] and ln[0] <= 32 else ln for ln in physical_lines(data)]
    starts, ends = [], []
    for no, ln in enumerate(lines, start=1):
        head = ln[:3]
        if head == b"MSH":
            if len(ends) < len(starts):
                ends.append(no)
            starts.append(no)
        elif head in (b"FHS", b"BHS", b"BTS", b"FTS") and len(ends) < len(starts):
            ends.append(no)
    if len(ends) < len(starts):
        ends.append(len(lines) + 1)
    seen = sorted(set(rows["line_no"].to_list()) | set(rejects["line_no"].to_list()))
    for a, b in zip(starts, ends):
        assert any(a <= n < b for n in seen), f"message at line {a} produced nothing"
    assert units >= len(starts)
    assert rows["line_no"].is_not_null().all()


def check_cda(data: bytes, result) -> None:
    if result is None:
        return
    rows, rejects, units = result
    new_doc = pl.col("message_id").ne_missing(pl.col("message_id").shift(1)) | (pl.int_range(pl.len()) == 0)
    runs = rows.select(new_doc.sum()).item() if rows.height else 0
    assert rejects.height + runs <= units <= rejects.height + rows.height
    assert units >= 1


def check_hprim(data: bytes, result) -> None:
    if result is None:
        return
    rows, rejects, units = result
    lines = physical_lines(data)
    assert units == len(lines)
    first_h = next(
        (i for i, ln in enumerate(lines, start=1) if ln[:1] == b"H" and len(ln) > 5 and not ln[1:2].isalnum()), None
    )
    assert first_h is not None
    seen = set(rows["line_no"].to_list()) | set(rejects["line_no"].to_list())
    for no, ln in enumerate(lines, start=1):
        if no > first_h and ln.startswith(b"OBX"):
            assert no in seen, f"OBX record at line {no} produced nothing"


CHECKS = {"hl7v2": check_hl7, "cda": check_cda, "hprim": check_hprim}


# --------------------------------------------------------------------------------------------
# arbitrary and mutated input


@pytest.mark.parametrize("fmt", sorted(PARSERS))
@FAST
@given(data=st.binary(max_size=3000))
def test_arbitrary_bytes(fmt, data):
    CHECKS[fmt](data, run(fmt, data))


@st.composite
def mutated(draw, fmt: str) -> bytes:
    seed = bytearray(draw(st.sampled_from(SEEDS[fmt])).read_bytes())
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["delete", "insert", "replace", "truncate", "dup_line", "newline", "swap_sep"]))
        if not seed:
            break
        i = draw(st.integers(0, len(seed) - 1))
        if op == "delete":
            del seed[i : i + draw(st.integers(1, 200))]
        elif op == "insert":
            seed[i:i] = draw(st.binary(min_size=1, max_size=40))
        elif op == "replace":
            seed[i] = draw(st.sampled_from(list(b"|^~\\&\r\n<>\"'\x00\xff\xc3A0")))
        elif op == "truncate":
            del seed[i:]
        elif op == "dup_line":
            j = seed.find(b"\r", i)
            line = seed[i : j + 1] if j >= 0 else seed[i:]
            seed[i:i] = line * draw(st.integers(1, 3))
        elif op == "newline":
            seed[i:i] = draw(st.sampled_from([b"\r", b"\n", b"\r\n", b"\n\n"]))
        else:
            seed[:] = seed.replace(b"\r\n", b"\n") if b"\r\n" in seed else seed.replace(b"\r", b"\r\n")
    return bytes(seed)


@pytest.mark.parametrize("fmt", sorted(PARSERS))
@FAST
@given(data=st.data(), chunk_rows=st.integers(1, 50))
def test_mutated_input(fmt, data, chunk_rows):
    blob = data.draw(mutated(fmt))
    CHECKS[fmt](blob, run(fmt, blob, chunk_rows))


@pytest.mark.parametrize("fmt", sorted(PARSERS))
def test_fixtures_pass_the_accounting(fmt):
    for path in SEEDS[fmt]:
        data = path.read_bytes()
        CHECKS[fmt](data, run(fmt, data))


# --------------------------------------------------------------------------------------------
# the vectorised OBX reader agrees with the Python one


FIELD_TEXT = st.text(alphabet="AZaz09 .,-<>=:/%&^éÉ", max_size=12)
SYSTEMS = st.sampled_from(["LN", "ln", "LOINC", "L", "", "SCT", "2.16.840.1.113883.6.1", " LN"])
VALUE_TYPES = st.sampled_from(["NM", "ST", "SN", "CE", "CWE", "TX", "nm", " NM ", "", "FT", "DT"])


@st.composite
def obx_segment(draw) -> str:
    code = "^".join([draw(FIELD_TEXT), draw(FIELD_TEXT), draw(SYSTEMS), draw(FIELD_TEXT), draw(FIELD_TEXT), draw(SYSTEMS)])
    code = code[: draw(st.integers(0, len(code)))]
    lab = draw(st.sampled_from(["", "750000001", "LABO^^^^^FINESS&1.2.250.1.71.4.2.2&ISO^FINEG^^^130000012",
                                " 2A0000045 ^x", "LABO^^12345^^", "^690000023"]))
    ts = draw(st.sampled_from(["", "20240305", "202403051015^M", "20240305&x", "bad"]))
    fields = ["OBX", "1", draw(VALUE_TYPES), code, draw(st.sampled_from(["", "1", "2", "1.1", "a^b"])),
              draw(FIELD_TEXT) + draw(st.sampled_from(["", "^", "^^"])),
              draw(FIELD_TEXT), draw(FIELD_TEXT), draw(FIELD_TEXT), "", "", draw(FIELD_TEXT), "", "", ts,
              "", "", "", "", ts, "", "", "", lab]
    return "|".join(fields[: draw(st.integers(3, 24))])


@settings(max_examples=150, deadline=None)
@given(segs=st.lists(obx_segment(), min_size=1, max_size=8))
def test_vectorised_obx_matches_python(segs):
    segs = [s for s in segs if "\\" not in s and "~" not in s]
    if not segs:
        return
    ctx = ["MID", "999999999", "REQ", "NIR", "OID", "FAM", "FIRST", "19800101", "F", "75001", "", "", "20240306", "SER"]
    nos = list(range(1, len(segs) + 1))
    vec = hl7v2.obx_frame(nos, segs, [0] * len(segs), [SEP.join(ctx)])
    py_rows = []
    for no, s in zip(nos, segs):
        f = s.split("|")
        f.extend([""] * (24 - len(f)))
        res = result_columns(f, HL7_DEFAULT)
        lab = (finess_of_org(f[23], HL7_DEFAULT) if f[23] else "") or ctx[1]
        o14 = first_component(f[14], HL7_DEFAULT) if f[14] else ""
        o19 = first_component(f[19], HL7_DEFAULT) if f[19] else ""
        py_rows.append((no, ctx[0], lab, ctx[2], *ctx[3:10], ctx[10] or o14, ctx[11], o19 or ctx[12], *res, ctx[13],
                        f[4], o14, ""))
    expected = finish(raw_frame(py_rows), "f", "s")
    got = finish(vec, "f", "s")
    assert got.equals(expected), (segs, got.to_dicts(), expected.to_dicts())


def test_obx_frame_is_used_for_plain_segments():
    """The fast path is not dead code: plain OBX segments of the NIST samples go through it."""
    sink_packed = []
    original = hl7v2.obx_frame

    def spy(nos, segments, ctx_index, contexts):
        sink_packed.extend(segments)
        return original(nos, segments, ctx_index, contexts)

    hl7v2.obx_frame = spy
    try:
        list(hl7v2.parse(SEEDS["hl7v2"][1], file_id="f", source="s"))
    finally:
        hl7v2.obx_frame = original
    assert len(sink_packed) == 3
    assert all(re.match(r"OBX\|", p) for p in sink_packed)


# --------------------------------------------------------------------------------------------
# lone \n detection of the line reader (what the HL7 splitter may keep as data)


@FAST
@given(
    data=st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"A", b"OBX|", b"\xc3\xa9", b"\x0b"]), max_size=80).map(b"".join),
    size=st.integers(1, 17),
)
def test_lone_lf_lines_match_a_direct_count(data, size):
    """Whatever the read block size: every line after a lone \\n that comes after the file's first
    \\r is reported, and only lines after a lone \\n are; line numbers are unchanged."""
    import io

    from transforms.parsers.linereader import iter_blocks

    lone_all, lone_after_cr = set(), set()
    no, i, seen_cr = 1, 0, False
    while i < len(data):
        c = data[i : i + 1]
        if c == b"\r":
            seen_cr = True
            no += 1
            i += 2 if data[i + 1 : i + 2] == b"\n" else 1
            continue
        if c == b"\n":
            no += 1
            lone_all.add(no)
            if seen_cr:
                lone_after_cr.add(no)
        i += 1
    n_lines = len(physical_lines(data))
    lone_all = {n for n in lone_all if n <= n_lines}  # a \n ending the file starts no line
    lone_after_cr = {n for n in lone_after_cr if n <= n_lines}
    blocks = list(iter_blocks(io.BytesIO(data), block_size=size))
    got = set().union(*(b.lone_lf for b in blocks)) if blocks else set()
    assert lone_after_cr <= got <= lone_all
    for b in blocks:
        assert all(b.first_line_no <= n < b.first_line_no + len(b) for n in b.lone_lf)
    assert [ln for b in blocks for ln in b.lines] == physical_lines(data)
