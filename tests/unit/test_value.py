"""Value scoring on hand-made feature frames: spec, fit, per-user outputs, degradation, baseline."""

from __future__ import annotations

import dataclasses
import math
import pickle
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from dagster_project.lib.value.clv import BetaGeoModel, discounted_expected_purchases
from dagster_project.lib.value.fit import ValueModels
from dagster_project.lib.value.score import score_value, simple_ltv
from dagster_project.lib.value.spec import DEFAULT_VALUE_SPEC_PATH, ValueSpec, load_value_spec
from dagster_project.lib.value.training import fit_value_models

TRUE_PARAMS = {"r": 0.5, "alpha": 30.0, "a": 0.8, "b": 3.0}


def synthetic_features(n: int, seed: int = 0, customer_share: float = 0.7) -> pl.DataFrame:
    """Feature rows (a subset of features.user_features) from a BG/NBD process in whole days.

    Loops over purchase *rounds*, vectorised over users. Order values are Gamma(6, scale nu)
    with nu varying by user, so Gamma-Gamma's assumptions hold.
    """
    rng = np.random.default_rng(seed)
    r, alpha, a, b = TRUE_PARAMS.values()
    lam, drop = rng.gamma(r, 1 / alpha, n), rng.beta(a, b, n)
    customer = rng.random(n) < customer_share
    age = np.where(customer, rng.integers(0, 400, n), 0)
    clock, last = np.zeros(n), np.zeros(n)
    repeats = np.zeros(n, dtype=np.int64)
    alive = customer.copy()
    while alive.any():
        nxt = clock + rng.exponential(1 / lam)
        buys = alive & (nxt <= age)
        repeats[buys] += 1
        last[buys], clock = nxt[buys], np.where(buys, nxt, clock)
        alive = buys & (rng.random(n) >= drop)
    span = np.floor(last).astype(np.int64)
    orders = np.where(customer, repeats + 1, 0)
    scale = rng.gamma(4.0, 2.0, n)
    totals = np.array(
        [rng.gamma(6.0, s, k).sum() if k else 0.0 for s, k in zip(scale, orders, strict=True)]
    )
    recency = age - span
    orders_30d = np.where(customer & (recency < 30), 1, 0)
    orders_prev_30d = np.where(customer & (rng.random(n) < 0.3), 1, 0)
    null_unless_customer = ~pl.Series(customer)
    return pl.DataFrame(
        {
            "user_id": [f"u{i:06d}" for i in range(n)],
            "is_customer": customer,
            "recency_days": pl.Series(recency).set(null_unless_customer, None),
            "frequency": orders,
            "monetary": totals,
            "avg_order_value": pl.Series(totals / np.maximum(orders, 1)).set(
                null_unless_customer, None
            ),
            "repeat_purchases": np.where(customer, repeats, 0),
            "purchase_span_days": np.where(customer, span, 0),
            "customer_age_days": pl.Series(age).set(null_unless_customer, None),
            "orders_30d": orders_30d,
            "orders_trend_30d": orders_30d - orders_prev_30d,
            "revenue_30d": np.where(orders_30d > 0, totals / np.maximum(orders, 1), 0.0),
        },
        schema_overrides={
            "frequency": pl.Int32,
            "repeat_purchases": pl.Int32,
            "purchase_span_days": pl.Int32,
            "customer_age_days": pl.Int32,
            "recency_days": pl.Int32,
            "orders_30d": pl.Int32,
            "orders_trend_30d": pl.Int32,
        },
    )


@pytest.fixture(scope="module")
def spec() -> ValueSpec:
    return load_value_spec(DEFAULT_VALUE_SPEC_PATH)


@pytest.fixture(scope="module")
def features() -> pl.DataFrame:
    return synthetic_features(6000)


@pytest.fixture(scope="module")
def models(features: pl.DataFrame, spec: ValueSpec) -> ValueModels:
    return fit_value_models(features, spec)


@pytest.fixture(scope="module")
def scored(features: pl.DataFrame, models: ValueModels, spec: ValueSpec) -> pl.DataFrame:
    return score_value(features, models, spec)


# ---- spec ----------------------------------------------------------------------------------------


def test_committed_spec_matches_documented_defaults(spec: ValueSpec) -> None:
    assert spec == ValueSpec()
    assert spec.expected_orders_column == "expected_orders_90d"
    assert spec.clv_column == "clv_12m"


