"""`strata`: a thin command line over Dagster's own APIs.

Runs started here are ordinary Dagster runs in the instance at $DAGSTER_HOME (default
$STRATA_HOME/dagster), so they appear in the UI's run history.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from datetime import date, datetime, timedelta

from dagster_project.lib import settings

DAILY_JOB = "strata_daily"
INGEST_JOB = "strata_ingest"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"

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


def _prepare_environment(home_arg: str | None) -> settings.StrataPaths:
    paths = settings.strata_paths(home_arg)
    settings.export_runtime_environment(paths.home)
    paths.dagster_home.mkdir(parents=True, exist_ok=True)
    config = paths.dagster_home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    return paths


def cmd_generate(args: argparse.Namespace) -> int:
    from dagster_project.lib.generator import generate_sample

    paths = settings.strata_paths(args.home)
    summary = generate_sample(
        paths.home, users=args.users, days=args.days, seed=args.seed, end_date=args.end_date
    )
    print(f"generated {summary.users} users, {summary.start_date} .. {summary.end_date}")
    for table, rows in summary.rows.items():
        print(f"  {table:<12} {rows:>10,} rows")
    print(f"landing files: {paths.landing}")
    print(f"ground truth (never read by the pipeline): {paths.truth / 'archetypes.parquet'}")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    _prepare_environment(args.home)
    from dagster_project.defs.transform.project import prepare_manifest

    prepare_manifest()
    print("dbt manifest prepared")
    return 0


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
    first = failures.value[0]
    sample = ", ".join(str(v) for v in first.get("unexpected_sample", [])[:5])
    column = f" on {first['column']}" if first.get("column") else ""
    return f": {first['expectation']}{column} (e.g. {sample})" if sample else ""


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
            failed.append(name + _failure_detail(evaluation.metadata))
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
            result = job.execute_in_process(
                instance=self.instance,
                run_config=_run_config(self.verbose),
                raise_on_error=False,
                **kwargs,
            )
        passed, failed = _check_outcomes(result)
        self.passed += passed
        self.failed += failed
        return result.success and not failed


def cmd_run(args: argparse.Namespace) -> int:
    paths = _prepare_environment(args.home)
    from dagster_project.lib.ingest import CONTRACT_TABLES, ingested_dates, landed_dates
    from dagster_project.lib.warehouse import connect

    landed = sorted({d for table in CONTRACT_TABLES for d in landed_dates(paths.landing, table)})
    snapshots = _snapshot_dates(args, landed)
    done: set[date] = set()
    if paths.warehouse.exists():
        with connect(paths.warehouse, read_only=True) as con:
            done = ingested_dates(con)
    catch_up = [d for d in landed if d not in done and d not in snapshots]

    runner = _JobRunner(_load_definitions(), paths, args.verbose)
    ok = True
    if catch_up:
        print(f"ingesting {len(catch_up)} landed day(s) {catch_up[0]} .. {catch_up[-1]} in one run")
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

    _print_summary(paths, runner.passed, runner.failed)
    if not args.verbose:
        print(f"run log: {runner.log_file}")
    if not ok:
        print("RUN FAILED: see the failed checks and the run log; published tables are unchanged.")
        return 1
    return 0


def _print_summary(paths: settings.StrataPaths, passed: list[str], failed: list[str]) -> None:
    from dagster_project.lib.warehouse import connect, table_exists

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
            sizes = con.execute(
                "select scheme, segment, segment_label, users from marts.segment_summary_daily "
                "where snapshot_date = ? and scheme in ('value_tier', 'lifecycle', 'cluster') "
                "order by scheme, users desc",
                [latest],
            ).fetchall()
            print(f"segment sizes on {latest}:")
            for scheme, segment, label, users in sizes:
                print(f"  {scheme:<12} {segment:<26} {label or '':<12} {users:>8,}")
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
    run.set_defaults(func=cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
