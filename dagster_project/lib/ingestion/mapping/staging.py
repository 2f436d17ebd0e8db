"""Staging: the evaluated rows split into daily landing partitions, written atomically."""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import polars as pl

from dagster_project.lib.core.settings import MAPPING_MANIFEST
from dagster_project.lib.ingestion.contract import (
    CONTRACT_TABLES,
    GUESTS_COUNT_AS_REJECTS,
    SOURCE_FILE_COLUMN,
    SOURCE_LINE_COLUMN,
    TABLE_SPECS,
)
from dagster_project.lib.ingestion.mapping.binding import (
    check_timestamps,
    connection,
    day_expr,
    evaluate,
    resolve,
    validate,
)
from dagster_project.lib.ingestion.mapping.countries import to_iso_country
from dagster_project.lib.ingestion.mapping.lines import as_returns, orders_from_lines
from dagster_project.lib.ingestion.mapping.readers import read_source
from dagster_project.lib.ingestion.mapping.spec import (
    DERIVES,
    MAPPED_FILE,
    ColumnMapping,
    MappingError,
    SourceMapping,
    StageSummary,
    TableMapping,
    TableStage,
    load_mapping,
)


@dataclass
class _Staged:
    frame: pl.DataFrame  # contract text columns + lineage + __day
    files: dict[str, int]
    items: pl.DataFrame | None = None  # line grain: the order_items of the same lines
    absent: tuple[str, ...] = ()  # contract columns the staged files leave out (money: none)


def _stage_table(
    con: duckdb.DuckDBPyConnection,
    mapping: TableMapping,
    extra: dict[str, ColumnMapping] | None = None,
) -> _Staged:
    frames, item_frames, files = [], [], {}
    key = f"tables.{mapping.table}"
    for path in mapping.files:
        try:
            source = read_source(path, mapping.reader)
        except Exception as exc:  # a ragged line, a bad byte: the file, not a row, is wrong
            raise MappingError(f"{key}.files", f"cannot read {path}: {exc}") from exc
        files[str(path)] = source.height
        columns = resolve(mapping.columns, source.columns)
        extra_resolved = resolve(extra, source.columns) if extra else {}
        part = "columns"
        returns, where = mapping.returns, mapping.where
        try:
            frames.append(
                evaluate(
                    con,
                    mapping.table,
                    source,
                    columns,
                    mapping.reader,
                    extra_resolved,
                    returns,
                    where,
                )
            )
            if mapping.grain == "line" and mapping.items:
                part = "items"
                items = {"order_id": columns["order_id"], **resolve(mapping.items, source.columns)}
                item_frames.append(
                    evaluate(
                        con,
                        "order_items",
                        source,
                        items,
                        mapping.reader,
                        returns=returns,
                        where=where,
                    )
                )
        except duckdb.Error as exc:  # e.g. a lookup subquery that returns two rows
            message = str(exc).splitlines()[0]
            raise MappingError(f"{key}.{part}", f"evaluating on {path} failed: {message}") from exc
    frame = pl.concat(frames, how="vertical")
    if mapping.grain == "line":  # after every file: an order's lines may span files
        frame = orders_from_lines(con, frame, priced=mapping.priced)
    if mapping.returns is not None:
        frame = as_returns(frame, ("amount",), status=True)
    column = next((c.name for c in TABLE_SPECS[mapping.table] if c.partition_time), None)
    day = day_expr(column) if column else pl.lit(None, dtype=pl.Date)
    frame = frame.with_columns(day.alias("__day"))
    if column:
        check_timestamps(f"tables.{mapping.table}.columns.{column}", frame, column, mapping.reader)
    items = pl.concat(item_frames, how="vertical") if item_frames else None
    if items is not None and mapping.returns is not None:
        items = as_returns(items, ("quantity", "unit_price"), status=False)
    return _Staged(frame, files, items, mapping.absent_columns)