def test_spec_rejects_typos_and_inconsistent_values(tmp_path: Path) -> None:
    text = DEFAULT_VALUE_SPEC_PATH.read_text(encoding="utf-8")
    bad = tmp_path / "value.yml"
    bad.write_text(text.replace("churn_window_days:", "churn_window_dayz:"), encoding="utf-8")
    typo = r"^horizons\.churn_window_dayz: unknown key \(allowed: .*churn_window_days"
    with pytest.raises(ValueError, match=typo):
        load_value_spec(bad)
    bad.write_text(text.replace("high: 0.7", "high: 0.3"), encoding="utf-8")
    with pytest.raises(ValueError, match=r"medium < churn_risk_bands\.high"):
        load_value_spec(bad)
    bad.write_text(text.replace("min_customers: 20", "min_customers: 2.5"), encoding="utf-8")
    with pytest.raises(ValueError, match=r"min_customers: .*integer"):
        load_value_spec(bad)
    with pytest.raises(ValueError, match="fallback_order_value"):
        ValueSpec(fallback_order_value="median")


def test_weekly_spec_loads(tmp_path: Path) -> None:
    text = DEFAULT_VALUE_SPEC_PATH.read_text(encoding="utf-8")
    weekly = tmp_path / "value.yml"
    weekly.write_text(text.replace("time_unit_days: 1", "time_unit_days: 7"), encoding="utf-8")
    assert load_value_spec(weekly).time_unit_days == 7.0


# ---- fitting -------------------------------------------------------------------------------------


def test_fit_recovers_the_generating_process(models: ValueModels) -> None:
    assert models.bgnbd is not None and models.gamma_gamma is not None
    for name, true in TRUE_PARAMS.items():
        assert models.bgnbd.params_[name] == pytest.approx(true, rel=0.2), name
    assert models.notes == []
    assert models.fitted_on_triples < models.fitted_on_users
    summary = models.summary()
    assert summary["bgnbd"]["converged"] and summary["spec"] == "user_value-v1"


def test_fit_on_triples_equals_fit_on_users(features: pl.DataFrame, models: ValueModels) -> None:
    customers = features.filter("is_customer")
    per_user = BetaGeoModel().fit(
        customers["repeat_purchases"],
        customers["purchase_span_days"],
        customers["customer_age_days"],
    )
    assert models.bgnbd is not None
    assert models.bgnbd.params_ == pytest.approx(per_user.params_, rel=1e-5)
    assert models.fitted_on_users == customers.height


def test_weekly_time_unit_gives_the_same_predictions(
    features: pl.DataFrame, scored: pl.DataFrame, spec: ValueSpec
) -> None:
    weekly_spec = dataclasses.replace(spec, time_unit_days=7.0)
    weekly = fit_value_models(features, weekly_spec)
    assert weekly.bgnbd is not None and weekly.time_unit_days == 7.0
    out = score_value(features, weekly, weekly_spec)
    for column in ("p_alive", "expected_orders_90d", "churn_risk", "clv_12m"):
        np.testing.assert_allclose(
            out[column].to_numpy(), scored[column].to_numpy(), rtol=1e-4, atol=1e-9
        )


def test_models_pickle(features: pl.DataFrame, models: ValueModels, spec: ValueSpec) -> None:
    payload = pickle.dumps(models)
    assert len(payload) < 5_000  # parameters only, no training data
    again = score_value(features, pickle.loads(payload), spec)
    assert again.equals(score_value(features, models, spec))


# ---- scoring -------------------------------------------------------------------------------------


def test_one_row_per_user_in_input_order(features: pl.DataFrame, scored: pl.DataFrame) -> None:
    assert scored["user_id"].to_list() == features["user_id"].to_list()
    assert scored.schema == pl.Schema(
        {
            "user_id": pl.String,
            "is_customer": pl.Boolean,
            "p_alive": pl.Float64,
            "expected_orders_90d": pl.Float64,
            "expected_order_value": pl.Float64,
            "clv_12m": pl.Float64,
            "churn_risk": pl.Float64,
            "churn_risk_band": pl.String,
            "churn_risk_band_label": pl.String,
            "simple_ltv": pl.Float64,
            "forecast_model": pl.String,
            "churn_model": pl.String,
            "spend_model": pl.String,
        }
    )


