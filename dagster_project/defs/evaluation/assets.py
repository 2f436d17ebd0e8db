"""Campaign evaluation: marts.campaign_effects, the lift of every campaign per segment at
exposure (statistics in lib/evaluation), from the dbt models fct_campaign_exposures and
campaign_exposure_segments."""

import dagster as dg

from dagster_project.defs.common import DAILY_WAREHOUSE_ASSET, WarehouseResource, preview
from dagster_project.lib.core.warehouse import frame_in_transaction

CAMPAIGN_EFFECTS = dg.AssetKey(["marts", "campaign_effects"])
CAMPAIGN_EXPOSURES = dg.AssetKey(["marts", "fct_campaign_exposures"])
EXPOSURE_SEGMENTS = dg.AssetKey(["marts", "campaign_exposure_segments"])

PREVIEW_COLUMNS = (
    "campaign_id",
    "metric",
    "treatment_users",
    "control_users",
    "absolute_lift",
    "absolute_lift_low",
    "absolute_lift_high",
    "p_value",
    "cuped_lift",
    "roi",
)
OUTCOME_ROWS = """
select
    s.campaign_id, s.scheme, s.segment, s.segment_label,
    e.arm, cast(e.cost as double) as cost,
    cast(e.pre_exposure_revenue as double) as pre_exposure_revenue,
    cast(e.converted as double) as converted,
    cast(e.revenue as double) as revenue,
    cast(e.retained_30d as double) as retained_30d,
    cast(e.retained_60d as double) as retained_60d,
    cast(e.retained_90d as double) as retained_90d
from marts.campaign_exposure_segments as s
inner join marts.fct_campaign_exposures as e
    on e.campaign_id = s.campaign_id and e.user_id = s.user_id
"""


@dg.asset(
    key=CAMPAIGN_EFFECTS,
    deps=[CAMPAIGN_EXPOSURES, EXPOSURE_SEGMENTS],
    group_name="evaluation",
    kinds={"polars", "duckdb"},
    description=(
        "Did the campaign work, per segment (grain: campaign_id, scheme, segment, metric): the "
        "segment is the user's at exposure (point in time), scheme 'all' pools every exposed "
        "user. Metrics: converted and revenue in the campaign window, retained_30d/60d/90d. "
        "Per arm users and values; absolute and relative lift with 95% intervals, p-value, "
        "CUPED-adjusted lift on pre-exposure spend, ROI when costs are given, and a "
        "sample-ratio-mismatch check. As of the latest snapshot; rebuilt whole each run."
    ),
    **DAILY_WAREHOUSE_ASSET,
)
def campaign_effects(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    from dagster_project.lib.evaluation.campaigns import RELATION, campaign_effects, contract_ddl

    with warehouse.connect() as con:
        rows = con.sql(OUTCOME_ROWS).pl()
        as_of = con.execute(
            "select max(latest_snapshot_date) from marts.fct_campaign_exposures"
        ).fetchall()
        frame = campaign_effects(rows, as_of[0][0])
        with frame_in_transaction(con, "__effects", frame):
            con.execute(f"drop table if exists {RELATION}")
            con.execute(contract_ddl())
            con.execute(f"insert into {RELATION} by name select * from __effects")
    pooled = frame.filter(frame["scheme"] == "all")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": frame.height,
            "campaigns": pooled["campaign_id"].n_unique(),
            "significant_rows": int(frame["is_significant"].fill_null(False).sum()),
            "rows_with_srm": int(frame["has_srm"].sum()),
            "campaigns_pooled": preview(
                pooled.select(*PREVIEW_COLUMNS),
                rows=25,
            ),
        }
    )
