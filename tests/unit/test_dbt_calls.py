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
