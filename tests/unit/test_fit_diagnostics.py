"""Fit diagnostics: the published CDNOW fits are healthy; fits that ran off are caught."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from test_clv import cdnow  # noqa: F401  (the CDNOW_sample calibration fixture)

from dagster_project.lib.value.clv import BetaGeoModel, GammaGammaModel
from dagster_project.lib.value.clv.diagnostics import bgnbd_diagnostics, gamma_gamma_diagnostics


def arrays(frame: pl.DataFrame, *columns: str) -> list[np.ndarray]:
    return [frame[c].to_numpy().astype(np.float64) for c in columns]


def test_the_published_cdnow_fits_are_not_degenerate(cdnow: pl.DataFrame) -> None:  # noqa: F811
    x, tx, T = arrays(cdnow, "frequency", "recency", "T")
    ones = np.ones_like(x)
    bgnbd = bgnbd_diagnostics(BetaGeoModel().fit(x, tx, T), x, tx, T, ones)
    assert bgnbd.problems == ()
    assert 1 < bgnbd.hessian_condition < 1e6
    assert bgnbd.log_likelihood > bgnbd.baseline_log_likelihood  # drop-out explains CDNOW

    repeat = cdnow.filter(pl.col("frequency") > 0)
    x, m = arrays(repeat, "frequency", "monetary")
    gg = gamma_gamma_diagnostics(GammaGammaModel().fit(x, m), x, m, np.ones_like(x))
    assert gg.problems == ()
    assert gg.log_likelihood > gg.baseline_log_likelihood
    assert gg.summary()["degenerate"] is False


def spend_without_averaging(customers: int = 300, seed: int = 3):
    """Repeat customers whose mean spend is as spread out whatever their number of orders
    (inverse-Gamma, independent of x). Gamma-Gamma expects the mean of more orders to spread
    less; its best fit is the limit p -> infinity, gamma -> 0 (no spread within a customer),
    which the optimiser reports as converged at its bound: the demo's published fit."""
    rng = np.random.default_rng(seed)
    x = rng.integers(1, 8, customers).astype(np.float64)
    m = np.round(100.0 / rng.gamma(4.0, 1.0, customers), 2)
    return x, m


def test_gamma_gamma_that_runs_off_is_degenerate_and_names_p_and_gamma() -> None:
    x, m = spend_without_averaging()
    model = GammaGammaModel().fit(x, m)
    assert model.converged_  # what the optimiser says
    diagnostics = gamma_gamma_diagnostics(model, x, m, np.ones_like(x))
    assert diagnostics.degenerate
    assert any(problem.startswith("p = ") for problem in diagnostics.problems), diagnostics
    assert any(problem.startswith("gamma = ") for problem in diagnostics.problems), diagnostics
    assert diagnostics.summary()["problems"] == list(diagnostics.problems)


def test_gamma_gamma_below_a_single_gamma_is_a_warning_not_a_failure() -> None:
    """Mean spends Gamma-distributed whatever x: the misspecified model still fits sensibly."""
    rng = np.random.default_rng(3)
    x = rng.integers(1, 8, 300).astype(np.float64)
    m = np.round(rng.gamma(4.0, 10.0, 300), 2)
    diagnostics = gamma_gamma_diagnostics(GammaGammaModel().fit(x, m), x, m, np.ones_like(x))
    assert diagnostics.problems == ()
    assert diagnostics.warnings and "below the baseline" in diagnostics.warnings[0]


def test_a_hand_set_runaway_gamma_gamma_is_degenerate() -> None:
    """The demo's published fit: p = 3.5e8, gamma = 0."""
    x, m = spend_without_averaging()
    model = GammaGammaModel()
    model.params_ = {"p": 3.5e8, "q": 3.0, "gamma": 1e-9}
    problems = gamma_gamma_diagnostics(model, x, m, np.ones_like(x)).problems
    assert any(p.startswith("p = 3.5e+08 runs off") for p in problems), problems
    assert any(p.startswith("gamma = ") and p.endswith("is at 0") for p in problems), problems


def test_bgnbd_where_nobody_drops_out_is_degenerate() -> None:
    """Everybody buys at a steady rate up to the end: drop-out has nothing to explain, a -> 0."""
    rng = np.random.default_rng(5)
    T = rng.uniform(20, 40, 400)
    x = rng.poisson(0.5 * T).astype(np.float64)
    tx = np.where(x > 0, T - rng.uniform(0, 0.3, 400), 0.0)
    model = BetaGeoModel().fit(x, tx, T)
    diagnostics = bgnbd_diagnostics(model, x, tx, T, np.ones_like(x))
    assert diagnostics.degenerate, diagnostics
    assert diagnostics.log_likelihood >= diagnostics.baseline_log_likelihood - 1e-6


def test_a_fit_below_its_baseline_is_degenerate(cdnow: pl.DataFrame) -> None:  # noqa: F811
    x, tx, T = arrays(cdnow, "frequency", "recency", "T")
    model = BetaGeoModel()
    model.params_ = {"r": 2.0, "alpha": 1.0, "a": 2.0, "b": 2.0}  # far from the optimum
    problems = bgnbd_diagnostics(model, x, tx, T, np.ones_like(x)).problems
    assert any("below the baseline" in p for p in problems), problems


def test_distinct_triples_with_counts_diagnose_like_one_row_per_customer(
    cdnow: pl.DataFrame,  # noqa: F811
) -> None:
    rows = cdnow.select("frequency", "recency", "T")
    triples = rows.group_by("frequency", "recency", "T").len().sort("frequency", "recency", "T")
    found = []
    for frame, w in ((rows, None), (triples, triples["len"].to_numpy().astype(np.float64))):
        x, tx, T = arrays(frame, "frequency", "recency", "T")
        w = np.ones_like(x) if w is None else w
        found.append(bgnbd_diagnostics(BetaGeoModel().fit(x, tx, T, weights=w), x, tx, T, w))
    per_row, per_triple = found
    assert per_triple.log_likelihood == pytest.approx(per_row.log_likelihood, rel=1e-9)
    assert per_triple.baseline_log_likelihood == pytest.approx(
        per_row.baseline_log_likelihood, rel=1e-6
    )
    assert per_triple.hessian_condition == pytest.approx(per_row.hessian_condition, rel=1e-3)
