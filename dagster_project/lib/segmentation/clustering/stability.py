"""Bootstrap stability of a fitted SegmentClusterer and the promotion gate built on it.

A segmentation is worth promoting only if it is a property of the users, not of one random
start: refit KMeans with the chosen k on bootstrap samples of the training users and compare
(Hennig 2007, "Cluster-wise assessment of cluster stability", the method of R's fpc::clusterboot):

- mean ARI: adjusted Rand index between each refit's assignment and the model's, on the same
  users (1 = identical partitions, 0 = chance);
- per-cluster Jaccard: for each cluster of the model, the Jaccard similarity with its most similar
  cluster of each refit, computed on the users in that bootstrap sample, averaged over refits.
  Hennig's reading: below 0.5 the cluster "dissolves", above 0.75 it is stable.

The preprocessing (fills, transforms, scaler) stays the model's: the refits measure the
clustering, on the space the model scores in. Pure numpy + scikit-learn (imported inside).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import polars as pl

from dagster_project.lib.segmentation.clustering.clusterer import SegmentClusterer


@dataclass(frozen=True)
class StabilityReport:
    """Bootstrap figures of one model version (cluster ids are the model's stable ids)."""

    refits: int
    sample_size: int
    mean_ari: float
    min_ari: float
    ari: tuple[float, ...]
    cluster_jaccard: dict[int, float]

    @property
    def min_cluster_jaccard(self) -> float:
        return min(self.cluster_jaccard.values()) if self.cluster_jaccard else float("nan")

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["cluster_jaccard"] = {str(k): v for k, v in self.cluster_jaccard.items()}
        out["ari"] = list(self.ari)
        return out


@dataclass(frozen=True)
class GateResult:
    """The promotion decision: whether the thresholds were met, why not, and whether the version
    is promoted anyway because it is the model's first (there is no earlier version to keep)."""

    passed: bool
    min_mean_ari: float
    min_cluster_jaccard: float | None
    reasons: tuple[str, ...] = field(default_factory=tuple)
    first_version: bool = False
    promote_first_version: bool = False

    @property
    def promote(self) -> bool:
        """Promote when the gate passed, or as a first version when the policy allows it."""
        return self.passed or (self.first_version and self.promote_first_version)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["reasons"] = list(self.reasons)
        out["promote"] = self.promote
        return out


def _jaccard_best(reference: np.ndarray, refit: np.ndarray, k_ref: int, k_fit: int) -> np.ndarray:
    """For each reference cluster, its best Jaccard with any refit cluster (NaN if absent)."""
    counts = np.zeros((k_ref, k_fit), dtype=np.float64)
    np.add.at(counts, (reference, refit), 1.0)
    rows = counts.sum(axis=1, keepdims=True)
    cols = counts.sum(axis=0, keepdims=True)
    union = rows + cols - counts
    jaccard = np.divide(counts, union, out=np.zeros_like(counts), where=union > 0)
    best = jaccard.max(axis=1)
    best[rows[:, 0] == 0] = np.nan
    return best


def bootstrap_refits(
    z: np.ndarray,
    reference: np.ndarray,
    k: int,
    n_init: int,
    random_state: int,
    refits: int,
    rng: np.random.Generator,
    minibatch: bool = False,
) -> tuple[list[float], np.ndarray]:
    """Refit KMeans with ``k`` clusters on ``refits`` bootstrap draws (from ``rng``) of ``z``.

    Returns the ARI of each refit's assignment of all of ``z`` against ``reference`` (labels
    0..k-1) and, per refit and reference cluster, the best Jaccard with a refit cluster on the
    drawn users (NaN where the draw holds none of the cluster).
    """
    from sklearn.metrics import adjusted_rand_score

    from dagster_project.lib.segmentation.clustering.k_selection import new_kmeans

    n = z.shape[0]
    aris: list[float] = []
    jaccards = np.zeros((refits, k))
    for b in range(refits):
        draw = rng.integers(0, n, size=n)
        estimator = new_kmeans(k, n_init, random_state + b + 1, minibatch)
        estimator.fit(z[draw])
        assigned = estimator.predict(z)
        aris.append(float(adjusted_rand_score(reference, assigned)))
        in_sample = np.unique(draw)
        jaccards[b] = _jaccard_best(reference[in_sample], assigned[in_sample], k, k)
    return aris, jaccards


def bootstrap_stability(
    model: SegmentClusterer,
    frame: pl.DataFrame,
    refits: int = 20,
    sample_size: int = 20000,
    random_state: int = 7,
) -> StabilityReport:
    """Refit the model's k on ``refits`` bootstrap samples of ``frame`` (its training users).

    Above ``sample_size`` users the bootstrap draws from a fixed-seed random sample of that size,
    so a retrain on 1M users costs ``refits`` fits on 20 000 users, not on 1M.
    """
    if refits < 2:
        raise ValueError("need at least 2 bootstrap refits")
    rng = np.random.default_rng(random_state)
    n = frame.height
    if n > sample_size:  # sampled before scaling: at 10M users only the sample is transformed
        frame = frame[np.sort(rng.choice(n, size=sample_size, replace=False))]
        n = sample_size
    z = model.scaled(frame)
    reference = model.label_map_[model.estimator_.predict(z)]  # canonical index 0..k-1
    k = model.k_
    minibatch = model.algorithm_ == "minibatch_kmeans"
    aris, jaccards = bootstrap_refits(
        z, reference, k, model.n_init, random_state, refits, rng, minibatch
    )
    mean_jaccard = np.nanmean(jaccards, axis=0)
    return StabilityReport(
        refits=refits,
        sample_size=n,
        mean_ari=float(np.mean(aris)),
        min_ari=float(np.min(aris)),
        ari=tuple(round(a, 6) for a in aris),
        cluster_jaccard={
            int(model.ids_[i]): float(np.nan_to_num(mean_jaccard[i])) for i in range(k)
        },
    )


def stability_gate(
    report: StabilityReport,
    min_mean_ari: float = 0.75,
    min_cluster_jaccard: float | None = 0.5,
    first_version: bool = False,
    promote_first_version: bool = False,
) -> GateResult:
    """Promote only a stable model: mean ARI and (optionally) each cluster's Jaccard high enough.

    The gate keeps a working segmentation from being replaced by an unstable one. A model's first
    version has nothing to keep: with ``promote_first_version`` it is promoted even below the
    thresholds (``passed`` stays False and the reasons are kept, so the check still shows it);
    otherwise nothing scores until a version passes, which also stops the rule schemes that are
    written with the clusters."""
    reasons = []
    if not report.mean_ari >= min_mean_ari:
        reasons.append(f"mean bootstrap ARI {report.mean_ari:.3f} < {min_mean_ari}")
    if min_cluster_jaccard is not None:
        for cluster_id, value in sorted(report.cluster_jaccard.items()):
            if not value >= min_cluster_jaccard:
                reasons.append(
                    f"cluster {cluster_id}: bootstrap Jaccard {value:.3f} < {min_cluster_jaccard}"
                )
    return GateResult(
        passed=not reasons,
        min_mean_ari=min_mean_ari,
        min_cluster_jaccard=min_cluster_jaccard,
        reasons=tuple(reasons),
        first_version=first_version,
        promote_first_version=promote_first_version,
    )
