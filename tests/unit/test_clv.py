"""BG/NBD, Pareto/NBD and Gamma-Gamma: published CDNOW figures, lifetimes parity, independent
computations (quadrature, exact series, Monte Carlo), edges.

CDNOW_sample.txt (2,357 customers, Fader, Hardie & Lee 2005) ships with the `lifetimes` dev
dependency. `lifetimes.datasets` is not imported (it needs pkg_resources, gone from current
setuptools): the file is located through the package's search path instead.
"""

from __future__ import annotations

import importlib.util
import math
import pickle
import warnings
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import integrate
from scipy.special import betaincinv

from dagster_project.lib.value.clv import (
    BetaGeoModel,
    GammaGammaModel,
    ParetoNBDModel,
    discounted_expected_purchases,
    fitted_params_summary,
)

CALIBRATION_END = date(1997, 9, 30)
PUBLISHED_BGNBD = {"r": 0.2426, "alpha": 4.4137, "a": 0.7930, "b": 2.4262}
PUBLISHED_BGNBD_LL = -9582.43
PUBLISHED_GG = {"p": 6.25, "q": 3.74, "gamma": 15.44}
PUBLISHED_GG_LL = -4055.92


def _cdnow_path() -> Path:
    spec = importlib.util.find_spec("lifetimes")
    assert spec is not None and spec.submodule_search_locations, "lifetimes (dev dep) missing"
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "CDNOW_sample.txt"


@pytest.fixture(scope="module")
def cdnow() -> pl.DataFrame:
    """Calibration summary as lifetimes' summary_data_from_transaction_data builds it (weeks).

    frequency = distinct purchase days - 1; recency / T in weeks from the first purchase;
    monetary = mean value of the repeat purchase days (same-day transactions summed).
    """
    raw = np.loadtxt(_cdnow_path())
    tx = pl.DataFrame(
        {"customer": raw[:, 0].astype(np.int64), "day": raw[:, 2].astype(np.int64), "v": raw[:, 4]}
    ).with_columns(pl.col("day").cast(pl.String).str.strptime(pl.Date, "%Y%m%d"))
    days = (
        tx.filter(pl.col("day") <= CALIBRATION_END)
        .group_by("customer", "day")
        .agg(pl.col("v").sum())
        .with_columns(first=pl.col("day").min().over("customer"))
    )
    end = pl.lit(CALIBRATION_END, dtype=pl.Date)
    return (
        days.group_by("customer")
        .agg(
            frequency=pl.len() - 1,
            recency=(pl.col("day").max() - pl.col("first").first()).dt.total_days() / 7.0,
            T=(end - pl.col("first").first()).dt.total_days() / 7.0,
            monetary=pl.col("v").filter(pl.col("day") > pl.col("first")).mean(),
        )
        .with_columns(pl.col("frequency").cast(pl.Float64), pl.col("monetary").fill_null(0.0))
        .sort("customer")
    )


@pytest.fixture(scope="module")
def cdnow_bgf(cdnow: pl.DataFrame) -> BetaGeoModel:
    return BetaGeoModel().fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])


def _model(**params: float) -> BetaGeoModel:
    m = BetaGeoModel()
    m.params_ = dict(params)
    return m


def _gg(**params: float) -> GammaGammaModel:
    m = GammaGammaModel()
    m.params_ = dict(params)
    return m


# ---- published CDNOW figures -----------------------------------------------------------------


def test_cdnow_sample_has_the_published_shape(cdnow: pl.DataFrame) -> None:
    assert cdnow.height == 2357
    assert cdnow.filter(pl.col("frequency") > 0).height == 946


def test_bgnbd_reproduces_published_cdnow_fit(cdnow_bgf: BetaGeoModel) -> None:
    for name, published in PUBLISHED_BGNBD.items():
        assert cdnow_bgf.params_[name] == pytest.approx(published, rel=0.005), name
    assert cdnow_bgf.log_likelihood_ == pytest.approx(PUBLISHED_BGNBD_LL, abs=0.1)
    assert cdnow_bgf.converged_


def test_gamma_gamma_reproduces_published_cdnow_fit(cdnow: pl.DataFrame) -> None:
    repeat = cdnow.filter(pl.col("frequency") > 0)
    gg = GammaGammaModel().fit(repeat["frequency"], repeat["monetary"])
    for name, published in PUBLISHED_GG.items():
        assert gg.params_[name] == pytest.approx(published, rel=0.005), name
    assert gg.log_likelihood_ == pytest.approx(PUBLISHED_GG_LL, abs=0.1)
    assert gg.n_customers_ == 946


def test_gamma_gamma_ignores_zero_frequency_rows(cdnow: pl.DataFrame) -> None:
    repeat = cdnow.filter(pl.col("frequency") > 0)
    on_all = GammaGammaModel().fit(cdnow["frequency"], cdnow["monetary"])
    on_repeat = GammaGammaModel().fit(repeat["frequency"], repeat["monetary"])
    assert on_all.params_ == pytest.approx(on_repeat.params_, rel=1e-9)


