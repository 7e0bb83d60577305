"""The synthetic generator: determinism, identifiers, defects at their rates, and a truth that an
independent re-computation from the landing files reproduces exactly."""

from __future__ import annotations

import csv
import json
import math
import re
import unicodedata
from collections import defaultdict
from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from stdnum import luhn
from stdnum.exceptions import InvalidChecksum
from stdnum.fr import nir as stdnir

from transforms.synthetic import HEADER, DefectRates, GenerateResult, generate
from transforms.synthetic.truth import sidep_daily

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "seeds"
N = 20_000
FIELDS = HEADER.split(";")
COVID = {"94500-6", "94558-4"}


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


LABS = {r["source"]: r for r in _read_csv(SEEDS / "labs.csv")}


def loinc_check_ok(code: str) -> bool:
    body, _, check = code.partition("-")
    if not body.isdigit() or not check.isdigit() or len(check) != 1:
        return False
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return (10 - total % 10) % 10 == int(check)


# ------------------------------------------------------------------------------------------------
# fixtures
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gen(tmp_path_factory) -> tuple[GenerateResult, list]:
    calls: list = []
    res = generate(tmp_path_factory.mktemp("home_a"), n_results=N, seed=7, progress=lambda *a: calls.append(a))
    return res, calls


@pytest.fixture(scope="module")
def res(gen) -> GenerateResult:
    return gen[0]


@pytest.fixture(scope="module")
def home(res) -> Path:
    return res.truth_dir.parent


@pytest.fixture(scope="module")
def truth(res) -> pl.DataFrame:
    return pl.read_parquet(res.truth_dir / "rows.parquet")


@pytest.fixture(scope="module")
def lines(res, home) -> dict[tuple[str, int], str]:
    """(file relative to landing, physical line number) -> decoded text of every data line."""
    out = {}
    for path in res.landing_files:
        source = path.parent.name
        text = path.read_bytes().decode(LABS[source]["encoding"])
        assert text.endswith("\n")
        phys = text.split("\n")[:-1]
        assert phys[0] == HEADER
        rel = path.relative_to(home / "landing").as_posix()
        for i, ln in enumerate(phys[1:], start=2):
            out[(rel, i)] = ln
    return out


@pytest.fixture(scope="module")
def joined(truth, lines) -> list[dict]:
    rows = []
    for r in truth.iter_rows(named=True):
        r = dict(r)
        r["text"] = lines[(r["file"], r["line_no"])]
        r["f"] = r["text"].split(";")
        rows.append(r)
    return rows


# ------------------------------------------------------------------------------------------------
# seeds
# ------------------------------------------------------------------------------------------------


def test_seed_loinc_codes_exist_and_check():
    ref = {r["loinc_num"] for r in _read_csv(SEEDS / "reference/loinc.csv")}
    cat = _read_csv(SEEDS / "tests_catalog.csv")
    assert 35 <= len(cat) <= 50
    codes = [r["loinc_num"] for r in cat]
    assert len(set(codes)) == len(codes)
    assert {"94500-6", "94558-4", "22314-9", "21503-8", "718-7", "6690-2"} <= set(codes)
    for f in (SEEDS / "mappings").glob("*.csv"):
        codes += [r["loinc_num"] for r in _read_csv(f)]
    for c in codes:
        assert c in ref, c
        assert loinc_check_ok(c), c
    assert {r["kind"] for r in cat} == {"num", "qual"}


def test_seed_labs_finess_luhn_and_styles():
    assert len(LABS) == 5
    for lab in LABS.values():
        assert len(lab["finess"]) == 9 and lab["finess"].isdigit()
        assert luhn.is_valid(lab["finess"])
        assert (SEEDS / "mappings" / f"{lab['source']}.csv").exists()
    assert {lab["encoding"] for lab in LABS.values()} == {"utf-8", "latin-1"}
    assert {lab["date_style"] for lab in LABS.values()} == {"dmy", "compact"}


