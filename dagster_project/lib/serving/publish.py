"""Publish the BI-facing schema as a separate DuckDB file, swapped in atomically, and as Parquet.

BI tools never open the working warehouse (DuckDB locks it for every other process while
a run writes). They read `serving/strata.duckdb`, which is built under a temporary name,
checkpointed, closed and then `os.replace`d into place: a reader holding the old file keeps
its consistent snapshot and a new connection sees the new one. The file is created with
`storage_version` pinned so BI drivers that embed DuckDB 1.x can open it.

The Parquet exports follow the same slices: a table with a date column (SLICE_COLUMNS) is one
file per date, `<table>/<column>=YYYY-MM-DD/data.parquet` (Hive layout), and only the dates
whose rows changed since the last publish (or whose file is missing) are written again; any
other table is one file, `<table>/data.parquet`, written whole.

Which dates changed is found by fingerprinting each date's rows. The published file keeps the
fingerprints of what it holds (schema FINGERPRINT_SCHEMA, one small table per sliced table,
written and swapped in with the data), so a daily publish hashes the warehouse's rows only, not
the published copy's as well: both grow with every snapshot kept.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb

from dagster_project.lib.core.warehouse import scalar

# The oldest storage format our supported BI drivers read (DuckDB >= 1.0).
SERVING_STORAGE_VERSION = "v1.0.0"
PUBLISHED_SCHEMA = "marts"
# Date columns a published table is sliced by, in order of preference: the serving copy and the
# Parquet exports rewrite only the slices that changed (see publish_serving_copy).
SLICE_COLUMNS = ("snapshot_date", "order_date", "activity_date")
# In the published file: per sliced table, each slice's (row_count, digest) as published. Not
# a BI table; a file without it (published by an older Strata) is fingerprinted by hashing.
FINGERPRINT_SCHEMA = "strata_publish"
# A patched serving file is written afresh once more than this share of it is free blocks.
MAX_FREE_SHARE = 0.5
WHOLE_FILE = "data.parquet"


Fingerprints = dict[object, tuple[int, int]]


@dataclass(frozen=True)
class Slices:
    """A table's slice column and its type, the values (dates) whose rows changed since the
    last publish, and each value's fingerprint now. `changed` None: no earlier copy to compare
    with (every slice is written)."""

    column: str
    column_type: str
    changed: list[object] | None
    current: Fingerprints


def _tables(con: duckdb.DuckDBPyConnection, database: str, schema: str) -> set[str]:
    """The tables (not views) of `schema` in the attached `database`."""
    rows = con.execute(
        "select table_name from duckdb_tables() where database_name = ? and schema_name = ?",
        [database, schema],
    ).fetchall()
    return {row[0] for row in rows}


def published_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    return sorted(_tables(con, _current_database(con), PUBLISHED_SCHEMA))


def _columns(con: duckdb.DuckDBPyConnection, database: str, table: str) -> list[tuple[str, str]]:
    return con.execute(
        "select column_name, data_type from duckdb_columns() "
        "where database_name = ? and schema_name = ? and table_name = ? order by column_index",
        [database, PUBLISHED_SCHEMA, table],
    ).fetchall()


def _slice_fingerprints(
    con: duckdb.DuckDBPyConnection, relation: str, column: str, columns: list[str]
) -> Fingerprints:
    """Per value of the slice column: row count and the sum of the rows' hashes (a multiset
    fingerprint: any changed, added or removed row changes it)."""
    hashed = ", ".join(f'"{c}"' for c in columns)
    rows = con.execute(
        f'select "{column}", count(*), sum(cast(hash({hashed}) as hugeint)) '
        f'from {relation} group by "{column}"'
    ).fetchall()
    return {value: (count, digest) for value, count, digest in rows}


def _published_fingerprints(
    con: duckdb.DuckDBPyConnection,
    database: str,
    table: str,
    column: str,
    columns: list[str],
    stored: bool,
) -> Fingerprints:
    """The slices' fingerprints of the copy in `database`: as `stored` with it, else hashed."""
    if not stored:
        return _slice_fingerprints(con, f"{database}.{PUBLISHED_SCHEMA}.{table}", column, columns)
    rows = con.execute(
        f'select "{column}", row_count, digest from {database}.{FINGERPRINT_SCHEMA}."{table}"'
    ).fetchall()
    return {value: (count, digest) for value, count, digest in rows}


def _slices(
    con: duckdb.DuckDBPyConnection, database: str | None, table: str, stored: bool = False
) -> Slices | None:
    """The table's slices compared with its copy in `database` (None: no copy to compare
    with; `stored`: that copy's fingerprints are kept with it); None when the table is not
    sliced: no slice column, no rows, or a null in it."""
    columns = _columns(con, _current_database(con), table)
    names = [name for name, _ in columns]
    column = next((c for c in SLICE_COLUMNS if c in names), None)
    if column is None:
        return None
    new = _slice_fingerprints(con, f"{PUBLISHED_SCHEMA}.{table}", column, names)
    if not new or None in new:
        return None
    column_type = dict(columns)[column]
    if database is None or _columns(con, database, table) != columns:
        return Slices(column, column_type, None, new)
    old = _published_fingerprints(con, database, table, column, names, stored)
    changed = [value for value in new.keys() | old.keys() if new.get(value) != old.get(value)]
    if None in changed:
        return Slices(column, column_type, None, new)
    return Slices(column, column_type, sorted(changed), new)


