"""Model choice in fit_value_models: forecast by MAE per frequency group, churn by AUC, all on
the internal holdout (D - W, D] and point-in-time. Data: value_fixtures.synthetic_orders run
through the pipeline's own feature code (lib.features.user_features on an in-memory warehouse)."""

from __future__ import annotations

import dataclasses
import pickle
from datetime import timedelta

import numpy as np
import polars as pl
import pytest
from value_fixtures import START, synthetic_orders

from dagster_project.lib.features.user_features import compute_user_features
from dagster_project.lib.value.fit import ValueModels
from dagster_project.lib.value.metrics import frequency_groups
from dagster_project.lib.value.score import score_value
from dagster_project.lib.value.spec import ValueSpec, load_value_spec
from dagster_project.lib.value.training import fit_value_models
from dagster_project.testing.stand_in_marts import orders_warehouse

D = START + timedelta(days=400)


@pytest.fixture(scope="module")
def spec() -> ValueSpec:
    return load_value_spec()


@pytest.fixture(scope="module")
def orders() -> pl.DataFrame:
    return synthetic_orders()


@pytest.fixture(scope="module")
def snapshots(orders: pl.DataFrame, spec: ValueSpec) -> dict[str, pl.DataFrame]:
    with orders_warehouse(orders) as con:
        return {
            "now": compute_user_features(con, D),
            "history": compute_user_features(con, D - timedelta(days=spec.churn_window_days)),
        }


@pytest.fixture(scope="module")
def models(snapshots: dict[str, pl.DataFrame], spec: ValueSpec) -> ValueModels:
    return fit_value_models(snapshots["now"], spec, snapshots["history"])


@pytest.fixture(scope="module")
def scored(snapshots: dict[str, pl.DataFrame], models: ValueModels, spec: ValueSpec):
    return score_value(snapshots["now"], models, spec)


def test_selection_evidence_and_choices(models: ValueModels) -> None:
    assert models.bgnbd is not None and models.pareto_nbd is not None
    sel = models.selection
    assert sel["holdout_days"] == 90 and sel["holdout_customers"] > 1000
    assert set(sel["mae"]) == {"bgnbd", "pareto_nbd", "chosen", "naive"}
    # per group the chosen model is the one with the lower holdout MAE (all groups are large)
    for row in sel["by_frequency_group"]:
        assert row["customers"] >= 30
        best = min(("bgnbd", "pareto_nbd"), key=lambda k: row[f"mae_{k}"])
        assert row["chosen"] == best == models.forecast_choice[row["group"]]
    assert sel["mae"]["chosen"] <= min(sel["mae"]["bgnbd"], sel["mae"]["pareto_nbd"]) + 1e-12
    assert models.notes == []


def test_quality_judges_the_models_in_use_on_the_internal_holdout(
    models: ValueModels, spec: ValueSpec
) -> None:
    quality = {q["metric"]: q for q in models.summary()["quality"]}
    sel = models.selection
    mae = quality["forecast_mae"]
    assert mae["value"] == sel["mae"]["chosen"] and mae["threshold"] == sel["mae"]["naive"]
    # the fitted models beat carrying each customer's past rate forward
    assert mae["comparison"] == "<=" and mae["passed"] is True
    auc = quality["churn_auc"]
    assert models.churn_model == "gbm" and auc["value"] == sel["churn"]["auc"]["gbm"]
    assert auc["threshold"] == spec.quality_min_churn_auc and auc["passed"] is True
    calibration = quality["churn_calibration_error"]
    assert calibration["value"] == sel["churn"]["calibration_error"]["gbm"]
    assert 0 <= calibration["value"] <= spec.quality_max_churn_calibration_error
    assert {quality[m]["passed"] for m in ("customers", "repeat_customers", "history_days")} == {
        True
    }
    assert quality["holdout_customers"]["passed"] is None  # reported, not judged


def test_calibration_error_is_the_weighted_gap_over_deciles() -> None:
    from dagster_project.lib.value.metrics import calibration_error

    score = np.repeat([0.1, 0.9], 50)
    assert calibration_error(score, np.repeat([0, 1], 50)) == pytest.approx(0.1)
    assert calibration_error(score, score > 2) == pytest.approx(0.5)  # nobody churned
    assert np.isnan(calibration_error([], []))


def test_classifier_wins_when_features_see_what_the_counts_cannot(models: ValueModels) -> None:
    """Cancelled orders precede churn in the fixture: visible to the classifier only."""
    auc = models.selection["churn"]["auc"]
    assert auc["gbm"] > auc["probabilistic"] + 0.01
    assert models.use_churn_classifier and models.churn_model == "gbm"
    assert models.summary()["churn_classifier"]["scores_churn"] is True


