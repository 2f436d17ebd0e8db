"""marts.model_quality rows: verdicts against a bar, what an unmeasured figure means, and the
round trip through a version's stored metrics."""

from __future__ import annotations

import json
import math
from datetime import date

import pytest

from dagster_project.lib.model_store.quality import (
    QUALITY_SCHEMA,
    QualityMetric,
    at_least,
    at_most,
    failed_quality,
    quality_dicts,
    quality_frame,
    quality_metadata,
    reported,
    stored_quality,
)


def test_verdicts_follow_the_comparison() -> None:
    assert at_least("auc", 0.7, 0.6, "holdout").passed is True
    assert at_least("auc", 0.59, 0.6, "holdout").passed is False
    assert at_least("auc", 0.6, 0.6, "holdout").passed is True  # the bar itself passes
    assert at_most("mae", 0.4, 0.5, "holdout").passed is True
    assert at_most("mae", 0.6, 0.5, "holdout").passed is False
    assert reported("k", 5, "k_selection").passed is None
    assert at_least("fidelity", 0.95, None, "surrogate").passed is None  # bar switched off


def test_a_judged_figure_that_could_not_be_measured_fails() -> None:
    missing = at_least("auc", None, 0.6, "holdout", "model selection skipped")
    assert missing.passed is False
    not_a_number = at_least("auc", math.nan, 0.6, "holdout")
    assert not_a_number.value is None and not_a_number.passed is False
    assert failed_quality([missing]) == ["auc n/a < 0.6 (model selection skipped)"]


def test_a_threshold_needs_a_comparison() -> None:
    with pytest.raises(ValueError, match="threshold needs a comparison"):
        QualityMetric("auc", 0.7, threshold=0.6)
    with pytest.raises(ValueError, match="comparison must be"):
        QualityMetric("auc", 0.7, threshold=0.6, comparison=">")


def test_rows_round_trip_through_the_stored_metrics() -> None:
    figures = [
        at_least("silhouette", 0.31, 0.25, "k_selection"),
        at_most("davies_bouldin", 1.9, 1.5, "k_selection"),
        reported("calinski_harabasz", 812.5, "k_selection"),
        at_least("customers", 12, 20, "minimum_data", "BG/NBD"),
    ]
    stored = json.loads(json.dumps({"quality": quality_dicts(figures)}))  # as the card keeps it
    assert stored_quality(stored) == figures
    assert stored_quality({}) == []  # versions fitted before quality was recorded

    frame = quality_frame("user_value", "user_value-2024-03-31-abc", date(2024, 3, 31), figures)
    assert frame.schema == QUALITY_SCHEMA
    assert frame["passed"].to_list() == [True, False, None, False]
    assert frame["note"].to_list() == [None, None, None, "BG/NBD"]
    assert set(frame["model_version"]) == {"user_value-2024-03-31-abc"}
    assert failed_quality(figures) == ["davies_bouldin 1.9 > 1.5", "customers 12 < 20 (BG/NBD)"]
    assert quality_metadata(figures) == {
        "quality/silhouette": 0.31,
        "quality/davies_bouldin": 1.9,
        "quality/calinski_harabasz": 812.5,
        "quality/customers": 12.0,
    }
