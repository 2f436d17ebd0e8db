"""The one place dbt is wired: the DbtProject, its translator and manifest preparation."""

from __future__ import annotations

import copy
import dataclasses
import functools
import importlib.metadata
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import dagster_dbt.core.resource
from dagster_dbt import DagsterDbtTranslator, DbtCliInvocation, DbtCliResource, DbtProject
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
    """dagster-dbt's resource, with dbt run inside this process and without two costs that
    upstream pays before every call.

    A dbt process spends about 6 s starting (importing dbt, compiling its dataclass codecs,
    validating the project's JSON schema) before 1-3 s of work on a small warehouse, three
    times per daily run. In this process dbt starts once and every later call costs its work
    (:class:`InProcessDbtInvocation`). Upstream also runs ``dbt --version`` in a subprocess and
    loads every macro to hold an adapter that only column metadata and row counts use, neither
    of which Strata fetches; the dbt here is the dbt-core of this environment, so its version
    is the installed package's.
    """

    @functools.cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(importlib.metadata.version("dbt-core"))

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> None:
        return None

    def cli(self, args: Sequence[str], **kwargs: Any) -> DbtCliInvocation:
        # upstream builds the command line, environment and target path, then hands them to
        # DbtCliInvocation.run: the one step swapped here
        upstream = dagster_dbt.core.resource
        with _DBT_CALLS:
            upstream.DbtCliInvocation = InProcessDbtInvocation
            try:
                return super().cli(args, **kwargs)
            finally:
                upstream.DbtCliInvocation = DbtCliInvocation


# dbt keeps global state (flags, adapters, event manager): one call at a time per process
_DBT_CALLS = threading.RLock()


class _InProcessCall:
    """The few attributes of a ``subprocess.Popen`` that DbtCliInvocation reads."""

    def __init__(self, args: Sequence[str]) -> None:
        self.args = list(args)
        self.returncode: int | None = None

    def wait(self, timeout: float | None = None) -> int | None:
        return self.returncode

    def poll(self) -> int | None:
        return self.returncode


@dataclass
class InProcessDbtInvocation(DbtCliInvocation):
    """A dbt call through dbt's programmatic entry point (``dbtRunner``) in this process.

    dbt sees the environment and working directory that dagster-dbt would give its process,
    for the call only, and starts from this process's parse of the project
    (:func:`parsed_manifest`) instead of parsing again. Its structured events arrive as the
    JSON lines of the process would, so dagster-dbt turns them into the same materialisations
    and check results. dbt-duckdb closes the warehouse at the end of each call (its last
    handle closes the file), so the steps after it open the file as before.
    """

    @classmethod
    def run(  # type: ignore[override]
        cls, args: Sequence[str], env: dict[str, str], **fields: Any
    ) -> InProcessDbtInvocation:
        if "dbt_project" in fields:
            fields["project"] = fields.pop("dbt_project")
        invocation = cls(process=_InProcessCall(args), **fields)  # type: ignore[arg-type]
        invocation._environment = env
        return invocation

    def _stream_stdout(self) -> Iterator[str | dict[str, Any]]:
        call = self.process
        if call.returncode is not None:  # already ran (is_successful reads the stream again)
            return
        events: list[dict[str, Any]] = []
        manifest = parsed_manifest()
        with _DBT_CALLS, _process_environment(self._environment, self.project_dir):
            from dbt.cli.main import dbtRunner
            from dbt_common.events.functions import msg_to_dict

            def collect(message: Any) -> None:
                # what dbt's process prints at its default level; debug events stay in dbt.log
                if message.info.level == "debug":
                    return
                event = msg_to_dict(message)
                if message.info.level == "error":
                    self._error_messages.append(message.info.msg)
                events.append(event)

            try:
                result = dbtRunner(manifest=manifest, callbacks=[collect]).invoke(call.args[1:])
            except BaseException:
                call.returncode = 2
                raise
            finally:
                _close_dbt_duckdb()
        if result.exception is not None:
            self._error_messages.append(f"{type(result.exception).__name__}: {result.exception}")
        call.returncode = 0 if result.success else (2 if result.exception is not None else 1)
        yield from events


def _close_dbt_duckdb() -> None:
    """Close the DuckDB database dbt-duckdb keeps open after a call.

    Its environment outlives the call holding an open connection (in a dbt process, exit
    closes it). Left open, the warehouse stays locked to that connection's configuration and
    a read-only open of the file in this process fails.
    """
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:  # another adapter
        return
    with DuckDBConnectionManager._LOCK:
        environment, DuckDBConnectionManager._ENV = DuckDBConnectionManager._ENV, None
    if environment is not None:
        environment.close()


@contextmanager
def _process_environment(env: dict[str, str], cwd: Path) -> Iterator[None]:
    """Run with exactly ``env`` and ``cwd`` (what dbt's process would have), then restore."""
    saved, saved_cwd = dict(os.environ), os.getcwd()
    os.environ.clear()
    # dagster-dbt asks its process for JSON lines on stdout; events come by callback here, so
    # the console stays quiet (dagster-dbt echoes each event's message itself)
    os.environ.update({"DBT_LOG_LEVEL_FILE": "debug", **env, "DBT_LOG_LEVEL": "none"})
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved)


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


