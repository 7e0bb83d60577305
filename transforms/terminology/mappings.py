"""Lab mapping tables: (lab, local code [, specimen, unit], validity) -> LOINC.

Layout: a mapping directory holds one file per lab, named after the lab's landing folder
(``<source>.csv`` or ``<source>.yaml``). ``load_mappings`` reads several directories in order
(the shipped seeds first, then the operator's directory of approved mappings): for a given key
(source, local_code, specimen, unit) the rows of the *last* directory that has that key replace
all earlier rows for it, so an operator can fix a mapping, or its whole history, without touching
the seeds.

Validity bounds are both inclusive days: a row applies from ``valid_from`` (empty = since always)
to ``valid_to`` (its last day; empty = still valid), judged on the specimen's collection date.
Remapping a code from a date D is two rows: the old one with ``valid_to = D - 1 day`` and the new
one with ``valid_from = D``. Writing ``valid_to = D`` on the old row makes both rows claim day D:
that is refused as a conflict, never resolved silently.

Every problem found while loading raises ``MappingError`` whose message names file and line.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Sequence
from pathlib import Path

import polars as pl
import yaml

from transforms.identity_text import MASK
from transforms.terminology.loinc import loinc_check_ok
from transforms.terminology.units import UnitTables, unit_match_key

MAPPING_FIELDS = ("local_code", "local_label", "unit", "specimen", "loinc_num", "valid_from", "valid_to")
REQUIRED_FIELDS = ("local_code", "loinc_num")
KEY = ("source", "local_code", "specimen_key", "unit_key")

MAPPING_SCHEMA = pl.Schema(
    {
        "source": pl.Utf8(),
        "local_code": pl.Utf8(),
        "local_label": pl.Utf8(),
        "unit": pl.Utf8(),
        "specimen": pl.Utf8(),
        "loinc_num": pl.Utf8(),
        "valid_from": pl.Date(),
        "valid_to": pl.Date(),
        "origin": pl.Utf8(),  # "<file>:<line>" the row was read from
    }
)


class MappingError(ValueError):
    """Mapping files are invalid. ``issues`` lists (origin, message); str() names file:line."""

    def __init__(self, issues: list[tuple[str, str]]):
        self.issues = issues
        lines = [f"{origin}: {msg}" for origin, msg in issues[:50]]
        if len(issues) > 50:
            lines.append(f"... and {len(issues) - 50} more")
        super().__init__(f"{len(issues)} mapping problem(s):\n" + "\n".join(lines))


# --- keys shared with transcode ----------------------------------------------------------------
def specimen_key_expr(col: str) -> pl.Expr:
    """Specimen compared without case, accents or surrounding spaces ('Sérum ' == 'serum')."""
    return (
        pl.col(col)
        .str.normalize("NFKD")
        .str.replace_all(r"\p{M}", "")
        .str.to_lowercase()
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
        .replace("", None)
    )


# --- reading files ------------------------------------------------------------------------------
def parse_date(value: object, field: str, origin: str, issues: list) -> dt.date | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value).strip()
    for fmt in ("%Y-%m-%d", "%d/%m/%Y", "%Y%m%d"):
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            pass
    issues.append((origin, f"{field} {text!r} is not a date (YYYY-MM-DD or DD/MM/YYYY)"))
    return None


def _clean(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


class OperatorFileError(ValueError):
    """An operator's file that cannot be read as text: ``origin`` (file:line) and ``problem``."""

    def __init__(self, origin: str, problem: str):
        self.origin, self.problem = origin, problem
        super().__init__(f"{origin}: {problem}")


def operator_text(path: Path) -> str:
    """A file an operator edited, as text: UTF-8 (with or without BOM), else Windows-1252, as French
    Excel saves a 'CSV (séparateur : point-virgule)'. Raises ``OperatorFileError`` naming the file
    and line for a binary file or bytes neither encoding reads."""
    data = Path(path).read_bytes()
    if b"\x00" in data:
        raise OperatorFileError(f"{path}:1", "not a text CSV file (it holds NUL bytes)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise OperatorFileError(f"{path}:{line}",
                                "neither UTF-8 nor Windows-1252 text: save it as CSV UTF-8") from None


