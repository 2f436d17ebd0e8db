"""Customer value: BG/NBD + Gamma-Gamma; one value row per user per snapshot date."""

from typing import Any

import dagster as dg
import polars as pl

from dagster_project.defs.common import (
    DAILY_WAREHOUSE_ASSET,
    WarehouseResource,
    partition_days,
    preview,
)
from dagster_project.defs.features.assets import USER_FEATURES
from dagster_project.defs.models import VersionedModel, features_as_of
from dagster_project.lib import settings
from dagster_project.lib.registry import ModelStore
from dagster_project.lib.warehouse import replace_snapshot

USER_VALUE = dg.AssetKey(["marts", "user_value_daily"])
VALUE_SPEC = settings.MODEL_SPECS_DIR / "value.yml"
VALUE_MODEL = VersionedModel("customer_value", VALUE_SPEC)


def fit_value(features: pl.DataFrame) -> tuple[Any, dict[str, Any]]:
    from dagster_project.lib.value import fit_value_models, load_value_spec

    models = fit_value_models(features, load_value_spec(VALUE_SPEC))
    return models, models.summary()


customer_value = VALUE_MODEL.build_asset(
    fit_value,
    group_name="value",
    kinds={"scipy", "polars"},
    description=(
        "BG/NBD (purchase frequency, P(alive)) and Gamma-Gamma (spend) fitted on user_features "
        "(spec models/value.yml). Config `refit: true` fits a new version."
    ),
)


@dg.asset(
    key=USER_VALUE,
    deps=[USER_FEATURES, VALUE_MODEL.asset_key],
    group_name="value",
    kinds={"polars", "duckdb"},
    description=(
        "One row per user per snapshot date: P(alive), expected orders in 90 days, expected "
        "order value, discounted 12-month CLV, churn risk and band, and the ARPU / churn-rate "
        "LTV baseline, with the model version that made the row."
    ),
    **DAILY_WAREHOUSE_ASSET,
)
def user_value_daily(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    from dagster_project.lib.value import load_value_spec, score_value

    spec = load_value_spec(VALUE_SPEC)
    store = ModelStore(warehouse.paths.model_store)
    rows = 0
    with warehouse.connect() as con:
        for day in partition_days(context):
            features = features_as_of(con, day)
            version = VALUE_MODEL.version_for(store, day)
            scored = (
                score_value(features, store.load(version), spec)
                .with_columns(
                    pl.lit(day, dtype=pl.Date).alias("snapshot_date"),
                    pl.lit(version.version).alias("model_version"),
                    pl.lit(context.run.run_id).alias("run_id"),
                )
                .select("user_id", "snapshot_date", pl.exclude("user_id", "snapshot_date"))
            )
            rows += replace_snapshot(con, "marts.user_value_daily", scored, "snapshot_date", day)
    bands = scored.group_by("churn_risk_band").len().sort("churn_risk_band")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "model_version": version.version,
            "total_clv_12m": float(scored["clv_12m"].fill_null(0).sum()),
            "churn_risk_bands": preview(bands),
        }
    )
