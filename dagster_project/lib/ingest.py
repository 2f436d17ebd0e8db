"""Landing files -> typed raw tables, with every rejected row kept in quarantine.

Files land as ``<landing>/<table>/date=YYYY-MM-DD/*.csv|*.parquet``. A partition is
replaced as a whole (delete + insert in one transaction), so re-ingesting a day never
duplicates it. Rows that cannot be typed, miss a required value, carry a negative
amount or a timestamp outside their day go to ``quarantine.<table>`` with the reason,
the file and the line; nothing is dropped silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import duckdb
import polars as pl

CONTRACT_TABLES: tuple[str, ...] = ("orders", "order_items", "users", "events")
LANDING_SUFFIXES = (".csv", ".parquet")
TIMESTAMP_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d")
LINEAGE_COLUMNS_SQL = (
    "_partition_date date, _source_file varchar, _source_line bigint, "
    "_ingested_at timestamp, _run_id varchar"
)
_PARTITION_DIR = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")

SQL_TYPES = {
    "varchar": "varchar",
    "timestamp": "timestamp",
    "decimal": "decimal(18, 2)",
    "integer": "integer",
}


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


def raw_table_ddl(table: str) -> str:
    columns = ", ".join(f"{c.name} {SQL_TYPES[c.dtype]}" for c in TABLE_SPECS[table])
    return f"create table if not exists raw.{table} ({columns}, {LINEAGE_COLUMNS_SQL})"


def quarantine_table_ddl(table: str) -> str:
    # Rejected values are kept exactly as they arrived, so every column is text.
    columns = ", ".join(f"{c.name} varchar" for c in TABLE_SPECS[table])
    return (
        f"create table if not exists quarantine.{table} "
        f"({columns}, _reason varchar, {LINEAGE_COLUMNS_SQL})"
    )


def ensure_ingestion_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create every raw, quarantine and audit table, so optional sources exist (empty)."""
    for schema in ("raw", "quarantine", "audit"):
        con.execute(f"create schema if not exists {schema}")
    for table in CONTRACT_TABLES:
        con.execute(raw_table_ddl(table))
        con.execute(quarantine_table_ddl(table))
    con.execute(
        "create table if not exists audit.ingested_partitions ("
        "table_name varchar, partition_date date, files varchar, rows_landed bigint, "
        "rows_accepted bigint, rows_quarantined bigint, run_id varchar, ingested_at timestamp)"
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


def partition_files(landing: Path, table: str, day: date) -> list[Path]:
    directory = landing / table / f"date={day.isoformat()}"
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix.lower() in LANDING_SUFFIXES)


def read_landing_file(path: Path, table: str) -> pl.DataFrame:
    """All contract columns as text plus the source line (CSV: the header is line 1)."""
    try:
        if path.suffix.lower() == ".parquet":
            frame = pl.read_parquet(path)
            frame = frame.with_columns(pl.all().cast(pl.String))
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
    return frame.select(
        *[pl.col(c.name) for c in specs],
        pl.lit(str(path)).alias("_source_file"),
        (pl.int_range(pl.len(), dtype=pl.Int64) + first_line).alias("_source_line"),
    )


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


