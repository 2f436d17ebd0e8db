"""Order lines into orders: the shape of most retail exports (one row per invoice line).

One order per order key: the exact sum of its line amounts, its earliest readable timestamp,
the first user id its lines name, and the other columns (currency, status) of its first line.
Its lineage is that first line; its lines, exact duplicates included, are its order_items rows,
so every source line stays accounted for with its file and line. An order with a line whose
amount is missing or unreadable keeps that line's value and lineage, so ingestion quarantines
the order naming the line that broke it; a line without an order key stays a row of its own
(ingestion quarantines it for the missing id).

Returns: a mapping's `returns:` condition flags rows (a credit note's lines, negative lines).
An invoice all of whose lines are returns becomes an order with status `returned` and the
money given back as a positive amount (its items: the quantities returned); fct_orders'
net_amount then subtracts it from the user's revenue. An invoice mixing sales and returns
is one order with the net sum of its lines.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import polars as pl

from dagster_project.lib.ingestion.mapping.binding import connection, resolve, where_clause
from dagster_project.lib.ingestion.mapping.readers import read_source
from dagster_project.lib.ingestion.mapping.spec import (
    ISO_TIMESTAMP,
    RETURN_FLAG,
    RETURN_STATUS,
    SourceMapping,
)

# Exact decimals: float sums of many lines drift from the file's cents.
_AMOUNT = "decimal(38, 6)"


def orders_from_lines(
    con: duckdb.DuckDBPyConnection, lines: pl.DataFrame, priced: bool = True
) -> pl.DataFrame:
    """The orders of mapped order lines (contract text columns), in the columns of `lines`.

    ``priced`` False (`money: none`): the lines carry no amount, so none is summed; an order is
    its earliest line's timestamp and first user, and nothing breaks it."""
    con.register("__lines", lines.with_row_index("__row").to_arrow())
    # an invoice is a return when all its lines are (a credit note); a mixed one nets out
    has_returns = RETURN_FLAG in lines.columns
    order_return = f", bool_and({RETURN_FLAG}) as __order_return" if has_returns else ""
    return_replace = f", __order_return as {RETURN_FLAG}" if has_returns else ""
    amount = (
        f"coalesce(try_cast(trim(amount) as {_AMOUNT}), "
        f"try_cast(try_cast(trim(amount) as double) as {_AMOUNT}))"
        if priced
        else f"cast(0 as {_AMOUNT})"  # nothing to sum: no line is broken by its amount
    )
    total = (
        "case when __broken then amount else cast(__total as varchar) end" if priced else "amount"
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
                {order_return}
            from lines
            where __key is not null
            group by __key
        )
        select lines.* replace (
                {total} as amount,
                coalesce(strftime(__first_at, '{ISO_TIMESTAMP}'), ordered_at) as ordered_at,
                coalesce(__first_user, user_id) as user_id
                {return_replace}
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
                    + where_clause(orders.where)  # only the rows that are orders
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


def as_returns(frame: pl.DataFrame, money: tuple[str, ...], status: bool) -> pl.DataFrame:
    """Rows flagged as returns: their `money` columns as positive text (the money given back,
    the quantity returned) and, for orders, status `returned`; the flag is dropped."""
    flagged = pl.col(RETURN_FLAG)
    updates = [
        pl.when(flagged)
        .then(pl.col(c).str.strip_chars().str.strip_prefix("-"))
        .otherwise(pl.col(c))
        .alias(c)
        for c in money
    ]
    if status:
        updates.append(
            pl.when(flagged).then(pl.lit(RETURN_STATUS)).otherwise("status").alias("status")
        )
    return frame.with_columns(updates).drop(RETURN_FLAG)
