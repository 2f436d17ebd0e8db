"""Small DuckDB helpers shared by every asset that writes the warehouse.

DuckDB 2.x refuses new work on a connection while an `execute()` result is unfinished,
so results are always fetched whole (`fetchall`) or read through `con.sql(...)`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import polars as pl


@contextmanager
def connect(path: Path, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path), read_only=read_only)
    try:
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


def replace_snapshot(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    frame: pl.DataFrame,
    date_column: str,
    day: date,
) -> int:
    """Replace the rows of one snapshot date in one transaction (idempotent reruns).

    The table is created from the frame's schema on first write; afterwards rows are
    inserted by name, so a column order change in code does not scramble the table.
    """
    schema, _ = relation.split(".")
    con.execute(f"create schema if not exists {schema}")
    con.register("__snapshot", frame.to_arrow())
    try:
        con.execute("begin transaction")
        con.execute(f"create table if not exists {relation} as select * from __snapshot limit 0")
        con.execute(f"delete from {relation} where {date_column} = ?", [day])
        con.execute(f"insert into {relation} by name select * from __snapshot")
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    finally:
        con.unregister("__snapshot")
    return frame.height


def read_frame(
    con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any] | None = None
) -> pl.DataFrame:
    return con.sql(sql, params=params).pl() if params else con.sql(sql).pl()
