"""Publish the BI-facing schema as a separate DuckDB file, swapped in atomically.

BI tools never open the working warehouse (DuckDB locks it for every other process while
a run writes). They read `serving/strata.duckdb`, which is built under a temporary name,
checkpointed, closed and then `os.replace`d into place: a reader holding the old file keeps
its consistent snapshot and a new connection sees the new one. The file is created with
`storage_version` pinned so BI drivers that embed DuckDB 1.x can open it.
"""

from __future__ import annotations

import os
import shutil
from datetime import date
from pathlib import Path

import duckdb

from dagster_project.lib.core.warehouse import scalar

# The oldest storage format our supported BI drivers read (DuckDB >= 1.0).
SERVING_STORAGE_VERSION = "v1.0.0"
PUBLISHED_SCHEMA = "marts"
SNAPSHOT_COLUMNS = ("snapshot_date",)
# Date columns a published table may be sliced by: the serving copy rewrites only the slices
# that changed (see publish_serving_copy).
SLICE_COLUMNS = ("snapshot_date", "order_date", "activity_date")
# A patched serving file is written afresh once more than this share of it is free blocks.
MAX_FREE_SHARE = 0.5


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


def _columns(con: duckdb.DuckDBPyConnection, database: str, table: str) -> list[tuple[str, str]]:
    return con.execute(
        "select column_name, data_type from duckdb_columns() "
        "where database_name = ? and schema_name = ? and table_name = ? order by column_index",
        [database, PUBLISHED_SCHEMA, table],
    ).fetchall()


def _slice_fingerprints(
    con: duckdb.DuckDBPyConnection, relation: str, column: str, columns: list[str]
) -> dict[object, tuple[int, int]]:
    """Per value of the slice column: row count and the sum of the rows' hashes (a multiset
    fingerprint: any changed, added or removed row changes it)."""
    hashed = ", ".join(f'"{c}"' for c in columns)
    rows = con.execute(
        f'select "{column}", count(*), sum(cast(hash({hashed}) as hugeint)) '
        f'from {relation} group by "{column}"'
    ).fetchall()
    return {value: (count, digest) for value, count, digest in rows}


def _changed_slices(
    con: duckdb.DuckDBPyConnection, database: str, table: str
) -> tuple[str, list[object]] | None:
    """The slice column and the values (dates) whose rows differ between the warehouse table
    and the copy in `database`; None when the table must be copied whole (no slice column, a
    different schema, a null slice)."""
    columns = _columns(con, database, table)
    if not columns or columns != _columns(con, _current_database(con), table):
        return None
    names = [name for name, _ in columns]
    column = next((c for c in SLICE_COLUMNS if c in names), None)
    if column is None:
        return None
    relation = f"{PUBLISHED_SCHEMA}.{table}"
    new = _slice_fingerprints(con, relation, column, names)
    old = _slice_fingerprints(con, f"{database}.{relation}", column, names)
    changed = [value for value in new.keys() | old.keys() if new.get(value) != old.get(value)]
    if any(value is None for value in changed):
        return None
    return column, sorted(changed)


def _current_database(con: duckdb.DuckDBPyConnection) -> str:
    return str(scalar(con, "select current_database()"))


def _attach_previous_copy(
    con: duckdb.DuckDBPyConnection, serving_file: Path, tmp: Path, alias: str
) -> bool:
    """Attach a copy of the published file as `alias` to patch it; False (nothing attached)
    when there is none, it cannot be read, or it is mostly free blocks left by earlier
    patches (then a fresh file is smaller)."""
    if not serving_file.exists():
        return False
    shutil.copyfile(serving_file, tmp)
    try:
        con.execute(f"attach '{tmp}' as {alias} (storage_version '{SERVING_STORAGE_VERSION}')")
    except duckdb.Error:
        tmp.unlink(missing_ok=True)
        return False
    free, total = con.execute(
        "select free_blocks, total_blocks from pragma_database_size() where database_name = ?",
        [alias],
    ).fetchone()
    if total and free > total * MAX_FREE_SHARE:
        con.execute(f"detach {alias}")
        tmp.unlink(missing_ok=True)
        return False
    return True


def publish_serving_copy(con: duckdb.DuckDBPyConnection, serving_file: Path) -> dict[str, int]:
    """Write every table of the published schema into a new file and swap it in.

    The new file starts as a copy of the published one: a table with a slice column
    (SLICE_COLUMNS) rewrites only the dates whose rows differ from the warehouse's (by a
    fingerprint of each date's rows), every other table is copied whole. At a million users
    the daily facts and snapshots are most of the bytes and one run changes a day of them.
    """
    serving_file.parent.mkdir(parents=True, exist_ok=True)
    # A run killed while publishing leaves its temporary copy (and WAL) behind; only one run
    # publishes at a time (run lock, warehouse pool), so any such leftover is stale.
    for stale in serving_file.parent.glob(f".{serving_file.name}.*.tmp*"):
        stale.unlink(missing_ok=True)
    tmp = serving_file.with_name(f".{serving_file.name}.{os.getpid()}.tmp")
    alias = "__serving"
    tables = published_tables(con)
    counts: dict[str, int] = {}
    if not _attach_previous_copy(con, serving_file, tmp, alias):
        con.execute(f"attach '{tmp}' as {alias} (storage_version '{SERVING_STORAGE_VERSION}')")
    try:
        con.execute(f"create schema if not exists {alias}.{PUBLISHED_SCHEMA}")
        previous = {
            row[0]
            for row in con.execute(
                "select table_name from duckdb_tables() where database_name = ? "
                "and schema_name = ?",
                [alias, PUBLISHED_SCHEMA],
            ).fetchall()
        }
        for table in sorted(previous - set(tables)):
            con.execute(f"drop table {alias}.{PUBLISHED_SCHEMA}.{table}")
        for table in tables:
            relation = f"{PUBLISHED_SCHEMA}.{table}"
            target = f"{alias}.{relation}"
            slices = _changed_slices(con, alias, table) if table in previous else None
            if slices is None:
                con.execute(f"drop table if exists {target}")
                con.execute(f"create table {target} as select * from {relation}")
            elif slices[1]:
                column, changed = slices
                con.execute(f'delete from {target} where list_contains(?, "{column}")', [changed])
                con.execute(
                    f"insert into {target} select * from {relation} "
                    f'where list_contains(?, "{column}")',
                    [changed],
                )
            counts[relation] = int(scalar(con, f"select count(*) from {target}"))
        con.execute(f"checkpoint {alias}")
    finally:
        con.execute(f"detach {alias}")
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
