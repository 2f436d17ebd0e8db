"""Per-user scoring for marts.user_value_daily (P(alive), CLV, churn risk and its band) and the
simple-LTV baseline."""

from __future__ import annotations

import numpy as np
import polars as pl

from dagster_project.lib.value.clv import (
    PurchaseModel,
    discounted_expected_purchases,
)
from dagster_project.lib.value.fit import ValueModels, check_columns, purchase_predictions
from dagster_project.lib.value.metrics import (
    T_COL,
    TX_COL,
    X_COL,
    frequency_group,
    frequency_groups,
    valid_customers,
)
from dagster_project.lib.value.spec import (
    CHURN_CLASSIFIER,
    REQUIRED_COLUMNS,
    SIMPLE_LTV_COLUMNS,
    ValueSpec,
    log,
)


def _model_scores(
    customers: pl.DataFrame, model: PurchaseModel, spec: ValueSpec, unit: float
) -> pl.DataFrame:
    """One purchase model's outputs per distinct triple (all depend on the triple only)."""
    base = purchase_predictions(customers, model, spec.churn_window_days, unit)
    triples = base.select(X_COL, TX_COL, T_COL)
    x = triples[X_COL].to_numpy().astype(np.float64)
    tx = triples[TX_COL].to_numpy().astype(np.float64) / unit
    T = triples[T_COL].to_numpy().astype(np.float64) / unit
    return base.select(
        X_COL,
        TX_COL,
        T_COL,
        "p_alive",
        pl.col("p_no_purchase").alias("churn_risk"),
        pl.Series(
            "_expected_orders",
            model.conditional_expected_number_of_purchases_up_to_time(
                spec.expected_orders_days / unit, x, tx, T
            ),
        ),
        pl.Series(
            "_discounted_purchases",
            discounted_expected_purchases(
                model,
                x,
                tx,
                T,
                months=spec.clv_months,
                discount_rate_monthly=spec.discount_rate_monthly,
                days_per_month=spec.days_per_month,
                time_unit_days=unit,
            ),
        ),
    ).with_columns(
        # a prediction that is not a finite number is no prediction: NULL, never NaN
        pl.col("_expected_orders", "_discounted_purchases").fill_nan(None).cast(pl.Float64)
    )


def _order_values(
    customers: pl.DataFrame, models: ValueModels, spec: ValueSpec
) -> tuple[pl.Series | None, str | None]:
    """Expected value per future order and the spend model id: GG conditional mean, else the
    spec's fallback."""
    count_col, value_col = spec.gg_count_column, spec.gg_value_column
    gg = models.gamma_gamma
    if gg is not None:
        n = customers[count_col].cast(pl.Float64).fill_null(0.0).to_numpy()
        m = customers[value_col].cast(pl.Float64).fill_null(0.0).fill_nan(0.0).to_numpy()
        usable = (n > 0) & (m > 0) & np.isfinite(m)
        values = gg.conditional_expected_average_profit(
            np.where(usable, n, 0.0), np.where(usable, m, 0.0)
        )
        return pl.Series("expected_order_value", values).fill_nan(None), "gamma_gamma"
    pop = models.population_order_value
    if spec.fallback_order_value == "own_aov":
        own = customers[value_col].cast(pl.Float64).fill_nan(None)
        return own.fill_null(pop).alias("expected_order_value"), "own_aov"
    series = pl.Series("expected_order_value", [pop] * customers.height, dtype=pl.Float64)
    return series, ("population_mean" if pop is not None else None)


MODEL_COLUMNS = ("p_alive", "_expected_orders", "churn_risk", "_discounted_purchases")


def _forecast_columns(valid: pl.DataFrame, models: ValueModels, spec: ValueSpec) -> pl.DataFrame:
    """Per valid customer (by ``_row``): the forecast model's outputs and its id."""
    unit = models.time_unit_days
    keyed = valid.select("_row", X_COL, TX_COL, T_COL).with_columns(
        frequency_group(pl.col(X_COL))
        .replace_strict(
            {g: models.forecast_model_for(g) for g in frequency_groups()},
            default=models.default_forecast,
            return_dtype=pl.String,
        )
        .alias("forecast_model")
    )
    parts = []
    for key in sorted(set(keyed["forecast_model"].unique().to_list())):
        model = models.purchase_model(key)
        rows = keyed.filter(pl.col("forecast_model") == key)
        if model is None:  # a chosen model that is missing: its rows stay unscored
            parts.append(
                rows.select(
                    "_row", pl.lit(None, dtype=pl.String).alias("forecast_model")
                ).with_columns(pl.lit(None, dtype=pl.Float64).alias(c) for c in MODEL_COLUMNS)
            )
            continue
        per_triple = _model_scores(rows, model, spec, unit)
        parts.append(
            rows.join(per_triple, on=[X_COL, TX_COL, T_COL], how="left").select(
                "_row", "forecast_model", *MODEL_COLUMNS
            )
        )
    return pl.concat(parts) if parts else keyed.select("_row", "forecast_model").clear()


