"""The versioned segmentation model: clusters + stable ids + stability + surrogate + names.

``train_segment_model`` is what the weekly refit runs: fit a SegmentClusterer (k by
silhouette), take over the previous promoted version's ids (Hungarian matching, lineage), measure
bootstrap stability and decide the promotion gate, and fit a surrogate tree for readable rules.
The resulting ``SegmentModel`` pickles as one artifact per model version; daily scoring calls
``predict`` and ``explain`` on it. Names come from the cluster profiles; a committed override
table (``models/segment_name_overrides.csv``) wins, applied at scoring time so that renaming a
cluster needs no refit. Pure Python; no Dagster.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from dagster_project.lib.core.threads import single_threaded
from dagster_project.lib.model_store.quality import (
    QualityMetric,
    at_least,
    at_most,
    quality_dicts,
    reported,
)
from dagster_project.lib.segmentation.clustering.clusterer import (
    SegmentClusterer,
    clusterer_from_spec,
    training_sample,
)
from dagster_project.lib.segmentation.clustering.lineage import align_to_previous
from dagster_project.lib.segmentation.clustering.stability import (
    GateResult,
    StabilityReport,
    bootstrap_stability,
    stability_gate,
)
from dagster_project.lib.segmentation.clustering.surrogate import SurrogateTree, format_number
from dagster_project.lib.segmentation.rules.ordered import number_text
from dagster_project.lib.segmentation.spec import QualitySpec, SegmentationSpec

logger = logging.getLogger(__name__)

NAME_OVERRIDE_SCHEMA: dict[str, Any] = {
    "cluster_id": pl.Int32,
    "name_en": pl.Utf8,
    "name_zh": pl.Utf8,
    "note": pl.Utf8,
}
CANDIDATE_COLUMNS: tuple[str, ...] = (
    "k",
    "silhouette",
    "calinski_harabasz",
    "davies_bouldin",
    "min_share",
    "min_size",
    "qualifies",
    "chosen",
)


@dataclass
class SegmentModel:
    """One trained segmentation model version (pickled by the model store)."""

    clusterer: SegmentClusterer
    surrogate: SurrogateTree
    stability: StabilityReport
    gate: GateResult
    lineage: pl.DataFrame
    previous_version: str | None
    reason_terms: int = 2
    quality_spec: QualitySpec | None = None  # None in versions pickled before it was kept
    # spec features NULL for every training user (money of a source without money): left out
    left_out: tuple[str, ...] = ()

    # ------------------------------------------------------------------ scoring

    @property
    def ids(self) -> list[int]:
        return [int(i) for i in self.clusterer.ids_]

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        """Stable cluster id of every user in ``frame`` (user_features for one date)."""
        return self.clusterer.predict(frame)

    def explain(self, frame: pl.DataFrame, ids: np.ndarray | None = None) -> pl.Series:
        """A short reason per user for the cluster ``ids`` (default: ``predict(frame)``).

        Where the surrogate tree puts the user in the same cluster: the leaf's rule, e.g.
        "monetary > 850, recency_days <= 40". Elsewhere (the 1 - fidelity share): the features
        that decided the nearest centre against the runner-up, with the user's values, e.g.
        "nearest centre on recency_days = 45, frequency = 3". Vectorised, no loop over users.
        """
        model = self.clusterer
        ids = self.predict(frame) if ids is None else np.asarray(ids)
        readable = model.readable_matrix(frame)
        tree_ids, rules = self.surrogate.rules_for(readable)
        disagree = np.flatnonzero(tree_ids != ids)
        reasons = rules.to_numpy().astype(object)
        if disagree.size:
            z = model.scaled(frame[disagree])
            centres = model.centers_scaled_
            position = {int(c): i for i, c in enumerate(model.ids_)}
            own = np.array([position[int(c)] for c in ids[disagree]])
            dist = ((z[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
            dist[np.arange(len(own)), own] = np.inf
            runner = dist.argmin(axis=1)
            gain = (z - centres[runner]) ** 2 - (z - centres[own]) ** 2
            top = np.argsort(-gain, axis=1)[:, : max(1, self.reason_terms)]
            names = np.array(model.feature_names_, dtype=object)
            values = readable[disagree[:, None], top]
            terms = pl.DataFrame(
                {
                    **{f"n{t}": names[top[:, t]].astype(str) for t in range(top.shape[1])},
                    **{f"v{t}": values[:, t] for t in range(top.shape[1])},
                }
            ).select(
                pl.concat_str(
                    [
                        pl.format("{} = {}", pl.col(f"n{t}"), number_text(pl.col(f"v{t}")))
                        for t in range(top.shape[1])
                    ],
                    separator=", ",
                ).alias("t")
            )
            reasons[disagree] = ("nearest centre on " + terms.get_column("t")).to_numpy()
        return pl.Series("cluster_reason", reasons, dtype=pl.Utf8)

    # ------------------------------------------------------------------ reporting

    def candidates(self) -> pl.DataFrame:
        """Every candidate k with silhouette, Calinski-Harabasz, Davies-Bouldin, min share."""
        return pl.DataFrame(
            [
                {c: cand.get(c) for c in CANDIDATE_COLUMNS}
                for cand in self.clusterer.candidate_scores_
            ],
            schema={
                "k": pl.Int32,
                "silhouette": pl.Float64,
                "calinski_harabasz": pl.Float64,
                "davies_bouldin": pl.Float64,
                "min_share": pl.Float64,
                "min_size": pl.Int64,
                "qualifies": pl.Boolean,
                "chosen": pl.Boolean,
            },
        )

    def profile(self) -> pl.DataFrame:
        """One row per cluster: auto names, size, share, stability, surrogate recall and rules."""
        base = self.clusterer.profile()
        means = [c for c in base.columns if c.endswith("_mean")]
        leaves = self.surrogate.leaves_
        rules = (
            leaves.group_by("cluster_id")
            .agg(pl.col("rule").sort_by("users", descending=True).str.join(" | ").alias("rules"))
            .with_columns(pl.col("cluster_id").cast(pl.Int32))
        )
        customer_share = (
            pl.col("customer_share") if "customer_share" in base.columns else pl.lit(None)
        )
        return (
            base.select(
                "cluster_id",
                pl.col("name_en").alias("auto_name_en"),
                pl.col("name_zh").alias("auto_name_zh"),
                pl.col("size").alias("users"),
                "share",
                customer_share.cast(pl.Float64).alias("customer_share"),
                pl.struct(means)
                .map_elements(
                    lambda row: json.dumps({k[: -len("_mean")]: v for k, v in row.items()}),
                    return_dtype=pl.Utf8,
                )
                .alias("feature_means_json"),
            )
            .with_columns(
                pl.col("cluster_id")
                .replace_strict(
                    {int(k): v for k, v in self.stability.cluster_jaccard.items()},
                    return_dtype=pl.Float64,
                )
                .alias("bootstrap_jaccard"),
                pl.col("cluster_id")
                .replace_strict(
                    self.surrogate.cluster_recall_, default=None, return_dtype=pl.Float64
                )
                .alias("surrogate_recall"),
            )
            .join(rules, on="cluster_id", how="left")
        )

    def metrics(self) -> dict[str, Any]:
        """What the model card and marts.model_versions keep about this version."""
        model = self.clusterer
        chosen = next(c for c in model.candidate_scores_ if c["chosen"])
        events = self.lineage.group_by("event").len().sort("event")
        return {
            "k": int(model.k_),
            "users": int(getattr(model, "n_users_", model.n_samples_fit_)),
            "users_fitted": int(model.n_samples_fit_),
            "algorithm": model.algorithm_,
            "features": list(model.feature_names_),
            "features_left_out": {
                f: "NULL for every user (e.g. no order amounts)" for f in self.left_out
            },
            "silhouette": chosen["silhouette"],
            "calinski_harabasz": chosen["calinski_harabasz"],
            "davies_bouldin": chosen["davies_bouldin"],
            "candidates": model.candidate_scores_,
            "stability": self.stability.as_dict(),
            "gate": self.gate.as_dict(),
            "surrogate": self.surrogate.summary(),
            "previous_version": self.previous_version,
            "lineage_events": dict(events.iter_rows()),
            "ids": self.ids,
            "next_id": int(model.next_id_),
            "clusters": self.profile().drop("feature_means_json").to_dicts(),
            "quality": quality_dicts(self.quality()),
        }

    def quality(self) -> list[QualityMetric]:
        """The version's figures for marts.model_quality, judged against the spec's bars (the
        stability bars are the promotion gate's)."""
        bars = self.quality_spec or QualitySpec()
        chosen = next(c for c in self.clusterer.candidate_scores_ if c["chosen"])
        fidelity = self.surrogate.fidelity_
        return [
            reported("k", self.clusterer.k_, "k_selection"),
            reported(
                "users",
                getattr(self.clusterer, "n_users_", self.clusterer.n_samples_fit_),
                "k_selection",
            ),
            reported("users_fitted", self.clusterer.n_samples_fit_, "k_selection"),
            at_least("silhouette", chosen["silhouette"], bars.min_silhouette, "k_selection"),
            reported("calinski_harabasz", chosen["calinski_harabasz"], "k_selection"),
            at_most(
                "davies_bouldin", chosen["davies_bouldin"], bars.max_davies_bouldin, "k_selection"
            ),
            at_least(
                "bootstrap_mean_ari", self.stability.mean_ari, self.gate.min_mean_ari, "bootstrap"
            ),
            at_least(
                "bootstrap_min_cluster_jaccard",
                self.stability.min_cluster_jaccard,
                self.gate.min_cluster_jaccard,
                "bootstrap",
            ),
            at_least("surrogate_fidelity", fidelity, bars.min_surrogate_fidelity, "surrogate"),
        ]


def cluster_skip_reason(features: pl.DataFrame, spec: SegmentationSpec) -> str | None:
    """Why ``features`` are too few to cluster (None when they are enough): fewer distinct users
    than the spec's ``clustering.min_users``, or than ``k_min`` clusters."""
    c = spec.clustering
    users = features.get_column("user_id").n_unique() if features.height else 0
    for name, minimum in (("min_users", c.min_users), ("k_min", c.k_min)):
        if users < minimum:
            return f"too few users to cluster: {users} < {name} ({minimum})"
    return None


def unclustered(users: pl.Series, reason: str) -> pl.DataFrame:
    """The cluster columns of users no model scores: NULL ids and names, ``reason`` as the
    cluster_reason."""
    n = users.len()
    return pl.DataFrame(
        {
            "user_id": users,
            "cluster_id": pl.Series([None] * n, dtype=pl.Int32),
            "cluster_name": pl.Series([None] * n, dtype=pl.Utf8),
            "cluster_name_en": pl.Series([None] * n, dtype=pl.Utf8),
            "cluster_name_zh": pl.Series([None] * n, dtype=pl.Utf8),
            "cluster_reason": pl.Series([reason] * n, dtype=pl.Utf8),
        }
    )


def _previous_clusterer(previous: Any) -> SegmentClusterer | None:
    if previous is None:
        return None
    return previous.clusterer if isinstance(previous, SegmentModel) else previous


@single_threaded()
def train_segment_model(
    features: pl.DataFrame,
    spec: SegmentationSpec,
    previous: SegmentModel | SegmentClusterer | None = None,
    previous_version: str | None = None,
    clusterer: SegmentClusterer | None = None,
) -> SegmentModel:
    """Fit a new segmentation model version on ``features`` (user_features for one date).

    ``previous`` is the last promoted version (its ids are taken over where centroids match);
    ``clusterer`` overrides the spec's (tests use a faster one). The gate decision is stored in
    the model (``gate.promote``); the caller promotes the version or keeps it as a candidate.
    """
    c = spec.clustering
    too_few = cluster_skip_reason(features, spec)
    if too_few is not None:
        raise ValueError(f"no segmentation model fitted: {too_few}")
    # a feature NULL for every user carries nothing to cluster on: the money of a source
    # without money (monetary, avg_order_value); the model is fitted on the others
    left_out = tuple(
        f
        for f in c.features
        if f in features.columns and features[f].null_count() == features.height
    )
    if left_out:
        logger.warning("clustering without %s: NULL for every user", ", ".join(left_out))
    model = (
        clusterer if clusterer is not None else clusterer_from_spec(spec, without=left_out)
    ).fit(features)
    lineage = align_to_previous(
        model,
        _previous_clusterer(previous),
        features,
        max_distance=c.matching.max_centroid_distance,
        transition_share=c.matching.transition_share,
    )
    stability = bootstrap_stability(
        model,
        features,
        refits=c.stability.bootstrap_refits,
        sample_size=c.stability.sample_size,
        random_state=c.stability.random_state,
    )
    gate = stability_gate(
        stability,
        c.stability.min_mean_ari,
        c.stability.min_cluster_jaccard,
        first_version=previous is None,
        promote_first_version=c.stability.promote_first_version,
    )
    # the tree explains the clusters; a bounded sample of users shows it the same regions (its
    # fidelity is measured on that sample), and a tree on 10M users takes minutes
    explained = training_sample(features, model.fit_sample, c.random_state)
    surrogate = SurrogateTree(
        max_depth=c.surrogate.max_depth,
        max_leaf_nodes=c.surrogate.max_leaf_nodes,
        min_leaf_share=c.surrogate.min_leaf_share,
        random_state=c.random_state,
    ).fit(model.readable_matrix(explained), model.predict(explained), model.feature_names_)
    return SegmentModel(
        clusterer=model,
        surrogate=surrogate,
        stability=stability,
        gate=gate,
        lineage=lineage,
        previous_version=previous_version,
        reason_terms=c.surrogate.reason_terms,
        quality_spec=c.quality,
        left_out=left_out if clusterer is None else (),
    )


# ------------------------------------------------------------------------------- names


def load_name_overrides(path: Path) -> pl.DataFrame:
    """The committed name override table (cluster_id, name_en, name_zh, note); '#' lines are
    comments. A missing file means no overrides."""
    if not Path(path).exists():
        return pl.DataFrame(schema=NAME_OVERRIDE_SCHEMA)
    frame = pl.read_csv(
        path, comment_prefix="#", schema_overrides=NAME_OVERRIDE_SCHEMA, encoding="utf8"
    )
    missing = set(NAME_OVERRIDE_SCHEMA) - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)}")
    frame = frame.select(list(NAME_OVERRIDE_SCHEMA))
    if (
        frame.get_column("cluster_id").null_count()
        or not frame.get_column("cluster_id").is_unique().all()
    ):
        raise ValueError(f"{path}: cluster_id must be set and unique")
    if frame.select(pl.col("name_en").is_null() | pl.col("name_zh").is_null()).to_series().any():
        raise ValueError(f"{path}: every override needs name_en and name_zh")
    return frame


