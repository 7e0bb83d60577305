"""The mapping work queue: unmapped codes -> a CSV a data engineer edits -> approved mappings.

Workflow (CLI: ``biolake mappings export --out FILE`` then ``biolake mappings import FILE``):

1. ``unmapped_backlog(transcoded)`` -> ``merge_unit_spellings`` (one item per unit once normalised)
   -> ``suggest(items, loinc, rejected=load_rejections(directory))`` -> ``export_workqueue(..., path)``
   writes one row per suggestion with an empty ``decision`` column.
2. The engineer writes ``approve`` on the right suggestion of each local code (or ``reject``, or
   leaves it empty = undecided). They may correct ``loinc_num`` (any LOINC of the table), fill
   ``specimen``/``unit`` to restrict the mapping, and ``valid_from``/``valid_to``.
3. ``read_workqueue(path, loinc)`` returns the approved rows as mapping rows, validated like
   mapping files (check digit, known LOINC, conflicts) and checked for units the run could not
   use, with errors naming file and line, plus the rejected suggestions and warnings
   (``import_workqueue``: the approved rows only).
4. ``write_approved_mappings(rows, directory)`` merges them into ``<directory>/<source>.csv``
   (the operator's approved-mappings directory, read after the seeds by ``load_mappings``): an
   approved row replaces the rows already there for the same source/local_code/specimen/unit.
5. ``remember_rejections(rejected, directory)`` keeps the rejected suggestions in
   ``<directory>/rejected/<source>.csv``; later exports never propose them again.
"""

from __future__ import annotations

import csv
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from transforms.safe_text import neutralise_formulas

from transforms.terminology.mappings import (
    OperatorFileError,
    operator_csv,
    MAPPING_FIELDS,
    MAPPING_SCHEMA,
    MappingError,
    check_overlaps,
    masked_code_issue,
    check_rows,
    parse_date,
    read_mapping_dir,
    specimen_key_expr,
)
from transforms.terminology.transcode import coverage  # noqa: F401  (re-exported for the CLI)
from transforms.terminology.units import (
    INCOMPATIBLE,
    NO_MOLAR_MASS,
    UnitTables,
    _arbitrary_atoms,
    conversion_factor,
    default_unit_tables,
    loinc_unit_table,
    to_ucum,
    unit_fits_property,
    unit_match_key,
)

WORKQUEUE_COLUMNS = (
    "decision", "source", "local_code", "local_label", "unit", "specimen", "loinc_num", "display",
    "rank", "score", "confidence", "reasons", "n_results", "first_seen", "last_seen", "notes",
    "valid_from", "valid_to",
)
APPROVE = {"approve", "approved", "approuve", "approuver", "ok", "oui", "yes", "x"}
REJECT = {"reject", "rejected", "rejete", "rejeter", "non", "no"}


