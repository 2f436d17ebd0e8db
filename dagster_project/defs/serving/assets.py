from datetime import timedelta

import dagster as dg

from dagster_project.defs.common import DAILY_WAREHOUSE_ASSET, WarehouseResource
from dagster_project.lib.serving.publish import publish_serving_copy

BI_TABLES = [
    dg.AssetKey(["marts", name])
    for name in (
        "dim_users",
        "fct_orders",
        "fct_user_activity_daily",
        "user_segments_daily",
        "user_value_daily",
        "segment_summary_daily",
        "value_backtests",
        "segment_catalog",
        "segment_model_candidates",
        "segment_cluster_profiles",
        "segment_cluster_lineage",
        "user_custom_segments_daily",
        "segment_playbook",
        "user_segment_history",
        "segment_migration_daily",
        "user_360",
        # segment KPIs, cohorts and category recommendations (issue 12)
        "segment_kpis_daily",
        "cohort_retention_monthly",
        "segment_category_affinity",
        "user_next_best_categories",
        # campaign evaluation and the global holdout (issue 12)
        "user_holdout_groups",
        "fct_campaign_exposures",
        "campaign_exposure_segments",
        "campaign_effects",
    )
]


@dg.asset(
    key=["serving", "strata"],
    deps=BI_TABLES,
    group_name="serving",
    kinds={"duckdb", "parquet"},
    description=(
        "The BI-facing copy: every marts table in serving/strata.duckdb (DuckDB 1.x readable, "
        "swapped in atomically) and Parquet exports under serving/parquet/<table>/."
    ),
    # the daily schedule publishes at about 03:00 UTC: by 06:00 the copy must be at most a day
    # old, or the UI marks the warehouse stale (a failed or missing run, a stuck queue)
    freshness_policy=dg.FreshnessPolicy.cron(
        deadline_cron="0 6 * * *", lower_bound_delta=timedelta(hours=24)
    ),
    **DAILY_WAREHOUSE_ASSET,
)
def serving_copy(warehouse: WarehouseResource):
    paths = warehouse.paths
    with warehouse.connect() as con:
        counts = publish_serving_copy(con, paths.serving_db, paths.serving_parquet)
        charts = _published_charts(con)
    parquet = list(paths.serving_parquet.glob("**/*.parquet"))
    return dg.MaterializeResult(
        metadata={
            "serving_file": dg.MetadataValue.path(str(paths.serving_db)),
            "tables": dg.MetadataValue.json(counts),
            "parquet_files": len(parquet),
            **charts,
        }
    )


def _published_charts(con) -> dict[str, dg.MetadataValue]:
    """What BI sees, drawn (lib/reporting/published.py): the report shows the same charts."""
    from dagster_project.lib.reporting.charts import markdown_image
    from dagster_project.lib.reporting.published import published_charts

    return {
        name: dg.MetadataValue.md(markdown_image(png, name, caption))
        for name, (png, caption) in published_charts(con).items()
    }
