"""marts.data_quality_runs: counts and suite results merge per run, relation and day."""

from __future__ import annotations

import json
from datetime import date

import duckdb

from dagster_project.lib.ingestion.contract import IngestStats
from dagster_project.lib.quality.run_log import RELATION, record_ingestion, record_suite

D1, D2 = date(2024, 3, 1), date(2024, 3, 2)


def stats(day: date, landed: int, quarantined: int) -> IngestStats:
    return IngestStats(
        "users", day, ("f.csv",), landed, landed - quarantined, quarantined, {}, {"orphan": 1}
    )


def test_counts_and_suites_merge_into_one_row_per_day_and_pii_samples_are_dropped():
    con = duckdb.connect()
    record_ingestion(con, "r1", [stats(D1, 10, 1), stats(D2, 0, 0)])
    email_failure = {
        "expectation": "expect_column_values_to_match_regex",
        "column": "email",
        "severity": "warn",
        "unexpected_sample": ["ann@example.com"],
    }
    record_suite(con, "r1", "raw.users", [D1, D2], "raw_users", True, 12, [email_failure])
    record_suite(con, "r1", "raw.users", [D1], "raw_partitions", False, 8, [{"column": "x"}])
    record_suite(con, "r1", "raw.users", [D1], "raw_partitions", True, 8, [])  # a rerun check
    record_ingestion(con, "r2", [stats(D1, 10, 0)])

    rows = con.execute(
        f"select run_id, partition_date, rows_landed, reject_share, suites_passed, "
        f"expectations_evaluated, expectations_failed, suites from {RELATION} order by 1, 2"
    ).fetchall()
    assert [r[:7] for r in rows] == [
        ("r1", D1, 10, 0.1, True, 20, 1),
        ("r1", D2, 0, 0.0, True, 12, 1),
        ("r2", D1, 10, 0.0, None, None, None),
    ]
    suites = json.loads(rows[0][7])
    assert set(suites) == {"raw_users", "raw_partitions"}
    assert suites["raw_users"]["failed"][0]["unexpected_sample"] == []
    assert "ann@example.com" not in str(rows)
    con.close()
