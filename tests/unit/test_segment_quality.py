"""The issue's four quality thresholds, on small generated data (the benchmark runs 5,000 users).

benchmarks/segmentation_quality.py prints the same figures at 5,000 users for seeds 1, 2, 3.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from dagster_project.lib.sample.generator import generate_sample
from dagster_project.lib.segmentation.archetype_recovery import measure_quality
from dagster_project.lib.segmentation.spec_loader import load_segmentation_spec
from dagster_project.testing.stand_in_marts import sample_features

SPEC_PATH = Path(__file__).resolve().parents[2] / "models" / "segmentation.yml"
END = date(2024, 6, 30)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


def test_clusters_recover_archetypes_stably_with_kept_ids_and_faithful_rules(tmp_path):
    generate_sample(tmp_path, users=300, days=120, seed=3, end_date=END)
    features = sample_features(tmp_path, END)
    assert features.get_column("archetype").null_count() == 0
    figures = measure_quality(
        features.drop("archetype"),
        features.get_column("archetype"),
        load_segmentation_spec(SPEC_PATH),
        refit_seed=3,
        compare_canonical=False,
    )
    assert figures.failures() == []
    assert figures.ari_vs_archetypes >= 0.8
    assert figures.bootstrap_ari >= 0.8
    assert figures.id_agreement_refit >= 0.98
    assert figures.surrogate_fidelity >= 0.9
