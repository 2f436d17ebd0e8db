"""Hand-made user_features frames shared by the segmentation tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

_RULE_SCHEMA = {
    "user_id": pl.Utf8,
    "is_customer": pl.Boolean,
    "tenure_days": pl.Int32,
    "recency_days": pl.Int32,
    "frequency": pl.Int32,
    "monetary": pl.Float64,
    "customer_age_days": pl.Int32,
    "repeat_purchases": pl.Int32,
    "purchase_span_days": pl.Int32,
    "days_since_last_active": pl.Int32,
}


def rule_features(
    rows: Sequence[dict[str, Any]],
    *,
    frequency: int = 0,
    tenure_days: int = 800,
    monetary: float = 100.0,
    customer_age_days: int = 500,
    active_when_last_ordered: bool = True,
) -> pl.DataFrame:
    """user_features rows with contract-consistent defaults for the columns a test ignores.

    Customers unless frequency is 0; recency 10 days; a customer's last activity is their last
    order unless ``active_when_last_ordered`` is off (then NULL). ``prev_order_gap_days`` is a
    column only when a row gives it.
    """
    out = []
    for i, row in enumerate(rows):
        freq = int(row.get("frequency", frequency))
        customer = bool(row.get("is_customer", freq > 0))
        recency = row.get("recency_days", 10 if customer else None)
        full = {
            "user_id": row.get("user_id", f"u{i:04d}"),
            "is_customer": customer,
            "tenure_days": row.get("tenure_days", tenure_days),
            "recency_days": recency,
            "frequency": freq,
            "monetary": float(row.get("monetary", monetary if customer else 0.0)),
            "customer_age_days": row.get(
                "customer_age_days", customer_age_days if customer else None
            ),
            "repeat_purchases": row.get("repeat_purchases", max(freq - 1, 0)),
            "purchase_span_days": row.get("purchase_span_days", 0),
            "days_since_last_active": row.get(
                "days_since_last_active", recency if active_when_last_ordered else None
            ),
        }
        if "prev_order_gap_days" in row:
            full["prev_order_gap_days"] = row["prev_order_gap_days"]
        out.append(full)
    schema = dict(_RULE_SCHEMA)
    if any("prev_order_gap_days" in r for r in out):
        schema["prev_order_gap_days"] = pl.Int32
    return pl.DataFrame(out, schema=schema, orient="row")


def mixed_user_features(
    n: int, seed: int, shares: tuple[float, float, float] = (0.2, 0.4, 0.4), id_width: int = 0
) -> pl.DataFrame:
    """VIPs, one-time buyers and non-customers (NULL recency / AOV) in these shares, with the
    clustering features of user_features."""
    rng = np.random.default_rng(seed)
    group = rng.choice(3, size=n, p=list(shares))
    customer = group < 2
    frequency = np.where(group == 0, rng.poisson(12, n) + 3, np.where(group == 1, 1, 0))
    aov = np.where(group == 0, rng.lognormal(5.0, 0.3, n), rng.lognormal(3.5, 0.3, n))
    tenure = rng.integers(40, 900, n)
    recency = np.where(group == 0, rng.integers(0, 30, n), rng.integers(100, 400, n))
    return pl.DataFrame(
        {
            "user_id": [f"u{i:0{id_width}d}" for i in range(n)],
            "is_customer": customer,
            "tenure_days": tenure,
            "recency_days": pl.Series(np.minimum(recency, tenure)).scatter(
                np.flatnonzero(~customer), None
            ),
            "frequency": frequency,
            "monetary": np.where(customer, frequency * aov, 0.0),
            "avg_order_value": pl.Series(aov).scatter(np.flatnonzero(~customer), None),
            "events_90d": np.where(group == 0, rng.poisson(30, n), rng.poisson(1, n)),
        }
    )