def test_weighted_triples_fit_equals_one_row_per_customer(
    cdnow: pl.DataFrame, cdnow_bgf: BetaGeoModel
) -> None:
    triples = cdnow.group_by("frequency", "recency", "T").agg(pl.len().alias("n"))
    assert triples.height < cdnow.height
    grouped = BetaGeoModel().fit(
        triples["frequency"], triples["recency"], triples["T"], weights=triples["n"]
    )
    assert grouped.params_ == pytest.approx(cdnow_bgf.params_, rel=1e-5)
    assert grouped.log_likelihood_ == pytest.approx(cdnow_bgf.log_likelihood_, abs=1e-6)
    assert grouped.n_customers_ == cdnow.height
    assert grouped.n_rows_ == triples.height


def test_time_unit_only_rescales_alpha(cdnow: pl.DataFrame, cdnow_bgf: BetaGeoModel) -> None:
    in_days = BetaGeoModel().fit(cdnow["frequency"], cdnow["recency"] * 7, cdnow["T"] * 7)
    assert in_days.params_["alpha"] == pytest.approx(cdnow_bgf.params_["alpha"] * 7, rel=1e-5)
    for name in ("r", "a", "b"):
        assert in_days.params_[name] == pytest.approx(cdnow_bgf.params_[name], rel=1e-5)


def test_holdout_prediction_is_in_the_right_range(cdnow: pl.DataFrame, cdnow_bgf: BetaGeoModel):
    """39-week holdout: the model predicts the aggregate repeat purchases within 15%."""
    raw = np.loadtxt(_cdnow_path())
    holdout_days = {
        (int(c), int(d)) for c, d in zip(raw[:, 0], raw[:, 2], strict=True) if d > 19970930
    }
    predicted = cdnow_bgf.conditional_expected_number_of_purchases_up_to_time(
        39.0, cdnow["frequency"], cdnow["recency"], cdnow["T"]
    ).sum()
    assert predicted == pytest.approx(len(holdout_days), rel=0.15)


# ---- parity with lifetimes (dev dependency; tests only) ---------------------------------------


def test_matches_lifetimes_fit_and_predictions(cdnow: pl.DataFrame) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pandas as pd
        from lifetimes import BetaGeoFitter, GammaGammaFitter
        from lifetimes.utils import ConvergenceError

    small = cdnow.head(600)
    x, tx, T = (small[c].to_numpy() for c in ("frequency", "recency", "T"))
    m = small["monetary"].to_numpy()
    ours = BetaGeoModel().fit(x, tx, T)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = BetaGeoFitter().fit(x, tx, T)
    assert ours.params_ == pytest.approx(theirs.params_.to_dict(), rel=1e-4)

    # identical parameters -> predictions must agree to rounding
    theirs.params_ = pd.Series(ours.params_)
    np.testing.assert_allclose(
        ours.conditional_probability_alive(x, tx, T),
        theirs.conditional_probability_alive(x, tx, T),
        rtol=1e-9,
    )
    for t in (1.0, 13.0, 39.0, 520.0):
        np.testing.assert_allclose(
            ours.conditional_expected_number_of_purchases_up_to_time(t, x, tx, T),
            theirs.conditional_expected_number_of_purchases_up_to_time(t, x, tx, T),
            rtol=1e-8,
        )
    ts = np.array([0.5, 10.0, 52.0, 1000.0])
    np.testing.assert_allclose(
        ours.expected_number_of_purchases_up_to_time(ts),
        theirs.expected_number_of_purchases_up_to_time(ts),
        rtol=1e-8,
    )

    rep = m > 0
    gg = GammaGammaModel().fit(x[rep], m[rep])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            their_gg = GammaGammaFitter().fit(x[rep], m[rep])
        except ConvergenceError:
            # lifetimes' own BFGS now and then stops with "precision loss" at its default
            # tolerance on this data (seen once in CI, not reproducible); a looser tolerance
            # still lands within the rel 1e-4 the parameters are compared at
            their_gg = GammaGammaFitter().fit(x[rep], m[rep], tol=1e-6)
        assert gg.params_ == pytest.approx(
            dict(zip(("p", "q", "gamma"), their_gg.params_.to_numpy(), strict=True)), rel=1e-4
        )
        their_gg.params_ = pd.Series(
            {"p": gg.params_["p"], "q": gg.params_["q"], "v": gg.params_["gamma"]}
        )
        np.testing.assert_allclose(
            gg.conditional_expected_average_profit(x, m),
            their_gg.conditional_expected_average_profit(pd.Series(x), pd.Series(m)).to_numpy(),
            rtol=1e-10,
        )
        # lifetimes' weekly CLV uses 4.345 weeks per month
        their_clv = their_gg.customer_lifetime_value(
            theirs, *(pd.Series(v) for v in (x, tx, T, m)), time=12, discount_rate=0.01, freq="W"
        )
    our_clv = gg.customer_lifetime_value(
        ours, x, tx, T, m, months=12, discount_rate_monthly=0.01,
        days_per_month=4.345 * 7, time_unit_days=7.0,
    )  # fmt: skip
    np.testing.assert_allclose(our_clv, their_clv.to_numpy(), rtol=1e-7)


