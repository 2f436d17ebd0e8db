"""The per-user values every rule scheme reads, computed once from user_features."""

from __future__ import annotations

import logging

import polars as pl

from dagster_project.lib.segmentation.spec import REQUIRED_FEATURES, SegmentationSpec

logger = logging.getLogger(__name__)


def customer_mask() -> pl.Expr:
    """Customers: at least one completed order on or before the as-of date."""
    return pl.col("is_customer").fill_null(False)


def gap_expr(features: pl.DataFrame, column: str) -> pl.Expr:
    """Days between the last and the previous distinct completed-order day.

    Uses the contract-extension column when present. Without it the gap is known exactly only
    for customers with two order days (gap = purchase_span_days); others count as not reactivated.
    """
    if column in features.columns:
        return pl.col(column).cast(pl.Int64)
    logger.warning(
        "user_features has no %s column: 'reactivated' is detected only for customers with "
        "exactly two order days",
        column,
    )
    return (
        pl.when(pl.col("repeat_purchases") == 1)
        .then(pl.col("purchase_span_days").cast(pl.Int64))
        .otherwise(None)
    )


def rule_inputs(features: pl.DataFrame, spec: SegmentationSpec) -> list[pl.Expr]:
    """The columns the rules test and quote: ``_is_customer``, the R/F/M values ``_rec``,
    ``_freq``, ``_mon`` (the spec's columns), and the day counts ``_tenure``, ``_recency``,
    ``_age``, ``_gap`` and ``_inactive`` (days since last active; tenure for the never active).
    """
    rules = spec.rules
    return [
        customer_mask().alias("_is_customer"),
        pl.col(rules.recency.column).cast(pl.Float64).alias("_rec"),
        pl.col(rules.frequency.column).cast(pl.Float64).alias("_freq"),
        pl.col(rules.monetary.column).cast(pl.Float64).alias("_mon"),
        pl.col("tenure_days").cast(pl.Int64).alias("_tenure"),
        pl.col("recency_days").cast(pl.Int64).alias("_recency"),
        pl.col("customer_age_days").cast(pl.Int64).alias("_age"),
        gap_expr(features, rules.lifecycle.reactivation_gap_column).alias("_gap"),
        pl.col("days_since_last_active")
        .cast(pl.Int64)
        .fill_null(pl.col("tenure_days").cast(pl.Int64))
        .alias("_inactive"),
    ]


def validate_input(features: pl.DataFrame, spec: SegmentationSpec) -> None:
    """Refuse user_features the rules cannot partition: missing columns, duplicate users, or
    customers without the recency and frequency their scores need. A NULL monetary value is
    allowed: a source without money (or an order without amount) leaves it unknown, and the
    user's M score with it."""
    rfm_columns = [
        spec.rules.recency.column,
        spec.rules.frequency.column,
        spec.rules.monetary.column,
    ]
    missing = [c for c in (*REQUIRED_FEATURES, *rfm_columns) if c not in features.columns]
    if missing:
        raise ValueError(f"user_features is missing columns {missing}")
    if features.get_column("user_id").n_unique() != features.height:
        raise ValueError("user_features must hold one row per user_id")
    needed = rfm_columns[:2]
    bad = features.filter(
        customer_mask() & pl.any_horizontal([pl.col(c).is_null() for c in needed])
    ).height
    if bad:
        raise ValueError(f"{bad} customers have NULL {needed}: features are inconsistent")
    bad = features.filter(
        pl.col("tenure_days").is_null() | (customer_mask() & pl.col("customer_age_days").is_null())
    ).height
    if bad:
        raise ValueError(f"{bad} users have NULL tenure_days (or customer_age_days as customers)")
