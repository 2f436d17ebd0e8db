from datetime import date

import duckdb
import pytest

from dagster_project.lib.serving.publish import (
    FINGERPRINT_SCHEMA,
    SERVING_STORAGE_VERSION,
    publish_serving_copy,
)

DAY = date(2024, 5, 1)


@pytest.fixture
def working(tmp_path):
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    con.execute("create schema marts")
    con.execute("create schema staging")
    con.execute(
        "create table marts.user_segments_daily as select * from (values "
        "('u1', date '2024-04-30', 'a'), ('u1', date '2024-05-01', 'b')) "
        "as t(user_id, snapshot_date, s)"
    )
    con.execute("create table marts.dim_users as select 'u1' as user_id")
    con.execute("create table staging.not_published as select 1 as x")
    yield con
    con.close()


def test_serving_copy_holds_the_marts_in_a_duckdb_1x_readable_file(tmp_path, working):
    serving = tmp_path / "serving" / "strata.duckdb"
    counts = publish_serving_copy(working, serving)

    assert counts == {"marts.dim_users": 1, "marts.user_segments_daily": 2}
    reader = duckdb.connect(str(serving), read_only=True)
    tags = reader.execute(
        "select tags from duckdb_databases() where database_name = 'strata'"
    ).fetchall()[0][0]
    tables = reader.execute(
        "select table_schema, table_name from information_schema.tables order by 2"
    ).fetchall()
    reader.close()
    assert tags["storage_version"].startswith(SERVING_STORAGE_VERSION[:4])
    # the BI tables, and the sliced one's fingerprints that the next publish compares with
    assert tables == [
        ("marts", "dim_users"),
        ("marts", "user_segments_daily"),
        (FINGERPRINT_SCHEMA, "user_segments_daily"),
    ]
    assert [p.name for p in serving.parent.iterdir()] == ["strata.duckdb"]  # no temp file left


def test_a_reader_holding_the_old_file_keeps_its_snapshot(tmp_path, working):
    serving = tmp_path / "serving" / "strata.duckdb"
    publish_serving_copy(working, serving)
    reader = duckdb.connect(str(serving), read_only=True)

    working.execute("insert into marts.dim_users values ('u2')")
    publish_serving_copy(working, serving)

    assert reader.execute("select count(*) from marts.dim_users").fetchall() == [(1,)]
    reader.close()
    fresh = duckdb.connect(str(serving), read_only=True)
    assert fresh.execute("select count(*) from marts.dim_users").fetchall() == [(2,)]
    fresh.close()


def exported_files(root) -> list[str]:
    return sorted(str(f.relative_to(root)) for f in root.glob("**/*") if f.is_file())


def test_parquet_exports_split_tables_with_a_date_column_by_date(tmp_path, working):
    root = tmp_path / "parquet"
    publish_serving_copy(working, tmp_path / "serving" / "strata.duckdb", root)

    assert exported_files(root) == [
        "dim_users/data.parquet",
        "user_segments_daily/snapshot_date=2024-04-30/data.parquet",
        "user_segments_daily/snapshot_date=2024-05-01/data.parquet",
    ]
    rows = working.execute(
        f"select * from read_parquet('{root}/user_segments_daily/*/*.parquet', "
        "hive_partitioning = false) order by all"
    ).fetchall()
    assert (
        rows == working.execute("select * from marts.user_segments_daily order by all").fetchall()
    )


def test_a_copy_left_by_a_killed_publish_is_removed(tmp_path, working):
    serving = tmp_path / "serving" / "strata.duckdb"
    serving.parent.mkdir(parents=True)
    (serving.parent / ".strata.duckdb.99999.tmp").write_bytes(b"half written")
    (serving.parent / ".strata.duckdb.99999.tmp.wal").write_bytes(b"")
    publish_serving_copy(working, serving)
    assert sorted(p.name for p in serving.parent.iterdir()) == ["strata.duckdb"]


def day_file_stamps(table_folder) -> dict[str, tuple[int, int]]:
    """Each day folder's data.parquet: (inode, mtime); a rewritten file changes both."""
    return {
        f.parent.name: (f.stat().st_ino, f.stat().st_mtime_ns)
        for f in table_folder.glob("*/data.parquet")
    }


