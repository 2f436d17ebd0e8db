"""Probabilistic customer-value models: BG/NBD and Pareto/NBD (purchase count, P(alive)) and
Gamma-Gamma (spend).

Why our own implementation instead of the `lifetimes` package: lifetimes is unmaintained, needs
pandas + autograd at run time, and fits one likelihood term per customer. Here the likelihoods
are written in log space (BG/NBD with analytic gradients) and accept *weights* (counts of
identical (x, t_x, T) triples), so a million customers on daily data fit in O(distinct triples),
typically well under a second for BG/NBD. `lifetimes` stays a dev dependency: tests check these
models against it and against the published CDNOW figures.

Conventions (as in Fader, Hardie & Lee 2005 and lifetimes):
- ``frequency`` x: number of repeat purchases (purchase periods after the first one);
- ``recency`` t_x: time between the first and the last purchase;
- ``T``: time between the first purchase and the end of the observation period;
all in one time unit of the caller's choice (the unit only rescales ``alpha``).

All estimators follow scikit-learn's shape: configuration in ``__init__``, learned state in
attributes ending in ``_``, ``fit`` returns ``self``, predictions are pure functions of the
fitted parameters. Heavy imports (scipy) happen inside functions so that importing this module
from Dagster definitions stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]

# Bounds on the log-parameters during optimisation. Times and spends are rescaled to O(1) before
# fitting, so these bounds only stop degenerate data (e.g. nobody ever repeats) from running
# the optimiser to infinity; they are far outside any identified solution.
_LOG_BOUND = 20.0
# BG/NBD predictions divide by (a - 1), Pareto/NBD's by (s - 1); both singularities are
# removable.
_A_ONE_GUARD = 1e-7
# Upper bound on ln r and ln s for the Pareto/NBD (22026: rate CV 0.7%; see ParetoNBDModel.fit)
# and the cap on its Nelder-Mead fallback (each step evaluates the likelihood ~1-2 times).
_PNBD_LOG_SHAPE_MAX = 10.0
_PNBD_FALLBACK_ITER = 300


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


def _as_float(values: ArrayLike, name: str) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim > 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def _fit_arrays(
    columns: dict[str, ArrayLike], weights: ArrayLike | None
) -> tuple[list[FloatArray], FloatArray]:
    """Validate fit inputs: 1-d, same length, finite; weights positive. Drops zero weights."""
    arrays = [np.atleast_1d(_as_float(v, k)) for k, v in columns.items()]
    n = arrays[0].shape[0]
    if n == 0:
        raise ValueError("cannot fit on zero rows")
    if any(a.shape[0] != n for a in arrays):
        raise ValueError("all inputs must have the same length")
    w = np.ones(n) if weights is None else np.atleast_1d(_as_float(weights, "weights"))
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


def _check_rft(x: FloatArray, tx: FloatArray, T: FloatArray) -> None:
    """Purchase-count models need integer x >= 0 and 0 <= t_x <= T."""
    if np.any(x < 0) or np.any(x != np.round(x)):
        raise ValueError("frequency must be non-negative integers")
    if np.any(tx < 0) or np.any(T < 0) or np.any(tx > T * (1 + 1e-12)):
        raise ValueError("need 0 <= recency <= T")


def _single_threaded_blas() -> AbstractContextManager[Any]:
    """Limit BLAS to one thread while fitting.

    The objective's dot products and L-BFGS-B's tiny BLAS calls are latency-bound: OpenBLAS
    thread hand-offs cost more than they save (measured on 2 cores: a 1M-customer fit takes
    0.54 s single-threaded vs 0.7-0.9 s with twice the CPU; a 40-row fit 3 ms vs up to 200 ms
    when other processes compete for the cores). threadpoolctl comes with scikit-learn.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        return nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _minimize(
    fun_and_grad: Callable[[FloatArray], tuple[float, FloatArray]],
    x0: FloatArray,
    max_iter: int,
    bounds: list[tuple[float, float]] | None = None,
    ftol: float = 1e-13,
    fallback_iter: int | None = None,
) -> tuple[FloatArray, float, bool, int]:
    """Minimise over log-parameters: L-BFGS-B with analytic gradient, Nelder-Mead as a fallback.

    Returns (log_params, objective, converged, iterations). Never returns non-finite values:
    the objectives are finite everywhere inside the bounds (default +-_LOG_BOUND each).
    ``fallback_iter`` caps the Nelder-Mead iterations (default ``max_iter``).
    """
    if bounds is None:
        bounds = [(-_LOG_BOUND, _LOG_BOUND)] * len(x0)
    with _single_threaded_blas():
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


# --------------------------------------------------------------------------------------------
# BG/NBD
# --------------------------------------------------------------------------------------------


class _BGData:
    """Fit data prepared once: terms that depend only on x are computed per distinct x."""

    def __init__(self, x: FloatArray, tx: FloatArray, T: FloatArray, w: FloatArray) -> None:
        self.x, self.tx, self.T, self.w = x, tx, T, w
        self.ux, self.inv = np.unique(x, return_inverse=True)
        self.w_sum = float(w.sum())
        # weight per distinct x (x-only terms are summed once per distinct x)
        self.w_by_x = np.bincount(self.inv, weights=w, minlength=self.ux.shape[0])
        self.has_repeat = self.ux > 0
        self.x_rep = x > 0
        self.wx = w * x


