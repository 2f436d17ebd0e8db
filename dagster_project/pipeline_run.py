"""One `strata run`: lock, staging, catch-up ingestion, abandoned runs, the daily job per
snapshot, and a report of what passed and failed. The CLI parses arguments and prints; this
module decides what runs, in the persistent Dagster instance at $DAGSTER_HOME, so the runs
appear in the UI's run history."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from dagster_project.lib.core import settings

DAILY_JOB = "strata_daily"
INGEST_JOB = "strata_ingest"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
WARNING_PREFIX = "(warning, not blocking) "
# Runs this module starts carry it, so a later run can tell its own abandoned runs (the
# process was killed) from runs the UI launched.
LAUNCHED_BY_TAG = "strata/launched_by"
# How long a run waits for another process to let go of the warehouse (a dbt child of a
# killed run finishing its model, a BI tool wrongly pointed at warehouse.duckdb).
WAREHOUSE_WAIT_SECONDS = 600.0

Say = Callable[[str], None]

#: Dagster step keys -> the stage a run's time is reported under; the first marker found wins.
STAGES: tuple[tuple[str, str], ...] = (
    ("passes_expectations", "GX validations"),
    ("ingest_", "ingestion"),
    ("dbt_unpartitioned", "dbt: staging + dimensions"),
    ("dbt_daily", "dbt: daily facts"),
    ("dbt_snapshot", "dbt: snapshot marts"),
    ("features__", "features"),
    ("segment_clusters", "segmentation fit/score"),
    ("user_segments_daily", "segmentation fit/score"),
    ("segment_catalog", "segmentation fit/score"),
    ("value_backtests", "value backtests"),
    ("customer_value", "value fit/score"),
    ("user_value_daily", "value fit/score"),
    ("campaign_effects", "campaign evaluation"),
    ("serving__", "publish"),
)


def stage_of(step_key: str) -> str:
    """The stage a Dagster step belongs to (see STAGES); other asset checks otherwise."""
    return next((stage for marker, stage in STAGES if marker in step_key), "other checks")


def stage_tags(stage_seconds: dict[str, float]) -> dict[str, str]:
    """Run tags `strata/seconds.<stage>` (Dagster tag keys allow letters, digits, `_-./`)."""
    return {
        "strata/seconds." + re.sub(r"[^a-z0-9]+", "_", stage.lower()).strip("_"): f"{sec:.1f}"
        for stage, sec in stage_seconds.items()
    }


def step_times(instance, run_id: str) -> list[tuple[str, float, float]]:
    """(step key, start, end) of every finished step of one Dagster run (epoch seconds)."""
    return [
        (step.step_key, step.start_time, step.end_time)
        for step in instance.get_run_step_stats(run_id)
        if step.start_time and step.end_time
    ]


def step_durations(instance, run_id: str) -> list[tuple[str, float]]:
    """(step key, seconds) of every finished step of one Dagster run."""
    return [(key, end - start) for key, start, end in step_times(instance, run_id)]


class RunRefused(Exception):
    """The run cannot start (bad settings, dates or sources, a busy data directory)."""


@dataclass
class RunReport:
    """What one run did: the days it ingested and built, and every check's outcome."""

    ok: bool
    log_file: Path | None
    snapshots: list[date]
    caught_up: list[date] = field(default_factory=list)
    abandoned_runs: list[str] = field(default_factory=list)
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    #: seconds spent in each stage's Dagster steps, over all the runs this command started
    stage_seconds: dict[str, float] = field(default_factory=dict)


def snapshot_dates(
    landed: list[date], day: date | None = None, start: date | None = None, end: date | None = None
) -> list[date]:
    """The snapshots to build: one day, a range, or else the latest landed day."""
    if day:
        return [day]
    if start or end:
        if not (start and end):
            raise RunRefused("--start and --end go together")
        if end < start:
            raise RunRefused("--end is before --start")
        return [start + timedelta(days=i) for i in range((end - start).days + 1)]
    if not landed:
        raise RunRefused("no landing files found; run `strata generate` first")
    return [landed[-1]]


