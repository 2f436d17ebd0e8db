"""Customer value: BG/NBD / Pareto/NBD + Gamma-Gamma + churn model; one value row per user per
snapshot date, and backtests of the same procedure against what customers then did."""

from datetime import date, timedelta
from typing import Any

import dagster as dg
import duckdb
import polars as pl

from dagster_project.defs.common import (
    DAILY_WAREHOUSE_ASSET,
    WarehouseResource,
    partition_days,
    preview,
)
from dagster_project.defs.features.assets import USER_FEATURES
from dagster_project.defs.models import FeatureHistory, VersionedModel, features_as_of
from dagster_project.lib.core import settings
from dagster_project.lib.core.warehouse import (
    replace_rows,
    replace_snapshot,
    scalar,
    table_exists,
)
from dagster_project.lib.model_store.store import ModelStore, spec_hash

USER_VALUE = dg.AssetKey(["marts", "user_value_daily"])
VALUE_BACKTESTS = dg.AssetKey(["marts", "value_backtests"])
USER_SEGMENTS = dg.AssetKey(["marts", "user_segments_daily"])
FCT_ORDERS = dg.AssetKey(["marts", "fct_orders"])
VALUE_SPEC = settings.MODEL_SPECS_DIR / "value.yml"
SEGMENTATION_SPEC = settings.MODEL_SPECS_DIR / "segmentation.yml"
VALUE_MODEL = VersionedModel("customer_value", VALUE_SPEC)


def fit_value(features: pl.DataFrame, history: FeatureHistory) -> tuple[Any, dict[str, Any]]:
    """Fit on the snapshot; choose forecast and churn models on (D - W, D] (W = churn window)."""
    from dagster_project.lib.value.spec import load_value_spec
    from dagster_project.lib.value.training import fit_value_models

    spec = load_value_spec(VALUE_SPEC)
    models = fit_value_models(features, spec, history(spec.churn_window_days))
    return models, models.summary()


customer_value = VALUE_MODEL.build_asset(
    fit_value,
    group_name="value",
    kinds={"scipy", "scikitlearn", "polars"},
    description=(
        "BG/NBD and Pareto/NBD (purchase frequency, P(alive)), Gamma-Gamma (spend) and a "
        "gradient-boosting churn classifier fitted on user_features (spec models/value.yml). "
        "The forecast model per calibration-frequency group (by MAE) and the churn model (by "
        "AUC) are chosen on the internal holdout (D - churn window, D]. Config `refit: true` "
        "fits a new version."
    ),
    with_history=True,
)


@dg.asset(
    key=USER_VALUE,
    deps=[USER_FEATURES, VALUE_MODEL.asset_key],
    group_name="value",
    kinds={"polars", "duckdb"},
    description=(
        "One row per user per snapshot date: P(alive), expected orders in 90 days, expected "
        "order value, discounted 12-month CLV, churn risk and band, and the ARPU / churn-rate "
        "LTV baseline, with the model version and the models (forecast_model, churn_model, "
        "spend_model) that made the row."
    ),
    **DAILY_WAREHOUSE_ASSET,
)
def user_value_daily(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    from dagster_project.lib.value.score import score_value
    from dagster_project.lib.value.spec import load_value_spec

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
    models = (
        scored.filter("is_customer")
        .group_by("forecast_model", "churn_model", "spend_model")
        .len()
        .sort("len", descending=True)
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "model_version": version.version,
            "total_clv_12m": float(scored["clv_12m"].fill_null(0).sum()),
            "churn_risk_bands": preview(bands),
            "models_used": preview(models),
        }
    )


class BacktestConfig(dg.Config):
    cut_date: str | None = None
    """End of the calibration period (YYYY-MM-DD). Default: the snapshot date minus
    holdout_days, so the holdout ends on the snapshot date. Must leave cut + holdout_days on or
    before the snapshot date (a backtest never reads data after its partition)."""
    holdout_days: int = 90
    """Length of the holdout (C, C + holdout_days] in days."""
    tracking_weeks_before_cut: int = 13
    """Weeks of calibration period shown in the tracking chart before the cut."""
    every_day: bool = False
    """In a multi-day run (backfill), backtest every day; by default only the last one (each
    backtest refits every model, which is too costly to repeat for every day of a backfill)."""
    cadence_days: int = 7
    """Backtest a day only when no backtest of the current value spec is stored for the
    cadence_days up to and including it (weekly by default: the result moves little from one
    day to the next, and at a million users one backtest costs as much as scoring). 1: every
    day; ignored with cut_date or every_day, which always backtest."""


def _segments_as_of(
    con: duckdb.DuckDBPyConnection, cut: date, calibration: pl.DataFrame, notes: list[str]
) -> pl.DataFrame | None:
    """Value tier per user as of the cut: the stored snapshot, else the rule scheme applied to
    the cut-date features (same rules as user_segments_daily); None if neither works."""
    if table_exists(con, "marts", "user_segments_daily"):
        stored = con.sql(
            "select user_id, value_tier as segment from marts.user_segments_daily "
            "where snapshot_date = $cut",
            params={"cut": cut},
        ).pl()
        if stored.height:
            return stored
    try:
        from dagster_project.lib.segmentation.rules.assign import assign_rule_segments
        from dagster_project.lib.segmentation.spec_loader import load_segmentation_spec

        spec = load_segmentation_spec(SEGMENTATION_SPEC)
        tiers = assign_rule_segments(calibration, spec)
        return tiers.select("user_id", pl.col("value_tier").alias("segment"))
    except Exception as exc:  # a breakdown, not a reason to fail the backtest
        notes.append(f"no value tiers as of {cut}: per-segment rows skipped ({exc})")
        return None


