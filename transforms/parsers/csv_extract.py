"""The CSV extract labs export from their SGL (format documented in docs/formats.md).

``;``-separated, header row with French column names (any order, case-insensitive), UTF-8 or
Latin-1, decimal comma, dates as DD/MM/YYYY[ HH:MM[:SS]] or YYYYMMDD[HHMM[SS]].

The file is read in blocks of whole lines; each block is split into fields with vectorised polars
string operations. A line whose field count is wrong, or that repeats an earlier line of the same
file exactly, is rejected with its line number; every other line becomes one canonical row, with
unreadable values recorded in ``parse_issues`` for the validator.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from transforms.canonical import conform
from transforms.parsers.base import REJECT_SCHEMA, Chunk, FileFormatError

HEADER_TO_CANONICAL: dict[str, str] = {
    "FINESS": "lab_finess",
    "N_DEMANDE": "request_id",
    "NIR": "patient_nir",
    "NOM": "family_name",
    "PRENOM": "first_name",
    "DATE_NAISSANCE": "birth_date",
    "SEXE": "sex",
    "CODE_POSTAL": "postal_code",
    "DATE_PRELEVEMENT": "collected_at",
    "DATE_RECEPTION": "received_at",
    "DATE_VALIDATION": "validated_at",
    "CODE_ANALYSE": "local_code",
    "LIBELLE_ANALYSE": "local_label",
    "RESULTAT": "value_raw",
    "UNITE": "unit_raw",
    "VALEURS_REFERENCE": "ref_range",
    "STATUT": "result_status",
}
REQUIRED = ("N_DEMANDE", "DATE_PRELEVEMENT", "CODE_ANALYSE", "RESULTAT")
BLOCK_BYTES = 32 * 1024 * 1024
MAX_LINE_BYTES = 1 << 20  # a result line is a few hundred bytes; a longer one is rejected

DATE_FORMATS = ("%d/%m/%Y", "%Y%m%d", "%Y-%m-%d")
DATETIME_FORMATS = ("%d/%m/%Y %H:%M", "%d/%m/%Y %H:%M:%S", "%Y%m%d%H%M", "%Y%m%d%H%M%S", "%Y-%m-%dT%H:%M:%S",
                    "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M")
SEX_CODES = {"F": "F", "M": "M", "H": "M", "1": "M", "2": "F"}


def _cut(data: bytes, n: int) -> bytes:
    """The first ``n`` bytes of ``data``, or up to 3 fewer so as not to split a UTF-8 sequence."""
    for _ in range(3):
        if n < len(data) and (data[n] & 0xC0) == 0x80:
            n -= 1
    return data[:n]


def _blocks(path: Path, block_bytes: int, max_line: int = MAX_LINE_BYTES) -> Iterator[bytes]:
    """Yield blocks of whole lines (the last may lack a final newline).

    A line longer than ``max_line`` bytes is cut to a few bytes more than ``max_line`` and the rest
    of it is read and dropped, so memory stays bounded by ``block_bytes + max_line`` whatever the
    input (a 200 MB line without newline); ``_chunk`` rejects such a line as MALFORMED_LINE.
    """
    with path.open("rb") as fh:
        rest = b""
        skipping = False  # inside an overlong line whose head is kept in ``rest``
        while True:
            data = fh.read(block_bytes)
            if not data:
                if rest:
                    yield rest
                return
            if skipping:
                cut = data.find(b"\n")
                if cut < 0:
                    continue
                data = data[cut:]
                skipping = False
            data = rest + data
            cut = data.rfind(b"\n")
            rest = data if cut < 0 else data[cut + 1:]
            if cut >= 0:
                yield data[: cut + 1]
            if len(rest) > max_line:
                rest, skipping = _cut(rest, max_line + 4), True


def _decode(block: bytes, state: dict) -> str:
    """UTF-8 unless the file proves otherwise, then Latin-1 (cp1252) for the rest of it."""
    if state.get("encoding") != "cp1252":
        try:
            return block.decode("utf-8")
        except UnicodeDecodeError:
            state["encoding"] = "cp1252"
    return block.decode("cp1252", errors="replace")


def _date_tries(col: str, formats: tuple[str, ...], dtype) -> list[pl.Expr]:
    """One parse per accepted format, in order of preference (the first that reads a value wins)."""
    c = pl.col(col)
    if dtype == pl.Date:
        return [c.str.to_date(f, strict=False, exact=True) for f in formats]
    tries = [c.str.to_datetime(f, strict=False, exact=True, time_unit="us") for f in formats]
    return tries + [c.str.to_date(f, strict=False, exact=True).cast(pl.Datetime("us")) for f in DATE_FORMATS]


def _parse_date_column(f: pl.DataFrame, col: str, formats: tuple[str, ...], dtype) -> pl.Series:
    """``pl.coalesce`` of the tries (the first format that reads a value wins), but each later format
    only runs on the values the earlier ones could not read: a file keeps one date style, so usually
    one parse runs instead of ten."""
    tries = _date_tries(col, formats, dtype)
    source = f.select(col)
    out = source.select(tries[0]).to_series()
    present = source.to_series().is_not_null()
    for expr in tries[1:]:
        todo = out.is_null() & present
        if not todo.any():
            break
        idx = todo.arg_true()
        out = out.scatter(idx, source[idx].select(expr).to_series())
    return out


def _fields_frame(lines: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    n = len(columns)
    parts = pl.col("raw").str.split_exact(";", n - 1).struct.rename_fields(columns)
    return lines.select("line_no", parts.alias("f")).unnest("f")


def _quoted_rows(lines: pl.DataFrame, columns: list[str]) -> tuple[pl.DataFrame, list[int]]:
    """Lines with quotes go through the csv module (slow path, rare); returns rows and bad line numbers."""
    rows, bad = [], []
    for line_no, raw in lines.iter_rows():
        try:
            fields = next(csv.reader(io.StringIO(raw), delimiter=";", quotechar='"', strict=True))
        except (csv.Error, StopIteration):
            bad.append(line_no)
            continue
        if len(fields) != len(columns):
            bad.append(line_no)
            continue
        rows.append([line_no, *fields])
    df = pl.DataFrame(rows, schema={"line_no": pl.Int64, **{c: pl.Utf8 for c in columns}}, orient="row")
    return df, bad


def _to_canonical(f: pl.DataFrame, file_id: str, source: str) -> pl.DataFrame:
    # empty strings are missing values
    f = f.with_columns(pl.col(pl.Utf8).str.strip_chars().replace("", None))
    has = set(f.columns)

    def col(name: str) -> pl.Expr:
        return pl.col(name) if name in has else pl.lit(None, dtype=pl.Utf8)

    issues: list[pl.Expr] = []
    typed: list[pl.Expr] = []
    for name, fmts, dtype in (
        ("birth_date", DATE_FORMATS, pl.Date),
        ("collected_at", DATETIME_FORMATS, pl.Datetime),
        ("received_at", DATETIME_FORMATS, pl.Datetime),
        ("validated_at", DATETIME_FORMATS, pl.Datetime),
    ):
        if name in has:
            parsed = pl.lit(_parse_date_column(f, name, fmts, dtype))
            typed.append(parsed.alias(name))
            issues.append(pl.when(col(name).is_not_null() & parsed.is_null()).then(pl.lit(f"DATE_INVALID:{name}")))
    sex_raw = col("sex").str.to_uppercase()
    sex = sex_raw.replace_strict(SEX_CODES, default=None)
    issues.append(pl.when(sex_raw.is_not_null() & sex.is_null()).then(pl.lit("SEX_INVALID:sex")))
    value_num = col("value_raw").str.replace_all(r"\s", "").str.replace(",", ".", literal=True)
    value_num = pl.when(value_num.str.contains(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")).then(
        value_num.cast(pl.Float64, strict=False))
    status = col("result_status").str.to_uppercase().fill_null("F")
    out = f.with_columns(
        *typed,
        sex.alias("sex"),
        col("patient_nir").str.to_uppercase().str.replace_all(" ", "", literal=True).alias("patient_nir"),
        value_num.alias("value_num"),
        pl.when(value_num.is_not_null()).then(pl.lit("NM")).otherwise(pl.lit("ST")).alias("value_type"),
        status.alias("result_status"),
        pl.concat_str(issues, separator=";", ignore_nulls=True).replace("", None).alias("parse_issues")
        if issues else pl.lit(None, dtype=pl.Utf8).alias("parse_issues"),
        pl.lit(file_id).alias("file_id"),
        pl.lit(source).alias("source"),
    )
    return conform(out)


def parse(path: Path, *, file_id: str, source: str, chunk_rows: int = 500_000,
          block_bytes: int = BLOCK_BYTES) -> Iterator[Chunk]:
    path = Path(path)
    state: dict = {}
    seen_hashes = pl.Series("h", [], dtype=pl.UInt64)
    columns: list[str] | None = None
    next_line = 1
    for block in _blocks(path, block_bytes):
        # split into lines with polars (a Python list of lines turned into a Series costs 3x more)
        lines = pl.Series("raw", [_decode(block, state)], dtype=pl.Utf8).str.split("\n").explode()
        if lines.len() and lines[-1] == "":
            lines = lines.slice(0, lines.len() - 1)
        first_line_no = next_line
        next_line += lines.len()
        frame = pl.DataFrame(
            {"line_no": pl.int_range(first_line_no, first_line_no + lines.len(), dtype=pl.Int64, eager=True),
             "raw": lines}
        ).with_columns(pl.col("raw").str.strip_suffix("\r"))
        if columns is None:
            header = frame["raw"][0].lstrip("\ufeff") if frame.height else ""
            names = [h.strip().upper() for h in header.split(";")]
            missing = [r for r in REQUIRED if r not in names]
            if missing:
                raise FileFormatError("HEADER_INVALID", f"{path.name}: line 1: header lacks {', '.join(missing)}")
            unknown = [h for h in names if h not in HEADER_TO_CANONICAL]
            if unknown:
                raise FileFormatError("HEADER_INVALID", f"{path.name}: line 1: unknown columns {', '.join(unknown)[:200]}")
            columns = [HEADER_TO_CANONICAL[h] for h in names]
            frame = frame.slice(1)
        # blank lines carry nothing; they are not results and are not counted
        frame = frame.filter(pl.col("raw").str.strip_chars() != "")
        for start in range(0, frame.height, chunk_rows):
            part = frame.slice(start, chunk_rows)
            yield _chunk(part, columns, seen_hashes, file_id, source)
            seen_hashes = pl.concat([seen_hashes, part["raw"].hash(seed=0)])
    if columns is None:
        raise FileFormatError("EMPTY_FILE", f"{path.name}: the file is empty")


def _chunk(part: pl.DataFrame, columns: list[str], seen: pl.Series, file_id: str, source: str) -> Chunk:
    n = len(columns)
    part = part.with_columns(h=pl.col("raw").hash(seed=0))
    dup = ~pl.col("h").is_first_distinct() | pl.col("h").is_in(seen.implode())
    part = part.with_columns(dup=dup, nf=pl.col("raw").str.count_matches(";", literal=True) + 1,
                             quoted=pl.col("raw").str.contains('"', literal=True),
                             too_long=pl.col("raw").str.len_bytes() > MAX_LINE_BYTES)
    too_long = part.filter("too_long")
    kept = part.filter(~pl.col("too_long"))
    dups = kept.filter("dup")
    rest = kept.filter(~pl.col("dup"))
    plain = rest.filter(~pl.col("quoted") & (pl.col("nf") == n))
    bad_plain = rest.filter(~pl.col("quoted") & (pl.col("nf") != n))
    quoted_rows, bad_quoted = _quoted_rows(rest.filter("quoted").select("line_no", "raw"), columns)
    fields = _fields_frame(plain.select("line_no", "raw"), columns)
    if quoted_rows.height:
        fields = pl.concat([fields, quoted_rows]).sort("line_no")
    rows = _to_canonical(fields, file_id, source)

    rej_frames = []
    if bad_plain.height or bad_quoted:
        bad = pl.concat([bad_plain.select("line_no", "raw", "nf"),
                         rest.filter(pl.col("line_no").is_in(bad_quoted)).select("line_no", "raw", "nf")])
        rej_frames.append(bad.select(
            pl.lit(file_id).alias("file_id"), "line_no", pl.lit("MALFORMED_LINE").alias("reason_code"),
            pl.lit(None, dtype=pl.Utf8).alias("column"),
            pl.format("{} fields, expected {}", pl.col("nf"), pl.lit(n)).alias("detail"),
            pl.col("raw").alias("raw_text"),
        ))
    if too_long.height:
        rej_frames.append(too_long.select(
            pl.lit(file_id).alias("file_id"), "line_no", pl.lit("MALFORMED_LINE").alias("reason_code"),
            pl.lit(None, dtype=pl.Utf8).alias("column"),
            pl.lit(f"line longer than {MAX_LINE_BYTES} bytes").alias("detail"),
            pl.col("raw").str.slice(0, MAX_LINE_BYTES).alias("raw_text"),
        ))
    if dups.height:
        rej_frames.append(dups.select(
            pl.lit(file_id).alias("file_id"), "line_no", pl.lit("DUPLICATE_ROW").alias("reason_code"),
            pl.lit(None, dtype=pl.Utf8).alias("column"),
            pl.lit("identical to an earlier line of this file").alias("detail"), pl.col("raw").alias("raw_text"),
        ))
    rejects = pl.concat(rej_frames).cast(REJECT_SCHEMA).sort("line_no") if rej_frames else pl.DataFrame(schema=REJECT_SCHEMA)
    return Chunk(rows=rows, rejects=rejects, units_seen=part.height)