def run_pipeline(
    paths: settings.StrataPaths,
    *,
    sources: Path | None = None,
    day: date | None = None,
    start: date | None = None,
    end: date | None = None,
    verbose: bool = False,
    wait: float = 0.0,
    say: Say = print,
) -> RunReport:
    """Run the pipeline for the given snapshots (default: the latest landed day) under the data
    directory's run lock; raises RunRefused before anything runs when it cannot start."""
    from dagster_project.lib.core.run_lock import RunLock, RunLockBusy, stop_leftover_processes

    lock = RunLock(paths.home)
    try:
        lock.acquire(timeout=wait)
    except RunLockBusy as exc:
        raise RunRefused(str(exc)) from exc
    try:
        if stopped := stop_leftover_processes(paths.home):
            pids = ", ".join(map(str, stopped))
            say(f"stopped {len(stopped)} process(es) left running by a killed run: {pids}")
        return _run_locked(paths, sources, day, start, end, verbose, say)
    finally:
        lock.release()


def _run_locked(
    paths: settings.StrataPaths,
    sources: Path | None,
    day: date | None,
    start: date | None,
    end: date | None,
    verbose: bool,
    say: Say,
) -> RunReport:
    if sources:
        _stage_sources(sources, paths, say)
    landed = _landed_days(paths)
    _check_partition_start(landed)
    snapshots = snapshot_dates(landed, day, start, end)
    stale = _stale_days(paths, say)
    unfinished = read_unfinished_days(paths)
    catch_up = sorted((set(stale) | unfinished) - set(snapshots))
    definitions = _load_definitions(landed)
    runner = _JobRunner(definitions, paths, verbose)
    report = RunReport(ok=True, log_file=None if verbose else runner.log_file, snapshots=snapshots)
    report.abandoned_runs = _fail_abandoned_runs(runner.instance)
    if report.abandoned_runs:
        ids = ", ".join(report.abandoned_runs)
        say(f"marked {len(report.abandoned_runs)} abandoned run(s) as failed: {ids}")
    # written before anything runs, so that a killed process leaves them listed too
    write_unfinished_days(paths, unfinished | set(catch_up) | set(snapshots))
    if catch_up:
        say(f"ingesting {len(catch_up)} landed day(s) {catch_up[0]} .. {catch_up[-1]} in one run")
        if redo := sorted(set(catch_up) - set(stale)):
            say(f"  of which {len(redo)} ingested before but never built: an earlier run failed")
        report.caught_up = catch_up
        tags = {RANGE_START_TAG: catch_up[0].isoformat(), RANGE_END_TAG: catch_up[-1].isoformat()}
        report.ok = runner.run(INGEST_JOB, f"ingesting {len(catch_up)} day(s)", tags=tags)
        if report.ok:
            unfinished -= set(catch_up)
            write_unfinished_days(paths, unfinished | set(snapshots))
    for snapshot in snapshots:
        if not report.ok:
            break
        say(f"building snapshot {snapshot}")
        report.ok = runner.run(
            DAILY_JOB, f"snapshot {snapshot}", partition_key=snapshot.isoformat()
        )
        if report.ok:
            unfinished.discard(snapshot)
            write_unfinished_days(paths, unfinished | {d for d in snapshots if d > snapshot})
    report.passed, report.failed = runner.passed, runner.failed
    report.stage_seconds = dict(runner.stage_seconds)
    return report


# Days a `strata run` was asked to build and did not finish: a failed step or a killed process
# after ingestion committed. Their landing files are ingested as they are, so they are not
# stale, but their daily facts were never built: the next run builds them again.
UNFINISHED_DAYS_FILE = "unfinished-days.json"


def read_unfinished_days(paths: settings.StrataPaths) -> set[date]:
    path = paths.home / UNFINISHED_DAYS_FILE
    if not path.exists():
        return set()
    return {date.fromisoformat(day) for day in json.loads(path.read_text(encoding="utf-8"))}


def write_unfinished_days(paths: settings.StrataPaths, days: set[date]) -> None:
    path = paths.home / UNFINISHED_DAYS_FILE
    if not days:
        path.unlink(missing_ok=True)
        return
    scratch = path.with_suffix(".tmp")
    scratch.write_text(json.dumps(sorted(d.isoformat() for d in days)), encoding="utf-8")
    os.replace(scratch, path)  # a kill mid-write leaves the old list, never half of one