# ---- hand-computed values -----------------------------------------------------------------------


def _hyp2f1_series(a: float, b: float, c: float, z: float, terms: int = 400) -> float:
    """Plain power series of 2F1 for |z| < 1: independent of scipy's implementation."""
    total, term = 1.0, 1.0
    for k in range(terms):
        term *= (a + k) * (b + k) / ((c + k) * (k + 1)) * z
        total += term
    return total


def test_p_alive_is_one_without_repeat_purchases() -> None:
    m = _model(r=0.3, alpha=5.0, a=0.8, b=2.5)
    p = m.conditional_probability_alive([0, 0, 0], [0, 0, 0], [0.0, 10.0, 1e9])
    np.testing.assert_array_equal(p, 1.0)


def test_p_alive_closed_form() -> None:
    m = _model(r=1.0, alpha=2.0, a=0.5, b=2.0)
    # 1 / (1 + a/(b+x-1) * ((alpha+T)/(alpha+t_x))**(r+x)) with x=2, t_x=3, T=5
    expected = 1.0 / (1.0 + (0.5 / 3.0) * (7.0 / 5.0) ** 3)
    assert float(m.conditional_probability_alive(2, 3.0, 5.0)) == pytest.approx(expected, rel=1e-12)


def test_log_likelihood_by_hand() -> None:
    m = _model(r=1.0, alpha=1.0, a=1.0, b=1.0)
    # x=1, t_x=1, T=2: B(1,2)/B(1,1) * 1/(1+2)**2 + B(2,1)/B(1,1) * 1/(1+1)**2
    assert m.log_likelihood([1], [1.0], [2.0]) == pytest.approx(math.log(0.5 / 9 + 0.5 / 4))
    # x=0, T=2: (alpha/(alpha+T))**r; weights multiply
    assert m.log_likelihood([0], [0.0], [2.0], weights=[3]) == pytest.approx(3 * math.log(1 / 3))


def test_unconditional_expectation_against_series() -> None:
    r, alpha, a, b = 1.2, 2.0, 2.0, 3.0
    m = _model(r=r, alpha=alpha, a=a, b=b)
    for t in (0.5, 1.0, 3.0):
        z = t / (alpha + t)
        hyp = _hyp2f1_series(r, b, a + b - 1, z)
        expected = (a + b - 1) / (a - 1) * (1 - (alpha / (alpha + t)) ** r * hyp)
        assert float(m.expected_number_of_purchases_up_to_time(t)) == pytest.approx(expected)
    assert float(m.expected_number_of_purchases_up_to_time(0.0)) == 0.0


def test_conditional_expectation_against_series_and_quadrature() -> None:
    """FHL eq. 10 vs the 2F1 series, and vs E[(1 - exp(-lambda p t))/p | alive] by quadrature."""
    r, alpha, a, b = 0.25, 4.4, 0.8, 2.4
    m = _model(r=r, alpha=alpha, a=a, b=b)
    for x, tx, T, t in [(0, 0.0, 30.0, 10.0), (2, 20.0, 38.0, 39.0), (7, 30.0, 31.0, 52.0)]:
        s, A = alpha + T, r + x
        got = float(m.conditional_expected_number_of_purchases_up_to_time(t, x, tx, T))
        p_alive = float(m.conditional_probability_alive(x, tx, T))
        hyp = _hyp2f1_series(A, b + x, a + b + x - 1, t / (s + t), terms=4000)
        by_series = p_alive * (a + b + x - 1) / (a - 1) * (1 - (s / (s + t)) ** A * hyp)
        assert got == pytest.approx(by_series, rel=1e-9)

        def integrand(u: float, x: float = x, s: float = s, A: float = A, t: float = t) -> float:
            p = betaincinv(a, b + x, u)
            return -math.expm1(-A * math.log1p(p * t / s)) / p

        by_quad = p_alive * integrate.quad(integrand, 0, 1, limit=200, epsrel=1e-11)[0]
        assert got == pytest.approx(by_quad, rel=1e-7)


