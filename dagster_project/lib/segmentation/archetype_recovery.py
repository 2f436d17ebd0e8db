"""How good is the segmentation? Four figures on generated data with hidden archetypes.

1. ARI between the clusters and the generator's archetypes (recovery of the truth);
2. mean bootstrap ARI (stability, the promotion gate's figure);
3. share of users that keep their segment id when the same data is refit with another random
   seed (with the production matching to the previous version);
4. surrogate tree fidelity (how far the readable rules can be trusted).

The figures take user features with the generator's true archetype (for generated data:
``dagster_project.testing.stand_in_marts.sample_features``).
``benchmarks/segmentation_quality.py`` prints the figures at 5,000 users;
``tests/unit/test_segment_quality.py`` asserts the same thresholds on small data.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import polars as pl

from dagster_project.lib.segmentation.model import train_segment_model
from dagster_project.lib.segmentation.spec import SegmentationSpec

#: What archetype recovery must reach on generated data to count as working.
THRESHOLDS: dict[str, float] = {
    "ari_vs_archetypes": 0.8,
    "bootstrap_ari": 0.8,
    "id_agreement_refit": 0.98,
    "surrogate_fidelity": 0.9,
}


@dataclass(frozen=True)
class QualityFigures:
    """The four figures (and context) for one data set."""

    users: int
    k: int
    ari_vs_archetypes: float
    bootstrap_ari: float
    min_cluster_jaccard: float
    id_agreement_refit: float
    canonical_agreement_refit: float
    surrogate_fidelity: float
    seconds: float

    def failures(self) -> list[str]:
        """The figures below their threshold (empty when all pass)."""
        return [
            f"{name} {getattr(self, name):.3f} < {limit}"
            for name, limit in THRESHOLDS.items()
            if not getattr(self, name) >= limit
        ]


def measure_quality(
    features: pl.DataFrame,
    truth: pl.Series | np.ndarray,
    spec: SegmentationSpec,
    refit_seed: int,
    compare_canonical: bool = True,
) -> QualityFigures:
    """Train as the pipeline does, then refit the same data with another random seed.

    The refit is matched to the first model exactly as a weekly retrain is matched to the
    previous promoted version; ``canonical_agreement_refit`` is the same share before matching
    (canonical id order alone), for comparison (NaN with ``compare_canonical=False``, which
    saves one fit).
    """
    from sklearn.metrics import adjusted_rand_score

    start = time.perf_counter()
    first = train_segment_model(features, spec)
    ids = first.predict(features)
    other = dataclasses.replace(
        spec,
        clustering=dataclasses.replace(
            spec.clustering,
            random_state=refit_seed,
            stability=dataclasses.replace(spec.clustering.stability, random_state=refit_seed),
        ),
    )
    canonical = float("nan")
    if compare_canonical:
        unmatched = train_segment_model(features, other)
        canonical = float((unmatched.predict(features) == ids).mean())
    refit = train_segment_model(features, other, previous=first, previous_version="first")
    return QualityFigures(
        users=features.height,
        k=int(first.clusterer.k_),
        ari_vs_archetypes=float(adjusted_rand_score(np.asarray(truth), ids)),
        bootstrap_ari=first.stability.mean_ari,
        min_cluster_jaccard=first.stability.min_cluster_jaccard,
        id_agreement_refit=float((refit.predict(features) == ids).mean()),
        canonical_agreement_refit=canonical,
        surrogate_fidelity=first.surrogate.fidelity_,
        seconds=time.perf_counter() - start,
    )
