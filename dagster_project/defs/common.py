"""Definitions every area shares: partitions, the warehouse resource and pool, small helpers."""

import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta

import dagster as dg
import duckdb
import polars as pl

from dagster_project.lib.core import settings, warehouse


def sync_sqlite_at_checkpoints() -> None:
    """Dagster's SQLite storage (the default under DAGSTER_HOME) commits every event on its own
    and, in WAL mode at SQLite's default synchronous=FULL, waits for the disk each time: a
    120-day catch-up records one materialization per asset and day, thousands of waits (12 s
    of a 300-user run). synchronous=NORMAL syncs the WAL at checkpoints only: no event is lost
    when a process crashes or is killed, and the file cannot be corrupted; a power cut may drop
    the last events (the warehouse, a DuckDB file, is not affected).

    Dagster also opens and closes a connection for every statement, and SQLite checkpoints the
    WAL into the database and removes it whenever the last connection to a file closes: every
    event paid for a checkpoint (about 1.5 ms of the 2 ms a connection costs). One idle
    connection per file, kept open (:data:`_KEPT_OPEN`, the most recent files), leaves the WAL
    in place; SQLite still checkpoints it as it grows, and when the process ends.

    Applies to every SQLite connection a process opens afterwards; other databases are left
    alone."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    if event.contains(Engine, "connect", _normal_sqlite_sync):
        return
    event.listen(Engine, "connect", _normal_sqlite_sync)


# database file -> an idle connection that keeps its WAL open; a webserver reads one file per
# run, so only the most recent few stay open
_KEPT_OPEN: OrderedDict[str, sqlite3.Connection] = OrderedDict()
_KEEP_AT_MOST = 16
_KEPT_OPEN_LOCK = threading.Lock()


def _normal_sqlite_sync(dbapi_connection, _record) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    dbapi_connection.execute("pragma synchronous = normal")
    files = [row[2] for row in dbapi_connection.execute("pragma database_list") if row[1] == "main"]
    if files and files[0]:
        _keep_open(files[0])


def _keep_open(database: str) -> None:
    with _KEPT_OPEN_LOCK:
        if database in _KEPT_OPEN:
            _KEPT_OPEN.move_to_end(database)
            return
        idle = sqlite3.connect(database, check_same_thread=False)
        # it opens the file, and the WAL's index, on its first statement; a file not yet in
        # WAL mode (Dagster switches a new one after connecting) is kept on a later connection
        if idle.execute("pragma journal_mode").fetchone()[0] != "wal":
            idle.close()
            return
        _KEPT_OPEN[database] = idle
        while len(_KEPT_OPEN) > _KEEP_AT_MOST:
            _KEPT_OPEN.popitem(last=False)[1].close()


# Every process that loads these definitions records Dagster events: the CLI's runs, the
# daemon's and the webserver's run workers.
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
