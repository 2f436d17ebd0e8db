"""The whole daily pipeline on generated data, through the real CLI, Dagster, dbt and GX."""

from datetime import date

import duckdb
import polars as pl
import pytest

from dagster_project.cli import main
from dagster_project.lib import settings
from dagster_project.lib.generator import generate_sample

END = date(2024, 3, 31)
PREVIOUS = date(2024, 3, 30)
# Columns that legitimately differ between two runs of the same partition.
LINEAGE = {"run_id", "_run_id", "_ingested_at", "fitted_at"}
BI_TABLES = (
    "marts.dim_users",
    "marts.fct_orders",
    "marts.fct_user_activity_daily",
    "marts.user_segments_daily",
    "marts.user_value_daily",
    "marts.segment_summary_daily",
)


def table_rows(con: duckdb.DuckDBPyConnection, relation: str) -> pl.DataFrame:
    frame = con.sql(f"select * from {relation}").pl()
    frame = frame.drop([c for c in frame.columns if c in LINEAGE])
    return frame.sort(frame.columns)


@pytest.fixture(scope="module")
def pipeline_home(tmp_path_factory, dbt_manifest):
    home = tmp_path_factory.mktemp("pipeline")
    generate_sample(home, users=300, days=45, seed=7, end_date=END)
    exit_code = main(
        ["run", "--home", str(home), "--start", PREVIOUS.isoformat(), "--end", END.isoformat()]
    )
    assert exit_code == 0
    return settings.strata_paths(home)


@pytest.fixture
def warehouse(pipeline_home):
    con = duckdb.connect(str(pipeline_home.warehouse), read_only=True)
    yield con
    con.close()


@pytest.mark.parametrize("day", [PREVIOUS, END])
@pytest.mark.parametrize("relation", ["marts.user_segments_daily", "marts.user_value_daily"])
def test_every_known_user_has_exactly_one_row_per_snapshot(warehouse, relation, day):
    known = warehouse.execute(
        "select count(*) from marts.dim_users where cast(first_seen_at as date) <= ?", [day]
    ).fetchall()[0][0]
    rows, users = warehouse.execute(
        f"select count(*), count(distinct user_id) from {relation} where snapshot_date = ?", [day]
    ).fetchall()[0]
    missing = warehouse.execute(
        f"select count(*) from marts.dim_users as u where cast(u.first_seen_at as date) <= ? "
        f"and not exists (select 1 from {relation} as s where s.user_id = u.user_id "
        f"and s.snapshot_date = ?)",
        [day, day],
    ).fetchall()[0][0]
    assert known > 200
    assert rows == users == known
    assert missing == 0


def test_value_is_probabilistic_and_segments_are_labelled(warehouse):
    low, high, nulls_for_customers = warehouse.execute(
        "select min(p_alive), max(p_alive), "
        "count(*) filter (where is_customer and p_alive is null) from marts.user_value_daily"
    ).fetchall()[0]
    assert 0.0 <= low <= high <= 1.0
    assert nulls_for_customers == 0
    unlabelled = warehouse.execute(
        "select count(*) from marts.user_segments_daily where value_tier_label is null "
        "or lifecycle_stage is null or cluster_id is null or model_version is null"
    ).fetchall()[0][0]
    assert unlabelled == 0


def test_segment_summary_shares_add_up_per_scheme(warehouse):
    sums = warehouse.execute(
        "select snapshot_date, scheme, sum(share), sum(users) from marts.segment_summary_daily "
        "group by snapshot_date, scheme"
    ).fetchall()
    assert {row[1] for row in sums} >= {"value_tier", "lifecycle", "cluster"}
    for _, _, share, _ in sums:
        assert share == pytest.approx(1.0)


def test_serving_file_and_parquet_exports_hold_the_bi_tables(pipeline_home):
    serving = duckdb.connect(str(pipeline_home.serving_db), read_only=True)
    tables = {
        f"{s}.{t}"
        for s, t in serving.execute(
            "select table_schema, table_name from information_schema.tables"
        ).fetchall()
    }
    serving.close()
    assert set(BI_TABLES) <= tables
    exported = pipeline_home.serving_parquet / "user_segments_daily"
    assert (exported / f"snapshot_date={END}" / "data.parquet").exists()
    assert (exported / f"snapshot_date={PREVIOUS}" / "data.parquet").exists()


def test_rerunning_a_day_changes_nothing(pipeline_home):
    with duckdb.connect(str(pipeline_home.warehouse), read_only=True) as con:
        before = {relation: table_rows(con, relation) for relation in BI_TABLES}

    assert main(["run", "--home", str(pipeline_home.home), "--date", END.isoformat()]) == 0

    with duckdb.connect(str(pipeline_home.warehouse), read_only=True) as con:
        for relation in BI_TABLES:
            assert table_rows(con, relation).equals(before[relation]), relation