def test_probability_no_purchase_formula_and_limits() -> None:
    r, alpha, a, b = 0.5, 3.0, 0.7, 2.0
    m = _model(r=r, alpha=alpha, a=a, b=b)
    x, tx, T, t = 3, 8.0, 12.0, 6.0
    pa = float(m.conditional_probability_alive(x, tx, T))
    expected = 1 - pa + pa * ((alpha + T) / (alpha + T + t)) ** (r + x)
    assert float(m.probability_no_purchase_up_to_time(t, x, tx, T)) == pytest.approx(expected)
    ts = np.array([0.0, 1.0, 10.0, 100.0, 1e6])
    churn = m.probability_no_purchase_up_to_time(ts, x, tx, T)
    assert churn[0] == 1.0
    assert np.all(np.diff(churn) < 0)
    assert churn[-1] == pytest.approx(1 - pa, abs=1e-3)
    # x == 0: P(alive) is 1, yet churn risk still grows with the customer's silence
    fresh, stale = m.probability_no_purchase_up_to_time(90.0, [0, 0], [0.0, 0.0], [1.0, 300.0])
    assert fresh < stale < 1.0


def test_gamma_gamma_by_hand() -> None:
    gg = _gg(p=6.0, q=4.0, gamma=15.0)
    spend = gg.conditional_expected_average_profit([0, 2], [0.0, 20.0])
    np.testing.assert_allclose(spend, [6 * 15 / 3, (90 + 240) / 15])
    assert gg.population_mean_ == 30.0
    assert np.isnan(_gg(p=1.0, q=0.9, gamma=1.0).conditional_expected_average_profit(1, 5.0))


def test_gamma_gamma_log_likelihood_by_hand() -> None:
    """p=q=2, gamma=1, x=1, m=1: G(4)/(G(2)G(2)) / 2**4 = 6/16."""
    from dagster_project.lib.value.clv.gamma_gamma import _gg_loglik_terms

    one = np.array([1.0])
    ll, _ = _gg_loglik_terms(
        2.0, 2.0, 1.0, one, np.array([0]), one, one, one, one, np.log(one), np.log(one), False
    )
    assert ll == pytest.approx(math.log(6 / 16))


def test_clv_is_discounted_sum_of_monthly_increments() -> None:
    bgf = _model(r=0.3, alpha=20.0, a=0.8, b=2.5)
    gg = _gg(p=6.0, q=4.0, gamma=15.0)
    x, tx, T, m = np.array([0.0, 3.0]), np.array([0.0, 100.0]), np.array([50.0, 200.0]), 25.0
    step, d = 30.4375, 0.01
    cum = [
        bgf.conditional_expected_number_of_purchases_up_to_time(k * step, x, tx, T)
        for k in range(13)
    ]
    expected = sum((cum[k] - cum[k - 1]) / (1 + d) ** k for k in range(1, 13))
    expected = expected * gg.conditional_expected_average_profit(x, [0.0, m])
    got = gg.customer_lifetime_value(bgf, x, tx, T, [0.0, m], months=12, discount_rate_monthly=d)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # undiscounted one-month CLV = E[X(1 month)] * E[M]
    one = discounted_expected_purchases(bgf, x, tx, T, months=1, discount_rate_monthly=0.0)
    np.testing.assert_allclose(one, cum[1], rtol=1e-12)


# ---- robustness ------------------------------------------------------------------------------


def _assert_finite_predictions(m: BetaGeoModel, x, tx, T) -> None:
    for values in (
        m.conditional_probability_alive(x, tx, T),
        m.conditional_expected_number_of_purchases_up_to_time(90.0, x, tx, T),
        m.probability_no_purchase_up_to_time(90.0, x, tx, T),
        discounted_expected_purchases(m, x, tx, T),
        m.expected_number_of_purchases_up_to_time(np.array([0.0, 1.0, 1e6])),
    ):
        assert np.all(np.isfinite(values))
        assert np.all(values >= 0)
    assert all(math.isfinite(v) for v in m.params_.values())
    assert math.isfinite(m.log_likelihood_)


@pytest.mark.filterwarnings("error")
def test_all_customers_without_repeat_purchases() -> None:
    zeros = np.zeros(40)
    for penalizer in (0.0, 0.1):
        m = BetaGeoModel(penalizer=penalizer).fit(zeros, zeros, np.arange(40.0))
        _assert_finite_predictions(m, zeros[:3], zeros[:3], np.array([0.0, 10.0, 100.0]))
        np.testing.assert_array_equal(m.conditional_probability_alive(0, 0, 5.0), 1.0)


@pytest.mark.filterwarnings("error")
def test_single_customer() -> None:
    for x, tx, T in [(3.0, 20.0, 50.0), (0.0, 0.0, 50.0), (0.0, 0.0, 0.0)]:
        m = BetaGeoModel().fit([x], [tx], [T])
        _assert_finite_predictions(m, np.array([x]), np.array([tx]), np.array([T]))
    gg = GammaGammaModel().fit([1], [10.0])
    assert np.isfinite(gg.conditional_expected_average_profit([0, 1], [0.0, 10.0])).all()


