"""Order lines into orders: the shape of most retail exports (one row per invoice line).

One order per order key: the exact sum of its line amounts, its earliest readable timestamp,
the first user id its lines name, and the other columns (currency, status) of its first line.
Its lineage is that first line; its lines, exact duplicates included, are its order_items rows,
so every source line stays accounted for with its file and line. An order with a line whose
amount is missing or unreadable keeps that line's value and lineage, so ingestion quarantines
the order naming the line that broke it; a line without an order key stays a row of its own
(ingestion quarantines it for the missing id).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import polars as pl

from dagster_project.lib.ingestion.mapping.binding import connection, resolve
from dagster_project.lib.ingestion.mapping.readers import read_source
from dagster_project.lib.ingestion.mapping.spec import ISO_TIMESTAMP, SourceMapping

# Exact decimals: float sums of many lines drift from the file's cents.
_AMOUNT = "decimal(38, 6)"


def orders_from_lines(con: duckdb.DuckDBPyConnection, lines: pl.DataFrame) -> pl.DataFrame:
    """The orders of mapped order lines (contract text columns), in the columns of `lines`."""
    con.register("__lines", lines.with_row_index("__row").to_arrow())
    amount = (
        f"coalesce(try_cast(trim(amount) as {_AMOUNT}), "
        f"try_cast(try_cast(trim(amount) as double) as {_AMOUNT}))"
    )
    sql = f"""
        with lines as (
            select *, nullif(trim(order_id), '') as __key, {amount} as __amount,
                try_cast(trim(ordered_at) as timestamp) as __at,
                nullif(trim(user_id), '') as __user
            from __lines
        ),
        orders as (
            select __key,
                coalesce(min(__row) filter (where __amount is null), min(__row)) as __pick,
                bool_or(__amount is null) as __broken,
                sum(__amount) as __total,
                min(__at) as __first_at,
                first(__user order by __row) filter (where __user is not null) as __first_user
            from lines
            where __key is not null
            group by __key
        )
        select lines.* replace (
                case when __broken then amount else cast(__total as varchar) end as amount,
                coalesce(strftime(__first_at, '{ISO_TIMESTAMP}'), ordered_at) as ordered_at,
                coalesce(__first_user, user_id) as user_id
            )
        from orders join lines on lines.__row = orders.__pick
        union all
        select * from lines where __key is null
        order by __row
    """
    try:
        orders = con.sql(sql).pl()
    finally:
        con.unregister("__lines")
    return orders.select(lines.columns).cast(dict(lines.schema))


@dataclass(frozen=True)
class RepeatedKeys:
    """Order keys that occur on more than one row of an orders mapping at order grain."""

    keys: int  # distinct keys that repeat
    rows: int  # rows beyond each key's first: ingestion would reject them as duplicates
    example: str


def repeated_order_keys(mapping: SourceMapping) -> RepeatedKeys | None:
    """Order keys repeating across the orders files at order grain: most likely order lines."""
    orders = mapping.tables["orders"]
    if orders.grain != "order":
        return None
    con = connection(mapping, orders.reader)
    keys = []
    try:
        for path in orders.files:
            source = read_source(path, orders.reader)
            order_id = resolve({"order_id": orders.columns["order_id"]}, source.columns)
            con.register("src", source.to_arrow())
            keys.append(
                con.sql(
                    f"select trim(cast({order_id['order_id'].sql()} as varchar)) as k from src"
                ).pl()
            )
            con.unregister("src")
    finally:
        con.close()
    counts = pl.concat(keys).filter(pl.col("k").is_not_null()).group_by("k").len()
    repeated = counts.filter(pl.col("len") > 1).sort("len", "k", descending=[True, False])
    if repeated.height == 0:
        return None
    return RepeatedKeys(
        repeated.height, int(repeated["len"].sum()) - repeated.height, repeated["k"][0]
    )
