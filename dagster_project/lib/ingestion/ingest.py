"""Landing files -> typed raw tables, with every rejected row kept in quarantine.

Files land as ``<landing>/<table>/date=YYYY-MM-DD/*.csv|*.parquet``. A partition is
replaced as a whole (delete + insert in one transaction), so re-ingesting a day never
duplicates it. Nothing is dropped silently: every landed row ends in ``raw.<table>`` or in
``quarantine.<table>`` with a reason, a machine-readable kind, the source file and the line,
and ``audit.ingested_partitions`` records landed = accepted + quarantined per day.

Row-level problems (each a ``kind``):

- ``missing_value`` / ``unparseable``: a required value is empty, or a value cannot be typed;
- ``negative_amount``: a negative amount, price or quantity;
- ``future_timestamp`` / ``outside_partition``: the row's timestamp is after / before its day;
- ``duplicate_id``: the id was already accepted earlier (an earlier day, or an earlier line of
  the same day); the first occurrence wins;
- ``orphan``: the parent row (the order's user, the item's order, the event's user) has not
  been accepted on or before the row's day, checked only when the parent source is given.

Duplicates and orphans are judged against days up to the row's own day only, so a partition
ingested late (a backfill) gets the same verdicts as when it is ingested in order.

Files that carry ``_source_file`` / ``_source_line`` columns (written by the source mapping,
see ``sources.py``) keep that lineage: quarantine then points at the team's original export.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import duckdb
import polars as pl

CONTRACT_TABLES: tuple[str, ...] = ("orders", "order_items", "users", "events")
LANDING_SUFFIXES = (".csv", ".parquet")
# `%.f` also accepts no fraction; the mapping writes fractional seconds, the generator none.
TIMESTAMP_FORMATS = (
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d",
)
LINEAGE_COLUMNS_SQL = (
    "_partition_date date, _source_file varchar, _source_line bigint, "
    "_ingested_at timestamp, _run_id varchar"
)
SOURCE_FILE_COLUMN = "_source_file"
SOURCE_LINE_COLUMN = "_source_line"
_PARTITION_DIR = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")
# One transaction reads at most about this much landing data, so a long catch-up of a large
# shop stays bounded in memory (a single bigger day is still read whole).
CHUNK_BYTES = 256 * 1024 * 1024

SQL_TYPES = {
    "varchar": "varchar",
    "timestamp": "timestamp",
    "decimal": "decimal(18, 2)",
    "integer": "integer",
}

KIND_MISSING = "missing_value"
KIND_UNPARSEABLE = "unparseable"
KIND_NEGATIVE = "negative_amount"
KIND_FUTURE = "future_timestamp"
KIND_OUTSIDE = "outside_partition"
KIND_DUPLICATE = "duplicate_id"
KIND_ORPHAN = "orphan"


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    dtype: str  # key of SQL_TYPES
    required: bool = False  # a null or empty value rejects the row
    optional_in_file: bool = False  # the column may be absent from a file (filled with null)
    non_negative: bool = False
    partition_time: bool = False  # must fall on the partition's day


TABLE_SPECS: dict[str, tuple[ColumnSpec, ...]] = {
    "orders": (
        ColumnSpec("order_id", "varchar", required=True),
        ColumnSpec("user_id", "varchar", required=True),
        ColumnSpec("ordered_at", "timestamp", required=True, partition_time=True),
        ColumnSpec("amount", "decimal", required=True, non_negative=True),
        ColumnSpec("currency", "varchar", optional_in_file=True),
        ColumnSpec("status", "varchar", required=True),
    ),
    "order_items": (
        ColumnSpec("order_id", "varchar", required=True),
        ColumnSpec("product_id", "varchar", required=True),
        ColumnSpec("category", "varchar", optional_in_file=True),
        ColumnSpec("quantity", "integer", required=True, non_negative=True),
        ColumnSpec("unit_price", "decimal", required=True, non_negative=True),
    ),
    "users": (
        ColumnSpec("user_id", "varchar", required=True),
        ColumnSpec("signup_at", "timestamp", required=True, partition_time=True),
        ColumnSpec("country", "varchar", optional_in_file=True),
        ColumnSpec("channel", "varchar", optional_in_file=True),
        ColumnSpec("birth_year", "integer", optional_in_file=True),
        ColumnSpec("gender", "varchar", optional_in_file=True),
        ColumnSpec("email", "varchar", optional_in_file=True),
        ColumnSpec("phone", "varchar", optional_in_file=True),
    ),
    "events": (
        ColumnSpec("event_id", "varchar", required=True),
        ColumnSpec("user_id", "varchar", required=True),
        ColumnSpec("event_at", "timestamp", required=True, partition_time=True),
        ColumnSpec("event_type", "varchar", required=True),
        ColumnSpec("session_id", "varchar", optional_in_file=True),
    ),
}


@dataclass(frozen=True)
class ForeignKey:
    column: str
    parent: str
    parent_column: str


# The id that must be unique (order_items has no line id: identical lines are legitimate).
ID_COLUMNS: dict[str, str] = {"orders": "order_id", "users": "user_id", "events": "event_id"}
PARENTS: dict[str, ForeignKey] = {
    "orders": ForeignKey("user_id", "users", "user_id"),
    "order_items": ForeignKey("order_id", "orders", "order_id"),
    "events": ForeignKey("user_id", "users", "user_id"),
}


def time_column(table: str) -> str | None:
    """The table's timestamp that decides its day (None for order_items)."""
    return next((c.name for c in TABLE_SPECS[table] if c.partition_time), None)


