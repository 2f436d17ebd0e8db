"""A run that fails or is killed after ingestion has its days built again by the next run.

The catch-up's ingestion commits before its dbt step; were the next run to go by the landing
files alone, those days would count as ingested and their daily facts would never be built.
The Dagster jobs are replaced by a scripted runner here: what is tested is which days each
run is asked to build.
"""

from datetime import date

import pytest

from dagster_project import pipeline_run
from dagster_project.lib.core import settings

DAYS = [date(2024, 1, d) for d in range(1, 6)]


class ScriptedRunner:
    """Records the jobs asked for; each returns the next scripted outcome."""

    def __init__(self, outcomes: list[bool]) -> None:
        self.outcomes = outcomes
        self.calls: list[tuple[str, str | None, str | None]] = []
        self.instance = None
        self.log_file = None
        self.passed: list[str] = []
        self.failed: list[str] = []
        self.stage_seconds: dict[str, float] = {}

    def run(self, job_name: str, label: str, **kwargs) -> bool:
        tags = kwargs.get("tags", {})
        first = tags.get(pipeline_run.RANGE_START_TAG) or kwargs.get("partition_key")
        self.calls.append((job_name, first, tags.get(pipeline_run.RANGE_END_TAG)))
        return self.outcomes.pop(0)


@pytest.fixture
def home(tmp_path, monkeypatch) -> settings.StrataPaths:
    monkeypatch.setattr(pipeline_run, "_landed_days", lambda paths: DAYS)
    monkeypatch.setattr(pipeline_run, "_check_partition_start", lambda landed: None)
    monkeypatch.setattr(pipeline_run, "_load_definitions", lambda landed: None)
    monkeypatch.setattr(pipeline_run, "_fail_abandoned_runs", lambda instance: [])
    return settings.strata_paths(tmp_path)


def run(monkeypatch, home, stale: list[date], outcomes: list[bool]) -> tuple[list, list[str]]:
    runner = ScriptedRunner(outcomes)
    monkeypatch.setattr(pipeline_run, "_stale_days", lambda paths, say: stale)
    monkeypatch.setattr(pipeline_run, "_JobRunner", lambda definitions, paths, verbose: runner)
    said: list[str] = []
    pipeline_run._run_locked(home, None, None, None, None, False, said.append)
    return runner.calls, said


def test_a_failed_catch_up_is_built_again_though_its_days_are_ingested(monkeypatch, home):
    ingest, daily = pipeline_run.INGEST_JOB, pipeline_run.DAILY_JOB
    calls, _ = run(monkeypatch, home, stale=DAYS, outcomes=[False])
    assert calls == [(ingest, "2024-01-01", "2024-01-04")]  # failed: no snapshot either

    # nothing is stale any more (ingestion committed), yet days 1-4 and the snapshot come back
    calls, said = run(monkeypatch, home, stale=[], outcomes=[True, True])
    assert calls == [(ingest, "2024-01-01", "2024-01-04"), (daily, "2024-01-05", None)]
    assert "  of which 4 ingested before but never built: an earlier run failed" in said

    calls, said = run(monkeypatch, home, stale=[], outcomes=[True])
    assert calls == [(daily, "2024-01-05", None)]
    assert not (home.home / pipeline_run.UNFINISHED_DAYS_FILE).exists()


def test_a_failed_or_killed_snapshot_day_is_caught_up_once_a_later_day_lands(monkeypatch, home):
    ingest, daily = pipeline_run.INGEST_JOB, pipeline_run.DAILY_JOB
    calls, _ = run(monkeypatch, home, stale=[DAYS[-1]], outcomes=[False])
    assert calls == [(daily, "2024-01-05", None)]

    # a process killed mid-run never reports: its days were listed before it started
    pipeline_run.write_unfinished_days(home, {DAYS[1]} | pipeline_run.read_unfinished_days(home))
    monkeypatch.setattr(pipeline_run, "_landed_days", lambda paths: [*DAYS, date(2024, 1, 6)])
    calls, _ = run(monkeypatch, home, stale=[date(2024, 1, 6)], outcomes=[True, True])
    assert calls == [(ingest, "2024-01-02", "2024-01-05"), (daily, "2024-01-06", None)]
    assert pipeline_run.read_unfinished_days(home) == set()