def test_seed_mappings_are_lab_specific_with_other_units():
    cat = {r["loinc_num"]: r for r in _read_csv(SEEDS / "tests_catalog.csv")}
    maps = {f.stem: _read_csv(f) for f in (SEEDS / "mappings").glob("*.csv")}
    glucose = {src: [r for r in rows if r["loinc_num"] == "14749-6" and not r["valid_to"]][0]
               for src, rows in maps.items()}
    assert len({g["local_code"] for g in glucose.values()}) > 1
    assert {"g/l", "mmol/L"} <= {g["unit"] for g in glucose.values()}
    n_other_unit = sum(1 for rows in maps.values() for r in rows
                       if not r["valid_to"] and cat[r["loinc_num"]]["canonical_unit"] not in ("", r["unit"]))
    assert n_other_unit > 20
    for rows in maps.values():
        open_codes = [r["local_code"] for r in rows if not r["valid_to"]]
        assert len(open_codes) == len(set(open_codes))


# ------------------------------------------------------------------------------------------------
# determinism and API
# ------------------------------------------------------------------------------------------------


def test_header_is_the_documented_one():
    assert FIELDS == ["FINESS", "N_DEMANDE", "NIR", "NOM", "PRENOM", "DATE_NAISSANCE", "SEXE", "CODE_POSTAL",
                      "DATE_PRELEVEMENT", "DATE_RECEPTION", "DATE_VALIDATION", "CODE_ANALYSE", "LIBELLE_ANALYSE",
                      "RESULTAT", "UNITE", "VALEURS_REFERENCE", "STATUT"]
    readme = (SEEDS / "README_generator.md").read_text(encoding="utf-8")
    assert HEADER in readme


def _tree(home: Path) -> dict[str, bytes]:
    out = {}
    for p in sorted((home / "landing").rglob("*.csv")):
        out[p.relative_to(home).as_posix()] = p.read_bytes()
    for name in ("sidep_daily.csv", "summary.json", "rows.parquet"):
        out[f"truth/{name}"] = (home / "truth" / name).read_bytes()
    return out


def test_determinism(res, home, truth, tmp_path):
    again = generate(tmp_path / "b", n_results=N, seed=7)
    assert again.n_rows == res.n_rows
    assert _tree(tmp_path / "b") == _tree(home)
    assert pl.read_parquet(again.truth_dir / "rows.parquet").equals(truth)
    generate(tmp_path / "c", n_results=N, seed=8)
    a, c = _tree(home), _tree(tmp_path / "c")
    assert a != c
    common = set(a) & set(c)
    assert any(a[k] != c[k] for k in common if k.startswith("landing/"))


def test_api_counts_and_layout(gen, res, home, truth, lines):
    _, calls = gen
    assert res.n_rows == truth.height == len(lines)
    assert res.truth_dir == home / "truth"
    assert all(p.is_relative_to(home / "landing") for p in res.landing_files)
    assert not any(p.is_relative_to(home / "truth") for p in (home / "landing").rglob("*"))
    rels = {p.relative_to(home / "landing").as_posix() for p in res.landing_files}
    assert set(truth["file"].unique()) == rels
    for rel in rels:
        assert re.fullmatch(r"(labo_[a-z]+)/\1_\d{8}(_renvoi)?\.csv", rel), rel
    assert truth.select(pl.struct("file", "line_no").is_duplicated().any()).item() is False
    assert truth["line_no"].min() == 2
    summary = json.loads((home / "truth/summary.json").read_text())
    assert summary["rows_written"] == res.n_rows and summary["seed"] == 7 and summary["n_results"] == N
    assert sum(summary["rows_by_fate"].values()) == res.n_rows
    # the base results are exactly n_results; duplicates, corrections and re-deliveries come on top
    base = truth.filter((pl.col("fate") != "duplicate_file") & (pl.col("reason").fill_null("") != "DUPLICATE_ROW")
                        & (pl.col("status") != "C"))
    assert base.height == N
    stages = {c[0] for c in calls}
    assert {"persons", "write", "truth"} <= stages
    assert all(0 <= c[1] <= c[2] for c in calls)


