"""A DOS end-of-file mark (Ctrl-Z, 0x1A) after a file's last line is the end of the file, not data,
in every format (QA regr3 F1: HL7 glued it to the last message and refused that message whole)."""

from __future__ import annotations

import shutil

import polars as pl
import pytest

from transforms.parsers.detect import detect_format, get_parser
from transforms.synthetic import MIXED_FORMATS, generate

FORMATS = ("csv", "hl7v2", "hprim", "cda")


@pytest.fixture(scope="module")
def landing(tmp_path_factory):
    home = tmp_path_factory.mktemp("dos_eof")
    generate(home, n_results=400, seed=11, days=1, formats=MIXED_FORMATS)
    return home / "landing"


def _read(path, fmt):
    chunks = list(get_parser(fmt)(path, file_id="f", source="lab"))
    rows = pl.concat([c.rows for c in chunks], how="vertical_relaxed")
    rejects = pl.concat([c.rejects for c in chunks], how="vertical_relaxed")
    return rows, rejects


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("tail", [b"\x1a", b"\x1a\r\n", b"\x1a\x1a"])
def test_a_dos_end_of_file_mark_changes_nothing(landing, tmp_path, fmt, tail):
    original = next(p for p in sorted(landing.rglob("*")) if p.is_file() and not p.stem.endswith("_renvoi")
                    and detect_format(p) == fmt)
    marked = tmp_path / original.name
    shutil.copyfile(original, marked)
    with marked.open("ab") as fh:
        fh.write(tail)
    assert detect_format(marked) == fmt
    rows, rejects = _read(original, fmt)
    rows_marked, rejects_marked = _read(marked, fmt)
    assert rows.height > 0 and rows_marked.equals(rows)
    assert rejects_marked.equals(rejects)
