"""The one place dbt is wired: the DbtProject, its translator and manifest preparation."""

import functools
import importlib.metadata
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject
from dagster_dbt.dbt_project import using_dagster_dev
from packaging import version

from dagster_project.lib.core import settings


@functools.cache
def strata_dbt_project() -> DbtProject:
    project = DbtProject(
        project_dir=settings.DBT_PROJECT_DIR, profiles_dir=settings.DBT_PROJECT_DIR
    )
    # `dg dev` re-parses on start; everything else uses the manifest prepared at setup time
    # (`make prepare` / `strata prepare`), so loading definitions never runs dbt. Not
    # `project.prepare_if_dev()`: it looks for `dbt` on PATH, which an unactivated venv lacks.
    if using_dagster_dev():
        _parse(project)
    return project


class StrataDbtCliResource(DbtCliResource):
    """dagster-dbt's resource without two costs paid before every dbt call (about 8 s of a
    300-user run's 10 s dbt step on this machine).

    Upstream runs ``dbt --version`` in a subprocess to learn the version, and loads every macro
    of the project in-process to hold a dbt adapter that only column metadata and row counts
    use, neither of which Strata fetches. The dbt here is the dbt-core of this environment
    (:func:`dbt_executable`), so its version is the installed package's.
    """

    @functools.cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(importlib.metadata.version("dbt-core"))

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> None:
        return None


def strata_dbt_resource() -> StrataDbtCliResource:
    """The dbt resource of every run and of manifest preparation."""
    return StrataDbtCliResource(project_dir=strata_dbt_project(), dbt_executable=dbt_executable())


def dbt_executable() -> str:
    """dbt from this environment, also when the venv is not activated (e.g. `.venv/bin/strata`)."""
    beside_python = Path(sys.executable).parent / "dbt"
    return str(beside_python) if beside_python.exists() else "dbt"


def prepare_manifest() -> None:
    """Run `dbt parse` now (setup time, the CLI, the test session)."""
    _parse(strata_dbt_project())


PARSE_OUTPUTS = ("manifest.json", "partial_parse.msgpack", "semantic_manifest.json")


def _parse(project: DbtProject) -> None:
    """Parse into a scratch folder, then swap the outputs in, each with one rename.

    A process loading definitions (or a dbt call seeding from the parse state) may read
    target/ at any moment, e.g. while `dg dev` re-parses next to a running `strata run`: it
    must see the old manifest or the new one, never half a file.
    """
    target = Path(project.project_dir) / project.target_path
    target.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".parse-", dir=target))
    try:
        dbt = StrataDbtCliResource(project_dir=project, dbt_executable=dbt_executable())
        dbt.cli(["parse", "--quiet"], target_path=scratch).wait()
        for name in PARSE_OUTPUTS:
            if (scratch / name).exists():
                os.replace(scratch / name, target / name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def keep_parse_state(invocation_target: Path, keep_invocations: int = 20) -> None:
    """Save a finished dbt call's parse state where dagster-dbt seeds the next call from.

    dbt re-parses the whole project (seconds per call) unless the saved state was made for the
    same profile, and the profile holds this home's warehouse path: so each home keeps its own
    (DBT_TARGET_PATH, set per home). Also drops all but the newest ``keep_invocations`` call
    folders, which would otherwise pile up run after run.
    """
    base, target = (
        path if path.is_absolute() else settings.DBT_PROJECT_DIR / path
        for path in (Path(os.environ.get("DBT_TARGET_PATH", "target")), Path(invocation_target))
    )
    state = target / "partial_parse.msgpack"
    if not state.exists() or target.parent != base:
        return
    partial = base / "partial_parse.msgpack.tmp"
    shutil.copyfile(state, partial)
    os.replace(partial, base / "partial_parse.msgpack")
    calls = sorted(
        (p for p in base.iterdir() if p.is_dir() and (p / "manifest.json").exists()),
        key=lambda p: p.stat().st_mtime,
    )
    for old in calls[:-keep_invocations]:
        shutil.rmtree(old, ignore_errors=True)


def manifest_path() -> str:
    path = strata_dbt_project().manifest_path
    if not path.exists():
        raise FileNotFoundError(
            f"dbt manifest {path} is missing: run `make prepare` or `strata prepare` first"
        )
    return str(path)


class StrataDbtTranslator(DagsterDbtTranslator):
    """Asset keys are the relation BI users query ([schema, table]); groups follow folders."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        name = dbt_resource_props.get("alias") or dbt_resource_props["name"]
        if dbt_resource_props["resource_type"] == "source":
            name = dbt_resource_props.get("identifier") or dbt_resource_props["name"]
        return dg.AssetKey([dbt_resource_props["schema"], name])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        fqn = dbt_resource_props.get("fqn") or []
        grouped = dbt_resource_props["resource_type"] in ("model", "seed")  # seeds/<folder>/
        return fqn[1] if grouped and len(fqn) > 2 else None
