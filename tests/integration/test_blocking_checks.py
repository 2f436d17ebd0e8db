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