def test_rows_name_the_models_that_made_them(
    scored: pl.DataFrame, snapshots: dict[str, pl.DataFrame], models: ValueModels
) -> None:
    customers = scored.filter("is_customer")
    assert set(customers["churn_model"]) == {"gbm"}
    assert set(customers["spend_model"]) == {"gamma_gamma"}
    groups = (
        snapshots["now"]
        .filter("is_customer")
        .select(
            "user_id",
            pl.when(pl.col("repeat_purchases") >= 7)
            .then(pl.lit("7+"))
            .otherwise(pl.col("repeat_purchases").cast(pl.String))
            .alias("group"),
        )
    )
    joined = customers.join(groups, on="user_id")
    expected = joined["group"].replace_strict(models.forecast_choice, return_dtype=pl.String)
    assert joined["forecast_model"].to_list() == expected.to_list()
    assert scored.filter(~pl.col("is_customer"))["forecast_model"].is_null().all()
    assert customers["churn_risk"].is_between(0, 1).all()
    risk = models.churn_classifier.predict_churn(snapshots["now"].filter("is_customer"))
    np.testing.assert_allclose(np.sort(customers["churn_risk"].to_numpy()), np.sort(risk))


def test_selection_is_point_in_time(
    orders: pl.DataFrame, spec: ValueSpec, models: ValueModels, scored: pl.DataFrame
) -> None:
    """Orders after D (a backfill run later) change nothing about the models for D."""
    later = synthetic_orders(seed=9).filter(pl.col("order_date") > D)
    with orders_warehouse(pl.concat([orders, later])) as con:
        now = compute_user_features(con, D)
        history = compute_user_features(con, D - timedelta(days=spec.churn_window_days))
    again = fit_value_models(now, spec, history)
    assert again.forecast_choice == models.forecast_choice
    assert again.bgnbd.params_ == models.bgnbd.params_
    assert again.pareto_nbd.params_ == models.pareto_nbd.params_
    assert score_value(now, again, spec).equals(scored)


def test_history_must_be_one_window_earlier(
    snapshots: dict[str, pl.DataFrame], spec: ValueSpec
) -> None:
    with pytest.raises(ValueError, match="history is as of"):
        fit_value_models(snapshots["now"], spec, snapshots["now"])


def test_too_little_history_falls_back_with_notes(
    snapshots: dict[str, pl.DataFrame], spec: ValueSpec
) -> None:
    few = snapshots["history"].filter(pl.col("user_id") < "u00040")
    models = fit_value_models(snapshots["now"], spec, few)
    assert models.forecast_choice == {} and models.default_forecast == "bgnbd"
    assert not models.use_churn_classifier
    assert any("model selection skipped" in note for note in models.notes)
    out = score_value(snapshots["now"], models, spec).filter("is_customer")
    assert set(out["forecast_model"]) == {"bgnbd"} and set(out["churn_model"]) == {"bgnbd"}
    # nothing measured the models: the churn rows fail and every holdout row says why
    assert models.selection["status"].startswith("model selection skipped: ")
    holdout = {q["metric"]: q for q in models.summary()["quality"] if q["source"] != "minimum_data"}
    assert holdout["churn_auc"]["value"] is None and holdout["churn_auc"]["passed"] is False
    assert holdout["forecast_mae"]["passed"] is None  # its bar is measured on the same holdout
    assert {q["note"] for m, q in holdout.items() if m != "holdout_customers"} == {
        models.selection["status"]
    }
    # a holdout big enough to choose forecasts but too small for the classifier
    strict = dataclasses.replace(spec, churn_min_customers=10**6)
    models = fit_value_models(snapshots["now"], strict, snapshots["history"])
    assert models.churn_classifier is None and models.churn_model == "probabilistic"
    assert any("churn classifier not trained" in note for note in models.notes)
    assert set(models.forecast_choice) == set(frequency_groups())
    quality = {q["metric"]: q for q in models.summary()["quality"]}
    assert quality["churn_auc"]["value"] == models.selection["churn"]["auc"]["probabilistic"]
    assert quality["churn_auc"]["note"] == "churn score in use: probabilistic"


def test_models_pickle_with_the_classifier(models: ValueModels, snapshots, spec) -> None:
    again = pickle.loads(pickle.dumps(models))
    assert score_value(snapshots["now"], again, spec).equals(
        score_value(snapshots["now"], models, spec)
    )
