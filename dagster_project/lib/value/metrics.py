"""Holdout outcomes and accuracy metrics shared by model selection (value.py) and backtests.

Everything here compares predictions made with data up to a cut date C against what customers
did in (C, C + h], using two feature snapshots: as of C (the calibration data) and as of
C + h. Because ``repeat_purchases`` counts distinct completed-order days - 1, the number of
purchase days in (C, C + h] of a customer already known at C is simply the difference of the
two snapshots; no order-level data is needed.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]

X_COL, TX_COL, T_COL = "repeat_purchases", "purchase_span_days", "customer_age_days"
# Calibration-frequency groups of the BG/NBD literature's holdout table: 0, 1, ..., 6, 7+.
TOP_FREQUENCY_GROUP = 7


def valid_customers(frame: pl.DataFrame) -> pl.DataFrame:
    """Customers whose (x, t_x, T) are usable by BG/NBD and Pareto/NBD."""
    return frame.filter(
        pl.col("is_customer").fill_null(False)
        & pl.col(T_COL).is_not_null()
        & (pl.col(T_COL) >= 0)
        & pl.col(TX_COL).is_between(0, pl.col(T_COL))
        & (pl.col(X_COL).fill_null(-1) >= 0)
    )


def frequency_group(x: pl.Expr, top: int = TOP_FREQUENCY_GROUP) -> pl.Expr:
    """'0', '1', ..., '<top-1>', '<top>+': the calibration-frequency buckets, as text."""
    return (
        pl.when(x >= top)
        .then(pl.lit(f"{top}+"))
        .otherwise(x.cast(pl.Int64).cast(pl.String))
        .alias("frequency_group")
    )


def frequency_groups(top: int = TOP_FREQUENCY_GROUP) -> list[str]:
    return [*(str(i) for i in range(top)), f"{top}+"]


def holdout_outcomes(calibration: pl.DataFrame, later: pl.DataFrame) -> pl.DataFrame:
    """One row per customer valid at the cut: calibration (x, t_x, T) and what happened next.

    ``calibration`` and ``later`` are user_features snapshots as of C and C + h. Columns: every
    column of the calibration frame, plus ``holdout_purchases`` (distinct completed-order days
    in (C, C + h]), ``churned`` (no completed order in (C, C + h]) and ``frequency_group``.
    Users missing from ``later`` (which cannot happen with point-in-time features) are dropped.
    """
    base = valid_customers(calibration)
    after = later.select("user_id", pl.col(X_COL).alias("_x_later"))
    return (
        base.join(after, on="user_id", how="inner")
        .with_columns(
            (pl.col("_x_later") - pl.col(X_COL)).clip(lower_bound=0).alias("holdout_purchases")
        )
        .with_columns(
            (pl.col("holdout_purchases") == 0).alias("churned"),
            frequency_group(pl.col(X_COL)),
        )
        .drop("_x_later")
        .sort("user_id")  # a fixed row order: everything fitted on it is reproducible
    )


def mae(predicted: ArrayLike, actual: ArrayLike) -> float:
    p, a = np.asarray(predicted, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    return float(np.mean(np.abs(p - a))) if p.size else float("nan")


def rmse(predicted: ArrayLike, actual: ArrayLike) -> float:
    p, a = np.asarray(predicted, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    return float(np.sqrt(np.mean((p - a) ** 2))) if p.size else float("nan")


def roc_auc(score: ArrayLike, positive: ArrayLike) -> float:
    """Area under the ROC curve = P(score of a random positive > that of a random negative).

    Mann-Whitney form with average ranks, so ties count one half. NaN when either class is
    empty (the AUC is undefined, not 0.5).
    """
    s = np.asarray(score, dtype=np.float64)
    y = np.asarray(positive, dtype=bool)
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    # average ranks (1-based) of tied scores; numpy only (scipy.stats costs ~1.5 s to import)
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = ((ends - counts + 1 + ends) / 2.0)[inverse.ravel()]
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def calibration_by_decile(score: ArrayLike, positive: ArrayLike, bins: int = 10) -> pl.DataFrame:
    """Mean predicted probability vs observed rate in equal-count bins of the score.

    Bin 1 holds the lowest scores. Customers with equal scores may fall in neighbouring bins
    (bins are equal-count by rank, which keeps every bin populated). Fewer customers than bins:
    one customer per bin.
    """
    s = np.asarray(score, dtype=np.float64)
    y = np.asarray(positive, dtype=np.float64)
    n = s.size
    schema = {
        "decile": pl.Int32,
        "customers": pl.Int64,
        "predicted": pl.Float64,
        "actual": pl.Float64,
    }
    if n == 0:
        return pl.DataFrame(schema=schema)
    order = np.argsort(s, kind="stable")
    k = min(bins, n)
    which = np.empty(n, dtype=np.int64)
    which[order] = np.arange(n) * k // n
    return (
        pl.DataFrame({"decile": which + 1, "predicted": s, "actual": y})
        .group_by("decile")
        .agg(
            pl.len().cast(pl.Int64).alias("customers"),
            pl.col("predicted").mean(),
            pl.col("actual").mean(),
        )
        .sort("decile")
        .select(pl.col("decile").cast(pl.Int32), "customers", "predicted", "actual")
    )


def calibration_error(score: ArrayLike, positive: ArrayLike, bins: int = 10) -> float:
    """Expected calibration error: the customer-weighted mean |predicted - observed| over the
    equal-count bins of :func:`calibration_by_decile` (NaN without customers)."""
    table = calibration_by_decile(score, positive, bins)
    if table.height == 0:
        return float("nan")
    gap = (table["predicted"] - table["actual"]).abs() * table["customers"]
    return float(gap.sum() / table["customers"].sum())
