"""Great Expectations suites (files in expectations/) run as blocking Dagster asset checks.

A partitioned run is validated in windows of consecutive days: a daily run validates its one
day, a 120-day catch-up a few windows instead of 120 small validations (each costs ~0.3 s of
GX overhead). A check with a ``sample_key`` takes windows of up to MAX_ROWS_PER_WINDOW rows and
validates at most STRATA_GX_SAMPLE_ROWS of each (a deterministic sample on the key, see
lib/quality/sampling.py), so GX time and memory stay bounded however large the history; one
without a key validates windows of up to MAX_ROWS_PER_VALIDATION rows whole. GX is imported
inside the check (about 10 s), so loading the code location does not pay for it.
"""

from collections.abc import Callable
from dataclasses import asdict
from datetime import date, timedelta

import dagster as dg
import duckdb

from dagster_project.defs.common import WarehouseResource, partition_days
from dagster_project.lib.core import settings
from dagster_project.lib.quality.run_log import record_suite, scrub_failures

MAX_ROWS_PER_VALIDATION = 1_000_000
# Each window costs a scan of its rows to draw the sample plus a GX validation of up to
# STRATA_GX_SAMPLE_ROWS rows; fewer, larger windows save the second (1M users' catch-up,
# raw_events: 53 s in 14 windows of 10M rows, 41 s in 3 of 50M). A day of a million-user shop
# keeps over 5,000 sampled rows, enough to show a systematic defect of that day.
MAX_ROWS_PER_WINDOW = 50_000_000
WHOLE_TABLE_START = date(1900, 1, 1)


def validation_windows(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    date_column: str,
    days: list[date],
    max_rows: int = MAX_ROWS_PER_VALIDATION,
) -> list[tuple[date, date, int]]:
    """Consecutive-day windows [first, last] of at most ``max_rows`` rows each (a single day
    may hold more), with their row counts."""
    counts = dict(
        con.execute(
            f"select {date_column}, count(*) from {relation} "
            f"where {date_column} between ? and ? group by 1",
            [days[0], days[-1]],
        ).fetchall()
    )
    windows: list[tuple[date, date, int]] = []
    start, rows = days[0], 0
    for day in days:
        day_rows = counts.get(day, 0)
        if rows and rows + day_rows > max_rows:
            windows.append((start, day - timedelta(days=1), rows))
            start, rows = day, 0
        rows += day_rows
    windows.append((start, days[-1], rows))
    return windows


def expectation_suite_check(
    asset_key: dg.AssetKey,
    suite: str,
    date_column: str | None,
    frame_query: Callable[[settings.StrataPaths], str] | None = None,
    parameters: Callable[[], dict] | None = None,
    whole_window: bool = False,
    description: str | None = None,
    sample_key: str | None = None,
) -> dg.AssetChecksDefinition:
    """A blocking check running expectations/<suite>.json on the asset's relation.

    With a `date_column` the check validates the run's partition days; without one (an
    unpartitioned table) the whole table, with timestamps allowed up to today.
    `frame_query` replaces the plain `select *` (bound to `$first` / `$last`), e.g. to add
    per-row columns a suite checks; `parameters` adds suite parameters read when the check
    runs (thresholds from the environment); `whole_window` validates the run's days in one
    frame (a per-day summary is small however long the run); `sample_key` (the columns that
    identify a row) lets a large window be validated on a sample. Every result is also
    recorded in marts.data_quality_runs.
    """
    relation = ".".join(asset_key.path)

    @dg.asset_check(
        asset=asset_key,
        name=f"{suite}_passes_expectations",
        description=description
        or f"Great Expectations suite expectations/{suite}.json; error severity blocks.",
        blocking=True,
    )
    def check(
        context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
    ) -> dg.AssetCheckResult:
        from dagster_project.lib.quality.gx_suites import validate_frame
        from dagster_project.lib.quality.sampling import plan_sample, sample_rows, sampled_query

        failures: list[dict] = []
        evaluated = rows = rows_in_windows = 0
        has_error = has_warning = False
        run_id = context.run.run_id
        extra = parameters() if parameters else {}
        cap = sample_rows()
        with warehouse.connect() as con:
            days: list[date] = partition_days(context) if date_column else []
            if date_column is None:
                windows = [(WHOLE_TABLE_START, date.today(), None)]
            elif whole_window:
                windows = [(days[0], days[-1], None)]
            else:
                most = MAX_ROWS_PER_WINDOW if sample_key else MAX_ROWS_PER_VALIDATION
                windows = validation_windows(con, relation, date_column, days, most)
            for first, last, counted in windows:
                if frame_query is not None:
                    sql = frame_query(warehouse.paths)
                else:
                    where = f" where {date_column} between $first and $last" if date_column else ""
                    sql = f"select * from {relation}{where}"
                bound = date_column is not None or "$first" in sql
                params = {"first": first, "last": last} if bound else None
                if counted is None and sample_key is not None:
                    count = con.sql(f"select count(*) from ({sql})", params=params)
                    counted = count.fetchall()[0][0]
                sample = plan_sample(counted or 0, cap, sample_key)
                frame = con.sql(sampled_query(sql, sample_key, sample), params=params).df()
                rows += len(frame)
                rows_in_windows += counted if counted is not None else len(frame)
                result = validate_frame(
                    frame,
                    suite,
                    settings.EXPECTATIONS_DIR,
                    parameters={
                        "partition_start": first,
                        "partition_end": last + timedelta(1),
                        **extra,
                    },
                )
                evaluated += result.evaluated
                has_error |= result.has_error
                has_warning |= result.has_warning
                window = f"{first}..{last}"
                found = scrub_failures(asdict(failed) for failed in result.failed)
                failures += [{"window": window, **failed} for failed in found]
                record_suite(
                    con,
                    run_id,
                    relation,
                    [d for d in days if first <= d <= last] if date_column else [None],
                    suite,
                    result.success,
                    result.evaluated,
                    found,
                )
        return dg.AssetCheckResult(
            passed=not (has_error or has_warning),
            severity=dg.AssetCheckSeverity.ERROR if has_error else dg.AssetCheckSeverity.WARN,
            metadata={
                "suite": suite,
                "rows_validated": rows,
                # more than rows_validated when large windows were validated on a sample
                "rows_in_windows": rows_in_windows,
                "windows_validated": len(windows),
                "expectations_evaluated": evaluated,
                "failed_expectations": len(failures),
                "failures": dg.MetadataValue.json(failures[:50]),
            },
        )

    return check
