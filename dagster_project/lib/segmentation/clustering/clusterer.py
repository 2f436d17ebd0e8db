"""KMeans user clusters with stable ids and profile-derived bilingual names.

Shape of a scikit-learn estimator (configuration in ``__init__``, learned state in attributes
ending in ``_``, ``fit`` returns self, ``predict`` is pure), but it takes the polars
user_features frame directly, because the NULL handling of non-customers belongs to the model,
not to each caller. scikit-learn is imported inside the methods: importing it costs ~5 s, and
Dagster loads this module in every run worker. The fitted object is plain Python + numpy +
scikit-learn state, so it pickles (the lead stores one pickle per model version).

Pipeline: fill NULLs -> sign-preserving log1p (or a normal-scores quantile transform) on
heavy-tailed columns -> StandardScaler -> KMeans (MiniBatchKMeans above ``minibatch_above`` users)
for every k in [k_min, k_max] -> pick k by silhouette (on a fixed-seed sample) among candidates
whose smallest cluster holds at least ``min_share`` of users -> relabel clusters in a canonical
order. A refit on new data then matches its clusters to the previous version's
(``clustering/lineage.py``) and takes over their ids through :meth:`SegmentClusterer.set_ids`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from dagster_project.lib.segmentation.spec import NamingSpec, SegmentationSpec

#: Canonical id order: clusters sorted by these scaled centroid coordinates first (-1 = descending),
#: then by every other feature descending, in the order given. Id 0 is the most valuable cluster.
ORDER_PRIORITY: tuple[tuple[str, int], ...] = (
    ("monetary", -1),
    ("frequency", -1),
    ("recency_days", 1),
)
#: Scaled centroid coordinates are rounded to this many decimals before ordering, so clusters
#: tied on a feature (e.g. several all-zero-monetary non-buyer clusters) fall through to the next
#: key instead of being ordered by floating-point noise.
ORDER_DECIMALS = 6

DEFAULT_FILL: dict[str, str | float] = {"recency_days": "tenure_days"}
#: Fill keyword: the median of the column's non-NULL values in the training data (learned by fit,
#: stored in the model), e.g. a non-customer's average order value is the customers' median.
MEDIAN_FILL = "median"

DEFAULT_NAMING = NamingSpec(
    z_threshold=0.5,
    max_terms=3,
    default_en="average",
    default_zh="普通",
    non_customer_en="non-buyers",
    non_customer_zh="未购",
    purchase_features=("recency_days", "frequency", "monetary", "avg_order_value"),
    terms=(),
)


def _signed_log1p(x: np.ndarray) -> np.ndarray:
    """log1p for non-negative values; mirrored for negatives (trend columns can be < 0)."""
    return np.sign(x) * np.log1p(np.abs(x))


def _signed_expm1(y: np.ndarray) -> np.ndarray:
    return np.sign(y) * np.expm1(np.abs(y))


class SegmentClusterer:
    """KMeans segmentation of user_features with k chosen by silhouette and stable cluster ids.

    Learned attributes (after :meth:`fit`): ``k_``, ``candidate_scores_`` (one dict per k: k,
    silhouette, calinski_harabasz, davies_bouldin, min_share, qualifies), ``centroids_`` (polars
    frame: cluster_id + features in original units, i.e. the scaled centres mapped back through
    the scaler and expm1), ``cluster_sizes_`` (numpy array indexed by cluster id),
    ``feature_names_``, ``algorithm_`` ("kmeans" or "minibatch_kmeans"), ``n_samples_fit_``,
    ``ids_`` (stable id of each cluster in canonical order) and ``next_id_`` (first unused id).
    """

    def __init__(
        self,
        features: Sequence[str],
        k_min: int = 3,
        k_max: int = 8,
        random_state: int = 42,
        log_features: Sequence[str] = (),
        silhouette_sample: int = 20000,
        n_init: int = 4,
        min_share: float = 0.02,
        minibatch_above: int = 200000,
        fill: Mapping[str, str | float] | None = None,
        naming: NamingSpec | None = None,
        quantile_features: Sequence[str] = (),
    ) -> None:
        self.features = list(features)
        self.k_min = k_min
        self.k_max = k_max
        self.random_state = random_state
        self.log_features = list(log_features)
        self.silhouette_sample = silhouette_sample
        self.n_init = n_init
        self.min_share = min_share
        self.minibatch_above = minibatch_above
        self.fill = dict(DEFAULT_FILL if fill is None else fill)
        self.naming = naming if naming is not None else DEFAULT_NAMING
        self.quantile_features = list(quantile_features)

    # ---------------------------------------------------------------- transform

    def _raw_matrix(
        self, frame: pl.DataFrame, fill_values: Mapping[str, float] | None = None
    ) -> np.ndarray:
        """Features in original units with NULLs filled: a fill column, a fill number, the learned
        median (``MEDIAN_FILL``), else 0."""
        learned = fill_values if fill_values is not None else getattr(self, "fill_values_", {})
        missing = [f for f in self.features if f not in frame.columns]
        missing += [
            src
            for f, src in self.fill.items()
            if f in self.features
            and isinstance(src, str)
            and src != MEDIAN_FILL
            and src not in frame.columns
        ]
        if missing:
            raise ValueError(f"frame is missing columns {sorted(set(missing))}")
        exprs = []
        for f in self.features:
            expr = pl.col(f).cast(pl.Float64).fill_nan(None)
            src = self.fill.get(f)
            if src == MEDIAN_FILL:
                expr = expr.fill_null(float(learned.get(f, 0.0)))
            elif isinstance(src, str):
                expr = expr.fill_null(pl.col(src).cast(pl.Float64))
            elif src is not None:
                expr = expr.fill_null(float(src))
            exprs.append(expr.fill_null(0.0).alias(f))
        return frame.select(exprs).to_numpy().astype(np.float64, copy=False)

    def readable_matrix(self, frame: pl.DataFrame) -> np.ndarray:
        """Features in original units for explanations: a fill column where the spec names one
        (non-customers' recency = their tenure), otherwise NULL -> 0 ("no orders" reads as 0, not
        as the customers' median that the clustering uses)."""
        exprs = []
        for f in self.features:
            expr = pl.col(f).cast(pl.Float64).fill_nan(None)
            src = self.fill.get(f)
            if isinstance(src, str) and src != MEDIAN_FILL and src in frame.columns:
                expr = expr.fill_null(pl.col(src).cast(pl.Float64))
            exprs.append(expr.fill_null(0.0).alias(f))
        return frame.select(exprs).to_numpy().astype(np.float64, copy=False)

    def _learn_fills(self, frame: pl.DataFrame) -> dict[str, float]:
        values: dict[str, float] = {}
        for f, src in self.fill.items():
            if src == MEDIAN_FILL and f in self.features:
                median = frame.get_column(f).cast(pl.Float64).fill_nan(None).median()
                values[f] = float(median) if median is not None else 0.0
        return values

    def _log(self, raw: np.ndarray) -> np.ndarray:
        out = raw.copy()
        for j, f in enumerate(self.features):
            if f in self.log_features:
                out[:, j] = _signed_log1p(out[:, j])
        return out

    def _unlog(self, logged: np.ndarray) -> np.ndarray:
        out = logged.copy()
        for j, f in enumerate(self.features):
            if f in self.log_features:
                out[:, j] = _signed_expm1(out[:, j])
        return out

    def _quantile_columns(self) -> list[int]:
        return [j for j, f in enumerate(self.features) if f in self.quantile_features]

    def _transform(self, raw: np.ndarray) -> np.ndarray:
        """Original units -> transformed (log1p / normal scores), before scaling."""
        out = self._log(raw)
        cols = self._quantile_columns()
        if cols:
            out[:, cols] = self.quantile_.transform(raw[:, cols])
        return out

    def _untransform(self, transformed: np.ndarray) -> np.ndarray:
        out = self._unlog(transformed)
        cols = self._quantile_columns()
        if cols:
            out[:, cols] = self.quantile_.inverse_transform(transformed[:, cols])
        return out

    def scaled(self, frame: pl.DataFrame) -> np.ndarray:
        """The users of ``frame`` in the fitted model's space (filled, transformed, scaled)."""
        self._check_fitted()
        return self.scaler_.transform(self._transform(self._raw_matrix(frame)))

    def scaled_from_original(self, matrix: np.ndarray) -> np.ndarray:
        """Points given in original units (e.g. another version's centroids) in this model's
        space, for centroid matching across versions."""
        self._check_fitted()
        return self.scaler_.transform(self._transform(np.asarray(matrix, dtype=np.float64)))

    def _new_estimator(self, k: int, minibatch: bool) -> Any:
        from sklearn.cluster import KMeans, MiniBatchKMeans

        if minibatch:
            return MiniBatchKMeans(
                n_clusters=k,
                n_init=self.n_init,
                random_state=self.random_state,
                batch_size=4096,
            )
        return KMeans(n_clusters=k, n_init=self.n_init, random_state=self.random_state)

    # ---------------------------------------------------------------- fit

    def fit(self, frame: pl.DataFrame) -> SegmentClusterer:
        """Fit the scaler and one KMeans per candidate k, keep the best k, fix canonical ids."""
        from sklearn.metrics import (
            calinski_harabasz_score,
            davies_bouldin_score,
            silhouette_score,
        )
        from sklearn.preprocessing import StandardScaler

        if not 2 <= self.k_min <= self.k_max:
            raise ValueError("need 2 <= k_min <= k_max")
        unknown = set(self.log_features) - set(self.features)
        if unknown:
            raise ValueError(f"log_features not in features: {sorted(unknown)}")
        unknown = set(self.quantile_features) - set(self.features)
        if unknown or set(self.quantile_features) & set(self.log_features):
            raise ValueError("quantile_features: a subset of features, disjoint from log_features")
        fill_values = self._learn_fills(frame)
        raw = self._raw_matrix(frame, fill_values)
        self.fill_values_ = fill_values
        cols = self._quantile_columns()
        if cols:
            from sklearn.preprocessing import QuantileTransformer

            self.quantile_ = QuantileTransformer(
                n_quantiles=max(2, min(1000, raw.shape[0])),
                output_distribution="normal",
                subsample=100_000,
                random_state=self.random_state,
            ).fit(raw[:, cols])
        transformed = self._transform(raw)
        scaler = StandardScaler().fit(transformed)
        z = scaler.transform(transformed)
        n = z.shape[0]
        n_distinct = pl.from_numpy(z).n_unique() if n else 0
        ks = list(range(self.k_min, min(self.k_max, n_distinct) + 1))
        if not ks:
            raise ValueError(f"{n_distinct} distinct users cannot form k_min={self.k_min} clusters")
        minibatch = n > self.minibatch_above
        rng = np.random.default_rng(self.random_state)
        sample = (
            np.sort(rng.choice(n, size=self.silhouette_sample, replace=False))
            if n > self.silhouette_sample
            else np.arange(n)
        )

        candidates: list[dict[str, Any]] = []
        fitted: dict[int, tuple[Any, np.ndarray]] = {}
        for k in ks:
            est = self._new_estimator(k, minibatch)
            labels = est.fit_predict(z)
            sizes = np.bincount(labels, minlength=k)
            n_labels = int((sizes > 0).sum())
            sil = (
                float(silhouette_score(z[sample], labels[sample]))
                if 2 <= len(np.unique(labels[sample])) < len(sample)
                else float("nan")
            )
            candidates.append(
                {
                    "k": k,
                    "silhouette": sil,
                    "calinski_harabasz": (
                        float(calinski_harabasz_score(z, labels)) if n_labels >= 2 else float("nan")
                    ),
                    "davies_bouldin": (
                        float(davies_bouldin_score(z, labels)) if n_labels >= 2 else float("nan")
                    ),
                    "min_share": float(sizes.min() / n),
                    "min_size": int(sizes.min()),
                    "qualifies": bool(sizes.min() / n >= self.min_share),
                }
            )
            fitted[k] = (est, labels)

        pool = [c for c in candidates if c["qualifies"]] or candidates
        best = max(
            pool,
            key=lambda c: (-math.inf if math.isnan(c["silhouette"]) else c["silhouette"], -c["k"]),
        )
        k = int(best["k"])
        estimator, raw_labels = fitted[k]
        for c in candidates:
            c["chosen"] = c["k"] == k

        order = self._canonical_order(estimator.cluster_centers_)
        label_map = np.empty(k, dtype=np.int64)
        label_map[order] = np.arange(k)
        labels = label_map[raw_labels]
        centers = estimator.cluster_centers_[order]

        self.feature_names_ = list(self.features)
        self.scaler_ = scaler
        self.estimator_ = estimator
        self.algorithm_ = "minibatch_kmeans" if minibatch else "kmeans"
        self.k_ = k
        self.candidate_scores_ = candidates
        self.label_map_ = label_map
        self.centers_scaled_ = centers
        original = self._untransform(scaler.inverse_transform(centers))
        original[np.abs(original) < 1e-9] = 0.0  # float noise around exact zeros (non-buyers)
        self.centroids_ = pl.DataFrame(
            {
                "cluster_id": pl.Series(np.arange(k), dtype=pl.Int32),
                **{f: original[:, j] for j, f in enumerate(self.features)},
            }
        )
        self.ids_ = np.arange(k, dtype=np.int64)
        self.next_id_ = k
        self.cluster_sizes_ = np.bincount(labels, minlength=k)
        self.n_samples_fit_ = n
        # profile means in readable units: a non-buyer's "average order value" is 0, not the
        # customers' median the clustering space fills in
        readable = self.readable_matrix(frame)
        self.cluster_means_ = np.vstack(
            [
                readable[labels == i].mean(axis=0)
                if self.cluster_sizes_[i]
                else np.full(readable.shape[1], np.nan)
                for i in range(k)
            ]
        )
        self.population_means_ = readable.mean(axis=0)
        flag = self._customer_flag(frame, raw)
        self.customer_share_ = (
            None
            if flag is None
            else np.bincount(labels, weights=flag, minlength=k) / np.maximum(self.cluster_sizes_, 1)
        )
        self.naming_z_ = self._naming_z(z, centers, flag)
        self.names_ = self._names()
        return self

    def _canonical_order(self, centers: np.ndarray) -> np.ndarray:
        """Cluster indices sorted by priority features (see ORDER_PRIORITY), ties fall through."""
        rounded = np.round(centers, ORDER_DECIMALS)
        keys: list[np.ndarray] = []
        used: set[str] = set()
        for feature, direction in ORDER_PRIORITY:
            if feature in self.features:
                keys.append(direction * rounded[:, self.features.index(feature)])
                used.add(feature)
        keys += [-rounded[:, j] for j, f in enumerate(self.features) if f not in used]
        # np.lexsort sorts by the last key first
        return np.lexsort(tuple(reversed(keys)))

    def _customer_flag(self, frame: pl.DataFrame, raw: np.ndarray) -> np.ndarray | None:
        """1.0 for customers (is_customer, else frequency > 0); None when neither is known."""
        if "is_customer" in frame.columns:
            return frame.get_column("is_customer").fill_null(False).to_numpy().astype(np.float64)
        if "frequency" in self.features:
            return (raw[:, self.features.index("frequency")] > 0).astype(np.float64)
        return None

    def _naming_z(self, z: np.ndarray, centers: np.ndarray, flag: np.ndarray | None) -> np.ndarray:
        """Centroid z-scores used for names.

        Against the whole population (the scaled space has mean 0, sd 1), except that purchase
        features of buyer clusters are compared with customers only: with many non-buyers at 0,
        an average buyer would otherwise read as "high value".
        """
        out = centers.copy()
        if flag is None or not 0 < flag.sum() < len(flag):
            return out
        buyers = z[flag > 0]
        mean, std = buyers.mean(axis=0), buyers.std(axis=0)
        std = np.where(std > 0, std, 1.0)
        assert self.customer_share_ is not None
        for j, f in enumerate(self.features):
            if f in self.naming.purchase_features:
                rows = self.customer_share_ >= 0.5
                out[rows, j] = (centers[rows, j] - mean[j]) / std[j]
        return out

    def _names(self) -> list[tuple[str, str]]:
        """Bilingual names from each centroid's z-scores against the population (mean 0, sd 1)."""
        naming = self.naming
        names: list[tuple[str, str]] = []
        for i in range(self.k_):
            en: list[str] = []
            zh: list[str] = []
            skip: set[str] = set()
            if self.customer_share_ is not None and self.customer_share_[i] < 0.5:
                en.append(naming.non_customer_en)
                zh.append(naming.non_customer_zh)
                skip = set(naming.purchase_features)
            scored = sorted(
                (
                    (abs(float(zv)), f, float(zv))
                    for f, zv in zip(self.features, self.naming_z_[i], strict=True)
                    if f not in skip and abs(zv) >= naming.z_threshold
                ),
                key=lambda t: (-t[0], self.features.index(t[1])),
            )
            for _, f, zv in scored[: max(naming.max_terms - len(en), 0)]:
                term = naming.term(f)
                en.append(term.high_en if zv > 0 else term.low_en)
                zh.append(term.high_zh if zv > 0 else term.low_zh)
            if not en:
                en, zh = [naming.default_en], [naming.default_zh]
            names.append((", ".join(en), "·".join(zh)))
        counts = Counter(names)
        return [
            name if counts[name] == 1 else (f"{name[0]} #{i}", f"{name[1]} #{i}")
            for i, name in enumerate(names)
        ]

    # ---------------------------------------------------------------- use

    def _check_fitted(self) -> None:
        if not hasattr(self, "estimator_"):
            raise RuntimeError("SegmentClusterer is not fitted: call fit() first")

    def set_ids(self, ids: Sequence[int], next_id: int) -> None:
        """Give the clusters (in canonical order) the stable ids matched to a previous version.

        ``next_id`` is the first id never used by this model's lineage (new clusters take ids
        from it, retired ids are never reused).
        """
        self._check_fitted()
        ids_arr = np.asarray(ids, dtype=np.int64)
        if ids_arr.shape != (self.k_,) or len(set(ids_arr.tolist())) != self.k_:
            raise ValueError(f"need {self.k_} distinct ids, got {ids_arr.tolist()}")
        if ids_arr.min() < 0 or next_id <= ids_arr.max():
            raise ValueError("ids must be >= 0 and below next_id")
        self.ids_ = ids_arr
        self.next_id_ = int(next_id)
        self.centroids_ = self.centroids_.with_columns(
            pl.Series("cluster_id", ids_arr, dtype=pl.Int32)
        )

    def predict_index(self, frame: pl.DataFrame) -> np.ndarray:
        """Canonical cluster index 0..k-1 (position in ``ids_``) for every row of ``frame``."""
        return self.label_map_[self.estimator_.predict(self.scaled(frame))]

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        """Stable cluster ids for every row of ``frame`` (same NULL handling as fit).

        The first version's ids are 0..k-1 in canonical order; a refit matched to a previous
        version keeps the ids of the clusters it matched (see :meth:`set_ids`).
        """
        self._check_fitted()
        return self.ids_[self.predict_index(frame)]

    def profile(self) -> pl.DataFrame:
        """One row per cluster id: size, share, customer_share, name (en / zh), feature means.

        Means are of the filled, untransformed features (what a marketer reads); names compare the
        scaled centroid with the population.
        """
        self._check_fitted()
        sizes = self.cluster_sizes_
        data: dict[str, Any] = {
            "cluster_id": pl.Series(self.ids_, dtype=pl.Int32),
            "name": [f"{en} / {zh}" for en, zh in self.names_],
            "name_en": [en for en, _ in self.names_],
            "name_zh": [zh for _, zh in self.names_],
            "size": pl.Series(sizes, dtype=pl.Int64),
            "share": pl.Series(sizes / max(int(sizes.sum()), 1), dtype=pl.Float64),
        }
        if self.customer_share_ is not None:
            data["customer_share"] = pl.Series(self.customer_share_, dtype=pl.Float64)
        for j, f in enumerate(self.features):
            data[f"{f}_mean"] = pl.Series(self.cluster_means_[:, j], dtype=pl.Float64)
        return pl.DataFrame(data)


def clusterer_from_spec(spec: SegmentationSpec) -> SegmentClusterer:
    """An unfitted clusterer configured by the ``clustering`` section of models/segmentation.yml."""
    c = spec.clustering
    return SegmentClusterer(
        features=list(c.features),
        k_min=c.k_min,
        k_max=c.k_max,
        random_state=c.random_state,
        log_features=list(c.log_features),
        silhouette_sample=c.silhouette_sample,
        n_init=c.n_init,
        min_share=c.min_share,
        minibatch_above=c.minibatch_above,
        fill=dict(c.fill),
        naming=c.naming,
        quantile_features=list(c.quantile_features),
    )
