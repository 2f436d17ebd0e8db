"""Lifecycle stages: new, prospect, reactivated, active, at risk, dormant, lost."""

from __future__ import annotations

import polars as pl

from dagster_project.lib.segmentation.rules.ordered import OTHERWISE, Rule
from dagster_project.lib.segmentation.spec import LifecycleSpec


def lifecycle_rules(lc: LifecycleSpec) -> tuple[Rule, ...]:
    """The stages in the order they are tested, each with its day thresholds and reason."""
    customer = pl.col("_is_customer")
    recency = pl.col("_recency")
    recent = recency <= lc.active_days
    new, active, at_risk, dormant = (
        pl.lit(lc.new_days),
        pl.lit(lc.active_days),
        pl.lit(lc.at_risk_days),
        pl.lit(lc.dormant_days),
    )
    return (
        Rule(
            "new",
            customer & (pl.col("_age") <= lc.new_days),
            pl.format("first order {} days ago (new: <= {} days)", "_age", new),
        ),
        Rule(
            "new",
            ~customer & (pl.col("_tenure") <= lc.new_days),
            pl.format("first seen {} days ago, no order yet (new: <= {} days)", "_tenure", new),
        ),
        Rule(
            "prospect",
            ~customer,
            pl.format("no completed order in the {} days since first seen", "_tenure"),
        ),
        Rule(
            "reactivated",
            recent & (pl.col("_gap") > lc.active_days),
            pl.format(
                "ordered {} days ago after a {}-day gap (> {} days)", recency, "_gap", active
            ),
        ),
        Rule(
            "active",
            recent,
            pl.format("last order {} days ago (active: <= {} days)", recency, active),
        ),
        Rule(
            "at_risk",
            recency <= lc.at_risk_days,
            pl.format("last order {} days ago (at risk: {}-{} days)", recency, active + 1, at_risk),
        ),
        Rule(
            "dormant",
            recency <= lc.dormant_days,
            pl.format(
                "last order {} days ago (dormant: {}-{} days)", recency, at_risk + 1, dormant
            ),
        ),
        Rule(
            "lost",
            OTHERWISE,
            pl.format("last order {} days ago (lost: > {} days)", recency, dormant),
        ),
    )
