"""Benchmark: biolake's HL7 v2 parser against python-hl7 on the same ORU^R01 file.

Run from the repository root::

    .venv/bin/python bench/bench_hl7.py                 # 100,000 messages
    .venv/bin/python bench/bench_hl7.py --messages 200  # smoke run

It generates canonical rows (requests made of French lab panels -- NFS, ionogramme, glycémie,
CRP, SARS-CoV-2 PCR, blood group -- about 6 results per message, numeric, coded, text and
structured numeric values, a few escape sequences), writes them as one ORU file with
transforms/synthetic/formats.py, then times in the same run:

* biolake: ``transforms.parsers.hl7v2.parse`` over the file, up to canonical polars chunks;
* python-hl7: reading the same file, ``hl7.parse`` per message and extracting the same fields
  (PID-3 identifier, OBX-3 code, OBX-5 value unescaped, OBX-6 unit) into Python lists.

It prints messages per second for both and the ratio, by wall clock and by CPU time (the CPU
figure is the steadier one on a shared machine; for biolake it counts polars' threads too), and
checks on a sample of (up to) 1,000 messages that both extracted the same fields. The exit status is 1 when the sample disagrees.
Nothing is asserted about speed (the target is biolake >= 20x python-hl7).
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import hl7  # noqa: E402
import polars as pl  # noqa: E402

from transforms.canonical import CANONICAL_SCHEMA  # noqa: E402
from transforms.parsers import hl7v2  # noqa: E402
from transforms.synthetic.formats import write_hl7v2  # noqa: E402

# requests are made of panels, as a French lab reports them (one ORU^R01 per request)
PANELS = {
    "nfs": [
        ("HB", "Hémoglobine", "718-7", "NM", "g/dL"), ("HT", "Hématocrite", "4544-3", "NM", "%"),
        ("GR", "Hématies", "789-8", "NM", "10*12/L"), ("GB", "Leucocytes", "6690-2", "NM", "10*9/L"),
        ("PLQ", "Plaquettes", "777-3", "NM", "10*9/L"), ("VGM", "Volume globulaire moyen", "787-2", "NM", "fL"),
        ("PNN", "Polynucléaires neutrophiles", "751-8", "NM", "10*9/L"), ("LYM", "Lymphocytes", "731-0", "NM", "10*9/L"),
    ],
    "ionogramme": [
        ("NA", "Sodium", "2951-2", "NM", "mmol/L"), ("K", "Potassium", "2823-3", "NM", "mmol/L"),
        ("CL", "Chlorure", "2075-0", "NM", "mmol/L"), ("CREA", "Créatinine", "2160-0", "NM", "umol/L"),
    ],
    "glycemie": [("GLY", "Glycémie à jeun", "2345-7", "NM", "mmol/L")],
    "crp": [("CRP", "Protéine C réactive", "1988-5", "SN", "mg/L")],
    "covid": [("COV", "SARS-CoV-2 ARN", "94500-6", "CWE", None)],
    "groupe": [("GRP", "Groupe sanguin", None, "ST", None)],
}
PANEL_WEIGHTS = {"nfs": 0.35, "ionogramme": 0.25, "glycemie": 0.45, "crp": 0.3, "covid": 0.3, "groupe": 0.05}
COMMENT = ("COM", "Commentaire", None, "TX", None)
FAMILIES = ["MARTIN", "BERNARD", "DUBOIS", "THOMAS", "ROBERT", "RICHARD", "PETIT", "DURAND", "LEROY", "MOREAU"]
LABS = ["750000001", "130000012", "690000023", "330000034", "2A0000045"]  # a delivery comes from a few labs
FIRSTS = ["Jeanne", "Louis", "Marie", "Jean-Pierre", "Chloé", "Noé", "Inès", "Hugo"]


def canonical_rows(n_messages: int, seed: int = 20261101) -> pl.DataFrame:
    """Canonical rows for ``n_messages`` requests (panels drawn independently, at least one;
    a comment in 15% of them), deterministic."""
    rnd = random.Random(seed)
    cols: dict[str, list] = {n: [] for n in CANONICAL_SCHEMA.names()}
    t0 = datetime(2024, 1, 1, 7, 0)
    for m in range(n_messages):
        nir = f"{rnd.choice('12')}{rnd.randint(40, 99):02d}{rnd.randint(1, 12):02d}{rnd.randint(1, 95):02d}{rnd.randint(1, 999):03d}{rnd.randint(1, 999):03d}"
        nir += f"{97 - int(nir) % 97:02d}"
        patient = (nir, "1.2.250.1.213.1.4.8", rnd.choice(FAMILIES), rnd.choice(FIRSTS),
                   date(1940, 1, 1) + timedelta(days=rnd.randint(0, 29000)), rnd.choice("FM"),
                   f"{rnd.randint(1, 95):02d}{rnd.randint(0, 999):03d}")
        collected = t0 + timedelta(minutes=rnd.randint(0, 500_000))
        lab = rnd.choice(LABS)
        tests = [t for name, w in PANEL_WEIGHTS.items() if rnd.random() < w for t in PANELS[name]]
        tests = tests or list(PANELS["glycemie"])
        if rnd.random() < 0.15:
            tests.append(COMMENT)
        for k, (code, label, loinc, vt, unit) in enumerate(tests):
            if vt == "NM":
                raw = f"{rnd.uniform(0.1, 400):.1f}".replace(".", rnd.choice(".,"))
            elif vt == "SN":
                raw = rnd.choice(["<^0.5", "^12", ">^200", "^10^-^20"])
            elif vt == "CWE":
                raw = rnd.choice(["260373001^Détecté^SCT", "260415000^Non détecté^SCT"])
            elif vt == "TX":
                raw = rnd.choice(["Contrôle à 3 mois", "Prélèvement hémolysé\nà refaire", "Taux & ratio ~ normaux"])
            else:
                raw = rnd.choice(["A+", "O-", "AB+"])
            values = dict(
                file_id=None, line_no=None, message_id=None, source=None, lab_finess=lab, request_id=f"R{m:07d}",
                patient_nir=patient[0], ins_oid=patient[1], family_name=patient[2], first_name=patient[3],
                birth_date=patient[4], sex=patient[5], postal_code=patient[6], collected_at=collected,
                received_at=collected + timedelta(hours=2), validated_at=collected + timedelta(hours=5, minutes=k),
                local_code=code, local_label=label, loinc_code_src=loinc, value_type=vt, value_raw=raw,
                value_num=None, value_comparator=None, unit_raw=unit, ref_range="3.9-5.8" if vt == "NM" else None,
                abnormal_flag=rnd.choice(["N", "H", "L", None]), result_status="F", specimen="SER",
                observation_sub_id=None, observed_at=None, parse_issues=None,
            )
            for name, v in values.items():
                cols[name].append(v)
    return pl.DataFrame(cols, schema=CANONICAL_SCHEMA)


class Clock:
    """Wall-clock and CPU time (all threads of this process) of a block."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def run_biolake(path: Path) -> tuple[Clock, pl.DataFrame]:
    with Clock() as clock:
        chunks = list(hl7v2.parse(path, file_id="bench", source="bench"))
    rows = pl.concat([c.rows for c in chunks])
    return clock, rows