def test_late_deliveries_and_history_files(truth, joined):
    by_file_day = 0
    late = 0
    for r in joined:
        if r["fate"] != "valid" or len(r["f"]) != 17:
            continue
        coll = _parse_ts(r["f"][8], r["source"])
        day = datetime.strptime(r["file"].split("_")[-1][:8], "%Y%m%d").date()
        by_file_day += 1
        late += (day - coll.date()).days >= 1
        assert _parse_ts(r["f"][10], r["source"]).date() == day
    assert late / by_file_day > 0.2
    days = {f.split("_")[-1][:8] for f in truth["file"].unique()}
    assert min(days) < "20261002"  # earlier positives delivered in files of their own days


# ------------------------------------------------------------------------------------------------
# identifiers
# ------------------------------------------------------------------------------------------------


def test_nir_valid_rows_pass_and_nir_key_rows_fail(joined):
    n_bad = 0
    for r in joined:
        f = r["f"]
        if r["fate"] == "valid":
            assert stdnir.is_valid(f[2]), f[2]
            # consistent with sex and birth year/month when given
            if f[6]:
                assert f[2][0] == {"M": "1", "F": "2"}[f[6]]
            if f[5] and r["defect"] != "birth_date_invalid":  # 31/02/1980 is kept, its age unknown
                bd = _parse_date(f[5], r["source"])
                assert f[2][1:5] == f"{bd.year % 100:02d}{bd.month:02d}"
            assert f[0] == LABS[r["source"]]["finess"]
        if r["reason"] == "NIR_KEY":
            n_bad += 1
            assert r["column"] == "patient_nir"
            assert len(f[2]) == 15
            with pytest.raises(InvalidChecksum):
                stdnir.validate(f[2])
    assert n_bad > 0


def test_identity_traits_link_like_the_nir(joined):
    """Normalised (family name, first name, birth date) <-> NIR is one-to-one across labs."""
    def norm(x: str) -> str:
        return "".join(c for c in _norm(x).upper() if c.isalnum())

    nir_of: dict[tuple, str] = {}
    traits_of: dict[str, tuple] = {}
    for r in joined:
        if r["fate"] != "valid" or r["defect"] == "birth_date_invalid":  # its birth date is unknown
            continue
        f = r["f"]
        birth = _parse_date(f[5], r["source"]) if f[5] else None
        t = (norm(f[3]), norm(f[4]), birth)
        assert nir_of.setdefault(t, f[2]) == f[2]
        assert traits_of.setdefault(f[2], t) == t


def test_corsica_and_abroad_births_present(joined):
    nirs = {r["f"][2] for r in joined if r["fate"] == "valid"}
    assert any(n[5:7] in ("2A", "2B") for n in nirs)
    assert any(n[5:7] == "99" for n in nirs)


def test_request_numbers_unique_per_lab(joined):
    seen: dict[tuple, str] = {}
    for r in joined:
        if r["fate"] != "valid" or r["status"] != "F":
            continue
        key = (r["f"][0], r["f"][1], r["f"][11])
        assert key not in seen
        seen[key] = r["f"][2]
    # one request = one patient
    req_nir: dict[tuple, str] = {}
    for (finess, req, _), n in seen.items():
        assert req_nir.setdefault((finess, req), n) == n


# ------------------------------------------------------------------------------------------------
# defects
# ------------------------------------------------------------------------------------------------


def _close(observed: int, expected: float) -> bool:
    return abs(observed - expected) <= 5 * math.sqrt(expected) + 3


