"""Supervised churn model: gradient boosting on user_features, label = no purchase in a window.

Trained on features as of a past date C and labelled with what customers did in
(C, C + window]; applied to features as of D it estimates P(no completed order in
(D, D + window]). It competes with the probabilistic score (BG/NBD or Pareto/NBD's probability
of no purchase in the window) on a holdout of customers; value.py keeps the better one.

scikit-learn is imported inside the methods: this module is imported (through value.py) by
Dagster definitions, whose load time must stay short.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]

# user_features columns known as of the snapshot date (features.user_features); nothing here
# looks past the as-of date. Columns absent from a frame are skipped at fit time.
DEFAULT_FEATURES: tuple[str, ...] = (
    "recency_days",
    "frequency",
    "monetary",
    "avg_order_value",
    "repeat_purchases",
    "purchase_span_days",
    "customer_age_days",
    "tenure_days",
    "prev_order_gap_days",
    "orders_30d",
    "orders_90d",
    "revenue_30d",
    "revenue_90d",
    "orders_trend_30d",
    "revenue_trend_90d",
    "sessions_90d",
    "page_views_90d",
    "searches_90d",
    "add_to_carts_90d",
    "reviews_90d",
    "support_contacts_90d",
    "events_90d",
    "events_30d",
    "events_trend_30d",
    "days_since_last_active",
    "cancel_refund_rate",
)


def _matrix(frame: pl.DataFrame, columns: Sequence[str]) -> FloatArray:
    """Float matrix; NULL and absent columns become NaN (the booster routes missing values)."""
    cols = [
        frame[c].cast(pl.Float64).fill_null(float("nan")).to_numpy()
        if c in frame.columns
        else np.full(frame.height, np.nan)
        for c in columns
    ]
    if not cols:
        return np.empty((frame.height, 0))
    return np.column_stack(cols).astype(np.float64, copy=False)


class ChurnClassifier:
    """HistGradientBoostingClassifier predicting P(no purchase in the window).

    Configuration in ``__init__``; ``fit`` learns ``features_`` (the columns present with at
    least one value) and ``model_``. Deterministic for a given ``random_state`` (no early
    stopping, so no internal random validation split).
    """

    def __init__(
        self,
        features: Sequence[str] = DEFAULT_FEATURES,
        max_iter: int = 100,
        learning_rate: float = 0.1,
        max_leaf_nodes: int = 15,
        min_samples_leaf: int = 20,
        l2_regularization: float = 1.0,
        random_state: int = 0,
    ) -> None:
        self.features = tuple(features)
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.random_state = random_state

    def fit(self, frame: pl.DataFrame, churned: ArrayLike) -> ChurnClassifier:
        from sklearn.ensemble import HistGradientBoostingClassifier

        y = np.asarray(churned, dtype=bool)
        if y.shape[0] != frame.height:
            raise ValueError("churned must have one label per row")
        if y.all() or not y.any():
            raise ValueError("need both churned and retained customers to fit")
        # absent columns, and columns with no value at all (sklearn's binning fails on them),
        # carry no information: leave them out
        used = tuple(
            c for c in self.features if c in frame.columns and frame[c].null_count() < frame.height
        )
        if not used:
            raise ValueError(f"none of the churn features {list(self.features)} has values")
        model = HistGradientBoostingClassifier(
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=min(self.min_samples_leaf, max(1, frame.height // 10)),
            l2_regularization=self.l2_regularization,
            early_stopping=False,
            random_state=self.random_state,
        )
        model.fit(_matrix(frame, used), y)
        self.features_ = used
        self.model_ = model
        self.n_train_ = int(frame.height)
        self.churn_rate_ = float(y.mean())
        return self

    def predict_churn(self, frame: pl.DataFrame) -> FloatArray:
        """P(no purchase in the window) per row; absent feature columns count as missing."""
        if not hasattr(self, "model_"):
            raise RuntimeError("model is not fitted; call fit() first")
        if frame.height == 0:
            return np.empty(0)
        proba = self.model_.predict_proba(_matrix(frame, self.features_))
        positive = list(self.model_.classes_).index(True)
        return np.clip(proba[:, positive], 0.0, 1.0)

    def summary(self) -> dict[str, Any]:
        return {
            "kind": "hist_gradient_boosting",
            "features": list(getattr(self, "features_", ())),
            "n_train": getattr(self, "n_train_", 0),
            "train_churn_rate": getattr(self, "churn_rate_", None),
            "max_iter": self.max_iter,
            "learning_rate": self.learning_rate,
        }


def holdout_split(user_ids: pl.Series, test_share: float, seed: int) -> NDArray[np.bool_]:
    """Deterministic customer split: True = holdout. Same users + seed give the same split,
    whatever the row order (the draw follows the sorted user ids)."""
    if not 0.0 < test_share < 1.0:
        raise ValueError("test_share must be in (0, 1)")
    order = np.argsort(user_ids.cast(pl.String).to_numpy(), kind="stable")
    draws = np.random.default_rng(seed).random(user_ids.len())
    test = np.empty(user_ids.len(), dtype=bool)
    test[order] = draws < test_share
    return test