def value_spec_id() -> str:
    """The value spec's name, version and content hash, as stored with each backtest."""
    from dagster_project.lib.value.spec import load_value_spec

    spec = load_value_spec(VALUE_SPEC)
    return f"{spec.name}-v{spec.version}-{spec_hash(VALUE_SPEC)}"


def latest_backtest_on_or_before(con: duckdb.DuckDBPyConnection, day: date) -> date | None:
    """The snapshot date of the newest backtest of the current value spec stored up to `day`
    (None: none stored)."""
    if not table_exists(con, "marts", "value_backtests"):
        return None
    return scalar(
        con,
        "select max(snapshot_date) from marts.value_backtests "
        "where snapshot_date <= ? and value_spec = ?",
        [day, value_spec_id()],
    )


@dg.asset(
    key=VALUE_BACKTESTS,
    deps=[USER_FEATURES, USER_SEGMENTS, FCT_ORDERS],
    group_name="value",
    kinds={"polars", "duckdb", "scikitlearn"},
    description=(
        "Backtests of the value models (grain: snapshot_date, backtest_id, segment_scheme, "
        "segment, section, model, bucket, metric). For a cut date C (default snapshot - "
        "holdout_days) the models are fitted and chosen as the daily run would have on C, "
        "then compared with (C, C + holdout_days]: repeat purchases predicted vs actual in "
        "total and by calibration frequency 0..7+, per-customer MAE / RMSE, churn AUC and "
        "calibration by decile for every churn model, the same per value tier, and the weekly "
        "tracking chart."
    ),
    **DAILY_WAREHOUSE_ASSET,
)
def value_backtests(
    context: dg.AssetExecutionContext, config: BacktestConfig, warehouse: WarehouseResource
):
    from dagster_project.lib.features.user_features import compute_user_features
    from dagster_project.lib.reporting.charts import calibration_chart, markdown_image
    from dagster_project.lib.value.backtest import (
        backtest_due,
        run_backtest,
        tracking_inputs,
        tracking_markdown,
    )
    from dagster_project.lib.value.spec import json_safe, load_value_spec

    if config.holdout_days < 1:
        raise dg.Failure("holdout_days must be >= 1")
    spec = load_value_spec(VALUE_SPEC)
    window = spec.churn_window_days
    days = partition_days(context)
    rows = 0
    metadata: dict[str, Any] = {}
    with warehouse.connect() as con:
        for day in days if config.every_day else days[-1:]:
            if not (config.cut_date or config.every_day):
                latest = latest_backtest_on_or_before(con, day)
                if not backtest_due(latest, day, config.cadence_days):
                    context.log.info(
                        f"value backtest skipped for {day}: the one of {latest} is within "
                        f"cadence_days={config.cadence_days}"
                    )
                    metadata = {"skipped": True, "latest_backtest": str(latest)}
                    continue
            cut = (
                date.fromisoformat(config.cut_date)
                if config.cut_date
                else day - timedelta(days=config.holdout_days)
            )
            end = cut + timedelta(days=config.holdout_days)
            if end > day:
                raise dg.Failure(
                    f"cut {cut} + {config.holdout_days} days ends after the snapshot {day}: "
                    "a backtest only reads data up to its partition"
                )
            snapshots = {
                d: compute_user_features(con, d)
                for d in {cut - timedelta(days=window), cut, end, cut + timedelta(days=window)}
                if d <= day
            }
            notes: list[str] = []
            segments = _segments_as_of(con, cut, snapshots[cut], notes)
            start = cut - timedelta(weeks=config.tracking_weeks_before_cut)
            first_days, weekly = tracking_inputs(con, cut, start, end)
            result = run_backtest(
                snapshots[cut],
                snapshots[end],
                spec,
                config.holdout_days,
                history=snapshots[cut - timedelta(days=window)],
                churn_end=snapshots.get(cut + timedelta(days=window)),
                segments=segments,
                tracking=(first_days, weekly, start, cut, end),
                notes=notes,
            )
            backtest_id = f"{day.isoformat()}/{cut.isoformat()}/{config.holdout_days}d"
            frame = result.rows.select(
                pl.lit(day, dtype=pl.Date).alias("snapshot_date"),
                pl.lit(backtest_id).alias("backtest_id"),
                pl.lit(cut, dtype=pl.Date).alias("cut_date"),
                pl.lit(end, dtype=pl.Date).alias("holdout_end"),
                pl.lit(config.holdout_days, dtype=pl.Int32).alias("holdout_days"),
                *result.rows.columns,
                pl.lit(value_spec_id()).alias("value_spec"),
                pl.lit(context.run.run_id).alias("run_id"),
            )
            rows += replace_rows(
                con,
                "marts.value_backtests",
                frame,
                {"snapshot_date": day, "backtest_id": backtest_id},
            )
            headline = {
                k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.headline.items()
            }
            metadata = {
                "backtest_id": backtest_id,
                "headline": dg.MetadataValue.json(json_safe(headline)),
                "notes": dg.MetadataValue.json(result.notes),
            }
            calibration = calibration_chart(frame)
            if calibration is not None:
                metadata["calibration_chart"] = dg.MetadataValue.md(
                    markdown_image(
                        calibration,
                        "value calibration",
                        f"Backtest {backtest_id}: predicted vs observed churn by score decile, "
                        "and purchases by frequency group.",
                    )
                )
            if result.tracking.height:
                metadata["tracking_chart"] = dg.MetadataValue.md(
                    "Cumulative repeat purchases since "
                    f"{start}, actual vs predicted (bgnbd / pareto_nbd: unconditional, "
                    f"classic chart; chosen: conditional forecast from the cut {cut}).\n\n"
                    + tracking_markdown(result.tracking)
                )
    return dg.MaterializeResult(metadata={"dagster/row_count": rows, **metadata})