@pytest.mark.filterwarnings("error")
def test_huge_T() -> None:
    rng = np.random.default_rng(2)
    x = rng.integers(0, 5, 300).astype(float)
    T = rng.uniform(1e8, 1e9, 300)
    tx = np.where(x > 0, rng.uniform(0, 1, 300) * T, 0.0)
    m = BetaGeoModel().fit(x, tx, T)
    _assert_finite_predictions(m, x, tx, T)
    big = np.array([0.0, 1.0, 500.0])
    _assert_finite_predictions(m, big, np.array([0.0, 1e3, 1e12]), np.full(3, 1e12))


def test_degenerate_parameters_stay_finite_and_bounded() -> None:
    """Extreme parameters (where 2F1 fails) fall back to quadrature within the exact bounds."""
    m = _model(r=6.0e7, alpha=4.2e8, a=3.9e6, b=8.2e6)
    x, tx, T, t = 3.0, 20.0, 50.0, 90.0
    got = float(m.conditional_expected_number_of_purchases_up_to_time(t, x, tx, T))
    p_alive = float(m.conditional_probability_alive(x, tx, T))
    s, A = 4.2e8 + T, 6.0e7 + x
    assert p_alive * -math.expm1(-A * math.log1p(t / s)) <= got <= p_alive * A * t / s


def test_rejects_invalid_input() -> None:
    with pytest.raises(ValueError, match="recency <= T"):
        BetaGeoModel().fit([1], [5.0], [3.0])
    with pytest.raises(ValueError, match="integers"):
        BetaGeoModel().fit([1.5], [1.0], [3.0])
    with pytest.raises(ValueError, match="NaN"):
        BetaGeoModel().fit([1], [np.nan], [3.0])
    with pytest.raises(ValueError, match="non-negative"):
        BetaGeoModel().fit([1], [1.0], [3.0], weights=[-1])
    with pytest.raises(ValueError, match="zero rows"):
        BetaGeoModel().fit([], [], [])
    with pytest.raises(ValueError, match="monetary_value must be > 0"):
        GammaGammaModel().fit([1, 2], [10.0, 0.0])
    with pytest.raises(ValueError, match="frequency > 0"):
        GammaGammaModel().fit([0, 0], [0.0, 0.0])
    with pytest.raises(RuntimeError, match="not fitted"):
        BetaGeoModel().conditional_probability_alive(1, 1.0, 2.0)


def test_estimator_shape_and_pickling(cdnow_bgf: BetaGeoModel) -> None:
    m = BetaGeoModel(penalizer=0.01)
    assert vars(m) == {"penalizer": 0.01, "max_iter": 2000}  # config only before fit
    assert m.fit([0, 1, 2], [0.0, 1.0, 2.0], [3.0, 3.0, 3.0]) is m
    clone = pickle.loads(pickle.dumps(cdnow_bgf))
    assert clone.params_ == cdnow_bgf.params_
    assert len(pickle.dumps(cdnow_bgf)) < 2_000  # no training data kept
    summary = fitted_params_summary(cdnow_bgf)
    assert set(summary) >= {"r", "alpha", "a", "b", "log_likelihood", "converged"}


# ---- CDNOW: repeat-purchase totals and the BG/NBD holdout forecast table -------------------------

PUBLISHED_PNBD = {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669}
PUBLISHED_PNBD_LL = -9595.0
# FHL 2005, conditional expectation of holdout purchases by calibration frequency 0..6, 7+
PUBLISHED_BGNBD_BY_FREQUENCY = (0.225, 0.523, 1.044, 1.520, 2.164, 2.654, 3.504, 6.157)
HOLDOUT_WEEKS = 39.0


@pytest.fixture(scope="module")
def cdnow_holdout(cdnow: pl.DataFrame) -> np.ndarray:
    """Repeat purchase days per customer in the 39-week holdout (same-day transactions = one)."""
    raw = np.loadtxt(_cdnow_path())
    later = raw[raw[:, 2] > 19970930]
    days = pl.DataFrame({"customer": later[:, 0].astype(np.int64), "day": later[:, 2]}).unique()
    counts = days.group_by("customer").len()
    joined = cdnow.select("customer").join(counts, on="customer", how="left")
    return joined["len"].fill_null(0).to_numpy().astype(float)


def test_cdnow_sample_repeat_purchase_totals(cdnow: pl.DataFrame, cdnow_holdout) -> None:
    assert cdnow["frequency"].sum() == 2457
    assert cdnow_holdout.sum() == 1882


def test_bgnbd_reproduces_the_published_holdout_forecast_by_frequency(
    cdnow: pl.DataFrame, cdnow_bgf: BetaGeoModel
) -> None:
    """FHL 2005's table, including the known under-forecast of the holdout (~12%)."""
    predicted = cdnow_bgf.conditional_expected_number_of_purchases_up_to_time(
        HOLDOUT_WEEKS, cdnow["frequency"], cdnow["recency"], cdnow["T"]
    )
    groups = np.minimum(cdnow["frequency"].to_numpy(), 7)
    means = [predicted[groups == g].mean() for g in range(8)]
    # published to 3 decimals: within half a unit of the last digit (plus float noise)
    np.testing.assert_allclose(means, PUBLISHED_BGNBD_BY_FREQUENCY, atol=0.0005 + 1e-9)
    assert predicted.sum() / 1882 - 1 == pytest.approx(-0.121, abs=0.002)


