import dagster as dg

from dagster_project.defs.expectations import expectation_suite_check
from dagster_project.lib.ingest import CONTRACT_TABLES


def _raw_day(table: str):
    return lambda day: f"select * from raw.{table} where _partition_date = '{day}'"


raw_expectation_checks = [
    expectation_suite_check(dg.AssetKey(["raw", table]), f"raw_{table}", _raw_day(table))
    for table in CONTRACT_TABLES
]
