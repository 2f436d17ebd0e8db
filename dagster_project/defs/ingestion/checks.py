"""Blocking Great Expectations checks on every raw table, two suites each:

- ``raw_<table>``: the day's rows (types, keys, accepted values, amounts, timestamps within
  the row's own day, referential integrity when the parent source is given);
- ``raw_partitions``: one row per day (landed = accepted + quarantined, as recorded and as
  stored; the share of rejects; row-count bounds; freshness of the data).
"""

from collections.abc import Callable

import dagster as dg

from dagster_project.defs.expectations import expectation_suite_check
from dagster_project.lib.core import settings
from dagster_project.lib.ingestion.audit import partition_audit_query, validation_query
from dagster_project.lib.ingestion.contract import CONTRACT_TABLES, PARENTS, time_column
from dagster_project.lib.ingestion.landing import guests_count_as_rejects, source_given

# Largest plausible day per table (an unfiltered load, a wrong date column); edit freely.
# Users come in bursts: the generator's 10M-user, 30-day sample lands 1.4M on its busiest days.
MAX_ROWS_PER_DAY = {
    "orders": 2_000_000,
    "order_items": 10_000_000,
    "users": 5_000_000,
    "events": 50_000_000,
    "campaign_exposures": 10_000_000,
}
# Signups come in bursts (CDNOW's customers all joined in its first quarter): users have no
# freshness bound; order_items have no timestamp.
FRESHNESS_CHECKED = ("orders", "events")
NO_BOUND_DAYS = 36_500.0


def _rows_query(table: str) -> Callable[[settings.StrataPaths], str]:
    def query(paths: settings.StrataPaths) -> str:
        parent = PARENTS.get(table)
        given = parent is not None and source_given(paths.landing, parent.parent)
        return validation_query(table, given)

    return query


def _partition_parameters(table: str) -> Callable[[], dict]:
    def parameters() -> dict:
        freshness = table in FRESHNESS_CHECKED and time_column(table) is not None
        return {
            "max_reject_share": settings.max_reject_share(),
            "max_staleness_days": settings.max_staleness_days() if freshness else NO_BOUND_DAYS,
            "max_rows": MAX_ROWS_PER_DAY[table],
        }

    return parameters


raw_expectation_checks = [
    expectation_suite_check(
        dg.AssetKey(["raw", table]),
        f"raw_{table}",
        "_partition_date",
        frame_query=_rows_query(table),
        sample_key="_source_file, _source_line",
    )
    for table in CONTRACT_TABLES
] + [
    expectation_suite_check(
        dg.AssetKey(["raw", table]),
        "raw_partitions",
        "_partition_date",
        frame_query=lambda paths, table=table: partition_audit_query(
            table, guests_count_as_rejects(paths.landing)
        ),
        parameters=_partition_parameters(table),
        whole_window=True,
        description=(
            f"Every day of raw.{table}: landed = accepted + quarantined, rejects at most "
            "STRATA_MAX_REJECT_SHARE (default 10%), row counts within bounds, data fresh."
        ),
    )
    for table in CONTRACT_TABLES
]