@pytest.fixture(scope="module")
def cdnow_pnbd(cdnow: pl.DataFrame) -> ParetoNBDModel:
    return ParetoNBDModel().fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])


def test_pareto_nbd_reproduces_published_cdnow_fit(cdnow_pnbd: ParetoNBDModel) -> None:
    for name, published in PUBLISHED_PNBD.items():
        assert cdnow_pnbd.params_[name] == pytest.approx(published, rel=0.005), name
    assert cdnow_pnbd.log_likelihood_ == pytest.approx(PUBLISHED_PNBD_LL, abs=0.1)
    assert cdnow_pnbd.converged_


def test_pareto_weighted_triples_and_time_unit(
    cdnow: pl.DataFrame, cdnow_pnbd: ParetoNBDModel
) -> None:
    triples = cdnow.group_by("frequency", "recency", "T").agg(pl.len().alias("n"))
    grouped = ParetoNBDModel().fit(
        triples["frequency"], triples["recency"], triples["T"], weights=triples["n"]
    )
    assert grouped.params_ == pytest.approx(cdnow_pnbd.params_, rel=1e-5)
    assert grouped.log_likelihood_ == pytest.approx(cdnow_pnbd.log_likelihood_, abs=1e-6)
    in_days = ParetoNBDModel().fit(cdnow["frequency"], cdnow["recency"] * 7, cdnow["T"] * 7)
    for name, factor in (("r", 1), ("alpha", 7), ("s", 1), ("beta", 7)):
        assert in_days.params_[name] == pytest.approx(cdnow_pnbd.params_[name] * factor, rel=1e-5)


def test_pareto_matches_lifetimes_fit_and_predictions(cdnow: pl.DataFrame) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pandas as pd
        from lifetimes import ParetoNBDFitter

    small = cdnow.head(600)
    x, tx, T = (small[c].to_numpy() for c in ("frequency", "recency", "T"))
    ours = ParetoNBDModel().fit(x, tx, T)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = ParetoNBDFitter().fit(x, tx, T)
    assert ours.params_ == pytest.approx(theirs.params_.to_dict(), rel=1e-3)
    theirs.params_ = pd.Series(ours.params_)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_allclose(
            ours.conditional_probability_alive(x, tx, T),
            theirs.conditional_probability_alive(x, tx, T),
            rtol=1e-9,
        )
        for t in (1.0, 39.0, 520.0):
            np.testing.assert_allclose(
                ours.conditional_expected_number_of_purchases_up_to_time(t, x, tx, T),
                theirs.conditional_expected_number_of_purchases_up_to_time(t, x, tx, T),
                rtol=1e-8,
            )


# ---- Pareto/NBD against independent computations -------------------------------------------------


def _pnbd(**params: float) -> ParetoNBDModel:
    m = ParetoNBDModel()
    m.params_ = dict(params)
    return m


def _pnbd_likelihood_by_quadrature(r, alpha, s, beta, x, tx, T) -> float:
    """Schmittlein et al.'s likelihood with its integral done by adaptive quadrature:
    G(r+x)/G(r) a^r b^s [(a+T)^-(r+x) (b+T)^-s + s int_tx^T (a+t)^-(r+x) (b+t)^-(s+1) dt]."""
    integral = integrate.quad(
        lambda t: (alpha + t) ** -(r + x) * (beta + t) ** -(s + 1),
        tx,
        T,
        epsabs=0,
        epsrel=1e-12,
        limit=200,
    )[0]
    alive = (alpha + T) ** -(r + x) * (beta + T) ** -s
    return (
        math.lgamma(r + x) - math.lgamma(r) + r * math.log(alpha) + s * math.log(beta)
        + math.log(alive + s * integral)
    )  # fmt: skip


@pytest.mark.parametrize(
    ("r", "alpha", "s", "beta"),
    [
        (0.55, 10.6, 0.61, 11.7),  # CDNOW-like, alpha < beta
        (0.8, 40.0, 1.3, 5.0),  # alpha > beta
        (1.0, 7.0, 0.5, 7.0),  # alpha == beta: z = 0
        (0.999, 0.05, 2.0, 60.0),  # z near 1 and b = r near 1 (scipy's hyp2f1 fails here)
        (3.0, 2.0, 1.0, 900.0),  # integer-ish parameters, z near 1
    ],
)
def test_pareto_likelihood_against_quadrature(r, alpha, s, beta) -> None:
    m = _pnbd(r=r, alpha=alpha, s=s, beta=beta)
    for x, tx, T in [
        (0, 0.0, 30.0),
        (1, 2.0, 30.0),
        (4, 25.0, 31.0),
        (12, 0.5, 40.0),
        (2, 9.0, 9.0),
    ]:
        expected = _pnbd_likelihood_by_quadrature(r, alpha, s, beta, x, tx, T)
        assert m.log_likelihood([x], [tx], [T]) == pytest.approx(expected, abs=1e-9), (x, tx, T)


