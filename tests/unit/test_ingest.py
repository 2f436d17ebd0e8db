from datetime import date, datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest

from dagster_project.lib.ingestion.contract import IngestError
from dagster_project.lib.ingestion.ingest import (
    ingest_partition,
    ingest_partitions,
    ingested_dates,
    stale_dates,
)
from dagster_project.lib.ingestion.landing import landed_dates

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
    assert rejected[1][1] == "no user_id (a guest)"
    # the guest is kept in quarantine but is not a reject: 3 of 5 rows are
    assert (stats.guest_rows, stats.reject_share) == (1, 0.6)
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


def test_each_ingestion_is_stamped_later_than_the_one_before(tmp_path, con):
    """Incremental staging takes the partitions ingested after the newest _ingested_at it
    holds: two ingestions within one second must not carry the same time."""
    write_orders(tmp_path, DAY, "o1,u1,2024-03-05 10:00:00,1.00,USD,completed\n")
    write_orders(tmp_path, date(2024, 3, 6), "o2,u1,2024-03-06 10:00:00,1.00,USD,completed\n")
    ingest_partition(con, tmp_path, "orders", DAY, run_id="r1")
    ingest_partition(con, tmp_path, "orders", date(2024, 3, 6), run_id="r2")

    raw = con.execute("select _run_id, _ingested_at from raw.orders order by _run_id").fetchall()
    audit = con.execute(
        "select run_id, ingested_at from audit.ingested_partitions order by run_id"
    ).fetchall()
    assert raw == audit
    assert raw[1][1] > raw[0][1]


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


# ----------------------------------------------------------- duplicates, orphans, kinds

NEXT = date(2024, 3, 6)
USERS_HEADER = "user_id,signup_at\n"


def write_users(landing: Path, day: date, body: str) -> Path:
    directory = landing / "users" / f"date={day.isoformat()}"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "part-00000.csv"
    path.write_text(USERS_HEADER + body)
    return path


def quarantined(con, table: str = "orders") -> list[tuple]:
    return con.execute(
        f"select {'order_id' if table == 'orders' else 'user_id'}, _kind, _reason, "
        f"_partition_date, _source_line from quarantine.{table} order by _partition_date, "
        "_source_line"
    ).fetchall()


def test_duplicates_keep_the_first_occurrence_up_to_the_row_s_own_day(tmp_path, con):
    write_orders(tmp_path, DAY, "o1,u1,2024-03-05 10:00:00,1.00,USD,completed\n")
    write_orders(
        tmp_path,
        NEXT,
        "o2,u1,2024-03-06 09:00:00,2.00,USD,completed\n"  # line 2
        "o2,u1,2024-03-06 09:00:00,2.00,USD,completed\n"  # line 3: same day, later line
        "o1,u1,2024-03-06 11:00:00,3.00,USD,completed\n",  # line 4: seen on an earlier day
    )
    # the later day first: o1 of 03-05 is not known yet
    ingest_partition(con, tmp_path, "orders", NEXT, run_id="r1")
    assert [r[:2] for r in quarantined(con)] == [("o2", "duplicate_id")]

    # backfilling 03-05 afterwards accepts its o1 (a later day never makes an earlier row
    # a duplicate), exactly as if 03-05 had been ingested first
    ingest_partition(con, tmp_path, "orders", DAY, run_id="r2")
    assert con.execute(
        "select count(*) from raw.orders where _partition_date = ?", [DAY]
    ).fetchall() == [(1,)]

    # re-ingesting 03-06 now sees o1 on 03-05 and rejects its copy
    ingest_partition(con, tmp_path, "orders", NEXT, run_id="r3")
    rows = quarantined(con)
    assert [(r[0], r[1], r[4]) for r in rows] == [
        ("o2", "duplicate_id", 3),
        ("o1", "duplicate_id", 4),
    ]
    assert rows[1][2] == "duplicate order_id: first seen 2024-03-05 in part-00000.csv line 2"


