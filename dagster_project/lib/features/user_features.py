"""Per-user features as of a snapshot date, point-in-time correct.

Event-level data never leaves DuckDB: one SQL pass aggregates the marts to one row per
user, filtered to timestamps on or before the as-of date; polars derives the rest
(ratios, trends, BG/NBD inputs) on that per-user frame.
"""

from __future__ import annotations

from datetime import date

import duckdb
import polars as pl

EVENT_COUNT_COLUMNS = (
    "sessions",
    "page_views",
    "searches",
    "add_to_carts",
    "reviews",
    "support_contacts",
)


def _money_sum(window: str) -> str:
    """The net money of a user's orders in a window: NULL (not 0) when one of them has no
    amount, since the sum is then not known."""
    return (
        f"case when count(*) filter (where {window} and net_amount is null) > 0 then null "
        f"else coalesce(sum(net_amount) filter (where {window}), 0) end"
    )


# $as_of is bound as a DATE parameter; windows are (as_of - n, as_of], so "30d" means the
# thirty days ending on the snapshot date itself.
USER_AGGREGATES_SQL = f"""
with known_users as (
    select user_id, cast(first_seen_at as date) as first_seen_date
    from marts.dim_users
    where cast(first_seen_at as date) <= $as_of
),
orders as not materialized (
    -- read where it is used: DuckDB would otherwise copy every order of the history once for
    -- its three readers
    -- amounts stay decimal: their sums are exact, so they do not depend on the order DuckDB
    -- happens to add rows in (a backfill or a rerun gives identical features)
    -- Money is net of returns: a return's net_amount is negative, so it takes back what its
    -- purchase added (0 for cancelled and refunded orders).
    select user_id, order_date, amount, net_amount, is_completed, is_return
    from marts.fct_orders
    where order_date <= $as_of
),
money as (
    -- orders and not one amount: the source has no money (an events-only mapping, money:
    -- none), so every user's money features are NULL, not 0
    select count(*) = 0 or count(amount) > 0 as money_known from orders
),
order_aggregates as (
    select
        user_id,
        count(*) filter (where not is_return) as all_orders,
        count(*) filter (where is_completed) as frequency,
        {_money_sum("true")} as monetary,
        min(order_date) filter (where is_completed) as first_order_date,
        max(order_date) filter (where is_completed) as last_order_date,
        count(*) filter (where is_completed and order_date > $as_of - 30) as orders_30d,
        count(*) filter (
            where is_completed and order_date > $as_of - 60 and order_date <= $as_of - 30
        ) as orders_prev_30d,
        count(*) filter (where is_completed and order_date > $as_of - 90) as orders_90d,
        {_money_sum("order_date > $as_of - 30")} as revenue_30d,
        {_money_sum("order_date > $as_of - 90")} as revenue_90d,
        {_money_sum("order_date > $as_of - 180 and order_date <= $as_of - 90")}
            as revenue_prev_90d
    from orders
    group by user_id
),
order_days as (
    -- each user's days with a completed order: how many, and the gap between the last two
    select
        user_id,
        count(*) as purchase_days,
        max(order_date, 2) as last_two_days
    from (select distinct user_id, order_date from orders where is_completed)
    group by user_id
),
activity_aggregates as (
    select
        user_id,
        max(activity_date) as last_active_date,
        {
    ", ".join(
        f"coalesce(sum({c}) filter (where activity_date > $as_of - 90), 0) as {c}_90d"
        for c in EVENT_COUNT_COLUMNS
    )
},
        coalesce(sum(events_total) filter (where activity_date > $as_of - 90), 0) as events_90d,
        coalesce(sum(events_total) filter (where activity_date > $as_of - 30), 0) as events_30d,
        coalesce(sum(events_total) filter (
            where activity_date > $as_of - 60 and activity_date <= $as_of - 30
        ), 0) as events_prev_30d
    from marts.fct_user_activity_daily
    where activity_date <= $as_of
    group by user_id
)
select
    u.user_id,
    u.first_seen_date,
    o.* exclude (user_id),
    coalesce(d.purchase_days, case when o.user_id is not null then 0 end) as purchase_days,
    a.* exclude (user_id),
    d.last_two_days[1] - d.last_two_days[2] as prev_order_gap_days,
    m.money_known
from known_users as u
cross join money as m
left join order_aggregates as o on u.user_id = o.user_id
left join activity_aggregates as a on u.user_id = a.user_id
left join order_days as d on u.user_id = d.user_id
order by u.user_id
"""

