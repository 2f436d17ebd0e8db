"""Landing-file helpers of the generator: ids, timestamps, writing and clearing daily CSVs."""

from __future__ import annotations

import io
import shutil
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from dagster_project.lib.sample.archetypes import ARCHETYPES, COLUMNS, TABLES


def archetype_param(name: str) -> np.ndarray:
    """One archetype parameter as an array indexable by archetype code."""
    return np.array([getattr(a, name) for a in ARCHETYPES], dtype=np.float64)


def id_expr(column: str, prefix: str, width: int) -> pl.Expr:
    """Zero-padded string id (u000123) from a 1-based integer column."""
    return pl.lit(prefix) + pl.col(column).cast(pl.String).str.zfill(width)


def id_width(count: int, minimum: int) -> int:
    """Id digits: at least `minimum`, more only when the count needs them."""
    return max(minimum, len(str(max(count, 1))))


def timestamp_expr(column: str, base_epoch: int) -> pl.Expr:
    """Second offset from the window start to a naive UTC datetime (seconds precision)."""
    return pl.from_epoch(pl.col(column) + base_epoch, time_unit="s")


#: Landing file formats the generator writes; ingestion reads both.
FILE_FORMATS: tuple[str, ...] = ("csv", "parquet")


def landing_file(home: Path, table: str, day: date, file_format: str = "csv") -> Path:
    """Where the generator writes one day's partition of one table."""
    if file_format not in FILE_FORMATS:
        raise ValueError(f"file format must be one of {', '.join(FILE_FORMATS)}")
    return home / "landing" / table / f"date={day.isoformat()}" / f"part-00000.{file_format}"


def write_landing(
    df: pl.DataFrame, home: Path, table: str, day: date, file_format: str = "csv"
) -> None:
    """One day's partition of one table, exactly in contract column order and formats.

    Parquet holds the same text the CSV would (every column a string), so both formats land the
    same rows; it is smaller and faster to read.
    """
    path = landing_file(home, table, day, file_format)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = df.select(COLUMNS[table])
    options = {"datetime_format": "%Y-%m-%d %H:%M:%S", "float_precision": 2}
    if file_format == "csv":
        frame.write_csv(path, float_scientific=False, **options)
        return
    text = frame.write_csv(float_scientific=False, **options)
    pl.read_csv(io.StringIO(text), infer_schema=False).write_parquet(path)


def clear_landing(home: Path, start: date, days: int) -> None:
    """Remove the generator's own day partitions in the window so a rerun overwrites them."""
    for table in (*TABLES, "campaign_exposures"):
        for offset in range(days):
            part = home / "landing" / table / f"date={(start + timedelta(offset)).isoformat()}"
            if part.exists():
                shutil.rmtree(part)
