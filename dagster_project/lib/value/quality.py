"""The value model's figures for marts.model_quality: the minimum-data guards it was fitted
under, and its internal holdout (D - W, D]: forecast MAE against a naive forecast, and the churn
score in use, by AUC and calibration error."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster_project.lib.model_store.quality import QualityMetric, at_least, at_most, reported
from dagster_project.lib.value.spec import CHURN_CLASSIFIER, NO_MONEY, PROBABILISTIC, ValueSpec

GUARD = "minimum_data"
HOLDOUT = "internal_holdout"


def value_quality(
    spec: ValueSpec,
    customers: int,
    repeat_customers: int,
    history_days: float,
    selection: Mapping[str, Any],
    churn_model: str,
    priced_customers: int | None = None,
) -> list[QualityMetric]:
    """``selection``: the evidence of :func:`~dagster_project.lib.value.candidates.
    evaluate_candidates`. Without it (no history given, or selection skipped) the holdout rows
    have no value and say why: the churn rows fail, since nothing showed the score works, and
    the MAE row has no bar (it is the naive forecast's MAE on the same holdout).
    ``priced_customers``: customers whose spend is known; none of them (a source without
    money) fails the money guard, whose note says what is NULL."""
    mae = selection.get("mae", {})
    naive = mae.get("naive")
    mae_bar = naive * spec.quality_max_forecast_mae_ratio if naive is not None else None
    churn = selection.get("churn", {})
    # the churn score in use: the classifier when it won, else the forecast models' P(quiet)
    scoring = CHURN_CLASSIFIER if churn_model == CHURN_CLASSIFIER else PROBABILISTIC
    auc = churn.get("auc", {}).get(scoring)
    calibration = churn.get("calibration_error", {}).get(scoring)

    def why(value: float | None, otherwise: str) -> str:
        if not mae:
            return str(selection.get("status", "no internal holdout"))
        return "not measurable on the internal holdout" if value is None else otherwise

    in_use = f"churn score in use: {scoring}"
    return [
        at_least("customers", customers, spec.min_customers, GUARD, "BG/NBD, Pareto/NBD and CLV"),
        at_least(
            "repeat_customers",
            repeat_customers,
            spec.min_repeat_customers,
            GUARD,
            "Gamma-Gamma spend",
        ),
        at_least("history_days", history_days, spec.min_history_days, GUARD, "BG/NBD, Pareto/NBD"),
        at_least(
            "priced_customers",
            customers if priced_customers is None else priced_customers,
            1,
            GUARD,
            NO_MONEY if customers and not priced_customers else "Gamma-Gamma spend and CLV",
        ),
        reported("holdout_customers", selection.get("holdout_customers"), HOLDOUT),
        at_most(
            "forecast_mae",
            mae.get("chosen"),
            mae_bar,
            HOLDOUT,
            why(
                mae.get("chosen"), "bar: naive forecast (past repeat rate) x max_forecast_mae_ratio"
            ),
        ),
        at_least(
            "churn_auc",
            auc,
            spec.quality_min_churn_auc,
            HOLDOUT,
            why(auc, in_use),
        ),
        at_most(
            "churn_calibration_error",
            calibration,
            spec.quality_max_churn_calibration_error,
            HOLDOUT,
            why(calibration, in_use),
        ),
    ]
