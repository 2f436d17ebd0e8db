"""Stable cluster ids across retrains, and the lineage of clusters between versions.

Canonical ordering (``SegmentClusterer``) keeps ids when the solution itself is unchanged; on
new data a retrain may move, add, split or merge clusters. Here the new version's centroids are
matched to the previous version's with the Hungarian algorithm
(``scipy.optimize.linear_sum_assignment``) on Euclidean distance in the new model's scaled
space: a matched cluster keeps its id, an unmatched one gets a new id (ids are never reused).

What happened to users is read from the overlap of the two assignments on the training users
(in the spirit of MONIC, Spiliopoulou et al. 2006): a previous cluster whose users go to two or
more new clusters (each >= ``transition_share`` of it) split; a new cluster that takes two or more
previous clusters (each >= ``transition_share`` of it) is a merge. Every version logs one row
per event: kept, new, retired, split, merged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from dagster_project.lib.segmentation.clustering.clusterer import SegmentClusterer

LINEAGE_SCHEMA: dict[str, Any] = {
    "event": pl.Utf8,
    "from_cluster_id": pl.Int32,
    "to_cluster_id": pl.Int32,
    "centroid_distance": pl.Float64,
    "users": pl.Int64,
    "from_share": pl.Float64,
    "to_share": pl.Float64,
}
EVENTS = ("kept", "new", "retired", "split", "merged")


def _previous_ids(previous: SegmentClusterer) -> np.ndarray:
    # models pickled before stable ids existed carry their canonical ids 0..k-1
    return np.asarray(getattr(previous, "ids_", np.arange(previous.k_)), dtype=np.int64)


def _previous_next_id(previous: SegmentClusterer) -> int:
    return int(getattr(previous, "next_id_", int(_previous_ids(previous).max()) + 1))


def match_centroids(
    new: SegmentClusterer, previous: SegmentClusterer, max_distance: float
) -> tuple[dict[int, int], np.ndarray]:
    """Hungarian matching of centroids: {new canonical index: previous id} and the distances.

    Distances are in the new model's scaled space (rows: new clusters, columns: previous
    clusters). Pairs further apart than ``max_distance`` are left unmatched. Versions with
    different feature lists cannot be compared: nothing matches.
    """
    from scipy.optimize import linear_sum_assignment

    prev_ids = _previous_ids(previous)
    if list(previous.feature_names_) != list(new.feature_names_):
        return {}, np.full((new.k_, len(prev_ids)), np.nan)
    prev_centres = new.scaled_from_original(
        previous.centroids_.select(new.feature_names_).to_numpy()
    )
    new_centres = new.centers_scaled_
    distance = np.sqrt(((new_centres[:, None, :] - prev_centres[None, :, :]) ** 2).sum(axis=2))
    rows, cols = linear_sum_assignment(distance)
    matched = {
        int(r): int(prev_ids[c])
        for r, c in zip(rows, cols, strict=True)
        if distance[r, c] <= max_distance
    }
    return matched, distance


def align_to_previous(
    new: SegmentClusterer,
    previous: SegmentClusterer | None,
    frame: pl.DataFrame,
    max_distance: float = 1.0,
    transition_share: float = 0.2,
) -> pl.DataFrame:
    """Give ``new`` stable ids matched to ``previous`` and return the lineage events.

    ``frame`` is the training data of ``new``; the previous model assigns the same users, which
    is how splits and merges are seen. Without a previous version every cluster is ``new`` and
    keeps its canonical id. Returns a frame with :data:`LINEAGE_SCHEMA`.
    """
    rows: list[dict[str, Any]] = []
    new_index = new.predict_index(frame)
    new_sizes = np.bincount(new_index, minlength=new.k_)
    if previous is None:
        new.set_ids(np.arange(new.k_), new.k_)
        for i in range(new.k_):
            rows.append({"event": "new", "to_cluster_id": i, "users": int(new_sizes[i])})
        return pl.DataFrame(rows, schema=LINEAGE_SCHEMA)

    matched, distance = match_centroids(new, previous, max_distance)
    prev_ids = _previous_ids(previous)
    next_id = _previous_next_id(previous)
    ids = np.empty(new.k_, dtype=np.int64)
    for i in range(new.k_):
        if i in matched:
            ids[i] = matched[i]
        else:
            ids[i] = next_id
            next_id += 1
    new.set_ids(ids, next_id)

    # overlap of the two assignments on the training users
    try:
        prev_assigned = previous.predict(frame)
    except ValueError:  # the previous version's features are not in this frame
        prev_assigned = None
    position = {int(pid): j for j, pid in enumerate(prev_ids)}
    overlap = np.zeros((len(prev_ids), new.k_), dtype=np.int64)
    if prev_assigned is not None:
        np.add.at(overlap, (np.array([position[int(p)] for p in prev_assigned]), new_index), 1)
    prev_sizes = overlap.sum(axis=1)
    from_share = np.divide(
        overlap, prev_sizes[:, None], out=np.zeros(overlap.shape), where=prev_sizes[:, None] > 0
    )
    to_share = np.divide(
        overlap, new_sizes[None, :], out=np.zeros(overlap.shape), where=new_sizes[None, :] > 0
    )

    def pair(event: str, j: int | None, i: int | None) -> dict[str, Any]:
        return {
            "event": event,
            "from_cluster_id": None if j is None else int(prev_ids[j]),
            "to_cluster_id": None if i is None else int(ids[i]),
            "centroid_distance": (
                None if i is None or j is None or np.isnan(distance[i, j]) else distance[i, j]
            ),
            "users": (
                int(new_sizes[i])
                if j is None and i is not None
                else int(prev_sizes[j])
                if i is None and j is not None
                else int(overlap[j, i])
            ),
            "from_share": None if i is None or j is None else float(from_share[j, i]),
            "to_share": None if i is None or j is None else float(to_share[j, i]),
        }

    matched_prev = {position[pid] for pid in matched.values()}
    for i in range(new.k_):
        if i in matched:
            rows.append(pair("kept", position[matched[i]], i))
        else:
            rows.append(pair("new", None, i))
    for j in range(len(prev_ids)):
        if j not in matched_prev:
            rows.append(pair("retired", j, None))
    for j in range(len(prev_ids)):
        targets = np.flatnonzero(from_share[j] >= transition_share)
        if len(targets) >= 2:
            rows += [pair("split", j, int(i)) for i in targets]
    for i in range(new.k_):
        sources = np.flatnonzero(to_share[:, i] >= transition_share)
        if len(sources) >= 2:
            rows += [pair("merged", int(j), i) for j in sources]
    return pl.DataFrame(rows, schema=LINEAGE_SCHEMA)
