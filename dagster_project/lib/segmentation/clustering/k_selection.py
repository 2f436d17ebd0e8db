"""Choosing k: one KMeans per candidate k, kept by silhouette or by stability among the k without
tiny clusters.

The silhouette rule prefers few, well separated groups: on generated data with seven archetypes
it chose 3 to 6 clusters once the history was not the 120 days it was tuned on (issue 10). The
stability rule (Ben-Hur, Elisseeff & Guyon 2002; Lange et al. 2004: the right k is the largest
one whose clustering is reproducible) keeps the largest k whose every cluster comes back, with a
mean bootstrap Jaccard (Hennig 2007) of at least ``stable_jaccard``: splitting a true group in
two is not reproducible, merging two is, so the largest stable k is the finest real structure.

Imported only when a model is fitted: scikit-learn costs seconds to import.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

#: Mini-batch size of MiniBatchKMeans (used above ``minibatch_above`` users).
MINIBATCH_SIZE = 4096


def new_kmeans(k: int, n_init: int, random_state: int, minibatch: bool) -> Any:
    """An unfitted KMeans, or MiniBatchKMeans for large inputs."""
    if minibatch:
        return MiniBatchKMeans(
            n_clusters=k, n_init=n_init, random_state=random_state, batch_size=MINIBATCH_SIZE
        )
    return KMeans(n_clusters=k, n_init=n_init, random_state=random_state)


def _scores(z: np.ndarray, labels: np.ndarray, k: int, sample: np.ndarray) -> dict[str, Any]:
    """The internal quality figures of one candidate clustering."""
    n = z.shape[0]
    sizes = np.bincount(labels, minlength=k)
    n_labels = int((sizes > 0).sum())
    silhouette = (
        float(silhouette_score(z[sample], labels[sample]))
        if 2 <= len(np.unique(labels[sample])) < len(sample)
        else float("nan")
    )
    return {
        "k": k,
        "silhouette": silhouette,
        "calinski_harabasz": (
            float(calinski_harabasz_score(z, labels)) if n_labels >= 2 else float("nan")
        ),
        "davies_bouldin": float(davies_bouldin_score(z, labels)) if n_labels >= 2 else float("nan"),
        "min_share": float(sizes.min() / n),
        "min_size": int(sizes.min()),
    }


class KSelector(ClusterMixin, BaseEstimator):
    """KMeans for every k in [k_min, k_max] (capped at the number of distinct points).

    A candidate qualifies when its smallest cluster holds at least ``min_share`` of the points.
    ``rule="silhouette"``: among those (or among all, when none does) the highest silhouette wins,
    computed on a fixed-seed sample of ``silhouette_sample`` points, ties going to the smaller k.
    ``rule="stability"``: the largest qualifying k whose clusters all have a mean bootstrap
    Jaccard >= ``stable_jaccard`` (``stability_refits`` refits on a fixed-seed sample of
    ``stability_sample`` points; candidate key ``bootstrap_min_jaccard``); the silhouette rule
    when no k is stable. Learned:
    ``k_``, ``estimator_``, ``labels_``, ``algorithm_`` and ``candidate_scores_`` (one dict per
    k: k, silhouette, calinski_harabasz, davies_bouldin, min_share, min_size, qualifies, chosen).
    """

    def __init__(
        self,
        k_min: int = 3,
        k_max: int = 8,
        n_init: int = 4,
        random_state: int = 42,
        silhouette_sample: int = 20000,
        min_share: float = 0.02,
        minibatch_above: int = 200000,
        rule: str = "silhouette",
        stable_jaccard: float = 0.75,
        stability_refits: int = 10,
        stability_sample: int = 5000,
        stability_random_state: int = 11,
    ) -> None:
        self.k_min = k_min
        self.k_max = k_max
        self.n_init = n_init
        self.random_state = random_state
        self.silhouette_sample = silhouette_sample
        self.min_share = min_share
        self.minibatch_above = minibatch_above
        self.rule = rule
        self.stable_jaccard = stable_jaccard
        self.stability_refits = stability_refits
        self.stability_sample = stability_sample
        self.stability_random_state = stability_random_state

    def _min_jaccard(self, z: np.ndarray, estimator: Any, k: int, minibatch: bool) -> float:
        """The smallest mean bootstrap Jaccard over the clusters of one candidate (on a
        fixed-seed sample of ``stability_sample`` points)."""
        from dagster_project.lib.segmentation.clustering.stability import bootstrap_refits

        rng = np.random.default_rng(self.stability_random_state)
        n = z.shape[0]
        if n > self.stability_sample:
            z = z[np.sort(rng.choice(n, size=self.stability_sample, replace=False))]
        reference = estimator.predict(z)
        _, jaccards = bootstrap_refits(
            z,
            reference,
            k,
            self.n_init,
            self.stability_random_state,
            self.stability_refits,
            rng,
            minibatch,
        )
        return float(np.nan_to_num(np.nanmean(jaccards, axis=0)).min())

    def fit(self, z: np.ndarray, y: object = None) -> KSelector:
        """Fit every candidate k on the scaled points ``z`` and keep the chosen one."""
        if not 2 <= self.k_min <= self.k_max:
            raise ValueError("need 2 <= k_min <= k_max")
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
            estimator = new_kmeans(k, self.n_init, self.random_state, minibatch)
            labels = estimator.fit_predict(z)
            scores = _scores(z, labels, k, sample)
            candidates.append({**scores, "qualifies": bool(scores["min_share"] >= self.min_share)})
            fitted[k] = (estimator, labels)
        pool = [c for c in candidates if c["qualifies"]] or candidates
        best = max(
            pool,
            key=lambda c: (-math.inf if math.isnan(c["silhouette"]) else c["silhouette"], -c["k"]),
        )
        if self.rule == "stability":
            for c in candidates:
                c["bootstrap_min_jaccard"] = (
                    self._min_jaccard(z, fitted[c["k"]][0], c["k"], minibatch)
                    if c["qualifies"]
                    else None
                )
            stable = [
                c
                for c in pool
                if c["qualifies"] and c["bootstrap_min_jaccard"] >= self.stable_jaccard
            ]
            best = max(stable, key=lambda c: c["k"]) if stable else best
        elif self.rule != "silhouette":
            raise ValueError(f"k selection rule {self.rule!r}: silhouette or stability")
        self.k_ = int(best["k"])
        for candidate in candidates:
            candidate["chosen"] = candidate["k"] == self.k_
        self.candidate_scores_ = candidates
        self.estimator_, self.labels_ = fitted[self.k_]
        self.algorithm_ = "minibatch_kmeans" if minibatch else "kmeans"
        return self

    def predict(self, z: np.ndarray) -> np.ndarray:
        """The chosen KMeans' cluster of each scaled point (its own label order)."""
        return self.estimator_.predict(z)
