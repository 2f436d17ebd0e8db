"""Landing files -> typed raw tables, with every rejected row kept in quarantine.

Files land as ``<landing>/<table>/date=YYYY-MM-DD/*.csv|*.parquet``. A partition is
replaced as a whole (delete + insert in one transaction), so re-ingesting a day never
duplicates it. Nothing is dropped silently: every landed row ends in ``raw.<table>`` or in
``quarantine.<table>`` with a reason, a machine-readable kind, the source file and the line,
and ``audit.ingested_partitions`` records landed = accepted + quarantined per day.

Row-level problems (each a ``kind``):

- ``missing_value`` / ``unparseable``: a required value is empty, or a value cannot be typed;
- ``no_user``: an order or event without a user id (a guest), or a line of a guest's order;
  kept apart from the reject share;
- ``negative_amount``: a negative amount, price or quantity;
- ``future_timestamp`` / ``outside_partition``: the row's timestamp is after / before its day;
- ``duplicate_id``: the id was already accepted earlier (an earlier day, or an earlier line of
  the same day); the first occurrence wins;
- ``orphan``: the parent row (the order's user, the item's order, the event's user) has not
  been accepted on or before the row's day, checked only when the parent source is given.

Duplicates and orphans are judged against days up to the row's own day only, so a partition
ingested late (a backfill) gets the same verdicts as when it is ingested in order.

Files that carry ``_source_file`` / ``_source_line`` columns (written by the source mapping,
see ``mapping/``) keep that lineage: quarantine then points at the team's original export.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import date, datetime
from pathlib import Path

import duckdb
import polars as pl

from dagster_project.lib.ingestion.contract import (
    CHUNK_BYTES,
    CONTRACT_TABLES,
    ID_COLUMNS,
    KIND_DUPLICATE,
    KIND_NO_USER,
    KIND_ORPHAN,
    PARENTS,
    PARQUET_EXPANSION,
    SOURCE_FILE_COLUMN,
    SOURCE_LINE_COLUMN,
    SQL_TYPES,
    TABLE_SPECS,
    IngestStats,
    ensure_ingestion_tables,
)
from dagster_project.lib.ingestion.landing import (
    files_fingerprint,
    guests_count_as_rejects,
    landed_dates,
    partition_files,
    read_landing_file,
    source_given,
    type_rows,
)


def _relational_problems(
    con: duckdb.DuckDBPyConnection, candidates: pl.DataFrame, table: str, parent_given: bool
) -> pl.DataFrame:
    """Duplicates and orphans among rows that passed typing: (__row, _reason, _kind).

    Both look only at days up to the row's own (point in time), in DuckDB: raw tables can
    be large, the candidate rows are one chunk of days.
    """
    empty = pl.DataFrame(schema={"__row": pl.Int64, "_reason": pl.String, "_kind": pl.String})
    if candidates.height == 0:
        return empty
    parts = []
    con.register("__candidates", candidates.to_arrow())
    try:
        id_column = ID_COLUMNS.get(table)
        if id_column:
            # Earlier days in raw (the chunk's own days are being replaced, so not those) and
            # the chunk itself, ranked by day, file and line: every rank after the first is a
            # duplicate. Raw rows of later days rank after the chunk's and flag nothing here.
            # The range of the chunk's ids, given as constants, lets DuckDB skip every row
            # group of raw outside it: where ids grow over time (sequences, time-ordered ids)
            # a day's new ids meet a few row groups instead of the whole history.
            ids = candidates.get_column(id_column)
            parts.append(
                con.sql(
                    f"""
                    with earlier as (
                        select {id_column} as id, _partition_date, _source_file, _source_line
                        from raw.{table}
                        where {id_column} between $lowest and $highest
                          and _partition_date not in (select _partition_date from __candidates)
                          and {id_column} in (select {id_column} from __candidates)
                    ),
                    candidates as (
                        select {id_column} as id, _partition_date, _source_file, _source_line,
                               __row
                        from __candidates
                    ),
                    unioned as (
                        select id, _partition_date, _source_file, _source_line,
                            null::bigint as __row
                        from earlier
                        union all
                        select id, _partition_date, _source_file, _source_line, __row
                        from candidates
                    ),
                    ranked as (
                        select *,
                            row_number() over w as rank,
                            first_value(_partition_date) over w as first_date,
                            first_value(_source_file) over w as first_file,
                            first_value(_source_line) over w as first_line
                        from unioned
                        window w as (
                            partition by id
                            order by _partition_date, _source_file, _source_line, __row
                        )
                    )
                    select
                        __row,
                        'duplicate {id_column}: first seen ' || strftime(first_date, '%Y-%m-%d')
                            || ' in ' || regexp_extract(first_file, '[^/\\\\]*$')
                            || ' line ' || first_line as _reason,
                        '{KIND_DUPLICATE}' as _kind
                    from ranked
                    where rank > 1 and __row is not null
                    """,
                    params={"lowest": ids.min(), "highest": ids.max()},
                ).pl()
            )
        key = PARENTS.get(table)
        if key and parent_given:
            parts.append(
                con.sql(
                    f"""
                    with orphans as (
                        select c.__row, c.{key.column} as parent_key, exists (
                            select 1 from quarantine.{key.parent} as q
                            where q.{key.parent_column} = c.{key.column}
                              and q._kind = '{KIND_NO_USER}'
                              and q._partition_date <= c._partition_date
                        ) as of_guest
                        from __candidates as c
                        where not exists (
                            select 1 from raw.{key.parent} as p
                            where p.{key.parent_column} = c.{key.column}
                              and p._partition_date <= c._partition_date
                        )
                    )
                    select
                        __row,
                        -- a guest's order is kept apart from the rejects, and so are its lines
                        case when of_guest
                            then '{key.column} ''' || parent_key || ''' is a guest order'
                            else 'orphan: {key.column} ''' || parent_key
                                || ''' not in {key.parent}' end as _reason,
                        case when of_guest then '{KIND_NO_USER}' else '{KIND_ORPHAN}' end
                            as _kind
                    from orphans
                    """
                ).pl()
            )
    finally:
        con.unregister("__candidates")
    if not parts:
        return empty
    return (
        pl.concat([p.cast({"__row": pl.Int64}) for p in parts], how="vertical")
        .sort("__row", "_kind")
        .group_by("__row", maintain_order=True)
        .agg(pl.col("_reason").str.join("; "), pl.col("_kind").str.join("; "))
    )


def _empty_landed(table: str) -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            **{c.name: pl.String for c in TABLE_SPECS[table]},
            SOURCE_FILE_COLUMN: pl.String,
            SOURCE_LINE_COLUMN: pl.Int64,
            "_partition_date": pl.Date,
        }
    )


def _chunks(landing: Path, table: str, days: list[date]) -> list[list[date]]:
    """Consecutive groups of days holding at most CHUNK_BYTES of landing data each (as text:
    see PARQUET_EXPANSION)."""
    chunks: list[list[date]] = [[]]
    size = 0
    for day in days:
        day_size = sum(
            p.stat().st_size * (PARQUET_EXPANSION if p.suffix.lower() == ".parquet" else 1)
            for p in partition_files(landing, table, day)
        )
        if chunks[-1] and size + day_size > CHUNK_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(day)
        size += day_size
    return chunks


def ingest_partitions(
    con: duckdb.DuckDBPyConnection,
    landing: Path,
    table: str,
    days: Iterable[date],
    run_id: str,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[IngestStats]:
    """Replace some days of one table in raw and quarantine (one transaction per chunk).

    Ingest parents first (users, then orders, then order_items and events): orphans are
    judged against the parent rows already accepted. ``on_progress(days done, days)`` is
    called after each chunk.
    """
    days = sorted(set(days))
    ensure_ingestion_tables(con)
    parent = PARENTS.get(table)
    parent_given = parent is not None and source_given(landing, parent.parent)
    stats: list[IngestStats] = []
    done = 0
    guests_are_rejects = guests_count_as_rejects(landing)
    for chunk in _chunks(landing, table, days):
        if chunk:
            stats += _ingest_chunk(
                con, landing, table, chunk, run_id, parent_given, guests_are_rejects
            )
            done += len(chunk)
            if on_progress is not None:
                on_progress(done, len(days))
    return stats


def ingest_partition(
    con: duckdb.DuckDBPyConnection, landing: Path, table: str, day: date, run_id: str
) -> IngestStats:
    """Replace one day of one table in raw and quarantine, atomically."""
    return ingest_partitions(con, landing, table, [day], run_id)[0]


def _ingest_chunk(
    con: duckdb.DuckDBPyConnection,
    landing: Path,
    table: str,
    days: list[date],
    run_id: str,
    parent_given: bool,
    guests_are_rejects: bool = False,
) -> list[IngestStats]:
    specs = TABLE_SPECS[table]
    files_by_day = {day: partition_files(landing, table, day) for day in days}
    frames = [
        read_landing_file(path, table).with_columns(pl.lit(day).alias("_partition_date"))
        for day, files in files_by_day.items()
        for path in files
    ]
    landed = pl.concat(frames, how="vertical") if frames else _empty_landed(table)
    typed = type_rows(landed, table)

    parent = PARENTS.get(table)
    key_columns = [c for c in (ID_COLUMNS.get(table), parent and parent.column) if c]
    candidates = typed.filter(pl.col("_reason").is_null()).select(
        "__row",
        *[pl.col(f"__typed_{c}").alias(c) for c in dict.fromkeys(key_columns)],
        "_partition_date",
        SOURCE_FILE_COLUMN,
        SOURCE_LINE_COLUMN,
    )
    flagged = _relational_problems(con, candidates, table, parent_given)
    if flagged.height:
        typed = (
            typed.join(flagged, on="__row", how="left", suffix="__rel")
            .with_columns(
                pl.coalesce("_reason", "_reason__rel").alias("_reason"),
                pl.coalesce("_kind", "_kind__rel").alias("_kind"),
            )
            .drop("_reason__rel", "_kind__rel")
        )

    lineage = [SOURCE_FILE_COLUMN, SOURCE_LINE_COLUMN, "_partition_date"]
    rejected_mask = pl.col("_reason").is_not_null()
    accepted = typed.filter(~rejected_mask).select(
        *[pl.col(f"__typed_{c.name}").alias(c.name) for c in specs], *lineage
    )
    rejected = typed.filter(rejected_mask).select(
        *[pl.col(c.name) for c in specs], "_reason", "_kind", *lineage
    )

    # to the microsecond: incremental staging takes the partitions ingested after the newest
    # _ingested_at it holds, and two ingestions within one second must not tie
    ingested_at = datetime.now()
    stats = _stats(table, files_by_day, landed, rejected, guests_are_rejects)
    audit = pl.DataFrame(
        {
            "table_name": [table] * len(stats),
            "partition_date": [s.partition_date for s in stats],
            "files": [";".join(s.files) for s in stats],
            "rows_landed": [s.rows_landed for s in stats],
            "rows_accepted": [s.rows_accepted for s in stats],
            "rows_quarantined": [s.rows_quarantined for s in stats],
            "run_id": [run_id] * len(stats),
            "ingested_at": [ingested_at] * len(stats),
            "files_fingerprint": [files_fingerprint(files_by_day[s.partition_date]) for s in stats],
            "quarantined_by_kind": [json.dumps(s.kinds, sort_keys=True) for s in stats],
        },
        schema_overrides={"partition_date": pl.Date, "ingested_at": pl.Datetime("us")},
    )
    run_lineage = (
        f"cast('{ingested_at.isoformat(sep=' ')}' as timestamp) as _ingested_at, "
        f"'{run_id.replace(chr(39), '')}' as _run_id"
    )
    raw_columns = ", ".join(f"cast({c.name} as {SQL_TYPES[c.dtype]}) as {c.name}" for c in specs)
    text_columns = ", ".join(c.name for c in specs)
    base_lineage = "_partition_date, _source_file, _source_line"

    con.register("__accepted", accepted.to_arrow())
    con.register("__rejected", rejected.to_arrow())
    con.register("__audit", audit.to_arrow())
    con.register("__days", pl.DataFrame({"d": days}, schema={"d": pl.Date}).to_arrow())
    # the bounds as constants let the deletes skip the row groups of other days
    these_days = (
        "_partition_date between $first and $last and _partition_date in (select d from __days)"
    )
    bounds = {"first": min(days), "last": max(days)}
    try:
        con.execute("begin transaction")
        con.execute(f"delete from raw.{table} where {these_days}", bounds)
        con.execute(
            f"insert into raw.{table} by name "
            f"select {raw_columns}, {base_lineage}, {run_lineage} from __accepted"
        )
        con.execute(f"delete from quarantine.{table} where {these_days}", bounds)
        con.execute(
            f"insert into quarantine.{table} by name select {text_columns}, _reason, _kind, "
            f"{base_lineage}, {run_lineage} from __rejected"
        )
        con.execute(
            "delete from audit.ingested_partitions where table_name = ? "
            "and partition_date in (select d from __days)",
            [table],
        )
        con.execute("insert into audit.ingested_partitions by name select * from __audit")
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    finally:
        for name in ("__accepted", "__rejected", "__audit", "__days"):
            con.unregister(name)
    return stats


def _stats(
    table: str,
    files_by_day: dict[date, list[Path]],
    landed: pl.DataFrame,
    rejected: pl.DataFrame,
    guests_are_rejects: bool = False,
) -> list[IngestStats]:
    landed_by_day = dict(landed.group_by("_partition_date").len().rows())
    reasons: dict[date, dict[str, int]] = {}
    for day, reason, count in rejected.group_by("_partition_date", "_reason").len().rows():
        reasons.setdefault(day, {})[reason] = count
    kinds: dict[date, dict[str, int]] = {}
    exploded = rejected.select(
        "_partition_date", pl.col("_kind").str.split("; ").list.first().alias("_kind")
    )
    for day, kind, count in exploded.group_by("_partition_date", "_kind").len().rows():
        kinds.setdefault(day, {})[kind] = count
    guests = dict(
        rejected.filter(pl.col("_kind") == KIND_NO_USER).group_by("_partition_date").len().rows()
    )
    stats = []
    for day, files in files_by_day.items():
        quarantined = sum(reasons.get(day, {}).values())
        stats.append(
            IngestStats(
                table=table,
                partition_date=day,
                files=tuple(str(f) for f in files),
                rows_landed=landed_by_day.get(day, 0),
                rows_accepted=landed_by_day.get(day, 0) - quarantined,
                rows_quarantined=quarantined,
                reasons=dict(sorted(reasons.get(day, {}).items())),
                kinds=dict(sorted(kinds.get(day, {}).items())),
                guest_rows=guests.get(day, 0),
                guests_are_rejects=guests_are_rejects,
            )
        )
    return stats


def _audit_has(con: duckdb.DuckDBPyConnection, column: str | None = None) -> bool:
    rows = con.execute(
        "select column_name from information_schema.columns "
        "where table_schema = 'audit' and table_name = 'ingested_partitions'"
    ).fetchall()
    names = {row[0] for row in rows}
    return bool(names) and (column is None or column in names)


def ingested_dates(con: duckdb.DuckDBPyConnection, table: str = "orders") -> set[date]:
    """Days already ingested for a table (empty when the warehouse is new)."""
    if not _audit_has(con):
        return set()
    rows = con.execute(
        "select distinct partition_date from audit.ingested_partitions where table_name = ?",
        [table],
    ).fetchall()
    return {row[0] for row in rows}


def stale_dates(con: duckdb.DuckDBPyConnection | None, landing: Path) -> list[date]:
    """Landed days to (re-)ingest: never ingested, or a table's files changed since.

    Also days ingested earlier whose files are gone (a re-staged source no longer has them),
    so their rows are replaced by nothing rather than kept.
    """
    landed = {table: set(landed_dates(landing, table)) for table in CONTRACT_TABLES}
    all_days = set().union(*landed.values())
    if con is None or not _audit_has(con):
        return sorted(all_days)
    fingerprint = "files_fingerprint" if _audit_has(con, "files_fingerprint") else "null"
    recorded = {
        (table, day): (fp, files)
        for table, day, fp, files in con.execute(
            f"select table_name, partition_date, {fingerprint}, files "
            "from audit.ingested_partitions"
        ).fetchall()
    }
    stale = set()
    for table in CONTRACT_TABLES:
        for day in all_days | {d for t, d in recorded if t == table}:
            files = partition_files(landing, table, day)
            if (table, day) not in recorded:
                if files:
                    stale.add(day)
                continue
            fp, recorded_files = recorded[(table, day)]
            if fp is None:  # ingested before fingerprints existed: trust it
                continue
            if fp != files_fingerprint(files) and (files or recorded_files):
                stale.add(day)
    return sorted(stale)