def operator_csv(path: Path) -> csv.DictReader:
    """A CSV file an operator edited (``operator_text``), read with the separator its first line
    uses (Excel in French saves with ';'), its column names stripped. Raises ``OperatorFileError``."""
    text = operator_text(path)
    first = text.split("\n", 1)[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    reader.fieldnames = [h.strip() for h in (reader.fieldnames or [])]
    return reader


def _read_csv(path: Path, issues: list) -> list[tuple[int, dict]]:
    try:
        reader = operator_csv(path)
    except OperatorFileError as err:
        issues.append((err.origin, err.problem))
        return []
    header = reader.fieldnames
    missing = [f for f in REQUIRED_FIELDS if f not in header]
    if missing:
        issues.append((f"{path}:1", f"header lacks required column(s) {missing}"))
        return []
    rows = []
    start = 2
    for rec in reader:
        if any(_clean(v) for k, v in rec.items() if k is not None):
            rows.append((start, rec))
        start = reader.line_num + 1
    return rows


def _read_yaml(path: Path, issues: list) -> tuple[str | None, list[tuple[int, dict]]]:
    """A YAML mapping file is a list of rows, or ``{source: ..., mappings: [rows]}``."""
    # BaseLoader keeps every scalar a string: local code 0123 stays "0123", not an octal int.
    loader = yaml.BaseLoader(path.read_text(encoding="utf-8"))
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        issues.append((f"{path}:{line}", f"not valid YAML: {getattr(exc, 'problem', exc)}"))
        return None, []
    finally:
        loader.dispose()
    source = None
    items_node = node
    if isinstance(data, dict):
        source = _clean(data.get("source"))
        for k, v in node.value:
            if k.value == "mappings":
                items_node = v
        data = data.get("mappings")
    if data is None:
        return source, []
    if not isinstance(data, list):
        issues.append((f"{path}:1", "expected a list of mapping rows (or 'mappings:' holding one)"))
        return source, []
    rows = []
    for item, item_node in zip(data, items_node.value, strict=True):
        line = item_node.start_mark.line + 1
        if not isinstance(item, dict):
            issues.append((f"{path}:{line}", "a mapping row must be a key: value block"))
            continue
        rows.append((line, item))
    return source, rows


def read_mapping_dir(directory: Path, layer: int, issues: list) -> list[dict]:
    """Raw rows of every mapping file of ``directory`` (problems appended to ``issues``)."""
    return _read_dir(directory, layer, issues)


def _read_dir(directory: Path, layer: int, issues: list) -> list[dict]:
    out: list[dict] = []
    if not directory.is_dir():
        return out
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in (".csv", ".yaml", ".yml"))
    for path in files:
        if path.suffix.lower() == ".csv":
            source, rows = path.stem, _read_csv(path, issues)
        else:
            declared, rows = _read_yaml(path, issues)
            source = declared or path.stem
            if declared and declared != path.stem:
                issues.append((f"{path}:1", f"declares source {declared!r} but the file is named {path.stem!r}"))
        for line, rec in rows:
            origin = f"{path}:{line}"
            unknown = sorted(set(k for k in rec if k) - set(MAPPING_FIELDS))
            if unknown:
                issues.append((origin, f"unknown field(s) {unknown}"))
            row = {f: _clean(rec.get(f)) for f in ("local_code", "local_label", "unit", "specimen", "loinc_num")}
            for f in REQUIRED_FIELDS:
                if row[f] is None:
                    issues.append((origin, f"missing required field {f}"))
            masked_code_issue(row["local_code"], origin, issues)
            row["valid_from"] = parse_date(rec.get("valid_from"), "valid_from", origin, issues)
            row["valid_to"] = parse_date(rec.get("valid_to"), "valid_to", origin, issues)
            row.update(source=source, origin=origin, layer=layer)
            out.append(row)
    return out


# --- validation ---------------------------------------------------------------------------------
def masked_code_issue(code: str | None, origin: str, issues: list) -> None:
    """A code masked in staging (an identity typed as the test code) is no code: one mapping of it
    would code every such result of the lab, whatever its test (QA regr2 F2)."""
    if code is not None and MASK in code:
        issues.append((origin, f"local_code {code!r} is an identity masked in staging, not a code: it cannot "
                               "be mapped (ask the lab to send the test's code)"))



def check_rows(rows: pl.DataFrame, known_loinc: set[str] | None, issues: list) -> None:
    """Check digit, LOINC known (skipped when ``known_loinc`` is None), date order."""
    for origin, code, vf, vt in rows.select("origin", "loinc_num", "valid_from", "valid_to").iter_rows():
        if code is not None:
            if not loinc_check_ok(code):
                issues.append((origin, f"LOINC {code!r} is malformed or has a bad check digit"))
            elif known_loinc is not None and code not in known_loinc:
                issues.append((origin, f"unknown LOINC {code!r} (not in the LOINC table)"))
        if vf is not None and vt is not None and vt < vf:
            issues.append((origin, f"valid_to {vt} is before valid_from {vf}"))