def split_valid_rows(
    frame: pl.DataFrame, table: str, day: date
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Type a landed frame; return (accepted typed rows, rejected text rows with `_reason`)."""
    specs = TABLE_SPECS[table]
    typed = frame.with_columns(_typed(c).alias(f"__typed_{c.name}") for c in specs)
    problems: list[pl.Expr] = []
    for spec in specs:
        raw = pl.col(spec.name)
        value = pl.col(f"__typed_{spec.name}")
        blank = raw.is_null() | (raw.str.strip_chars() == "")
        if spec.required:
            problems.append(pl.when(blank).then(pl.lit(f"missing {spec.name}")))
        problems.append(
            pl.when(~blank & value.is_null()).then(
                pl.lit(f"unparseable {spec.name}: '") + raw + pl.lit("'")
            )
        )
        if spec.non_negative:
            problems.append(pl.when(value < 0).then(pl.lit(f"negative {spec.name}")))
        if spec.partition_time:
            problems.append(
                pl.when(value.dt.date() != pl.lit(day)).then(
                    pl.lit(f"{spec.name} outside partition {day.isoformat()}")
                )
            )
    typed = typed.with_columns(
        pl.concat_str(problems, separator="; ", ignore_nulls=True).alias("_reason")
    )
    rejected_mask = pl.col("_reason").is_not_null() & (pl.col("_reason") != "")
    accepted = typed.filter(~rejected_mask).select(
        *[pl.col(f"__typed_{c.name}").alias(c.name) for c in specs],
        "_source_file",
        "_source_line",
    )
    rejected = typed.filter(rejected_mask).select(
        *[pl.col(c.name) for c in specs], "_reason", "_source_file", "_source_line"
    )
    return accepted, rejected


def ingest_partition(
    con: duckdb.DuckDBPyConnection, landing: Path, table: str, day: date, run_id: str
) -> IngestStats:
    """Replace one day of one table in raw and quarantine, atomically."""
    files = partition_files(landing, table, day)
    frames = [read_landing_file(path, table) for path in files]
    specs = TABLE_SPECS[table]
    if frames:
        landed = pl.concat(frames, how="vertical")
    else:
        landed = pl.DataFrame(
            schema={
                **{c.name: pl.String for c in specs},
                "_source_file": pl.String,
                "_source_line": pl.Int64,
            }
        )
    accepted, rejected = split_valid_rows(landed, table, day)
    ingested_at = datetime.now().replace(microsecond=0)
    lineage = (
        f"cast('{day.isoformat()}' as date) as _partition_date, _source_file, _source_line, "
        f"cast('{ingested_at.isoformat(sep=' ')}' as timestamp) as _ingested_at, "
        f"'{run_id}' as _run_id"
    )
    raw_columns = ", ".join(f"cast({c.name} as {SQL_TYPES[c.dtype]}) as {c.name}" for c in specs)
    text_columns = ", ".join(c.name for c in specs)

    ensure_ingestion_tables(con)
    con.register("__accepted", accepted.to_arrow())
    con.register("__rejected", rejected.to_arrow())
    try:
        con.execute("begin transaction")
        con.execute(f"delete from raw.{table} where _partition_date = ?", [day])
        con.execute(
            f"insert into raw.{table} by name select {raw_columns}, {lineage} from __accepted"
        )
        con.execute(f"delete from quarantine.{table} where _partition_date = ?", [day])
        con.execute(
            f"insert into quarantine.{table} by name "
            f"select {text_columns}, _reason, {lineage} from __rejected"
        )
        con.execute(
            "delete from audit.ingested_partitions where table_name = ? and partition_date = ?",
            [table, day],
        )
        con.execute(
            "insert into audit.ingested_partitions values (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                table,
                day,
                ";".join(str(f) for f in files),
                landed.height,
                accepted.height,
                rejected.height,
                run_id,
                ingested_at,
            ],
        )
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    finally:
        con.unregister("__accepted")
        con.unregister("__rejected")

    reasons = rejected.group_by("_reason").len().sort("_reason").rows() if rejected.height else []
    return IngestStats(
        table=table,
        partition_date=day,
        files=tuple(str(f) for f in files),
        rows_landed=landed.height,
        rows_accepted=accepted.height,
        rows_quarantined=rejected.height,
        reasons={reason: count for reason, count in reasons},
    )


def ingested_dates(con: duckdb.DuckDBPyConnection, table: str = "orders") -> set[date]:
    """Days already ingested for a table (empty when the warehouse is new)."""
    exists = con.execute(
        "select count(*) from information_schema.tables "
        "where table_schema = 'audit' and table_name = 'ingested_partitions'"
    ).fetchone()
    if not exists or not exists[0]:
        return set()
    rows = con.execute(
        "select distinct partition_date from audit.ingested_partitions where table_name = ?",
        [table],
    ).fetchall()
    return {row[0] for row in rows}
