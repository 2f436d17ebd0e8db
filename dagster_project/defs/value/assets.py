"""Customer value: BG/NBD + Gamma-Gamma models, versioned; one value row per user per day."""

from datetime import date

import dagster as dg
import polars as pl

from dagster_project.defs.common import (
    WAREHOUSE_POOL,
    WarehouseResource,
    daily_partitions,
    partition_days,
    preview,
    single_run,
)
from dagster_project.defs.features.assets import USER_FEATURES
from dagster_project.defs.models import ModelFitConfig, record_model_version, version_metadata
from dagster_project.defs.segmentation.assets import features_as_of
from dagster_project.lib import settings
from dagster_project.lib.registry import ModelStore, spec_hash
from dagster_project.lib.warehouse import replace_snapshot

CUSTOMER_VALUE = dg.AssetKey(["models", "customer_value"])
USER_VALUE = dg.AssetKey(["marts", "user_value_daily"])
VALUE_SPEC = settings.MODEL_SPECS_DIR / "value.yml"
MODEL_NAME = "customer_value"


@dg.asset(
    key=CUSTOMER_VALUE,
    deps=[USER_FEATURES],
    partitions_def=daily_partitions,
    backfill_policy=single_run,
    group_name="value",
    kinds={"scipy", "polars"},
    pool=WAREHOUSE_POOL,
    description=(
        "BG/NBD (purchase frequency, P(alive)) and Gamma-Gamma (spend) fitted on user_features "
        "(spec models/value.yml). A new version is fitted when none was trained on data up to "
        "this day, or when `refit` is set (weekly schedule)."
    ),
)
def customer_value(
    context: dg.AssetExecutionContext, config: ModelFitConfig, warehouse: WarehouseResource
):
    from dagster_project.lib.value import fit_value_models, load_value_spec

    spec = load_value_spec(VALUE_SPEC)
    store = ModelStore(warehouse.paths.model_store)
    digest = spec_hash(VALUE_SPEC)
    with warehouse.connect() as con:
        for day in partition_days(context):
            features = features_as_of(con, day)

            def fit(features: pl.DataFrame = features) -> tuple[object, dict]:
                models = fit_value_models(features, spec)
                return models, models.summary()

            version, fitted_now = store.resolve(MODEL_NAME, day, digest, config.refit, fit)
            record_model_version(con, version)
    return dg.MaterializeResult(metadata=version_metadata(version, fitted_now))


def _version_for(store: ModelStore, day: date):
    version = store.latest_as_of(MODEL_NAME, day, spec_hash(VALUE_SPEC))
    if version is None:
        raise dg.Failure(
            f"no {MODEL_NAME} model trained on data up to {day}: materialise "
            f"{CUSTOMER_VALUE.to_user_string()} for this partition first"
        )
    return version


@dg.asset(
    key=USER_VALUE,
    deps=[USER_FEATURES, CUSTOMER_VALUE],
    partitions_def=daily_partitions,
    backfill_policy=single_run,
    group_name="value",
    kinds={"polars", "duckdb"},
    pool=WAREHOUSE_POOL,
    description=(
        "One row per user per snapshot date: P(alive), expected orders in 90 days, expected "
        "order value, discounted 12-month CLV, churn risk and band, and the ARPU / churn-rate "
        "LTV baseline, with the model version that made the row."
    ),
)
def user_value_daily(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    from dagster_project.lib.value import load_value_spec, score_value

    spec = load_value_spec(VALUE_SPEC)
    store = ModelStore(warehouse.paths.model_store)
    rows = 0
    with warehouse.connect() as con:
        for day in partition_days(context):
            features = features_as_of(con, day)
            version = _version_for(store, day)
            scored = score_value(features, store.load(version), spec).with_columns(
                pl.lit(day, dtype=pl.Date).alias("snapshot_date"),
                pl.lit(version.version).alias("model_version"),
                pl.lit(context.run.run_id).alias("run_id"),
            )
            scored = scored.select(
                "user_id", "snapshot_date", pl.exclude("user_id", "snapshot_date")
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
