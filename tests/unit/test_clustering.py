"""SegmentClusterer on synthetic blobs with known groups, and on a small user_features frame."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from feature_frames import mixed_user_features

from dagster_project.lib.segmentation.clustering.clusterer import (
    SegmentClusterer,
    clusterer_from_spec,
    training_sample,
)
from dagster_project.lib.segmentation.spec_loader import load_segmentation_spec

SPEC_PATH = Path(__file__).resolve().parents[2] / "models" / "segmentation.yml"
FEATURES = ["monetary", "frequency", "events_90d"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny data: OpenMP/BLAS threads only add start-up cost (seconds on a busy 2-core box)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


def ari(a: np.ndarray, b: np.ndarray) -> float:
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(a, b))


def blobs(
    sizes: list[int], spread: float = 0.3, seed: int = 0, separation: float = 4.0
) -> tuple[pl.DataFrame, np.ndarray]:
    """Groups around distinct centres (3 features); returns the frame and the true group."""
    rng = np.random.default_rng(seed)
    centres = separation * np.array(
        [[3.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 3.0], [2.5, 2.5, 2.5], [0.0, 0.0, 0.0]]
    )
    truth = np.repeat(np.arange(len(sizes)), sizes)
    x = centres[truth] + rng.normal(scale=spread * separation / 4, size=(len(truth), 3))
    frame = pl.DataFrame({f: x[:, j] for j, f in enumerate(FEATURES)}).with_columns(
        pl.Series("user_id", [f"u{i}" for i in range(len(truth))])
    )
    return frame, truth


def clusterer(**overrides: object) -> SegmentClusterer:
    params: dict[str, object] = {
        "features": FEATURES,
        "k_min": 2,
        "k_max": 6,
        "random_state": 0,
        "log_features": [],
        "silhouette_sample": 600,
        "n_init": 2,
        "min_share": 0.02,
        "minibatch_above": 200_000,
    }
    params.update(overrides)
    return SegmentClusterer(**params)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def four_blobs() -> tuple[pl.DataFrame, np.ndarray, SegmentClusterer]:
    frame, truth = blobs([400, 300, 250, 150])
    return frame, truth, clusterer().fit(frame)


def test_recovers_well_separated_groups_and_picks_true_k(four_blobs) -> None:
    frame, truth, model = four_blobs
    assert model.k_ == 4
    assert model.algorithm_ == "kmeans"
    assert ari(truth, model.predict(frame)) > 0.95
    scores = {c["k"]: c for c in model.candidate_scores_}
    assert sorted(scores) == [2, 3, 4, 5, 6]
    assert set(scores[4]) >= {"k", "silhouette", "calinski_harabasz", "davies_bouldin", "min_share"}
    assert max(scores, key=lambda k: scores[k]["silhouette"]) == 4
    assert [c["k"] for c in model.candidate_scores_ if c["chosen"]] == [4]


def test_ids_are_canonical_and_centroids_in_original_units(four_blobs) -> None:
    frame, _, model = four_blobs
    monetary = model.centroids_.get_column("monetary").to_list()
    assert monetary == sorted(monetary, reverse=True)  # id 0 = highest monetary centroid
    ids = model.predict(frame)
    assert set(ids.tolist()) == {0, 1, 2, 3}
    means = frame.with_columns(pl.Series("id", ids)).group_by("id").agg(pl.col("monetary").mean())
    for cid, mean in means.iter_rows():
        assert monetary[cid] == pytest.approx(mean, abs=1e-6)  # no log: centroid = mean
    assert sorted(model.cluster_sizes_.tolist()) == [150, 250, 300, 400]


def test_refit_with_another_seed_keeps_ids() -> None:
    # overlapping groups: KMeans numbers its clusters differently per seed, stable ids must not
    frame, _ = blobs([500, 400, 300], spread=0.9, seed=5)
    first = clusterer(k_min=3, k_max=3, random_state=0).fit(frame)
    second = clusterer(k_min=3, k_max=3, random_state=5).fit(frame)
    assert not np.array_equal(first.label_map_, second.label_map_)  # raw labels permuted
    agreement = float((first.predict(frame) == second.predict(frame)).mean())
    assert agreement >= 0.98


def test_small_clusters_are_not_chosen_unless_nothing_qualifies() -> None:
    frame, _ = blobs([300, 300, 300, 9], seed=2)  # the 4th group holds 1% of users
    strict = clusterer(k_min=3, k_max=4, min_share=0.02).fit(frame)
    scores = {c["k"]: c for c in strict.candidate_scores_}
    assert scores[4]["silhouette"] > scores[3]["silhouette"]
    assert not scores[4]["qualifies"]
    assert strict.k_ == 3
    # nothing qualifies: fall back to the best silhouette
    lax = clusterer(k_min=3, k_max=4, min_share=0.5).fit(frame)
    assert lax.k_ == 4


def test_minibatch_above_the_threshold() -> None:
    frame, truth = blobs([200, 200, 200], seed=4)
    model = clusterer(k_min=3, k_max=3, n_init=1, minibatch_above=500).fit(frame)
    assert model.algorithm_ == "minibatch_kmeans"
    assert type(model.estimator_).__name__ == "MiniBatchKMeans"
    assert ari(truth, model.predict(frame)) > 0.95
    small = clusterer(k_min=3, k_max=3, n_init=1, minibatch_above=600).fit(frame)
    assert type(small.estimator_).__name__ == "KMeans"


def test_fit_sample_fits_on_a_fixed_sample_and_describes_every_user() -> None:
    frame, truth = blobs([400, 300, 500], seed=6)
    sampled = clusterer(k_min=3, k_max=3, n_init=2, fit_sample=250).fit(frame)
    assert sampled.n_samples_fit_ == 250 and sampled.n_users_ == frame.height
    # sizes and profile means count every user, not the sample
    assert sampled.cluster_sizes_.sum() == frame.height
    assert sorted(sampled.cluster_sizes_.tolist()) == [300, 400, 500]
    assert ari(truth, sampled.predict(frame)) > 0.95
    everyone = clusterer(k_min=3, k_max=3, n_init=2).fit(frame)
    assert everyone.n_samples_fit_ == everyone.n_users_ == frame.height
    assert ari(everyone.predict(frame), sampled.predict(frame)) > 0.95
    # the same input draws the same sample: a rerun fits the same centres
    again = clusterer(k_min=3, k_max=3, n_init=2, fit_sample=250).fit(frame)
    np.testing.assert_array_equal(again.centers_scaled_, sampled.centers_scaled_)


def test_training_sample_is_bounded_reproducible_and_ordered() -> None:
    frame = pl.DataFrame({"user_id": [f"u{i:04d}" for i in range(1000)]})
    assert training_sample(frame, None, 0) is frame
    assert training_sample(frame, 1000, 0) is frame
    sample = training_sample(frame, 100, 0)
    assert sample.height == 100 and sample.get_column("user_id").is_sorted()
    assert sample.equals(training_sample(frame, 100, 0))
    assert not sample.equals(training_sample(frame, 100, 1))


def test_pickle_round_trip_predicts_identically(four_blobs) -> None:
    frame, _, model = four_blobs
    restored = pickle.loads(pickle.dumps(model))
    assert np.array_equal(restored.predict(frame), model.predict(frame))
    assert restored.profile().equals(model.profile())


def test_predict_before_fit_and_too_few_users() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        clusterer().predict(blobs([5, 5])[0])
    tiny = pl.DataFrame({f: [1.0, 1.0, 2.0] for f in FEATURES})
    with pytest.raises(ValueError, match="distinct users"):
        clusterer(k_min=3).fit(tiny)


def user_features(n: int, seed: int) -> pl.DataFrame:
    return mixed_user_features(n, seed)


def test_spec_clusterer_handles_non_customers_and_names_clusters() -> None:
    spec = load_segmentation_spec(SPEC_PATH)
    model = clusterer_from_spec(spec)
    assert (model.k_min, model.k_max, model.random_state) == (3, 8, 42)
    model.n_init, model.k_max = 1, 5  # keep the unit test fast
    frame = user_features(600, seed=11)
    model.fit(frame)
    ids = model.predict(frame)
    assert ids.min() == 0 and ids.max() == model.k_ - 1
    profile = model.profile()
    assert profile.get_column("cluster_id").to_list() == list(range(model.k_))
    assert profile.get_column("size").sum() == frame.height
    assert profile.get_column("share").sum() == pytest.approx(1.0)
    assert profile.get_column("name").is_unique().all()
    assert {"size", "share", "name_en", "name_zh", "monetary_mean"} <= set(profile.columns)
    non_buyers = profile.filter(pl.col("customer_share") < 0.5)
    assert non_buyers.height >= 1
    assert non_buyers.get_column("name").str.starts_with("non-buyers").all()
    assert non_buyers.get_column("name_zh").str.starts_with("未购").all()
    # id 0 is the most valuable cluster; its name says so
    top = profile.row(0, named=True)
    assert top["monetary_mean"] == profile.get_column("monetary_mean").max()
    assert "high value" in top["name_en"] or "frequent" in top["name_en"]
    # non-buyer centroids sit exactly at 0 orders (no float noise in original units)
    assert model.centroids_.get_column("frequency").min() == 0.0