def test_customer_outputs_are_valid(scored: pl.DataFrame) -> None:
    customers = scored.filter("is_customer")
    assert customers.null_count().sum_horizontal().item() == 0
    assert customers["p_alive"].is_between(0, 1).all()
    assert customers["churn_risk"].is_between(0, 1).all()
    assert (customers["expected_orders_90d"] >= 0).all()
    assert (customers["expected_order_value"] > 0).all()
    assert (customers["clv_12m"] >= 0).all()
    assert not customers.select(pl.selectors.float().is_nan().any()).row(0).count(True)


def test_non_customers_have_null_model_outputs_and_zero_clv(scored: pl.DataFrame) -> None:
    prospects = scored.filter(~pl.col("is_customer"))
    assert prospects.height > 0
    for column in ("p_alive", "expected_orders_90d", "expected_order_value", "churn_risk"):
        assert prospects[column].is_null().all(), column
    assert (prospects["clv_12m"] == 0.0).all()
    assert set(prospects["churn_risk_band"]) == {"no_purchase"}
    assert set(prospects["churn_risk_band_label"]) == {"未购买"}


def test_churn_bands_follow_the_spec_thresholds(scored: pl.DataFrame, spec: ValueSpec) -> None:
    customers = scored.filter("is_customer")
    expected = (
        pl.when(pl.col("churn_risk") >= spec.band_high)
        .then(pl.lit("high"))
        .when(pl.col("churn_risk") >= spec.band_medium)
        .then(pl.lit("medium"))
        .otherwise(pl.lit("low"))
    )
    assert customers.select((pl.col("churn_risk_band") == expected).all()).item()
    assert set(customers["churn_risk_band"]) == {"low", "medium", "high"}
    pairs = set(scored.select("churn_risk_band", "churn_risk_band_label").unique().iter_rows())
    assert pairs <= set(spec.band_labels)


def test_clv_is_discounted_purchases_times_order_value(
    features: pl.DataFrame, scored: pl.DataFrame, models: ValueModels
) -> None:
    assert models.bgnbd is not None and models.gamma_gamma is not None
    rows = features.filter("is_customer").head(50)
    bgnbd_inputs = ("repeat_purchases", "purchase_span_days", "customer_age_days")
    x, tx, T = (rows[c].to_numpy().astype(float) for c in bgnbd_inputs)
    spend = models.gamma_gamma.conditional_expected_average_profit(
        rows["frequency"].to_numpy(), rows["avg_order_value"].to_numpy()
    )
    clv = discounted_expected_purchases(models.bgnbd, x, tx, T) * spend
    got = scored.filter(pl.col("user_id").is_in(rows["user_id"].implode()))
    np.testing.assert_allclose(got["clv_12m"].to_numpy(), clv, rtol=1e-12)
    np.testing.assert_allclose(got["expected_order_value"].to_numpy(), spend, rtol=1e-12)


def test_predictions_rank_like_the_truth(scored: pl.DataFrame, features: pl.DataFrame) -> None:
    """Sanity: recent frequent buyers are more alive and less at risk than long-silent ones."""
    joined = scored.join(
        features.select("user_id", "recency_days", "repeat_purchases"), on="user_id"
    )
    repeaters = joined.filter(pl.col("repeat_purchases") >= 2)
    recent = repeaters.filter(pl.col("recency_days") <= 14)
    silent = repeaters.filter(pl.col("recency_days") >= 180)
    assert recent["p_alive"].mean() > silent["p_alive"].mean()
    assert recent["churn_risk"].mean() < silent["churn_risk"].mean()


def test_horizon_names_the_columns(features: pl.DataFrame, spec: ValueSpec) -> None:
    other = dataclasses.replace(spec, expected_orders_days=30, clv_months=6)
    out = score_value(features.head(300), fit_value_models(features.head(300), other), other)
    assert "expected_orders_30d" in out.columns and "clv_6m" in out.columns


# ---- degradation ---------------------------------------------------------------------------------


