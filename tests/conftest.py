"""Session-wide test environment: a throwaway STRATA_HOME / DAGSTER_HOME and one dbt parse."""

import functools
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
    """The postgres tests need Debian's PostgreSQL server: `make test-postgres` (a CI step of
    its own) runs them; the default suite skips them."""
    if config.getoption("--postgres"):
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL: run `make test-postgres`")
    for item in items:
        if item.get_closest_marker("postgres"):
            item.add_marker(skip)


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """`make test` runs on every core (pytest -n): a module's tests go to one worker together.

    A worker builds every session and module fixture its tests use. The modules that read
    the shared pipeline sample (`pipeline_home`, a `strata run` of a minute) are one unit of
    work, so one worker builds it; every other module is its own, so its fixtures (the
    shipped mappings' four runs, a generated sample) are built once. (xdist's loadgroup would
    say this with marks, but it renames node ids in a way pytest 9 no longer reads.)
    """
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "pipeline_home" if _reads_the_shared_sample(config.rootpath / module) else module

    return ModuleScheduling(config, log)


@functools.cache
def _reads_the_shared_sample(module: Path) -> bool:
    text = module.read_text(encoding="utf-8") if module.is_file() else ""
    return "pipeline_home" in text or "pipeline_copy" in text


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