def _derive_users(rows: pl.DataFrame, at: str, extra: list[str]) -> pl.DataFrame:
    """One user per user_id from the first (earliest readable) order or event (timestamp
    column `at`), with its lineage."""
    return (
        rows.filter(
            pl.col("__day").is_not_null()
            & pl.col("user_id").is_not_null()
            & (pl.col("user_id").str.strip_chars() != "")
        )
        .with_columns(pl.col("user_id").str.strip_chars())
        .sort("__day", at, SOURCE_FILE_COLUMN, SOURCE_LINE_COLUMN)
        .unique("user_id", keep="first", maintain_order=True)
        .select(
            "user_id",
            pl.col(at).alias("signup_at"),
            *[pl.col("__user_" + name).alias(name) for name in extra],
            SOURCE_FILE_COLUMN,
            SOURCE_LINE_COLUMN,
            "__day",
        )
    )


def _place_undated(frame: pl.DataFrame, today: date) -> tuple[pl.DataFrame, int]:
    """Rows without a usable day (or dated after today) go to the table's latest day."""
    valid = frame.filter(pl.col("__day").is_not_null() & (pl.col("__day") <= today))["__day"]
    latest = valid.max() if valid.len() else today
    undated = pl.col("__day").is_null() | (pl.col("__day") > today)
    count = frame.filter(undated).height
    return frame.with_columns(
        pl.when(undated).then(pl.lit(latest)).otherwise("__day").alias("__day")
    ), count


def stage(
    mapping: SourceMapping, today: date | None = None
) -> tuple[dict[str, pl.DataFrame], dict[str, TableStage]]:
    """Read and map every table in memory (nothing written): frames by table, with `__day`."""
    today = today or datetime.now(UTC).date()
    staged: dict[str, _Staged] = {}
    users = mapping.tables.get("users")
    derived_extra = users.columns if users is not None and users.derive else {}
    parent, parent_at = DERIVES[users.derive] if users is not None and users.derive else ("", "")
    for table in ("orders", "users", "order_items", "events", "campaign_exposures"):
        table_mapping = mapping.tables.get(table)
        if table_mapping is None or table_mapping.derive:
            continue
        source = table_mapping
        con = connection(mapping, source.reader)
        try:
            staged[table] = _stage_table(con, source, derived_extra if table == parent else None)
        finally:
            con.close()
    if staged["orders"].items is not None:
        items = staged["orders"].items.with_columns(pl.lit(None, dtype=pl.Date).alias("__day"))
        staged["order_items"] = _Staged(items, staged["orders"].files)
    if users is not None and users.derive:
        rows = staged[parent].frame
        staged["users"] = _Staged(_derive_users(rows, parent_at, list(derived_extra)), {})
    if "order_items" in staged:
        # items have no timestamp: they belong to their order's day
        order_days = (
            staged["orders"]
            .frame.filter(pl.col("__day").is_not_null())
            .group_by(pl.col("order_id").str.strip_chars())
            .agg(pl.col("__day").min().alias("__order_day"))
        )
        items = staged["order_items"].frame.drop("__day")
        items = items.join(
            order_days,
            left_on=pl.col("order_id").str.strip_chars(),
            right_on="order_id",
            how="left",
            maintain_order="left",
        )
        if "order_id_right" in items.columns:
            items = items.drop("order_id_right")
        staged["order_items"] = _Staged(
            items.rename({"__order_day": "__day"}), staged["order_items"].files
        )

    frames: dict[str, pl.DataFrame] = {}
    summaries: dict[str, TableStage] = {}
    for table, item in staged.items():
        frame, undated = _place_undated(item.frame, today)
        unknown_countries: dict[str, int] = {}
        if table == "users" and "country" in frame.columns:
            country, unknown_countries = to_iso_country(frame["country"])
            frame = frame.with_columns(country)
        # columns the source has none of are left out, not null: ingestion then knows
        contract = [c.name for c in TABLE_SPECS[table] if c.name not in item.absent]
        frame = frame.with_columns(
            pl.lit(None, dtype=pl.String).alias(c) for c in contract if c not in frame.columns
        ).select(*contract, SOURCE_FILE_COLUMN, SOURCE_LINE_COLUMN, "__day")
        frames[table] = frame
        days = frame["__day"]
        summaries[table] = TableStage(
            table=table,
            rows=frame.height,
            days=days.n_unique() if frame.height else 0,
            first_day=days.min() if frame.height else None,
            last_day=days.max() if frame.height else None,
            undated_rows=undated,
            files=item.files,
            unknown_countries=unknown_countries,
        )
    return frames, summaries