def export_workqueue(backlog_with_suggestions: pl.DataFrame, path: Path) -> Path:
    """Write the suggestions (output of ``suggest``) as the editable CSV ``WORKQUEUE_COLUMNS``.

    ``unit`` is the unit as the lab writes it; ``specimen`` is filled only when the backlog saw a
    single specimen (it then restricts the mapping to that specimen); both stay editable. ``notes``
    says what concerns the local code rather than one suggestion: the other spellings of its unit
    merged into the item (``merge_unit_spellings``), the codes rejected for it earlier.
    """
    df = backlog_with_suggestions
    get = lambda c: pl.col(c) if c in df.columns else pl.lit(None, dtype=pl.Utf8)  # noqa: E731
    notes = pl.concat_str(
        [pl.when(get("unit_spellings").is_not_null()).then(pl.lit("unit written ") + get("unit_spellings")
                                                             + pl.lit(" (one item: same unit)")),
         pl.when(get("rejected_before").is_not_null()).then(pl.lit("rejected earlier, not proposed again: ")
                                                              + get("rejected_before")),
         pl.when(get("surveillance").is_not_null()).then(
             pl.lit("reads like a test counted in ") + get("surveillance") + pl.lit(" (")
             + get("surveillance_loinc") + pl.lit("): its results are missing from those counts until mapped"))],
        separator="; ", ignore_nulls=True,
    )
    out = df.select(
        decision=pl.lit("", dtype=pl.Utf8),
        source=pl.col("source"),
        local_code=pl.col("local_code"),
        local_label=get("local_label"),
        unit=get("unit_raw"),
        specimen=get("specimen"),
        loinc_num=pl.col("loinc_num"),
        display=get("display"),
        rank=get("rank"),
        score=get("score"),
        confidence=get("confidence"),
        reasons=get("reasons"),
        n_results=get("n_results"),
        first_seen=get("first_seen").cast(pl.Date, strict=False) if "first_seen" in df.columns else get("first_seen"),
        last_seen=get("last_seen").cast(pl.Date, strict=False) if "last_seen" in df.columns else get("last_seen"),
        notes=notes.fill_null(""),
        valid_from=pl.lit("", dtype=pl.Utf8),
        valid_to=pl.lit("", dtype=pl.Utf8),
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # reviewers open this file in a spreadsheet: a lab's label '=HYPERLINK(...)' must stay text
    neutralise_formulas(out).write_csv(path)
    return path


def _unquote(cell: str) -> str:
    """The apostrophe export_workqueue put before = + - @ goes when the file comes back."""
    return cell[1:] if cell[:1] == "'" and cell[1:2] in ("=", "+", "-", "@", "\t", "\r") else cell


def _queue_csv(path: Path) -> csv.DictReader:
    try:
        return operator_csv(path)
    except OperatorFileError as err:
        raise MappingError([(err.origin, err.problem)]) from None


@dataclass
class QueueDecisions:
    """What an edited work queue decides (``read_workqueue``).

    * ``approved``: the approved rows as ``MAPPING_SCHEMA`` rows (origin = file:line);
    * ``rejected``: the rejected suggestions, ``REJECTED_SCHEMA`` (to remember them);
    * ``notes``: (file:line, message) worth telling that do not stop the import (an approval
      repeated with another spelling of the same unit, merged).
    """

    approved: pl.DataFrame
    rejected: pl.DataFrame
    notes: list[tuple[str, str]] = field(default_factory=list)


REJECTED_SCHEMA = pl.Schema({"source": pl.Utf8(), "local_code": pl.Utf8(), "local_label": pl.Utf8(),
                             "unit": pl.Utf8(), "loinc_num": pl.Utf8(), "origin": pl.Utf8()})


def read_workqueue(path: Path, loinc: pl.DataFrame, units: UnitTables | None = None,
                   known_sources: set[str] | None = None) -> QueueDecisions:
    """The decisions of an edited work queue; raises ``MappingError`` naming file and line for: an
    unknown decision word, a missing field, a malformed or unknown LOINC, bad dates, two approvals
    for the same local code (same specimen/unit) with overlapping validity and different LOINC, and
    a lab not in ``known_sources`` (when given). Two approvals that are the same mapping once the
    unit is normalised ('g/L' and 'g/l', same LOINC and validity) are one (a note says so)."""
    path = Path(path)
    reader = _queue_csv(path)
    header = reader.fieldnames
    issues: list[tuple[str, str]] = []
    notes: list[tuple[str, str]] = []
    missing = [c for c in ("decision", "source", "local_code", "loinc_num") if c not in header]
    if missing:
        raise MappingError([(f"{path}:1", f"header lacks column(s) {missing}")])
    rows: list[dict] = []
    rejected: list[dict] = []
    start = 2
    for rec in reader:
        origin = f"{path}:{start}"
        start = reader.line_num + 1
        decision = (rec.get("decision") or "").strip().lower()
        if decision == "":
            continue
        row = {f: (_unquote((rec.get(f) or "").strip()) or None)
               for f in ("source", "local_code", "local_label", "unit", "specimen", "loinc_num")}
        if decision in REJECT:  # remembered (remember_rejections) when it names a suggestion
            if row["source"] and row["local_code"] and row["loinc_num"]:
                if known_sources is not None and row["source"] not in known_sources:
                    issues.append((origin, f"source {row['source']!r} is not a lab of this platform "
                                           f"(known: {', '.join(sorted(known_sources)) or 'none'})"))
                rejected.append({f: row[f] for f in REJECTED_SCHEMA if f != "origin"} | {"origin": origin})
            continue
        if decision not in APPROVE:
            issues.append((origin, f"decision {rec.get('decision')!r} is not approve, reject or empty"))
            continue
        for f in ("source", "local_code", "loinc_num"):
            if row[f] is None:
                issues.append((origin, f"missing required field {f}"))
        masked_code_issue(row["local_code"], origin, issues)
        if known_sources is not None and row["source"] is not None and row["source"] not in known_sources:
            issues.append((origin, f"source {row['source']!r} is not a lab of this platform "
                                   f"(known: {', '.join(sorted(known_sources)) or 'none'})"))
        row["valid_from"] = parse_date(rec.get("valid_from"), "valid_from", origin, issues)
        row["valid_to"] = parse_date(rec.get("valid_to"), "valid_to", origin, issues)
        row.update(origin=origin, layer=0)
        rows.append(row)
    schema = {**MAPPING_SCHEMA, "layer": pl.Int32()}
    df = pl.DataFrame(rows, schema=schema) if rows else pl.DataFrame(schema=schema)
    df = df.with_columns(specimen_key=specimen_key_expr("specimen"), unit_key=unit_match_key(df["unit"], units))
    df = _merge_same_approvals(df, notes)
    check_rows(df, set(loinc["loinc_num"].to_list()), issues)
    check_units(df, loinc, units, issues, notes)
    check_overlaps(df.filter(pl.col("local_code").is_not_null()), issues)
    if issues:
        raise MappingError(issues)
    return QueueDecisions(
        approved=df.select(list(MAPPING_SCHEMA)),
        rejected=pl.DataFrame(rejected, schema=REJECTED_SCHEMA) if rejected else pl.DataFrame(schema=REJECTED_SCHEMA),
        notes=notes,
    )


def check_units(rows: pl.DataFrame, loinc: pl.DataFrame, units: UnitTables | None, issues: list,
                notes: list) -> None:
    """The unit of each approved row against its LOINC code, as the run will convert it:

    * a spelling biolake cannot read (not in the alias table, not UCUM: 'gr/litre') is refused:
      its results would keep ``unit_unknown``;
    * a unit whose dimension does not fit the code's property, or that cannot be converted to its
      canonical unit ('G/L', giga per litre, on glucose 14749-6 in mmol/L) is refused: its results
      would stay ``incompatible_dimension``; equivalents (mEq/L) are only noted, the mapping can be
      right though biolake does not convert them (the valence is unknown);
    * a mass <-> molar unit on a code without a known molar mass, and a code the official table
      marks DEPRECATED, are noted.
    Rows without a unit, or with a code not in the table (``check_rows`` reports it), are skipped.
    """
    units = units or default_unit_tables()
    todo = rows.filter(pl.col("unit").is_not_null() & pl.col("loinc_num").is_not_null())
    status = dict(loinc.select("loinc_num", pl.col("status").str.to_uppercase()).iter_rows()) \
        if "status" in loinc.columns else {}
    for origin, code in rows.select("origin", "loinc_num").iter_rows():
        if status.get(code) == "DEPRECATED":
            notes.append((origin, f"LOINC {code} is DEPRECATED in the official table: prefer the code replacing it"))
    if todo.is_empty():
        return
    per_code = {r["loinc_num"]: r for r in loinc_unit_table(loinc.filter(
        pl.col("loinc_num").is_in(todo["loinc_num"].unique().implode())), units).iter_rows(named=True)}
    props = dict(loinc.select("loinc_num", "property").iter_rows())
    for origin, unit, code in todo.select("origin", "unit", "loinc_num").iter_rows():
        if code not in per_code:
            continue
        ucum = to_ucum(unit, units)
        if ucum is None:
            issues.append((origin, f"unit {unit!r} is not a unit biolake can read (not in "
                                   "seeds/terminology/unit_aliases.csv, not UCUM): its results would keep "
                                   "conversion_status unit_unknown; add the spelling to the alias table "
                                   "(docs/terminology.md, Units), or empty the unit to map the code whatever "
                                   "unit it comes in"))
            continue
        pc, canon, mw = per_code[code]["property_class"], per_code[code]["canonical_ucum"], \
            per_code[code]["molar_mass_g_per_mol"]
        what = props.get(code) or pc or "its property"
        where = f"{code} ({what}" + (f", in {canon})" if canon else ")")
        if unit_fits_property(ucum, pc) is False:
            verdict = INCOMPATIBLE
        elif canon:
            verdict = conversion_factor(ucum, canon, mw, pc)[1]
        else:
            continue
        written = repr(unit) if unit == ucum else f"{unit!r} ({ucum})"
        if verdict == INCOMPATIBLE and "eq" in _arbitrary_atoms(ucum):
            notes.append((origin, f"unit {written} on {where}: equivalents are not converted (the valence is "
                                  "not known), its results will keep their value in this unit "
                                  "(incompatible_dimension)"))
        elif verdict == INCOMPATIBLE:
            issues.append((origin, f"unit {written} does not fit {where}: its results would stay "
                                   "incompatible_dimension; choose a code whose property fits the unit, or "
                                   "correct the unit (empty it to map the code whatever unit it comes in)"))
        elif verdict == NO_MOLAR_MASS:
            notes.append((origin, f"unit {written} on {where}: no molar mass known for {code}, its results will "
                                  "stay unconverted (no_molar_mass; seeds/terminology/molar_masses.csv)"))


def _merge_same_approvals(df: pl.DataFrame, notes: list) -> pl.DataFrame:
    """Approvals that are one mapping once the unit is normalised (same lab, local code, specimen,
    unit key, LOINC and validity) are kept once, the first; a note names the others. The queue
    lists a code once per spelling when it was exported before spellings were merged."""
    same = ["source", "local_code", "specimen_key", "unit_key", "loinc_num", "valid_from", "valid_to"]
    firsts = df.with_columns(_first=pl.col("origin").first().over(same),
                             _first_unit=pl.col("unit").first().over(same))
    dup = firsts.filter(pl.col("origin") != pl.col("_first"))
    for origin, unit, first, first_unit in dup.select("origin", "unit", "_first", "_first_unit").iter_rows():
        if unit == first_unit:
            continue  # written the same way: a true duplicate, check_overlaps reports it
        notes.append((origin, f"same mapping as {first} (unit {unit!r} is {first_unit!r}): kept once"))
    gone = set(dup.filter(pl.col("unit") != pl.col("_first_unit"))["origin"].to_list())
    return df.filter(~pl.col("origin").is_in(list(gone))) if gone else df


def import_workqueue(path: Path, loinc: pl.DataFrame, units: UnitTables | None = None,
                     known_sources: set[str] | None = None) -> pl.DataFrame:
    """Approved rows of an edited work queue as ``MAPPING_SCHEMA`` rows (origin = file:line); see
    ``read_workqueue``, which also returns the rejections and the notes."""
    return read_workqueue(path, loinc, units, known_sources).approved


def write_approved_mappings(
    rows: pl.DataFrame,
    directory: Path,
    loinc: pl.DataFrame | None = None,
    units: UnitTables | None = None,
) -> list[Path]:
    """Merge approved mapping rows into ``<directory>/<source>.csv``; returns the files written.

    Existing rows of the same (source, local_code, specimen, unit) are replaced by the new ones;
    the merged rows are validated (check digits, date order, conflicts; LOINC known when ``loinc``
    is given) before each file is replaced atomically, so a failed import changes nothing.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    issues: list[tuple[str, str]] = []
    raw = read_mapping_dir(directory, 0, issues)
    if issues:
        raise MappingError(issues)
    schema = {**MAPPING_SCHEMA, "layer": pl.Int32()}
    existing = pl.DataFrame(raw, schema=schema).drop("layer") if raw else pl.DataFrame(schema=MAPPING_SCHEMA)
    key = ["source", "local_code", "specimen_key", "unit_key"]

    def keyed(df: pl.DataFrame) -> pl.DataFrame:
        return df.with_columns(specimen_key=specimen_key_expr("specimen"), unit_key=unit_match_key(df["unit"], units))

    new = keyed(rows.select(list(MAPPING_SCHEMA)))
    old = keyed(existing.select(list(MAPPING_SCHEMA)))
    kept = old.join(new.select(key).unique(), on=key, how="anti", nulls_equal=True)
    merged = pl.concat([kept, new]).sort("source", "local_code", "specimen", "unit", "valid_from", nulls_last=False)
    check_rows(merged, set(loinc["loinc_num"].to_list()) if loinc is not None else None, issues)
    check_overlaps(merged.with_columns(layer=pl.lit(0, dtype=pl.Int32)), issues)
    if issues:
        raise MappingError(issues)
    written = []
    for source in sorted(new["source"].unique().to_list()):
        part = merged.filter(pl.col("source") == source)
        target = directory / f"{source}.csv"
        yaml_twin = [p for p in (directory / f"{source}.yaml", directory / f"{source}.yml") if p.exists()]
        if yaml_twin:
            raise MappingError([(f"{yaml_twin[0]}:1", "approved mappings are written as CSV; merge this YAML file first")])
        body = part.select(
            [pl.col(c).cast(pl.Utf8) if c in ("valid_from", "valid_to") else pl.col(c) for c in MAPPING_FIELDS]
        ).write_csv()
        fd, tmp = tempfile.mkstemp(prefix=f".{source}.", suffix=".csv", dir=directory)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(body)
        os.replace(tmp, target)
        written.append(target)
    return written


# --- rejections ----------------------------------------------------------------------------------
REJECTED_DIR = "rejected"  # <operator mappings dir>/rejected/<source>.csv
REJECTED_FIELDS = ("local_code", "local_label", "unit", "loinc_num", "rejected_on")


def load_rejections(directory: Path, units: UnitTables | None = None) -> pl.DataFrame:
    """The suggestions engineers rejected, from ``<directory>/rejected/<source>.csv``: source,
    local_code, local_label, unit, unit_key, loinc_num, rejected_on (text), origin. A rejection
    with an empty unit holds for every unit of the local code. Raises ``MappingError`` (file:line)
    for a file that cannot be read or lacks local_code or loinc_num."""
    folder = Path(directory) / REJECTED_DIR
    schema = {"source": pl.Utf8, "local_code": pl.Utf8, "local_label": pl.Utf8, "unit": pl.Utf8,
              "loinc_num": pl.Utf8, "rejected_on": pl.Utf8, "origin": pl.Utf8}
    rows: list[dict] = []
    issues: list[tuple[str, str]] = []
    for path in sorted(folder.glob("*.csv")) if folder.is_dir() else []:
        try:
            reader = operator_csv(path)
        except OperatorFileError as err:
            issues.append((err.origin, err.problem))
            continue
        if not {"local_code", "loinc_num"} <= set(reader.fieldnames):
            issues.append((f"{path}:1", "header lacks local_code or loinc_num"))
            continue
        start = 2
        for rec in reader:
            row = {f: ((rec.get(f) or "").strip() or None) for f in REJECTED_FIELDS}
            if row["local_code"] and row["loinc_num"]:
                rows.append(row | {"source": path.stem, "origin": f"{path}:{start}"})
            start = reader.line_num + 1
    if issues:
        raise MappingError(issues)
    df = pl.DataFrame(rows, schema=schema) if rows else pl.DataFrame(schema=schema)
    return df.with_columns(unit_key=unit_match_key(df["unit"], units)).select(
        "source", "local_code", "local_label", "unit", "unit_key", "loinc_num", "rejected_on", "origin")


def remember_rejections(rejected: pl.DataFrame, directory: Path, approved: pl.DataFrame | None = None,
                        units: UnitTables | None = None, today: str | None = None) -> list[Path]:
    """Add the rejected suggestions (``QueueDecisions.rejected``) to
    ``<directory>/rejected/<source>.csv`` so that the next exports do not propose them again, and
    forget the rejections an approval now overrides (same lab, local code, unit and LOINC). One row
    per (local code, unit as normalised, LOINC), the first rejection's date kept. Returns the files
    written; each is replaced atomically."""
    import datetime as dt

    today = today or dt.date.today().isoformat()
    folder = Path(directory) / REJECTED_DIR
    old = load_rejections(directory, units).drop("origin")
    new = rejected.with_columns(unit_key=unit_match_key(rejected["unit"], units), rejected_on=pl.lit(today)).select(
        old.columns)
    key = ["source", "local_code", "unit_key", "loinc_num"]
    merged = pl.concat([old, new]).unique(subset=key, keep="first", maintain_order=True)
    touched = set(new["source"].to_list())
    if approved is not None and approved.height:
        ok = approved.select("source", "local_code", "loinc_num",
                             unit_key=unit_match_key(approved["unit"], units))
        gone = merged.join(ok, on=key, how="semi", nulls_equal=True)
        touched |= set(gone["source"].to_list())
        merged = merged.join(ok, on=key, how="anti", nulls_equal=True)
    written = []
    for source in sorted(touched):
        part = merged.filter(pl.col("source") == source).sort("local_code", "unit", "loinc_num", nulls_last=False)
        target = folder / f"{source}.csv"
        if part.is_empty() and not target.exists():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{source}.", suffix=".csv", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(part.select(list(REJECTED_FIELDS)).write_csv())
        os.replace(tmp, target)
        written.append(target)
    return written
