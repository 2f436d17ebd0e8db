"""Jobs and schedules: the daily partitioned run, catch-up ingestion and the weekly refit."""

import dagster as dg

from dagster_project.defs.common import daily_partitions

MODEL_ASSETS = dg.AssetSelection.assets(
    dg.AssetKey(["models", "segment_clusters"]), dg.AssetKey(["models", "customer_value"])
).required_multi_asset_neighbors()  # segment_clusters also writes its per-version tables
INGEST_SELECTION = (
    dg.AssetSelection.groups("ingestion")
    | dg.AssetSelection.assets(
        dg.AssetKey(["marts", "fct_orders"]),
        dg.AssetKey(["marts", "fct_user_activity_daily"]),
        # the facts' relationship tests read dim_users
        dg.AssetKey(["marts", "dim_users"]),
        # the rest of the unpartitioned dbt models: a partial selection of them would run the
        # relationship tests of models it did not build
        dg.AssetKey(["staging", "stg_raw__campaign_exposures"]),
    ).upstream()
)

# On 2 cores a multiprocess step costs a fresh Python (~5-10 s of imports) per asset, more
# than most steps take; the daily job runs in process (measured by benchmarks/load_definitions.py).
daily_job = dg.define_asset_job(
    "strata_daily",
    selection=dg.AssetSelection.all(),
    partitions_def=daily_partitions,
    executor_def=dg.in_process_executor,
    description="Ingest one day, transform, validate, rebuild features, segments, value; publish.",
)

ingest_job = dg.define_asset_job(
    "strata_ingest",
    selection=INGEST_SELECTION,
    partitions_def=daily_partitions,
    executor_def=dg.in_process_executor,
    description="Catch-up ingestion and incremental facts for a range of days, in one run.",
)

refit_job = dg.define_asset_job(
    "strata_model_refit",
    selection=MODEL_ASSETS,
    partitions_def=daily_partitions,
    executor_def=dg.in_process_executor,
    config={
        "ops": {
            "models__segment_clusters": {"config": {"refit": True}},
            "models__customer_value": {"config": {"refit": True}},
        }
    },
    description="Fit new versions of the segmentation and value models on the latest day.",
)

daily_schedule = dg.build_schedule_from_partitioned_job(
    daily_job, name="strata_daily_schedule", hour_of_day=3
)


@dg.schedule(job=refit_job, cron_schedule="0 2 * * 1", name="strata_weekly_refit_schedule")
def weekly_refit_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    partition = daily_partitions.get_last_partition_key(
        current_time=context.scheduled_execution_time
    )
    return dg.RunRequest(run_key=f"refit-{partition}", partition_key=partition)
