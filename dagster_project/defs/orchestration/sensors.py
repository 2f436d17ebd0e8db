"""The landing sensor: start the daily job for each day whose landing files arrived or changed.

Off by default: turn it on under Automation in the UI, with a Dagster daemon running (`make ui`
starts one). Files often land all day, and a team chooses whether it wants a run per delivery
or the 03:00 schedule. Each tick asks the warehouse which landed days are stale
(never ingested, or a table's files changed since: name, size and mtime, as `strata run` does)
and requests one daily run per such day, with a run key made of the day and its files'
fingerprint: Dagster never launches two runs with one key, so the same files never start a
second run, however many ticks see them before the first run has ingested them.
"""

from datetime import date

import dagster as dg
import duckdb

from dagster_project.defs.common import WarehouseResource, daily_partitions
from dagster_project.defs.orchestration.jobs import daily_job

LANDING_SENSOR = "strata_landing_sensor"
TRIGGER_TAG = "strata/trigger"


def landing_run_key(day: date, fingerprint: str) -> str:
    return f"landing-{day.isoformat()}-{fingerprint[:16]}"


@dg.sensor(
    job=daily_job,
    name=LANDING_SENSOR,
    minimum_interval_seconds=120,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description=(
        "One strata_daily run per landed day whose files arrived or changed (run key: the day "
        "and its files' fingerprint). Off by default; the 03:00 schedule keeps working."
    ),
)
def landing_sensor(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource
) -> dg.SensorResult | dg.SkipReason:
    from dagster_project.lib.ingestion.ingest import stale_dates
    from dagster_project.lib.ingestion.landing import day_fingerprint

    paths = warehouse.paths
    try:
        if paths.warehouse.exists():
            with warehouse.connect(read_only=True) as con:
                stale = stale_dates(con, paths.landing)
        else:
            stale = stale_dates(None, paths.landing)
    except duckdb.IOException:  # a run holds the warehouse: look again next tick
        return dg.SkipReason("the warehouse is being written by a run; checking next tick")
    first = daily_partitions.start.date()
    last_key = daily_partitions.get_last_partition_key()
    last = date.fromisoformat(last_key) if last_key else None
    days = [d for d in stale if d >= first and (last is None or d <= last)]
    if not days:
        return dg.SkipReason("no landed day is new or changed")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=landing_run_key(day, day_fingerprint(paths.landing, day)),
                partition_key=day.isoformat(),
                tags={TRIGGER_TAG: "landing"},
            )
            for day in days
        ]
    )
