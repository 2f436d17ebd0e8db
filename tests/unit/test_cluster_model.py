"""Stability, stable ids across retrains, the surrogate tree and the clusterer's transforms."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import polars as pl
import pytest

from dagster_project.lib.segmentation.clustering.clusterer import SegmentClusterer
from dagster_project.lib.segmentation.clustering.lineage import align_to_previous
from dagster_project.lib.segmentation.clustering.stability import (
    bootstrap_stability,
    stability_gate,
)
from dagster_project.lib.segmentation.clustering.surrogate import SurrogateTree, format_number

FEATURES = ["x", "y"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


def blobs(centres: list[tuple[float, float]], size: int, seed: int, spread: float = 0.3):
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(len(centres)), size)
    xy = np.array(centres)[truth] + rng.normal(scale=spread, size=(len(truth), 2))
    frame = pl.DataFrame(
        {"user_id": [f"u{i}" for i in range(len(truth))], "x": xy[:, 0], "y": xy[:, 1]}
    )
    return frame, truth


def fit(frame: pl.DataFrame, k: int, seed: int = 0) -> SegmentClusterer:
    return SegmentClusterer(
        FEATURES, k_min=k, k_max=k, random_state=seed, n_init=2, silhouette_sample=500, fill={}
    ).fit(frame)


SQUARE = [(0.0, 0.0), (4.0, 0.0), (0.0, 4.0), (4.0, 4.0)]


# ------------------------------------------------------------------------------ stability


def test_separated_groups_are_stable_and_pass_the_gate() -> None:
    frame, _ = blobs(SQUARE, 100, seed=1)
    model = fit(frame, 4)
    report = bootstrap_stability(model, frame, refits=8, random_state=3)
    assert report.refits == 8 and len(report.ari) == 8
    assert report.mean_ari > 0.95 and report.min_cluster_jaccard > 0.9
    assert set(report.cluster_jaccard) == {0, 1, 2, 3}
    gate = stability_gate(report, 0.75, 0.5)
    assert gate.passed and gate.promote and gate.reasons == ()


def test_structureless_data_fails_the_gate_with_reasons() -> None:
    rng = np.random.default_rng(5)
    frame = pl.DataFrame({"x": rng.uniform(size=400), "y": rng.uniform(size=400)})
    model = fit(frame, 6)
    report = bootstrap_stability(model, frame, refits=8, random_state=3)
    gate = stability_gate(report, min_mean_ari=0.9, min_cluster_jaccard=0.9)
    assert report.mean_ari < 0.9
    assert not gate.passed and not gate.promote
    assert gate.reasons[0].startswith("mean bootstrap ARI")
    assert any(r.startswith("cluster ") for r in gate.reasons)
    # a first version is promoted by policy, the failure stays on record
    first = stability_gate(report, 0.9, 0.9, first_version=True, promote_first_version=True)
    assert first.promote and not first.passed and first.reasons == gate.reasons
    assert not stability_gate(report, 0.9, 0.9, first_version=True).promote


def test_bootstrap_samples_large_data() -> None:
    frame, _ = blobs(SQUARE, 150, seed=2)
    report = bootstrap_stability(fit(frame, 4), frame, refits=3, sample_size=200)
    assert report.sample_size == 200


# ------------------------------------------------------------------------- stable ids


def test_a_refit_with_another_seed_keeps_every_id() -> None:
    frame, _ = blobs(SQUARE, 80, seed=3, spread=0.6)
    first = fit(frame, 4, seed=0)
    align_to_previous(first, None, frame)
    second = fit(frame, 4, seed=11)
    lineage = align_to_previous(second, first, frame, max_distance=1.0)
    assert (second.predict(frame) == first.predict(frame)).mean() >= 0.98
    assert sorted(lineage.get_column("event").to_list()) == ["kept"] * 4
    assert second.next_id_ == 4


def test_new_data_keeps_matched_ids_and_gives_new_groups_new_ids() -> None:
    old, _ = blobs([(0.0, 0.0), (4.0, 0.0), (0.0, 4.0)], 100, seed=4)
    first = fit(old, 3)
    align_to_previous(first, None, old)
    # a week later: the groups drifted a little, one disappeared and a new one appeared
    new, truth = blobs([(0.2, 0.1), (4.1, -0.1), (8.0, 8.0)], 100, seed=5)
    second = fit(new, 3)
    lineage = align_to_previous(second, first, new, max_distance=1.0)
    ids = second.predict(new)
    old_ids = first.predict(new)
    for group in (0, 1):  # the drifted groups keep the id the old model gives their users
        assert np.all(ids[truth == group] == np.bincount(old_ids[truth == group]).argmax())
    assert set(ids[truth == 2]) == {3}  # first unused id; retired ids are never reused
    events = {(r["event"], r["from_cluster_id"], r["to_cluster_id"]) for r in lineage.to_dicts()}
    retired = ({0, 1, 2} - set(ids.tolist())).pop()
    assert ("new", None, 3) in events and ("retired", retired, None) in events
    assert sum(e == "kept" for e, _, _ in events) == 2
    assert second.next_id_ == 4


def test_splits_and_merges_are_logged() -> None:
    # previous version: two groups; the second is really two groups side by side
    data, _ = blobs([(0.0, 0.0), (6.0, -1.0), (6.0, 1.0)], 100, seed=6, spread=0.25)
    merged = fit(data, 2)
    align_to_previous(merged, None, data)
    split = fit(data, 3)
    lineage = align_to_previous(split, merged, data, max_distance=1.5, transition_share=0.2)
    splits = lineage.filter(pl.col("event") == "split")
    assert splits.height == 2
    assert splits.get_column("from_cluster_id").n_unique() == 1
    assert splits.get_column("from_share").sum() == pytest.approx(1.0, abs=0.02)
    # and the other way round: refitting with fewer clusters merges two into one
    back = fit(data, 2, seed=3)
    merges = align_to_previous(back, split, data, max_distance=1.5).filter(
        pl.col("event") == "merged"
    )
    assert merges.height == 2 and merges.get_column("to_cluster_id").n_unique() == 1


def test_versions_with_other_features_share_no_ids() -> None:
    frame, _ = blobs(SQUARE, 50, seed=7)
    first = fit(frame, 4)
    align_to_previous(first, None, frame)
    other = SegmentClusterer(["x"], k_min=2, k_max=2, n_init=2, fill={}).fit(frame)
    lineage = align_to_previous(other, first, frame)
    assert sorted(other.ids_.tolist()) == [4, 5]
    assert lineage.filter(pl.col("event") == "retired").height == 4


def test_set_ids_refuses_duplicates_and_reused_ids() -> None:
    frame, _ = blobs(SQUARE, 30, seed=8)
    model = fit(frame, 4)
    with pytest.raises(ValueError, match="distinct"):
        model.set_ids([0, 0, 1, 2], 5)
    with pytest.raises(ValueError, match="below next_id"):
        model.set_ids([0, 1, 2, 7], 5)
    model.set_ids([3, 9, 4, 0], 10)
    assert set(model.predict(frame).tolist()) == {0, 3, 4, 9}
    assert model.profile().get_column("cluster_id").to_list() == [3, 9, 4, 0]


# ------------------------------------------------------------------------------ surrogate


def test_surrogate_rules_are_readable_and_faithful() -> None:
    frame, truth = blobs(SQUARE, 100, seed=9)
    x = frame.select(FEATURES).to_numpy()
    tree = SurrogateTree(max_depth=3, max_leaf_nodes=8).fit(x, truth, FEATURES)
    assert tree.fidelity_ > 0.97
    assert set(tree.cluster_recall_) == {0, 1, 2, 3}
    predicted, rules = tree.rules_for(x)
    assert (predicted == truth).mean() == tree.fidelity_
    # one rule per region: both features bound each corner of the square
    assert tree.leaves_.height == 4
    for rule in tree.leaves_.get_column("rule"):
        assert rule.count("x ") == 1 and rule.count("y ") == 1
    assert "|--- " in tree.rules_text_
    assert rules.len() == len(truth)


def test_surrogate_merges_leaves_that_agree_and_reads_counts_as_integers() -> None:
    rng = np.random.default_rng(10)
    orders = rng.integers(0, 10, 600).astype(float)
    noise = rng.normal(size=600)
    labels = (orders >= 3).astype(int)
    tree = SurrogateTree(max_depth=4, max_leaf_nodes=8, min_leaf_share=0.0).fit(
        np.column_stack([orders, noise]), labels, ["orders", "noise"]
    )
    assert tree.fidelity_ == 1.0
    assert sorted(tree.leaves_.get_column("rule").to_list()) == ["orders <= 2", "orders >= 3"]


def test_format_number() -> None:
    assert [format_number(v) for v in (2323.74, 40.5, 8.49, 0.1, -12.25)] == [
        "2324",
        "40.5",
        "8.49",
        "0.1",
        "-12.2",
    ]


# ------------------------------------------------------------------------- transforms


def test_median_fill_is_learned_and_stored() -> None:
    frame = pl.DataFrame(
        {"x": [1.0, 2.0, 3.0, 100.0, 110.0, 120.0], "y": [10.0, 20.0, None, 30.0, None, 40.0]}
    )
    model = SegmentClusterer(
        FEATURES, k_min=2, k_max=2, n_init=2, fill={"y": "median"}, random_state=0
    ).fit(frame)
    assert model.space_["fill"].fill_values_ == {"y": 25.0}
    raw = model.space_["fill"].transform(
        pl.DataFrame({"x": [1.0], "y": [None]}, schema=frame.schema)
    )
    assert raw.tolist() == [[1.0, 25.0]]
    # readable values for explanations say "none" (0), not the median
    assert model.readable_matrix(frame)[2].tolist() == [3.0, 0.0]


def test_quantile_features_map_back_to_original_units() -> None:
    rng = np.random.default_rng(12)
    x = np.concatenate([rng.lognormal(1, 0.3, 200), rng.lognormal(5, 0.3, 200)])
    frame = pl.DataFrame({"x": x, "y": rng.normal(size=400)})
    model = SegmentClusterer(
        FEATURES, k_min=2, k_max=2, n_init=2, fill={}, quantile_features=["x"], random_state=0
    ).fit(frame)
    assert model.space_["shape"].quantile_ is not None
    centres = sorted(model.centroids_.get_column("x").to_list())
    assert centres[0] == pytest.approx(np.exp(1), rel=0.35)
    assert centres[1] == pytest.approx(np.exp(5), rel=0.35)
    with pytest.raises(ValueError, match="disjoint"):
        SegmentClusterer(
            FEATURES, k_min=2, k_max=2, log_features=["x"], quantile_features=["x"], fill={}
        ).fit(frame)


# ------------------------------------------------------------ scikit-learn parts


def test_the_space_is_a_scikit_learn_pipeline_that_inverts_to_original_units() -> None:
    from sklearn.base import clone
    from sklearn.pipeline import Pipeline

    frame, _ = blobs([(1.0, 10.0), (50.0, 200.0)], 100, seed=3)
    model = SegmentClusterer(FEATURES, k_min=2, k_max=2, n_init=2, fill={}, log_features=["y"])
    model.fit(frame)
    assert isinstance(model.space_, Pipeline)
    assert [name for name, _ in model.space_.steps] == ["fill", "shape", "scale"]
    matrix = frame.select(FEATURES).to_numpy()
    back = model.space_[1:].inverse_transform(model.space_.transform(frame))
    np.testing.assert_allclose(back, matrix, rtol=1e-9)
    # configuration only in __init__: a clone refits to the same space
    refit = clone(model.space_).fit(frame)
    np.testing.assert_array_equal(refit.transform(frame), model.space_.transform(frame))


def test_k_selector_keeps_the_best_silhouette_among_k_without_tiny_clusters() -> None:
    from dagster_project.lib.segmentation.clustering.k_selection import KSelector

    rng = np.random.default_rng(5)
    big = [rng.normal(loc=c, scale=0.2, size=(200, 2)) for c in [(0, 0), (6, 0), (0, 6)]]
    tiny = rng.normal(loc=(20, 20), scale=0.2, size=(4, 2))  # 0.7% of the points
    z = np.vstack([*big, tiny])
    free = KSelector(k_min=2, k_max=5, n_init=2, random_state=0, min_share=0.0).fit(z)
    assert free.k_ == 4
    guarded = KSelector(k_min=2, k_max=5, n_init=2, random_state=0, min_share=0.02).fit(z)
    assert guarded.k_ == 3
    chosen = [c for c in guarded.candidate_scores_ if c["chosen"]]
    assert [c["k"] for c in chosen] == [3] and chosen[0]["qualifies"]
    assert not next(c for c in guarded.candidate_scores_ if c["k"] == 4)["qualifies"]


def test_the_stability_rule_keeps_the_largest_k_whose_clusters_all_come_back() -> None:
    from dagster_project.lib.segmentation.clustering.k_selection import KSelector

    # two far-apart pairs of close groups: silhouette prefers the two pairs, while four groups
    # are real (each comes back on every bootstrap refit) and a fifth would split one at random
    rng = np.random.default_rng(3)
    centres = [(0, 0), (2.5, 0), (30, 0), (32.5, 0)]
    z = np.vstack([rng.normal(loc=c, scale=0.4, size=(150, 2)) for c in centres])
    params = {"k_min": 2, "k_max": 5, "n_init": 2, "random_state": 0, "min_share": 0.02}
    by_silhouette = KSelector(**params).fit(z)
    assert by_silhouette.k_ == 2
    by_stability = KSelector(**params, rule="stability", stability_refits=5).fit(z)
    assert by_stability.k_ == 4
    jaccard = {c["k"]: c["bootstrap_min_jaccard"] for c in by_stability.candidate_scores_}
    assert jaccard[4] >= 0.75 > jaccard[5]
    # the same data and seeds choose the same k and the same figures
    again = KSelector(**params, rule="stability", stability_refits=5).fit(z)
    assert again.candidate_scores_ == by_stability.candidate_scores_
    with pytest.raises(ValueError, match="silhouette or stability"):
        KSelector(**params, rule="gap").fit(z)


def test_a_scaled_log_is_linear_below_its_scale_and_inverts_to_original_units() -> None:
    frame, _ = blobs([(2.0, 10.0), (600.0, 200.0)], 100, seed=4)
    frame = frame.with_columns(pl.col("x").abs())
    model = SegmentClusterer(
        FEATURES, k_min=2, k_max=2, n_init=2, fill={}, scaled_log_features={"x": 30.0}
    ).fit(frame)
    shape = model.space_["shape"]
    shaped = shape.transform(np.array([[3.0, 1.0], [3000.0, 1.0]]))
    assert shaped[0, 0] == pytest.approx(np.log1p(0.1)) and shaped[1, 0] == pytest.approx(
        np.log1p(100.0)
    )
    matrix = frame.select(FEATURES).to_numpy()
    back = model.space_[1:].inverse_transform(model.space_.transform(frame))
    np.testing.assert_allclose(back, matrix, rtol=1e-9)
    with pytest.raises(ValueError, match="not both"):
        SegmentClusterer(
            FEATURES, k_min=2, k_max=2, fill={}, log_features=["x"], scaled_log_features={"x": 3}
        ).fit(frame)
