"""Dirty-data mode of the sample generator: bad rows of every kind, and a record of them.

`inject_defects` appends bad rows to the landing files the generator wrote, each built from a
random clean row of the same day. The rate is the share of each table's rows that are bad,
spread evenly over the kinds that apply to the table: a day of n clean rows gets
Poisson(n * rate / (1 - rate)) bad rows (so bad / all is the rate on average), split over the
kinds by a multinomial draw. With ``per_kind`` every kind gets Binomial(n, rate) rows instead
(about kinds x rate of the rows are bad: 5 kinds at 5 % is a fifth). Every injected row is
written to `truth/injected_defects.parquet` (table, kind, key, partition_date, file, line),
which the pipeline never reads: a test compares it with the quarantine, kind by kind.

Each bad row carries exactly one defect and nothing refers to it, so its rejection never
cascades: injected orders get fresh order ids (no items point at them), orphans point at
parents that do not exist, duplicates are exact copies of a clean row (the copy, a later
line, is the duplicate). A separate random stream keeps the clean rows byte-identical to
what the generator writes without this mode.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from dagster_project.lib.ingestion.contract import (
    ID_COLUMNS,
    KIND_DUPLICATE,
    KIND_FUTURE,
    KIND_NEGATIVE,
    KIND_ORPHAN,
    KIND_UNPARSEABLE,
    PARENTS,
    time_column,
)
from dagster_project.lib.sample.files import landing_file

TABLES = ("orders", "order_items", "users", "events")
DEFECTS_FILE = "injected_defects.parquet"
# The spawn key keeps this stream apart from the generator's own (SeedSequence(seed).spawn).
_STREAM = 1_000
_TS_FORMAT = "%Y-%m-%d %H:%M:%S"

# Columns whose value turns unparseable, with the garbage written there.
UNPARSEABLE: dict[str, dict[str, str]] = {
    "orders": {"amount": "12,50 EUR", "ordered_at": "31/02/2024 25:61"},
    "order_items": {"quantity": "two", "unit_price": "five"},
    "users": {"signup_at": "yesterday", "birth_year": "nineteen-ninety"},
    "events": {"event_at": "not-a-time"},
}
NEGATIVE: dict[str, str] = {"orders": "amount", "order_items": "unit_price"}


def kinds_for(table: str) -> tuple[str, ...]:
    """The defects that exist for a table (no ids on items, no timestamp on items...)."""
    kinds = [KIND_UNPARSEABLE]
    if table in NEGATIVE:
        kinds.append(KIND_NEGATIVE)
    if time_column(table):
        kinds.append(KIND_FUTURE)
    if table in ID_COLUMNS:
        kinds.append(KIND_DUPLICATE)
    if table in PARENTS:
        kinds.append(KIND_ORPHAN)
    return tuple(kinds)


def _key_column(table: str) -> str:
    return ID_COLUMNS.get(table) or PARENTS[table].column


def _bad_row(
    table: str, kind: str, row: dict[str, str | None], serial: int, rng: np.random.Generator
) -> dict[str, str | None]:
    row = dict(row)
    fresh = f"x{serial:07d}"
    id_column = ID_COLUMNS.get(table)
    if kind != KIND_DUPLICATE and id_column:
        row[id_column] = f"{row[id_column]}-{fresh}"  # new id: nothing refers to it
    if kind == KIND_UNPARSEABLE:
        column = str(rng.choice(sorted(UNPARSEABLE[table])))
        row[column] = UNPARSEABLE[table][column]
    elif kind == KIND_NEGATIVE:
        column = NEGATIVE[table]
        value = abs(float(row[column] or 0)) or 1.0
        row[column] = f"{-value:.2f}"
    elif kind == KIND_FUTURE:
        column = time_column(table)
        stamp = datetime.strptime(str(row[column]), _TS_FORMAT)
        row[column] = (stamp + timedelta(days=int(rng.integers(1, 31)))).strftime(_TS_FORMAT)
    elif kind == KIND_ORPHAN:
        key = PARENTS[table]
        prefix = "u" if key.parent == "users" else "o"
        row[key.column] = f"{prefix}-ghost-{fresh}"
    return row


def _bad_counts(
    clean_rows: int, kinds: tuple[str, ...], rate: float, per_kind: bool, rng: np.random.Generator
) -> list[int]:
    if per_kind:
        return [int(rng.binomial(clean_rows, rate)) for _ in kinds]
    total = int(rng.poisson(clean_rows * rate / (1.0 - rate)))
    return [int(n) for n in rng.multinomial(total, [1.0 / len(kinds)] * len(kinds))]


def inject_defects(
    home: Path,
    start: date,
    end: date,
    rate: float,
    seed: int,
    file_format: str = "csv",
    per_kind: bool = False,
) -> pl.DataFrame:
    """Append bad rows to the landing files of [start, end]; return and record what was added."""
    if not 0.0 <= rate <= 1.0 or (rate == 1.0 and not per_kind):
        raise ValueError(
            "the dirty rate is a share of rows, at least 0 and below 1 (at most 1 per kind)"
        )
    home = Path(home)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_STREAM,)))
    records: list[dict[str, object]] = []
    serial = 0
    day = start
    while day <= end:
        for table in TABLES:
            path = landing_file(home, table, day, file_format)
            relative = path.relative_to(home)
            if rate == 0 or not path.exists():
                continue
            csv = file_format == "csv"
            clean = pl.read_csv(path, infer_schema=False) if csv else pl.read_parquet(path)
            if clean.height == 0:
                continue
            rows = clean.to_dicts()
            bad: list[dict[str, str | None]] = []
            kinds = kinds_for(table)
            for kind, count in zip(
                kinds, _bad_counts(clean.height, kinds, rate, per_kind, rng), strict=True
            ):
                for _ in range(count):
                    serial += 1
                    template = rows[int(rng.integers(0, len(rows)))]
                    row = _bad_row(table, kind, template, serial, rng)
                    records.append(
                        {
                            "table": table,
                            "kind": kind,
                            "key": row[_key_column(table)],
                            "partition_date": day,
                            "file": relative.as_posix(),
                            # CSV: the header is line 1; Parquet rows count from 1
                            "line": clean.height + len(bad) + (2 if csv else 1),
                        }
                    )
                    bad.append(row)
            if bad:
                dirty = pl.concat([clean, pl.DataFrame(bad, schema=clean.schema)])
                if csv:
                    dirty.write_csv(path)
                else:
                    dirty.write_parquet(path)
        day += timedelta(days=1)
    injected = pl.DataFrame(
        records,
        schema={
            "table": pl.String,
            "kind": pl.String,
            "key": pl.String,
            "partition_date": pl.Date,
            "file": pl.String,
            "line": pl.Int64,
        },
    )
    truth = home / "truth"
    truth.mkdir(parents=True, exist_ok=True)
    injected.write_parquet(truth / DEFECTS_FILE)
    return injected