def _landed_days(paths: settings.StrataPaths) -> list[date]:
    from dagster_project.lib.ingestion.contract import CONTRACT_TABLES
    from dagster_project.lib.ingestion.landing import landed_dates

    return sorted({d for table in CONTRACT_TABLES for d in landed_dates(paths.landing, table)})


def _stale_days(paths: settings.StrataPaths, say: Say) -> list[date]:
    """Landed days not ingested as they are now, once the warehouse is free to read."""
    from dagster_project.lib.core.run_lock import wait_for_warehouse
    from dagster_project.lib.core.warehouse import connect
    from dagster_project.lib.ingestion.ingest import stale_dates

    try:
        wait_for_warehouse(
            paths.warehouse,
            timeout=WAREHOUSE_WAIT_SECONDS,
            on_wait=lambda pid: say(f"waiting for process {pid} to release the warehouse"),
        )
    except TimeoutError as exc:
        raise RunRefused(str(exc)) from exc
    if not paths.warehouse.exists():
        return stale_dates(None, paths.landing)
    with connect(paths.warehouse, read_only=True) as con:
        return stale_dates(con, paths.landing)


def _load_definitions(landed: list[date]):
    from dagster_project.defs.transform.project import prepare_manifest, strata_dbt_project

    if not strata_dbt_project().manifest_path.exists():
        prepare_manifest()
    from dagster_project.definitions import defs
    from dagster_project.defs.common import daily_partitions

    if landed and landed[0] < daily_partitions.start.date():
        raise RunRefused(
            f"the Dagster definitions were loaded with partitions from "
            f"{daily_partitions.start.date()}, after the first landed day {landed[0]}; "
            "run strata again in a new process"
        )
    return defs()


def _stage_sources(sources: Path, paths: settings.StrataPaths, say: Say) -> None:
    from dagster_project.lib.ingestion.mapping.spec import MappingError
    from dagster_project.lib.ingestion.mapping.staging import stage_sources

    try:
        summary = stage_sources(sources, paths.landing)
    except MappingError as exc:
        raise RunRefused(f"source mapping: {exc}") from exc
    say(f"staged sources from {sources} into {paths.landing}")
    for table in summary.tables.values():
        undated = f", {table.undated_rows:,} undated" if table.undated_rows else ""
        say(
            f"  {table.table:<12} {table.rows:>10,} rows over {table.days:,} day(s) "
            f"{table.first_day} .. {table.last_day}{undated}"
        )
        if table.unknown_countries:
            values = ", ".join(f"{v!r} ({n:,} rows)" for v, n in table.unknown_countries.items())
            say(f"  {table.table}.country: not a country, left empty: {values}")
    say(
        f"  partitions: {summary.written} written, {summary.unchanged} unchanged, "
        f"{summary.removed} removed"
    )


def _check_partition_start(landed: list[date]) -> None:
    """Landed days before the first partition would fail deep inside Dagster: say so now."""
    if not landed:
        return
    try:
        start = date.fromisoformat(settings.partition_start())
    except settings.SettingsError as exc:
        raise RunRefused(str(exc)) from exc
    if landed[0] < start:
        raise RunRefused(
            f"landed data starts on {landed[0]}, before STRATA_PARTITION_START="
            f"{start}. Unset STRATA_PARTITION_START (the first partition is then derived "
            f"from the landing data) or set it to {landed[0]} or earlier."
        )


def _run_config(verbose: bool) -> dict:
    level = "DEBUG" if verbose else "WARNING"
    return {"loggers": {"console": {"config": {"log_level": level}}}}


def _failure_detail(metadata: dict) -> str:
    failures = metadata.get("failures")
    if failures is None or not failures.value:
        return ""
    errors = [f for f in failures.value if f.get("severity") == "error"] or failures.value
    first = errors[0]
    sample = ", ".join(str(v) for v in first.get("unexpected_sample", [])[:5])
    column = f" on {first['column']}" if first.get("column") else ""
    what = first.get("description") or f"{first['expectation']}{column}"
    detail = f": {what}: {first.get('observed', 'failed')}"
    if sample:
        detail += f" (e.g. {sample})"
    if first.get("window"):
        detail += f" [days {first['window']}]"
    if first.get("column") == "reject_share_lower":
        detail += (
            ". The rejected rows are in quarantine.<table> with reason, file and line; if "
            "they are expected, rerun with --max-reject-share (or STRATA_MAX_REJECT_SHARE)"
        )
    return detail