def serving_rows(serving, table: str) -> list[tuple]:
    with duckdb.connect(str(serving), read_only=True) as reader:
        return reader.execute(f"select * from marts.{table} order by all").fetchall()


def test_a_republish_rewrites_the_changed_days_and_equals_the_warehouse(tmp_path, working):
    """The second publish starts from the first file: unchanged days stay, a changed, a new
    and a removed day follow the warehouse, as do a dropped and a reshaped table."""
    working.execute(
        "create table marts.fct_orders as select 'o' || range as order_id, "
        "date '2024-04-01' + cast(range % 5 as integer) as order_date, range * 1.5 as amount "
        "from range(50)"
    )
    working.execute("create table marts.gone as select 1 as x")
    serving = tmp_path / "serving" / "strata.duckdb"
    root = tmp_path / "parquet"
    publish_serving_copy(working, serving, root)
    written = day_file_stamps(root / "fct_orders")
    assert len(written) == 5
    (root / "user_segments_daily" / "snapshot_date=2024-04-30" / "data.parquet").unlink()

    working.execute("update marts.fct_orders set amount = -1 where order_id = 'o7'")
    working.execute("delete from marts.fct_orders where order_date = date '2024-04-01'")
    working.execute("insert into marts.fct_orders values ('o99', date '2024-04-09', 2.0)")
    working.execute("insert into marts.user_segments_daily values ('u2', date '2024-05-02', 'c')")
    working.execute("drop table marts.gone")
    working.execute("alter table marts.dim_users add column country varchar")
    counts = publish_serving_copy(working, serving, root)

    assert counts == {
        "marts.dim_users": 1,
        "marts.fct_orders": 41,
        "marts.user_segments_daily": 3,
    }
    for table in ("dim_users", "fct_orders", "user_segments_daily"):
        expected = working.execute(f"select * from marts.{table} order by all").fetchall()
        assert serving_rows(serving, table) == expected, table
        exported = working.execute(
            f"select * from read_parquet('{root}/{table}/**/*.parquet', "
            "hive_partitioning = false) order by all"
        ).fetchall()
        assert exported == expected, table
    # the days whose rows did not change kept their files; the removed day and table are gone,
    # the changed, new and deleted-by-hand ones were written
    kept = day_file_stamps(root / "fct_orders")
    assert "order_date=2024-04-01" not in kept
    assert "order_date=2024-04-09" in kept
    unchanged = ["order_date=2024-04-02", "order_date=2024-04-04", "order_date=2024-04-05"]
    assert all(kept[day] == written[day] for day in unchanged)
    assert kept["order_date=2024-04-03"] != written["order_date=2024-04-03"]  # o7 changed
    assert not (root / "gone").exists()
    assert (root / "user_segments_daily" / "snapshot_date=2024-04-30" / "data.parquet").exists()
    with duckdb.connect(str(serving), read_only=True) as reader:
        tags = reader.execute(
            "select tags from duckdb_databases() where database_name = 'strata'"
        ).fetchall()[0][0]
        tables = reader.execute("select table_name from information_schema.tables").fetchall()
    assert tags["storage_version"].startswith(SERVING_STORAGE_VERSION[:4])
    assert ("gone",) not in tables
    assert sorted(p.name for p in serving.parent.iterdir()) == ["strata.duckdb"]


def test_a_daily_republish_writes_the_one_changed_day_alone(tmp_path, working):
    """A day's run changes one date: its file is rewritten with the warehouse's rows (the date
    column kept in the file, as in the partitioned write), the other day's file is left."""
    serving = tmp_path / "serving" / "strata.duckdb"
    root = tmp_path / "parquet"
    publish_serving_copy(working, serving, root)
    folder = root / "user_segments_daily"
    before = day_file_stamps(folder)

    working.execute("insert into marts.user_segments_daily values ('u2', date '2024-05-01', 'c')")
    publish_serving_copy(working, serving, root)

    after = day_file_stamps(folder)
    assert after.keys() == before.keys() == {"snapshot_date=2024-04-30", "snapshot_date=2024-05-01"}
    assert after["snapshot_date=2024-04-30"] == before["snapshot_date=2024-04-30"]
    assert after["snapshot_date=2024-05-01"] != before["snapshot_date=2024-05-01"]
    exported = working.execute(
        f"select * from read_parquet('{folder}/snapshot_date=2024-05-01/data.parquet') order by all"
    ).fetchall()
    assert exported == [("u1", DAY, "b"), ("u2", DAY, "c")]
    assert sorted(p.name for p in root.iterdir()) == ["dim_users", "user_segments_daily"]
    assert (
        serving_rows(serving, "user_segments_daily")
        == working.execute("select * from marts.user_segments_daily order by all").fetchall()
    )