def test_orphans_are_judged_only_when_the_parent_source_is_given(tmp_path, con):
    write_orders(
        tmp_path,
        NEXT,
        "o1,u1,2024-03-06 09:00:00,1.00,USD,completed\n"
        "o2,u2,2024-03-06 09:30:00,1.00,USD,completed\n"
        "o3,u3,2024-03-06 10:00:00,1.00,USD,completed\n",
    )
    # no users delivered at all (CDNOW): nobody is an orphan
    assert ingest_partition(con, tmp_path, "orders", NEXT, "r1").rows_quarantined == 0

    write_users(tmp_path, DAY, "u1,2024-03-05 08:00:00\n")
    write_users(tmp_path, date(2024, 3, 7), "u3,2024-03-07 08:00:00\n")  # signs up later
    for day in (DAY, date(2024, 3, 7)):
        ingest_partition(con, tmp_path, "users", day, "r2")
    stats = ingest_partition(con, tmp_path, "orders", NEXT, "r3")

    assert (stats.rows_accepted, stats.rows_quarantined) == (1, 2)
    assert stats.kinds == {"orphan": 2}
    assert [(r[0], r[2]) for r in quarantined(con)] == [
        ("o2", "orphan: user_id 'u2' not in users"),
        ("o3", "orphan: user_id 'u3' not in users"),
    ]


def test_timestamps_after_the_day_are_future_and_before_it_outside(tmp_path, con):
    write_orders(
        tmp_path,
        DAY,
        "o1,u1,2024-03-09 10:00:00,1.00,USD,completed\n"
        "o2,u1,2024-03-01 10:00:00,1.00,USD,completed\n"
        "o3,u1,2024-03-05 10:00:00.250,1.00,USD,completed\n"  # fractional seconds are fine
        "o4,u1,2024-03-05T10:00:00,-1,USD,completed\n",
    )
    stats = ingest_partition(con, tmp_path, "orders", DAY, "r1")
    assert [(r[0], r[1]) for r in quarantined(con)] == [
        ("o1", "future_timestamp"),
        ("o2", "outside_partition"),
        ("o4", "negative_amount"),
    ]
    assert stats.kinds == {"future_timestamp": 1, "negative_amount": 1, "outside_partition": 1}
    assert stats.reject_share == pytest.approx(0.75)


def test_a_range_of_days_gives_the_same_rows_as_day_by_day(tmp_path):
    write_users(tmp_path, DAY, "u1,2024-03-05 08:00:00\nu1,2024-03-05 08:00:00\n")
    write_orders(tmp_path, DAY, "o1,u1,2024-03-05 10:00:00,1.00,USD,completed\n")
    write_orders(
        tmp_path,
        NEXT,
        "o1,u1,2024-03-06 10:00:00,1.00,USD,completed\n"
        "o2,u9,2024-03-06 10:00:00,x,USD,completed\n"
        "o3,u1,2024-03-06 11:00:00,4.00,USD,refunded\n",
    )

    def rows(con: duckdb.DuckDBPyConnection) -> dict[str, list]:
        return {
            relation: con.execute(
                f"select * exclude (_ingested_at, _run_id) from {relation} order by all"
            ).fetchall()
            for relation in ("raw.users", "raw.orders", "quarantine.users", "quarantine.orders")
        }

    day_by_day, in_one_go = duckdb.connect(), duckdb.connect()
    for day in (DAY, NEXT):
        ingest_partition(day_by_day, tmp_path, "users", day, "r1")
        ingest_partition(day_by_day, tmp_path, "orders", day, "r1")
    ingest_partitions(in_one_go, tmp_path, "users", [DAY, NEXT], "r2")
    stats = ingest_partitions(in_one_go, tmp_path, "orders", [NEXT, DAY], "r2")

    assert rows(day_by_day) == rows(in_one_go)
    assert [(s.partition_date, s.rows_landed, s.rows_quarantined) for s in stats] == [
        (DAY, 1, 0),
        (NEXT, 3, 2),
    ]
    audit = in_one_go.execute(
        "select partition_date, rows_landed, rows_accepted + rows_quarantined, "
        "quarantined_by_kind from audit.ingested_partitions where table_name = 'orders' "
        "order by 1"
    ).fetchall()
    assert audit == [
        (DAY, 1, 1, "{}"),
        (NEXT, 3, 3, '{"duplicate_id": 1, "unparseable": 1}'),
    ]
    day_by_day.close()
    in_one_go.close()


def test_mapped_parquet_keeps_the_original_file_and_line(tmp_path, con):
    directory = tmp_path / "orders" / f"date={DAY.isoformat()}"
    directory.mkdir(parents=True)
    pl.DataFrame(
        {
            "order_id": ["o1", "o2"],
            "user_id": ["u1", "u1"],
            "ordered_at": ["2024-03-05 01:00:00.000000", "2024-03-05 02:00:00.000000"],
            "amount": ["1.5", "oops"],
            "currency": ["EUR", "EUR"],
            "status": ["completed", "completed"],
            "_source_file": ["/exports/shop.csv", "/exports/shop.csv"],
            "_source_line": [40, 41],
        }
    ).write_parquet(directory / "mapped.parquet")

    ingest_partition(con, tmp_path, "orders", DAY, "r1")

    assert con.execute("select _source_file, _source_line from raw.orders").fetchall() == [
        ("/exports/shop.csv", 40)
    ]
    assert con.execute(
        "select _source_file, _source_line, amount from quarantine.orders"
    ).fetchall() == [("/exports/shop.csv", 41, "oops")]


