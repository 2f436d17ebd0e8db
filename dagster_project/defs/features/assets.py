import dagster as dg

from dagster_project.defs.common import (
    DAILY_WAREHOUSE_ASSET,
    WarehouseResource,
    partition_days,
    preview,
)
from dagster_project.lib.core.warehouse import replace_snapshot
from dagster_project.lib.features.user_features import compute_user_features

USER_FEATURES = dg.AssetKey(["features", "user_features"])
MART_INPUTS = [
    dg.AssetKey(["marts", "dim_users"]),
    dg.AssetKey(["marts", "fct_orders"]),
    dg.AssetKey(["marts", "fct_user_activity_daily"]),
]


@dg.asset(
    key=USER_FEATURES,
    deps=MART_INPUTS,
    group_name="features",
    kinds={"polars", "duckdb"},
    description=(
        "One row per user known on the snapshot date: RFM, tenure, AOV, activity by event "
        "type, 30/90-day trends and BG/NBD inputs, from data up to that date only."
    ),
    **DAILY_WAREHOUSE_ASSET,
)
def user_features(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    rows = 0
    with warehouse.connect() as con:
        for day in partition_days(context):
            frame = compute_user_features(con, day)
            rows += replace_snapshot(con, "features.user_features", frame, "as_of_date", day)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "customers": int(frame["is_customer"].sum()),
            "preview": preview(frame),
        }
    )