def test_an_unreadable_published_file_is_replaced_by_a_fresh_copy(tmp_path, working):
    serving = tmp_path / "serving" / "strata.duckdb"
    serving.parent.mkdir(parents=True)
    serving.write_bytes(b"not a duckdb file")
    publish_serving_copy(working, serving)
    assert serving_rows(serving, "dim_users") == [("u1",)]


def stored_fingerprints(serving, table: str) -> list[tuple]:
    with duckdb.connect(str(serving), read_only=True) as reader:
        return reader.execute(f"select * from {FINGERPRINT_SCHEMA}.{table} order by all").fetchall()


def test_a_republish_compares_with_the_fingerprints_kept_in_the_published_file(tmp_path, working):
    """The published file's stored fingerprints, not its rows, say what changed: a day whose
    stored fingerprint is off is written again though its rows are the warehouse's."""
    serving = tmp_path / "serving" / "strata.duckdb"
    root = tmp_path / "parquet"
    publish_serving_copy(working, serving, root)
    first = stored_fingerprints(serving, "user_segments_daily")
    assert [(day, rows) for day, rows, _ in first] == [(date(2024, 4, 30), 1), (DAY, 1)]
    with duckdb.connect(str(serving)) as writer:
        writer.execute(
            f"update {FINGERPRINT_SCHEMA}.user_segments_daily set digest = digest + 1 "
            "where snapshot_date = date '2024-04-30'"
        )
    before = day_file_stamps(root / "user_segments_daily")

    publish_serving_copy(working, serving, root)

    after = day_file_stamps(root / "user_segments_daily")
    assert after[f"snapshot_date={DAY}"] == before[f"snapshot_date={DAY}"]
    assert after["snapshot_date=2024-04-30"] != before["snapshot_date=2024-04-30"]
    assert stored_fingerprints(serving, "user_segments_daily") == first


def test_a_file_published_without_fingerprints_is_compared_by_its_rows(tmp_path, working):
    """A file published before the fingerprints were kept: its rows are hashed, only the
    changed day is written, and the fingerprints are kept from then on."""
    serving = tmp_path / "serving" / "strata.duckdb"
    root = tmp_path / "parquet"
    publish_serving_copy(working, serving, root)
    with duckdb.connect(str(serving)) as writer:
        writer.execute(f"drop schema {FINGERPRINT_SCHEMA} cascade")
    before = day_file_stamps(root / "user_segments_daily")

    working.execute("insert into marts.user_segments_daily values ('u2', date '2024-05-01', 'c')")
    publish_serving_copy(working, serving, root)

    after = day_file_stamps(root / "user_segments_daily")
    assert after["snapshot_date=2024-04-30"] == before["snapshot_date=2024-04-30"]
    assert after[f"snapshot_date={DAY}"] != before[f"snapshot_date={DAY}"]
    days = [(day, rows) for day, rows, _ in stored_fingerprints(serving, "user_segments_daily")]
    assert days == [(date(2024, 4, 30), 1), (DAY, 2)]
    assert (
        serving_rows(serving, "user_segments_daily")
        == working.execute("select * from marts.user_segments_daily order by all").fetchall()
    )


def test_fingerprints_go_with_a_table_no_longer_published_or_sliced(tmp_path, working):
    serving = tmp_path / "serving" / "strata.duckdb"
    working.execute(
        f"create table marts.fct_orders as select 'o1' as id, date '{DAY}' as order_date"
    )
    publish_serving_copy(working, serving)
    assert stored_fingerprints(serving, "fct_orders") != []

    working.execute("drop table marts.fct_orders")
    working.execute("alter table marts.user_segments_daily rename column snapshot_date to day")
    publish_serving_copy(working, serving)

    with duckdb.connect(str(serving), read_only=True) as reader:
        kept = reader.execute(
            "select table_name from duckdb_tables() where schema_name = ?", [FINGERPRINT_SCHEMA]
        ).fetchall()
    assert kept == []