def _get(seg, *idx) -> str:
    """A component of a python-hl7 segment by 1-based indexes, '' when absent."""
    node = seg
    for i in idx:
        if isinstance(node, str):  # python-hl7 stops splitting where there is no delimiter
            if i != 1:
                return ""
            continue
        try:
            node = node(i)
        except (IndexError, KeyError):
            return ""
    return str(node)


def run_python_hl7(path: Path) -> tuple[Clock, int, dict[str, list[tuple]]]:
    """python-hl7 on the same file: read, split into messages, ``hl7.parse`` each, extract."""
    out: dict[str, list[tuple]] = {}
    with Clock() as clock:
        with path.open(encoding="utf-8", newline="") as fh:
            text = fh.read()
        messages = [m for m in re.split(r"(?=MSH\|)", text) if m.strip()]
        for raw in messages:
            m = hl7.parse(raw.rstrip("\r"))
            msg_id = _get(m.segment("MSH"), 10)
            pid = _get(m.segment("PID"), 3, 1, 1)
            fields = []
            for obx in m.segments("OBX"):
                # python-hl7 renders \.br\ as \r; biolake as \n
                value = m.unescape(str(obx(5))).replace("\r", "\n") if len(obx) > 5 else ""
                fields.append((pid, _get(obx, 3, 1, 1), value, _get(obx, 6, 1, 1)))
            out[msg_id] = fields
    return clock, len(messages), out


def compare(rows: pl.DataFrame, theirs: dict[str, list[tuple]], sample: int, seed: int = 1) -> int:
    """Number of sampled messages whose extracted fields differ."""
    ours: dict[str, list[tuple]] = {}
    for r in rows.select("message_id", "patient_nir", "local_code", "value_raw", "unit_raw").iter_rows():
        ours.setdefault(r[0], []).append(tuple("" if v is None else v for v in r[1:]))
    ids = sorted(theirs)
    picked = random.Random(seed).sample(ids, min(sample, len(ids)))
    bad = 0
    for mid in picked:
        if ours.get(mid) != theirs[mid]:
            bad += 1
            if bad <= 3:
                print(f"  mismatch in {mid}: biolake={ours.get(mid)} python-hl7={theirs[mid]}")
    return bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=100_000, help="ORU messages to generate (default 100,000)")
    ap.add_argument("--sample", type=int, default=1_000, help="messages whose fields are compared")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_hl7_") as tmp:
        path = Path(tmp) / "oru.hl7"
        t = time.perf_counter()
        df = canonical_rows(args.messages)
        n = write_hl7v2(df, path, id_prefix="B")
        print(f"generated {n:,} messages, {df.height:,} results ({df.height / n:.1f} per message), "
              f"{path.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - t:.1f} s")
        # warm both up on a small file (imports, regex compilation, caches), then time the big one
        warm = Path(tmp) / "warm.hl7"
        write_hl7v2(canonical_rows(200, seed=1), warm, id_prefix="W")
        run_biolake(warm)
        run_python_hl7(warm)
        ours, rows = run_biolake(path)
        theirs, n_theirs, extracted = run_python_hl7(path)
        print(f"biolake hl7v2 : {ours.wall:8.2f} s  {n / ours.wall:10,.0f} messages/s  "
              f"(CPU {ours.cpu:.2f} s, {n / ours.cpu:,.0f}/s; {rows.height:,} rows)")
        print(f"python-hl7    : {theirs.wall:8.2f} s  {n_theirs / theirs.wall:10,.0f} messages/s  "
              f"(CPU {theirs.cpu:.2f} s, {n_theirs / theirs.cpu:,.0f}/s)")
        wall_ratio = (n / ours.wall) / (n_theirs / theirs.wall)
        cpu_ratio = (n / ours.cpu) / (n_theirs / theirs.cpu)
        print(f"ratio         : {wall_ratio:8.1f}x wall clock, {cpu_ratio:.1f}x CPU time (target >= 20x)")
        bad = compare(rows, extracted, args.sample)
        checked = min(args.sample, n_theirs)
        print(f"fields check  : {checked - bad}/{checked} sampled messages identical "
              "(patient id, OBX-3 code, OBX-5 value, OBX-6 unit)")
        return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
