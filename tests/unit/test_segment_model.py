"""The versioned segmentation model: training, per-user reasons, names and overrides."""

from __future__ import annotations

import dataclasses
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from feature_frames import mixed_user_features
from threadpoolctl import threadpool_info, threadpool_limits

from dagster_project.lib.segmentation.clustering.clusterer import clusterer_from_spec
from dagster_project.lib.segmentation.model import (
    SegmentModel,
    cluster_names,
    cluster_skip_reason,
    load_name_overrides,
    train_segment_model,
    unclustered,
)
from dagster_project.lib.segmentation.spec import SegmentationSpec
from dagster_project.lib.segmentation.spec_loader import load_segmentation_spec

ROOT = Path(__file__).resolve().parents[2]
SPEC_PATH = ROOT / "models" / "segmentation.yml"


def user_features(n: int, seed: int) -> pl.DataFrame:
    return mixed_user_features(n, seed, shares=(0.25, 0.4, 0.35), id_width=4)


def small_spec(path: Path = SPEC_PATH, **surrogate: int) -> SegmentationSpec:
    """The spec at ``path`` with a quick clustering (k 3-4, one init, four refits)."""
    spec = load_segmentation_spec(path)
    c = spec.clustering
    return dataclasses.replace(
        spec,
        clustering=dataclasses.replace(
            c,
            k_min=3,
            k_max=4,
            n_init=1,
            stability=dataclasses.replace(c.stability, bootstrap_refits=4),
            surrogate=dataclasses.replace(c.surrogate, **surrogate),
        ),
    )


@pytest.fixture(scope="module")
def trained() -> tuple[pl.DataFrame, SegmentModel]:
    frame = user_features(400, seed=3)
    return frame, train_segment_model(frame, small_spec())


def test_fit_sample_bounds_the_users_the_model_and_its_tree_are_fitted_on() -> None:
    frame = user_features(600, seed=5)
    spec = small_spec()
    spec = dataclasses.replace(
        spec, clustering=dataclasses.replace(spec.clustering, fit_sample=200)
    )
    model = train_segment_model(frame, spec)
    metrics = model.metrics()
    assert metrics["users"] == frame.height and metrics["users_fitted"] == 200
    # the surrogate tree was fitted on the same bounded sample; the profile counts everyone
    assert model.surrogate.leaves_.get_column("users").sum() == 200
    assert model.profile().get_column("users").sum() == frame.height
    quality = {q.metric: q.value for q in model.quality()}
    assert quality["users"] == frame.height and quality["users_fitted"] == 200


def test_the_model_is_fitted_on_one_native_thread_then_the_callers_limits_come_back() -> None:
    spec = small_spec()
    clusterer = clusterer_from_spec(spec)
    fit = clusterer.fit
    threads_seen: list[set[int]] = []

    def recording_fit(frame: pl.DataFrame):
        threads_seen.append({pool["num_threads"] for pool in threadpool_info()})
        return fit(frame)

    clusterer.fit = recording_fit
    with threadpool_limits(limits=2):
        train_segment_model(user_features(200, seed=5), spec, clusterer=clusterer)
        after = {pool["filepath"]: pool["num_threads"] for pool in threadpool_info()}
    assert threads_seen == [{1}]  # BLAS and OpenMP alike
    assert set(after.values()) == {2}  # the caller's limits are back


def test_training_records_candidates_stability_surrogate_and_lineage(trained) -> None:
    frame, model = trained
    assert model.previous_version is None
    assert model.gate.first_version and model.gate.promote
    candidates = model.candidates()
    assert candidates.get_column("k").to_list() == [3, 4]
    assert candidates.get_column("chosen").sum() == 1
    assert (
        candidates.select("silhouette", "calinski_harabasz", "davies_bouldin")
        .null_count()
        .sum_horizontal()
        .item()
        == 0
    )
    assert model.lineage.get_column("event").to_list() == ["new"] * model.clusterer.k_
    metrics = model.metrics()
    assert metrics["k"] == model.clusterer.k_ and metrics["users"] == frame.height
    assert metrics["users_fitted"] == frame.height  # below the spec's fit_sample: everyone
    assert 0 < metrics["stability"]["mean_ari"] <= 1
    assert metrics["gate"]["promote"] is True
    assert metrics["surrogate"]["fidelity"] == model.surrogate.fidelity_
    assert "|---" in metrics["surrogate"]["rules_text"]
    json.dumps(metrics, default=str)  # stored in the model card and marts.model_versions
    profile = model.profile()
    assert profile.get_column("cluster_id").to_list() == model.ids
    assert profile.get_column("users").sum() == frame.height
    assert profile.get_column("bootstrap_jaccard").is_between(0, 1).all()
    assert profile.get_column("rules").null_count() == 0
    means = json.loads(profile.get_column("feature_means_json")[0])
    assert set(means) == set(model.clusterer.feature_names_)


