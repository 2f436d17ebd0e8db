import dagster as dg

from dagster_project.defs.common import WarehouseResource, covers_every_user_check, partition_days
from dagster_project.defs.value.assets import (
    USER_VALUE,
    VALUE_BACKTESTS,
    VALUE_MODEL,
    latest_backtest_on_or_before,
)
from dagster_project.lib.model_store.store import ModelStore

user_value_covers_every_user = covers_every_user_check(USER_VALUE, "user_value_covers_every_user")


@dg.asset_check(asset=USER_VALUE, blocking=True)
def user_value_probabilities_within_unit_interval(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
) -> dg.AssetCheckResult:
    """p_alive and churn_risk lie in [0, 1]; expected orders and CLV are finite and >= 0."""
    days = [d.isoformat() for d in partition_days(context)]
    with warehouse.connect() as con:
        rows = con.execute(
            f"""
            select
                count(*) filter (where p_alive < 0 or p_alive > 1 or isnan(p_alive)),
                count(*) filter (where churn_risk < 0 or churn_risk > 1 or isnan(churn_risk)),
                count(*) filter (where expected_orders_90d < 0 or isinf(expected_orders_90d)),
                count(*) filter (where clv_12m < 0 or isinf(clv_12m) or isnan(clv_12m)),
                min(p_alive), max(p_alive)
            from marts.user_value_daily
            where snapshot_date in ({", ".join(f"'{d}'" for d in days)})
            """
        ).fetchall()[0]
    bad_p_alive, bad_churn, bad_orders, bad_clv, low, high = rows
    return dg.AssetCheckResult(
        passed=not (bad_p_alive or bad_churn or bad_orders or bad_clv),
        metadata={
            "p_alive_out_of_range": bad_p_alive,
            "churn_risk_out_of_range": bad_churn,
            "expected_orders_invalid": bad_orders,
            "clv_invalid": bad_clv,
            "p_alive_min": float(low) if low is not None else None,
            "p_alive_max": float(high) if high is not None else None,
        },
    )


@dg.asset_check(asset=VALUE_BACKTESTS, blocking=False)
def value_backtests_metrics_are_valid(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
) -> dg.AssetCheckResult:
    """The backtest in force for the run's last day (the newest stored on or before it: the
    run's own, or an earlier one within the cadence) exists; AUCs and rates lie in [0, 1];
    errors and totals are >= 0."""
    day = partition_days(context)[-1]
    with warehouse.connect() as con:
        latest = latest_backtest_on_or_before(con, day)
        rows = con.execute(
            """
            select
                count(distinct backtest_id),
                count(*) filter (where metric in ('auc', 'predicted_rate', 'actual_rate',
                    'churn_rate') and (value < 0 or value > 1 or isnan(value))),
                count(*) filter (where metric in ('mae', 'rmse', 'predicted_total',
                    'actual_total', 'predicted_mean', 'actual_mean')
                    and (value < 0 or isnan(value) or isinf(value))),
                max(value) filter (where section = 'accuracy' and model = 'chosen'
                    and metric = 'mae' and segment_scheme = 'all')
            from marts.value_backtests
            where snapshot_date = ?
            """,
            [latest],
        ).fetchall()[0]
    backtests, bad_probabilities, bad_errors, mae = rows
    return dg.AssetCheckResult(
        passed=bool(backtests) and not bad_probabilities and not bad_errors,
        metadata={
            "backtest_snapshot_date": str(latest),
            "backtests": backtests,
            "probabilities_out_of_range": bad_probabilities,
            "invalid_errors_or_totals": bad_errors,
            "mae_chosen": float(mae) if mae is not None else None,
        },
    )


@dg.asset_check(asset=VALUE_MODEL.asset_key, blocking=False)
def value_model_fits_are_not_degenerate(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
) -> dg.AssetCheckResult:
    """No fit of the version that scores the partition is degenerate (a parameter at a bound or
    running off, a flat likelihood, BG/NBD below the NBD). A degenerate fit is never used (the
    scores fall back, see the version's notes), so this warns and names the parameter."""
    store = ModelStore(warehouse.paths.model_store)
    degenerate: dict[str, list[str]] = {}
    diagnostics: dict[str, dict] = {}
    for day in partition_days(context):
        version = VALUE_MODEL.version_for(store, day)
        diagnostics = version.metrics.get("diagnostics") or {}
        for model, found in diagnostics.items():
            if found.get("degenerate"):
                degenerate[f"{day} {model} (version {version.version})"] = found["problems"]
    return dg.AssetCheckResult(
        passed=not degenerate,
        severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(f"{k}: {', '.join(v)}" for k, v in degenerate.items()) or None,
        metadata={
            "degenerate_fits": dg.MetadataValue.json(degenerate),
            "diagnostics": dg.MetadataValue.json(diagnostics),
        },
    )
