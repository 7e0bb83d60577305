"""`biolake mappings export` / `import` on a home whose run left a backlog: unit spellings merged
into one item, rejections remembered (not proposed again), the import's warnings and its summary
in sentences. Offline, temporary homes only, no pipeline run (the backlog table is written as a run
leaves it)."""

from __future__ import annotations

import polars as pl
from typer.testing import CliRunner

from flows.cli import app
from tests.test_terminology_official import _backlog, _home

runner = CliRunner()


def _export(home, out):
    res = runner.invoke(app, ["mappings", "export", "--home", str(home), "--out", str(out)], terminal_width=400)
    assert res.exit_code == 0, res.output
    return res.output, pl.read_csv(out, infer_schema=False)


def _import(home, queue):
    res = runner.invoke(app, ["mappings", "import", "--home", str(home), str(queue)], terminal_width=400)
    return res.exit_code, " ".join(res.output.split())


def test_rejections_are_remembered_and_the_summary_is_sentences(tmp_path):
    """QA: after a queue with CRP marked reject, the next export listed the same five suggestions
    again; the import printed `... ([PosixPath('/tmp/.../labo_zeta.csv')])`, and '0 approved
    mapping(s) written ... run `biolake run` to apply them' when nothing was approved."""
    home = _home(tmp_path)
    _backlog(home, [("labo_zeta", "CRP", "Protéine C réactive", "mg/l", 12, None),
                    ("labo_zeta", "ALB", "Albumine", "g/L", 9, "Sérum"),
                    ("labo_zeta", "ALB", "Albumine", "g/l", 3, "Sérum")])
    out, queue = _export(home, tmp_path / "q1.csv")
    assert "2 unmapped codes, 10 suggestions" in out  # g/L and g/l: one item
    first = queue.filter(pl.col("local_code") == "CRP")["loinc_num"].to_list()
    assert len(first) == 5
    # nothing decided: nothing imported, said so
    code, said = _import(home, tmp_path / "q1.csv")
    assert code == 0 and said == (f"No row of {tmp_path / 'q1.csv'} is marked approve or reject: nothing to import "
                                  "(undecided rows come back at the next export).")
    # every CRP suggestion rejected, nothing approved
    queue.with_columns(decision=pl.when(pl.col("local_code") == "CRP").then(pl.lit("reject")).otherwise(pl.lit(""))) \
        .write_csv(tmp_path / "q1.csv")
    code, said = _import(home, tmp_path / "q1.csv")
    remembered = home / "mappings" / "rejected" / "labo_zeta.csv"
    assert code == 0 and said == (f"No row of {tmp_path / 'q1.csv'} is approved: no mapping written. 5 rejected "
                                  f"suggestions remembered in {remembered}: they are not proposed again.")
    assert "PosixPath" not in said and not (home / "mappings" / "labo_zeta.csv").exists()
    assert pl.read_csv(remembered, infer_schema=False)["loinc_num"].sort().to_list() == sorted(first)
    # the next export proposes other codes for CRP, and says which were rejected
    out, queue = _export(home, tmp_path / "q2.csv")
    crp = queue.filter(pl.col("local_code") == "CRP")
    assert crp.height == 5 and not set(crp["loinc_num"]) & set(first)
    assert set(crp["notes"]) == {"rejected earlier, not proposed again: " + "; ".join(sorted(first))}
    assert "1 code(s) without the suggestions rejected earlier" in " ".join(out.split())
    # one approval: one sentence naming the file, singular
    alb = queue.filter((pl.col("local_code") == "ALB") & (pl.col("rank") == "1"))
    assert alb["notes"].item() == "unit written g/L; g/l (one item: same unit)"
    queue.with_columns(decision=pl.when((pl.col("local_code") == "ALB") & (pl.col("rank") == "1"))
                       .then(pl.lit("approve")).otherwise(pl.lit(""))).write_csv(tmp_path / "q2.csv")
    code, said = _import(home, tmp_path / "q2.csv")
    assert code == 0 and said == (f"1 approved mapping written to {home / 'mappings' / 'labo_zeta.csv'}; run "
                                  "`biolake run` to apply it and re-code the earlier results.")


def test_import_warnings_name_file_and_line(tmp_path):
    home = _home(tmp_path)
    queue = tmp_path / "q.csv"
    queue.write_text("decision,source,local_code,local_label,unit,specimen,loinc_num\n"
                     "approve,labo_zeta,NA,Natrémie,mEq/L,,2951-2\n", encoding="utf-8")
    code, said = _import(home, queue)
    assert code == 0 and said.startswith(f"warning: {queue}:2: unit 'mEq/L' (meq/L) on 2951-2")
    assert said.endswith("1 approved mapping written to "
                         f"{home / 'mappings' / 'labo_zeta.csv'}; run `biolake run` to apply it and re-code the "
                         "earlier results.")