def test_hypergeometric_tail_against_a_40_digit_series() -> None:
    """ln 2F1(a, b; a+1; z) over the regimes the optimiser visits, vs exact decimal arithmetic."""
    from decimal import Decimal, getcontext

    from dagster_project.lib.value.clv.pareto_nbd import _log_hyp2f1_tail

    getcontext().prec = 40

    def exact(a: float, b: float, z: float) -> float:
        a_, b_, z_ = Decimal(a), Decimal(b), Decimal(z)
        term, total, k = Decimal(1), Decimal(1), 0
        while True:
            term = term * (b_ + k) / (k + 1) * z_
            k += 1
            step = term * a_ / (a_ + k)
            total += step
            if step < Decimal("1e-30") * total:
                return float(total.ln())

    cases = [
        (0.6, 0.5, 0.1),
        (250.0, 1.0 + 1e-7, 0.97),  # b ~ 1, z near 1: the logarithmic case
        (3.0, 0.999999, 0.9),
        (40.0, 30.0, 0.6),  # Euler branch, large b
        (0.3, 1.2, 0.95),
        (1200.0, 0.2, 0.8),
        (2.0, 3.0, 0.7499),  # either side of the series / quadrature switch
        (2.0, 3.0, 0.7501),
    ]
    for a, b, z in cases:
        got = float(_log_hyp2f1_tail(np.array([a]), np.array([b]), np.array([z]), np.log1p(-z))[0])
        assert got == pytest.approx(exact(a, b, z), abs=1e-11), (a, b, z)


def test_pareto_predictions_against_monte_carlo() -> None:
    """Posterior given alive: lambda ~ Gamma(r+x, alpha+T), mu ~ Gamma(s, beta+T)."""
    r, alpha, s, beta = 0.6, 11.0, 0.5, 9.0
    m = _pnbd(r=r, alpha=alpha, s=s, beta=beta)
    x, tx, T, t = 3, 20.0, 30.0, 26.0
    rng = np.random.default_rng(0)
    lam = rng.gamma(r + x, 1 / (alpha + T), 400_000)
    mu = rng.gamma(s, 1 / (beta + T), 400_000)
    total = lam + mu
    quiet = np.mean(np.exp(-total * t) + mu / total * -np.expm1(-total * t))
    bought = np.mean(lam / mu * -np.expm1(-mu * t))
    p_alive = float(m.conditional_probability_alive(x, tx, T))
    no_purchase = float(m.probability_no_purchase_up_to_time(t, x, tx, T))
    assert no_purchase == pytest.approx(1 - p_alive + p_alive * quiet, abs=2e-3)
    expected = float(m.conditional_expected_number_of_purchases_up_to_time(t, x, tx, T))
    assert expected == pytest.approx(p_alive * bought, rel=1e-2)
    # P(alive) from its closed form (Fader & Hardie 2005 note): 1 / (1 + s/(r+s+x) (a+T)^(r+x)
    # (b+T)^s A0), with A0 from the quadrature of the same integral
    a0 = (r + s + x) * integrate.quad(
        lambda u: (alpha + u) ** -(r + x) * (beta + u) ** -(s + 1), tx, T, epsrel=1e-12
    )[0]
    closed = 1 / (1 + s / (r + s + x) * (alpha + T) ** (r + x) * (beta + T) ** s * a0)
    assert p_alive == pytest.approx(closed, rel=1e-9)


def test_pareto_unconditional_expectation_and_limits() -> None:
    r, alpha, s, beta = 0.6, 11.0, 0.5, 9.0
    m = _pnbd(r=r, alpha=alpha, s=s, beta=beta)
    t = np.array([0.0, 1.0, 52.0])
    expected = r * beta / (alpha * (s - 1)) * (1 - (beta / (beta + t)) ** (s - 1))
    np.testing.assert_allclose(m.expected_number_of_purchases_up_to_time(t), expected, rtol=1e-12)
    # s == 1 is a removable singularity: the limit is r beta / alpha * ln(1 + t/beta)
    one = _pnbd(r=r, alpha=alpha, s=1.0, beta=beta)
    assert float(one.expected_number_of_purchases_up_to_time(10.0)) == pytest.approx(
        r * beta / alpha * math.log1p(10.0 / beta), rel=1e-9
    )
    # unlike BG/NBD, a one-time buyer is not surely alive, and silence lowers P(alive)
    fresh, stale = m.conditional_probability_alive([0, 0], [0.0, 0.0], [1.0, 100.0])
    assert 0 < stale < fresh < 1
    churn = m.probability_no_purchase_up_to_time(np.array([0.0, 5.0, 50.0, 5000.0]), 2, 10.0, 20.0)
    assert churn[0] == 1.0 and np.all(np.diff(churn) < 0)