def test_too_few_customers_still_scores_every_row(features: pl.DataFrame, spec: ValueSpec) -> None:
    small = features.head(12)
    models = fit_value_models(small, spec)
    assert models.bgnbd is None and models.gamma_gamma is None
    assert any("BG/NBD not fitted" in note for note in models.notes)
    out = score_value(small, models, spec)
    assert out.height == 12
    customers = out.filter("is_customer")
    for column in ("p_alive", "expected_orders_90d", "churn_risk", "clv_12m"):
        assert customers[column].is_null().all(), column
    assert set(customers["churn_risk_band"]) == {"unscored"}
    assert set(customers["churn_risk_band_label"]) == {"未评分"}
    # spend falls back to the snapshot's revenue per order
    pop = small.filter("is_customer").select(pl.col("monetary").sum() / pl.col("frequency").sum())
    assert customers["expected_order_value"].to_list() == pytest.approx(
        [pop.item()] * customers.height
    )


def test_too_short_a_history_is_not_scored_and_says_so(
    features: pl.DataFrame, spec: ValueSpec
) -> None:
    # plenty of customers, but all first seen within the last three weeks
    young = features.filter(
        pl.col("customer_age_days").is_null() | (pl.col("customer_age_days") < 21)
    )
    assert young.filter("is_customer").height >= 5 * spec.min_customers
    models = fit_value_models(young, spec)
    assert models.bgnbd is None and models.pareto_nbd is None
    assert any(
        "BG/NBD not fitted" in n and "days of purchase history < 30" in n for n in models.notes
    )
    out = score_value(young, models, spec).filter("is_customer")
    assert out["p_alive"].is_null().all() and set(out["churn_risk_band"]) == {"unscored"}
    guard = {q["metric"]: q for q in models.summary()["quality"] if q["source"] == "minimum_data"}
    assert guard["history_days"]["passed"] is False
    assert guard["history_days"]["value"] == 20 and guard["history_days"]["threshold"] == 30
    assert guard["customers"]["passed"] is True


def test_no_customers_and_no_rows(features: pl.DataFrame, spec: ValueSpec) -> None:
    prospects = features.filter(~pl.col("is_customer")).head(30)
    out = score_value(prospects, fit_value_models(prospects, spec), spec)
    assert out.height == 30 and set(out["churn_risk_band"]) == {"no_purchase"}
    assert out["simple_ltv"].is_null().all()
    empty = features.clear()
    out = score_value(empty, fit_value_models(empty, spec), spec)
    assert out.height == 0 and out.columns == list(spec.output_columns)


def test_gamma_gamma_fallbacks(features: pl.DataFrame, spec: ValueSpec) -> None:
    strict = dataclasses.replace(spec, min_repeat_customers=10**9)
    models = fit_value_models(features, strict)
    assert models.bgnbd is not None and models.gamma_gamma is None
    out = score_value(features, models, strict).filter("is_customer")
    assert out["expected_order_value"].n_unique() == 1
    assert out["expected_order_value"][0] == pytest.approx(models.population_order_value)
    own = dataclasses.replace(strict, fallback_order_value="own_aov")
    out = score_value(features, models, own).filter("is_customer")
    aov = features.filter("is_customer")["avg_order_value"]
    np.testing.assert_allclose(out["expected_order_value"].to_numpy(), aov.to_numpy())


def test_a_degenerate_gamma_gamma_is_not_used_and_says_which_parameter(
    features: pl.DataFrame, spec: ValueSpec
) -> None:
    """Mean spend as spread out whatever the number of orders (inverse-Gamma, independent of
    frequency): Gamma-Gamma's optimum runs off (p -> inf, gamma -> 0) while the optimiser
    reports convergence. The fit is recorded with its diagnostics and scoring uses the
    fallback."""
    rng = np.random.default_rng(11)
    spend = pl.Series(np.round(100.0 / rng.gamma(4.0, 1.0, features.height), 2))
    odd = features.with_columns(
        pl.when(pl.col("frequency") > 0)
        .then(spend)
        .otherwise(pl.col("avg_order_value"))
        .alias("avg_order_value")
    )
    models = fit_value_models(odd, spec)
    assert models.bgnbd is not None and models.gamma_gamma is None
    found = models.diagnostics["gamma_gamma"]
    assert found["degenerate"] and any(p.startswith("p = ") for p in found["problems"])
    (note,) = [n for n in models.notes if "Gamma-Gamma fit degenerate" in n]
    assert "p = " in note and "runs off to infinity" in note
    assert models.summary()["diagnostics"]["gamma_gamma"]["degenerate"] is True
    assert models.summary()["diagnostics"]["bgnbd"]["degenerate"] is False
    out = score_value(odd, models, spec).filter("is_customer")
    assert set(out["spend_model"].unique()) == {"population_mean"}
    assert out["expected_order_value"][0] == pytest.approx(models.population_order_value)