def _null_model_columns(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(
        pl.lit(None, dtype=pl.Float64).alias(c) for c in MODEL_COLUMNS
    ).with_columns(pl.lit(None, dtype=pl.String).alias("forecast_model"))


def score_value(features: pl.DataFrame, models: ValueModels, spec: ValueSpec) -> pl.DataFrame:
    """One row per input user: P(alive), expected orders, expected order value, CLV, churn risk,
    and the ids of the models that produced them.

    forecast_model (bgnbd / pareto_nbd) gives p_alive, expected orders and the purchase part of
    CLV; churn_model is 'gbm' (the classifier) or the forecast model's id (probabilistic
    P(no purchase in the churn window)); spend_model is gamma_gamma or the spec's fallback.
    Non-customers: NULL p_alive / expected orders / churn risk / expected order value / model
    ids, clv 0.0 (nothing modelled to gain yet), band no_purchase. Customers without a fitted
    purchase model: NULL model outputs and band unscored. Never raises on small or degenerate
    snapshots.
    """
    check_columns(features, (*REQUIRED_COLUMNS, spec.gg_count_column, spec.gg_value_column))
    frame = features.with_row_index("_row")
    valid = valid_customers(frame)
    scored, spend_model = _spend_scores(valid, models, spec)
    forecast: pl.DataFrame | None = None
    if models.bgnbd is not None and valid.height:
        try:
            forecast = _forecast_columns(valid, models, spec)
        except (ValueError, FloatingPointError, ArithmeticError) as exc:
            log.warning("purchase-model scoring failed, model outputs left NULL: %s", exc)
    if forecast is not None:
        scored = scored.join(forecast, on="_row", how="left")
    else:
        scored = _null_model_columns(scored)
    scored = scored.with_columns(
        pl.when(pl.col("churn_risk").is_not_null())
        .then(pl.col("forecast_model"))
        .otherwise(None)
        .alias("churn_model")
    )
    if models.scoring_classifier is not None and forecast is not None and valid.height:
        scored = _classifier_churn(scored, valid, models)
    return _bands_and_baseline(frame, _value_columns(scored, spend_model, spec), features, spec)


def _spend_scores(
    valid: pl.DataFrame, models: ValueModels, spec: ValueSpec
) -> tuple[pl.DataFrame, str | None]:
    """``_row`` and ``expected_order_value`` of every valid customer, and the spend model used
    (NULL values and no model when the spend model fails)."""
    order_values: pl.Series | None
    spend_model: str | None
    try:
        order_values, spend_model = _order_values(valid, models, spec)
    except (ValueError, FloatingPointError, ArithmeticError) as exc:
        log.warning("expected order value failed, left NULL: %s", exc)
        order_values, spend_model = None, None
    if order_values is None:
        order_values = pl.Series("expected_order_value", [None] * valid.height, dtype=pl.Float64)
    # positional: order_values is aligned with `valid`, so attach it before any join
    scored = valid.select("_row").with_columns(
        order_values.cast(pl.Float64).alias("expected_order_value")
    )
    return scored, spend_model


def _classifier_churn(
    scored: pl.DataFrame, valid: pl.DataFrame, models: ValueModels
) -> pl.DataFrame:
    """The churn classifier's risk for users a purchase model scored; the probabilistic risk
    stays when the classifier fails."""
    try:
        risk = models.scoring_classifier.predict_churn(valid)
    except (ValueError, RuntimeError, ArithmeticError) as exc:
        log.warning("churn classifier failed, probabilistic churn risk kept: %s", exc)
        return scored
    # positional again: predictions follow `valid`'s rows
    gbm = valid.select("_row").with_columns(pl.Series("_gbm_risk", risk))
    scored_by_a_model = pl.col("forecast_model").is_not_null()
    return (
        scored.join(gbm, on="_row", how="left")
        .with_columns(
            pl.when(scored_by_a_model)
            .then(pl.col("_gbm_risk"))
            .otherwise(pl.col("churn_risk"))
            .alias("churn_risk"),
            pl.when(scored_by_a_model)
            .then(pl.lit(CHURN_CLASSIFIER))
            .otherwise(pl.col("churn_model"))
            .alias("churn_model"),
        )
        .drop("_gbm_risk")
    )


def _value_columns(scored: pl.DataFrame, spend_model: str | None, spec: ValueSpec) -> pl.DataFrame:
    """The model outputs under their published names, CLV = discounted purchases x spend."""
    return scored.select(
        "_row",
        "p_alive",
        pl.col("_expected_orders").alias(spec.expected_orders_column),
        "expected_order_value",
        (pl.col("_discounted_purchases") * pl.col("expected_order_value")).alias(spec.clv_column),
        "churn_risk",
        "forecast_model",
        "churn_model",
        pl.when(pl.col("expected_order_value").is_not_null())
        .then(pl.lit(spend_model, dtype=pl.String))
        .otherwise(None)
        .alias("spend_model"),
    )


def _bands_and_baseline(
    frame: pl.DataFrame, scored: pl.DataFrame, features: pl.DataFrame, spec: ValueSpec
) -> pl.DataFrame:
    """Every input user in input order: CLV 0 for non-customers, the churn risk band and its
    label, and the population's simple LTV baseline."""
    try:
        baseline = simple_ltv(features, spec)["simple_ltv"]
    except ValueError as exc:  # e.g. a feature frame without the 30-day columns
        log.warning("simple LTV baseline left NULL: %s", exc)
        baseline = None
    is_customer = pl.col("is_customer").fill_null(False)
    # a non-customer's CLV is 0 (nothing modelled to gain yet), unless no spend is known at
    # all (a source without money): then it is as unknown as everyone else's
    money_known = features.height == 0 or features["monetary"].is_not_null().any()
    out = (
        frame.select("_row", "user_id", is_customer.alias("is_customer"))
        .join(scored, on="_row", how="left")
        .sort("_row")
        .with_columns(
            pl.when(is_customer)
            .then(pl.col(spec.clv_column))
            .otherwise(pl.lit(0.0 if money_known else None, dtype=pl.Float64))
            .alias(spec.clv_column),
            pl.when(~is_customer)
            .then(pl.lit("no_purchase"))
            .when(pl.col("churn_risk").is_null())
            .then(pl.lit("unscored"))
            .when(pl.col("churn_risk") >= spec.band_high)
            .then(pl.lit("high"))
            .when(pl.col("churn_risk") >= spec.band_medium)
            .then(pl.lit("medium"))
            .otherwise(pl.lit("low"))
            .alias("churn_risk_band"),
            pl.lit(baseline, dtype=pl.Float64).alias("simple_ltv"),
        )
        .with_columns(
            pl.col("churn_risk_band")
            .replace_strict(spec.label_map, return_dtype=pl.String)
            .alias("churn_risk_band_label")
        )
    )
    return out.select(spec.output_columns)


def simple_ltv(features: pl.DataFrame, spec: ValueSpec) -> dict[str, float | None]:
    """Baseline LTV = ARPU per 30 days / monthly churn rate, one number per snapshot.

    ARPU: revenue_30d averaged over customers who purchased in (D-30, D]. Monthly churn: among
    customers who purchased in (D-60, D-30], the share with no purchase in (D-30, D]; floored
    by the spec so a quiet month cannot divide by zero. None where undefined (no active or no
    base customers, or an active customer's revenue unknown: a source without money).
    """
    check_columns(features, SIMPLE_LTV_COLUMNS)
    customers = features.filter(pl.col("is_customer").fill_null(False))
    orders_prev_30d = pl.col("orders_30d") - pl.col("orders_trend_30d")
    stats = customers.select(
        active=(pl.col("orders_30d") > 0).sum(),
        active_revenue=pl.col("revenue_30d").filter(pl.col("orders_30d") > 0).sum(),
        unpriced=(pl.col("revenue_30d").is_null() & (pl.col("orders_30d") > 0)).sum(),
        base=(orders_prev_30d > 0).sum(),
        churned=((orders_prev_30d > 0) & (pl.col("orders_30d") == 0)).sum(),
    ).row(0, named=True)
    active, base, churned = (int(stats[k] or 0) for k in ("active", "base", "churned"))
    known = not stats["unpriced"]
    arpu = float(stats["active_revenue"] or 0.0) / active if active and known else None
    churn = churned / base if base else None
    churn_used = max(churn, spec.simple_ltv_churn_floor) if churn is not None else None
    ltv = arpu / churn_used if arpu is not None and churn_used is not None else None
    return {
        "arpu_30d": arpu,
        "active_customers": float(active),
        "churn_base_customers": float(base),
        "churned_customers": float(churned),
        "monthly_churn_rate": churn,
        "churn_rate_used": churn_used,
        "simple_ltv": ltv,
    }
