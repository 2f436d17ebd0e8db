"""KMeans user clusters with stable ids and profile-derived bilingual names.

Shape of a scikit-learn estimator (configuration in ``__init__``, learned state in attributes
ending in ``_``, ``fit`` returns self, ``predict`` is pure), but it takes the polars
user_features frame directly. It composes three parts: the clustering space
(``clustering/preprocessing.py``, a scikit-learn Pipeline: fill NULLs -> sign-preserving log1p or
normal scores on heavy-tailed columns -> StandardScaler), the choice of k
(``clustering/k_selection.py``: KMeans for every k in [k_min, k_max], best silhouette among the k
without tiny clusters) and the canonical order and names (``clustering/naming.py``). scikit-learn
is imported inside the methods: importing it costs seconds, and Dagster loads this module in every
run worker. The fitted object pickles (the lead stores one pickle per model version).

A refit on new data matches its clusters to the previous version's (``clustering/lineage.py``)
and takes over their ids through :meth:`SegmentClusterer.set_ids`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from dagster_project.lib.segmentation.clustering.naming import (
    DEFAULT_NAMING,
    canonical_order,
    cluster_names,
    customer_flag,
    naming_z,
)
from dagster_project.lib.segmentation.spec import KSelectionSpec, NamingSpec, SegmentationSpec

DEFAULT_FILL: dict[str, str | float] = {"recency_days": "tenure_days"}


class SegmentClusterer:
    """KMeans segmentation of user_features with k chosen by silhouette and stable cluster ids.

    Learned attributes (after :meth:`fit`): ``space_`` (the fitted preprocessing Pipeline),
    ``selector_`` (the fitted :class:`KSelector`), ``k_``, ``candidate_scores_`` (one dict per k:
    k, silhouette, calinski_harabasz, davies_bouldin, min_share, qualifies, chosen),
    ``estimator_`` (the chosen KMeans), ``centroids_`` (polars frame: cluster_id + features in
    original units, i.e. the scaled centres mapped back through the pipeline),
    ``cluster_sizes_`` (numpy array indexed by cluster id), ``feature_names_``, ``algorithm_``
    ("kmeans" or "minibatch_kmeans"), ``n_samples_fit_`` (users the KMeans saw: at most
    ``fit_sample``), ``n_users_`` (users described: everyone in the frame), ``ids_`` (stable
    id of each cluster in canonical order) and ``next_id_`` (first unused id).
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
        scaled_log_features: Mapping[str, float] | None = None,
        k_selection: KSelectionSpec | None = None,
        fit_sample: int | None = None,
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
        self.scaled_log_features = dict(scaled_log_features or {})
        self.k_selection = k_selection if k_selection is not None else KSelectionSpec()
        self.fit_sample = fit_sample

    # ---------------------------------------------------------------- transform

    def readable_matrix(self, frame: pl.DataFrame) -> np.ndarray:
        """Features in original units for explanations (NULL reads as 0 unless the spec names a
        fill column, e.g. a non-customer's recency is their tenure)."""
        from dagster_project.lib.segmentation.clustering.preprocessing import FillNulls

        return FillNulls(features=self.features, fill=self.fill).readable(frame)

    def scaled(self, frame: pl.DataFrame) -> np.ndarray:
        """The users of ``frame`` in the fitted model's space (filled, transformed, scaled)."""
        self._check_fitted()
        return self.space_.transform(frame)

    def scaled_from_original(self, matrix: np.ndarray) -> np.ndarray:
        """Points given in original units (e.g. another version's centroids) in this model's
        space, for centroid matching across versions."""
        self._check_fitted()
        return self.space_[1:].transform(np.asarray(matrix, dtype=np.float64))

    # ---------------------------------------------------------------- fit

    def fit(self, frame: pl.DataFrame) -> SegmentClusterer:
        """Fit the space and one KMeans per candidate k, keep the best k, fix canonical ids.

        Above ``fit_sample`` users the space and the KMeans candidates are fitted on a fixed-seed
        random sample of that many users; every user is then assigned to the nearest centre, and
        the sizes, profile means and names describe all of them.
        """
        from dagster_project.lib.segmentation.clustering.k_selection import KSelector
        from dagster_project.lib.segmentation.clustering.preprocessing import clustering_space

        space = clustering_space(
            self.features,
            self.fill,
            self.log_features,
            self.quantile_features,
            self.random_state,
            getattr(self, "scaled_log_features", None),
        )
        rule = getattr(self, "k_selection", None) or KSelectionSpec()
        selector = KSelector(
            k_min=self.k_min,
            k_max=self.k_max,
            n_init=self.n_init,
            random_state=self.random_state,
            silhouette_sample=self.silhouette_sample,
            min_share=self.min_share,
            minibatch_above=self.minibatch_above,
            rule=rule.rule,
            stable_jaccard=rule.min_cluster_jaccard,
            stability_refits=rule.refits,
            stability_sample=rule.sample_size,
            stability_random_state=rule.random_state,
        )
        train = training_sample(frame, getattr(self, "fit_sample", None), self.random_state)
        z_train = space.fit_transform(train)
        selector.fit(z_train)
        k = selector.k_
        estimator = selector.estimator_
        order = canonical_order(estimator.cluster_centers_, self.features)
        label_map = np.empty(k, dtype=np.int64)
        label_map[order] = np.arange(k)
        if train is frame:
            z, fitted_labels = z_train, selector.labels_
        else:
            z = space.transform(frame)
            fitted_labels = estimator.predict(z)
        labels = label_map[fitted_labels]
        centers = estimator.cluster_centers_[order]

        self.space_ = space
        self.selector_ = selector
        self.feature_names_ = list(self.features)
        self.estimator_ = estimator
        self.algorithm_ = selector.algorithm_
        self.k_ = k
        self.candidate_scores_ = selector.candidate_scores_
        self.label_map_ = label_map
        self.centers_scaled_ = centers
        original = space[1:].inverse_transform(centers)
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
        self.n_samples_fit_ = z_train.shape[0]
        self.n_users_ = z.shape[0]
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
        flag = customer_flag(frame, space["fill"].transform(frame), self.features)
        self.customer_share_ = (
            None
            if flag is None
            else np.bincount(labels, weights=flag, minlength=k) / np.maximum(self.cluster_sizes_, 1)
        )
        self.naming_z_ = naming_z(
            z, centers, flag, self.customer_share_, self.features, self.naming
        )
        self.names_ = cluster_names(
            self.naming_z_, self.customer_share_, self.features, self.naming
        )
        return self

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