def cluster_names(model: SegmentModel, overrides: pl.DataFrame | None = None) -> pl.DataFrame:
    """Display names per cluster id: the override where one exists, else the profile's name.

    Columns: cluster_id, cluster_name ("en / zh"), cluster_name_en, cluster_name_zh,
    name_source ("override" or "profile"). Overrides of ids the model does not have are ignored
    (they may name a retired cluster); the caller can report them.
    """
    auto = model.clusterer.profile().select(
        "cluster_id", pl.col("name_en").alias("_en"), pl.col("name_zh").alias("_zh")
    )
    table = overrides if overrides is not None else pl.DataFrame(schema=NAME_OVERRIDE_SCHEMA)
    joined = auto.join(
        table.select("cluster_id", "name_en", "name_zh"), on="cluster_id", how="left"
    )
    has = pl.col("name_en").is_not_null()
    return joined.select(
        "cluster_id",
        pl.when(has).then(pl.col("name_en")).otherwise(pl.col("_en")).alias("cluster_name_en"),
        pl.when(has).then(pl.col("name_zh")).otherwise(pl.col("_zh")).alias("cluster_name_zh"),
        pl.when(has).then(pl.lit("override")).otherwise(pl.lit("profile")).alias("name_source"),
    ).select(
        "cluster_id",
        pl.format("{} / {}", "cluster_name_en", "cluster_name_zh").alias("cluster_name"),
        "cluster_name_en",
        "cluster_name_zh",
        "name_source",
    )


__all__ = [
    "SegmentModel",
    "cluster_names",
    "format_number",
    "load_name_overrides",
    "train_segment_model",
]
