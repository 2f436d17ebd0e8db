"""The one stand-in for the dbt marts that feature code reads, for tests and benchmarks.

``compute_user_features`` reads marts.dim_users, marts.fct_orders and
marts.fct_user_activity_daily. These builders make exactly those columns from raw orders (and,
when given, user profiles and events), with no cleaning, so archetype recovery and value
backtests run on generated data or any order export (CDNOW, a CSV) without dbt or Dagster.
The real marts are dbt's (dbt/models/marts); integration tests run those.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import duckdb
import polars as pl

from dagster_project.lib.features.user_features import EVENT_COUNT_COLUMNS, compute_user_features

# the raw event_type counted in each column of EVENT_COUNT_COLUMNS (as dbt's activity mart does)
_EVENT_TYPES = ("session_start", "page_view", "search", "add_to_cart", "review", "support_contact")


def build_stand_in_marts(
    con: duckdb.DuckDBPyConnection, orders: str, users: str | None = None, events: str | None = None
) -> None:
    """Create the three marts from relations in the landing contract's columns.

    ``orders`` (user_id, ordered_at, amount, status), ``users`` (user_id, signup_at) and
    ``events`` (user_id, event_at, event_type) are table names or table functions. Without
    users, a user is first seen at their first order; without events, every order day is an
    activity day with no events.
    """
    con.execute("create schema if not exists marts")
    con.execute(
        f"""
        create or replace table marts.fct_orders as
        select user_id, cast(ordered_at as date) as order_date, amount,
               status = 'completed' as is_completed, status = 'returned' as is_return, ordered_at,
               case when status = 'completed' then amount
                    when status = 'returned' then -amount else 0 end as net_amount
        from {orders}
        """
    )
    buyers = "select user_id, min(ordered_at) as first_order_at from marts.fct_orders group by 1"
    if users is None:
        first_seen = f"select user_id, first_order_at as first_seen_at from ({buyers})"
    else:
        first_seen = f"""
            with profiles as (
                select user_id, min(signup_at) as signup_at from {users} group by user_id
            ),
            buyers as ({buyers})
            select
                coalesce(p.user_id, b.user_id) as user_id,
                least(coalesce(p.signup_at, b.first_order_at),
                      coalesce(b.first_order_at, p.signup_at)) as first_seen_at
            from profiles as p full join buyers as b on p.user_id = b.user_id
        """
    con.execute(f"create or replace table marts.dim_users as {first_seen}")
    if events is None:
        zeros = ", ".join(f"0 as {c}" for c in (*EVENT_COUNT_COLUMNS, "events_total"))
        activity = (
            f"select user_id, order_date as activity_date, {zeros} "
            "from marts.fct_orders group by user_id, order_date"
        )
    else:
        counts = ", ".join(
            f"count(*) filter (where event_type = '{kind}') as {column}"
            for kind, column in zip(_EVENT_TYPES, EVENT_COUNT_COLUMNS, strict=True)
        )
        activity = (
            f"select user_id, cast(event_at as date) as activity_date, {counts}, "
            f"count(*) as events_total from {events} group by user_id, cast(event_at as date)"
        )
    con.execute(f"create or replace table marts.fct_user_activity_daily as {activity}")


def landing_marts(con: duckdb.DuckDBPyConnection, landing: Path) -> None:
    """The marts from a generated landing folder (``strata generate``: clean mode)."""

    def files(table: str) -> str:
        return f"read_csv('{landing / table}/*/*.csv', hive_partitioning = false)"

    build_stand_in_marts(con, files("orders"), files("users"), files("events"))


@contextmanager
def orders_warehouse(orders: pl.DataFrame) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory warehouse with the marts of an orders frame.

    ``orders``: user_id, order_date (Date), amount, and optionally is_completed (default true).
    """
    has_flag = "is_completed" in orders.columns
    completed = pl.col("is_completed").cast(pl.Boolean) if has_flag else pl.lit(True)
    frame = orders.select(
        pl.col("user_id").cast(pl.String),
        pl.col("order_date").cast(pl.Date).cast(pl.Datetime("us")).alias("ordered_at"),
        pl.col("amount").cast(pl.Float64),
        pl.when(completed).then(pl.lit("completed")).otherwise(pl.lit("cancelled")).alias("status"),
    )
    con = duckdb.connect()
    try:
        con.register("__orders", frame.to_arrow())
        build_stand_in_marts(con, "__orders")
        con.unregister("__orders")
        yield con
    finally:
        con.close()


def sample_features(home: Path, as_of: date) -> pl.DataFrame:
    """user_features as of ``as_of`` for generated data in ``home``, plus the true archetype."""
    con = duckdb.connect()
    try:
        landing_marts(con, Path(home) / "landing")
        features = compute_user_features(con, as_of)
    finally:
        con.close()
    truth = pl.read_parquet(Path(home) / "truth" / "archetypes.parquet")
    return features.join(truth, on="user_id", how="left", maintain_order="left")
