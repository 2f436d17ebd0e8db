"""A broken landing file fails its blocking check; nothing downstream runs or gets published."""

import dagster as dg
import polars as pl
from pipeline_sample import END
from run_outcomes import failed_checks, materialized

from dagster_project.lib.core import settings

DOWNSTREAM = {
    "features/user_features",
    "marts/user_segments_daily",
    "marts/user_value_daily",
    "serving/strata",
}


def test_invalid_status_values_block_downstream_assets(pipeline_copy, definitions):
    """The shared sample's last day lands again with invalid statuses and is run again."""
    paths = settings.strata_paths(pipeline_copy)
    published = paths.serving_db.read_bytes()
    orders_file = paths.landing / "orders" / f"date={END}" / "part-00000.csv"
    orders = pl.read_csv(orders_file, infer_schema=False)
    orders = orders.with_columns(
        pl.when(pl.int_range(pl.len()) % 2 == 0)
        .then(pl.lit("shipped"))
        .otherwise(pl.col("status"))
        .alias("status")
    )
    orders.write_csv(orders_file)

    broken = definitions.resolve_job_def("strata_daily").execute_in_process(
        partition_key=END.isoformat(), instance=dg.DagsterInstance.get(), raise_on_error=False
    )

    failed = failed_checks(broken)
    assert "raw/orders:raw_orders_passes_expectations" in failed
    assert not materialized(broken) & DOWNSTREAM
    assert paths.serving_db.read_bytes() == published
    evaluation = failed["raw/orders:raw_orders_passes_expectations"]
    failures = evaluation.metadata["failures"].value
    assert any("shipped" in str(f["unexpected_sample"]) for f in failures)


def test_staging_key_tests_fail_on_an_id_repeated_in_the_newest_ingestion(pipeline_copy):
    """stg_raw__orders' and stg_raw__events' unique tests read the rows of the newest ingestion
    (one version per id holds by construction; grouping the whole history every run was the
    cost): an id that ingestion repeats there still fails them."""
    import duckdb

    from dagster_project.defs.transform.project import strata_dbt_resource

    tests = {
        "orders": "unique_stg_raw__orders_order_id",
        "events": "unique_stg_raw__events_event_id",
    }
    with duckdb.connect(str(settings.strata_paths(pipeline_copy).warehouse)) as con:
        for table in tests:
            con.execute(
                f"insert into staging.stg_raw__{table} select * from staging.stg_raw__{table} "
                "where _ingested_at >= (select max(ingested_at) from audit.ingested_partitions "
                "where table_name = ?) limit 1",
                [table],
            )
    selected = " ".join(tests.values())
    run = strata_dbt_resource().cli(["test", "--select", selected], raise_on_error=False)
    results = run.wait().get_artifact("run_results.json")["results"]
    assert {r["unique_id"].split(".")[2]: r["status"] for r in results} == {
        name: "fail" for name in tests.values()
    }


def test_daily_fact_tests_check_the_rebuilt_days_and_their_orders_whole_history(
    pipeline_copy, monkeypatch
):
    """The daily facts' key tests read the days of the call's window (macros/test_window.sql):
    a duplicate on another day is that day's build's to find, but an order of the window
    that also lies on another day (moved there) fails the unique order_id."""
    from datetime import timedelta

    import duckdb

    from dagster_project.defs.transform.project import strata_dbt_resource

    earlier = END - timedelta(5)
    with duckdb.connect(str(settings.strata_paths(pipeline_copy).warehouse)) as con:
        con.execute(
            "insert into marts.fct_orders select * replace (cast(? as date) as order_date) "
            "from marts.fct_orders where order_date = ? limit 1",
            [earlier, END],
        )
        con.execute(
            "insert into marts.fct_user_activity_daily select * "
            "from marts.fct_user_activity_daily where activity_date = ? limit 1",
            [earlier],
        )
    tests = {
        "orders": "unique_fct_orders_order_id",
        "activity": "unique_combination_of_columns_fct_user_activity_daily_user_id__activity_date",
    }

    def statuses(first, last) -> dict[str, str]:
        monkeypatch.setenv("STRATA_MIN_DATE", first.isoformat())
        monkeypatch.setenv("STRATA_MAX_DATE", last.isoformat())
        run = strata_dbt_resource().cli(
            ["test", "--select", " ".join(tests.values())], raise_on_error=False
        )
        results = run.wait().get_artifact("run_results.json")["results"]
        names = {name: key for key, name in tests.items()}
        return {names[r["unique_id"].split(".")[2]]: r["status"] for r in results}

    assert statuses(END, END) == {"orders": "fail", "activity": "pass"}
    assert statuses(earlier, earlier) == {"orders": "fail", "activity": "fail"}
    between = END - timedelta(1)
    assert statuses(between, between) == {"orders": "pass", "activity": "pass"}