def root_cause_message(error) -> str:
    """The first line of the innermost error: Dagster wraps the step's own exception."""
    if error is None:
        return "failed"
    while error.cause is not None:
        error = error.cause
    lines = error.message.strip().splitlines()
    return lines[0] if lines else error.cls_name or "failed"


def _check_outcomes(result) -> tuple[list[str], list[str]]:
    """Names of passed and failed checks, and failed steps with their error message."""
    passed, failed = [], []
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            cause = root_cause_message(event.event_specific_data.error)
            failed.append(f"step {event.step_key}: {cause}")
        if event.event_type_value != "ASSET_CHECK_EVALUATION":
            continue
        evaluation = event.event_specific_data
        name = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
        if evaluation.passed:
            passed.append(name)
        else:
            # WARN severity never blocks (e.g. a refused model refit while scoring keeps the
            # previous promoted version): reported, but it does not fail the run
            warn = getattr(evaluation.severity, "value", None) == "WARN"
            prefix = WARNING_PREFIX if warn else ""
            detail = _failure_detail(evaluation.metadata)
            if not detail and getattr(evaluation, "description", None):
                detail = f": {evaluation.description}"  # a check that says why in words
            failed.append(prefix + name + detail)
    return passed, failed


class _JobRunner:
    """Runs jobs in process in the persistent instance; logs go to a file unless --verbose."""

    def __init__(self, definitions, paths: settings.StrataPaths, verbose: bool) -> None:
        import dagster as dg

        self.definitions = definitions
        self.instance = dg.DagsterInstance.get()
        self.verbose = verbose
        logs = paths.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.log_file = logs / f"strata-run-{datetime.now():%Y%m%dT%H%M%S}.log"
        self.passed: list[str] = []
        self.failed: list[str] = []
        self.stage_seconds: dict[str, float] = {}

    def run(self, job_name: str, label: str, **kwargs) -> bool:
        from dagster._core.utils import make_new_run_id

        from dagster_project.run_progress import ProgressState, RunProgress

        job = self.definitions.resolve_job_def(job_name)
        run_id = make_new_run_id()
        state = ProgressState(label, total_steps=len(job.nodes_in_topological_order))
        terminal = sys.stderr  # before the redirect below: the progress line goes to the user
        with contextlib.ExitStack() as stack:
            if not self.verbose:  # dbt's and Dagster's output would bury the summary
                stack.enter_context(RunProgress(self.instance, run_id, state, terminal))
                log = stack.enter_context(self.log_file.open("a"))
                stack.enter_context(contextlib.redirect_stdout(log))
                stack.enter_context(contextlib.redirect_stderr(log))
            tags = {**kwargs.pop("tags", {}), LAUNCHED_BY_TAG: "cli"}
            result = job.execute_in_process(
                instance=self.instance,
                run_config=_run_config(self.verbose),
                raise_on_error=False,
                tags=tags,
                run_id=run_id,
                **kwargs,
            )
        run_seconds: dict[str, float] = {}
        for step_key, seconds in step_durations(self.instance, result.run_id):
            stage = stage_of(step_key)
            run_seconds[stage] = run_seconds.get(stage, 0.0) + seconds
            self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + seconds
        # the same figures on the run in the Dagster UI (its tags are the run's metadata)
        self.instance.add_run_tags(result.run_id, stage_tags(run_seconds))
        passed, failed = _check_outcomes(result)
        self.passed += passed
        self.failed += failed
        return result.success and not [f for f in failed if not f.startswith(WARNING_PREFIX)]


def _fail_abandoned_runs(instance) -> list[str]:
    """Runs this command started that are still marked in progress: their process is gone
    (we hold the run lock). Mark them failed and free their pool slots, or the next run
    would wait forever for the `duckdb_warehouse` slot a killed run still holds."""
    import dagster as dg

    abandoned = [
        run
        for run in instance.get_runs(filters=dg.RunsFilter(tags={LAUNCHED_BY_TAG: "cli"}))
        if not run.is_finished
    ]
    for run in abandoned:
        instance.report_run_failed(run, "abandoned: the strata process running it was killed")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
    return [run.run_id for run in abandoned]
