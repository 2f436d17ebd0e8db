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