def clusterer_from_spec(spec: SegmentationSpec, without: Sequence[str] = ()) -> SegmentClusterer:
    """An unfitted clusterer configured by the ``clustering`` section of models/segmentation.yml,
    leaving out the features ``without`` (e.g. money features of a source without money)."""
    c = spec.clustering
    return SegmentClusterer(
        features=[f for f in c.features if f not in without],
        k_min=c.k_min,
        k_max=c.k_max,
        random_state=c.random_state,
        log_features=[f for f in c.log_features if f not in without],
        silhouette_sample=c.silhouette_sample,
        n_init=c.n_init,
        min_share=c.min_share,
        minibatch_above=c.minibatch_above,
        fill={f: v for f, v in c.fill if f not in without},
        naming=c.naming,
        quantile_features=[f for f in c.quantile_features if f not in without],
        scaled_log_features={f: v for f, v in c.scaled_log_features if f not in without},
        k_selection=c.k_selection,
        fit_sample=c.fit_sample,
    )


def training_sample(frame: pl.DataFrame, size: int | None, random_state: int) -> pl.DataFrame:
    """``frame`` itself up to ``size`` rows (None: no bound), else a fixed-seed random sample of
    ``size`` rows in their original order: the same input gives the same sample on every rerun."""
    if size is None or frame.height <= size:
        return frame
    rng = np.random.default_rng(random_state)
    return frame[np.sort(rng.choice(frame.height, size=size, replace=False))]
