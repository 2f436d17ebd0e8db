"""CDNOW backtests: Strata's value models on the real CDNOW data, 39-week calibration / holdout.

Prints, for the 2,357-customer sample and the 23,570-customer master file (both shipped with
the `lifetimes` dev dependency; read from its install directory, `lifetimes` itself is not
imported), the fitted BG/NBD and Pareto/NBD parameters and log-likelihoods, predicted vs
actual holdout repeat purchases in total and by calibration frequency, per-customer MAE /
RMSE of each forecast, the churn AUCs and the tracking chart.

The pipeline is Strata's own: orders go into an in-memory warehouse, lib.features computes the
snapshots and lib.backtest runs the backtest exactly as the daily job would have on
1997-09-30: models fitted on data up to that day, the forecast model per calibration-frequency
group and the churn model chosen on the internal 90-day holdout (1997-07-02 .. 1997-09-30),
never on the 39-week holdout.

    .venv/bin/python benchmarks/cdnow_backtest.py [--sample-only] [--lifetimes]

--lifetimes also fits the lifetimes package's BetaGeoFitter / ParetoNBDFitter on the same
summaries (the published baseline: MAE 0.819 and 0.794 on the master file).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import time
import warnings
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from dagster_project.lib.features.user_features import compute_user_features
from dagster_project.lib.value.backtest import run_backtest, tracking_inputs
from dagster_project.lib.value.spec import ValueSpec, load_value_spec
from dagster_project.testing.stand_in_marts import orders_warehouse

CUT = date(1997, 9, 30)
END = date(1998, 6, 30)
START = date(1997, 1, 1)
HOLDOUT_DAYS = (END - CUT).days  # 273 = 39 weeks
# The literature's CDNOW baseline, lifetimes 0.11 on the master file.
LIFETIMES_MAE = {"bgnbd": 0.819, "pareto_nbd": 0.794}


def cdnow_path(name: str) -> Path:
    spec = importlib.util.find_spec("lifetimes")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the lifetimes dev dependency is not installed (uv sync --dev)")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / name


def load_orders(name: str = "CDNOW_master.txt") -> pl.DataFrame:
    """Transactions as orders: user_id, order_date, amount (completed)."""
    master = "master" in name
    raw = np.loadtxt(cdnow_path(name), skiprows=1 if master else 0)
    day_col, value_col = (1, 3) if master else (2, 4)
    return pl.DataFrame(
        {
            "user_id": raw[:, 0].astype(np.int64).astype(str),
            "order_date": raw[:, day_col].astype(np.int64).astype(str),
            "amount": raw[:, value_col],
        }
    ).with_columns(pl.col("order_date").str.strptime(pl.Date, "%Y%m%d"))


def cdnow_spec() -> ValueSpec:
    """The committed spec in weekly units, so parameters compare with the literature."""
    return dataclasses.replace(load_value_spec(), time_unit_days=7.0)


def backtest(orders: pl.DataFrame, spec: ValueSpec | None = None, tracking: bool = True) -> Any:
    spec = spec or cdnow_spec()
    window = spec.churn_window_days
    with orders_warehouse(orders) as con:
        snap = {
            d: compute_user_features(con, d)
            for d in (CUT - timedelta(window), CUT, CUT + timedelta(window), END)
        }
        inputs = None
        if tracking:
            first_days, weekly = tracking_inputs(con, CUT, START, END)
            inputs = (first_days, weekly, START, CUT, END)
    return run_backtest(
        snap[CUT],
        snap[END],
        spec,
        HOLDOUT_DAYS,
        history=snap[CUT - timedelta(window)],
        churn_end=snap[CUT + timedelta(window)],
        tracking=inputs,
    )


def _rows(result: Any, section: str, segment: str = "all") -> pl.DataFrame:
    return result.rows.filter(
        (pl.col("section") == section) & (pl.col("segment") == segment)
    ).select("model", "bucket", "metric", "value", "customers")


def lifetimes_baseline(result: Any, orders: pl.DataFrame) -> dict[str, float]:
    """MAE of lifetimes' fitters on the same calibration summary (weeks)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from lifetimes import BetaGeoFitter, ParetoNBDFitter
    spec = cdnow_spec()
    with orders_warehouse(orders) as con:
        cal = compute_user_features(con, CUT)
        end = compute_user_features(con, END)
    from dagster_project.lib.value.metrics import holdout_outcomes

    out = holdout_outcomes(cal, end)
    x = out["repeat_purchases"].to_numpy().astype(float)
    tx = out["purchase_span_days"].to_numpy() / spec.time_unit_days
    T = out["customer_age_days"].to_numpy() / spec.time_unit_days
    y = out["holdout_purchases"].to_numpy().astype(float)
    figures = {}
    for key, fitter in (("bgnbd", BetaGeoFitter), ("pareto_nbd", ParetoNBDFitter)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            started = time.perf_counter()
            model = fitter().fit(x, tx, T)
            pred = model.conditional_expected_number_of_purchases_up_to_time(
                HOLDOUT_DAYS / 7.0, x, tx, T
            )
        figures[key] = float(np.mean(np.abs(pred - y)))
        figures[f"{key}_seconds"] = time.perf_counter() - started
    return figures


def report(label: str, result: Any) -> None:
    h = result.headline
    print(f"\n=== {label}: {h['customers']:,} customers, cut {CUT}, holdout {HOLDOUT_DAYS} days")
    params = _rows(result, "params").pivot("bucket", index="model", values="value")
    print("parameters (weeks) and log-likelihood:")
    print(params)
    run = {r["metric"]: r["value"] for r in _rows(result, "run").iter_rows(named=True)}
    print(
        f"calibration repeat purchases {run['calibration_repeat_purchases']:,.0f}; "
        f"holdout actual {h['actual_purchases']:,.0f}"
    )
    for key in ("bgnbd", "pareto_nbd", "chosen"):
        pred = h[f"predicted_{key}"]
        bias = pred / h["actual_purchases"] - 1.0
        print(
            f"  {key:<11} predicted {pred:9,.1f} ({bias:+.1%})  MAE {h[f'mae_{key}']:.4f}"
            f"  RMSE {h[f'rmse_{key}']:.4f}"
        )
    by_freq = (
        _rows(result, "forecast_by_frequency")
        .pivot("model", index="bucket", values="value")
        .join(
            _rows(result, "forecast_by_frequency")
            .filter(pl.col("model") == "actual")
            .select("bucket", "customers"),
            on="bucket",
        )
    )
    print("mean holdout purchases by calibration frequency:")
    print(by_freq)
    print("forecast model per group:", h["forecast_choice"])
    aucs = {k[4:]: round(v, 4) for k, v in h.items() if k.startswith("auc_")}
    print(f"churn (no purchase in 90 days) AUC: {aucs}; churn model used: {h['churn_model']}")
    if result.notes:
        print("notes:", *result.notes, sep="\n  ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample-only", action="store_true")
    parser.add_argument("--lifetimes", action="store_true", help="also fit lifetimes' models")
    args = parser.parse_args()
    pl.Config.set_tbl_rows(60)
    pl.Config.set_tbl_cols(12)
    datasets = [("CDNOW sample", "CDNOW_sample.txt")]
    if not args.sample_only:
        datasets.append(("CDNOW master", "CDNOW_master.txt"))
    for label, name in datasets:
        orders = load_orders(name)
        started = time.perf_counter()
        result = backtest(orders)
        elapsed = time.perf_counter() - started
        report(label, result)
        print(f"backtest took {elapsed:.1f} s")
        if "master" in name:
            print("tracking chart (cumulative repeat purchases, every 4th week):")
            print(
                result.tracking.filter(
                    (pl.col("week") % 4 == 0) | (pl.col("week") == pl.col("week").max())
                )
            )
            baseline = LIFETIMES_MAE
            if args.lifetimes:
                baseline = lifetimes_baseline(result, orders)
            print(
                f"per-customer MAE: Strata chosen {result.headline['mae_chosen']:.4f} vs lifetimes "
                f"BG/NBD {baseline['bgnbd']:.4f}, Pareto/NBD {baseline['pareto_nbd']:.4f}"
            )


if __name__ == "__main__":
    main()