@pytest.mark.filterwarnings("error")
def test_pareto_degenerate_data_stays_finite() -> None:
    zeros = np.zeros(40)
    m = ParetoNBDModel().fit(zeros, zeros, np.arange(1.0, 41.0))
    _assert_finite_predictions(m, zeros[:3], zeros[:3], np.array([0.0, 10.0, 100.0]))
    single = ParetoNBDModel().fit([3.0], [20.0], [50.0])
    _assert_finite_predictions(single, np.array([3.0]), np.array([20.0]), np.array([50.0]))
    # homogeneous dropout (BG/NBD-generated data): s runs up the ridge to its cap, finite
    rng = np.random.default_rng(4)
    x = rng.poisson(2.0, 300).astype(float)
    T = rng.uniform(50, 400, 300)
    tx = np.where(x > 0, rng.uniform(0, 1, 300) * T, 0.0)
    m = ParetoNBDModel().fit(x, tx, T)
    assert m.params_["r"] <= math.exp(10) * 1.0001 and m.params_["s"] <= math.exp(10) * 1.0001
    _assert_finite_predictions(m, x, tx, T)


def test_pareto_estimator_shape_and_pickling(cdnow_pnbd: ParetoNBDModel) -> None:
    m = ParetoNBDModel(penalizer=0.01)
    assert vars(m) == {"penalizer": 0.01, "max_iter": 2000}
    assert m.fit([0, 1, 2], [0.0, 1.0, 2.0], [3.0, 3.0, 3.0]) is m
    clone = pickle.loads(pickle.dumps(cdnow_pnbd))
    assert clone.params_ == cdnow_pnbd.params_
    assert len(pickle.dumps(cdnow_pnbd)) < 2_000
    assert set(fitted_params_summary(cdnow_pnbd)) >= {"r", "alpha", "s", "beta", "log_likelihood"}
    with pytest.raises(RuntimeError, match="not fitted"):
        ParetoNBDModel().conditional_probability_alive(1, 1.0, 2.0)
    with pytest.raises(ValueError, match="recency <= T"):
        ParetoNBDModel().fit([1], [5.0], [3.0])


def test_pareto_analytic_gradient_matches_finite_differences() -> None:
    from dagster_project.lib.value.clv.pareto_nbd import (
        _pnbd_loglik,
        _pnbd_loglik_and_grad,
        _PNBDData,
    )

    rng = np.random.default_rng(0)
    x = rng.poisson(1.5, 300).astype(float)
    T = rng.uniform(1, 40, 300)
    tx = np.where(x > 0, rng.uniform(0, 1, 300) * T, 0.0)
    tx[:5], x[:5] = T[:5], np.maximum(x[:5], 1)  # t_x == T: the "died" branch is empty
    data = _PNBDData(x, tx, T, rng.integers(1, 4, 300).astype(float))
    for params in [(0.55, 10.6, 0.61, 11.7), (0.8, 40.0, 1.3, 5.0), (0.999, 0.05, 2.0, 60.0)]:
        ll, grad = _pnbd_loglik_and_grad(*params, data)
        assert ll == pytest.approx(_pnbd_loglik(*params, data), abs=1e-6)
        for i in range(4):
            h = 1e-6 * params[i]
            up, down = list(params), list(params)
            up[i] += h
            down[i] -= h
            numeric = (_pnbd_loglik(*up, data) - _pnbd_loglik(*down, data)) / (2 * h)
            assert grad[i] == pytest.approx(numeric, rel=1e-6, abs=1e-4), (params, i)


def test_gamma_gamma_fast_likelihood_equals_the_reference_terms() -> None:
    """The fit's precomputed form (one log per row) equals the textbook per-row likelihood."""
    from dagster_project.lib.value.clv.gamma_gamma import _gg_fast, _gg_loglik_terms, _GGData

    rng = np.random.default_rng(0)
    x = rng.integers(1, 6, 50).astype(float)
    m = rng.gamma(3.0, 5.0, 50)
    w = rng.integers(1, 4, 50).astype(float)
    ux, inv = np.unique(x, return_inverse=True)
    w_by_x = np.bincount(inv, weights=w)
    ref, ref_grad = _gg_loglik_terms(
        2.5, 3.1, 7.0, ux, inv, w_by_x, x, m, w, np.log(m), np.log(x), True
    )
    got, got_grad = _gg_fast(2.5, 3.1, 7.0, _GGData(x, m, w, ux, w_by_x))
    assert got == pytest.approx(ref, rel=1e-12)
    np.testing.assert_allclose(got_grad, ref_grad, rtol=1e-10)
