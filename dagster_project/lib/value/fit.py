"""Fitting the value models on distinct (x, t_x, T) triples: purchase models, Gamma-Gamma, the
churn classifier, and the fitted ValueModels bundle."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import polars as pl

from dagster_project.lib.value.churn import ChurnClassifier
from dagster_project.lib.value.clv import (
    BetaGeoModel,
    GammaGammaModel,
    ParetoNBDModel,
    PurchaseModel,
    fitted_params_summary,
)
from dagster_project.lib.value.clv.diagnostics import bgnbd_diagnostics, gamma_gamma_diagnostics
from dagster_project.lib.value.metrics import (
    T_COL,
    TX_COL,
    X_COL,
)
from dagster_project.lib.value.spec import (
    CHURN_CLASSIFIER,
    NO_MONEY,
    PROBABILISTIC,
    ValueSpec,
    json_safe,
)


@dataclass
class ValueModels:
    """Fitted value models for one snapshot (picklable; no training data kept).

    ``bgnbd`` / ``pareto_nbd`` / ``gamma_gamma`` are None when they could not be fitted or
    their fit was degenerate (``diagnostics``, per model: see
    :mod:`~dagster_project.lib.value.clv.diagnostics`); ``notes`` says why.
    ``forecast_choice`` maps a calibration-frequency group ('0'..'6', '7+') to the purchase
    model that forecasts it (groups not listed use ``default_forecast``);
    ``churn_classifier`` is the supervised churn model when one could be trained;
    ``use_churn_classifier`` says whether it beat the probabilistic churn score on the internal
    holdout (and so scores churn). ``selection`` holds that holdout's evidence. Times inside the
    models are in units of ``time_unit_days`` days.
    """

    bgnbd: BetaGeoModel | None
    gamma_gamma: GammaGammaModel | None
    fitted_on_users: int
    fitted_on_triples: int
    repeat_customers: int
    time_unit_days: float
    population_order_value: float | None
    spend_frequency_corr: float | None
    spec_name: str
    spec_version: int
    notes: list[str] = field(default_factory=list)
    pareto_nbd: ParetoNBDModel | None = None
    churn_classifier: ChurnClassifier | None = None
    use_churn_classifier: bool = False
    forecast_choice: dict[str, str] = field(default_factory=dict)
    default_forecast: str = "bgnbd"
    selection: dict[str, Any] = field(default_factory=dict)
    diagnostics: dict[str, dict[str, Any]] = field(default_factory=dict)
    quality: list[dict[str, Any]] = field(default_factory=list)

    def purchase_model(self, key: str) -> PurchaseModel | None:
        return {"bgnbd": self.bgnbd, "pareto_nbd": self.pareto_nbd}.get(key)

    def forecast_model_for(self, group: str) -> str:
        return self.forecast_choice.get(group, self.default_forecast)

    @property
    def churn_model(self) -> str:
        """'gbm' when the classifier scores churn, else 'probabilistic' (the row's forecast
        model's P(no purchase in the window))."""
        return CHURN_CLASSIFIER if self.scoring_classifier is not None else PROBABILISTIC

    @property
    def scoring_classifier(self) -> ChurnClassifier | None:
        """The classifier when it scores churn risk (it won on the internal holdout)."""
        return self.churn_classifier if self.use_churn_classifier else None

    def summary(self) -> dict[str, Any]:
        """Plain values for run metadata and the model registry."""
        out: dict[str, Any] = {
            "spec": f"{self.spec_name}-v{self.spec_version}",
            "time_unit_days": self.time_unit_days,
            "fitted_on_users": self.fitted_on_users,
            "fitted_on_triples": self.fitted_on_triples,
            "repeat_customers": self.repeat_customers,
            "population_order_value": self.population_order_value,
            "spend_frequency_corr": self.spend_frequency_corr,
            "default_forecast": self.default_forecast,
            "forecast_choice": dict(self.forecast_choice),
            "churn_model": self.churn_model,
            "selection": self.selection,
            "diagnostics": self.diagnostics,
            "quality": list(self.quality),
            "notes": list(self.notes),
        }
        if self.bgnbd is not None:
            out["bgnbd"] = fitted_params_summary(self.bgnbd)
        if self.pareto_nbd is not None:
            out["pareto_nbd"] = fitted_params_summary(self.pareto_nbd)
        if self.gamma_gamma is not None:
            out["gamma_gamma"] = fitted_params_summary(self.gamma_gamma)
        if self.churn_classifier is not None:
            out["churn_classifier"] = {
                **self.churn_classifier.summary(),
                "scores_churn": self.use_churn_classifier,
            }
        return json_safe(out)


def check_columns(features: pl.DataFrame, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in features.columns]
    if missing:
        raise ValueError(f"feature frame lacks columns {missing}")


def history_days(customers: pl.DataFrame) -> float:
    """Days from the earliest first purchase to the as-of date: how much purchase history the
    purchase models see (0 without customers)."""
    if customers.height == 0:
        return 0.0
    return float(customers[T_COL].max())


def priced(customers: pl.DataFrame) -> pl.DataFrame:
    """Customers whose spend is known (monetary not NULL: a source without money has none)."""
    return customers.filter(pl.col("monetary").is_not_null())


def population_order_value(customers: pl.DataFrame) -> float | None:
    """Mean spend per order over the customers whose spend is known (None without any)."""
    known = priced(customers)
    orders = known["frequency"].sum()
    if not orders:
        return None
    value = float(known["monetary"].sum()) / float(orders)
    return value if math.isfinite(value) and value > 0 else None


def _triples(customers: pl.DataFrame, unit: float) -> tuple[pl.DataFrame, list[np.ndarray]]:
    """Distinct (x, t_x, T) with counts, and the model inputs in model time units."""
    # sorted: the fit then sums in the same order on every run (bit-identical reruns)
    triples = (
        customers.group_by(X_COL, TX_COL, T_COL).agg(pl.len().alias("n")).sort(X_COL, TX_COL, T_COL)
    )
    arrays = [
        triples[X_COL].to_numpy().astype(np.float64),
        triples[TX_COL].to_numpy().astype(np.float64) / unit,
        triples[T_COL].to_numpy().astype(np.float64) / unit,
        triples["n"].to_numpy().astype(np.float64),
    ]
    return triples, arrays


def _fit_purchase_model(
    kind: type[BetaGeoModel] | type[ParetoNBDModel],
    label: str,
    penalizer: float,
    arrays: list[np.ndarray],
    notes: list[str],
    diagnostics: dict[str, dict[str, Any]] | None = None,
) -> Any:
    """Fit one purchase model on weighted triples; None (with a note) when it fails or, for
    BG/NBD, when its diagnostics find it degenerate (recorded in ``diagnostics``)."""
    x, tx, T, n = arrays
    try:
        model = kind(penalizer=penalizer).fit(x, tx, T, weights=n)
    except (ValueError, FloatingPointError) as exc:
        notes.append(f"{label} fit failed: {exc}")
        return None
    if not all(math.isfinite(v) for v in model.params_.values()):
        notes.append(f"{label} fit gave non-finite parameters")
        return None
    if kind is BetaGeoModel:
        found = bgnbd_diagnostics(model, x, tx, T, n)
        if diagnostics is not None:
            diagnostics["bgnbd"] = found.summary()
        if found.degenerate:
            notes.append(f"{label} fit degenerate, not used: {'; '.join(found.problems)}")
            return None
    if not model.converged_:
        notes.append(f"{label} optimiser did not report convergence (best point kept)")
    return model


def fit_purchase_models(
    customers: pl.DataFrame,
    spec: ValueSpec,
    notes: list[str],
    label: str = "",
    with_pareto: bool = True,
    diagnostics: dict[str, dict[str, Any]] | None = None,
    guard_history: bool = True,
) -> tuple[BetaGeoModel | None, ParetoNBDModel | None, int]:
    """BG/NBD and (unless ``with_pareto`` is False) Pareto/NBD on the distinct triples of
    ``customers``; BG/NBD's diagnostics go to ``diagnostics`` when given. ``guard_history``:
    refuse less than ``min_history_days`` of purchase history (the models that score users;
    the internal holdout's candidates, fitted one churn window earlier, only compete)."""
    where = f" ({label})" if label else ""
    if customers.height < spec.min_customers:
        notes.append(
            f"BG/NBD not fitted{where}: {customers.height} customers"
            f" < {spec.min_customers} (nor Pareto/NBD)"
        )
        return None, None, 0
    days = history_days(customers)
    if guard_history and days < spec.min_history_days:
        notes.append(
            f"BG/NBD not fitted{where}: {days:g} days of purchase history"
            f" < {spec.min_history_days} (nor Pareto/NBD)"
        )
        return None, None, 0
    triples, arrays = _triples(customers, spec.time_unit_days)
    bgnbd = _fit_purchase_model(
        BetaGeoModel, f"BG/NBD{where}", spec.bgnbd_penalizer, arrays, notes, diagnostics
    )
    pareto = None
    if with_pareto:
        pareto = _fit_purchase_model(
            ParetoNBDModel, f"Pareto/NBD{where}", spec.pareto_penalizer, arrays, notes
        )
    return bgnbd, pareto, triples.height


def fit_gamma_gamma(
    customers: pl.DataFrame,
    spec: ValueSpec,
    notes: list[str],
    diagnostics: dict[str, dict[str, Any]] | None = None,
) -> tuple[GammaGammaModel | None, int, float | None]:
    """Gamma-Gamma on the repeat customers; None (with a note) when there are too few, the fit
    fails, has no finite mean spend, or its diagnostics find it degenerate."""
    count_col, value_col = spec.gg_count_column, spec.gg_value_column
    repeat = customers.filter(
        (pl.col(X_COL) > 0)
        & (pl.col(count_col) > 0)
        & pl.col(value_col).is_not_null()
        & (pl.col(value_col) > 0)
        & pl.col(value_col).is_finite()
    )
    corr: float | None = None
    if repeat.height >= 3:
        value = repeat.select(pl.corr(X_COL, value_col)).item()
        corr = float(value) if value is not None and math.isfinite(value) else None

    gamma_gamma: GammaGammaModel | None = None
    if customers.height and priced(customers).height == 0:
        notes.append(f"Gamma-Gamma not fitted: {NO_MONEY}")
    elif repeat.height < spec.min_repeat_customers:
        notes.append(
            f"Gamma-Gamma not fitted: {repeat.height} repeat customers"
            f" < {spec.min_repeat_customers}; expected_order_value uses the fallback"
        )
    else:
        grouped = (
            repeat.group_by(count_col, value_col)
            .agg(pl.len().alias("n"))
            .sort(count_col, value_col)
        )
        counts, values, weights = (
            grouped[c].to_numpy().astype(np.float64) for c in (count_col, value_col, "n")
        )
        try:
            gamma_gamma = GammaGammaModel(penalizer=spec.gg_penalizer).fit(
                counts, values, weights=weights
            )
        except (ValueError, FloatingPointError) as exc:
            notes.append(f"Gamma-Gamma fit failed: {exc}")
        else:
            found = gamma_gamma_diagnostics(gamma_gamma, counts, values, weights)
            if diagnostics is not None:
                diagnostics["gamma_gamma"] = found.summary()
            if found.degenerate:
                notes.append(
                    f"Gamma-Gamma fit degenerate, not used: {'; '.join(found.problems)}; "
                    "expected_order_value uses the fallback"
                )
                gamma_gamma = None
            elif not math.isfinite(gamma_gamma.population_mean_):
                notes.append("Gamma-Gamma q <= 1 (no finite mean spend): using the fallback")
                gamma_gamma = None
    if gamma_gamma is not None and corr is not None and abs(corr) > 0.3:
        notes.append(
            f"spend and frequency correlate (r={corr:.2f}): Gamma-Gamma assumes independence"
        )
    return gamma_gamma, repeat.height, corr


def purchase_predictions(
    customers: pl.DataFrame, model: PurchaseModel, horizon_days: float, unit: float
) -> pl.DataFrame:
    """Per distinct triple of ``customers``: P(alive), E[purchases in the horizon] and
    P(no purchase in the horizon). Join back on (x, t_x, T)."""
    triples = customers.select(X_COL, TX_COL, T_COL).unique().sort(X_COL, TX_COL, T_COL)
    x = triples[X_COL].to_numpy().astype(np.float64)
    tx = triples[TX_COL].to_numpy().astype(np.float64) / unit
    T = triples[T_COL].to_numpy().astype(np.float64) / unit
    t = horizon_days / unit
    return triples.with_columns(
        pl.Series("p_alive", np.clip(model.conditional_probability_alive(x, tx, T), 0.0, 1.0)),
        pl.Series(
            "expected_purchases",
            model.conditional_expected_number_of_purchases_up_to_time(t, x, tx, T),
        ),
        pl.Series("p_no_purchase", model.probability_no_purchase_up_to_time(t, x, tx, T)),
    ).with_columns(
        pl.col("p_alive", "expected_purchases", "p_no_purchase").fill_nan(None).cast(pl.Float64)
    )


def check_history(features: pl.DataFrame, history: pl.DataFrame, window_days: int) -> None:
    """Point-in-time guard: the history must be the snapshot exactly one window earlier."""
    if "as_of_date" not in features.columns or "as_of_date" not in history.columns:
        return
    now, then = features["as_of_date"].max(), history["as_of_date"].max()
    if isinstance(now, date) and isinstance(then, date) and then != now - timedelta(window_days):
        raise ValueError(
            f"history is as of {then}, expected {now - timedelta(window_days)}"
            f" (snapshot {now} minus churn_window_days={window_days})"
        )


def new_classifier(spec: ValueSpec) -> ChurnClassifier:
    return ChurnClassifier(
        features=spec.churn_features,
        max_iter=spec.churn_max_iter,
        learning_rate=spec.churn_learning_rate,
        random_state=spec.churn_seed,
    )


def chosen_model_value(choice_column: str, prefix: str, models: Iterable[str]) -> pl.Expr:
    """Each user's ``<prefix>_<model>`` for the model named in their ``choice_column``."""
    return pl.coalesce(
        *(pl.when(pl.col(choice_column) == k).then(pl.col(f"{prefix}_{k}")) for k in models)
    )
