"""Definitions every area shares: partitions, the warehouse resource and pool, small helpers."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta

import dagster as dg
import duckdb
import polars as pl

from dagster_project.defs.sqlite_storage import sync_sqlite_at_checkpoints
from dagster_project.lib.core import settings, warehouse

# Every process that loads these definitions records Dagster events: the CLI's runs, the
# daemon's and the webserver's run workers (whatever storage their dagster.yaml names).
sync_sqlite_at_checkpoints()

# One writer at a time: DuckDB locks the file for every other process, readers included.
WAREHOUSE_POOL = "duckdb_warehouse"

daily_partitions = dg.DailyPartitionsDefinition(start_date=settings.partition_start())
single_run = dg.BackfillPolicy.single_run()

# Every daily asset that writes the warehouse: a backfill of any length is one run, and
# writers queue on the pool.
DAILY_WAREHOUSE_ASSET: dict = {
    "partitions_def": daily_partitions,
    "backfill_policy": single_run,
    "pool": WAREHOUSE_POOL,
}


class WarehouseResource(dg.ConfigurableResource):
    """The working DuckDB warehouse under STRATA_HOME (read when a run starts, not at load)."""

    home: str | None = None

    @property
    def paths(self) -> settings.StrataPaths:
        return settings.strata_paths(self.home)

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        home = self.paths.home
        options = settings.duckdb_settings(home)
        with warehouse.connect(self.paths.warehouse, read_only=read_only, settings=options) as con:
            yield con


# A step's log message that starts with this is progress within the step: `strata run` shows
# the latest one on its progress line (dagster_project/run_progress.py).
PROGRESS_PREFIX = "progress: "


def partition_days(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> list[date]:
    """Every day of the run's partition or partition range (single-run backfills)."""
    op_context = (
        context.op_execution_context
        if isinstance(context, dg.AssetCheckExecutionContext)
        else context
    )
    if op_context.has_partition_key_range:
        window = op_context.partition_time_window
    elif op_context.has_partition_key:
        window = daily_partitions.time_window_for_partition_key(op_context.partition_key)
    else:
        raise dg.DagsterInvariantViolationError("this step needs a daily partition or range")
    first, end = window.start.date(), window.end.date()
    return [first + timedelta(days=i) for i in range((end - first).days)]


def preview(frame: pl.DataFrame, rows: int = 10) -> dg.MetadataValue:
    return dg.MetadataValue.md(frame.head(rows).to_pandas().to_markdown(index=False))


def coverage_evidence(con: duckdb.DuckDBPyConnection, relation: str, day: date) -> dict[str, int]:
    """How a per-user snapshot table covers the users known on `day` (user_features)."""
    rows = con.execute(
        f"""
        with snapshot as (
            select user_id, count(*) as n from {relation}
            where snapshot_date = $day group by user_id
        ),
        known as (select user_id from features.user_features where as_of_date = $day)
        select
            (select count(*) from known) as known_users,
            (select count(*) from snapshot) as users_with_rows,
            (select count(*) from known anti join snapshot using (user_id)) as missing_users,
            (select count(*) from snapshot anti join known using (user_id)) as unknown_users,
            (select count(*) from snapshot where n > 1) as duplicated_users
        """,
        {"day": day},
    ).fetchall()
    names = ("known_users", "users_with_rows", "missing_users", "unknown_users", "duplicated_users")
    return dict(zip(names, rows[0], strict=True))


def covers_every_user_check(asset_key: dg.AssetKey, name: str) -> dg.AssetChecksDefinition:
    """Every user known on the snapshot date has exactly one row, and nobody else has one."""

    @dg.asset_check(
        asset=asset_key, name=name, blocking=True, description=covers_every_user_check.__doc__
    )
    def check(
        context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
    ) -> dg.AssetCheckResult:
        evidence: dict[str, dict[str, int]] = {}
        with warehouse.connect() as con:
            for day in partition_days(context):
                evidence[day.isoformat()] = coverage_evidence(con, ".".join(asset_key.path), day)
        passed = all(
            e["missing_users"] == 0 and e["unknown_users"] == 0 and e["duplicated_users"] == 0
            for e in evidence.values()
        )
        return dg.AssetCheckResult(
            passed=passed, metadata={"by_day": dg.MetadataValue.json(evidence)}
        )

    return check
