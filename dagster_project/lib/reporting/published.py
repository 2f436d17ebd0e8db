"""The charts of the published marts, read from a warehouse or serving connection: the serving
asset shows them in the UI and `strata report` puts them in its page (one place draws both)."""

from __future__ import annotations

from datetime import date

import duckdb
import polars as pl

from dagster_project.lib.core.warehouse import table_exists
from dagster_project.lib.reporting import charts

DATE_COLUMNS = {
    "segment_summary_daily": "snapshot_date",
    "segment_migration_daily": "snapshot_date",
    "data_quality_runs": "partition_date",
}


def mart_rows(
    con: duckdb.DuckDBPyConnection, table: str, day: date | None = None
) -> pl.DataFrame | None:
    """marts.<table> up to ``day`` (all of it without one); None when the table is absent."""
    if not table_exists(con, "marts", table):
        return None
    if day is None:
        return con.sql(f"select * from marts.{table}").pl()
    column = DATE_COLUMNS[table]
    return con.sql(f"select * from marts.{table} where {column} <= $day", params={"day": day}).pl()


def published_charts(
    con: duckdb.DuckDBPyConnection, day: date | None = None
) -> dict[str, tuple[bytes, str]]:
    """name -> (PNG, caption) for the charts whose tables exist and have rows up to ``day``."""
    summary = mart_rows(con, "segment_summary_daily", day)
    migration = mart_rows(con, "segment_migration_daily", day)
    quality = mart_rows(con, "data_quality_runs", day)
    drawn = {
        "segment_sizes_chart": (
            summary is not None and charts.segment_sizes_chart(summary, "ops_tier"),
            "Users per operating tier over the snapshots.",
        ),
        "value_by_segment_chart": (
            summary is not None and charts.value_by_segment_chart(summary, "value_tier"),
            "Mean CLV and P(alive) per value tier, latest snapshot.",
        ),
        "migration_chart": (
            migration is not None and charts.migration_chart(migration, "rfm_segment"),
            "R x F segment migration into the latest snapshot.",
        ),
        "quarantine_chart": (
            quality is not None and charts.quarantine_chart(quality),
            "Quarantined share of landed rows per day and table; quarantined rows by kind.",
        ),
    }
    return {name: (png, caption) for name, (png, caption) in drawn.items() if png}