def _mapped_partitions(landing: Path, table: str) -> dict[date, Path]:
    found = {}
    table_dir = landing / table
    if table_dir.is_dir():
        for path in table_dir.glob(f"date=*/{MAPPED_FILE}"):
            found[date.fromisoformat(path.parent.name[5:])] = path
    return found


def check_landing_is_ours(landing: Path) -> None:
    """Refuse to mix mapped data with other landing files (e.g. generated sample data)."""
    for table in CONTRACT_TABLES:
        table_dir = landing / table
        if not table_dir.is_dir():
            continue
        for path in table_dir.glob("date=*/*"):
            if path.name != MAPPED_FILE and not path.name.startswith("."):
                raise MappingError(
                    "sources",
                    f"{landing} holds landing files the mapping did not write (e.g. {path}); "
                    "use a separate STRATA_HOME for mapped sources",
                )


def _parquet_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="zstd", statistics=False)
    return buffer.getvalue()


def write_landing(
    frames: dict[str, pl.DataFrame],
    summaries: dict[str, TableStage],
    landing: Path,
    mapping: Path,
    guests_count_as_rejects: bool = False,
) -> StageSummary:
    """Write each day's rows where they changed; remove days the sources no longer have."""
    written = unchanged = removed = 0
    for table in CONTRACT_TABLES:
        existing = _mapped_partitions(landing, table)
        frame = frames.get(table)
        new_days: set[date] = set()
        if frame is not None and frame.height:
            for (day,), part in (
                frame.sort("__day", SOURCE_FILE_COLUMN, SOURCE_LINE_COLUMN)
                .partition_by("__day", as_dict=True, maintain_order=True)
                .items()
            ):
                new_days.add(day)
                target = landing / table / f"date={day.isoformat()}" / MAPPED_FILE
                data = _parquet_bytes(part.drop("__day"))
                if target.exists() and target.read_bytes() == data:
                    unchanged += 1
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f".{MAPPED_FILE}.{os.getpid()}.tmp")
                tmp.write_bytes(data)
                os.replace(tmp, target)  # ingestion never sees a half-written file
                written += 1
        for day, path in existing.items():
            if day not in new_days:
                path.unlink()
                removed += 1
                if not any(path.parent.iterdir()):
                    path.parent.rmdir()
    manifest = {
        "mapping": str(mapping),
        "staged_at": datetime.now(UTC).isoformat(timespec="seconds"),
        # read by ingestion and the reject guard (landing.guests_count_as_rejects)
        GUESTS_COUNT_AS_REJECTS: guests_count_as_rejects,
        "tables": {
            t: {
                "rows": s.rows,
                "days": s.days,
                "first_day": s.first_day.isoformat() if s.first_day else None,
                "last_day": s.last_day.isoformat() if s.last_day else None,
                "undated_rows": s.undated_rows,
                "files": s.files,
                "unknown_countries": s.unknown_countries,
            }
            for t, s in summaries.items()
        },
    }
    landing.mkdir(parents=True, exist_ok=True)
    (landing / MAPPING_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return StageSummary(summaries, written, unchanged, removed)


def stage_sources(mapping_file: Path, landing: Path, today: date | None = None) -> StageSummary:
    """Validate the mapping, map every table in memory, then write the landing partitions."""
    mapping = load_mapping(mapping_file)
    validate(mapping)
    check_landing_is_ours(landing)
    frames, summaries = stage(mapping, today)
    return write_landing(frames, summaries, landing, mapping.path, mapping.guests_count_as_rejects)
