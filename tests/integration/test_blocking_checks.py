"""A broken landing file fails its blocking check; nothing downstream runs or gets published."""

from datetime import date

import dagster as dg
import polars as pl
from run_outcomes import failed_checks, materialized

from dagster_project.lib.core import settings
from dagster_project.lib.sample.generator import generate_sample

END = date(2024, 2, 29)
GOOD_DAY = date(2024, 2, 28)
DOWNSTREAM = {
    "features/user_features",
    "marts/user_segments_daily",
    "marts/user_value_daily",
    "serving/strata",
}


def test_invalid_status_values_block_downstream_assets(tmp_path, definitions, monkeypatch):
    home = tmp_path / "home"
    paths = settings.strata_paths(home)
    generate_sample(home, users=120, days=20, seed=11, end_date=END)
    monkeypatch.setenv("STRATA_HOME", str(paths.home))
    job = definitions.resolve_job_def("strata_daily")
    instance = dg.DagsterInstance.ephemeral()

    start = END.replace(day=10)
    catch_up = definitions.resolve_job_def("strata_ingest").execute_in_process(
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": start.isoformat(),
            "dagster/asset_partition_range_end": GOOD_DAY.isoformat(),
        },
    )
    assert catch_up.success
    good = job.execute_in_process(partition_key=GOOD_DAY.isoformat(), instance=instance)
    assert good.success
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

    broken = job.execute_in_process(
        partition_key=END.isoformat(), instance=instance, raise_on_error=False
    )

    failed = failed_checks(broken)
    assert "raw/orders:raw_orders_passes_expectations" in failed
    assert not materialized(broken) & DOWNSTREAM
    assert paths.serving_db.read_bytes() == published
    evaluation = failed["raw/orders:raw_orders_passes_expectations"]
    failures = evaluation.metadata["failures"].value
    assert any("shipped" in str(f["unexpected_sample"]) for f in failures)
