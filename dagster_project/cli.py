"""`strata`: a thin command line over Dagster's own APIs.

Runs started here are ordinary Dagster runs in the instance at $DAGSTER_HOME (default
$STRATA_HOME/dagster), so they appear in the UI's run history.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from datetime import date, datetime, timedelta
from pathlib import Path

from dagster_project.lib.core import settings

DAILY_JOB = "strata_daily"
INGEST_JOB = "strata_ingest"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
WARNING_PREFIX = "(warning, not blocking) "
# Runs this command starts carry it, so a later run can tell its own abandoned runs (the
# process was killed) from runs the UI launched.
LAUNCHED_BY_TAG = "strata/launched_by"
# How long `strata run` waits for another process to let go of the warehouse (a dbt child
# of a killed run finishing its model, a BI tool wrongly pointed at warehouse.duckdb).
WAREHOUSE_WAIT_SECONDS = 600.0

DAGSTER_YAML = """\
# Written by `strata`; edit freely. Every asset that writes the warehouse runs in this pool:
# DuckDB allows one writer per file.
concurrency:
  pools:
    default_limit: 1
  runs:
    max_concurrent_runs: 1
telemetry:
  enabled: false
"""


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value}") from exc


def _prepare_environment(
    home_arg: str | None, sample_data: bool | None = None
) -> settings.StrataPaths:
    paths = settings.strata_paths(home_arg)
    settings.export_runtime_environment(paths.home, sample_data=sample_data)
    paths.dagster_home.mkdir(parents=True, exist_ok=True)
    config = paths.dagster_home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    return paths


def cmd_generate(args: argparse.Namespace) -> int:
    from dagster_project.lib.sample.generator import generate_sample

    paths = settings.strata_paths(args.home)
    if not 0.0 <= args.dirty_rate <= 1.0:
        raise SystemExit("strata generate: --dirty-rate is a share of rows between 0 and 1")
    summary = generate_sample(
        paths.home,
        users=args.users,
        days=args.days,
        seed=args.seed,
        end_date=args.end_date,
        dirty_rate=args.dirty_rate,
    )
    print(f"generated {summary.users} users, {summary.start_date} .. {summary.end_date}")
    for table, rows in summary.rows.items():
        print(f"  {table:<12} {rows:>10,} rows")
    print(f"landing files: {paths.landing}")
    print(f"ground truth (never read by the pipeline): {paths.truth / 'archetypes.parquet'}")
    if args.dirty_rate:
        import polars as pl

        from dagster_project.lib.sample.defects import DEFECTS_FILE

        defects = pl.read_parquet(paths.truth / DEFECTS_FILE)
        print(f"injected {defects.height:,} bad rows (each kind at rate {args.dirty_rate}):")
        for table, kind, count in (
            defects.group_by("table", "kind").len().sort("table", "kind").rows()
        ):
            print(f"  {table:<12} {kind:<18} {count:>8,}")
        print(f"record of every injected row: {paths.truth / DEFECTS_FILE}")
        share = 1 - 1 / (1 + 5 * args.dirty_rate)
        if share > settings.max_reject_share():
            print(
                f"note: up to ~{share:.0%} of a day's orders are bad, above the "
                f"{settings.max_reject_share():.0%} that stops a run; to run through, use "
                f"`strata run --max-reject-share {min(1.0, round(share + 0.1, 1))}`"
            )
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    _prepare_environment(args.home)
    from dagster_project.defs.transform.project import prepare_manifest

    prepare_manifest()
    print("dbt manifest prepared")
    return 0


def cmd_check_sources(args: argparse.Namespace) -> int:
    from dagster_project.lib.ingestion.mapping.binding import validate
    from dagster_project.lib.ingestion.mapping.spec import MappingError, load_mapping

    try:
        mapping = load_mapping(args.sources)
        validate(mapping)
    except MappingError as exc:
        print(f"strata check-sources: {exc}", file=sys.stderr)
        return 2
    print(f"{mapping.path}: valid")
    for name, table in mapping.tables.items():
        source = f"derived ({table.derive})" if table.derive else f"{len(table.files)} file(s)"
        print(f"  {name:<12} {source:<24} columns: {', '.join(table.columns) or '-'}")
    return 0


def _stage_sources(sources, paths: settings.StrataPaths) -> None:
    from dagster_project.lib.ingestion.mapping.spec import MappingError
    from dagster_project.lib.ingestion.mapping.staging import stage_sources

    try:
        summary = stage_sources(sources, paths.landing)
    except MappingError as exc:
        raise SystemExit(f"strata run: source mapping: {exc}") from exc
    print(f"staged sources from {sources} into {paths.landing}")
    for table in summary.tables.values():
        undated = f", {table.undated_rows:,} undated" if table.undated_rows else ""
        print(
            f"  {table.table:<12} {table.rows:>10,} rows over {table.days:,} day(s) "
            f"{table.first_day} .. {table.last_day}{undated}"
        )
    print(
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
        raise SystemExit(f"strata run: {exc}") from exc
    if landed[0] < start:
        raise SystemExit(
            f"strata run: landed data starts on {landed[0]}, before STRATA_PARTITION_START="
            f"{start}. Unset STRATA_PARTITION_START (the first partition is then derived "
            f"from the landing data) or set it to {landed[0]} or earlier."
        )


def _load_definitions():
    from dagster_project.defs.transform.project import strata_dbt_project

    project = strata_dbt_project()
    if not project.manifest_path.exists():
        from dagster_project.defs.transform.project import prepare_manifest

        prepare_manifest()
    from dagster_project.definitions import defs

    return defs()


def _snapshot_dates(args: argparse.Namespace, landed: list[date]) -> list[date]:
    if args.date:
        return [args.date]
    if args.start or args.end:
        if not (args.start and args.end):
            raise SystemExit("strata run: --start and --end go together")
        if args.end < args.start:
            raise SystemExit("strata run: --end is before --start")
        return [args.start + timedelta(days=i) for i in range((args.end - args.start).days + 1)]
    if not landed:
        raise SystemExit("strata run: no landing files found; run `strata generate` first")
    return [landed[-1]]


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
    if first.get("column") == "reject_share":
        detail += (
            ". The rejected rows are in quarantine.<table> with reason, file and line; if "
            "they are expected, rerun with --max-reject-share (or STRATA_MAX_REJECT_SHARE)"
        )
    return detail


def _check_outcomes(result) -> tuple[list[str], list[str]]:
    """Names of passed and failed checks, and failed steps with their error message."""
    passed, failed = [], []
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            error = event.event_specific_data.error
            message = error.message.strip().splitlines()[0] if error else "failed"
            failed.append(f"step {event.step_key}: {message}")
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
            failed.append(prefix + name + _failure_detail(evaluation.metadata))
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

    def run(self, job_name: str, **kwargs) -> bool:
        job = self.definitions.resolve_job_def(job_name)
        with contextlib.ExitStack() as stack:
            if not self.verbose:  # dbt's and Dagster's output would bury the summary
                log = stack.enter_context(self.log_file.open("a"))
                stack.enter_context(contextlib.redirect_stdout(log))
                stack.enter_context(contextlib.redirect_stderr(log))
            tags = {**kwargs.pop("tags", {}), LAUNCHED_BY_TAG: "cli"}
            result = job.execute_in_process(
                instance=self.instance,
                run_config=_run_config(self.verbose),
                raise_on_error=False,
                tags=tags,
                **kwargs,
            )
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


def cmd_run(args: argparse.Namespace) -> int:
    sources = args.sources or settings.sources_file()
    if args.max_reject_share is not None:
        if not 0.0 <= args.max_reject_share <= 1.0:
            raise SystemExit("strata run: --max-reject-share is a share between 0 and 1")
        os.environ["STRATA_MAX_REJECT_SHARE"] = str(args.max_reject_share)
    # mapped sources are real data: no built-in salt, decided before anything is written
    paths = _prepare_environment(args.home, sample_data=False if sources else None)
    try:
        settings.require_pii_salt(paths.home)
        settings.max_reject_share()
        settings.max_staleness_days()
    except settings.SettingsError as exc:
        raise SystemExit(f"strata run: {exc}") from exc

    from dagster_project.lib.core.run_lock import RunLock, RunLockBusy, wait_for_warehouse
    from dagster_project.lib.core.warehouse import connect
    from dagster_project.lib.ingestion.contract import CONTRACT_TABLES
    from dagster_project.lib.ingestion.ingest import stale_dates
    from dagster_project.lib.ingestion.landing import landed_dates

    lock = RunLock(paths.home)
    try:
        lock.acquire(timeout=args.wait)
    except RunLockBusy as exc:
        raise SystemExit(f"strata run: {exc}") from exc
    try:
        if sources:
            _stage_sources(sources, paths)
        landed = sorted(
            {d for table in CONTRACT_TABLES for d in landed_dates(paths.landing, table)}
        )
        _check_partition_start(landed)
        snapshots = _snapshot_dates(args, landed)
        try:
            wait_for_warehouse(
                paths.warehouse,
                timeout=WAREHOUSE_WAIT_SECONDS,
                on_wait=lambda pid: print(f"waiting for process {pid} to release the warehouse"),
            )
        except TimeoutError as exc:
            raise SystemExit(f"strata run: {exc}") from exc
        if paths.warehouse.exists():
            with connect(paths.warehouse, read_only=True) as con:
                stale = stale_dates(con, paths.landing)
        else:
            stale = stale_dates(None, paths.landing)
        catch_up = [d for d in stale if d not in snapshots]

        definitions = _load_definitions()
        from dagster_project.defs.common import daily_partitions

        if landed and landed[0] < daily_partitions.start.date():
            raise SystemExit(
                f"strata run: the Dagster definitions were loaded with partitions from "
                f"{daily_partitions.start.date()}, after the first landed day {landed[0]}; "
                "run strata again in a new process"
            )
        runner = _JobRunner(definitions, paths, args.verbose)
        abandoned = _fail_abandoned_runs(runner.instance)
        if abandoned:
            print(f"marked {len(abandoned)} abandoned run(s) as failed: {', '.join(abandoned)}")
        ok = True
        if catch_up:
            print(
                f"ingesting {len(catch_up)} landed day(s) {catch_up[0]} .. {catch_up[-1]} "
                "in one run"
            )
            ok = runner.run(
                INGEST_JOB,
                tags={
                    RANGE_START_TAG: catch_up[0].isoformat(),
                    RANGE_END_TAG: catch_up[-1].isoformat(),
                },
            )
        for snapshot in snapshots:
            if not ok:
                break
            print(f"building snapshot {snapshot}")
            ok = runner.run(DAILY_JOB, partition_key=snapshot.isoformat())
    finally:
        lock.release()

    _print_summary(paths, runner.passed, runner.failed)
    if not args.verbose:
        print(f"run log: {runner.log_file}")
    if not ok:
        print("RUN FAILED: see the failed checks and the run log; published tables are unchanged.")
        return 1
    return 0


def _print_summary(paths: settings.StrataPaths, passed: list[str], failed: list[str]) -> None:
    from dagster_project.lib.core.warehouse import connect, table_exists
    from dagster_project.lib.segmentation.schemes import scheme_names

    print()
    print(f"checks: {len(passed)} passed, {len(failed)} failed")
    for name in failed:
        print(f"  FAILED {name}")
    if not paths.serving_db.exists():
        return
    with connect(paths.serving_db, read_only=True) as con:
        rows = con.execute(
            "select schema_name || '.' || table_name from duckdb_tables() order by 1"
        ).fetchall()
        print(f"serving tables ({paths.serving_db}):")
        for (name,) in rows:
            count = con.execute(f"select count(*) from {name}").fetchall()[0][0]
            print(f"  {name:<32} {count:>10,} rows")
        if table_exists(con, "marts", "segment_summary_daily"):
            latest = con.execute(
                "select max(snapshot_date) from marts.segment_summary_daily"
            ).fetchall()[0][0]
            names = list(scheme_names())
            sizes = con.execute(
                "select scheme, segment, segment_label, users from marts.segment_summary_daily "
                "where snapshot_date = ? and list_contains(?, scheme) "
                "order by list_position(?, scheme), users desc",
                [latest, names, names],
            ).fetchall()
            print(f"segment sizes on {latest}:")
            for scheme, segment, label, users in sizes:
                print(f"  {scheme:<16} {segment:<26} {label or '':<12} {users:>8,}")
    print(f"Parquet exports: {paths.serving_parquet}")
    print(f"open the UI: DAGSTER_HOME={paths.dagster_home} STRATA_HOME={paths.home} make ui")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="strata", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    home_help = "data directory (default: $STRATA_HOME, else ./.strata)"

    gen = sub.add_parser("generate", help="write deterministic sample landing files")
    gen.add_argument("--users", type=int, default=2000)
    gen.add_argument("--days", type=int, default=120)
    gen.add_argument("--seed", type=int, default=7)
    gen.add_argument("--end-date", type=_date, default=None, help="last day (default yesterday)")
    gen.add_argument(
        "--dirty-rate",
        type=float,
        default=0.0,
        help="append bad rows of every kind at this rate per table and kind (e.g. 0.05), "
        "recorded in truth/injected_defects.parquet",
    )
    gen.add_argument("--home", default=None, help=home_help)
    gen.set_defaults(func=cmd_generate)

    prep = sub.add_parser("prepare", help="parse the dbt project (run once after install)")
    prep.add_argument("--home", default=None, help=home_help)
    prep.set_defaults(func=cmd_prepare)

    run = sub.add_parser("run", help="ingest landed days and build snapshots")
    run.add_argument("--home", default=None, help=home_help)
    run.add_argument("--date", type=_date, default=None, help="build this snapshot date")
    run.add_argument("--start", type=_date, default=None, help="first snapshot date of a range")
    run.add_argument("--end", type=_date, default=None, help="last snapshot date of a range")
    run.add_argument("--verbose", action="store_true", help="stream Dagster and dbt logs")
    run.add_argument(
        "--sources",
        type=Path,
        default=None,
        help="source mapping YAML: stage your own files into the landing folder first "
        "(default: $STRATA_SOURCES; see README 'Bring your own data')",
    )
    run.add_argument(
        "--max-reject-share",
        type=float,
        default=None,
        help="largest share of a day's rows that may be quarantined (default: "
        "$STRATA_MAX_REJECT_SHARE, else 0.10)",
    )
    run.add_argument(
        "--wait",
        type=float,
        default=0.0,
        help="seconds to wait for another strata run on the same data directory (default 0)",
    )
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check-sources", help="validate a source mapping without writing")
    check.add_argument("sources", type=Path, help="the mapping YAML")
    check.set_defaults(func=cmd_check_sources)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
