"""Fixtures shared by the integration modules."""

import pytest
from pipeline_sample import DAYS, END, PREVIOUS, SEED, USERS

from dagster_project.cli import main
from dagster_project.lib.core import settings
from dagster_project.lib.sample.generator import generate_sample


@pytest.fixture(scope="session")
def pipeline_home(tmp_path_factory, dbt_manifest) -> settings.StrataPaths:
    """Generated sample data run through `strata run --start PREVIOUS --end END`: a published
    warehouse that test_pipeline checks and the crash-safety tests copy (one run, not two)."""
    home = tmp_path_factory.mktemp("pipeline")
    generate_sample(home, users=USERS, days=DAYS, seed=SEED, end_date=END)
    exit_code = main(
        ["run", "--home", str(home), "--start", PREVIOUS.isoformat(), "--end", END.isoformat()]
    )
    assert exit_code == 0
    return settings.strata_paths(home)