def test_quality_rows_carry_the_figures_and_the_spec_bars(trained) -> None:
    _, model = trained
    spec = small_spec()
    metrics = model.metrics()
    quality = {q["metric"]: q for q in metrics["quality"]}
    bars = spec.clustering.quality
    chosen = next(c for c in metrics["candidates"] if c["chosen"])
    assert quality["silhouette"]["value"] == chosen["silhouette"]
    assert quality["silhouette"]["threshold"] == bars.min_silhouette
    assert quality["davies_bouldin"]["comparison"] == "<="
    assert quality["davies_bouldin"]["threshold"] == bars.max_davies_bouldin
    assert quality["calinski_harabasz"]["passed"] is None  # no scale-free bar: reported
    stability = quality["bootstrap_mean_ari"]
    assert stability["value"] == metrics["stability"]["mean_ari"]
    assert stability["threshold"] == spec.clustering.stability.min_mean_ari  # the gate's bar
    assert stability["passed"] is (stability["value"] >= stability["threshold"])
    assert quality["surrogate_fidelity"]["value"] == model.surrogate.fidelity_
    assert quality["k"]["value"] == model.clusterer.k_


def test_every_user_gets_a_reason_from_the_rules_or_the_nearest_centre() -> None:
    frame = user_features(300, seed=4)
    # a one-split tree cannot separate 3+ clusters: some users fall back to the centroid reason
    model = train_segment_model(frame, small_spec(max_depth=1, max_leaf_nodes=2))
    ids = model.predict(frame)
    reasons = model.explain(frame, ids)
    assert reasons.len() == frame.height and reasons.null_count() == 0
    tree_ids, rules = model.surrogate.rules_for(model.clusterer.readable_matrix(frame))
    agree = tree_ids == ids
    assert 0 < agree.sum() < frame.height
    assert (reasons.to_numpy()[agree] == rules.to_numpy()[agree]).all()
    fallback = reasons.filter(pl.Series(~agree))
    assert fallback.str.starts_with("nearest centre on ").all()
    assert fallback.str.contains(r"^nearest centre on \w+ = [-\d.]+, \w+ = [-\d.]+$").all()


def test_a_retrain_takes_over_the_previous_ids(trained) -> None:
    frame, first = trained
    spec = small_spec()
    other = dataclasses.replace(
        spec, clustering=dataclasses.replace(spec.clustering, random_state=99)
    )
    second = train_segment_model(frame, other, previous=first, previous_version="v1")
    assert second.previous_version == "v1" and not second.gate.first_version
    assert (second.predict(frame) == first.predict(frame)).mean() >= 0.98
    assert set(second.lineage.get_column("event")) == {"kept"}


def test_the_model_pickles_and_scores_identically(trained) -> None:
    frame, model = trained
    restored = pickle.loads(pickle.dumps(model))
    assert np.array_equal(restored.predict(frame), model.predict(frame))
    assert restored.explain(frame).equals(model.explain(frame))


def test_name_overrides_win_and_unknown_ids_are_ignored(trained, tmp_path: Path) -> None:
    _, model = trained
    path = tmp_path / "overrides.csv"
    path.write_text(
        "# comment lines are skipped\n"
        "cluster_id,name_en,name_zh,note\n"
        "0,VIP,贵宾客户,agreed with CRM\n"
        "99,Retired,已退役,an id this model does not have\n",
        encoding="utf-8",
    )
    names = cluster_names(model, load_name_overrides(path))
    auto = model.clusterer.profile()
    assert names.height == auto.height
    top = names.filter(pl.col("cluster_id") == 0).row(0, named=True)
    assert (top["cluster_name"], top["name_source"]) == ("VIP / 贵宾客户", "override")
    others = names.filter(pl.col("cluster_id") != 0)
    assert set(others.get_column("name_source")) == {"profile"}
    expected = auto.filter(pl.col("cluster_id") != 0).get_column("name").to_list()
    assert others.get_column("cluster_name").to_list() == expected


def test_override_table_validation(tmp_path: Path) -> None:
    assert load_name_overrides(tmp_path / "missing.csv").is_empty()
    assert load_name_overrides(ROOT / "models" / "segment_name_overrides.csv").columns == [
        "cluster_id",
        "name_en",
        "name_zh",
        "note",
    ]
    duplicate = tmp_path / "dup.csv"
    duplicate.write_text("cluster_id,name_en,name_zh,note\n1,a,甲,\n1,b,乙,\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unique"):
        load_name_overrides(duplicate)
    no_zh = tmp_path / "no_zh.csv"
    no_zh.write_text("cluster_id,name_en,name_zh,note\n1,a,,\n", encoding="utf-8")
    with pytest.raises(ValueError, match="name_zh"):
        load_name_overrides(no_zh)


