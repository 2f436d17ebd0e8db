"""Publish the BI-facing schema as a separate DuckDB file, swapped in atomically.

BI tools never open the working warehouse (DuckDB locks it for every other process while
a run writes). They read `serving/strata.duckdb`, which is built under a temporary name,
checkpointed, closed and then `os.replace`d into place: a reader holding the old file keeps
its consistent snapshot and a new connection sees the new one. The file is created with
`storage_version` pinned so BI drivers that embed DuckDB 1.x can open it.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import duckdb

from dagster_project.lib.core.warehouse import scalar

# The oldest storage format our supported BI drivers read (DuckDB >= 1.0).
SERVING_STORAGE_VERSION = "v1.0.0"
PUBLISHED_SCHEMA = "marts"
SNAPSHOT_COLUMNS = ("snapshot_date",)


def published_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    rows = con.execute(
        "select table_name from information_schema.tables "
        "where table_schema = ? and table_type = 'BASE TABLE' order by table_name",
        [PUBLISHED_SCHEMA],
    ).fetchall()
    return [row[0] for row in rows]


def _snapshot_column(con: duckdb.DuckDBPyConnection, table: str) -> str | None:
    rows = con.execute(
        "select column_name from information_schema.columns "
        "where table_schema = ? and table_name = ?",
        [PUBLISHED_SCHEMA, table],
    ).fetchall()
    names = {row[0] for row in rows}
    return next((c for c in SNAPSHOT_COLUMNS if c in names), None)


def publish_serving_copy(con: duckdb.DuckDBPyConnection, serving_file: Path) -> dict[str, int]:
    """Copy every table of the published schema into a new file and swap it in."""
    serving_file.parent.mkdir(parents=True, exist_ok=True)
    # A run killed while publishing leaves its temporary copy (and WAL) behind; only one run
    # publishes at a time (run lock, warehouse pool), so any such leftover is stale.
    for stale in serving_file.parent.glob(f".{serving_file.name}.*.tmp*"):
        stale.unlink(missing_ok=True)
    tmp = serving_file.with_name(f".{serving_file.name}.{os.getpid()}.tmp")
    tables = published_tables(con)
    counts: dict[str, int] = {}
    con.execute(f"attach '{tmp}' as __serving (storage_version '{SERVING_STORAGE_VERSION}')")
    try:
        con.execute(f"create schema __serving.{PUBLISHED_SCHEMA}")
        for table in tables:
            relation = f"{PUBLISHED_SCHEMA}.{table}"
            con.execute(f"create table __serving.{relation} as select * from {relation}")
            counts[relation] = int(scalar(con, f"select count(*) from __serving.{relation}"))
        con.execute("checkpoint __serving")
    finally:
        con.execute("detach __serving")
    os.replace(tmp, serving_file)
    return counts


def _atomic_copy_to_parquet(con: duckdb.DuckDBPyConnection, query: str, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    con.execute(f"copy ({query}) to '{tmp}' (format parquet)")
    os.replace(tmp, target)
    return target


def export_parquet(
    con: duckdb.DuckDBPyConnection, parquet_root: Path, snapshot: date
) -> list[Path]:
    """Snapshot tables: one file per snapshot date (Hive layout); others: the whole table."""
    written = []
    for table in published_tables(con):
        relation = f"{PUBLISHED_SCHEMA}.{table}"
        column = _snapshot_column(con, table)
        if column:
            query = f"select * from {relation} where {column} = '{snapshot.isoformat()}'"
            target = parquet_root / table / f"{column}={snapshot.isoformat()}" / "data.parquet"
        else:
            query = f"select * from {relation}"
            target = parquet_root / table / "data.parquet"
        written.append(_atomic_copy_to_parquet(con, query, target))
    return written