def test_stale_dates_are_new_changed_or_vanished_days(tmp_path, con):
    first = write_orders(tmp_path, DAY, "o1,u1,2024-03-05 10:00:00,1.00,USD,completed\n")
    write_orders(tmp_path, NEXT, "o2,u1,2024-03-06 10:00:00,1.00,USD,completed\n")
    assert stale_dates(None, tmp_path) == [DAY, NEXT]
    for day in (DAY, NEXT):
        ingest_partition(con, tmp_path, "orders", day, "r1")
    assert stale_dates(con, tmp_path) == []

    write_orders(
        tmp_path, NEXT, "o2,u1,2024-03-06 10:00:00,1.00,USD,completed\no3,u1,2024-03-06,2,USD,x\n"
    )
    first.unlink()
    assert stale_dates(con, tmp_path) == [DAY, NEXT]


@pytest.mark.parametrize(
    ("rejects", "landed", "stops_at_10_percent"),
    [
        (1, 3, False),  # one bad row of a tiny day: arithmetic, not breakage
        (2, 10, False),
        (1_100, 10_000, True),  # 11 % of a real day
        (40, 100, True),
        (0, 0, False),
    ],
)
def test_the_reject_guard_judges_a_day_with_its_size_in_mind(rejects, landed, stops_at_10_percent):
    from dagster_project.lib.ingestion.audit import wilson_lower_sql

    share = rejects / landed if landed else 0.0
    day = f"(select {share}::double as share, {landed} as n)"
    sql = f"select {wilson_lower_sql('share', 'n')} from {day}"
    lower = duckdb.sql(sql).fetchall()[0][0]
    assert 0.0 <= lower <= share
    assert (lower > 0.10) is stops_at_10_percent


def test_chunks_count_parquet_at_its_size_as_text(tmp_path, monkeypatch) -> None:
    """A catch-up is read in chunks of bounded memory: Parquet is compressed, so its bytes count
    PARQUET_EXPANSION times (a million users' events once came in 50-day chunks: 24 GB)."""
    from datetime import date, timedelta

    from dagster_project.lib.ingestion import ingest

    monkeypatch.setattr(ingest, "CHUNK_BYTES", 1000)
    days = [date(2024, 1, 1) + timedelta(days=i) for i in range(6)]
    for table, suffix in (("orders", "csv"), ("events", "parquet")):
        for day in days:
            folder = tmp_path / table / f"date={day.isoformat()}"
            folder.mkdir(parents=True)
            (folder / f"part-00000.{suffix}").write_bytes(b"x" * 150)
    assert [len(c) for c in ingest._chunks(tmp_path, "orders", days)] == [6]
    assert ingest.PARQUET_EXPANSION * 150 > 1000
    assert [len(c) for c in ingest._chunks(tmp_path, "events", days)] == [1] * 6


def test_campaign_exposures_reject_unknown_arms_and_need_a_user(tmp_path, con):
    directory = tmp_path / "campaign_exposures" / f"date={DAY.isoformat()}"
    directory.mkdir(parents=True)
    (directory / "part-00000.csv").write_text(
        "user_id,campaign_id,arm,exposed_at,channel,cost\n"
        "u1,c1,treatment,2024-03-05 06:00:00,email,0.05\n"  # line 2: fine
        "u2,c1, Control ,2024-03-05 06:00:00,email,\n"  # line 3: fine (case, spaces, no cost)
        "u3,c1,holdout,2024-03-05 06:00:00,email,0.05\n"  # line 4: unknown arm
        ",c1,control,2024-03-05 06:00:00,email,0\n"  # line 5: no user: not a guest here
        "u5,c1,treatment,2024-03-05 06:00:00,sms,-0.10\n"  # line 6: negative cost
    )
    stats = ingest_partition(con, tmp_path, "campaign_exposures", DAY, run_id="r1")
    assert (stats.rows_accepted, stats.rows_quarantined, stats.guest_rows) == (2, 3, 0)
    rejected = con.execute(
        "select _source_line, _reason, _kind from quarantine.campaign_exposures "
        "order by _source_line"
    ).fetchall()
    assert rejected == [
        (4, "arm must be one of treatment, control, got 'holdout'", "unparseable"),
        (5, "missing user_id", "missing_value"),
        (6, "negative cost", "negative_amount"),
    ]
