"""The docs say what the code does (QA newcomer N8, N11): no to-do list written as if it were the
product, no pointer to a file a fresh clone does not have without saying so, the schedules as served."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _text(rel: str) -> str:
    return (REPO / rel).read_text(encoding="utf-8")


def test_privacy_page_describes_the_code_not_a_to_do_list():
    from flows.settings import Settings
    from quality.reasons import REASONS

    text = _text("docs/privacy.md")
    assert "to add to" not in text and "read when it exists" not in text
    assert "UNSAFE_FILE_NAME" in REASONS and "`UNSAFE_FILE_NAME` (in `quality/reasons.py`)" in text
    assert "identity_retention_days" in Settings.model_fields
    assert "BIOLAKE_IDENTITY_RETENTION_DAYS" in text


def test_readme_says_the_benchmark_results_are_written_locally_not_shipped():
    ignored = [line.strip() for line in _text(".gitignore").splitlines()]
    assert "/bench/results/" in ignored  # so a fresh clone has no bench/results/latest.*
    readme = _text("README.md")
    assert "bench/results/latest" in readme
    assert re.search(r"`bench/results/` is git-ignored", readme)


def test_each_deployment_does_something_of_its_own_and_the_operations_page_lists_them():
    """QA N8: `weekly-mdo` was the flow and parameters of `daily-indicators`, re-issuing on Mondays what the
    06:00 run had written. No two deployments run the same flow with the same parameters, and the
    operations page's table lists exactly the deployments `biolake serve` serves."""
    from flows.deployments import deployments

    deps = deployments("/nonexistent/home")
    runs = [(d.flow_name, tuple(sorted(d.parameters.items()))) for d in deps]
    assert len(set(runs)) == len(runs), runs
    served = {f"{d.flow_name}/{d.name}" for d in deps}
    text = _text("docs/operations.md")
    section = text[text.index("## Schedules and the Prefect UI"):text.index("### An existing Prefect server")]
    table = set(re.findall(r"^\| `(biolake-[a-z-]+/[a-z0-9-]+)` \|", section, re.MULTILINE))
    assert table == served, (table, served)
