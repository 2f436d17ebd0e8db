"""Per-user value scoring: BG/NBD or Pareto/NBD + Gamma-Gamma CLV, churn risk from the better
of a probabilistic and a supervised model, churn-risk bands and a simple-LTV baseline.

Input is the per-user feature frame (features.user_features, one row per user known on the
as-of date D); output is one row per input user for marts.user_value_daily. Both the fit and
the scoring work on *distinct* (repeat_purchases, purchase_span_days, customer_age_days)
triples, not on users: a million customers on daily data collapse to a few hundred thousand
triples, and every BG/NBD / Pareto/NBD quantity depends on the triple only.

Model choice is point-in-time: given ``history`` (user_features as of D - W, W the churn
window), :func:`fit_value_models` runs an internal backtest on (D - W, D]: BG/NBD and Pareto/NBD
fitted on the history forecast each customer's purchases and the better one by MAE is chosen per
calibration-frequency group (0..6, 7+); a gradient-boosting churn classifier trained on part of
the history customers competes by AUC with the probabilistic P(no purchase in W) on the rest.
Every input is as of D or earlier, so a model used for snapshot D never saw later data.

The models describe customers (users with a completed order). Non-customers get NULL model
outputs, clv 0.0 and the band ``no_purchase``. When there are too few customers to fit, scoring
still returns every row, with NULL model outputs and the band ``unscored``: the daily run never
fails because a snapshot is small.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from dagster_project.lib.model_store.quality import quality_dicts
from dagster_project.lib.value.candidates import evaluate_candidates
from dagster_project.lib.value.churn import ChurnClassifier
from dagster_project.lib.value.fit import (
    ValueModels,
    check_columns,
    check_history,
    fit_gamma_gamma,
    fit_purchase_models,
    history_days,
    new_classifier,
    population_order_value,
    priced,
)
from dagster_project.lib.value.metrics import (
    valid_customers,
)
from dagster_project.lib.value.quality import value_quality
from dagster_project.lib.value.spec import (
    CHURN_CLASSIFIER,
    PROBABILISTIC,
    REQUIRED_COLUMNS,
    ValueSpec,
    log,
)


def fit_value_models(
    features: pl.DataFrame, spec: ValueSpec, history: pl.DataFrame | None = None
) -> ValueModels:
    """Fit BG/NBD and Pareto/NBD on distinct (x, t_x, T) triples with counts, Gamma-Gamma on
    repeat customers, and choose the forecast and churn models.

    ``history``: user_features as of D - churn_window_days (D = the as-of date of
    ``features``). With it, :func:`evaluate_candidates` runs the internal backtest on
    (D - W, D] and the chosen churn classifier is retrained on every history customer. Without
    it (or with too little data) the forecast is BG/NBD and churn risk probabilistic.
    Too few customers, or an optimiser failure, leave a model as None with a note: the daily
    run degrades to NULL model outputs rather than failing.
    """
    check_columns(features, (*REQUIRED_COLUMNS, spec.gg_count_column, spec.gg_value_column))
    if history is not None:
        check_history(features, history, spec.churn_window_days)
    notes: list[str] = []
    customers = valid_customers(features)
    n_customers = customers.height
    population_aov = population_order_value(customers)
    # Pareto/NBD only competes when there is a history to choose on (it costs more to fit)
    diagnostics: dict[str, dict[str, Any]] = {}
    bgnbd, pareto, n_triples = fit_purchase_models(
        customers, spec, notes, with_pareto=history is not None, diagnostics=diagnostics
    )
    gamma_gamma, n_repeat, corr = fit_gamma_gamma(customers, spec, notes, diagnostics)

    choice: dict[str, str] = {}
    default = "bgnbd"
    classifier: ChurnClassifier | None = None
    use_classifier = False
    selection: dict[str, Any] = {"status": "no history given: BG/NBD, probabilistic churn"}
    if history is not None and bgnbd is not None:
        evaluation = evaluate_candidates(history, features, spec)
        notes.extend(evaluation.notes)
        ran = "mae" in evaluation.evidence
        skipped = next((n for n in evaluation.notes if "skipped" in n), "model selection skipped")
        status = "selected on the internal holdout" if ran else skipped
        selection = {"status": status, **evaluation.evidence}
        # a model chosen on the history but not fitted on the snapshot cannot forecast
        fitted = {"bgnbd": bgnbd, "pareto_nbd": pareto}
        available = {k for k, m in fitted.items() if m is not None}
        if evaluation.default_forecast in available:
            default = evaluation.default_forecast
        choice = {
            g: (m if m in available else default) for g, m in evaluation.forecast_choice.items()
        }
        # Retrained on every history customer; kept even when it lost (backtests report both
        # models' AUC), but only scores churn when it won.
        if evaluation.classifier_trainable and evaluation.labelled is not None:
            labelled = evaluation.labelled
            try:
                classifier = new_classifier(spec).fit(labelled, labelled["churned"].to_numpy())
            except ValueError as exc:
                notes.append(f"churn classifier refit failed ({exc}): churn risk is probabilistic")
            else:
                use_classifier = evaluation.churn_model == CHURN_CLASSIFIER
    elif history is not None:
        notes.append("model selection skipped: BG/NBD could not be fitted on the snapshot")
    for note in notes:
        log.warning(note)
    in_use = CHURN_CLASSIFIER if use_classifier and classifier is not None else PROBABILISTIC
    n_priced = priced(customers).height  # none: a source without money (see fit_gamma_gamma)
    quality = value_quality(
        spec, n_customers, n_repeat, history_days(customers), selection, in_use, n_priced
    )
    return ValueModels(
        bgnbd=bgnbd,
        gamma_gamma=gamma_gamma,
        fitted_on_users=n_customers if bgnbd is not None else 0,
        fitted_on_triples=n_triples if bgnbd is not None else 0,
        repeat_customers=n_repeat,
        time_unit_days=spec.time_unit_days,
        population_order_value=population_aov,
        spend_frequency_corr=corr,
        spec_name=spec.name,
        spec_version=spec.version,
        notes=notes,
        pareto_nbd=pareto,
        churn_classifier=classifier,
        use_churn_classifier=use_classifier,
        forecast_choice=choice,
        default_forecast=default,
        selection=selection,
        diagnostics=diagnostics,
        quality=quality_dicts(quality),
    )
