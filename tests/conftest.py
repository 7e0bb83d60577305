"""Shared fixtures: a generated landing area and the pipeline run on it under the Prefect test harness.

Everything is written under pytest's temporary directories; nothing touches the repository.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
TEST_SECRET = "test-secret-only-for-tests"
os.environ["BIOLAKE_PSEUDONYM_SECRET"] = TEST_SECRET


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    """One Prefect test harness (temporary database) for the whole session."""
    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect_home"))
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="session")
def generated(tmp_path_factory) -> Path:
    """A small generated landing area + truth, shared read-only; copy it before running on it."""
    from transforms.synthetic import generate

    home = tmp_path_factory.mktemp("generated")
    generate(home, n_results=20_000, seed=7, days=7)
    return home


@pytest.fixture(scope="session")
def generated_mixed(tmp_path_factory) -> Path:
    """Like ``generated``, with three labs sending HL7 v2, CR-BIO CDA and HPRIM (the demo's mix)."""
    from transforms.synthetic import MIXED_FORMATS, generate

    home = tmp_path_factory.mktemp("generated_mixed")
    generate(home, n_results=20_000, seed=8, days=7, formats=MIXED_FORMATS)
    return home


@pytest.fixture
def fresh_home(generated, tmp_path) -> Path:
    """A private copy of the generated data home (landing + truth), nothing processed yet."""
    home = tmp_path / "home"
    shutil.copytree(generated, home)
    return home


@pytest.fixture(scope="session")
def clean_run(prefect_harness, generated, tmp_path_factory):
    """The pipeline run once on a copy of the generated data: (home, summary). Read-only for tests:
    a test that runs again or adds files works on its own copy (see copy_home)."""
    from flows.pipeline import pipeline

    home = tmp_path_factory.mktemp("clean_run") / "home"
    shutil.copytree(generated, home)
    summary = pipeline(home=str(home))
    return home, summary


@pytest.fixture(scope="session")
def mixed_run(prefect_harness, generated_mixed, tmp_path_factory):
    """The pipeline run once on a copy of the mixed-format landing: (home, summary). Read-only."""
    from flows.pipeline import pipeline

    home = tmp_path_factory.mktemp("mixed_run") / "home"
    shutil.copytree(generated_mixed, home)
    summary = pipeline(home=str(home))
    return home, summary
