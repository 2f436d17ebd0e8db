"""``marts.data_quality_runs``: per run, relation and day, what landed, what was accepted and
quarantined, and what the Great Expectations suites said.

Written while a run goes (ingestion writes the counts, each suite check merges its result
into the same rows), not by a final step: a run that a failed check stops still leaves its
record, and BI sees it with the next successful publish. Unexpected values of PII columns
are never copied here (the table is published).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

import duckdb
import polars as pl

from dagster_project.lib.core.warehouse import frame_in_transaction
from dagster_project.lib.ingestion.contract import IngestStats

RELATION = "marts.data_quality_runs"
PII_COLUMNS = frozenset({"email", "phone"})
KEY = ("run_id", "relation", "partition_date")
SCHEMA: dict[str, pl.DataType] = {
    "run_id": pl.String(),
    "relation": pl.String(),
    "partition_date": pl.Date(),
    "rows_landed": pl.Int64(),
    "rows_accepted": pl.Int64(),
    "rows_quarantined": pl.Int64(),
    "reject_share": pl.Float64(),
    "quarantined_by_kind": pl.String(),
    "suites": pl.String(),
    "suites_passed": pl.Boolean(),
    "expectations_evaluated": pl.Int64(),
    "expectations_failed": pl.Int64(),
    "recorded_at": pl.Datetime("us"),
}
DDL = f"""
create table if not exists {RELATION} (
    run_id varchar,
    relation varchar,
    partition_date date,
    rows_landed bigint,
    rows_accepted bigint,
    rows_quarantined bigint,
    reject_share double,
    quarantined_by_kind varchar,
    suites varchar,
    suites_passed boolean,
    expectations_evaluated bigint,
    expectations_failed bigint,
    recorded_at timestamp
)
"""


def ensure_table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("create schema if not exists marts")
    con.execute(DDL)


def _existing(
    con: duckdb.DuckDBPyConnection, run_id: str, relation: str, days: Sequence[date | None]
) -> dict[date | None, dict[str, Any]]:
    rows = (
        con.sql(
            f"select * from {RELATION} where run_id = $run and relation = $relation",
            params={"run": run_id, "relation": relation},
        )
        .pl()
        .to_dicts()
    )
    wanted = set(days)
    return {row["partition_date"]: row for row in rows if row["partition_date"] in wanted}


def _upsert(
    con: duckdb.DuckDBPyConnection, run_id: str, relation: str, rows: list[dict[str, Any]]
) -> None:
    frame = pl.DataFrame(rows, schema=SCHEMA)
    with frame_in_transaction(con, "__quality_rows", frame):
        con.execute(
            f"delete from {RELATION} as t where run_id = ? and relation = ? and exists "
            "(select 1 from __quality_rows as q "
            "where q.partition_date is not distinct from t.partition_date)",
            [run_id, relation],
        )
        con.execute(f"insert into {RELATION} by name select * from __quality_rows")


def _blank(run_id: str, relation: str, day: date | None) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(SCHEMA)
    row.update(run_id=run_id, relation=relation, partition_date=day)
    return row


def record_ingestion(
    con: duckdb.DuckDBPyConnection, run_id: str, stats: Iterable[IngestStats]
) -> int:
    """Record landed / accepted / quarantined per day of one table (merging suite results
    already recorded for the same run, relation and day)."""
    stats = list(stats)
    if not stats:
        return 0
    ensure_table(con)
    relation = f"raw.{stats[0].table}"
    existing = _existing(con, run_id, relation, [s.partition_date for s in stats])
    now = datetime.now().replace(microsecond=0)
    rows = []
    for s in stats:
        row = existing.get(s.partition_date) or _blank(run_id, relation, s.partition_date)
        row.update(
            rows_landed=s.rows_landed,
            rows_accepted=s.rows_accepted,
            rows_quarantined=s.rows_quarantined,
            reject_share=s.reject_share,
            quarantined_by_kind=json.dumps(s.kinds, sort_keys=True),
            recorded_at=now,
        )
        rows.append(row)
    _upsert(con, run_id, relation, rows)
    return len(rows)


def scrub_failures(failures: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Failed expectations without the offending values of PII columns."""
    scrubbed = []
    for failure in failures:
        failure = dict(failure)
        columns = set(str(failure.get("column") or "").split(","))
        if columns & PII_COLUMNS:
            failure["unexpected_sample"] = []
        scrubbed.append(failure)
    return scrubbed


def record_suite(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    relation: str,
    days: Sequence[date | None],
    suite: str,
    success: bool,
    evaluated: int,
    failures: Sequence[dict[str, Any]],
) -> int:
    """Merge one suite's result into the rows of the given days (None: a whole-table run)."""
    ensure_table(con)
    existing = _existing(con, run_id, relation, days)
    now = datetime.now().replace(microsecond=0)
    result = {
        "success": success,
        "evaluated": evaluated,
        "failed_count": len(failures),
        "failed": scrub_failures(failures)[:20],
    }
    rows = []
    for day in days:
        row = existing.get(day) or _blank(run_id, relation, day)
        suites = json.loads(row["suites"] or "{}")
        suites[suite] = result
        row.update(
            suites=json.dumps(suites, sort_keys=True, default=str),
            suites_passed=all(s["success"] for s in suites.values()),
            expectations_evaluated=sum(s["evaluated"] for s in suites.values()),
            expectations_failed=sum(s["failed_count"] for s in suites.values()),
            recorded_at=now,
        )
        rows.append(row)
    _upsert(con, run_id, relation, rows)
    return len(rows)
