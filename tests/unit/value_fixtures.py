"""Synthetic order histories for the value-selection and backtest tests (not a test module).

A heterogeneous buy-till-you-die process in days, with one twist the purchase-count models
cannot see: a share of customers place a cancelled order and leave a few days later. Only
completed orders enter (x, t_x, T), while user_features' cancel_refund_rate shows the
cancellation, so a supervised churn model has information the probabilistic score lacks.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl

START = date(2024, 1, 1)


def synthetic_orders(
    n: int = 2500, days: int = 420, seed: int = 0, warning_share: float = 0.5
) -> pl.DataFrame:
    """user_id, order_date, amount, is_completed for ``n`` users acquired over ``days``."""
    rng = np.random.default_rng(seed)
    first = rng.integers(0, days - 60, n).astype(float)
    lam = rng.gamma(0.9, 1 / 18.0, n)  # purchases per day
    life = rng.exponential(1.0 / rng.gamma(0.7, 1 / 500.0, n))  # days alive after acquisition
    warned = rng.random(n) < warning_share
    cancel_at = first + rng.uniform(5, 300, n)
    # warned customers leave a few days after their cancelled order (if still alive then)
    death = np.where(warned & (cancel_at < first + life), cancel_at + 3.0, first + life)
    rows_user, rows_time = [np.arange(n)], [first]
    clock = first.copy()
    alive = np.ones(n, dtype=bool)
    while alive.any():
        clock = clock + rng.exponential(1.0 / lam)
        alive = alive & (clock < death) & (clock < days)
        rows_user.append(np.flatnonzero(alive))
        rows_time.append(clock[alive])
    users = np.concatenate(rows_user)
    times = np.concatenate(rows_time)
    cancelled = warned & (cancel_at < death) & (cancel_at < days)
    users = np.concatenate([users, np.flatnonzero(cancelled)])
    times = np.concatenate([times, cancel_at[cancelled]])
    completed = np.concatenate(
        [np.ones(users.size - cancelled.sum(), bool), np.zeros(cancelled.sum(), bool)]
    )
    spend = rng.gamma(4.0, 8.0, n)
    return pl.DataFrame(
        {
            "user_id": [f"u{u:05d}" for u in users],
            "order_date": [START + timedelta(days=int(t)) for t in times],
            "amount": rng.gamma(6.0, spend[users] / 6.0),
            "is_completed": completed,
        }
    ).sort("order_date", "user_id")
