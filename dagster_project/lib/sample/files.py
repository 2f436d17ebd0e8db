"""Landing-file helpers of the generator: ids, timestamps, writing and clearing daily CSVs."""

from __future__ import annotations

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


def write_csv(df: pl.DataFrame, home: Path, table: str, day: date) -> None:
    """One day's partition of one table, exactly in contract column order and formats."""
    out = home / "landing" / table / f"date={day.isoformat()}"
    out.mkdir(parents=True, exist_ok=True)
    df.select(COLUMNS[table]).write_csv(
        out / "part-00000.csv",
        datetime_format="%Y-%m-%d %H:%M:%S",
        float_precision=2,
        float_scientific=False,
    )


def clear_landing(home: Path, start: date, days: int) -> None:
    """Remove the generator's own day partitions in the window so a rerun overwrites them."""
    for table in TABLES:
        for offset in range(days):
            part = home / "landing" / table / f"date={(start + timedelta(offset)).isoformat()}"
            if part.exists():
                shutil.rmtree(part)
