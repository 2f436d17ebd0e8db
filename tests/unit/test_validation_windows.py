"""How a catch-up's days are cut into GX validation windows."""

from __future__ import annotations

from datetime import date, timedelta

import duckdb

from dagster_project.defs.expectations import validation_windows


def test_windows_are_consecutive_days_up_to_the_bound_and_a_big_day_stands_alone() -> None:
    con = duckdb.connect()
    start = date(2026, 1, 1)
    days = [start + timedelta(days=i) for i in range(6)]
    per_day = [40, 50, 30, 250, 10, 0]  # the last day has no rows at all
    con.execute("create table rows (day date)")
    for day, count in zip(days, per_day, strict=True):
        con.execute("insert into rows select ? from range(?)", [day, count])
    windows = validation_windows(con, "rows", "day", days, max_rows=100)
    assert windows == [
        (days[0], days[1], 90),
        (days[2], days[2], 30),
        (days[3], days[3], 250),  # more than the bound: one day is never split
        (days[4], days[5], 10),
    ]
    # every day is in exactly one window, and every row is counted once
    assert sum(rows for _, _, rows in windows) == sum(per_day)
    assert validation_windows(con, "rows", "day", days, max_rows=10_000) == [
        (days[0], days[5], 380)
    ]
