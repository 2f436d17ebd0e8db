"""Holdout outcomes and metrics (lib.evaluation) and the churn classifier (lib.churn)."""

from __future__ import annotations

import itertools
import math
from datetime import date

import numpy as np
import polars as pl
import pytest

from dagster_project.lib.value.churn import ChurnClassifier, holdout_split
from dagster_project.lib.value.metrics import (
    calibration_by_decile,
    frequency_groups,
    holdout_outcomes,
    mae,
    rmse,
    roc_auc,
)


def _pairwise_auc(score: list[float], positive: list[bool]) -> float:
    pairs = [
        1.0 if p > n else 0.5 if p == n else 0.0
        for (p, yp), (n, yn) in itertools.product(zip(score, positive, strict=True), repeat=2)
        if yp and not yn
    ]
    return sum(pairs) / len(pairs)


def test_auc_by_hand_and_against_all_pairs() -> None:
    assert roc_auc([0.1, 0.2, 0.8, 0.9], [False, False, True, True]) == 1.0
    assert roc_auc([0.9, 0.8, 0.2, 0.1], [False, False, True, True]) == 0.0
    assert roc_auc([0.5, 0.5, 0.5], [True, False, False]) == 0.5
    assert math.isnan(roc_auc([0.1, 0.2], [True, True]))
    rng = np.random.default_rng(3)
    score = rng.integers(0, 6, 60).astype(float).tolist()  # many ties
    positive = (rng.random(60) < 0.4).tolist()
    assert roc_auc(score, positive) == pytest.approx(_pairwise_auc(score, positive))


def test_errors_and_calibration_deciles() -> None:
    assert mae([1.0, 3.0], [2.0, 1.0]) == 1.5
    assert rmse([1.0, 3.0], [2.0, 1.0]) == pytest.approx(math.sqrt(2.5))
    score = np.linspace(0.0, 0.99, 100)
    actual = score > 0.5
    table = calibration_by_decile(score, actual)
    assert table["decile"].to_list() == list(range(1, 11))
    assert table["customers"].to_list() == [10] * 10
    assert table["predicted"][0] == pytest.approx(score[:10].mean())
    assert table["actual"].to_list()[:5] == [0.0] * 5 and table["actual"][-1] == 1.0
    assert calibration_by_decile([0.3, 0.7], [False, True])["customers"].to_list() == [1, 1]


def test_holdout_outcomes_count_new_purchase_days() -> None:
    cut = pl.DataFrame(
        {
            "user_id": ["a", "b", "c", "d"],
            "as_of_date": [date(2024, 1, 1)] * 4,
            "is_customer": [True, True, True, False],
            "repeat_purchases": [0, 3, 9, 0],
            "purchase_span_days": [0, 10, 40, 0],
            "customer_age_days": [5, 30, 50, None],
        }
    )
    later = cut.with_columns(pl.Series("repeat_purchases", [2, 3, 12, 1]))
    out = holdout_outcomes(cut, later).sort("user_id")
    assert out["user_id"].to_list() == ["a", "b", "c"]  # d was no customer at the cut
    assert out["holdout_purchases"].to_list() == [2, 0, 3]
    assert out["churned"].to_list() == [False, True, False]
    assert out["frequency_group"].to_list() == ["0", "3", "7+"]
    assert frequency_groups() == ["0", "1", "2", "3", "4", "5", "6", "7+"]


def test_holdout_split_is_deterministic_and_order_free() -> None:
    ids = pl.Series([f"u{i:04d}" for i in range(1000)])
    split = holdout_split(ids, 0.3, seed=1)
    assert 0.25 < split.mean() < 0.35
    shuffled = ids.sample(fraction=1.0, shuffle=True, seed=5)
    again = holdout_split(shuffled, 0.3, seed=1)
    assert dict(zip(shuffled, again, strict=True)) == dict(zip(ids, split, strict=True))
    assert not np.array_equal(holdout_split(ids, 0.3, seed=2), split)
    with pytest.raises(ValueError, match="test_share"):
        holdout_split(ids, 1.0, seed=1)


def test_churn_classifier_learns_a_planted_signal() -> None:
    rng = np.random.default_rng(0)
    n = 1500
    recency = rng.integers(0, 200, n)
    noise = rng.normal(size=n)
    churned = rng.random(n) < 1 / (1 + np.exp(-(recency - 100) / 20))
    frame = pl.DataFrame({"recency_days": recency, "noise": noise, "frequency": [None] * n})
    model = ChurnClassifier(features=("recency_days", "noise", "frequency", "absent")).fit(
        frame[:1000], churned[:1000]
    )
    # the absent and the all-NULL column are left out
    assert model.features_ == ("recency_days", "noise")
    risk = model.predict_churn(frame[1000:])
    assert roc_auc(risk, churned[1000:]) > 0.85
    assert np.all((risk >= 0) & (risk <= 1))
    again = ChurnClassifier(features=("recency_days", "noise")).fit(frame[:1000], churned[:1000])
    np.testing.assert_array_equal(again.predict_churn(frame[1000:]), risk)  # deterministic
    # a scoring frame without a training column still scores (the booster sees missing values)
    assert model.predict_churn(frame[1000:].drop("noise")).shape == (500,)
    with pytest.raises(ValueError, match="both churned and retained"):
        ChurnClassifier().fit(frame[:10], np.ones(10, dtype=bool))