def _store_fingerprints(
    con: duckdb.DuckDBPyConnection, database: str, table: str, slices: Slices | None
) -> None:
    """Keep the slices' fingerprints with the copy just written (none for an unsliced table)."""
    target = f'{database}.{FINGERPRINT_SCHEMA}."{table}"'
    if slices is None:
        con.execute(f"drop table if exists {target}")
        return
    values = sorted(slices.current)
    # digests are HUGEINT sums: passed as text, so no value is narrowed on the way
    con.execute(
        f"create or replace table {target} as select "
        f'cast(unnest(?) as {slices.column_type}) as "{slices.column}", '
        "unnest(?) as row_count, cast(unnest(?) as hugeint) as digest",
        [
            values,
            [slices.current[v][0] for v in values],
            [str(slices.current[v][1]) for v in values],
        ],
    )


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


def publish_serving_copy(
    con: duckdb.DuckDBPyConnection, serving_file: Path, parquet_root: Path | None = None
) -> dict[str, int]:
    """Write every table of the published schema into a new file and swap it in; with
    `parquet_root`, export the tables as Parquet there too.

    The new file starts as a copy of the published one: a table with a slice column
    (SLICE_COLUMNS) rewrites only the dates whose rows differ from the warehouse's (by a
    fingerprint of each date's rows), every other table is copied whole. At a million users
    the daily facts and snapshots are most of the bytes and one run changes a day of them.
    The Parquet files of the changed dates are written before the new file is swapped in: a
    run that fails on the way leaves the old file, so the next one finds the same dates changed
    and writes them again.
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
        con.execute(f"create schema if not exists {alias}.{FINGERPRINT_SCHEMA}")
        previous = _tables(con, alias, PUBLISHED_SCHEMA)
        fingerprinted = _tables(con, alias, FINGERPRINT_SCHEMA)
        for table in sorted(previous - set(tables)):
            con.execute(f"drop table {alias}.{PUBLISHED_SCHEMA}.{table}")
            con.execute(f'drop table if exists {alias}.{FINGERPRINT_SCHEMA}."{table}"')
        if parquet_root is not None:
            _remove_unpublished_exports(parquet_root, tables)
        for table in tables:
            relation = f"{PUBLISHED_SCHEMA}.{table}"
            target = f"{alias}.{relation}"
            slices = _slices(
                con, alias if table in previous else None, table, table in fingerprinted
            )
            if parquet_root is not None:
                _export_table(con, parquet_root, table, slices)
            if slices is None or slices.changed is None:
                con.execute(f"drop table if exists {target}")
                con.execute(f"create table {target} as select * from {relation}")
            elif slices.changed:
                column, changed = slices.column, slices.changed
                con.execute(f'delete from {target} where list_contains(?, "{column}")', [changed])
                con.execute(
                    f"insert into {target} select * from {relation} "
                    f'where list_contains(?, "{column}")',
                    [changed],
                )
            _store_fingerprints(con, alias, table, slices)
            counts[relation] = int(scalar(con, f"select count(*) from {target}"))
        con.execute(f"checkpoint {alias}")
    finally:
        con.execute(f"detach {alias}")
    os.replace(tmp, serving_file)
    return counts


def _remove_unpublished_exports(parquet_root: Path, tables: list[str]) -> None:
    if parquet_root.is_dir():
        for folder in parquet_root.iterdir():
            if folder.is_dir() and folder.name not in tables:
                shutil.rmtree(folder)


def _slice_folder(column: str, value: object) -> str:
    return f"{column}={value}"


def _export_table(
    con: duckdb.DuckDBPyConnection, parquet_root: Path, table: str, slices: Slices | None
) -> None:
    """Bring `<parquet_root>/<table>/` up to date: the changed and missing slices' files, or the
    whole file; files of slices (or of a layout) the table no longer has are removed."""
    folder = parquet_root / table
    folder.mkdir(parents=True, exist_ok=True)
    relation = f"{PUBLISHED_SCHEMA}.{table}"
    if slices is None:
        _atomic_copy_to_parquet(con, f"select * from {relation}", folder / WHOLE_FILE)
        for stale in folder.iterdir():
            if stale.is_dir():
                shutil.rmtree(stale)
        return
    wanted = {_slice_folder(slices.column, value): value for value in slices.current}
    for stale in folder.iterdir():
        if stale.name in wanted:
            continue
        if stale.is_dir():
            shutil.rmtree(stale)
        else:
            stale.unlink()
    changed = set(slices.current if slices.changed is None else slices.changed)
    write = sorted(
        value
        for name, value in wanted.items()
        if value in changed or not (folder / name / WHOLE_FILE).exists()
    )
    if not write:
        return
    where = f'where list_contains(?, "{slices.column}")'
    if len(write) == 1:
        # a daily run changes one date: a plain write takes half the time of a partitioned one
        target = folder / _slice_folder(slices.column, write[0]) / WHOLE_FILE
        _atomic_copy_to_parquet(con, f"select * from {relation} {where}", target, [write])
        return
    staging = parquet_root / f".{table}.{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        # one query writes every slice, each into its Hive folder (the column stays in the file)
        con.execute(
            f"copy (select * from {relation} {where}) "
            f"to '{staging}' (format parquet, partition_by (\"{slices.column}\"), "
            "write_partition_columns true, filename_pattern 'data')",
            [write],
        )
        for value in write:
            name = _slice_folder(slices.column, value)
            (folder / name).mkdir(exist_ok=True)
            os.replace(staging / name / "data0.parquet", folder / name / WHOLE_FILE)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _atomic_copy_to_parquet(
    con: duckdb.DuckDBPyConnection, query: str, target: Path, parameters: list | None = None
) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    con.execute(f"copy ({query}) to '{tmp}' (format parquet)", parameters)
    os.replace(tmp, target)
    return target
