from datetime import date, datetime
from pathlib import Path

import duckdb
import pytest

from dagster_project.lib.ingest import (
    IngestError,
    ingest_partition,
    ingested_dates,
    landed_dates,
)

DAY = date(2024, 3, 5)
ORDERS_HEADER = "order_id,user_id,ordered_at,amount,currency,status\n"


def write_orders(landing: Path, day: date, body: str, name: str = "part-00000.csv") -> Path:
    directory = landing / "orders" / f"date={day.isoformat()}"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(ORDERS_HEADER + body)
    return path


@pytest.fixture
def con():
    connection = duckdb.connect()
    yield connection
    connection.close()


def test_good_rows_are_typed_and_bad_rows_quarantined_with_reason_file_and_line(tmp_path, con):
    path = write_orders(
        tmp_path,
        DAY,
        "o1,u1,2024-03-05 10:00:00,12.50,USD,completed\n"  # line 2: fine
        "o2,u2,2024-03-05 11:00:00,abc,USD,completed\n"  # line 3: unparseable amount
        "o3,,2024-03-05 12:00:00,5.00,USD,completed\n"  # line 4: missing user
        "o4,u4,2024-03-06 09:00:00,5.00,USD,completed\n"  # line 5: next day
        "o5,u5,2024-03-05 13:00:00,-1.00,USD,refunded\n",  # line 6: negative
    )
    stats = ingest_partition(con, tmp_path, "orders", DAY, run_id="r1")

    assert (stats.rows_landed, stats.rows_accepted, stats.rows_quarantined) == (5, 1, 4)
    raw = con.execute(
        "select order_id, ordered_at, amount, _source_line from raw.orders"
    ).fetchall()
    assert raw == [("o1", datetime(2024, 3, 5, 10), pytest.approx(12.5), 2)]
    rejected = con.execute(
        "select order_id, _reason, _source_file, _source_line from quarantine.orders "
        "order by _source_line"
    ).fetchall()
    assert [(r[0], r[3]) for r in rejected] == [("o2", 3), ("o3", 4), ("o4", 5), ("o5", 6)]
    assert rejected[0][1] == "unparseable amount: 'abc'"
    assert rejected[1][1] == "missing user_id"
    assert rejected[2][1] == "ordered_at outside partition 2024-03-05"
    assert rejected[3][1] == "negative amount"
    assert {r[2] for r in rejected} == {str(path)}


def test_reingesting_a_day_replaces_it(tmp_path, con):
    write_orders(tmp_path, DAY, "o1,u1,2024-03-05 10:00:00,1.00,USD,completed\n")
    ingest_partition(con, tmp_path, "orders", DAY, run_id="r1")
    write_orders(
        tmp_path,
        DAY,
        "o1,u1,2024-03-05 10:00:00,1.00,USD,completed\no2,u1,2024-03-05 11:00:00,2.00,USD,x\n",
    )
    ingest_partition(con, tmp_path, "orders", DAY, run_id="r2")
    ingest_partition(con, tmp_path, "orders", DAY, run_id="r3")

    assert con.execute("select count(*), max(_run_id) from raw.orders").fetchall() == [(2, "r3")]
    assert ingested_dates(con) == {DAY}


def test_a_missing_required_column_fails_the_partition_naming_file_and_column(tmp_path, con):
    directory = tmp_path / "orders" / f"date={DAY.isoformat()}"
    directory.mkdir(parents=True)
    (directory / "part-00000.csv").write_text("order_id,user_id,amount\no1,u1,3\n")

    with pytest.raises(
        IngestError, match=r"part-00000\.csv: required column\(s\) ordered_at, status"
    ):
        ingest_partition(con, tmp_path, "orders", DAY, run_id="r1")


def test_absent_optional_source_yields_empty_tables(tmp_path, con):
    stats = ingest_partition(con, tmp_path, "events", DAY, run_id="r1")

    assert stats.rows_landed == 0
    assert con.execute("select count(*) from raw.events").fetchall() == [(0,)]
    assert landed_dates(tmp_path, "events") == []


def test_parquet_landing_files_are_read_with_row_numbers(tmp_path, con):
    directory = tmp_path / "orders" / f"date={DAY.isoformat()}"
    directory.mkdir(parents=True)
    con.execute(
        "copy (select * from (values "
        "('o1', 'u1', '2024-03-05 01:02:03', '7.25', 'USD', 'completed'), "
        "('o2', 'u2', 'not a time', '1', 'USD', 'completed')) "
        "as t(order_id, user_id, ordered_at, amount, currency, status) order by order_id) "
        f"to '{directory / 'part.parquet'}' (format parquet)"
    )
    stats = ingest_partition(con, tmp_path, "orders", DAY, run_id="r1")

    assert (stats.rows_accepted, stats.rows_quarantined) == (1, 1)
    assert con.execute("select _source_line from quarantine.orders").fetchall() == [(2,)]
