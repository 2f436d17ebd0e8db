"""Pareto/NBD (Schmittlein, Morrison & Colombo 1987): log-space likelihood, hypergeometric
tail by series or quadrature, analytic gradient on the same nodes."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from dagster_project.lib.value.clv.fitting import (
    A_ONE_GUARD,
    LOG_BOUND,
    FloatArray,
    as_float,
    fit_arrays,
    fit_time_scaled,
)

# Upper bound on ln r and ln s for the Pareto/NBD (22026: rate CV 0.7%; see ParetoNBDModel.fit)
# and the cap on its Nelder-Mead fallback (each step evaluates the likelihood ~1-2 times).
_PNBD_LOG_SHAPE_MAX = 10.0


_PNBD_FALLBACK_ITER = 300

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
        # When purchase or dropout rates barely vary across customers the likelihood keeps
        # creeping up a ridge r, alpha -> infinity (or s, beta; the ratio fixed): cap r and s
        # where the rates' coefficient of variation 1/sqrt(shape) is below 1%, and stop on
        # relative gains under 1e-12. The Nelder-Mead fallback (after a line-search failure,
        # possible on such ridges) is capped too: each step costs a full quadrature pass.
        bounds = [(-LOG_BOUND, LOG_BOUND)] * 4
        bounds[0] = bounds[2] = (-LOG_BOUND, _PNBD_LOG_SHAPE_MAX)
        p, (x, tx, T_, w) = fit_time_scaled(
            self,
            {"frequency": frequency, "recency": recency, "T": T},
            weights,
            make_data=_PNBDData,
            loglik_and_grad=lambda p, data: _pnbd_loglik_and_grad(*p, data),
            # r, s < 1 and alpha, beta of the order of the mean customer age: typical retail fits
            x0=np.log(np.array([0.5, 1.0, 0.5, 1.0])),
            time_scaled=(False, True, False, True),
            bounds=bounds,
            ftol=1e-12,
            fallback_iter=_PNBD_FALLBACK_ITER,
        )
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
        (x, tx, T_), w = fit_arrays({"frequency": frequency, "recency": recency, "T": T}, weights)
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
            as_float(frequency, "frequency"), as_float(recency, "recency"), as_float(T, "T")
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
            as_float(t, "t"),
            as_float(frequency, "frequency"),
            as_float(recency, "recency"),
            as_float(T, "T"),
        )
        q = np.log(beta + T_) - np.log(beta + T_ + t_)
        near_one = abs(s - 1.0) < A_ONE_GUARD
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
            as_float(t, "t"),
            as_float(frequency, "frequency"),
            as_float(recency, "recency"),
            as_float(T, "T"),
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
        t_ = as_float(t, "t")
        zero = np.zeros_like(t_)
        return self.conditional_expected_number_of_purchases_up_to_time(t_, zero, zero, zero)
