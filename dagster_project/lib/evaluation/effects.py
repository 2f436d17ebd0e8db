"""Two-arm effect statistics: difference in means with a 95 % interval, relative lift, CUPED,
and the sample-ratio-mismatch test. Pure numpy on one metric's values per arm.

- Lift: mean(treatment) - mean(control), Welch's standard error sqrt(s_t²/n_t + s_c²/n_c), a
  normal 95 % interval and a two-sided p-value (the arms of a campaign are hundreds of users
  or more). Conversion and retention are 0/1 values, whose mean is the rate: for them the
  interval and p-value are Agresti-Caffo's (one success and one failure added to each arm),
  which keep their coverage for rates near 0 or 1, where Wald's plug-in variance collapses.
- Relative lift: lift / mean(control), its interval by the delta method (null when the control
  mean is 0).
- CUPED (Deng et al. 2013): y - theta (x - mean(x)) with theta = cov(x, y) / var(x) over both
  arms, x the user's spend before the exposure; the same difference in means on the adjusted
  values. Randomisation makes x independent of the arm, so the lift keeps its expectation and
  loses the variance x explains.
- SRM: a chi-square test (1 degree of freedom) of the arm counts against the expected control
  share; a very small p-value (< SRM_ALPHA) means the split is broken and the row untrustworthy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Z_95 = 1.959963984540054
#: p-value below which a sample-ratio mismatch is flagged (the usual, strict threshold: the
#: check runs on every row, and a real mismatch gives p-values far below it).
SRM_ALPHA = 0.001


@dataclass(frozen=True)
class Lift:
    """A difference in means between arms, with its 95 % interval and two-sided p-value."""

    lift: float | None
    low: float | None
    high: float | None
    p_value: float | None
    std_error: float | None


@dataclass(frozen=True)
class ArmEstimate:
    """Everything a row of marts.campaign_effects reports on one metric."""

    treatment_users: int
    control_users: int
    treatment_value: float | None
    control_value: float | None
    absolute: Lift
    relative: Lift
    cuped: Lift


_NO_LIFT = Lift(None, None, None, None, None)


def normal_two_sided_p(z: float) -> float:
    """P(|Z| >= |z|) for a standard normal Z."""
    return math.erfc(abs(z) / math.sqrt(2.0))


def _from_estimate(lift: float, std_error: float) -> Lift:
    # without variance in either arm the difference is exact
    exact_p = 1.0 if lift == 0 else 0.0
    p_value = normal_two_sided_p(lift / std_error) if std_error > 0 else exact_p
    return Lift(lift, lift - Z_95 * std_error, lift + Z_95 * std_error, p_value, std_error)


def _is_binary(values: np.ndarray) -> bool:
    return bool(np.all((values == 0) | (values == 1)))


def difference_in_means(treatment: np.ndarray, control: np.ndarray) -> Lift:
    """Welch's difference in means, Agresti-Caffo's interval for 0/1 values (null with fewer
    than 2 users in an arm). The lift itself is always the plain difference."""
    t, c = np.asarray(treatment, dtype=float), np.asarray(control, dtype=float)
    if t.size < 2 or c.size < 2:
        return _NO_LIFT
    lift = float(t.mean() - c.mean())
    if _is_binary(t) and _is_binary(c):
        pt, pc = (t.sum() + 1) / (t.size + 2), (c.sum() + 1) / (c.size + 2)
        std_error = math.sqrt(pt * (1 - pt) / (t.size + 2) + pc * (1 - pc) / (c.size + 2))
        interval = _from_estimate(float(pt - pc), std_error)
        return Lift(lift, interval.low, interval.high, interval.p_value, std_error)
    std_error = math.sqrt(t.var(ddof=1) / t.size + c.var(ddof=1) / c.size)
    return _from_estimate(lift, std_error)


def relative_lift(treatment: np.ndarray, control: np.ndarray) -> Lift:
    """mean(t) / mean(c) - 1 with a delta-method interval (null when mean(c) is 0)."""
    t, c = np.asarray(treatment, dtype=float), np.asarray(control, dtype=float)
    if t.size < 2 or c.size < 2 or c.mean() == 0:
        return _NO_LIFT
    mt, mc = float(t.mean()), float(c.mean())
    variance = t.var(ddof=1) / t.size / mc**2 + mt**2 * c.var(ddof=1) / c.size / mc**4
    return _from_estimate(mt / mc - 1.0, math.sqrt(variance))


def cuped_theta(values: np.ndarray, covariate: np.ndarray) -> float:
    """cov(x, y) / var(x) over all users (0 when the covariate does not vary)."""
    x, y = np.asarray(covariate, dtype=float), np.asarray(values, dtype=float)
    if x.size < 2:
        return 0.0
    var_x = x.var(ddof=1)
    if var_x == 0:
        return 0.0
    return float(np.cov(x, y, ddof=1)[0, 1] / var_x)


def cuped_lift(
    treatment: np.ndarray,
    control: np.ndarray,
    treatment_covariate: np.ndarray,
    control_covariate: np.ndarray,
) -> Lift:
    """The difference in means of the CUPED-adjusted values (see the module doc)."""
    t, c = np.asarray(treatment, dtype=float), np.asarray(control, dtype=float)
    xt, xc = (
        np.asarray(treatment_covariate, dtype=float),
        np.asarray(control_covariate, dtype=float),
    )
    x = np.concatenate([xt, xc])
    theta = cuped_theta(np.concatenate([t, c]), x)
    mean_x = x.mean() if x.size else 0.0
    return difference_in_means(t - theta * (xt - mean_x), c - theta * (xc - mean_x))


def estimate(
    treatment: np.ndarray,
    control: np.ndarray,
    treatment_covariate: np.ndarray,
    control_covariate: np.ndarray,
) -> ArmEstimate:
    """All of a metric's statistics for one campaign x segment (nulls already removed)."""
    t, c = np.asarray(treatment, dtype=float), np.asarray(control, dtype=float)
    return ArmEstimate(
        treatment_users=int(t.size),
        control_users=int(c.size),
        treatment_value=float(t.mean()) if t.size else None,
        control_value=float(c.mean()) if c.size else None,
        absolute=difference_in_means(t, c),
        relative=relative_lift(t, c),
        cuped=cuped_lift(t, c, treatment_covariate, control_covariate),
    )


def srm_p_value(treatment_users: int, control_users: int, expected_control_share: float) -> float:
    """Chi-square (1 df) p-value of the split against the expected control share (1.0 when
    there is nothing to test)."""
    n = treatment_users + control_users
    if n == 0 or not 0.0 < expected_control_share < 1.0:
        return 1.0
    expected_c = n * expected_control_share
    expected_t = n - expected_c
    chi2 = (control_users - expected_c) ** 2 / expected_c + (
        treatment_users - expected_t
    ) ** 2 / expected_t
    return math.erfc(math.sqrt(chi2 / 2.0))


def design_share(observed_control_share: float, step: float = 0.05) -> float:
    """The control share a campaign was most likely designed with: the observed share rounded
    to the nearest `step` (designs use round shares: 10 %, 20 %, 50 %), kept inside (0, 1)."""
    rounded = round(observed_control_share / step) * step
    return min(max(rounded, step), 1.0 - step)


def roi(lift_per_user: float | None, treatment_users: int, cost: float | None) -> float | None:
    """(incremental revenue - cost) / cost: incremental revenue is the revenue lift per user
    times the treated users; null without a positive cost or a lift."""
    if lift_per_user is None or cost is None or cost <= 0:
        return None
    return (lift_per_user * treatment_users - cost) / cost