def _same_unit_hint(unit: str | None, other: str | None, key: str | None) -> str:
    """' (unit 'g/l' and 'g/L' are one unit, g/L)' when two rows of one key spell the unit
    differently: why rows that look different collide."""
    if unit is None or other is None or unit == other:
        return ""
    known = f", {key}" if key and not key.startswith("?") else ""
    return f" (units {unit!r} and {other!r} are one unit{known})"


def check_overlaps(rows: pl.DataFrame, issues: list) -> None:
    """Within one directory: exact duplicates, and rows of one key whose validity overlaps."""
    lo, hi = dt.date.min, dt.date.max
    full = ["layer", *KEY, "loinc_num", "valid_from", "valid_to"]
    seen: dict[tuple, tuple[str, str | None]] = {}
    unit_of = "unit" in rows.columns
    for rec in rows.select(*full, "origin", *(["unit"] if unit_of else [])).iter_rows(named=True):
        k = tuple(rec[c] for c in full)
        if k in seen:
            issues.append((rec["origin"], f"duplicate of {seen[k][0]}"
                           + _same_unit_hint(rec.get("unit"), seen[k][1], rec["unit_key"])))
        else:
            seen[k] = (rec["origin"], rec.get("unit"))
    uniq = rows.unique(subset=full, keep="first", maintain_order=True)
    multi = uniq.filter(pl.len().over("layer", *KEY) > 1).sort("layer", *KEY, "valid_from", nulls_last=False)
    groups: dict[tuple, list[dict]] = {}
    for rec in multi.iter_rows(named=True):
        groups.setdefault(tuple(rec[c] for c in ("layer", *KEY)), []).append(rec)
    for recs in groups.values():
        for i, a in enumerate(recs):
            for b in recs[i + 1 :]:
                if (a["valid_from"] or lo) <= (b["valid_to"] or hi) and (b["valid_from"] or lo) <= (a["valid_to"] or hi):
                    what = "conflicting (different LOINC" if a["loinc_num"] != b["loinc_num"] else "overlapping (same LOINC"
                    issues.append(
                        (b["origin"], f"{what}, overlapping validity) with {a['origin']}: "
                         f"{a['loinc_num']} vs {b['loinc_num']} for local_code {b['local_code']!r}"
                         + _same_unit_hint(b.get("unit"), a.get("unit"), b["unit_key"]))
                    )


def load_mappings(
    dirs: Sequence[Path], loinc: pl.DataFrame, units: UnitTables | None = None
) -> pl.DataFrame:
    """Load every ``<source>.csv|.yaml`` of ``dirs`` (later directories override earlier ones for
    the same source/local_code/specimen/unit), validate against ``loinc`` and return
    ``MAPPING_SCHEMA`` rows sorted by source, local_code, valid_from. Raises ``MappingError``.

    Units are compared through their UCUM code (``units`` alias tables; default: the shipped
    seeds/terminology), specimens without case or accents."""
    issues: list[tuple[str, str]] = []
    raw: list[dict] = []
    for layer, directory in enumerate(dirs):
        raw.extend(_read_dir(Path(directory), layer, issues))
    schema = {**MAPPING_SCHEMA, "layer": pl.Int32()}
    rows = pl.DataFrame(raw, schema=schema) if raw else pl.DataFrame(schema=schema)
    rows = rows.with_columns(specimen_key=specimen_key_expr("specimen"), unit_key=unit_match_key(rows["unit"], units))
    check_rows(rows, set(loinc["loinc_num"].to_list()), issues)
    check_overlaps(rows.filter(pl.col("local_code").is_not_null()), issues)
    if issues:
        raise MappingError(issues)
    top = pl.col("layer") == pl.col("layer").max().over(*KEY)
    out = rows.filter(top).sort("source", "local_code", "specimen_key", "unit_key", "valid_from", nulls_last=False)
    return out.select(list(MAPPING_SCHEMA))


def write_mappings_csv(rows: pl.DataFrame, path: Path) -> None:
    """Write mapping rows (``MAPPING_SCHEMA`` columns, origin dropped) as one lab's CSV file."""
    out = rows.select(
        [pl.col(c).cast(pl.Utf8) if c in ("valid_from", "valid_to") else pl.col(c) for c in MAPPING_FIELDS]
    )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    out.write_csv(path)
