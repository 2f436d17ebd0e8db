"""Diagnostics of a fitted value model: does the optimum describe the data, or did the fit run
off to a bound?

An optimiser always returns a point. On data a model cannot identify (every customer's spend
exactly constant, nobody ever dropping out) the best point lies at infinity, and L-BFGS-B
stops at the bound of its box with "converged": Gamma-Gamma with p = 3.5e8 and gamma = 0 is
such a point, and its spend predictions are noise. Three checks, in the units the models are
fitted in (money in units of the mean spend, time in units of the mean customer age), where an
identified parameter is of order one:

- **runaway parameters**: a parameter beyond ``RUNAWAY`` (or below its inverse) is at its
  bound or on the way there; where the optimiser stops on the way depends on the machine's
  floating point, so Gamma-Gamma is also probed along its run-off ridge (p up, gamma down,
  each customer's mean spend unchanged): a likelihood that still rises there is a runaway
  wherever the optimiser stopped;
- **the Hessian's condition** of the mean negative log-likelihood in log-parameters at the
  optimum: a flat direction (condition beyond ``MAX_CONDITION``, or a non-positive curvature)
  means the data do not pin the parameters down;
- **the log-likelihood against a simpler baseline**: BG/NBD contains the NBD without
  drop-out (a -> 0), so a BG/NBD below it did not find the optimum; Gamma-Gamma is compared
  with one Gamma distribution of mean spend for everybody, which it does not contain: below
  it, the spend model is misspecified for these data (a warning, not a failure).

A fit with any problem is *degenerate*: :mod:`dagster_project.lib.value.fit` does not use it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from dagster_project.lib.value.clv.bgnbd import BetaGeoModel, _BGData, _bgnbd_loglik_terms
from dagster_project.lib.value.clv.fitting import FloatArray
from dagster_project.lib.value.clv.gamma_gamma import GammaGammaModel, _gg_loglik_terms

RUNAWAY = 1e6  # |ln(parameter)| above ln(1e6) ~ 13.8, in fitting units
MAX_CONDITION = 1e10
BASELINE_TOLERANCE = 1e-6  # per customer, in log-likelihood units
_STEP = 1e-3  # finite-difference step in log-parameters
RIDGE_STEP = 10.0  # how far along a run-off ridge the likelihood is probed


@dataclass(frozen=True)
class FitDiagnostics:
    model: str
    params_in_fit_units: dict[str, float]
    log_likelihood: float  # per customer
    baseline: str
    baseline_log_likelihood: float  # per customer
    hessian_condition: float  # inf when a curvature is not positive
    problems: tuple[str, ...]
    warnings: tuple[str, ...] = ()

    @property
    def degenerate(self) -> bool:
        return bool(self.problems)

    def summary(self) -> dict[str, Any]:
        def finite(value: float) -> float | None:
            return float(value) if math.isfinite(value) else None

        return {
            "params_in_fit_units": {k: finite(v) for k, v in self.params_in_fit_units.items()},
            "log_likelihood_per_customer": finite(self.log_likelihood),
            "baseline": self.baseline,
            "baseline_log_likelihood_per_customer": finite(self.baseline_log_likelihood),
            "hessian_condition": finite(self.hessian_condition),
            "degenerate": self.degenerate,
            "problems": list(self.problems),
            "warnings": list(self.warnings),
        }


def gamma_gamma_diagnostics(
    model: GammaGammaModel, frequency: FloatArray, monetary: FloatArray, weights: FloatArray
) -> FitDiagnostics:
    """Diagnose a fitted Gamma-Gamma on the repeat customers it was fitted on."""
    keep = (frequency > 0) & (monetary > 0) & (weights > 0)
    x, w = frequency[keep], weights[keep]
    scale = float(w @ monetary[keep] / w.sum())
    m = monetary[keep] / scale  # the fit's money unit: the mean spend
    ux, inv = np.unique(x, return_inverse=True)
    w_by_x = np.bincount(inv, weights=w, minlength=ux.shape[0])
    log_m, log_x = np.log(m), np.log(x)
    p, q, g = (model.params_[k] for k in ("p", "q", "gamma"))

    def loglik(params: FloatArray) -> float:
        return _gg_loglik_terms(*params, ux, inv, w_by_x, x, m, w, log_m, log_x, grad=False)[0]

    fitted = np.array([p, q, g / scale])
    return _diagnose(
        "gamma_gamma",
        GammaGammaModel.param_names,
        fitted,
        loglik,
        float(w.sum()),
        "one Gamma distribution of mean spend",
        _gamma_baseline(m, w),
        nested=False,
        ridge=("p", lambda params: params * np.array([RIDGE_STEP, 1.0, 1.0 / RIDGE_STEP])),
    )


def bgnbd_diagnostics(
    model: BetaGeoModel, x: FloatArray, tx: FloatArray, T: FloatArray, weights: FloatArray
) -> FitDiagnostics:
    """Diagnose a fitted BG/NBD on the (x, t_x, T) rows (and counts) it was fitted on."""
    scale = float(weights @ T / weights.sum()) or 1.0  # the fit's time unit: the mean age
    data = _BGData(x, tx / scale, T / scale, weights)
    r, alpha, a, b = (model.params_[k] for k in BetaGeoModel.param_names)

    def loglik(params: FloatArray) -> float:
        return _bgnbd_loglik_terms(*params, data, grad=False)[0]

    return _diagnose(
        "bgnbd",
        BetaGeoModel.param_names,
        np.array([r, alpha / scale, a, b]),
        loglik,
        data.w_sum,
        "NBD (the same purchase rates, nobody drops out)",
        _nbd_baseline(x, T / scale, weights),
        nested=True,
    )


def _diagnose(
    name: str,
    names: tuple[str, ...],
    fitted: FloatArray,
    loglik: Callable[[FloatArray], float],
    customers: float,
    baseline: str,
    baseline_total: float,
    nested: bool,
    ridge: tuple[str, Callable[[FloatArray], FloatArray]] | None = None,
) -> FitDiagnostics:
    problems, warnings = [], []
    for param, value in zip(names, fitted, strict=True):
        if not math.isfinite(value) or value > RUNAWAY:
            problems.append(f"{param} = {value:.3g} runs off to infinity")
        elif value < 1.0 / RUNAWAY:
            problems.append(f"{param} = {value:.3g} is at 0")
    if ridge is not None and not problems:
        param, further = ridge
        if loglik(further(fitted)) >= loglik(fitted) - BASELINE_TOLERANCE * customers:
            value = fitted[names.index(param)]
            problems.append(
                f"{param} = {value:.3g} runs off to infinity (the likelihood still rises as "
                f"{param} grows {RIDGE_STEP:g}-fold along its ridge)"
            )
    condition = _hessian_condition(lambda z: -loglik(np.exp(z)) / customers, np.log(fitted))
    if not condition < MAX_CONDITION:
        problems.append(f"the likelihood is flat at the optimum (condition {condition:.3g})")
    per_customer, baseline_per_customer = loglik(fitted) / customers, baseline_total / customers
    if per_customer < baseline_per_customer - BASELINE_TOLERANCE:
        (problems if nested else warnings).append(
            f"log-likelihood {per_customer:.4f} per customer is below the baseline's "
            f"{baseline_per_customer:.4f} ({baseline})"
        )
    return FitDiagnostics(
        name,
        dict(zip(names, (float(v) for v in fitted), strict=True)),
        per_customer,
        baseline,
        baseline_per_customer,
        condition,
        tuple(problems),
        tuple(warnings),
    )


def _hessian_condition(objective: Callable[[FloatArray], float], z: FloatArray) -> float:
    """Condition number of the central-difference Hessian at ``z``; inf unless positive definite."""
    n, h = z.shape[0], _STEP
    hessian = np.empty((n, n))
    steps = np.eye(n) * h
    with np.errstate(all="ignore"):
        for i in range(n):
            for j in range(i, n):
                value = (
                    objective(z + steps[i] + steps[j])
                    - objective(z + steps[i] - steps[j])
                    - objective(z - steps[i] + steps[j])
                    + objective(z - steps[i] - steps[j])
                ) / (4 * h * h)
                hessian[i, j] = hessian[j, i] = value
    if not np.all(np.isfinite(hessian)):
        return math.inf
    eigenvalues = np.linalg.eigvalsh(hessian)
    if eigenvalues[0] <= 0:
        return math.inf
    return float(eigenvalues[-1] / eigenvalues[0])


def _gamma_baseline(m: FloatArray, w: FloatArray) -> float:
    """Total log-likelihood of one Gamma distribution (weighted MLE) for every mean spend."""
    from scipy.optimize import brentq
    from scipy.special import digamma
    from scipy.stats import gamma

    mean = float(w @ m / w.sum())
    gap = math.log(mean) - float(w @ np.log(m) / w.sum())  # >= 0 (Jensen); 0: all equal
    if gap <= 1e-12:
        shape = 1e6  # every spend the same: the baseline is a spike at the mean
    else:
        shape = brentq(lambda k: math.log(k) - digamma(k) - gap, 1e-8, 1e8)
    return float(w @ gamma.logpdf(m, shape, scale=mean / shape))


def _nbd_baseline(x: FloatArray, T: FloatArray, w: FloatArray) -> float:
    """Total log-likelihood of the NBD (Poisson purchases, Gamma rates, no drop-out) at its
    maximum, in the same terms as the BG/NBD likelihood (which reaches it as a -> 0)."""
    from scipy.optimize import minimize
    from scipy.special import gammaln

    total = float(w.sum())

    def negative(z: FloatArray) -> float:
        r, alpha = np.exp(z)
        terms = gammaln(r + x) - gammaln(r) + r * np.log(alpha) - (r + x) * np.log(alpha + T)
        return -float(w @ terms) / total

    result = minimize(
        negative, np.zeros(2), method="Nelder-Mead", options={"xatol": 1e-9, "fatol": 1e-12}
    )
    return -float(result.fun) * total
