"""Session-wide test environment: a throwaway STRATA_HOME / DAGSTER_HOME and one dbt parse."""

import os
import shutil
import tempfile
from pathlib import Path

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


_RAM_BASETEMP = pytest.StashKey[Path]()


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Every temporary directory of the session in RAM (/dev/shm) when there is one.

    Dagster's SQLite storage syncs the disk on every event, and a small `strata run` records
    about 1,500: on a disk that is some 15 s a run. Only without an explicit --basetemp; the
    folder is removed at the end of the session.
    """
    shm = Path("/dev/shm")
    if config.option.basetemp is None and shm.is_dir() and os.access(shm, os.W_OK):
        config.option.basetemp = tempfile.mkdtemp(prefix="strata-pytest-", dir=shm)
        config.stash[_RAM_BASETEMP] = Path(config.option.basetemp)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _RAM_BASETEMP in config.stash:
        shutil.rmtree(config.stash[_RAM_BASETEMP], ignore_errors=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Groups for `pytest -n` (xdist's loadgroup), and the postgres skip.

    A worker builds the session and module fixtures its tests use. Every test reading the
    shared pipeline sample (`pipeline_home`, one `strata run` of a minute and more) is in one
    group, so one worker builds it; every other module is a group of its own, so a module's
    fixtures (the shipped mappings' four runs, a generated sample) are built once.

    The postgres tests need Debian's PostgreSQL server: `make test-postgres` (a CI step of
    its own) runs them; the default suite skips them."""
    for item in items:
        shares_the_sample = "pipeline_home" in getattr(item, "fixturenames", ())
        group = "pipeline_home" if shares_the_sample else item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))
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
