"""The quality gate's suite cut_last_lines: a lab whose recent CSV files all end without a line break
loses each file's last line to quarantine as a truncated delivery (docs/formats.md); the gate names
it, once it is every file and not a cut transfer now and then. Hand-made extracts, temporary homes."""

from __future__ import annotations

from flows.quality_gate import run_quality_gate
from quality import summaries as S
from tests.epi_support import run_steps
from tests.helpers import HEADER, line


def _deliver(home, lab: str, name: str, request: str, ends_with_newline: bool) -> None:
    folder = home / "landing" / lab
    folder.mkdir(parents=True, exist_ok=True)
    text = "\n".join([HEADER, line(N_DEMANDE=f"{request}a"), line(N_DEMANDE=f"{request}b")])
    (folder / name).write_text(text + ("\n" if ends_with_newline else ""), encoding="utf-8")


def test_the_gate_names_a_lab_whose_recent_csv_files_all_end_cut(tmp_path):
    home = tmp_path / "home"
    # every file without its final line break: named
    _deliver(home, "labo_alpha", "a1.csv", "A1", False)
    _deliver(home, "labo_alpha", "a2.csv", "A2", False)
    # a cut now and then: not named
    _deliver(home, "labo_beta", "b1.csv", "B1", False)
    _deliver(home, "labo_beta", "b2.csv", "B2", True)
    # a single file: its rhythm is unknown, not named
    _deliver(home, "labo_gamma", "g1.csv", "G1", False)
    ctx, _ = run_steps(home)

    con = S.connect(ctx.wh)
    try:
        got = S.cut_last_lines(con, S.Sources(ctx.wh, con), 5)
    finally:
        con.close()
    assert got.select("source", "n_recent_files", "n_ending_cut", "systematic").rows() == [
        ("labo_alpha", 2, 2, 1), ("labo_beta", 2, 1, 0), ("labo_gamma", 1, 1, 0)]

    gate = run_quality_gate(ctx)
    named = [w for w in gate["warnings"] if w.startswith("cut_last_lines:")]
    assert gate["ok"] and len(named) == 1 and "labo_alpha" in named[0], gate["warnings"]
    assert "labo_beta" not in named[0] and "labo_gamma" not in named[0]


def test_only_the_most_recent_files_count(tmp_path):
    """A lab that fixed its export is no longer named: its newest files end with a line break."""
    home = tmp_path / "home"
    for i in range(3):
        _deliver(home, "labo_alpha", f"old{i}.csv", f"O{i}", False)
    run_steps(home, "run-1")
    for i in range(2):
        _deliver(home, "labo_alpha", f"new{i}.csv", f"N{i}", True)
    ctx, _ = run_steps(home, "run-2")
    con = S.connect(ctx.wh)
    try:
        assert S.cut_last_lines(con, S.Sources(ctx.wh, con), 2).rows() == [("labo_alpha", 2, 0, 0)]
        assert S.cut_last_lines(con, S.Sources(ctx.wh, con), 5).rows() == [("labo_alpha", 5, 3, 0)]
    finally:
        con.close()
    gate = run_quality_gate(ctx)
    assert not [w for w in gate["warnings"] if w.startswith("cut_last_lines:")], gate["warnings"]