class IngestError(ValueError):
    """A table-level problem (unreadable file, missing column): the partition is not written."""


@dataclass(frozen=True)
class IngestStats:
    table: str
    partition_date: date
    files: tuple[str, ...]
    rows_landed: int
    rows_accepted: int
    rows_quarantined: int
    reasons: dict[str, int] = field(default_factory=dict)
    kinds: dict[str, int] = field(default_factory=dict)

    @property
    def reject_share(self) -> float:
        return self.rows_quarantined / self.rows_landed if self.rows_landed else 0.0


def raw_table_ddl(table: str) -> str:
    columns = ", ".join(f"{c.name} {SQL_TYPES[c.dtype]}" for c in TABLE_SPECS[table])
    return f"create table if not exists raw.{table} ({columns}, {LINEAGE_COLUMNS_SQL})"


def quarantine_table_ddl(table: str) -> str:
    # Rejected values are kept exactly as they arrived, so every column is text.
    columns = ", ".join(f"{c.name} varchar" for c in TABLE_SPECS[table])
    return (
        f"create table if not exists quarantine.{table} "
        f"({columns}, _reason varchar, _kind varchar, {LINEAGE_COLUMNS_SQL})"
    )


def ensure_ingestion_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create every raw, quarantine and audit table, so optional sources exist (empty)."""
    for schema in ("raw", "quarantine", "audit"):
        con.execute(f"create schema if not exists {schema}")
    for table in CONTRACT_TABLES:
        con.execute(raw_table_ddl(table))
        con.execute(quarantine_table_ddl(table))
        # warehouses created before kinds existed
        con.execute(f"alter table quarantine.{table} add column if not exists _kind varchar")
    con.execute(
        "create table if not exists audit.ingested_partitions ("
        "table_name varchar, partition_date date, files varchar, rows_landed bigint, "
        "rows_accepted bigint, rows_quarantined bigint, run_id varchar, ingested_at timestamp, "
        "files_fingerprint varchar, quarantined_by_kind varchar)"
    )
    for column in ("files_fingerprint", "quarantined_by_kind"):
        con.execute(
            f"alter table audit.ingested_partitions add column if not exists {column} varchar"
        )


def landed_dates(landing: Path, table: str = "orders") -> list[date]:
    """The days for which a table has a landing directory, sorted."""
    table_dir = landing / table
    if not table_dir.is_dir():
        return []
    days = []
    for child in table_dir.iterdir():
        match = _PARTITION_DIR.match(child.name)
        if child.is_dir() and match:
            days.append(date.fromisoformat(match.group(1)))
    return sorted(days)


def source_given(landing: Path, table: str) -> bool:
    """Whether a source was delivered at all (a day directory exists): orphans of an absent
    optional source (CDNOW has no users) are not orphans."""
    return bool(landed_dates(landing, table))


def partition_files(landing: Path, table: str, day: date) -> list[Path]:
    directory = landing / table / f"date={day.isoformat()}"
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix.lower() in LANDING_SUFFIXES)


def files_fingerprint(files: Iterable[Path]) -> str:
    """Name, size and mtime of a partition's files: a changed or replaced file changes it.

    Cheap (no file is read), so `strata run` can find days to re-ingest on every start.
    """
    digest = hashlib.sha1()
    for path in sorted(files):
        stat = path.stat()
        digest.update(f"{path.name}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def read_landing_file(path: Path, table: str) -> pl.DataFrame:
    """All contract columns as text plus the source file and line (CSV: the header is line 1).

    A Parquet file with ``_source_file`` / ``_source_line`` columns keeps that lineage (the
    original export's file and line); other Parquet files number their rows from 1.
    """
    try:
        if path.suffix.lower() == ".parquet":
            frame = pl.read_parquet(path)
            frame = frame.with_columns(
                pl.all().exclude(SOURCE_LINE_COLUMN).cast(pl.String),
            )
            first_line = 1  # Parquet has no lines: the row number, counted from 1
        else:
            frame = pl.read_csv(path, infer_schema=False, encoding="utf8")
            first_line = 2
    except Exception as exc:  # polars raises several exception types for unreadable files
        raise IngestError(f"{path}: cannot be read as {table} landing data: {exc}") from exc

    specs = TABLE_SPECS[table]
    missing = [c.name for c in specs if c.name not in frame.columns and not c.optional_in_file]
    if missing:
        raise IngestError(
            f"{path}: required column(s) {', '.join(missing)} missing "
            f"(the file has: {', '.join(frame.columns) or 'no columns'})"
        )
    frame = frame.with_columns(
        pl.lit(None, dtype=pl.String).alias(c.name) for c in specs if c.name not in frame.columns
    )
    has_lineage = SOURCE_FILE_COLUMN in frame.columns and SOURCE_LINE_COLUMN in frame.columns
    lineage = (
        [
            pl.col(SOURCE_FILE_COLUMN).cast(pl.String),
            pl.col(SOURCE_LINE_COLUMN).cast(pl.Int64),
        ]
        if has_lineage
        else [
            pl.lit(str(path)).alias(SOURCE_FILE_COLUMN),
            (pl.int_range(pl.len(), dtype=pl.Int64) + first_line).alias(SOURCE_LINE_COLUMN),
        ]
    )
    return frame.select(*[pl.col(c.name) for c in specs], *lineage)


def _parse_timestamp(column: str) -> pl.Expr:
    text = pl.col(column).str.strip_chars()
    return pl.coalesce(
        [text.str.to_datetime(fmt, strict=False, time_unit="us") for fmt in TIMESTAMP_FORMATS]
    )


def _typed(spec: ColumnSpec) -> pl.Expr:
    text = pl.col(spec.name).str.strip_chars()
    if spec.dtype == "timestamp":
        return _parse_timestamp(spec.name)
    if spec.dtype == "decimal":
        return text.cast(pl.Float64, strict=False).round(2)
    if spec.dtype == "integer":
        return text.cast(pl.Int64, strict=False)
    return pl.when(text == "").then(None).otherwise(pl.col(spec.name))


def type_rows(frame: pl.DataFrame, table: str) -> pl.DataFrame:
    """Type a landed frame (with ``_partition_date``) and find the per-row problems.

    Adds ``__typed_<column>`` for every contract column, ``_reason`` and ``_kind`` (both
    ``; ``-joined, null when the row is fine) and ``__row`` (a row number for joins back).
    """
    specs = TABLE_SPECS[table]
    typed = frame.with_columns(_typed(c).alias(f"__typed_{c.name}") for c in specs)
    day = pl.col("_partition_date")
    day_text = day.dt.strftime("%Y-%m-%d")
    problems: list[tuple[pl.Expr, pl.Expr, str]] = []  # (condition, reason, kind)
    for spec in specs:
        raw = pl.col(spec.name)
        value = pl.col(f"__typed_{spec.name}")
        blank = raw.is_null() | (raw.str.strip_chars() == "")
        if spec.required:
            problems.append((blank, pl.lit(f"missing {spec.name}"), KIND_MISSING))
        problems.append(
            (
                ~blank & value.is_null(),
                pl.lit(f"unparseable {spec.name}: '") + raw + pl.lit("'"),
                KIND_UNPARSEABLE,
            )
        )
        if spec.non_negative:
            problems.append((value < 0, pl.lit(f"negative {spec.name}"), KIND_NEGATIVE))
        if spec.partition_time:
            # one reason text for both directions; the kind tells future from past
            outside = pl.lit(f"{spec.name} outside partition ") + day_text
            problems.append((value.dt.date() > day, outside, KIND_FUTURE))
            problems.append((value.dt.date() < day, outside, KIND_OUTSIDE))
    return typed.with_columns(
        pl.concat_str(
            [pl.when(cond).then(reason) for cond, reason, _ in problems],
            separator="; ",
            ignore_nulls=True,
        ).alias("_reason"),
        pl.concat_str(
            [pl.when(cond).then(pl.lit(kind)) for cond, _, kind in problems],
            separator="; ",
            ignore_nulls=True,
        ).alias("_kind"),
        pl.int_range(pl.len(), dtype=pl.Int64).alias("__row"),
    ).with_columns(
        pl.when(pl.col("_reason") == "").then(None).otherwise(pl.col("_reason")).alias("_reason"),
        pl.when(pl.col("_kind") == "").then(None).otherwise(pl.col("_kind")).alias("_kind"),
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
            parts.append(
                con.sql(
                    f"""
                    with earlier as (
                        select {id_column} as id, _partition_date, _source_file, _source_line
                        from raw.{table}
                        where _partition_date not in (select _partition_date from __candidates)
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
                    """
                ).pl()
            )
        key = PARENTS.get(table)
        if key and parent_given:
            parts.append(
                con.sql(
                    f"""
                    select
                        c.__row,
                        'orphan: {key.column} ''' || c.{key.column}
                            || ''' not in {key.parent}' as _reason,
                        '{KIND_ORPHAN}' as _kind
                    from __candidates as c
                    where not exists (
                        select 1 from raw.{key.parent} as p
                        where p.{key.parent_column} = c.{key.column}
                          and p._partition_date <= c._partition_date
                    )
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
    """Consecutive groups of days holding at most CHUNK_BYTES of landing files each."""
    chunks: list[list[date]] = [[]]
    size = 0
    for day in days:
        day_size = sum(p.stat().st_size for p in partition_files(landing, table, day))
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
) -> list[IngestStats]:
    """Replace some days of one table in raw and quarantine (one transaction per chunk).

    Ingest parents first (users, then orders, then order_items and events): orphans are
    judged against the parent rows already accepted.
    """
    days = sorted(set(days))
    ensure_ingestion_tables(con)
    parent = PARENTS.get(table)
    parent_given = parent is not None and source_given(landing, parent.parent)
    stats: list[IngestStats] = []
    for chunk in _chunks(landing, table, days):
        if chunk:
            stats += _ingest_chunk(con, landing, table, chunk, run_id, parent_given)
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

    ingested_at = datetime.now().replace(microsecond=0)
    stats = _stats(table, files_by_day, landed, rejected)
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
    try:
        con.execute("begin transaction")
        con.execute(f"delete from raw.{table} where _partition_date in (select d from __days)")
        con.execute(
            f"insert into raw.{table} by name "
            f"select {raw_columns}, {base_lineage}, {run_lineage} from __accepted"
        )
        con.execute(
            f"delete from quarantine.{table} where _partition_date in (select d from __days)"
        )
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
    table: str, files_by_day: dict[date, list[Path]], landed: pl.DataFrame, rejected: pl.DataFrame
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


# ----------------------------------------------------------------- validation frames (GX)


def validation_query(table: str, parent_given: bool) -> str:
    """The raw rows of days [$first, $last] plus the per-row columns the suite checks.

    ``_partition_start`` / ``_partition_end`` bound each row by its own day (a multi-day
    window is still checked day by day); ``_parent_known`` is the point-in-time
    referential integrity (true when the parent source is not given).
    """
    key = PARENTS.get(table)
    if key and parent_given:
        parent_known = (
            f"exists (select 1 from raw.{key.parent} as p where p.{key.parent_column} = "
            f"t.{key.column} and p._partition_date <= t._partition_date)"
        )
    else:
        parent_known = "true"
    return (
        "select t.*, cast(t._partition_date as timestamp) as _partition_start, "
        "cast(t._partition_date as timestamp) + interval 1 day as _partition_end, "
        f"{parent_known} as _parent_known "
        f"from raw.{table} as t where t._partition_date between $first and $last"
    )


def partition_audit_query(table: str) -> str:
    """One row per day of [$first, $last]: what landed, what was accepted and quarantined
    (as recorded and as actually stored), the reject share and the data's staleness."""
    ts = time_column(table)
    latest = (
        f"""daily_latest as (
            select _partition_date as d, max({ts}) as latest
            from raw.{table} where _partition_date <= $last group by 1
        )"""
        if ts
        else "daily_latest as (select null::date as d, null::timestamp as latest where false)"
    )
    return f"""
    with days as (
        select cast(unnest(generate_series(cast($first as timestamp), cast($last as timestamp),
            interval 1 day)) as date) as partition_date
    ),
    audit as (
        select * from audit.ingested_partitions
        where table_name = '{table}' and partition_date between $first and $last
    ),
    raw_rows as (
        select _partition_date as d, count(*) as n from raw.{table}
        where _partition_date between $first and $last group by 1
    ),
    quarantine_rows as (
        select _partition_date as d, count(*) as n from quarantine.{table}
        where _partition_date between $first and $last group by 1
    ),
    {latest}
    select
        days.partition_date,
        audit.run_id,
        audit.rows_landed,
        audit.rows_accepted,
        audit.rows_quarantined,
        audit.rows_landed - audit.rows_accepted - audit.rows_quarantined as unaccounted_rows,
        coalesce(raw_rows.n, 0) as raw_rows,
        coalesce(quarantine_rows.n, 0) as quarantine_rows,
        case when audit.rows_landed > 0
            then audit.rows_quarantined / audit.rows_landed else 0.0 end as reject_share,
        (select max(latest) from daily_latest where daily_latest.d <= days.partition_date)
            as latest_at,
        date_diff('second',
            (select max(latest) from daily_latest where daily_latest.d <= days.partition_date),
            cast(days.partition_date as timestamp) + interval 1 day
        ) / 86400.0 as staleness_days
    from days
    left join audit on audit.partition_date = days.partition_date
    left join raw_rows on raw_rows.d = days.partition_date
    left join quarantine_rows on quarantine_rows.d = days.partition_date
    order by days.partition_date
    """
