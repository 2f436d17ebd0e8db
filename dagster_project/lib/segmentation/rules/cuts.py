"""Cut points of the R/F/M scores and the value-tier thresholds, from the customers of a date."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from dagster_project.lib.segmentation.rules.inputs import customer_mask
from dagster_project.lib.segmentation.spec import ScoreRule, SegmentationSpec


@dataclass(frozen=True)
class RuleCuts:
    """Cut points in raw units actually used on a date; report them as run metadata."""

    recency_edges: tuple[float, ...]
    frequency_edges: tuple[float, ...]
    monetary_edges: tuple[float, ...]
    recency_threshold: float | None
    frequency_threshold: float | None
    monetary_threshold: float | None
    n_customers: int

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-friendly) for asset metadata."""
        return {
            "recency_edges": list(self.recency_edges),
            "frequency_edges": list(self.frequency_edges),
            "monetary_edges": list(self.monetary_edges),
            "recency_threshold": self.recency_threshold,
            "frequency_threshold": self.frequency_threshold,
            "monetary_threshold": self.monetary_threshold,
            "n_customers": self.n_customers,
        }


def _edges(values: np.ndarray, rule: ScoreRule) -> tuple[float, ...]:
    if rule.method == "fixed":
        return rule.edges
    if values.size == 0:
        return tuple(float("nan") for _ in rule.edges)
    return tuple(float(q) for q in np.quantile(values, rule.edges, method="linear"))


def compute_cuts(features: pl.DataFrame, spec: SegmentationSpec) -> RuleCuts:
    """R/F/M cut points and value-tier thresholds from the customers in ``features``.

    Exposed (and accepted back by ``assign_rule_segments``) so a run can log the cut points,
    or an analyst can score another date with frozen cuts.
    """
    rules = spec.rules
    customers = features.filter(customer_mask())

    def values(column: str) -> np.ndarray:
        # known values only: a customer's spend is NULL when no amount is known (money: none)
        return customers.get_column(column).cast(pl.Float64).drop_nulls().drop_nans().to_numpy()

    stat = np.median if rules.value_statistic == "median" else np.mean

    def threshold(column: str) -> float | None:
        vals = values(column)
        return float(stat(vals)) if vals.size else None

    return RuleCuts(
        recency_edges=_edges(values(rules.recency.column), rules.recency),
        frequency_edges=_edges(values(rules.frequency.column), rules.frequency),
        monetary_edges=_edges(values(rules.monetary.column), rules.monetary),
        recency_threshold=threshold(rules.recency.column),
        frequency_threshold=threshold(rules.frequency.column),
        monetary_threshold=threshold(rules.monetary.column),
        n_customers=customers.height,
    )
