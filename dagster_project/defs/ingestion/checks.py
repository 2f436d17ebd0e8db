import dagster as dg

from dagster_project.defs.expectations import expectation_suite_check
from dagster_project.lib.ingest import CONTRACT_TABLES

raw_expectation_checks = [
    expectation_suite_check(dg.AssetKey(["raw", table]), f"raw_{table}", "_partition_date")
    for table in CONTRACT_TABLES
]