def _bgnbd_loglik_terms(
    r: float, alpha: float, a: float, b: float, d: _BGData, grad: bool
) -> tuple[float, FloatArray | None]:
    """Weighted total log-likelihood (and its gradient in natural params) of the BG/NBD.

    Per customer (Fader, Hardie & Lee 2005, eq. 6), in log space:
        A1 = lnG(r+x) - lnG(r) + r ln(alpha)
        A2 = lnB(a, b+x) - lnB(a, b) - (r+x) ln(alpha+T)
        A3 = lnB(a+1, b+x-1) - lnB(a, b) - (r+x) ln(alpha+t_x)      (x > 0 only)
        LL = A1 + logaddexp(A2, A3) = A1 + A2 + softplus(A3 - A2)
    Terms that depend on x only are evaluated once per distinct x; the per-row work is two
    logs, one exp and one log1p, which keeps a fit on ~10^5-10^6 distinct triples fast.
    """
    from scipy.special import betaln, digamma, gammaln

    ux, rep = d.ux, d.has_repeat
    b_rep = np.where(rep, b + ux - 1.0, 1.0)  # b + x - 1, kept positive where unused
    lb_ab = betaln(a, b)
    a1 = gammaln(r + ux) - gammaln(r) + r * np.log(alpha)
    b2 = betaln(a, b + ux) - lb_ab
    # ln[a/(b+x-1)]: the "dropped out right after the last purchase" branch relative to A2
    c3 = np.where(rep, np.log(a) - np.log(b_rep), 0.0)

    log_aT = np.log(alpha + d.T)
    log_atx = np.log(alpha + d.tx)
    gap = log_aT - log_atx  # >= 0
    rx = r + d.x
    # delta = A3 - A2; -inf for x == 0, where the branch does not exist
    delta = np.where(d.x_rep, c3[d.inv] + rx * gap, -np.inf)
    e = np.exp(-np.abs(delta))
    softplus = np.maximum(delta, 0.0) + np.log1p(e)
    total = float(d.w_by_x @ (a1 + b2) - r * (d.w @ log_aT) - d.wx @ log_aT + d.w @ softplus)
    if not grad:
        return total, None

    w3 = np.where(delta >= 0.0, 1.0, e) / (1.0 + e)  # posterior P(dropped out), stable expit
    ww3 = d.w * w3
    s3 = np.bincount(d.inv, weights=ww3, minlength=ux.shape[0])
    s2 = d.w_by_x - s3

    psi_ab = digamma(a + b)
    psi_abx = digamma(a + b + ux)
    d_r = d.w_by_x @ (digamma(r + ux) - digamma(r) + np.log(alpha)) - d.w @ log_aT + ww3 @ gap
    inv_aT = 1.0 / (alpha + d.T)
    inv_atx = 1.0 / (alpha + d.tx)
    d_alpha = d.w_sum * r / alpha - (d.w * rx) @ (inv_aT + w3 * (inv_atx - inv_aT))
    db2_da = psi_ab - psi_abx
    db2_db = digamma(b + ux) - psi_abx - digamma(b) + psi_ab
    db3_da = np.where(rep, 1.0 / a + psi_ab - psi_abx, 0.0)
    db3_db = np.where(rep, digamma(b_rep) - psi_abx - digamma(b) + psi_ab, 0.0)
    d_a = s2 @ db2_da + s3 @ db3_da
    d_b = s2 @ db2_db + s3 @ db3_db
    return total, np.array([d_r, d_alpha, d_a, d_b])


def _hyp_decay(
    A: FloatArray, B: FloatArray, C: FloatArray, t: FloatArray, s: FloatArray
) -> FloatArray:
    """(1-z)**A * 2F1(A, B; C; z) with z = t/(s+t), evaluated stably.

    The direct product can overflow (2F1 grows like (1-z)**-A near z=1, i.e. for long
    horizons or many purchases). Euler's transformation gives the same quantity as
    (1-z)**(C-B) * 2F1(C-A, C-B; C; z); Pfaff's 2F1(A, C-B; C; -t/s) is the last resort.
    """
    from scipy.special import hyp2f1

    with np.errstate(all="ignore"):
        log1mz = np.log(s) - np.log(s + t)
        z = t / (s + t)
        h = hyp2f1(A, B, C, z)
        direct = np.exp(np.log(h) + A * log1mz)
        ok = np.isfinite(direct) & (h > 0)
        if np.all(ok):
            return direct
        euler = np.exp((C - B) * log1mz) * hyp2f1(C - A, C - B, C, z)
        out = np.where(ok, direct, euler)
        bad = ~np.isfinite(out)
        if np.any(bad):
            pfaff = hyp2f1(A, C - B, C, -t / s)
            out = np.where(bad, pfaff, out)
    return out


def _alive_part_quadrature(
    r: float,
    alpha: float,
    a: float,
    b: float,
    t: FloatArray,
    x: FloatArray,
    T: FloatArray,
    lower: FloatArray,
    upper: FloatArray,
    nodes: int = 256,
) -> FloatArray:
    """E[purchases in t | alive] by quadrature, for the rare rows where 2F1 is unreliable.

    Given alive, lambda ~ Gamma(r+x, alpha+T) and p ~ Beta(a, b+x) independently, and
    E[Y | lambda, p] = (1 - exp(-lambda p t)) / p. Integrating lambda out exactly leaves
    g(p) = (1 - (1 + p t/s)**-(r+x)) / p, averaged over Beta quantiles (midpoint rule in
    probability space: robust for any a, b, accurate to ~1/nodes of the range of g).
    """
    from scipy.special import betaincinv

    u = (np.arange(nodes) + 0.5) / nodes
    A = (r + x)[:, None]
    k = (t / (alpha + T))[:, None]
    with np.errstate(all="ignore"):
        p = betaincinv(a, (b + x)[:, None], u[None, :])
        g = -np.expm1(-A * np.log1p(p * k)) / p
        g = np.where(np.isfinite(g) & (p > 0), g, A * k)  # p -> 0 limit: no dropout
    return np.clip(g.mean(axis=1), lower, upper)


