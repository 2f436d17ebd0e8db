"""Fixtures shared by the integration modules."""

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from pipeline_sample import CAMPAIGNS, DAYS, END, PREVIOUS, SEED, USERS
from strata_processes import fast_directory

from dagster_project.cli import main
from dagster_project.lib.core import settings
from dagster_project.lib.sample.generator import generate_sample


@pytest.fixture(scope="session")
def pipeline_home(tmp_path_factory, dbt_manifest) -> settings.StrataPaths:
    """Generated sample data run through `strata run --start PREVIOUS --end END`: a published
    warehouse that test_pipeline checks and the crash-safety tests copy (one run, not two)."""
    home = tmp_path_factory.mktemp("pipeline")
    generate_sample(home, users=USERS, days=DAYS, seed=SEED, end_date=END, campaigns=CAMPAIGNS)
    exit_code = main(
        ["run", "--home", str(home), "--start", PREVIOUS.isoformat(), "--end", END.isoformat()]
    )
    assert exit_code == 0
    return settings.strata_paths(home)


@pytest.fixture
def pipeline_copy(pipeline_home, monkeypatch) -> Iterator[Path]:
    """A private copy of pipeline_home with its own Dagster instance, for a test that runs or
    breaks things: the session's published sample stays as every other test reads it."""
    with fast_directory("copy") as base:
        copy = base / "home"
        shutil.copytree(pipeline_home.home, copy)
        monkeypatch.setenv("DAGSTER_HOME", str(copy / "dagster"))
        monkeypatch.setenv("STRATA_HOME", str(copy))
        monkeypatch.setenv("DBT_TARGET_PATH", str(settings.strata_paths(copy).dbt_target))
        yield copy
