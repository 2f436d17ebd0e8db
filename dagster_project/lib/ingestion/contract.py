"""The input contract: the tables, their columns and types, ids and parents, rejection kinds,
and the DDL of the raw and quarantine tables."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

import duckdb

CONTRACT_TABLES: tuple[str, ...] = (
    "orders",
    "order_items",
    "users",
    "events",
    "campaign_exposures",
)


# The arms of a campaign exposure: contacted, or kept back as the campaign's control group.
CAMPAIGN_ARMS: tuple[str, ...] = ("treatment", "control")


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


PARTITION_DIR = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")


# One transaction reads at most about this much landing data, so a long catch-up of a large
# shop stays bounded in memory (a single bigger day is still read whole). Sizes are CSV bytes:
# a Parquet file counts PARQUET_EXPANSION times its size, about what its rows take as text (the
# generator's 100k-user landing: 950 MiB of CSV, 85 MiB of Parquet). Counting Parquet at its
# compressed size put 50 days of a million users' events in one chunk: 24 GB, killed.
CHUNK_BYTES = 256 * 1024 * 1024
PARQUET_EXPANSION = 12


SQL_TYPES = {
    "varchar": "varchar",
    "timestamp": "timestamp",
    "decimal": "decimal(18, 2)",
    "integer": "integer",
}


KIND_MISSING = "missing_value"


KIND_UNPARSEABLE = "unparseable"


# Tables whose rows may come without a user id (guests, anonymous visits): see KIND_NO_USER.
GUEST_TABLES: tuple[str, ...] = ("orders", "events")


# An order or event without a user id: a guest checkout or an anonymous visit, real activity
# that belongs to no one Strata can segment. Kept in quarantine like any reject, but it is not
# bad data, so it has its own kind and does not count toward the reject share.
KIND_NO_USER = "no_user"


# The source mapping's option (kept in the landing manifest) to count guests as rejects.
GUESTS_COUNT_AS_REJECTS = "guests_count_as_rejects"


KIND_NEGATIVE = "negative_amount"


KIND_FUTURE = "future_timestamp"


KIND_OUTSIDE = "outside_partition"


KIND_DUPLICATE = "duplicate_id"


KIND_ORPHAN = "orphan"


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    dtype: str  # key of SQL_TYPES
    required: bool = False  # a null or empty value rejects the row (when the file has it)
    optional_in_file: bool = False  # the column may be absent from a file (filled with null)
    non_negative: bool = False
    partition_time: bool = False  # must fall on the partition's day
    allowed: tuple[str, ...] = ()  # the only accepted values (case and spaces ignored)


TABLE_SPECS: dict[str, tuple[ColumnSpec, ...]] = {
    "orders": (
        ColumnSpec("order_id", "varchar", required=True),
        ColumnSpec("user_id", "varchar", required=True),
        ColumnSpec("ordered_at", "timestamp", required=True, partition_time=True),
        # required in a file that has it; a source without money (a clickstream's purchases,
        # mapped with `money: none`) lands files without amount and currency
        ColumnSpec("amount", "decimal", required=True, optional_in_file=True, non_negative=True),
        ColumnSpec("currency", "varchar", optional_in_file=True),
        ColumnSpec("status", "varchar", required=True),
        # a return's original order, when the source says which (kept on marts.fct_orders)
        ColumnSpec("refers_to_order_id", "varchar", optional_in_file=True),
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
    # One row per user a campaign reached or held back (effect evaluation: marts.campaign_effects).
    # cost is per contact (control rows usually 0 or empty: nobody was contacted).
    "campaign_exposures": (
        ColumnSpec("user_id", "varchar", required=True),
        ColumnSpec("campaign_id", "varchar", required=True),
        ColumnSpec("arm", "varchar", required=True, allowed=CAMPAIGN_ARMS),
        ColumnSpec("exposed_at", "timestamp", required=True, partition_time=True),
        ColumnSpec("channel", "varchar", optional_in_file=True),
        ColumnSpec("cost", "decimal", optional_in_file=True, non_negative=True),
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
    "campaign_exposures": ForeignKey("user_id", "users", "user_id"),
}


# Per-row flag the landing reader adds for a required column that a file may leave out:
# whether the row's file has the column (a null then rejects the row) or not (null is fine).
PRESENT_PREFIX = "__present_"


def presence_columns(table: str) -> list[str]:
    """The required columns of `table` a file may leave out (each gets a presence flag)."""
    return [c.name for c in TABLE_SPECS[table] if c.required and c.optional_in_file]


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
    guest_rows: int = 0  # quarantined only for having no user id
    guests_are_rejects: bool = False  # the mapping's guests_count_as_rejects

    @property
    def reject_share(self) -> float:
        guests = 0 if self.guests_are_rejects else self.guest_rows
        rejects = self.rows_quarantined - guests
        return rejects / self.rows_landed if self.rows_landed else 0.0


# Contract columns added after the first release: older warehouses get them on the next run.
ADDED_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "orders": (("refers_to_order_id", "varchar"),),
}


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
        # ... or before these contract columns existed
        for name, sql_type in ADDED_COLUMNS.get(table, ()):
            con.execute(f"alter table raw.{table} add column if not exists {name} {sql_type}")
            con.execute(f"alter table quarantine.{table} add column if not exists {name} varchar")
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