def test_bad_rows_degrade_without_raising(features: pl.DataFrame, spec: ValueSpec) -> None:
    broken = features.head(500).with_columns(
        # span longer than the customer's age is impossible: that user is left unscored
        pl.when(pl.col("user_id") == "u000000")
        .then(pl.col("customer_age_days") + 5)
        .otherwise(pl.col("purchase_span_days"))
        .alias("purchase_span_days"),
        is_customer=pl.when(pl.col("user_id") == "u000000").then(True).otherwise("is_customer"),
    )
    out = score_value(broken, fit_value_models(broken, spec), spec)
    assert out.height == 500
    assert out.filter(pl.col("user_id") == "u000000")["churn_risk_band"].item() == "unscored"


# ---- simple LTV baseline -------------------------------------------------------------------------


def _ltv_frame(
    orders_30d: list[int], prev_30d: list[int], revenue_30d: list[float]
) -> pl.DataFrame:
    n = len(orders_30d)
    return pl.DataFrame(
        {
            "user_id": [f"c{i}" for i in range(n)],
            "is_customer": [True] * n,
            "orders_30d": orders_30d,
            "orders_trend_30d": [a - b for a, b in zip(orders_30d, prev_30d, strict=True)],
            "revenue_30d": revenue_30d,
        }
    )


def test_simple_ltv_by_hand(spec: ValueSpec) -> None:
    # active in the last 30 days: c0, c1, c2 (revenue 30 + 60 + 90 -> ARPU 60)
    # bought in (D-60, D-30]: c1, c2, c3, c4; of those c3, c4 did not buy since -> churn 0.5
    frame = _ltv_frame([1, 2, 1, 0, 0, 0], [0, 1, 1, 1, 2, 0], [30.0, 60.0, 90.0, 0, 0, 0])
    result = simple_ltv(frame, spec)
    assert result["arpu_30d"] == pytest.approx(60.0)
    assert result["monthly_churn_rate"] == pytest.approx(0.5)
    assert result["simple_ltv"] == pytest.approx(120.0)


def test_simple_ltv_floors_zero_churn(spec: ValueSpec) -> None:
    frame = _ltv_frame([1, 1], [1, 1], [10.0, 30.0])
    result = simple_ltv(frame, spec)
    assert result["monthly_churn_rate"] == 0.0
    assert result["churn_rate_used"] == spec.simple_ltv_churn_floor
    assert result["simple_ltv"] == pytest.approx(20.0 / spec.simple_ltv_churn_floor)
    assert math.isfinite(result["simple_ltv"])


def test_simple_ltv_is_one_value_per_snapshot(scored: pl.DataFrame) -> None:
    assert scored["simple_ltv"].n_unique() == 1
    assert scored["simple_ltv"][0] > 0


def test_without_money_clv_is_null_with_its_reason_and_bgnbd_still_scores(spec: ValueSpec) -> None:
    """A source without money (money: none): no spend is known. BG/NBD still gives P(alive),
    expected orders and churn risk; Gamma-Gamma, expected order value, CLV (non-customers'
    too) and the simple LTV are NULL, and the version's notes and quality rows say why."""
    money = ("monetary", "avg_order_value", "revenue_30d")
    features = synthetic_features(1500, seed=4).with_columns(
        pl.lit(None, dtype=pl.Float64).alias(c) for c in money
    )
    models = fit_value_models(features, spec)
    assert models.bgnbd is not None and models.gamma_gamma is None
    assert models.population_order_value is None
    assert any("Gamma-Gamma not fitted: no order amounts" in n for n in models.notes)
    guard = {q["metric"]: q for q in models.summary()["quality"]}["priced_customers"]
    assert guard["passed"] is False and guard["value"] == 0
    assert "CLV and the simple LTV are NULL" in guard["note"]

    out = score_value(features, models, spec)
    customers = out.filter("is_customer")
    assert customers["p_alive"].null_count() == 0 and customers["churn_risk"].null_count() == 0
    assert customers["expected_orders_90d"].null_count() == 0
    for column in ("expected_order_value", "clv_12m", "simple_ltv", "spend_model"):
        assert out[column].null_count() == out.height, column
    assert simple_ltv(features, spec)["simple_ltv"] is None