def test_spec_clusterer_uses_the_shipped_transforms() -> None:
    model = clusterer_from_spec(load_segmentation_spec(SPEC_PATH))
    assert model.fill["avg_order_value"] == "median"
    assert "recency_days" not in model.log_features  # linear: see the spec's comment
    assert "tenure_days" in model.log_features


def test_without_money_the_clusters_are_fitted_on_the_other_features() -> None:
    """A source without money: monetary and avg_order_value are NULL for every user, so the
    model leaves them out (and says so) and still clusters, names and explains every user."""
    frame = user_features(300, seed=5).with_columns(
        pl.lit(None, dtype=pl.Float64).alias(c) for c in ("monetary", "avg_order_value")
    )
    model = train_segment_model(frame, small_spec())
    metrics = model.metrics()
    assert set(metrics["features_left_out"]) == {"monetary", "avg_order_value"}
    assert "monetary" not in metrics["features"] and "frequency" in metrics["features"]
    ids = model.predict(frame)
    assert len(set(ids.tolist())) == model.clusterer.k_ >= 3
    assert model.explain(frame, ids).null_count() == 0
    assert cluster_names(model)["cluster_name"].null_count() == 0


def test_below_min_users_nothing_is_fitted_and_the_clusters_are_null_with_the_reason() -> None:
    spec = small_spec()
    assert spec.clustering.min_users == 50  # the shipped default; the 300-user fixture clears it
    tiny = user_features(spec.clustering.min_users - 1, seed=6)
    reason = cluster_skip_reason(tiny, spec)
    assert reason == "too few users to cluster: 49 < min_users (50)"
    with pytest.raises(ValueError, match=r"too few users to cluster: 49 < min_users \(50\)"):
        train_segment_model(tiny, spec)
    columns = unclustered(tiny.get_column("user_id"), reason)
    assert columns.height == tiny.height
    assert columns.get_column("cluster_id").null_count() == tiny.height
    assert columns.get_column("cluster_name").null_count() == tiny.height
    assert set(columns.get_column("cluster_reason")) == {reason}


def test_fewer_users_than_k_min_is_too_few_whatever_min_users_says() -> None:
    spec = small_spec()
    spec = dataclasses.replace(spec, clustering=dataclasses.replace(spec.clustering, min_users=1))
    pair = user_features(2, seed=6)
    assert cluster_skip_reason(pair, spec) == "too few users to cluster: 2 < k_min (3)"
    assert cluster_skip_reason(pair.head(0), spec) == "too few users to cluster: 0 < min_users (1)"


def test_at_min_users_the_model_is_fitted() -> None:
    spec = small_spec()
    frame = user_features(spec.clustering.min_users, seed=6)
    assert cluster_skip_reason(frame, spec) is None
    model = train_segment_model(frame, spec)
    assert model.predict(frame).shape == (frame.height,)
    assert model.clusterer.k_ >= spec.clustering.k_min


def test_min_users_must_be_a_positive_integer(tmp_path: Path) -> None:
    text = SPEC_PATH.read_text(encoding="utf-8")
    for bad, message in (("0", "min_users must be >= 1"), ("2.5", "min_users")):
        path = tmp_path / "segmentation.yml"
        path.write_text(text.replace("min_users: 50", f"min_users: {bad}"), encoding="utf-8")
        with pytest.raises(ValueError, match=message):
            load_segmentation_spec(path)


def test_fit_sample_is_null_or_at_least_min_users(tmp_path: Path) -> None:
    text = SPEC_PATH.read_text(encoding="utf-8")
    assert "fit_sample: 200000" in text
    path = tmp_path / "segmentation.yml"
    path.write_text(text.replace("fit_sample: 200000", "fit_sample: 49"), encoding="utf-8")
    with pytest.raises(ValueError, match="fit_sample must be null or >= min_users"):
        load_segmentation_spec(path)
    path.write_text(text.replace("fit_sample: 200000", "fit_sample: null"), encoding="utf-8")
    assert load_segmentation_spec(path).clustering.fit_sample is None


def test_one_thread_also_holds_for_native_libraries_loaded_inside_the_block() -> None:
    # a run imports scikit-learn lazily, in its first fit: the limit must cover its OpenMP
    code = (
        "import sys\n"
        "from threadpoolctl import threadpool_info\n"
        "from dagster_project.lib.core.threads import single_threaded\n"
        "assert 'sklearn' not in sys.modules\n"
        "with single_threaded():\n"
        "    import sklearn.cluster\n"
        "    inside = {pool['internal_api']: pool['num_threads'] for pool in threadpool_info()}\n"
        "print(inside)\n"
        "assert set(inside.values()) == {1} and 'openmp' in inside, inside\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
