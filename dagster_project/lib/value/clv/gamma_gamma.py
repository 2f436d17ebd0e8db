"""Gamma-Gamma spend model (Fader, Hardie & Lee 2005b)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from dagster_project.lib.value.clv.fitting import (
    FloatArray,
    PurchaseModel,
    as_float,
    fit_arrays,
    minimize_log_params,
)
from dagster_project.lib.value.clv.forecast import discounted_expected_purchases


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
        (x, m), w = fit_arrays({"frequency": frequency, "monetary_value": monetary_value}, weights)
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
        log_p, _, ok, nit = minimize_log_params(objective, x0, self.max_iter)
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
            as_float(frequency, "frequency"), as_float(monetary_value, "monetary_value")
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
