"""Point-in-time model choice: an internal backtest on (D - W, D] picks BG/NBD or Pareto/NBD per
calibration-frequency group, and the better churn model by AUC."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from dagster_project.lib.value.churn import holdout_split
from dagster_project.lib.value.fit import (
    chosen_model_value,
    fit_purchase_models,
    new_classifier,
    purchase_predictions,
)
from dagster_project.lib.value.metrics import (
    T_COL,
    TX_COL,
    X_COL,
    calibration_error,
    frequency_groups,
    holdout_outcomes,
    mae,
    roc_auc,
)
from dagster_project.lib.value.spec import CHURN_CLASSIFIER, PROBABILISTIC, ValueSpec


@dataclass
class CandidateEvaluation:
    """Evidence from the internal holdout and the choices made from it."""

    forecast_choice: dict[str, str]
    default_forecast: str
    churn_model: str
    evidence: dict[str, Any]
    notes: list[str]
    labelled: pl.DataFrame | None = None
    classifier_trainable: bool = False


def evaluate_candidates(
    calibration: pl.DataFrame, later: pl.DataFrame, spec: ValueSpec
) -> CandidateEvaluation:
    """Fit every candidate on ``calibration`` (features as of C), score (C, C + W] against
    ``later`` (features as of C + W) and choose.

    Forecast: per calibration-frequency group, the purchase model with the lower MAE (groups
    smaller than ``selection_min_group_customers`` take the overall winner). Churn: the
    classifier is trained on a deterministic share of customers and compared by AUC on the
    rest with the probabilistic score (P(no purchase in W) of each customer's forecast model).
    Too little data keeps BG/NBD and the probabilistic score, with a note.
    """
    notes: list[str] = []
    outcomes = holdout_outcomes(calibration, later)
    evidence: dict[str, Any] = {
        "holdout_days": spec.churn_window_days,
        "holdout_customers": outcomes.height,
    }
    fallback = CandidateEvaluation({}, "bgnbd", PROBABILISTIC, evidence, notes)
    if outcomes.height < spec.selection_min_customers:
        notes.append(
            f"model selection skipped: {outcomes.height} customers in the internal holdout"
            f" < {spec.selection_min_customers}; forecast BG/NBD, churn probabilistic"
        )
        return fallback
    fit_notes: list[str] = []
    bgnbd, pareto, _ = fit_purchase_models(
        outcomes, spec, fit_notes, "internal holdout", guard_history=False
    )
    notes.extend(fit_notes)
    candidates = {k: m for k, m in (("bgnbd", bgnbd), ("pareto_nbd", pareto)) if m is not None}
    if not candidates:
        notes.append("model selection skipped: no purchase model fitted on the history")
        return fallback

    scored = _candidate_predictions(outcomes, candidates, spec)
    actual = scored["holdout_purchases"].to_numpy().astype(np.float64)
    choice, default, overall, by_group = _forecast_choice(scored, candidates, spec)
    scored = _with_chosen_model(scored, choice, default, candidates)
    overall["chosen"] = mae(scored["_pred_chosen"].to_numpy(), actual)
    # the bar a model must clear: each customer's past repeat rate carried over the window
    past_rate = pl.when(pl.col(T_COL) > 0).then(pl.col(X_COL) / pl.col(T_COL)).otherwise(0.0)
    naive = scored.select(past_rate * float(spec.churn_window_days)).to_series().to_numpy()
    overall["naive"] = mae(naive, actual)
    evidence.update(
        {
            "actual_purchases": float(actual.sum()),
            "predicted_purchases": {
                k: float(scored[f"_pred_{k}"].sum()) for k in (*candidates, "chosen")
            },
            "mae": overall,
            "by_frequency_group": by_group,
            "params": {k: dict(m.params_) for k, m in candidates.items()},
        }
    )

    churn_model = PROBABILISTIC
    if spec.churn_model_enabled:
        churn_model, churn_evidence = _compare_churn_models(scored, candidates, spec, notes)
        evidence["churn"] = churn_evidence
    else:
        notes.append("churn classifier disabled in the spec: churn risk is probabilistic")
    trainable = CHURN_CLASSIFIER in evidence.get("churn", {}).get("auc", {})
    return CandidateEvaluation(
        choice,
        default,
        churn_model,
        evidence,
        notes,
        labelled=scored,
        classifier_trainable=trainable,
    )


def _candidate_predictions(
    outcomes: pl.DataFrame, candidates: dict[str, Any], spec: ValueSpec
) -> pl.DataFrame:
    """``outcomes`` plus each candidate's expected purchases (``_pred_<key>``) and probability of
    no purchase (``_quiet_<key>``) over the churn window."""
    scored = outcomes
    for key, model in candidates.items():
        pred = purchase_predictions(
            outcomes, model, float(spec.churn_window_days), spec.time_unit_days
        ).select(
            X_COL,
            TX_COL,
            T_COL,
            pl.col("expected_purchases").alias(f"_pred_{key}"),
            pl.col("p_no_purchase").alias(f"_quiet_{key}"),
        )
        scored = scored.join(pred, on=[X_COL, TX_COL, T_COL], how="left")
    return scored


def _forecast_choice(
    scored: pl.DataFrame, candidates: dict[str, Any], spec: ValueSpec
) -> tuple[dict[str, str], str, dict[str, float], list[dict[str, Any]]]:
    """The model per frequency group (lower MAE; small groups take the overall winner), the
    overall winner, the overall MAE per model and the per-group evidence."""
    actual = scored["holdout_purchases"].to_numpy().astype(np.float64)
    overall = {k: mae(scored[f"_pred_{k}"].to_numpy(), actual) for k in candidates}
    default = min(overall, key=lambda k: (overall[k], k != "bgnbd"))
    by_group: list[dict[str, Any]] = []
    choice: dict[str, str] = {}
    for group in frequency_groups():
        rows = scored.filter(pl.col("frequency_group") == group)
        maes = {
            k: mae(rows[f"_pred_{k}"].to_numpy(), rows["holdout_purchases"].to_numpy())
            for k in candidates
        }
        if rows.height >= spec.selection_min_group_customers:
            chosen = min(maes, key=lambda k: (maes[k], k != default))
        else:
            chosen = default
        choice[group] = chosen
        by_group.append(
            {
                "group": group,
                "customers": rows.height,
                **{f"mae_{k}": v for k, v in maes.items()},
                "chosen": chosen,
            }
        )
    return choice, default, overall, by_group


def _with_chosen_model(
    scored: pl.DataFrame, choice: dict[str, str], default: str, candidates: dict[str, Any]
) -> pl.DataFrame:
    """Each customer's group model (``_forecast_model``), its forecast and its quiet score."""
    scored = scored.with_columns(
        pl.col("frequency_group")
        .replace_strict(choice, default=default, return_dtype=pl.String)
        .alias("_forecast_model")
    )

    forecast = chosen_model_value("_forecast_model", "_pred", candidates)
    quiet = chosen_model_value("_forecast_model", "_quiet", candidates)
    return scored.with_columns(
        forecast.alias("_pred_chosen"), quiet.alias(f"_quiet_{PROBABILISTIC}")
    )


def _compare_churn_models(
    scored: pl.DataFrame, candidates: dict[str, Any], spec: ValueSpec, notes: list[str]
) -> tuple[str, dict[str, Any]]:
    churned = scored["churned"].to_numpy()
    test = holdout_split(scored["user_id"], spec.churn_test_share, spec.churn_seed)
    n_train, n_test = int((~test).sum()), int(test.sum())
    evidence: dict[str, Any] = {
        "window_days": spec.churn_window_days,
        "train_customers": n_train,
        "test_customers": n_test,
        "churn_rate": float(churned.mean()),
    }
    y_test = churned[test]
    auc = {
        k: roc_auc(scored[f"_quiet_{k}"].to_numpy()[test], y_test)
        for k in (*candidates, PROBABILISTIC)
    }
    evidence["auc"] = auc
    calibration = {
        PROBABILISTIC: calibration_error(scored[f"_quiet_{PROBABILISTIC}"].to_numpy()[test], y_test)
    }
    evidence["calibration_error"] = calibration

    def smallest_class(labels: np.ndarray) -> int:
        return int(min(labels.sum(), labels.size - labels.sum()))

    reason = None
    if scored.height < spec.churn_min_customers:
        reason = f"{scored.height} holdout customers < {spec.churn_min_customers}"
    elif min(smallest_class(churned[~test]), smallest_class(y_test)) < (
        spec.churn_min_class_customers
    ):
        reason = (
            f"fewer than {spec.churn_min_class_customers} churned or retained customers"
            " in the train or test part"
        )
    if reason is not None:
        notes.append(f"churn classifier not trained ({reason}): churn risk is probabilistic")
        return PROBABILISTIC, evidence
    try:
        classifier = new_classifier(spec).fit(scored.filter(~pl.Series(test)), churned[~test])
        predicted = classifier.predict_churn(scored.filter(pl.Series(test)))
        auc[CHURN_CLASSIFIER] = roc_auc(predicted, y_test)
        calibration[CHURN_CLASSIFIER] = calibration_error(predicted, y_test)
    except ValueError as exc:
        notes.append(f"churn classifier failed ({exc}): churn risk is probabilistic")
        return PROBABILISTIC, evidence
    gbm, prob = auc[CHURN_CLASSIFIER], auc[PROBABILISTIC]
    better = math.isfinite(gbm) and (not math.isfinite(prob) or gbm > prob)
    return (CHURN_CLASSIFIER if better else PROBABILISTIC), evidence