def test_defects_at_their_rates(truth):
    rates = DefectRates()
    base = truth.filter((pl.col("fate") != "duplicate_file") & (pl.col("status") == "F")
                        & (pl.col("reason").fill_null("") != "DUPLICATE_ROW"))
    eligible = base.filter(pl.col("scenario").is_null()).height
    count = dict(truth.filter(pl.col("fate") != "duplicate_file").group_by("defect").len().iter_rows())
    # an impossible date is a collection's or a birth date's; the birth date's costs the result nothing
    # (kept, its age unknown: docs/formats.md)
    count["date_invalid"] = count.get("date_invalid", 0)
    both = count["date_invalid"] + count.get("birth_date_invalid", 0)
    assert _close(both, rates.date_invalid * eligible) and count.get("birth_date_invalid", 0) > 0
    born = truth.filter(pl.col("defect") == "birth_date_invalid")
    assert (born["fate"] == "valid").all() and born["reason"].is_null().all() and born["age"].is_null().all()
    for name, reason in (("nir_key", "NIR_KEY"), ("date_invalid", "DATE_INVALID"), ("date_order", "DATE_ORDER"),
                         ("malformed", "MALFORMED_LINE"), ("duplicate_row", "DUPLICATE_ROW")):
        expected = getattr(rates, name) * eligible
        if name != "date_invalid":
            assert _close(count.get(name, 0), expected), (name, count.get(name), expected)
        assert truth.filter(pl.col("reason") == reason).height == count[name]
    assert _close(count["unknown_code"], rates.unknown_code * eligible)
    assert count["correction"] == count["superseded"] == round(rates.correction * N)
    # at most one defect per row: a row carries one defect label; quarantined rows have exactly one reason
    assert truth.filter((pl.col("fate") == "quarantined") & pl.col("reason").is_null()).height == 0


def test_field_counts_and_malformed_lines(joined):
    for r in joined:
        if r["fate"] == "duplicate_file":  # byte copies, checked in test_duplicate_files_...
            continue
        if r["reason"] == "MALFORMED_LINE":
            assert len(r["f"]) != 17
            assert r["column"] is None
        else:
            assert len(r["f"]) == 17, r["text"]
            assert '"' not in r["text"]


def test_duplicate_rows_repeat_an_earlier_valid_line(joined, lines):
    first_seen: dict[tuple[str, str], int] = {}
    fate = {(r["file"], r["line_no"]): r for r in joined}
    n = 0
    for (file, no), text in sorted(lines.items()):
        r = fate[(file, no)]
        if r["fate"] == "duplicate_file":
            continue
        key = (file, text)
        if r["reason"] == "DUPLICATE_ROW":
            n += 1
            assert key in first_seen and first_seen[key] < no
            assert fate[(file, first_seen[key])]["fate"] == "valid"
        else:
            assert key not in first_seen, "two identical lines without a DUPLICATE_ROW truth"
            first_seen[key] = no
    assert n > 0


def test_duplicate_files_are_identical_copies(res, home, truth):
    copies = [p for p in res.landing_files if p.name.endswith("_renvoi.csv")]
    assert copies
    for p in copies:
        orig = p.with_name(p.name.replace("_renvoi.csv", ".csv"))
        assert p.read_bytes() == orig.read_bytes()
        rel = p.relative_to(home / "landing").as_posix()
        t = truth.filter(pl.col("file") == rel)
        assert t.height == len(p.read_bytes().splitlines()) - 1
        assert set(t["fate"]) == {"duplicate_file"}
        assert t["reason"].null_count() == t.height
    assert truth.filter(pl.col("fate") == "duplicate_file").height == sum(
        len(p.read_bytes().splitlines()) - 1 for p in copies)


def _parse_ts(s: str, source: str) -> datetime:
    fmt = "%Y%m%d%H%M" if LABS[source]["date_style"] == "compact" else "%d/%m/%Y %H:%M"
    return datetime.strptime(s, fmt)


def _parse_date(s: str, source: str) -> date:
    fmt = "%Y%m%d" if LABS[source]["date_style"] == "compact" else "%d/%m/%Y"
    return datetime.strptime(s, fmt).date()


def test_dates_valid_invalid_and_order(joined):
    seen = set()
    for r in joined:
        f, src = r["f"], r["source"]
        if r["reason"] == "MALFORMED_LINE" or r["fate"] == "duplicate_file":
            continue
        if r["defect"] == "birth_date_invalid":  # kept, its age unknown (docs/formats.md)
            seen.add("birth_date")
            assert r["fate"] == "valid" and r["reason"] is None
            with pytest.raises(ValueError):
                _parse_date(f[5], src)
            continue
        if r["reason"] == "DATE_INVALID":
            seen.add(r["column"])
            s = f[8] if r["column"] == "collected_at" else f[5]
            with pytest.raises(ValueError):
                (_parse_ts if r["column"] == "collected_at" else _parse_date)(s, src)
            continue
        coll, recv, val = (_parse_ts(f[i], src) for i in (8, 9, 10))
        if f[5]:
            assert _parse_date(f[5], src) < coll.date()
        if r["reason"] == "DATE_ORDER":
            assert r["column"] == "validated_at"
            assert val < coll
        else:
            assert coll + timedelta(hours=1) <= recv <= coll + timedelta(hours=24)
            assert recv < val
    assert seen == {"collected_at", "birth_date"}


