"""A shallow decision tree that mimics the clusters, so every segment has readable rules.

KMeans boundaries are oblique in a transformed space that no marketer reads. A surrogate tree
fitted on the original-unit features to predict the cluster ids gives axis-aligned rules
("monetary > 850, recency_days <= 40") and, through the leaf a user falls in, a one-line reason
per user. Its fidelity (the share of users it assigns to their own cluster) says how far the
rules can be trusted; it is stored with every model version. Trees are invariant to monotone
transforms, so fitting them on original units loses nothing against the log/scaled space.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl


def format_number(value: float) -> str:
    """Short, readable threshold: 3 significant digits-ish, no scientific notation."""
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}".rstrip("0").rstrip(".")
    return f"{value:.2f}".rstrip("0").rstrip(".")


class SurrogateTree:
    """DecisionTreeClassifier surrogate of a clustering (scikit-learn estimator shape).

    Learned attributes: ``tree_`` (the sklearn tree), ``feature_names_``, ``fidelity_``,
    ``cluster_recall_`` ({cluster id: share of its users the tree assigns to it}),
    ``leaf_rules_`` ({leaf node id: rule text}), ``leaves_`` (polars frame, one row per rule:
    cluster_id, rule, users, precision) and ``rules_text_`` (``sklearn.tree.export_text``).
    """

    def __init__(
        self,
        max_depth: int = 6,
        max_leaf_nodes: int = 16,
        min_leaf_share: float = 0.005,
        random_state: int = 0,
    ) -> None:
        self.max_depth = max_depth
        self.max_leaf_nodes = max_leaf_nodes
        self.min_leaf_share = min_leaf_share
        self.random_state = random_state

    def fit(self, x: np.ndarray, labels: np.ndarray, feature_names: Sequence[str]) -> SurrogateTree:
        from sklearn.tree import DecisionTreeClassifier, export_text

        x = np.asarray(x, dtype=np.float64)
        labels = np.asarray(labels)
        self.feature_names_ = list(feature_names)
        if x.shape[1] != len(self.feature_names_):
            raise ValueError("one feature name per column of x")
        min_leaf = max(1, math.ceil(self.min_leaf_share * x.shape[0]))
        self.tree_ = DecisionTreeClassifier(
            max_depth=self.max_depth,
            max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=min_leaf,
            random_state=self.random_state,
        ).fit(x, labels)
        predicted = self.tree_.predict(x)
        self.fidelity_ = float((predicted == labels).mean()) if len(labels) else float("nan")
        self.cluster_recall_ = {
            int(c): float((predicted[labels == c] == c).mean()) for c in np.unique(labels)
        }
        # integer-valued features read better as ">= 2 orders" than "> 1.5"
        self.integral_ = [bool(np.all(np.mod(x[:, j], 1) == 0)) for j in range(x.shape[1])]
        self.leaf_rules_ = self._leaf_rules()
        leaves = self.tree_.apply(x)
        frame = pl.DataFrame(
            {"leaf_id": leaves, "cluster_id": labels, "predicted": predicted},
            schema={"leaf_id": pl.Int64, "cluster_id": pl.Int64, "predicted": pl.Int64},
        )
        self.leaves_ = (
            frame.with_columns(
                pl.col("leaf_id")
                .replace_strict(self.leaf_rules_, return_dtype=pl.Utf8)
                .alias("rule")
            )
            .group_by("rule")
            .agg(
                pl.col("predicted").first().cast(pl.Int32).alias("cluster_id"),
                pl.len().cast(pl.Int64).alias("users"),
                (pl.col("cluster_id") == pl.col("predicted")).mean().alias("precision"),
            )
            .sort("cluster_id", "users", "rule", descending=[False, True, False])
            .select("cluster_id", "rule", "users", "precision")
        )
        self.rules_text_ = export_text(
            self.tree_,
            feature_names=self.feature_names_,
            class_names=[str(c) for c in self.tree_.classes_],
            decimals=2,
        )
        return self

    def _leaf_rules(self) -> dict[int, str]:
        """Each leaf's path, merged into one interval per feature, in order of first use.

        A subtree whose leaves all predict the same cluster reads as one rule (its root's path):
        the tree is grown greedily and often splits a region without changing the answer.
        """
        t = self.tree_.tree_
        is_leaf = t.children_left == t.children_right
        predicted = t.value[:, 0, :].argmax(axis=1)
        single: dict[int, int | None] = {}

        def only_class(node: int) -> int | None:
            if is_leaf[node]:
                single[node] = int(predicted[node])
            else:
                left = only_class(int(t.children_left[node]))
                right = only_class(int(t.children_right[node]))
                single[node] = left if left is not None and left == right else None
            return single[node]

        only_class(0)
        rules: dict[int, str] = {}

        def leaves_under(node: int) -> list[int]:
            if is_leaf[node]:
                return [node]
            return leaves_under(int(t.children_left[node])) + leaves_under(
                int(t.children_right[node])
            )

        def walk(node: int, bounds: dict[int, list[float]], order: list[int]) -> None:
            if single[node] is not None:
                text = self._describe(bounds, order) or "all users"
                rules.update(dict.fromkeys(leaves_under(node), text))
                return
            feature, threshold = int(t.feature[node]), float(t.threshold[node])
            seen = order if feature in order else [*order, feature]
            lo, hi = bounds.get(feature, [-math.inf, math.inf])
            walk(int(t.children_left[node]), {**bounds, feature: [lo, min(hi, threshold)]}, seen)
            walk(int(t.children_right[node]), {**bounds, feature: [max(lo, threshold), hi]}, seen)

        walk(0, {}, [])
        return rules

    def _describe(self, bounds: dict[int, list[float]], order: list[int]) -> str:
        terms = []
        for j in order:
            lo, hi = bounds[j]
            name = self.feature_names_[j]
            if self.integral_[j]:
                low = None if lo == -math.inf else f">= {math.floor(lo) + 1}"
                high = None if hi == math.inf else f"<= {math.floor(hi)}"
                if low and high and math.floor(lo) + 1 == math.floor(hi):
                    terms.append(f"{name} = {math.floor(hi)}")
                    continue
            else:
                low = None if lo == -math.inf else f"> {format_number(lo)}"
                high = None if hi == math.inf else f"<= {format_number(hi)}"
            terms.append(f"{name} {' and '.join(b for b in (low, high) if b)}")
        return ", ".join(terms)

    def _check_fitted(self) -> None:
        if not hasattr(self, "tree_"):
            raise RuntimeError("SurrogateTree is not fitted: call fit() first")

    def predict(self, x: np.ndarray) -> np.ndarray:
        self._check_fitted()
        return self.tree_.predict(np.asarray(x, dtype=np.float64))

    def rules_for(self, x: np.ndarray) -> tuple[np.ndarray, pl.Series]:
        """Per row: the tree's cluster and the rule text of its leaf."""
        self._check_fitted()
        x = np.asarray(x, dtype=np.float64)
        leaves = pl.Series("leaf", self.tree_.apply(x), dtype=pl.Int64)
        text = leaves.replace_strict(self.leaf_rules_, return_dtype=pl.Utf8)
        return self.tree_.predict(x), text

    def summary(self) -> dict[str, Any]:
        """Plain dict for the model card."""
        self._check_fitted()
        return {
            "fidelity": self.fidelity_,
            "leaves": int(self.tree_.get_n_leaves()),
            "depth": int(self.tree_.get_depth()),
            "cluster_recall": {str(k): v for k, v in self.cluster_recall_.items()},
            "rules_text": self.rules_text_,
        }
