"""Small DuckDB helpers shared by every asset that writes the warehouse.

DuckDB 2.x refuses new work on a connection while an `execute()` result is unfinished,
so results are always fetched whole (`fetchall`) or read through `con.sql(...)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import polars as pl


@contextmanager
def connect(
    path: Path, read_only: bool = False, settings: Mapping[str, str] | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to ``path``; ``settings`` (DuckDB options such as memory_limit) are SET on
    it. They are set, not passed as connect-time config: in one process every connection to a
    file shares one database instance, which refuses a second connection whose config differs
    (dbt's, in the same process, sets the same values the same way)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path), read_only=read_only)
    try:
        for name, value in (settings or {}).items():
            con.execute(f"set {name} = '{value.replace(chr(39), chr(39) * 2)}'")
        yield con
    finally:
        con.close()


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | None = None) -> Any:
    rows = con.execute(sql, params or []).fetchall()
    return rows[0][0] if rows else None


def table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(
        scalar(
            con,
            "select count(*) from information_schema.tables "
            "where table_schema = ? and table_name = ?",
            [schema, table],
        )
    )


def replace_rows(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    frame: pl.DataFrame,
    key: Mapping[str, Any],
) -> int:
    """Replace the rows matching `key` (column -> value) in one transaction (idempotent reruns).

    The table is created from the frame's schema on first write; afterwards columns the code
    added are added to the table (NULL in older rows) and rows are inserted by name, so a
    column order change in code does not scramble the table.
    """
    with replacing(con, key) as write:
        return write(relation, frame)


@contextmanager
def replacing(
    con: duckdb.DuckDBPyConnection, key: Mapping[str, Any]
) -> Iterator[Callable[[str, pl.DataFrame], int]]:
    """One transaction replacing the rows matching ``key`` in one or more tables, written a
    frame at a time: ``write(relation, frame)`` deletes the table's rows matching ``key`` the
    first time it sees the table (creating it, or adding the frame's new columns, as
    :func:`replace_rows` says), then inserts the frame's rows by name and returns their count.
    Committed when the block ends, rolled back when it raises: readers see all of the
    replacement or none of it, however many frames it took."""
    where = " and ".join(f"{column} = ?" for column in key)
    cleared: set[str] = set()

    def write(relation: str, frame: pl.DataFrame) -> int:
        # a failed statement aborts the transaction, and DuckDB then refuses even unregister:
        # the view also goes after the commit or rollback below
        con.register("__rows", frame.to_arrow())
        if relation not in cleared:
            schema, _ = relation.split(".")
            con.execute(f"create schema if not exists {schema}")
            add_missing_columns(con, relation, frame)
            con.execute(f"create table if not exists {relation} as select * from __rows limit 0")
            con.execute(f"delete from {relation} where {where}", list(key.values()))
            cleared.add(relation)
        con.execute(f"insert into {relation} by name select * from __rows")
        con.unregister("__rows")
        return frame.height

    try:
        with transaction(con):
            yield write
    finally:
        con.unregister("__rows")


@contextmanager
def frame_in_transaction(
    con: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame
) -> Iterator[None]:
    """``frame`` visible as the view ``name`` inside one transaction: committed when the block
    ends, rolled back when it raises, so readers see all of a write or none of it."""
    con.register(name, frame.to_arrow())
    try:
        with transaction(con):
            yield
    finally:
        con.unregister(name)


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Committed when the block ends, rolled back when it raises."""
    con.execute("begin transaction")
    try:
        yield
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise


def replace_snapshot(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    frame: pl.DataFrame,
    date_column: str,
    day: date,
) -> int:
    """Replace the rows of one snapshot date (see replace_rows)."""
    return replace_rows(con, relation, frame, {date_column: day})


def read_frame(
    con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any] | None = None
) -> pl.DataFrame:
    return con.sql(sql, params=params).pl() if params else con.sql(sql).pl()


def replace_table(con: duckdb.DuckDBPyConnection, relation: str, frame: pl.DataFrame) -> int:
    """Replace a whole small table (a catalog) atomically with the frame's rows and schema."""
    schema, _ = relation.split(".")
    con.execute(f"create schema if not exists {schema}")
    con.register("__table", frame.to_arrow())
    try:
        con.execute(f"create or replace table {relation} as select * from __table")
    finally:
        con.unregister("__table")
    return frame.height


def add_missing_columns(con: duckdb.DuckDBPyConnection, relation: str, frame: pl.DataFrame) -> None:
    """Add the frame's columns that an existing table lacks (NULL in older rows), so a table
    written by an earlier release accepts rows with new columns."""
    schema, table = relation.split(".")
    if not table_exists(con, schema, table):
        return
    existing = {
        row[0]
        for row in con.execute(
            "select column_name from information_schema.columns "
            "where table_schema = ? and table_name = ?",
            [schema, table],
        ).fetchall()
    }
    missing = [c for c in frame.columns if c not in existing]
    if not missing:
        return
    con.register("__columns", frame.head(0).to_arrow())
    try:
        types = dict(
            con.execute(
                "select column_name, column_type from (describe select * from __columns)"
            ).fetchall()
        )
    finally:
        con.unregister("__columns")
    for column in missing:
        con.execute(f'alter table {relation} add column "{column}" {types[column]}')
