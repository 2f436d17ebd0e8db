"""What a dbt call costs beyond dbt's own work: no version subprocess, no in-process adapter,
and one parse per process that serves every call and every home."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from dagster_project.defs.transform.project import drop_old_calls, strata_dbt_resource
from dagster_project.lib.core import settings


def _invocation(base: Path, name: str) -> Path:
    folder = base / name
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text("{}")
    return folder


def test_a_finished_call_drops_the_oldest_calls_of_its_home_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("STRATA_HOME", "DBT_TARGET_PATH"):  # restored after the test
        monkeypatch.setenv(name, os.environ.get(name, ""))
    settings.export_runtime_environment(tmp_path, sample_data=True)
    base = Path(os.environ["DBT_TARGET_PATH"])
    assert base == tmp_path / "dbt_target"
    for i in range(4):
        old = _invocation(base, f"old-{i}")
        os.utime(old, (time.time() - 100 + i, time.time() - 100 + i))
    drop_old_calls(_invocation(base, "dbt_daily-1"), keep_invocations=3)
    assert sorted(p.name for p in base.iterdir() if p.is_dir()) == [
        "dbt_daily-1",
        "old-2",
        "old-3",
    ]
    # a call outside this home's folder never touches it
    drop_old_calls(_invocation(tmp_path / "elsewhere", "x"), keep_invocations=1)
    assert len([p for p in base.iterdir() if p.is_dir()]) == 3


def test_the_dbt_resource_starts_no_process_and_loads_no_macros_before_the_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.metadata

    import dagster_dbt.core.resource as upstream

    def no_subprocess(*args: object, **kwargs: object) -> bytes:
        raise AssertionError(f"dbt resource started a process: {args}")

    monkeypatch.setattr(upstream, "check_output", no_subprocess)
    resource = strata_dbt_resource()
    assert str(resource._cli_version) == importlib.metadata.version("dbt-core")
    assert resource._initialize_dbt_core_adapter(["build"]) is None


def test_one_parse_serves_every_home_and_its_state_the_next_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dbt parses once per process, whatever the home and the STRATA_* variables (the salt
    need not be set); a process that finds no saved parse state leaves one, and one whose
    parse changed nothing leaves it as it was."""
    from dagster_dbt import DbtProject

    from dagster_project.defs.transform import project

    target = tmp_path / "target"
    monkeypatch.setattr(
        project,
        "strata_dbt_project",
        lambda: DbtProject(project_dir=settings.DBT_PROJECT_DIR, target_path=target),
    )
    parses = []
    parse_into = project._parse_into
    monkeypatch.setattr(project, "_parse_into", lambda *a: parses.append(a) or parse_into(*a))
    monkeypatch.delenv("STRATA_PII_SALT", raising=False)
    saved = target / "partial_parse.msgpack"
    manifests = []
    for process in ("first", "second"):
        monkeypatch.setattr(project, "_PARSED", None)  # a new process
        for home in ("a", "b"):
            monkeypatch.setenv("STRATA_HOME", str(tmp_path / process / home))
            monkeypatch.setenv("STRATA_MIN_DATE", f"2026-01-0{len(manifests) + 1}")
            manifests.append(project.parsed_manifest())
        if process == "first":
            assert saved.exists()
            state, written = saved.read_bytes(), saved.stat().st_mtime_ns
    assert len(parses) == 2  # one per process
    assert saved.read_bytes() == state and saved.stat().st_mtime_ns == written
    assert len({id(manifest) for manifest in manifests}) == 4  # each call gets its own copy
    nodes = [sorted(manifest.nodes) for manifest in manifests]
    assert nodes[0] == nodes[3] and "model.strata.user_360" in nodes[0]
    for manifest in manifests:  # each copy resolves refs (compiling a model needs it)
        found = manifest.ref_lookup.find("user_360", None, None, manifest)
        assert found.unique_id == "model.strata.user_360" and found.database == "warehouse"
        assert manifest.fixtures.keys() == manifests[0].fixtures.keys()
    assert not list(tmp_path.glob("*/*/dbt_target"))  # nothing parsed into a home


def test_a_model_that_does_not_parse_fails_with_dbts_message(tmp_path: Path) -> None:
    import shutil

    from dagster_project.defs.transform import project

    copy = tmp_path / "dbt"
    shutil.copytree(settings.DBT_PROJECT_DIR, copy, ignore=shutil.ignore_patterns("target", "logs"))
    (copy / "models" / "marts" / "user_360.sql").write_text("select {{ ref('no_such_model') }}")
    with pytest.raises(RuntimeError) as failure:
        project._parse_from_saved_state(copy, Path("target"), ())
    assert "user_360" in str(failure.value) and "no_such_model" in str(failure.value)
