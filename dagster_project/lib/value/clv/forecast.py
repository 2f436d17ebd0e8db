"""From fitted models to CLV inputs: discounted expected purchases, parameter summaries."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from dagster_project.lib.value.clv.fitting import FloatArray, PurchaseModel, as_float

if TYPE_CHECKING:  # annotations only: the models import this module
    from dagster_project.lib.value.clv.bgnbd import BetaGeoModel
    from dagster_project.lib.value.clv.gamma_gamma import GammaGammaModel
    from dagster_project.lib.value.clv.pareto_nbd import ParetoNBDModel


def discounted_expected_purchases(
    bgf: PurchaseModel,
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    months: int = 12,
    discount_rate_monthly: float = 0.01,
    days_per_month: float = 30.4375,
    time_unit_days: float = 1.0,
) -> FloatArray:
    """sum_m (E[X(m)] - E[X(m-1)]) / (1+d)**m: the purchase part of CLV, spend-free.

    Depends on (x, t_x, T) only, so callers can evaluate it once per distinct triple and
    multiply by each customer's expected spend. ``time_unit_days`` is the length of the model's
    time unit in days (1 for daily fits, 7 for weekly). Loops over months, vectorised over
    customers.
    """
    if months < 0:
        raise ValueError("months must be >= 0")
    x, tx, T_ = np.broadcast_arrays(
        as_float(frequency, "frequency"), as_float(recency, "recency"), as_float(T, "T")
    )
    step = days_per_month / time_unit_days
    total = np.zeros(x.shape)
    previous = np.zeros(x.shape)
    for month in range(1, months + 1):
        cum = bgf.conditional_expected_number_of_purchases_up_to_time(month * step, x, tx, T_)
        total += (cum - previous) / (1.0 + discount_rate_monthly) ** month
        previous = cum
    return total


def fitted_params_summary(
    model: BetaGeoModel | ParetoNBDModel | GammaGammaModel,
) -> dict[str, Any]:
    """Parameters and fit diagnostics as plain Python values (for run metadata and model cards)."""
    return {
        **{k: round(v, 6) for k, v in model.params_.items()},
        "log_likelihood": round(model.log_likelihood_, 4),
        "converged": model.converged_,
        "n_iter": model.n_iter_,
        "n_customers": model.n_customers_,
    }