def test_missing_sex_and_birth_date_stay_valid(joined):
    no_sex = [r for r in joined if r["fate"] == "valid" and r["f"][6] == ""]
    no_birth = [r for r in joined if r["fate"] == "valid" and r["f"][5] == ""]
    assert no_sex and no_birth
    assert all(r["f"][6] in ("", "F", "M") for r in joined
               if r["reason"] != "MALFORMED_LINE" and r["fate"] != "duplicate_file")


def test_mapping_and_unknown_codes(joined):
    maps = {f.stem: {r["local_code"]: r for r in _read_csv(f) if not r["valid_to"]}
            for f in (SEEDS / "mappings").glob("*.csv")}
    all_codes = {f.stem: {r["local_code"] for r in _read_csv(f)} for f in (SEEDS / "mappings").glob("*.csv")}
    n_unmapped = 0
    for r in joined:
        if r["reason"] == "MALFORMED_LINE" or r["fate"] == "duplicate_file":
            continue
        code, unit = r["f"][11], r["f"][14]
        if r["mapped"]:
            m = maps[r["source"]][code]
            assert m["loinc_num"] == r["loinc_num"]
            assert m["unit"] == unit
        else:
            n_unmapped += 1
            assert code not in all_codes[r["source"]]
            assert r["loinc_num"] is None and r["fate"] == "valid"
    assert n_unmapped > 0


