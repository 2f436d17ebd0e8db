"""Great Expectations suites (files in expectations/) run as blocking Dagster asset checks.

A partitioned run is validated in windows of consecutive days holding at most
MAX_ROWS_PER_VALIDATION rows: a daily run validates its one day, a 120-day catch-up a few
windows instead of 120 small validations (each costs ~0.3 s of GX overhead), and memory
stays bounded however long the backfill. GX is imported inside the check (about 10 s), so
loading the code location does not pay for it.
"""

from dataclasses import asdict
from datetime import date, timedelta

import dagster as dg
import duckdb

from dagster_project.defs.common import WarehouseResource, partition_days
from dagster_project.lib import settings

MAX_ROWS_PER_VALIDATION = 1_000_000
WHOLE_TABLE_START = date(1900, 1, 1)


def validation_windows(
    con: duckdb.DuckDBPyConnection, relation: str, date_column: str, days: list[date]
) -> list[tuple[date, date]]:
    """Consecutive-day windows [first, last] of at most MAX_ROWS_PER_VALIDATION rows each."""
    counts = dict(
        con.execute(
            f"select {date_column}, count(*) from {relation} "
            f"where {date_column} between ? and ? group by 1",
            [days[0], days[-1]],
        ).fetchall()
    )
    windows: list[tuple[date, date]] = []
    start, rows = days[0], 0
    for day in days:
        day_rows = counts.get(day, 0)
        if rows and rows + day_rows > MAX_ROWS_PER_VALIDATION:
            windows.append((start, day - timedelta(days=1)))
            start, rows = day, 0
        rows += day_rows
    windows.append((start, days[-1]))
    return windows


def expectation_suite_check(
    asset_key: dg.AssetKey, suite: str, date_column: str | None
) -> dg.AssetChecksDefinition:
    """A blocking check running expectations/<suite>.json on the asset's relation.

    With a `date_column` the check validates the run's partition days; without one (an
    unpartitioned table) the whole table, with timestamps allowed up to today.
    """
    relation = ".".join(asset_key.path)

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

        failures: list[dict] = []
        evaluated = rows = 0
        has_error = has_warning = False
        with warehouse.connect() as con:
            if date_column is None:
                windows = [(WHOLE_TABLE_START, date.today())]
            else:
                windows = validation_windows(con, relation, date_column, partition_days(context))
            for first, last in windows:
                where = f" where {date_column} between $first and $last" if date_column else ""
                frame = con.sql(
                    f"select * from {relation}{where}",
                    params={"first": first, "last": last} if date_column else None,
                ).df()
                rows += len(frame)
                result = validate_frame(
                    frame,
                    suite,
                    settings.EXPECTATIONS_DIR,
                    parameters={"partition_start": first, "partition_end": last + timedelta(1)},
                )
                evaluated += result.evaluated
                has_error |= result.has_error
                has_warning |= result.has_warning
                window = f"{first}..{last}"
                failures += [{"window": window, **asdict(failed)} for failed in result.failed]
        return dg.AssetCheckResult(
            passed=not (has_error or has_warning),
            severity=dg.AssetCheckSeverity.ERROR if has_error else dg.AssetCheckSeverity.WARN,
            metadata={
                "suite": suite,
                "rows_validated": rows,
                "windows_validated": len(windows),
                "expectations_evaluated": evaluated,
                "failed_expectations": len(failures),
                "failures": dg.MetadataValue.json(failures[:50]),
            },
        )

    return check
