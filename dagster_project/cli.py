"""`strata`: a thin command line over Dagster's own APIs.

Runs started here are ordinary Dagster runs in the instance at $DAGSTER_HOME (default
$STRATA_HOME/dagster), so they appear in the UI's run history.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date
from pathlib import Path

from dagster_project.lib.core import settings

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
# Dagster's SQLite event log under $DAGSTER_HOME, the same files, with less work per event
# (see dagster_project/defs/sqlite_storage.py). Remove these lines for upstream's class.
event_log_storage:
  module: dagster_project.defs.sqlite_storage
  class: StrataSqliteEventLogStorage
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
    if args.dirty_rate and args.dirty_kind_rate:
        raise SystemExit("strata generate: give --dirty-rate or --dirty-kind-rate, not both")
    per_kind = bool(args.dirty_kind_rate)
    rate = args.dirty_kind_rate if per_kind else args.dirty_rate
    if not (0.0 <= rate <= 1.0 if per_kind else 0.0 <= rate < 1.0):
        raise SystemExit("strata generate: the dirty rate is a share of rows, from 0 to below 1")
    summary = generate_sample(
        paths.home,
        users=args.users,
        days=args.days,
        seed=args.seed,
        end_date=args.end_date,
        dirty_rate=rate,
        file_format=args.format,
        dirty_per_kind=per_kind,
        campaigns=args.campaigns,
    )
    print(f"generated {summary.users} users, {summary.start_date} .. {summary.end_date}")
    for table, rows in summary.rows.items():
        print(f"  {table:<18} {rows:>10,} rows")
    print(f"landing files: {paths.landing}")
    print(f"ground truth (never read by the pipeline): {paths.truth / 'archetypes.parquet'}")
    if args.campaigns:
        print(f"true campaign effects: {paths.truth / 'campaign_effects.parquet'}")
    if rate:
        import polars as pl

        from dagster_project.lib.sample.defects import DEFECTS_FILE, kinds_for

        defects = pl.read_parquet(paths.truth / DEFECTS_FILE)
        how = f"each kind at rate {rate}" if per_kind else f"{rate:.0%} of each table's rows"
        print(f"injected {defects.height:,} bad rows ({how}):")
        for table, kind, count in (
            defects.group_by("table", "kind").len().sort("table", "kind").rows()
        ):
            print(f"  {table:<12} {kind:<18} {count:>8,}")
        print(f"record of every injected row: {paths.truth / DEFECTS_FILE}")
        kinds = len(kinds_for("orders"))
        share = 1 - 1 / (1 + kinds * rate) if per_kind else rate
        if share > settings.max_reject_share():
            print(
                f"note: about {share:.0%} of a day's orders are bad, above the "
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


def cmd_report(args: argparse.Namespace) -> int:
    from dagster_project.lib.reporting.report import build_report

    paths = settings.strata_paths(args.home)
    if not paths.serving_db.exists():
        raise SystemExit(
            f"strata report: no published data at {paths.serving_db}: run strata first"
        )
    day = args.date
    target = args.out or paths.home / "reports" / f"strata-report-{day or 'latest'}.html"
    try:
        report = build_report(paths.serving_db, Path(target), day)
    except ValueError as exc:
        raise SystemExit(f"strata report: {exc}") from exc
    print(
        f"report for {report.snapshot_date}: {report.path} "
        f"({report.images} charts; one file, opens offline)"
    )
    return 0


def cmd_check_sources(args: argparse.Namespace) -> int:
    from dagster_project.lib.ingestion.mapping.binding import validate
    from dagster_project.lib.ingestion.mapping.lines import repeated_order_keys
    from dagster_project.lib.ingestion.mapping.spec import MappingError, load_mapping

    try:
        mapping = load_mapping(args.sources)
        validate(mapping)
        repeated = repeated_order_keys(mapping)
    except MappingError as exc:
        print(f"strata check-sources: {exc}", file=sys.stderr)
        return 2
    print(f"{mapping.path}: valid")
    for name, table in mapping.tables.items():
        source = f"derived ({table.derive})" if table.derive else f"{len(table.files)} file(s)"
        if table.grain == "line":
            source += ", order lines"
        if not table.priced:
            source += ", no money"
        columns = [*table.columns, *(f"items.{c}" for c in table.items)]
        print(f"  {name:<12} {source:<33} columns: {', '.join(columns) or '-'}")
        if table.where is not None:
            print(f"  {'':<12} {'':<33} rows where: {table.where.text}")
    if repeated:
        print(
            f"warning: {repeated.keys:,} order key(s) repeat on {repeated.rows:,} more row(s) "
            f"(e.g. {repeated.example!r}); ingestion rejects those rows as duplicate_id. If the "
            "rows are order lines, declare `grain: line` on tables.orders (see the README)."
        )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from dagster_project.pipeline_run import RunRefused, run_pipeline

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
        report = run_pipeline(
            paths,
            sources=sources,
            day=args.date,
            start=args.start,
            end=args.end,
            verbose=args.verbose,
            wait=args.wait,
        )
    except (settings.SettingsError, RunRefused) as exc:
        raise SystemExit(f"strata run: {exc}") from exc

    _print_summary(paths, report.passed, report.failed)
    if report.stage_seconds:
        stages = sorted(report.stage_seconds.items(), key=lambda kv: -kv[1])
        print("time by stage: " + ", ".join(f"{name} {sec:.1f} s" for name, sec in stages))
    if report.log_file:
        print(f"run log: {report.log_file}")
    if not report.ok:
        print("RUN FAILED: see the failed checks and the run log; published tables are unchanged.")
        return 1
    return 0


def _print_summary(paths: settings.StrataPaths, passed: list[str], failed: list[str]) -> None:
    from dagster_project.lib.core.warehouse import connect, table_exists
    from dagster_project.lib.segmentation.schemes import scheme_names
    from dagster_project.lib.serving.publish import PUBLISHED_SCHEMA

    print()
    print(f"checks: {len(passed)} passed, {len(failed)} failed")
    for name in failed:
        print(f"  FAILED {name}")
    if not paths.serving_db.exists():
        return
    with connect(paths.serving_db, read_only=True) as con:
        rows = con.execute(
            "select schema_name || '.' || table_name from duckdb_tables() "
            "where schema_name = ? order by 1",
            [PUBLISHED_SCHEMA],
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
        if table_exists(con, "marts", "fct_orders"):
            _print_money(con)
        if table_exists(con, "marts", "model_quality"):
            _print_model_quality(con)
        _print_clusters_skipped(con)
        _print_offers_note(con)
    print(f"Parquet exports: {paths.serving_parquet}")
    print(f"open the UI: DAGSTER_HOME={paths.dagster_home} STRATA_HOME={paths.home} make ui")


def money_note(orders: int, priced: int) -> str | None:
    """What the summary says when orders have no amount (None when every order has one)."""
    if priced == orders:
        return None
    if priced == 0:
        return (
            f"money: none of the {orders:,} orders has an amount (a source without money, "
            "money: none): monetary features, M scores, Gamma-Gamma, expected order value, "
            "CLV and the simple LTV are NULL; value tiers rest on R and F, clusters on the "
            "other features; recency, frequency, lifecycle, BG/NBD, P(alive) and churn work"
        )
    return (
        f"money: {orders - priced:,} of {orders:,} orders have no amount: their users' money "
        "features (and so their M score and CLV) are NULL"
    )


def _print_money(con) -> None:
    orders, priced = con.execute("select count(*), count(amount) from marts.fct_orders").fetchone()
    note = money_note(orders, priced)
    if note:
        print(note)


OFFERS_NOTE = (
    "note: no category offers (marts.user_next_best_categories is empty): the source has no "
    "order items with a category, or its buyers have bought every category it has"
)


def _print_offers_note(con) -> None:
    """Sources without order_items, or with one category (CDNOW: every line is music), get
    segments and KPIs but nothing to offer: say so."""
    from dagster_project.lib.core.warehouse import scalar, table_exists

    if not table_exists(con, "marts", "user_next_best_categories"):
        return
    if scalar(con, "select count(*) from marts.user_next_best_categories") == 0:
        print(OFFERS_NOTE)


def clusters_skipped_note(snapshot_date: object, reason: str | None) -> str | None:
    """What the summary says when the newest snapshot has no clusters (None when it has)."""
    if reason is None:
        return None
    return f"clusters: skipped on {snapshot_date}, cluster_id is NULL ({reason})"


def _print_clusters_skipped(con) -> None:
    """Below clustering.min_users nothing is clustered: say so, with the reason."""
    from dagster_project.lib.core.warehouse import table_exists

    if not table_exists(con, "marts", "user_segments_daily"):
        return
    row = con.execute(
        "select snapshot_date, max(cluster_reason) from marts.user_segments_daily "
        "where snapshot_date = (select max(snapshot_date) from marts.user_segments_daily) "
        "group by snapshot_date having count(cluster_id) = 0"
    ).fetchone()
    note = clusters_skipped_note(*row) if row else None
    if note:
        print(note)


def _print_model_quality(con) -> None:
    """Each model's newest promoted version: how many figures passed, and the ones that failed
    (a minimum-data guard that was missed says which outputs it left NULL)."""
    from dagster_project.lib.model_store.quality import QualityMetric, failed_quality

    rows = con.execute(
        """
        with newest as (
            select model_name, arg_max(model_version, (trained_as_of, fitted_at)) as model_version
            from marts.model_versions where promoted group by model_name
        )
        select q.model_version, q.metric, q.value, q.threshold, q.comparison, q.source, q.note
        from marts.model_quality as q join newest using (model_name, model_version)
        order by q.model_name, q.metric
        """
    ).fetchall()
    by_version: dict[str, list[QualityMetric]] = {}
    for version, *fields in rows:
        metric, value, threshold, comparison, source, note = fields
        by_version.setdefault(version, []).append(
            QualityMetric(metric, value, threshold, comparison, source, note or "")
        )
    if not by_version:
        return
    print("model quality (newest versions; every figure in marts.model_quality):")
    for version, figures in by_version.items():
        judged = [f for f in figures if f.passed is not None]
        failed = failed_quality(figures)
        print(f"  {version}: {len(judged) - len(failed)} of {len(judged)} passed")
        for line in failed:
            print(f"    below the bar: {line}")


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
        help="make this share of each table's rows bad (e.g. 0.05), spread over every kind of "
        "defect; recorded in truth/injected_defects.parquet",
    )
    gen.add_argument(
        "--dirty-kind-rate",
        type=float,
        default=0.0,
        help="instead: bad rows of each kind at this rate (5 kinds at 0.05: a fifth of the rows)",
    )
    gen.add_argument(
        "--format",
        choices=("csv", "parquet"),
        default="csv",
        help="landing file format (the same rows in both; Parquet is smaller and faster to read)",
    )
    gen.add_argument(
        "--campaigns",
        action="store_true",
        help="also write campaign exposures (treatment and control) whose treated users buy "
        "differently; true effects in truth/campaign_effects.parquet",
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

    report = sub.add_parser("report", help="write one self-contained HTML report")
    report.add_argument("--home", default=None, help=home_help)
    report.add_argument("--date", type=_date, default=None, help="snapshot (default: latest)")
    report.add_argument(
        "--out", type=Path, default=None, help="file to write (default: $STRATA_HOME/reports/)"
    )
    report.set_defaults(func=cmd_report)

    check = sub.add_parser("check-sources", help="validate a source mapping without writing")
    check.add_argument("sources", type=Path, help="the mapping YAML")
    check.set_defaults(func=cmd_check_sources)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