def test_values_and_words(joined):
    pos = {"positif", "detecte", "presence"}
    neg = {"negatif", "non detecte", "absence"}
    inv = {"douteux", "ininterpretable"}
    for r in joined:
        if r["reason"] == "MALFORMED_LINE" or r["fate"] == "duplicate_file":
            continue
        v = r["f"][13]
        if r["result_class"] is None:
            assert re.fullmatch(r"\d+(,\d+)?", v), v
            assert r["f"][15] == "" or re.fullmatch(r"\d+(,\d+)?-\d+(,\d+)?", r["f"][15])
        else:
            w = _norm(v)
            assert w in {"POS": pos, "NEG": neg, "INVALID": inv}[r["result_class"]], v
            assert r["f"][14] == ""
    # values in the lab's unit: beta writes glucose in g/l (about 1), others in mmol/L (about 5)
    gly = defaultdict(list)
    for r in joined:
        if r["test_key"] == "glucose" and r["fate"] == "valid":
            gly[r["source"]].append(float(r["f"][13].replace(",", ".")))
    assert 0.7 < sorted(gly["labo_beta"])[len(gly["labo_beta"]) // 2] < 1.3
    assert 4.0 < sorted(gly["labo_alpha"])[len(gly["labo_alpha"]) // 2] < 7.0


def test_corrections_later_different_and_flip_covid(joined):
    by_key = defaultdict(list)
    for r in joined:
        if r["fate"] == "valid":
            by_key[(r["f"][0], r["f"][1], r["f"][11])].append(r)
    flips = set()
    n = 0
    for key, rs in by_key.items():
        c = [r for r in rs if r["status"] == "C"]
        if not c:
            assert all(r["is_current"] for r in rs)
            continue
        n += 1
        assert len(c) == 1 and len(rs) == 2
        orig = [r for r in rs if r["status"] == "F"][0]
        c = c[0]
        assert c["is_current"] and not orig["is_current"]
        assert c["f"][13] != orig["f"][13]
        assert _parse_ts(c["f"][10], c["source"]) > _parse_ts(orig["f"][10], orig["source"])
        assert c["file"] > orig["file"]  # a later file of the same lab
        if orig["loinc_num"] in COVID:
            flips.add((orig["result_class"], c["result_class"]))
    assert n > 0
    assert {("NEG", "POS"), ("POS", "NEG")} <= flips


# ------------------------------------------------------------------------------------------------
# SI-DEP truth
# ------------------------------------------------------------------------------------------------


def _norm(word: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c)).lower()


def _recompute_sidep(joined) -> tuple[dict, dict]:
    """Independent SI-DEP computation from the landing lines + truth fates (plain Python)."""
    postal = {r["postal_code"]: r["dep_code"] for r in _read_csv(SEEDS / "reference/postal_codes.csv")}
    days: dict[tuple[str, date], dict] = {}
    for r in joined:
        if r["fate"] != "valid" or not r["is_current"] or r["loinc_num"] not in COVID:
            continue
        f, src = r["f"], r["source"]
        w = _norm(f[13])
        cls = "POS" if w in ("positif", "detecte", "presence") else "NEG" if w in (
            "negatif", "non detecte", "absence") else None
        if cls is None:
            continue
        jour = _parse_ts(f[8], src).date()
        pd = days.setdefault((f[2], jour), {"pos": False, "first": None})
        pd["pos"] |= cls == "POS"
        # the attributes of the first result of the winning class (positive, then earliest)
        rank = (cls != "POS", _parse_ts(f[8], src))
        if pd["first"] is None or rank < pd["first"]:
            pd.update(first=rank, sex=f[6], src=src, dep=postal[f[7]],
                      birth="" if r["defect"] == "birth_date_invalid" else f[5])
    counts: dict[tuple, list[int]] = defaultdict(lambda: [0] * 6)
    per_person: dict[str, list] = defaultdict(list)
    last_counted: dict[str, date] = {}
    for (nir, jour), pd in sorted(days.items()):
        if pd["pos"]:
            if nir in last_counted and (jour - last_counted[nir]).days < 60:
                per_person[nir].append((jour, "repeat"))
                continue
            last_counted[nir] = jour
        per_person[nir].append((jour, "P" if pd["pos"] else "T"))
        classes = [0]
        if pd["birth"]:
            b = _parse_date(pd["birth"], pd["src"])
            age = jour.year - b.year - ((jour.month, jour.day) < (b.month, b.day))
            classes.append(90 if age >= 90 else age // 10 * 10 + 9)
        for cl in classes:
            c = counts[(jour.isoformat(), pd["dep"], cl)]
            p = int(pd["pos"])
            c[0] += p * (pd["sex"] == "F")
            c[1] += p * (pd["sex"] == "M")
            c[2] += p
            c[3] += pd["sex"] == "F"
            c[4] += pd["sex"] == "M"
            c[5] += 1
    return counts, per_person


@pytest.fixture(scope="module")
def sidep(home) -> pl.DataFrame:
    return pl.read_csv(home / "truth/sidep_daily.csv", separator=";", schema_overrides={"dep": pl.Utf8})


def test_sidep_shape_and_invariants(sidep):
    assert sidep.columns == ["jour", "dep", "cl_age90", "P_f", "P_h", "P", "T_f", "T_h", "T"]
    with_pop = {r["dep_code"] for r in _read_csv(SEEDS / "reference/population.csv")}
    deps = [r["dep_code"] for r in _read_csv(SEEDS / "reference/departements.csv")
            if r["is_com"] == "no" or r["dep_code"] in with_pop]
    assert len(deps) == 104  # 101 départements and the COM with a population: 975, 977, 978
    n_days = sidep["jour"].n_unique()
    first, last = date.fromisoformat(sidep["jour"].min()), date.fromisoformat(sidep["jour"].max())
    assert n_days == (last - first).days + 1
    assert sidep.height == n_days * 104 * 11
    assert set(sidep["dep"]) == set(deps)
    assert sidep.sort("jour", "dep", "cl_age90").equals(sidep)
    assert sidep.filter(pl.col("jour") == sidep["jour"].min())["T"].sum() > 0
    assert sidep.filter(pl.col("jour") == sidep["jour"].max())["T"].sum() > 0
    assert (sidep["P"] <= sidep["T"]).all()
    assert (sidep["P_f"] + sidep["P_h"] <= sidep["P"]).all()
    assert (sidep["T_f"] + sidep["T_h"] <= sidep["T"]).all()
    tot = sidep.filter(pl.col("cl_age90") == 0).select("jour", "dep", "P", "T")
    by_cl = sidep.filter(pl.col("cl_age90") != 0).group_by("jour", "dep").agg(pl.col("P").sum().alias("Ps"),
                                                                                pl.col("T").sum().alias("Ts"))
    j = tot.join(by_cl, on=["jour", "dep"])
    assert (j["P"] >= j["Ps"]).all() and (j["T"] >= j["Ts"]).all()
    assert (j["T"] > j["Ts"]).any()  # unknown birth dates count in cl_age90 = 0 only


def test_sidep_matches_independent_recomputation(joined, sidep):
    counts, _ = _recompute_sidep(joined)
    got = {(r[0], r[1], r[2]): list(r[3:]) for r in sidep.filter(pl.col("T") > 0).iter_rows()}
    want = {k: v for k, v in counts.items() if v[5] > 0}
    assert got == want
    # P = P_f + P_h + positives of unknown sex
    unknown_sex_pos = sum(v[2] - v[0] - v[1] for k, v in counts.items() if k[2] == 0)
    all0 = sidep.filter(pl.col("cl_age90") == 0)
    assert all0["P"].sum() == all0["P_f"].sum() + all0["P_h"].sum() + unknown_sex_pos
    assert unknown_sex_pos >= 0


def test_scenario_persons(joined, truth):
    """Hand-specified expectations for the scenario persons, from the landing files."""
    _, per_person = _recompute_sidep(joined)
    nir_of = {}
    for r in joined:
        if r["fate"] == "valid" and r["scenario"]:
            nir_of.setdefault(r["person"], (r["scenario"], r["f"][2]))
    expected = {
        "reinfection_gt60": ["P", "P"], "reinfection_60": ["P", "P"], "same_episode_59": ["P", "repeat"],
        "repeat_in_window": ["P", "repeat"], "neg_two_days": ["T", "T"], "neg_then_pos": ["T", "P"],
    }
    seen = defaultdict(int)
    for person, (scenario, nir) in nir_of.items():
        events = per_person[nir]
        days = [d for d, _ in events]
        if scenario in expected:
            assert [e for _, e in events] == expected[scenario], (scenario, events)
            gap = (days[1] - days[0]).days
            if scenario == "reinfection_60":
                assert gap == 60
            elif scenario == "same_episode_59":
                assert gap == 59
            elif scenario == "reinfection_gt60":
                assert 61 <= gap <= 90
        else:  # same_day_ag_pcr: one person-day, positive if either test is
            assert scenario == "same_day_ag_pcr"
            assert len(events) == 1
            rows = truth.filter((pl.col("person") == person) & (pl.col("fate") == "valid"))
            assert rows.height == 2
            assert set(rows["loinc_num"]) == COVID
            assert events[0][1] == ("P" if "POS" in set(rows["result_class"]) else "T")
        seen[scenario] += 1
    assert set(seen) == set(expected) | {"same_day_ag_pcr"}


def test_episode_rule_hand_checked():
    """A tiny hand-made set of events through the truth's SI-DEP function."""
    d0 = date(2026, 9, 1)
    postal = pl.DataFrame({"postal_code": ["75001", "13001"], "dep_code": ["75", "13"]})

    def ev(nir, days, cls, sex="F", birth=date(1980, 6, 15), pc="75001"):
        return {"nir": nir, "jour": d0 + timedelta(days=days), "result_class": cls, "sex": sex,
                "birth_date": birth, "postal_code": pc}

    events = pl.DataFrame([
        ev("A", 0, "POS"), ev("A", 59, "POS"), ev("A", 60, "POS"), ev("A", 61, "NEG"),  # 59: same episode
        ev("B", 0, "POS"), ev("B", 0, "NEG"), ev("B", 0, "INVALID"),  # positive wins the day
        ev("C", 0, "NEG"), ev("C", 1, "NEG"),  # negative on two days: T twice
        ev("D", 0, "POS", sex=None, pc="13001"),  # unknown sex
        ev("E", 0, "NEG", birth=None),  # unknown age: cl_age90 = 0 only
        ev("F", 0, "INVALID"),  # nothing
        ev("G", 0, "POS", birth=date(1936, 9, 2)), ev("G", 30, "POS", birth=date(1936, 9, 2)),  # 89 years
        ev("G", 70, "POS", birth=date(1936, 9, 2)),  # 90 years
    ], schema_overrides={"sex": pl.Utf8, "birth_date": pl.Date})
    out = sidep_daily(events, postal, ["13", "75"])
    assert out.height == 71 * 2 * 11
    nz = {(r[0].isoformat(), r[1], r[2]): r[3:] for r in out.filter(pl.col("T") > 0).iter_rows()}
    k = lambda days, dep, cl: ((d0 + timedelta(days=days)).isoformat(), dep, cl)  # noqa: E731
    assert nz == {
        # day 0 in 75: A+, B+, C-, E- (age unknown), G+ (89 years) -> P 3 (all F), T 5
        k(0, "75", 0): (3, 0, 3, 5, 0, 5),
        k(0, "75", 49): (2, 0, 2, 3, 0, 3),
        k(0, "75", 89): (1, 0, 1, 1, 0, 1),
        k(0, "13", 0): (0, 0, 1, 0, 0, 1),
        k(0, "13", 49): (0, 0, 1, 0, 0, 1),
        k(1, "75", 0): (0, 0, 0, 1, 0, 1),
        k(1, "75", 49): (0, 0, 0, 1, 0, 1),
        # A's day 59 is inside the episode (not counted), day 60 opens a new one, day 61 negative
        k(60, "75", 0): (1, 0, 1, 1, 0, 1),
        k(60, "75", 49): (1, 0, 1, 1, 0, 1),
        k(61, "75", 0): (0, 0, 0, 1, 0, 1),
        k(61, "75", 49): (0, 0, 0, 1, 0, 1),
        # G: day 30 repeat (not counted); day 70 is 70 days after the last counted positive, aged 90
        k(70, "75", 0): (1, 0, 1, 1, 0, 1),
        k(70, "75", 90): (1, 0, 1, 1, 0, 1),
    }


def test_a_person_day_takes_what_its_counted_result_lacks_from_the_same_day():
    """The truth follows the pipeline's rule (QA ops F3: the demo's truth disagreed with its marts on
    three age classes): the counted result's own sex, age and postal code, else the first of the
    person's other results that day giving one."""
    d0 = date(2026, 9, 1)
    postal = pl.DataFrame({"postal_code": ["75001", "13001"], "dep_code": ["75", "13"]})

    def ev(nir, cls, sex, birth, pc):
        return {"nir": nir, "jour": d0, "result_class": cls, "sex": sex, "birth_date": birth, "postal_code": pc}

    events = pl.DataFrame([
        ev("H", "POS", None, None, None), ev("H", "NEG", "M", date(1990, 1, 1), "13001"),  # all from the NEG
        ev("I", "POS", "F", date(1980, 6, 15), "75001"), ev("I", "NEG", "M", date(1990, 1, 1), "13001"),  # own
        ev("J", "NEG", None, None, "75001"), ev("J", "NEG", "F", date(1990, 1, 1), "13001"),  # own postal code
    ], schema_overrides={"sex": pl.Utf8, "birth_date": pl.Date, "postal_code": pl.Utf8})
    out = sidep_daily(events, postal, ["13", "75"])
    nz = {(r[1], r[2]): r[3:] for r in out.filter(pl.col("T") > 0).iter_rows()}
    assert nz == {  # P_f, P_h, P, T_f, T_h, T
        ("13", 0): (0, 1, 1, 0, 1, 1), ("13", 39): (0, 1, 1, 0, 1, 1),  # H: male, 36, in 13
        ("75", 0): (1, 0, 1, 2, 0, 2), ("75", 49): (1, 0, 1, 1, 0, 1),  # I: female, 46, in 75
        ("75", 39): (0, 0, 0, 1, 0, 1),  # J: female, 36, in 75
    }


def test_seeds_only_no_shared_reference_at_run_time():
    src = "".join(p.read_text(encoding="utf-8") for p in (ROOT / "transforms/synthetic").glob("*.py")
                  if p.name != "build_seeds.py")
    assert "/work/shared" not in src and "shared/reference" not in src
