"""Model quality as rows: one per model version and metric, with its threshold and verdict.

Each model states its own figures (segmentation: silhouette, Calinski-Harabasz, Davies-Bouldin,
bootstrap stability, surrogate fidelity; value: holdout forecast MAE, churn AUC, calibration
error, and the minimum-data guards) as :class:`QualityMetric` values stored with the version's
metrics under ``"quality"``. marts.model_quality is built from them, so BI reads the same numbers
the model card and the Dagster asset metadata show, for every version ever fitted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

import polars as pl

AT_LEAST = ">="
AT_MOST = "<="

QUALITY_KEY = "quality"

QUALITY_SCHEMA: dict[str, Any] = {
    "model_name": pl.String,
    "model_version": pl.String,
    "trained_as_of": pl.Date,
    "metric": pl.String,
    "value": pl.Float64,
    "threshold": pl.Float64,
    "comparison": pl.String,
    "passed": pl.Boolean,
    "source": pl.String,
    "note": pl.String,
}


def _finite(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class QualityMetric:
    """One figure of a model version. ``threshold`` None: reported, not judged (e.g. the
    Calinski-Harabasz index has no scale-free bar). A judged metric without a value (too few
    users to compute it) fails: a gate that cannot be measured is not passed."""

    metric: str
    value: float | None
    threshold: float | None = None
    comparison: str | None = None
    source: str = ""
    note: str = ""

    def __post_init__(self) -> None:
        if (self.threshold is None) != (self.comparison is None):
            raise ValueError(f"{self.metric}: a threshold needs a comparison and vice versa")
        if self.comparison not in (None, AT_LEAST, AT_MOST):
            raise ValueError(f"{self.metric}: comparison must be {AT_LEAST!r} or {AT_MOST!r}")
        object.__setattr__(self, "value", _finite(self.value))
        object.__setattr__(self, "threshold", _finite(self.threshold))

    @property
    def passed(self) -> bool | None:
        if self.comparison is None:
            return None
        if self.value is None or self.threshold is None:
            return False
        if self.comparison == AT_LEAST:
            return self.value >= self.threshold
        return self.value <= self.threshold

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


def reported(metric: str, value: float | None, source: str, note: str = "") -> QualityMetric:
    """A figure shown beside the judged ones, with no bar (a size, a count, a scale-bound index)."""
    return QualityMetric(metric, value, source=source, note=note)


def at_least(
    metric: str, value: float | None, threshold: float | None, source: str, note: str = ""
) -> QualityMetric:
    """A figure that must reach ``threshold``; ``threshold`` None reports it unjudged."""
    comparison = AT_LEAST if threshold is not None else None
    return QualityMetric(metric, value, threshold, comparison, source, note)


def at_most(
    metric: str, value: float | None, threshold: float | None, source: str, note: str = ""
) -> QualityMetric:
    """A figure that must stay at or below ``threshold``."""
    comparison = AT_MOST if threshold is not None else None
    return QualityMetric(metric, value, threshold, comparison, source, note)


def quality_dicts(metrics: Iterable[QualityMetric]) -> list[dict[str, Any]]:
    """What a version keeps under ``metrics["quality"]`` (plain JSON)."""
    return [m.as_dict() for m in metrics]


def stored_quality(metrics: Mapping[str, Any]) -> list[QualityMetric]:
    """The quality figures stored with a version (none for versions fitted before they were
    recorded)."""
    fields = ("metric", "value", "threshold", "comparison", "source", "note")
    return [
        QualityMetric(**{k: row.get(k) for k in fields if k in row})
        for row in metrics.get(QUALITY_KEY, [])
    ]


def quality_frame(
    model_name: str, model_version: str, trained_as_of: date, metrics: Sequence[QualityMetric]
) -> pl.DataFrame:
    """marts.model_quality rows of one version (schema :data:`QUALITY_SCHEMA`)."""
    return pl.DataFrame(
        [
            {
                "model_name": model_name,
                "model_version": model_version,
                "trained_as_of": trained_as_of,
                "metric": m.metric,
                "value": m.value,
                "threshold": m.threshold,
                "comparison": m.comparison,
                "passed": m.passed,
                "source": m.source,
                "note": m.note or None,
            }
            for m in metrics
        ],
        schema=QUALITY_SCHEMA,
    )


def quality_metadata(metrics: Sequence[QualityMetric]) -> dict[str, float]:
    """Numeric asset metadata (``quality/<metric>``), so Dagster plots each figure over versions."""
    return {f"quality/{m.metric}": m.value for m in metrics if m.value is not None}


def failed_quality(metrics: Sequence[QualityMetric]) -> list[str]:
    """'metric value < threshold' for each judged metric that did not pass."""
    out = []
    for m in metrics:
        if m.passed is False:
            value = "n/a" if m.value is None else f"{m.value:.4g}"
            bar = "<" if m.comparison == AT_LEAST else ">"
            note = f" ({m.note})" if m.note else ""
            out.append(f"{m.metric} {value} {bar} {m.threshold:.4g}{note}")
    return out
