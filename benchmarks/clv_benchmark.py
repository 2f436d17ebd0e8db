"""Fit and predict speed of Strata's CLV models beside the lifetimes package, same data.

    .venv/bin/python benchmarks/clv_benchmark.py [--customers 1000000] [--pareto-sample 100000]

Synthetic customers follow a Pareto/NBD process (Gamma-distributed purchase and dropout rates)
at daily resolution over two years, with Gamma-Gamma order values, so every model is fitted on
data it is meant for. Strata groups identical (x, t_x, T) triples (and (x, m_x) pairs) and fits
with counts as weights; lifetimes fits one row per customer. Times include Strata's grouping.
Prints fit and predict times, the speed-up, and the relative parameter differences (target for
BG/NBD and Gamma-Gamma: >= 10x faster, parameters equal to 1e-3 relative).

lifetimes' Pareto/NBD takes minutes per million customers, so by default it is timed on a
random sample of --pareto-sample customers (Strata's model is fitted on the same sample for
the parameter comparison); --pareto-sample 0 uses every customer.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl

from dagster_project.lib.value.clv import BetaGeoModel, GammaGammaModel, ParetoNBDModel

TRUE = {"r": 0.6, "alpha": 40.0, "s": 0.7, "beta": 300.0, "p": 6.0, "q": 3.5, "gamma": 15.0}
HORIZON_DAYS = 90.0


def synthetic_customers(n: int, seed: int = 0, days: int = 730) -> pl.DataFrame:
    """frequency x, recency t_x, T (days), monetary m_x (mean of the repeat orders)."""
    rng = np.random.default_rng(seed)
    T = rng.integers(1, days, n).astype(np.float64)
    lam = rng.gamma(TRUE["r"], 1.0 / TRUE["alpha"], n)
    mu = rng.gamma(TRUE["s"], 1.0 / TRUE["beta"], n)
    active = np.minimum(rng.exponential(1.0 / mu), T)
    x = rng.poisson(lam * active).astype(np.float64)
    # the last of x uniform purchase times in (0, active], on whole days
    last = active * rng.random(n) ** (1.0 / np.maximum(x, 1.0))
    tx = np.where(x > 0, np.floor(last), 0.0)
    nu = rng.gamma(TRUE["q"], 1.0 / TRUE["gamma"], n)
    spend = rng.gamma(TRUE["p"] * np.maximum(x, 1.0), 1.0) / (nu * np.maximum(x, 1.0))
    return pl.DataFrame({"x": x, "tx": tx, "T": T, "m": np.where(x > 0, np.round(spend, 2), 0.0)})


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


def fit_grouped(kind: type, data: pl.DataFrame) -> Any:
    triples = data.group_by("x", "tx", "T").agg(pl.len().alias("n"))
    arrays = [triples[c].to_numpy() for c in ("x", "tx", "T", "n")]
    return kind().fit(*arrays[:3], weights=arrays[3]), triples.height


def predict(model: Any, data: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """P(alive) and E[purchases in 90 days] for every customer (vectorised, one row each)."""
    x, tx, T = (data[c].to_numpy() for c in ("x", "tx", "T"))
    return (
        model.conditional_probability_alive(x, tx, T),
        model.conditional_expected_number_of_purchases_up_to_time(HORIZON_DAYS, x, tx, T),
    )


def rel_diff(ours: dict[str, float], theirs: dict[str, float]) -> dict[str, float]:
    return {k: abs(ours[k] - theirs[k]) / abs(theirs[k]) for k in ours}


def report(name: str, fit: tuple[float, float], predict: tuple[float, float], diff: dict) -> None:
    worst = max(diff.values())
    print(
        f"{name:<12} fit {fit[0]:7.2f} s vs lifetimes {fit[1]:7.2f} s ({fit[1] / fit[0]:6.1f}x)"
        f" | predict {predict[0]:6.2f} s vs {predict[1]:6.2f} s ({predict[1] / predict[0]:5.1f}x)"
        f" | max param rel diff {worst:.1e} {'OK' if worst < 1e-3 else 'DIFFERS'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--pareto-sample", type=int, default=100_000)
    args = parser.parse_args()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pandas as pd
        from lifetimes import BetaGeoFitter, GammaGammaFitter, ParetoNBDFitter

    data = synthetic_customers(args.customers)
    x, tx, T, m = (data[c].to_numpy() for c in ("x", "tx", "T", "m"))
    print(
        f"{data.height:,} customers, {int((x > 0).sum()):,} repeat customers, "
        f"{data.select('x', 'tx', 'T').n_unique():,} distinct (x, t_x, T) triples (days)"
    )

    # ---- BG/NBD
    (bg, _), t_ours = timed(lambda: fit_grouped(BetaGeoModel, data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lt_bg, t_lt = timed(lambda: BetaGeoFitter().fit(x, tx, T))
        _, p_ours = timed(lambda: predict(bg, data))
        _, p_lt = timed(
            lambda: (
                lt_bg.conditional_probability_alive(x, tx, T),
                lt_bg.conditional_expected_number_of_purchases_up_to_time(HORIZON_DAYS, x, tx, T),
            )
        )
    report("BG/NBD", (t_ours, t_lt), (p_ours, p_lt), rel_diff(bg.params_, lt_bg.params_.to_dict()))
    print(f"             ours {bg.params_}\n             lifetimes {lt_bg.params_.to_dict()}")

    # ---- Gamma-Gamma (repeat customers)
    def fit_gg() -> GammaGammaModel:
        pairs = data.filter(pl.col("x") > 0).group_by("x", "m").agg(pl.len().alias("n"))
        return GammaGammaModel().fit(pairs["x"], pairs["m"], weights=pairs["n"])

    rep = x > 0
    gg, t_ours = timed(fit_gg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lt_gg, t_lt = timed(lambda: GammaGammaFitter().fit(x[rep], m[rep]))
        _, p_ours = timed(lambda: gg.conditional_expected_average_profit(x, m))
        _, p_lt = timed(
            lambda: lt_gg.conditional_expected_average_profit(pd.Series(x), pd.Series(m))
        )
    theirs = dict(zip(("p", "q", "gamma"), lt_gg.params_.to_numpy(), strict=True))
    report("Gamma-Gamma", (t_ours, t_lt), (p_ours, p_lt), rel_diff(gg.params_, theirs))
    print(f"             ours {gg.params_}\n             lifetimes {theirs}")

    # ---- Pareto/NBD
    pn, t_full = timed(lambda: fit_grouped(ParetoNBDModel, data)[0])
    _, p_full = timed(lambda: predict(pn, data))
    print(
        f"Pareto/NBD   ours on all {data.height:,}: fit {t_full:.2f} s, predict {p_full:.2f} s;"
        f" {pn.params_}"
    )
    sample = data
    if 0 < args.pareto_sample < data.height:
        sample = data.sample(args.pareto_sample, seed=1)
    sx, stx, sT = (sample[c].to_numpy() for c in ("x", "tx", "T"))
    pn_s, t_ours = timed(lambda: fit_grouped(ParetoNBDModel, sample)[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lt_pn, t_lt = timed(lambda: ParetoNBDFitter().fit(sx, stx, sT))
        _, p_ours = timed(lambda: predict(pn_s, sample))
        _, p_lt = timed(
            lambda: (
                lt_pn.conditional_probability_alive(sx, stx, sT),
                lt_pn.conditional_expected_number_of_purchases_up_to_time(
                    HORIZON_DAYS, sx, stx, sT
                ),
            )
        )
    print(f"Pareto/NBD on {sample.height:,} customers (both):")
    report(
        "Pareto/NBD",
        (t_ours, t_lt),
        (p_ours, p_lt),
        rel_diff(pn_s.params_, lt_pn.params_.to_dict()),
    )
    print(f"             ours {pn_s.params_}\n             lifetimes {lt_pn.params_.to_dict()}")
    # where the parameters differ, the likelihood says which optimiser stopped short
    theirs_model = ParetoNBDModel()
    theirs_model.params_ = {k: float(v) for k, v in lt_pn.params_.to_dict().items()}
    print(
        f"             log-likelihood ours {pn_s.log_likelihood(sx, stx, sT):,.3f}"
        f" vs at lifetimes' parameters {theirs_model.log_likelihood(sx, stx, sT):,.3f}"
    )
    print(f"(true generating parameters: {TRUE}; BG/NBD is misspecified here by design)")


if __name__ == "__main__":
    main()
