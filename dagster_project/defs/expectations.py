"""Great Expectations suites (files in expectations/) run as blocking Dagster asset checks.

Each day of a partitioned run is validated on its own, so a check's memory stays at one
day of data however long the backfill. GX is imported inside the check (about 10 s), so
loading the code location does not pay for it.
"""

from collections.abc import Callable
from dataclasses import asdict
from datetime import date, timedelta

import dagster as dg

from dagster_project.defs.common import WarehouseResource, partition_days
from dagster_project.lib import settings

# Builds the query for one day (or for the whole table when the asset is unpartitioned).
QueryForDay = Callable[[date | None], str]


def expectation_suite_check(
    asset_key: dg.AssetKey, suite: str, query_for_day: QueryForDay, partitioned: bool = True
) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset_key,
        name=f"{suite}_passes_expectations",
        description=f"Great Expectations suite expectations/{suite}.json; error severity blocks.",
        blocking=True,
    )
    def check(
        context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
    ) -> dg.AssetCheckResult:
        from dagster_project.lib.quality import validate_frame

        days: list[date | None] = list(partition_days(context)) if partitioned else [None]
        failures: list[dict] = []
        evaluated = rows = 0
        has_error = has_warning = False
        with warehouse.connect(read_only=False) as con:
            for day in days:
                frame = con.sql(query_for_day(day)).df()
                rows += len(frame)
                result = validate_frame(
                    frame, suite, settings.EXPECTATIONS_DIR, parameters=suite_parameters(day)
                )
                evaluated += result.evaluated
                has_error |= result.has_error
                has_warning |= result.has_warning
                for failed in result.failed:
                    failures.append({"day": str(day) if day else "all", **asdict(failed)})
        return dg.AssetCheckResult(
            passed=not (has_error or has_warning),
            severity=dg.AssetCheckSeverity.ERROR if has_error else dg.AssetCheckSeverity.WARN,
            metadata={
                "suite": suite,
                "rows_validated": rows,
                "expectations_evaluated": evaluated,
                "failed_expectations": len(failures),
                "failures": dg.MetadataValue.json(failures[:50]),
            },
        )

    return check


def suite_parameters(day: date | None) -> dict[str, date]:
    """The half-open window [start, end) the suites' `$PARAMETER` placeholders refer to.

    A whole-table check (no partition) still rejects timestamps after today.
    """
    if day is None:
        return {"partition_start": date(1900, 1, 1), "partition_end": date.today() + timedelta(1)}
    return {"partition_start": day, "partition_end": day + timedelta(days=1)}
