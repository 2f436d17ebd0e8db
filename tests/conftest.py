"""Session-wide test environment: a throwaway STRATA_HOME / DAGSTER_HOME and one dbt parse."""

import os

import pytest

from dagster_project.lib.core import settings


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-definitions-snapshot",
        action="store_true",
        help="rewrite tests/integration/definitions_snapshot.txt from the current definitions",
    )
    parser.addoption(
        "--postgres",
        action="store_true",
        help="run the tests marked postgres (a throwaway PostgreSQL server; make test-postgres)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The postgres tests need Debian's PostgreSQL server: `make test-postgres` (a CI step of
    its own) runs them; the default suite skips them."""
    if config.getoption("--postgres"):
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL: run `make test-postgres`")
    for item in items:
        if item.get_closest_marker("postgres"):
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def isolated_environment(tmp_path_factory):
    """Never touch the developer's ./.strata or Dagster instance from a test."""
    base = tmp_path_factory.mktemp("strata-session")
    saved = dict(os.environ)
    os.environ["DAGSTER_HOME"] = str(base / "dagster")
    (base / "dagster").mkdir()
    # most tests run on generated sample data, the one mode with a built-in PII salt
    settings.export_runtime_environment(base / "home", sample_data=True)
    yield base
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def dbt_manifest(isolated_environment):
    """Parse the dbt project once per session (the manifest Dagster loads assets from)."""
    from dagster_project.defs.transform.project import prepare_manifest, strata_dbt_project

    prepare_manifest()
    return strata_dbt_project().manifest_path


@pytest.fixture(scope="session")
def definitions(dbt_manifest):
    from dagster_project.definitions import defs

    return defs()