PARSE_OUTPUTS = ("manifest.json", "semantic_manifest.json")


def _parse(project: DbtProject) -> None:
    """Parse, then swap the manifest into target/, where Dagster's definitions read it."""
    _parse_from_saved_state(Path(project.project_dir), project.target_path, PARSE_OUTPUTS)


# this process's parse of the project; each call gets a copy (dbt writes the compiled SQL into
# the manifest's nodes)
_PARSED: Any = None


def parsed_manifest() -> Any:
    """The project's dbt Manifest, parsed once per process; every dbt call starts from a copy.

    dbt would parse before every call: the first call in a home about 5 s (a full parse: the
    saved parse state is only reusable for the profile it was made with, and the profile
    holds the home's warehouse path), later calls 0.3-1.3 s (the partition window's variables
    change between calls). Nothing a parse records depends on the home or the run, though: the
    macros read STRATA_* variables when executing, never while parsing. So the parse runs in an
    environment without them (:func:`_parse_environment`), from the state saved in target/
    (by `strata prepare`, or by the last process whose parse changed it), and serves every
    call and every home of the process. A change to the project's files is picked up by the
    next process.
    """
    global _PARSED
    with _DBT_CALLS:
        if _PARSED is None:
            project = strata_dbt_project()
            _PARSED = _parse_from_saved_state(Path(project.project_dir), project.target_path, ())
        return _copy_manifest(_PARSED)


def _parse_from_saved_state(project_dir: Path, target_path: Path, outputs: Sequence[str]) -> Any:
    """Parse in a scratch folder of target/, starting from target/'s saved parse state; then
    swap ``outputs`` into target/, each with one rename, and the Manifest back.

    A process loading definitions (or seeding a parse) may read target/ at any moment, e.g.
    while `dg dev` re-parses next to a running `strata run`: it sees the old file or the new
    one, never half of one. The saved state is replaced when the parse changed it (a change to
    the project, or a state that no longer fits, e.g. another dbt version): the next process
    starts from it, so only one pays for a full parse.
    """
    target = project_dir / target_path
    target.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".parse-", dir=target))
    try:
        saved, state = target / "partial_parse.msgpack", scratch / "partial_parse.msgpack"
        if saved.exists():
            shutil.copyfile(saved, state)
        manifest = _parse_into(scratch, project_dir)
        if state.exists() and (not saved.exists() or state.read_bytes() != saved.read_bytes()):
            os.replace(state, saved)
        for name in outputs:
            if (scratch / name).exists():
                os.replace(scratch / name, target / name)
        return manifest
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _copy_manifest(manifest: Any) -> Any:
    """A deep copy of a dbt Manifest, by its dataclass fields.

    Not pickle or copy.deepcopy: dbt 1.11's Manifest.__reduce_ex__ leaves out two fields, so
    every field after them lands one or two places off (the copy's ref lookup is another
    lookup, and compiling any model fails). The lookups and caches (fields starting with _)
    are left to be rebuilt on first use, as after a parse.
    """
    fields = {
        field.name: copy.deepcopy(getattr(manifest, field.name))
        for field in dataclasses.fields(manifest)
        if field.init and not field.name.startswith("_")
    }
    return type(manifest)(**fields)


def _parse_into(target: Path, project_dir: Path) -> Any:
    """`dbt parse` in this process, in :func:`_parse_environment`; the Manifest."""
    with _DBT_CALLS, _process_environment(_parse_environment(), project_dir):
        from dbt.cli.main import dbtRunner

        try:
            result = dbtRunner().invoke(
                [
                    "parse",
                    "--quiet",
                    "--project-dir",
                    str(project_dir),
                    "--profiles-dir",
                    str(settings.DBT_PROJECT_DIR),
                    "--target-path",
                    str(target),
                ]
            )
        finally:
            _close_dbt_duckdb()
    if not result.success:
        raise RuntimeError(f"dbt could not parse {project_dir}: {result.exception}")
    return result.result


def _parse_environment() -> dict[str, str]:
    """This process's environment without the variables that differ between homes and runs
    (STRATA_*: the warehouse path, DuckDB's limits, the partition window, the salts) and
    without dbt's per-home target path: a parse made here is the same for every home."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("STRATA_") and name != "DBT_TARGET_PATH"
    }


def drop_old_calls(invocation_target: Path, keep_invocations: int = 20) -> None:
    """After a dbt call in this home's target folder (DBT_TARGET_PATH, set per home), drop all
    but the newest ``keep_invocations`` call folders, which would otherwise pile up run after
    run. A call made elsewhere leaves the home's folder alone."""
    base, target = (
        path if path.is_absolute() else settings.DBT_PROJECT_DIR / path
        for path in (Path(os.environ.get("DBT_TARGET_PATH", "target")), Path(invocation_target))
    )
    if target.parent != base:
        return
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
