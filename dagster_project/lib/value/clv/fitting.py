"""What the purchase-count models share: input checks, the purchase-model protocol and the
log-parameter optimiser (L-BFGS-B with analytic gradient, Nelder-Mead fallback)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

from dagster_project.lib.core.threads import single_threaded

FloatArray = NDArray[np.float64]


# Bounds on the log-parameters during optimisation. Times and spends are rescaled to O(1) before
# fitting, so these bounds only stop degenerate data (e.g. nobody ever repeats) from running
# the optimiser to infinity; they are far outside any identified solution.
LOG_BOUND = 20.0


# BG/NBD predictions divide by (a - 1), Pareto/NBD's by (s - 1); both singularities are
# removable.
A_ONE_GUARD = 1e-7


class PurchaseModel(Protocol):
    """What CLV and scoring need from a fitted purchase-count model (BG/NBD or Pareto/NBD)."""

    params_: dict[str, float]

    def conditional_probability_alive(
        self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray: ...

    def conditional_expected_number_of_purchases_up_to_time(
        self, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray: ...

    def probability_no_purchase_up_to_time(
        self, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray: ...

    def expected_number_of_purchases_up_to_time(self, t: ArrayLike) -> FloatArray: ...


def as_float(values: ArrayLike, name: str) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim > 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def fit_arrays(
    columns: dict[str, ArrayLike], weights: ArrayLike | None
) -> tuple[list[FloatArray], FloatArray]:
    """Validate fit inputs: 1-d, same length, finite; weights positive. Drops zero weights."""
    arrays = [np.atleast_1d(as_float(v, k)) for k, v in columns.items()]
    n = arrays[0].shape[0]
    if n == 0:
        raise ValueError("cannot fit on zero rows")
    if any(a.shape[0] != n for a in arrays):
        raise ValueError("all inputs must have the same length")
    w = np.ones(n) if weights is None else np.atleast_1d(as_float(weights, "weights"))
    if w.shape[0] != n:
        raise ValueError("weights must have the same length as the data")
    for name, arr in [*zip(columns, arrays, strict=True), ("weights", w)]:
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or infinite values")
    if np.any(w < 0):
        raise ValueError("weights must be non-negative")
    keep = w > 0
    if not np.any(keep):
        raise ValueError("all weights are zero")
    if not np.all(keep):
        arrays = [a[keep] for a in arrays]
        w = w[keep]
    return arrays, w


def check_rft(x: FloatArray, tx: FloatArray, T: FloatArray) -> None:
    """Purchase-count models need integer x >= 0 and 0 <= t_x <= T."""
    if np.any(x < 0) or np.any(x != np.round(x)):
        raise ValueError("frequency must be non-negative integers")
    if np.any(tx < 0) or np.any(T < 0) or np.any(tx > T * (1 + 1e-12)):
        raise ValueError("need 0 <= recency <= T")


def minimize_log_params(
    fun_and_grad: Callable[[FloatArray], tuple[float, FloatArray]],
    x0: FloatArray,
    max_iter: int,
    bounds: list[tuple[float, float]] | None = None,
    ftol: float = 1e-13,
    fallback_iter: int | None = None,
) -> tuple[FloatArray, float, bool, int]:
    """Minimise over log-parameters: L-BFGS-B with analytic gradient, Nelder-Mead as a fallback.

    Returns (log_params, objective, converged, iterations). Never returns non-finite values:
    the objectives are finite everywhere inside the bounds (default +-LOG_BOUND each).
    ``fallback_iter`` caps the Nelder-Mead iterations (default ``max_iter``).
    """
    if bounds is None:
        bounds = [(-LOG_BOUND, LOG_BOUND)] * len(x0)
    with single_threaded("blas"):
        return _lbfgsb_then_nelder_mead(
            fun_and_grad, x0, max_iter, bounds, ftol, fallback_iter or max_iter
        )


def _lbfgsb_then_nelder_mead(
    fun_and_grad: Callable[[FloatArray], tuple[float, FloatArray]],
    x0: FloatArray,
    max_iter: int,
    bounds: list[tuple[float, float]],
    ftol: float = 1e-13,
    fallback_iter: int = 2000,
) -> tuple[FloatArray, float, bool, int]:
    from scipy.optimize import minimize

    res = minimize(
        fun_and_grad,
        x0,
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": max_iter, "ftol": ftol, "gtol": 1e-9},
    )
    best_x, best_f, ok, nit = res.x, float(res.fun), bool(res.success), int(res.nit)
    if not ok or not np.isfinite(best_f) or not np.all(np.isfinite(best_x)):
        start = best_x if np.all(np.isfinite(best_x)) else x0
        nm = minimize(
            lambda z: fun_and_grad(z)[0],
            start,
            method="Nelder-Mead",
            bounds=bounds,
            options={"maxiter": fallback_iter, "xatol": 1e-8, "fatol": 1e-12},
        )
        nit += int(nm.nit)
        if np.isfinite(nm.fun) and (not np.isfinite(best_f) or nm.fun <= best_f):
            best_x, best_f, ok = nm.x, float(nm.fun), bool(nm.success)
    if not np.isfinite(best_f):
        raise FloatingPointError("likelihood is not finite at any point tried")
    return np.asarray(best_x, dtype=np.float64), best_f, ok, nit


class CountingModel(Protocol):
    """What :func:`fit_time_scaled` reads and sets on BG/NBD and Pareto/NBD."""

    param_names: tuple[str, ...]
    penalizer: float
    max_iter: int


def fit_time_scaled(
    model: CountingModel,
    columns: dict[str, ArrayLike],
    weights: ArrayLike | None,
    *,
    make_data: Callable[[FloatArray, FloatArray, FloatArray, FloatArray], Any],
    loglik_and_grad: Callable[[FloatArray, Any], tuple[float, FloatArray]],
    x0: FloatArray,
    time_scaled: tuple[bool, ...],
    **minimize_options: Any,
) -> tuple[FloatArray, tuple[FloatArray, FloatArray, FloatArray, FloatArray]]:
    """The scale-penalise-optimise scaffolding of the purchase-count models.

    Both are scale-equivariant in time (the ``time_scaled`` parameters scale with the time unit,
    the shapes do not): they are fitted in units of the mean customer age, so the optimiser sees
    O(1) numbers whatever the caller's unit, and the penalty applies to the caller-unit values.
    Sets ``params_``, ``converged_``, ``n_iter_``, ``n_customers_`` and ``n_rows_`` on
    ``model``; returns the caller-unit parameters and the checked (x, t_x, T, weights).
    """
    if model.penalizer < 0:
        raise ValueError("penalizer must be >= 0")
    (x, tx, T_), w = fit_arrays(columns, weights)
    check_rft(x, tx, T_)
    scale = float(w @ T_ / w.sum())
    scale = scale if scale > 0 else 1.0
    data = make_data(x, tx / scale, T_ / scale, w)
    pen = float(model.penalizer)
    mult = np.where(np.array(time_scaled), scale, 1.0)  # scaled params -> caller-unit params

    def objective(log_p: FloatArray) -> tuple[float, FloatArray]:
        p = np.exp(log_p)
        ll, g = loglik_and_grad(p, data)
        nat = p * mult
        f = -ll / data.w_sum + pen * float(nat @ nat)
        return f, -g * p / data.w_sum + 2.0 * pen * nat * nat

    log_p, _, ok, nit = minimize_log_params(objective, x0, model.max_iter, **minimize_options)
    p = np.exp(log_p) * mult
    model.params_ = dict(zip(model.param_names, (float(v) for v in p), strict=True))
    model.converged_ = ok
    model.n_iter_ = nit
    model.n_customers_ = float(w.sum())
    model.n_rows_ = int(x.shape[0])
    return p, (x, tx, T_, w)
