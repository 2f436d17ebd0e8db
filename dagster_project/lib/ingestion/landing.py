"""Landing files: which days landed, their files and fingerprint, reading and typing a file."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import date
from pathlib import Path

import polars as pl

from dagster_project.lib.core.settings import MAPPING_MANIFEST
from dagster_project.lib.ingestion.contract import (
    CONTRACT_TABLES,
    GUEST_TABLES,
    GUESTS_COUNT_AS_REJECTS,
    KIND_FUTURE,
    KIND_MISSING,
    KIND_NEGATIVE,
    KIND_NO_USER,
    KIND_OUTSIDE,
    KIND_UNPARSEABLE,
    LANDING_SUFFIXES,
    PARTITION_DIR,
    PRESENT_PREFIX,
    SOURCE_FILE_COLUMN,
    SOURCE_LINE_COLUMN,
    TABLE_SPECS,
    TIMESTAMP_FORMATS,
    ColumnSpec,
    IngestError,
    presence_columns,
)


def landed_dates(landing: Path, table: str = "orders") -> list[date]:
    """The days for which a table has a landing directory, sorted."""
    table_dir = landing / table
    if not table_dir.is_dir():
        return []
    days = []
    for child in table_dir.iterdir():
        match = PARTITION_DIR.match(child.name)
        if child.is_dir() and match:
            days.append(date.fromisoformat(match.group(1)))
    return sorted(days)


def guests_count_as_rejects(landing: Path) -> bool:
    """Whether the staged source mapping counts guests (rows without a user id) toward the
    reject share (its `guests_count_as_rejects`; off by default and without a mapping)."""
    manifest = landing / MAPPING_MANIFEST
    if not manifest.is_file():
        return False
    try:
        return bool(json.loads(manifest.read_text()).get(GUESTS_COUNT_AS_REJECTS, False))
    except (OSError, ValueError):
        return False


def source_given(landing: Path, table: str) -> bool:
    """Whether a source was delivered at all (a day directory exists): orphans of an absent
    optional source (CDNOW has no users) are not orphans."""
    return bool(landed_dates(landing, table))


def partition_files(landing: Path, table: str, day: date) -> list[Path]:
    directory = landing / table / f"date={day.isoformat()}"
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix.lower() in LANDING_SUFFIXES)


def day_fingerprint(landing: Path, day: date) -> str:
    """One fingerprint over every table's files of a landed day (see files_fingerprint)."""
    digest = hashlib.sha1()
    for table in CONTRACT_TABLES:
        digest.update(
            f"{table}:{files_fingerprint(partition_files(landing, table, day))}\n".encode()
        )
    return digest.hexdigest()


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
    present = [
        pl.lit(name in frame.columns).alias(PRESENT_PREFIX + name)
        for name in presence_columns(table)
    ]
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
    return frame.select(*[pl.col(c.name) for c in specs], *lineage, *present)


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
        if spec.required and spec.name == "user_id" and table in GUEST_TABLES:
            problems.append((blank, pl.lit("no user_id (a guest)"), KIND_NO_USER))
        elif spec.required:
            flag = PRESENT_PREFIX + spec.name
            # a column the file left out (money of a source without money) is not missing
            missing = blank & pl.col(flag) if flag in frame.columns else blank
            problems.append((missing, pl.lit(f"missing {spec.name}"), KIND_MISSING))
        problems.append(
            (
                ~blank & value.is_null(),
                pl.lit(f"unparseable {spec.name}: '") + raw + pl.lit("'"),
                KIND_UNPARSEABLE,
            )
        )
        if spec.non_negative:
            problems.append((value < 0, pl.lit(f"negative {spec.name}"), KIND_NEGATIVE))
        if spec.allowed:
            known = raw.str.strip_chars().str.to_lowercase().is_in(list(spec.allowed))
            problems.append(
                (
                    ~blank & ~known,
                    pl.lit(f"{spec.name} must be one of {', '.join(spec.allowed)}, got '")
                    + raw
                    + pl.lit("'"),
                    KIND_UNPARSEABLE,
                )
            )
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