class BetaGeoModel:
    """BG/NBD model (Fader, Hardie & Lee 2005): Poisson purchasing while alive, geometric dropout.

    Heterogeneity: purchase rate lambda ~ Gamma(r, alpha); dropout probability after each
    purchase p ~ Beta(a, b). Parameters are estimated by maximum likelihood over log-parameters.

    ``penalizer`` adds ``penalizer * sum(params**2)`` to the mean negative log-likelihood (the
    lifetimes convention). It is not unit-free: alpha is in the caller's time unit, so a
    penalizer tuned for weeks is far too strong for days. 0.0 is plain maximum likelihood.
    """

    param_names = ("r", "alpha", "a", "b")

    def __init__(self, penalizer: float = 0.0, max_iter: int = 2000) -> None:
        self.penalizer = penalizer
        self.max_iter = max_iter

    # ---- fitting -----------------------------------------------------------------------------
    def fit(
        self,
        frequency: ArrayLike,
        recency: ArrayLike,
        T: ArrayLike,
        weights: ArrayLike | None = None,
    ) -> BetaGeoModel:
        """Fit by maximum likelihood; ``weights`` are counts of identical (x, t_x, T) rows."""
        if self.penalizer < 0:
            raise ValueError("penalizer must be >= 0")
        (x, tx, T_), w = _fit_arrays({"frequency": frequency, "recency": recency, "T": T}, weights)
        _check_rft(x, tx, T_)
        # BG/NBD is scale-equivariant in time (alpha scales, r/a/b do not): fit in units of the
        # mean customer age so the optimiser sees O(1) numbers whatever the caller's unit.
        scale = float(w @ T_ / w.sum())
        scale = scale if scale > 0 else 1.0
        data = _BGData(x, tx / scale, T_ / scale, w)
        pen = float(self.penalizer)
        mult = np.array([1.0, scale, 1.0, 1.0])  # scaled params -> caller-unit params

        def objective(log_p: FloatArray) -> tuple[float, FloatArray]:
            p = np.exp(log_p)
            ll, g = _bgnbd_loglik_terms(*p, data, grad=True)
            assert g is not None
            nat = p * mult
            f = -ll / data.w_sum + pen * float(nat @ nat)
            grad = -g * p / data.w_sum + 2.0 * pen * nat * nat
            return f, grad

        # Start near typical retail fits (r<1, a<1<b); alpha=1 is the mean customer age.
        x0 = np.log(np.array([0.5, 1.0, 0.8, 2.5]))
        log_p, _, ok, nit = _minimize(objective, x0, self.max_iter)
        p = np.exp(log_p) * mult
        self.params_ = dict(zip(self.param_names, (float(v) for v in p), strict=True))
        self.converged_ = ok
        self.n_iter_ = nit
        self.n_customers_ = float(w.sum())
        self.n_rows_ = int(x.shape[0])
        self.log_likelihood_ = float(_bgnbd_loglik_terms(*p, _BGData(x, tx, T_, w), grad=False)[0])
        return self

    def log_likelihood(
        self,
        frequency: ArrayLike,
        recency: ArrayLike,
        T: ArrayLike,
        weights: ArrayLike | None = None,
    ) -> float:
        """Total (weighted) log-likelihood of data under the fitted parameters (for holdouts)."""
        (x, tx, T_), w = _fit_arrays({"frequency": frequency, "recency": recency, "T": T}, weights)
        return float(_bgnbd_loglik_terms(*self._params(), _BGData(x, tx, T_, w), grad=False)[0])

    # ---- predictions -------------------------------------------------------------------------
    def _params(self) -> tuple[float, float, float, float]:
        if not hasattr(self, "params_"):
            raise RuntimeError("model is not fitted; call fit() first")
        p = self.params_
        return p["r"], p["alpha"], p["a"], p["b"]

    def _log_odds_dead(self, x: FloatArray, tx: FloatArray, T: FloatArray) -> FloatArray:
        """ln[P(dead at T)/P(alive at T)] = ln(a/(b+x-1)) + (r+x) ln((alpha+T)/(alpha+t_x))."""
        r, alpha, a, b = self._params()
        rep = x > 0
        with np.errstate(all="ignore"):
            lo = (
                np.log(a)
                - np.log(np.where(rep, b + x - 1.0, 1.0))
                + (r + x) * (np.log(alpha + T) - np.log(alpha + tx))
            )
        return np.where(rep, lo, -np.inf)

    def conditional_probability_alive(
        self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        """P(alive at T | x, t_x, T). Exactly 1 for x == 0 (dropout only follows a purchase)."""
        x, tx, T_ = np.broadcast_arrays(
            _as_float(frequency, "frequency"), _as_float(recency, "recency"), _as_float(T, "T")
        )
        return np.exp(-np.logaddexp(0.0, self._log_odds_dead(x, tx, T_)))

    def conditional_expected_number_of_purchases_up_to_time(
        self, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        """E[purchases in (T, T+t] | x, t_x, T] (FHL 2005, eq. 10)."""
        r, alpha, a, b = self._params()
        t_, x, tx, T_ = np.broadcast_arrays(
            _as_float(t, "t"),
            _as_float(frequency, "frequency"),
            _as_float(recency, "recency"),
            _as_float(T, "T"),
        )
        if abs(a - 1.0) < _A_ONE_GUARD:  # removable singularity: step just off a == 1
            a = 1.0 + _A_ONE_GUARD if a >= 1.0 else 1.0 - _A_ONE_GUARD
        A, B, C, s = r + x, b + x, a + b + x - 1.0, alpha + T_
        with np.errstate(all="ignore"):
            alive_part = (C / (a - 1.0)) * (1.0 - _hyp_decay(A, B, C, t_, s))
            # E[purchases | alive] lies between the p=1 and p=0 (no dropout) cases:
            # 1 - (s/(s+t))**A <= value <= A*t/s. Outside (or non-finite) means the closed
            # form lost precision, which happens only for degenerate parameter values.
            lower = -np.expm1(-A * np.log1p(t_ / s))
            upper = A * t_ / s
            bad = ~((alive_part >= lower * (1 - 1e-9)) & (alive_part <= upper * (1 + 1e-9)))
        if np.any(bad):
            alive_part = np.where(bad, 0.0, alive_part)
            alive_part[bad] = _alive_part_quadrature(
                r, alpha, a, b, t_[bad], x[bad], T_[bad], lower[bad], upper[bad]
            )
        p_alive = np.exp(-np.logaddexp(0.0, self._log_odds_dead(x, tx, T_)))
        return p_alive * alive_part + 0.0  # + 0.0 turns -0.0 into 0.0

    def probability_no_purchase_up_to_time(
        self, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        """P(no purchase in (T, T+t] | x, t_x, T): the churn score.

        = (1 - P(alive)) + P(alive) * ((alpha+T)/(alpha+T+t))**(r+x). Unlike 1 - P(alive), this
        is informative for x == 0 customers (P(alive) == 1 for them by construction).
        """
        r, alpha, _, _ = self._params()
        t_, x, tx, T_ = np.broadcast_arrays(
            _as_float(t, "t"),
            _as_float(frequency, "frequency"),
            _as_float(recency, "recency"),
            _as_float(T, "T"),
        )
        p_alive = np.exp(-np.logaddexp(0.0, self._log_odds_dead(x, tx, T_)))
        quiet = np.exp((r + x) * (np.log(alpha + T_) - np.log(alpha + T_ + t_)))
        return np.clip(1.0 - p_alive + p_alive * quiet, 0.0, 1.0)

    def expected_number_of_purchases_up_to_time(self, t: ArrayLike) -> FloatArray:
        """E[X(t)] for a customer just acquired (unconditional; FHL 2005, eq. 9)."""
        t_ = _as_float(t, "t")
        zero = np.zeros_like(t_)
        return self.conditional_expected_number_of_purchases_up_to_time(t_, zero, zero, zero)


# --------------------------------------------------------------------------------------------
# Pareto/NBD
# --------------------------------------------------------------------------------------------


# ln 2F1(a, b; a+1; z) (see _log_hyp2f1_tail): up to _SERIES_Z a positive power series
# converges to double precision within _SERIES_TERMS terms (0.75**140 ~ 3e-18); above it a composite
# Gauss-Legendre quadrature of the integral representation (_QUAD_PANELS x _QUAD_NODES points).
_SERIES_Z = 0.75
_SERIES_TERMS = 140
_QUAD_PANELS = 32
_QUAD_NODES = 8
# The fit's objective and gradient come from one coarser rule (~2e-8 in the log-likelihood; the
# error is a smooth function of the parameters, so it cannot mislead the optimiser: fitted
# parameters agree with the 32-panel rule to ~1e-9). log_likelihood_ uses the accurate one.
_QUAD_PANELS_FIT = 16


def _hyp2f1_tail_series(a: FloatArray, b: FloatArray, z: FloatArray) -> FloatArray:
    """ln 2F1(a, b; a+1; z) for z <= 0.75 and b < a+1 by a positive series, term ratio <= z.

    b <= 1: the direct series, terms (b)_k/k! * a/(a+k) z**k. b > 1: Euler's transformation
    (1-z)**(1-b) * 2F1(1, a+1-b; a+1; z), terms (a+1-b)_k/(a+1)_k z**k.
    """
    euler = b > 1.0
    # term_k = coef_k * z**k with coef_k / coef_(k-1) = (num + k - 1) / (den + k); the direct
    # series' extra factor a/(a+k) is applied when summing.
    num = np.where(euler, a + 1.0 - b, b)
    den = np.where(euler, a, 0.0)
    extra = np.where(euler, 0.0, a)
    total = np.ones_like(z)
    # Terms shrink at least geometrically (ratio <= z), so an element whose last term no
    # longer matters is done: every few terms the loop drops finished elements and carries on
    # with the rest (small z needs ~10 terms, z = 0.75 up to ~140).
    live = np.arange(z.shape[0])
    term = np.ones_like(z)
    lz, lnum, lden, lextra, leuler = z, num, den, extra, euler
    for k in range(1, _SERIES_TERMS + 1):
        term = term * ((lnum + (k - 1.0)) / (lden + k)) * lz
        step = np.where(leuler, term, term * lextra / (lextra + k))
        total[live] += step
        if k % 8 == 0 or k == _SERIES_TERMS:
            going = step > 1e-17 * total[live]
            if not np.any(going):
                break
            if not np.all(going):
                live, term = live[going], term[going]
                lz, lnum, lden = lz[going], lnum[going], lden[going]
                lextra, leuler = lextra[going], leuler[going]
    return np.log(total) + np.where(euler, (1.0 - b) * np.log1p(-z), 0.0)


def _hyp2f1_tail_quadrature(
    a: FloatArray, b: FloatArray, log1mz: FloatArray, panels: int = _QUAD_PANELS
) -> FloatArray:
    """ln 2F1(a, b; a+1; z) from its integral a * int_0^inf e^(-a u) (1 - z e^(-u))**-b du.

    With eps = 1 - z the integrand has a boundary layer of width ~eps at u = 0, which is what
    defeats closed forms near z = 1. The substitution u = eps (e^w - 1) turns it into
    ~e^((1-b) w) up to a double-exponential cut-off near w = ln(1/(a eps)): an exponential
    (decay rate b-1 when b > 1, growth <= 1 otherwise) that fixed-width panels of 8-point
    Gauss-Legendre integrate to ~1e-12 with 32 panels (checked against a 40-digit series and
    against much finer panels). The range stops where e^(-a u) < e^-60, or where
    e^((1-b) w) < e^-50.
    """
    from numpy.polynomial.legendre import leggauss

    x, weights = leggauss(_QUAD_NODES)
    eps = np.exp(log1mz)
    upper = np.log1p((60.0 / a) / eps)
    upper = np.minimum(upper, 50.0 / np.maximum(b - 1.0, 1e-300))
    width = upper / panels
    offsets = (np.arange(panels)[:, None] + 0.5 * (x[None, :] + 1.0)).ravel()
    w = width[:, None] * offsets[None, :]
    u = eps[:, None] * np.expm1(w)
    base = -np.expm1(-u) + eps[:, None] * np.exp(-u)  # 1 - z e^(-u), without cancellation
    log_f = w - a[:, None] * u - b[:, None] * np.log(base)
    log_f = log_f + np.log(0.5 * width)[:, None] + np.tile(np.log(weights), panels)
    peak = log_f.max(axis=1)
    return np.log(a) + log1mz + peak + np.log(np.exp(log_f - peak[:, None]).sum(axis=1))


def _log_hyp2f1_tail(
    a: FloatArray, b: FloatArray, z: FloatArray, log1mz: FloatArray, panels: int = _QUAD_PANELS
) -> FloatArray:
    """ln 2F1(a, b; a+1; z) for a > 0, 0 < b < a+1, 0 <= z < 1, with ln(1-z) supplied exactly.

    All series terms are positive, so the hazard is z near 1, where 2F1 grows like
    (1-z)**(1-b) (b > 1) or -ln(1-z) (b == 1). scipy's hyp2f1 is not used: near z = 1 it
    returns NaN when c-a-b is an integer and non-finite or inexact values for ~10% of random
    b < 1 cases (measured), both of which the optimiser visits. Instead: a positive series for
    z <= 0.75, the quadrature of :func:`_hyp2f1_tail_quadrature` above. Both agree with a
    40-digit reference to ~1e-13 in the log (tests).
    """
    a, b, z, log1mz = (np.array(v, dtype=np.float64) for v in np.broadcast_arrays(a, b, z, log1mz))
    out = np.empty(a.shape)
    small = z <= _SERIES_Z
    if np.any(small):
        out[small] = _hyp2f1_tail_series(a[small], b[small], z[small])
    big = ~small
    if np.any(big):
        with np.errstate(under="ignore"):
            out[big] = _hyp2f1_tail_quadrature(a[big], b[big], log1mz[big], panels)
    return out


def _pnbd_log_tail(
    r: ArrayLike,
    x: ArrayLike,
    alpha: ArrayLike,
    s: float,
    beta: ArrayLike,
    t: ArrayLike,
    panels: int = _QUAD_PANELS,
) -> FloatArray:
    """ln[alpha**r beta**s G(t)], G(t) = integral over tau > t of
    (alpha+tau)**-(r+x) * (beta+tau)**-(s+1).

    G is the closed form behind the Pareto/NBD likelihood's "died between t_x and T" term
    (Fader & Hardie 2005, "A note on deriving the Pareto/NBD model"):
        G(t) = 2F1(a, b; a+1; |alpha-beta| / (m+t)) / (a (m+t)**a),  a = r+s+x, m = max(alpha, beta)
    with b = s+1 when alpha >= beta and b = r+x otherwise (so z < 1 always). The prefactor
    alpha**r beta**s is folded in as r ln(alpha/(m+t)) + s ln(beta/(m+t)) - x ln(m+t) through
    log1p: with large s (nearly homogeneous dropout) s ln(beta) and -s ln(beta+t) are each huge
    and cancel; computed separately they would leave rounding noise larger than the likelihood
    differences the optimiser needs. ln(1-z) = -log1p((m-min)/(min+t)) is exact as well.
    """
    r_, x_, alpha_, beta_, t_ = np.broadcast_arrays(
        *(np.asarray(v, dtype=np.float64) for v in (r, x, alpha, beta, t))
    )
    a = r_ + x_ + s
    alpha_big = alpha_ >= beta_
    m = np.where(alpha_big, alpha_, beta_)
    lo = np.where(alpha_big, beta_, alpha_)
    b = np.where(alpha_big, s + 1.0, r_ + x_)
    z = (m - lo) / (m + t_)
    log1mz = -np.log1p((m - lo) / (lo + t_))
    prefactor = (
        -r_ * np.log1p((m - alpha_ + t_) / alpha_)
        - s * np.log1p((m - beta_ + t_) / beta_)
        - x_ * np.log(m + t_)
    )
    return _log_hyp2f1_tail(a, b, z, log1mz, panels) - np.log(a) + prefactor


def _unique_rows(*columns: FloatArray) -> tuple[list[FloatArray], NDArray[np.intp]]:
    """Distinct rows of equally long 1-d arrays and the inverse index (numpy lexsort)."""
    cols = [np.ravel(c) for c in columns]
    n = cols[0].shape[0]
    if n == 0:
        return [c.copy() for c in cols], np.zeros(0, dtype=np.intp)
    order = np.lexsort(cols[::-1])
    changed = np.zeros(n, dtype=bool)
    changed[0] = True
    for c in cols:
        sc = c[order]
        changed[1:] |= sc[1:] != sc[:-1]
    group = np.cumsum(changed) - 1
    inverse = np.empty(n, dtype=np.intp)
    inverse[order] = group
    firsts = order[changed]
    return [c[firsts] for c in cols], inverse


def _pnbd_log_tail_dedup(
    r: ArrayLike, x: FloatArray, alpha: ArrayLike, s: float, beta: ArrayLike, t: FloatArray
) -> FloatArray:
    """:func:`_pnbd_log_tail` evaluated once per distinct (r, x, alpha, beta, t) row.

    Scoring a million customers touches far fewer distinct (x, t) pairs (every one-time buyer
    has t_x = 0), and each pair may need the 256-point quadrature."""
    arrays = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (r, x, alpha, beta, t)))
    shape = arrays[0].shape
    if arrays[0].size < 64:
        return _pnbd_log_tail(*arrays[:3], s, *arrays[3:])
    uniq, inverse = _unique_rows(*arrays)
    ur, ux, ua, ub, ut = uniq
    return _pnbd_log_tail(ur, ux, ua, s, ub, ut)[inverse].reshape(shape)


def _log_diff(log_hi: FloatArray, log_lo: FloatArray) -> FloatArray:
    """ln(exp(log_hi) - exp(log_lo)); -inf where the difference is not positive (t_x == T)."""
    gap = log_lo - log_hi
    with np.errstate(all="ignore"):
        out = log_hi + np.log(-np.expm1(gap))
    return np.where(gap < 0.0, out, -np.inf)


def _pnbd_branches(
    r: ArrayLike,
    alpha: ArrayLike,
    s: float,
    beta: ArrayLike,
    x: ArrayLike,
    log_g_tx: FloatArray,
    log_g_T: FloatArray,
    T: ArrayLike,
) -> tuple[FloatArray, FloatArray]:
    """The two branches of the Pareto/NBD likelihood (log space, stable).

    L = Gamma(r+x)/Gamma(r) * (exp(alive) + exp(died)), where
        alive = -r ln(1+T/alpha) - s ln(1+T/beta) - x ln(alpha+T)   (still alive at T)
        died  = ln s + ln(alpha**r beta**s (G(t_x) - G(T)))          (died in (t_x, T])
    """
    alpha_, beta_, T_ = (np.asarray(v, dtype=np.float64) for v in (alpha, beta, T))
    alive = (
        -np.asarray(r) * np.log1p(T_ / alpha_)
        - s * np.log1p(T_ / beta_)
        - np.asarray(x) * np.log(alpha_ + T_)
    )
    died = np.log(s) + _log_diff(log_g_tx, log_g_T)
    return alive, died


class _PNBDData:
    """Fit data prepared once: G(t) depends on (x, t) only, so it is evaluated per distinct
    (x, t_x) and (x, T) pair, far fewer than (x, t_x, T) triples on daily data."""

    def __init__(self, x: FloatArray, tx: FloatArray, T: FloatArray, w: FloatArray) -> None:
        self.x, self.T, self.w = x, T, w
        self.w_sum = float(w.sum())
        self.ux, self.inv = np.unique(x, return_inverse=True)
        self.w_by_x = np.bincount(self.inv, weights=w, minlength=self.ux.shape[0])
        pairs_tx, self.inv_tx = np.unique(np.column_stack([x, tx]), axis=0, return_inverse=True)
        pairs_T, self.inv_T = np.unique(np.column_stack([x, T]), axis=0, return_inverse=True)
        self.inv_tx, self.inv_T = self.inv_tx.ravel(), self.inv_T.ravel()
        self.px_tx, self.pt_tx = pairs_tx[:, 0], pairs_tx[:, 1]
        self.px_T, self.pt_T = pairs_T[:, 0], pairs_T[:, 1]


def _pnbd_loglik(
    r: float, alpha: float, s: float, beta: float, d: _PNBDData, panels: int = _QUAD_PANELS
) -> float:
    """Weighted total Pareto/NBD log-likelihood (log-sum-exp of the two branches)."""
    from scipy.special import gammaln

    log_g_tx = _pnbd_log_tail(r, d.px_tx, alpha, s, beta, d.pt_tx, panels)[d.inv_tx]
    log_g_T = _pnbd_log_tail(r, d.px_T, alpha, s, beta, d.pt_T, panels)[d.inv_T]
    alive, died = _pnbd_branches(r, alpha, s, beta, d.x, log_g_tx, log_g_T, d.T)
    per_x = gammaln(r + d.ux) - gammaln(r)
    return float(d.w_by_x @ per_x) + float(d.w @ np.logaddexp(alive, died))


_MOMENT_CHUNK = 8192  # pairs per quadrature block: bounds memory at ~8k x 256 nodes


def _pnbd_tail_moments(
    r: float, x: FloatArray, alpha: float, s: float, beta: float, t: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """ln G^(t) = ln[alpha**r beta**s G(t)] and its gradient in (r, alpha, s, beta), by quadrature.

    d ln G^ / d theta = E[d ln h / d theta] under the density proportional to the integrand
    h(tau) = alpha**r beta**s (alpha+tau)**-(r+x) (beta+tau)**-(s+1) on (t, inf), with
        d ln h / dr = -ln(1 + tau/alpha)      d ln h / dalpha = r/alpha - (r+x)/(alpha+tau)
        d ln h / ds = -ln(1 + tau/beta)       d ln h / dbeta  = s/beta - (s+1)/(beta+tau).
    The nodes of :func:`_hyp2f1_tail_quadrature` are points tau (m + tau = (m+t) e^u) weighted
    by h, so one pass gives the value and all four expectations: an analytic gradient for the
    cost of one likelihood, instead of 8 more for finite differences. Used by the fit, where
    value and gradient come from the same rule (_QUAD_PANELS_FIT panels).
    """
    from numpy.polynomial.legendre import leggauss

    nodes, weights = leggauss(_QUAD_NODES)
    offsets = (np.arange(_QUAD_PANELS_FIT)[:, None] + 0.5 * (nodes[None, :] + 1.0)).ravel()
    log_weights = np.tile(np.log(weights), _QUAD_PANELS_FIT)
    value = np.empty(x.shape)
    grad = np.empty((x.shape[0], 4))
    alpha_big = alpha >= beta
    m, lo = (alpha, beta) if alpha_big else (beta, alpha)
    for start in range(0, x.shape[0], _MOMENT_CHUNK):
        xs, ts = x[start : start + _MOMENT_CHUNK], t[start : start + _MOMENT_CHUNK]
        a = r + xs + s
        b = np.full_like(xs, s + 1.0) if alpha_big else r + xs
        log1mz = -np.log1p((m - lo) / (lo + ts))
        eps = np.exp(log1mz)
        upper = np.minimum(np.log1p((60.0 / a) / eps), 50.0 / np.maximum(b - 1.0, 1e-300))
        width = upper / _QUAD_PANELS_FIT
        w = width[:, None] * offsets[None, :]
        u = eps[:, None] * np.expm1(w)
        base = -np.expm1(-u) + eps[:, None] * np.exp(-u)
        log_f = w - a[:, None] * u - b[:, None] * np.log(base)
        log_f = log_f + np.log(0.5 * width)[:, None] + log_weights
        peak = log_f.max(axis=1)
        f = np.exp(log_f - peak[:, None])
        total = f.sum(axis=1)
        mt = (m + ts)[:, None]
        m_tau = mt * np.exp(u)  # m + tau
        lo_tau = (lo + ts)[:, None] + mt * np.expm1(u)  # lo + tau, without cancellation
        alpha_tau, beta_tau = (m_tau, lo_tau) if alpha_big else (lo_tau, m_tau)
        prefactor = (
            -r * np.log1p((m - alpha + ts) / alpha)
            - s * np.log1p((m - beta + ts) / beta)
            - xs * np.log(m + ts)
        )
        value[start : start + _MOMENT_CHUNK] = log1mz + peak + np.log(total) + prefactor
        rows = grad[start : start + _MOMENT_CHUNK]
        rows[:, 0] = -(f * np.log(alpha_tau / alpha)).sum(axis=1) / total
        rows[:, 1] = r / alpha - (r + xs) * (f / alpha_tau).sum(axis=1) / total
        rows[:, 2] = -(f * np.log(beta_tau / beta)).sum(axis=1) / total
        rows[:, 3] = s / beta - (s + 1.0) * (f / beta_tau).sum(axis=1) / total
    return value, grad


def _pnbd_loglik_and_grad(
    r: float, alpha: float, s: float, beta: float, d: _PNBDData
) -> tuple[float, FloatArray]:
    """Weighted total log-likelihood and its gradient in (r, alpha, s, beta) (fit path)."""
    from scipy.special import digamma, gammaln

    g_tx, dg_tx = _pnbd_tail_moments(r, d.px_tx, alpha, s, beta, d.pt_tx)
    g_T, dg_T = _pnbd_tail_moments(r, d.px_T, alpha, s, beta, d.pt_T)
    g_tx, dg_tx, g_T, dg_T = g_tx[d.inv_tx], dg_tx[d.inv_tx], g_T[d.inv_T], dg_T[d.inv_T]
    alive, died = _pnbd_branches(r, alpha, s, beta, d.x, g_tx, g_T, d.T)
    total = np.logaddexp(alive, died)
    p_alive = np.exp(alive - total)
    T = d.T
    d_alive = np.column_stack(
        [
            -np.log1p(T / alpha),
            r * T / (alpha * (alpha + T)) - d.x / (alpha + T),
            -np.log1p(T / beta),
            s * T / (beta * (beta + T)),
        ]
    )
    # died = ln s + ln(G^(t_x) - G^(T)): its gradient is a weighted difference of the two
    # tails' gradients, q = G^(T)/G^(t_x) < 1
    with np.errstate(all="ignore"):
        q = np.exp(g_T - g_tx)[:, None]
        d_died = (dg_tx - q * dg_T) / (1.0 - q)
    d_died[:, 2] += 1.0 / s
    d_died = np.where(np.isfinite(d_died), d_died, 0.0)  # t_x == T: the branch has weight 0
    per_row = p_alive[:, None] * d_alive + (1.0 - p_alive)[:, None] * d_died
    grad = d.w @ per_row
    grad[0] += float(d.w_by_x @ (digamma(r + d.ux) - digamma(r)))
    ll = float(d.w_by_x @ (gammaln(r + d.ux) - gammaln(r))) + float(d.w @ total)
    return ll, grad


class ParetoNBDModel:
    """Pareto/NBD model (Schmittlein, Morrison & Colombo 1987): Poisson purchasing while alive,
    exponential lifetime.

    Heterogeneity: purchase rate lambda ~ Gamma(r, alpha), dropout rate mu ~ Gamma(s, beta).
    Unlike BG/NBD, a customer can drop out before repeating, so P(alive) < 1 also for one-time
    buyers. Maximum likelihood over log-parameters; the likelihood's hypergeometric term is
    evaluated in log space (see :func:`_pnbd_log_tail`). The gradient is analytic: expectations
    under the "died at tau" density, taken on the same quadrature nodes as the likelihood
    (:func:`_pnbd_tail_moments`), so a step costs one pass over the distinct (x, t) pairs.

    ``penalizer`` as in :class:`BetaGeoModel` (lifetimes' convention, not unit-free).
    """

    param_names = ("r", "alpha", "s", "beta")

    def __init__(self, penalizer: float = 0.0, max_iter: int = 2000) -> None:
        self.penalizer = penalizer
        self.max_iter = max_iter

    def fit(
        self,
        frequency: ArrayLike,
        recency: ArrayLike,
        T: ArrayLike,
        weights: ArrayLike | None = None,
    ) -> ParetoNBDModel:
        """Fit by maximum likelihood; ``weights`` are counts of identical (x, t_x, T) rows."""
        if self.penalizer < 0:
            raise ValueError("penalizer must be >= 0")
        (x, tx, T_), w = _fit_arrays({"frequency": frequency, "recency": recency, "T": T}, weights)
        _check_rft(x, tx, T_)
        # Scale-equivariant in time (alpha and beta scale): fit in units of the mean age.
        scale = float(w @ T_ / w.sum())
        scale = scale if scale > 0 else 1.0
        data = _PNBDData(x, tx / scale, T_ / scale, w)
        pen = float(self.penalizer)
        mult = np.array([1.0, scale, 1.0, scale])

        def objective(log_p: FloatArray) -> tuple[float, FloatArray]:
            p = np.exp(log_p)
            ll, g = _pnbd_loglik_and_grad(*p, data)
            nat = p * mult
            f = -ll / data.w_sum + pen * float(nat @ nat)
            return f, -g * p / data.w_sum + 2.0 * pen * nat * nat

        # r, s < 1 and alpha, beta of the order of the mean customer age are typical retail fits.
        x0 = np.log(np.array([0.5, 1.0, 0.5, 1.0]))
        # When purchase or dropout rates barely vary across customers the likelihood keeps
        # creeping up a ridge r, alpha -> infinity (or s, beta; the ratio fixed): cap r and s
        # where the rates' coefficient of variation 1/sqrt(shape) is below 1%, and stop on
        # relative gains under 1e-12. The Nelder-Mead fallback (after a line-search failure,
        # possible on such ridges) is capped too: each step costs a full quadrature pass.
        bounds = [(-_LOG_BOUND, _LOG_BOUND)] * 4
        bounds[0] = bounds[2] = (-_LOG_BOUND, _PNBD_LOG_SHAPE_MAX)
        log_p, _, ok, nit = _minimize(
            objective, x0, self.max_iter, bounds, ftol=1e-12, fallback_iter=_PNBD_FALLBACK_ITER
        )
        p = np.exp(log_p) * mult
        self.params_ = dict(zip(self.param_names, (float(v) for v in p), strict=True))
        self.converged_ = ok
        self.n_iter_ = nit
        self.n_customers_ = float(w.sum())
        self.n_rows_ = int(x.shape[0])
        self.log_likelihood_ = _pnbd_loglik(*p, _PNBDData(x, tx, T_, w))
        return self

    def log_likelihood(
        self,
        frequency: ArrayLike,
        recency: ArrayLike,
        T: ArrayLike,
        weights: ArrayLike | None = None,
    ) -> float:
        """Total (weighted) log-likelihood of data under the fitted parameters (for holdouts)."""
        (x, tx, T_), w = _fit_arrays({"frequency": frequency, "recency": recency, "T": T}, weights)
        return _pnbd_loglik(*self._params(), _PNBDData(x, tx, T_, w))

    # ---- predictions -------------------------------------------------------------------------
    def _params(self) -> tuple[float, float, float, float]:
        if not hasattr(self, "params_"):
            raise RuntimeError("model is not fitted; call fit() first")
        p = self.params_
        return p["r"], p["alpha"], p["s"], p["beta"]

    def _log_p_alive(self, x: FloatArray, tx: FloatArray, T: FloatArray) -> FloatArray:
        r, alpha, s, beta = self._params()
        log_g_tx = _pnbd_log_tail_dedup(r, x, alpha, s, beta, tx)
        log_g_T = _pnbd_log_tail_dedup(r, x, alpha, s, beta, T)
        alive, died = _pnbd_branches(r, alpha, s, beta, x, log_g_tx, log_g_T, T)
        return alive - np.logaddexp(alive, died)

    def conditional_probability_alive(
        self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        """P(alive at T | x, t_x, T): the "alive" branch's share of the likelihood."""
        x, tx, T_ = np.broadcast_arrays(
            _as_float(frequency, "frequency"), _as_float(recency, "recency"), _as_float(T, "T")
        )
        return np.clip(np.exp(self._log_p_alive(x, tx, T_)), 0.0, 1.0)

    def conditional_expected_number_of_purchases_up_to_time(
        self, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        """E[purchases in (T, T+t] | x, t_x, T] (Schmittlein et al. 1987; F&H 2005 note eq. 22).

        = P(alive) * (r+x)(beta+T) / ((alpha+T)(s-1)) * (1 - ((beta+T)/(beta+T+t))**(s-1)),
        with the bracket over (s-1) written as -expm1((s-1) q)/(s-1), q = ln((beta+T)/(beta+T+t)),
        which stays exact through the removable singularity at s == 1 (limit: -q).
        """
        r, alpha, s, beta = self._params()
        t_, x, tx, T_ = np.broadcast_arrays(
            _as_float(t, "t"),
            _as_float(frequency, "frequency"),
            _as_float(recency, "recency"),
            _as_float(T, "T"),
        )
        q = np.log(beta + T_) - np.log(beta + T_ + t_)
        near_one = abs(s - 1.0) < _A_ONE_GUARD
        bracket = -q if near_one else -np.expm1((s - 1.0) * q) / (s - 1.0)
        rate = (r + x) * (beta + T_) / (alpha + T_)
        return np.exp(self._log_p_alive(x, tx, T_)) * rate * bracket + 0.0

    def probability_no_purchase_up_to_time(
        self, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        """P(no purchase in (T, T+t] | x, t_x, T): the churn score.

        Given alive at T the posterior is lambda ~ Gamma(r+x, alpha+T), mu ~ Gamma(s, beta+T), and
        "no purchase in the next t" has the form of the likelihood of a fresh customer with x = 0
        observed for t, under those posterior parameters. So the same stable G evaluates it.
        """
        r, alpha, s, beta = self._params()
        t_, x, tx, T_ = np.broadcast_arrays(
            _as_float(t, "t"),
            _as_float(frequency, "frequency"),
            _as_float(recency, "recency"),
            _as_float(T, "T"),
        )
        p_alive = np.exp(self._log_p_alive(x, tx, T_))
        r_post, a_post, b_post = r + x, alpha + T_, beta + T_
        log_g0 = _pnbd_log_tail_dedup(r_post, 0.0, a_post, s, b_post, np.zeros_like(t_))
        log_gt = _pnbd_log_tail_dedup(r_post, 0.0, a_post, s, b_post, t_)
        alive, died = _pnbd_branches(r_post, a_post, s, b_post, 0.0, log_g0, log_gt, t_)
        log_quiet = np.logaddexp(alive, died)
        quiet = np.exp(np.minimum(log_quiet, 0.0))
        return np.clip(1.0 - p_alive + p_alive * quiet, 0.0, 1.0)

    def expected_number_of_purchases_up_to_time(self, t: ArrayLike) -> FloatArray:
        """E[X(t)] for a new customer: r beta / (alpha (s-1)) * (1 - (beta/(beta+t))**(s-1))."""
        t_ = _as_float(t, "t")
        zero = np.zeros_like(t_)
        return self.conditional_expected_number_of_purchases_up_to_time(t_, zero, zero, zero)


# --------------------------------------------------------------------------------------------
# Gamma-Gamma
# --------------------------------------------------------------------------------------------


def _gg_loglik_terms(
    p: float,
    q: float,
    g: float,
    ux: FloatArray,
    inv: NDArray[np.intp],
    w_by_x: FloatArray,
    x: FloatArray,
    m: FloatArray,
    w: FloatArray,
    log_m: FloatArray,
    log_x: FloatArray,
    grad: bool,
) -> tuple[float, FloatArray | None]:
    """Weighted total log-likelihood of the Gamma-Gamma spend model (Fader & Hardie 2013).

    f(m_x | x) = G(px+q) / (G(px) G(q)) * g^q * m_x^(px-1) * x^(px) / (g + m_x x)^(px+q)
    """
    from scipy.special import digamma, gammaln

    pux = p * ux
    c = gammaln(pux + q) - gammaln(pux) - gammaln(q) + q * np.log(g)
    px = p * x
    log_gmx = np.log(g + m * x)
    row = (px - 1.0) * log_m + px * log_x - (px + q) * log_gmx
    total = float(w_by_x @ c + w @ row)
    if not grad:
        return total, None
    psi_pq = digamma(pux + q)
    d_p = w_by_x @ (ux * (psi_pq - digamma(pux))) + (w * x) @ (log_m + log_x - log_gmx)
    d_q = w_by_x @ (psi_pq - digamma(q) + np.log(g)) - w @ log_gmx
    d_g = float(w.sum()) * q / g - (w * (px + q)) @ (1.0 / (g + m * x))
    return total, np.array([d_p, d_q, d_g])


class _GGData:
    """Fit data for the Gamma-Gamma likelihood with everything parameter-free precomputed.

    Per row the likelihood is (p x - 1) ln m + p x ln x - (p x + q) ln(g + m x): only
    ln(g + m x) depends on g, so an evaluation is one log and one reciprocal per row plus a
    (2 x n) @ (n x 2) product; the rest are sums computed once."""

    def __init__(
        self, x: FloatArray, m: FloatArray, w: FloatArray, ux: FloatArray, w_by_x: FloatArray
    ) -> None:
        self.ux, self.w_by_x = ux, w_by_x
        self.w_sum = float(w.sum())
        self.spend = m * x
        self.weights = np.vstack([w * x, w])  # rows: w x, w
        self.buffer = np.empty((x.shape[0], 2))  # columns: ln(g + m x), 1/(g + m x)
        log_m = np.log(m)
        self.sum_wx_logs = float((w * x) @ (log_m + np.log(x)))
        self.sum_w_log_m = float(w @ log_m)


def _gg_fast(p: float, q: float, g: float, d: _GGData) -> tuple[float, FloatArray]:
    """Weighted total Gamma-Gamma log-likelihood and gradient in (p, q, g), from _GGData."""
    from scipy.special import digamma, gammaln

    np.add(d.spend, g, out=d.buffer[:, 1])
    np.log(d.buffer[:, 1], out=d.buffer[:, 0])
    np.reciprocal(d.buffer[:, 1], out=d.buffer[:, 1])
    sums = d.weights @ d.buffer
    (wx_log, wx_inv), (w_log, w_inv) = sums
    pux = p * d.ux
    c = gammaln(pux + q) - gammaln(pux) - gammaln(q) + q * np.log(g)
    total = float(d.w_by_x @ c) + p * d.sum_wx_logs - d.sum_w_log_m - p * wx_log - q * w_log
    psi_pq = digamma(pux + q)
    d_p = float(d.w_by_x @ (d.ux * (psi_pq - digamma(pux)))) + d.sum_wx_logs - wx_log
    d_q = float(d.w_by_x @ (psi_pq - digamma(q) + np.log(g))) - w_log
    d_g = d.w_sum * q / g - p * wx_inv - q * w_inv
    return total, np.array([d_p, d_q, d_g])


class GammaGammaModel:
    """Gamma-Gamma model of average transaction value (Fader & Hardie 2013 note; Colombo & Jiang).

    A customer's transaction values are Gamma(p, nu) with nu ~ Gamma(q, gamma) across customers,
    so E[M] = p*gamma/(q-1) (needs q > 1). Assumes spend is independent of purchase frequency:
    check the correlation between x and m_x before trusting CLV.
    """

    param_names = ("p", "q", "gamma")

    def __init__(self, penalizer: float = 0.0, max_iter: int = 2000) -> None:
        self.penalizer = penalizer
        self.max_iter = max_iter

    def fit(
        self,
        frequency: ArrayLike,
        monetary_value: ArrayLike,
        weights: ArrayLike | None = None,
    ) -> GammaGammaModel:
        """Fit on repeat customers; rows with frequency == 0 carry no spend data and are dropped."""
        if self.penalizer < 0:
            raise ValueError("penalizer must be >= 0")
        (x, m), w = _fit_arrays({"frequency": frequency, "monetary_value": monetary_value}, weights)
        keep = x > 0
        if not np.any(keep):
            raise ValueError("Gamma-Gamma needs at least one customer with frequency > 0")
        x, m, w = x[keep], m[keep], w[keep]
        if np.any(m <= 0):
            raise ValueError("monetary_value must be > 0 for customers with frequency > 0")
        # Scale-equivariant in money (gamma scales): fit in units of the mean spend.
        scale = float(w @ m / w.sum())
        ux, inv = np.unique(x, return_inverse=True)
        w_by_x = np.bincount(inv, weights=w, minlength=ux.shape[0])
        log_x = np.log(x)
        w_sum = float(w.sum())
        pen = float(self.penalizer)
        mult = np.array([1.0, 1.0, scale])
        data = _GGData(x, m / scale, w, ux, w_by_x)

        def objective(log_p: FloatArray) -> tuple[float, FloatArray]:
            prm = np.exp(log_p)
            ll, g = _gg_fast(*prm, data)
            nat = prm * mult
            return -ll / w_sum + pen * float(nat @ nat), -g * prm / w_sum + 2 * pen * nat * nat

        # p=q=2 with gamma=1 (mean spend) puts E[M] at the sample mean.
        x0 = np.log(np.array([2.0, 2.0, 1.0]))
        log_p, _, ok, nit = _minimize(objective, x0, self.max_iter)
        prm = np.exp(log_p) * mult
        self.params_ = dict(zip(self.param_names, (float(v) for v in prm), strict=True))
        self.converged_ = ok
        self.n_iter_ = nit
        self.n_customers_ = w_sum
        self.log_likelihood_ = float(
            _gg_loglik_terms(*prm, ux, inv, w_by_x, x, m, w, np.log(m), log_x, grad=False)[0]
        )
        return self

    def _params(self) -> tuple[float, float, float]:
        if not hasattr(self, "params_"):
            raise RuntimeError("model is not fitted; call fit() first")
        p = self.params_
        return p["p"], p["q"], p["gamma"]

    @property
    def population_mean_(self) -> float:
        """E[M] = p*gamma/(q-1); +inf when q <= 1 (the fitted spend distribution has no mean)."""
        p, q, g = self._params()
        return p * g / (q - 1.0) if q > 1.0 else float("inf")

    def conditional_expected_average_profit(
        self, frequency: ArrayLike, monetary_value: ArrayLike
    ) -> FloatArray:
        """E[M | x, m_x] = (p*gamma + p*x*m_x) / (p*x + q - 1): shrinks m_x towards E[M].

        For x == 0 this is the population mean. NaN when q <= 1 (no finite mean).
        """
        p, q, g = self._params()
        x, m = np.broadcast_arrays(
            _as_float(frequency, "frequency"), _as_float(monetary_value, "monetary_value")
        )
        if q <= 1.0:
            return np.full(x.shape, np.nan)
        m = np.where(x > 0, m, 0.0)
        return (p * g + p * x * m) / (p * x + q - 1.0)

    def customer_lifetime_value(
        self,
        bgf: PurchaseModel,
        frequency: ArrayLike,
        recency: ArrayLike,
        T: ArrayLike,
        monetary_value: ArrayLike,
        months: int = 12,
        discount_rate_monthly: float = 0.01,
        days_per_month: float = 30.4375,
        time_unit_days: float = 1.0,
    ) -> FloatArray:
        """Discounted CLV over ``months`` (lifetimes' definition).

        sum over m=1..months of (E[X(m)] - E[X(m-1)]) * E[M | x, m_x] / (1+d)**m, with E[X] the
        BG/NBD conditional expectation and E[M] the Gamma-Gamma conditional expectation.
        """
        spend = self.conditional_expected_average_profit(frequency, monetary_value)
        purchases = discounted_expected_purchases(
            bgf,
            frequency,
            recency,
            T,
            months=months,
            discount_rate_monthly=discount_rate_monthly,
            days_per_month=days_per_month,
            time_unit_days=time_unit_days,
        )
        return purchases * spend


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
        _as_float(frequency, "frequency"), _as_float(recency, "recency"), _as_float(T, "T")
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