COUNT_COLUMNS = (
    "all_orders",
    "frequency",
    "purchase_days",
    "orders_30d",
    "orders_prev_30d",
    "orders_90d",
    *(f"{c}_90d" for c in EVENT_COUNT_COLUMNS),
    "events_90d",
    "events_30d",
    "events_prev_30d",
)
AMOUNT_COLUMNS = ("monetary", "revenue_30d", "revenue_90d", "revenue_prev_90d")
# Features in money: NULL for everyone when the source has no money (see money_known).
MONEY_FEATURES = ("monetary", "avg_order_value", "revenue_30d", "revenue_90d", "revenue_trend_90d")

FEATURE_COLUMNS: tuple[str, ...] = (
    "user_id",
    "as_of_date",
    "first_seen_date",
    "tenure_days",
    "is_customer",
    "first_order_date",
    "last_order_date",
    "recency_days",
    "frequency",
    "monetary",
    "avg_order_value",
    "repeat_purchases",
    "purchase_span_days",
    "customer_age_days",
    "prev_order_gap_days",
    "orders_30d",
    "orders_90d",
    "revenue_30d",
    "revenue_90d",
    "orders_trend_30d",
    "revenue_trend_90d",
    *(f"{c}_90d" for c in EVENT_COUNT_COLUMNS),
    "events_90d",
    "events_30d",
    "events_trend_30d",
    "last_active_date",
    "days_since_last_active",
    "cancel_refund_rate",
)


def user_aggregates(con: duckdb.DuckDBPyConnection, as_of: date) -> pl.DataFrame:
    """One row per user known on `as_of`, aggregated in DuckDB from the marts."""
    return con.sql(USER_AGGREGATES_SQL, params={"as_of": as_of}).pl()


def _days_between(later: pl.Expr, earlier: pl.Expr) -> pl.Expr:
    return (later - earlier).dt.total_days().cast(pl.Int32)


def derive_features(aggregates: pl.DataFrame, as_of: date) -> pl.DataFrame:
    """Turn per-user aggregates into the feature table (contract column order)."""
    as_of_lit = pl.lit(as_of, dtype=pl.Date)
    # a user without orders spent 0; a user with an order without amount: NULL (from SQL); a
    # source without any money: NULL for everyone
    money_known = (
        pl.col("money_known").fill_null(True)
        if "money_known" in aggregates.columns
        else pl.lit(True)
    )
    has_orders = pl.col("all_orders").is_not_null()
    frame = aggregates.with_columns(
        *[pl.col(c).fill_null(0).cast(pl.Int32) for c in COUNT_COLUMNS],
        *[
            pl.when(~money_known)
            .then(None)
            .when(has_orders)
            .then(pl.col(c))
            .otherwise(0.0)
            .cast(pl.Float64)
            .alias(c)
            for c in AMOUNT_COLUMNS
        ],
        pl.col("first_order_date").cast(pl.Date),
        pl.col("last_order_date").cast(pl.Date),
        pl.col("last_active_date").cast(pl.Date),
        pl.col("first_seen_date").cast(pl.Date),
        pl.col("prev_order_gap_days").cast(pl.Int32),
    )
    is_customer = pl.col("frequency") > 0
    return frame.with_columns(
        as_of_lit.alias("as_of_date"),
        _days_between(as_of_lit, pl.col("first_seen_date")).alias("tenure_days"),
        is_customer.alias("is_customer"),
        _days_between(as_of_lit, pl.col("last_order_date")).alias("recency_days"),
        pl.when(is_customer)
        .then(pl.col("monetary") / pl.col("frequency"))
        .otherwise(None)
        .alias("avg_order_value"),
        (pl.col("purchase_days") - 1).clip(lower_bound=0).cast(pl.Int32).alias("repeat_purchases"),
        _days_between(pl.col("last_order_date"), pl.col("first_order_date"))
        .fill_null(0)
        .alias("purchase_span_days"),
        _days_between(as_of_lit, pl.col("first_order_date")).alias("customer_age_days"),
        (pl.col("orders_30d") - pl.col("orders_prev_30d")).alias("orders_trend_30d"),
        (pl.col("revenue_90d") - pl.col("revenue_prev_90d")).alias("revenue_trend_90d"),
        (pl.col("events_30d") - pl.col("events_prev_30d")).alias("events_trend_30d"),
        _days_between(as_of_lit, pl.col("last_active_date")).alias("days_since_last_active"),
        pl.when(pl.col("all_orders") > 0)
        .then((pl.col("all_orders") - pl.col("frequency")) / pl.col("all_orders"))
        .otherwise(0.0)
        .alias("cancel_refund_rate"),
    ).select(FEATURE_COLUMNS)


def compute_user_features(con: duckdb.DuckDBPyConnection, as_of: date) -> pl.DataFrame:
    return derive_features(user_aggregates(con, as_of), as_of)
