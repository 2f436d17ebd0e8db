"""The segmentation assets and checks on the real definitions, without dbt: user_features are
built from generated landing files. A refused refit keeps scoring on the promoted version (the
gate check fails with WARN and the evidence); a map with a gap blocks the segment assets."""

from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml
from run_outcomes import check_evaluations, materialized

from dagster_project.defs.common import WarehouseResource
from dagster_project.defs.segmentation import assets, checks
from dagster_project.lib.core import settings
from dagster_project.lib.core.warehouse import replace_snapshot
from dagster_project.lib.features.user_features import compute_user_features
from dagster_project.lib.model_store.store import ModelStore
from dagster_project.lib.sample.generator import generate_sample
from dagster_project.testing.stand_in_marts import landing_marts

END = date(2024, 4, 30)
DAY1, DAY2 = END - timedelta(days=1), END
SEGMENT_ASSETS = [
    assets.segment_catalog,
    assets.segment_clusters,
    assets.user_segments_daily,
    checks.segment_maps_are_exact_partitions,
    checks.segment_clusters_pass_stability_gate,
    checks.user_segments_cover_every_user,
]


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("segments")
    generate_sample(home, users=400, days=90, seed=5, end_date=END)
    paths = settings.strata_paths(home)
    with duckdb.connect(str(paths.warehouse)) as con:
        landing_marts(con, paths.landing)
        for day in (DAY1, DAY2):
            features = compute_user_features(con, day)
            replace_snapshot(con, "features.user_features", features, "as_of_date", day)
    return home


def use_spec(monkeypatch, path: Path) -> None:
    monkeypatch.setattr(assets, "SEGMENTATION_SPEC", path)
    monkeypatch.setattr(checks, "SEGMENTATION_SPEC", path)
    monkeypatch.setattr(assets.CLUSTER_MODEL, "spec_path", path)


def edited_spec(tmp_path: Path, edit) -> Path:
    raw = yaml.safe_load(assets.SEGMENTATION_SPEC.read_text(encoding="utf-8"))
    edit(raw)
    path = tmp_path / "segmentation.yml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def run(home: Path, day: date, refit: bool = False) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        SEGMENT_ASSETS,
        partition_key=day.isoformat(),
        resources={"warehouse": WarehouseResource(home=str(home))},
        run_config={"ops": {"models__segment_clusters": {"config": {"refit": refit}}}},
        raise_on_error=False,
    )


def test_a_refused_refit_keeps_scoring_on_the_promoted_version(home, tmp_path, monkeypatch):
    first = run(home, DAY1)
    assert first.success
    checked = check_evaluations(first)
    assert checked["marts/segment_catalog:segment_maps_are_exact_partitions"].passed
    assert checked["marts/user_segments_daily:user_segments_cover_every_user"].passed
    promoted = ModelStore(settings.strata_paths(home).model_store).versions("segment_clusters")
    assert [v.promoted for v in promoted] == [True]

    # an impossible gate: the refit on day 2 is refused, day 2 is still scored by version 1
    def impossible(raw):
        raw["clustering"]["stability"].update(min_mean_ari=1.0, min_cluster_jaccard=1.0)

    use_spec(monkeypatch, edited_spec(tmp_path, impossible))
    second = run(home, DAY2, refit=True)
    assert second.success  # WARN does not block
    gate = check_evaluations(second)["models/segment_clusters:segment_clusters_pass_stability_gate"]
    assert not gate.passed and gate.severity == dg.AssetCheckSeverity.WARN
    evidence = gate.metadata["by_day"].value[DAY2.isoformat()]
    assert evidence["promoted"] is False and evidence["reasons"]
    assert evidence["scoring_version"] == promoted[0].version
    assert "marts/user_segments_daily" in materialized(second)

    with duckdb.connect(str(settings.strata_paths(home).warehouse), read_only=True) as con:
        versions = dict(
            con.execute(
                "select snapshot_date, any_value(model_version) from marts.user_segments_daily "
                "group by snapshot_date"
            ).fetchall()
        )
        assert versions == {DAY1: promoted[0].version, DAY2: promoted[0].version}
        refused = con.execute(
            "select count(*) from marts.model_versions where not promoted"
        ).fetchall()[0][0]
        assert refused == 1
        for table in ("segment_model_candidates", "segment_cluster_profiles"):
            rows = con.execute(f"select count(distinct model_version) from marts.{table}")
            assert rows.fetchall()[0][0] == 2, table  # the refused candidate is on record
        nulls = con.execute(
            "select count(*) from marts.user_segments_daily where snapshot_date = ? and ("
            "cluster_reason is null or rfm_reason is null or lifecycle_reason is null "
            "or cluster_name is null)",
            [DAY2],
        ).fetchall()[0][0]
        assert nulls == 0


def test_a_map_with_a_gap_fails_with_its_cells_and_blocks_the_segments(home, tmp_path, monkeypatch):
    def drop_champions(raw):
        raw["rules"]["rf_map"] = [m for m in raw["rules"]["rf_map"] if m["key"] != "champions"]

    use_spec(monkeypatch, edited_spec(tmp_path, drop_champions))
    result = run(home, DAY2)
    check = check_evaluations(result)["marts/segment_catalog:segment_maps_are_exact_partitions"]
    assert not check.passed
    assert check.metadata["bad_cells"].value == {
        "rfm_segment": ["r=5 f=4: unmatched", "r=5 f=5: unmatched"]
    }
    assert not materialized(result) & {"models/segment_clusters", "marts/user_segments_daily"}


def test_too_few_users_to_cluster_fits_nothing_and_leaves_the_clusters_null(
    home, tmp_path, monkeypatch
):
    def unreachable(raw):
        raw["clustering"]["min_users"] = 10_000

    use_spec(monkeypatch, edited_spec(tmp_path, unreachable))
    store = ModelStore(settings.strata_paths(home).model_store)
    before = len(store.versions("segment_clusters"))
    result = run(home, DAY1, refit=True)
    assert result.success
    gate = check_evaluations(result)["models/segment_clusters:segment_clusters_pass_stability_gate"]
    assert gate.passed
    reason = gate.metadata["by_day"].value[DAY1.isoformat()]["clusters_skipped"]
    assert reason.startswith("too few users to cluster: ") and reason.endswith(
        " < min_users (10000)"
    )
    assert len(store.versions("segment_clusters")) == before  # nothing fitted
    assert check_evaluations(result)[
        "marts/user_segments_daily:user_segments_cover_every_user"
    ].passed
    with duckdb.connect(str(settings.strata_paths(home).warehouse), read_only=True) as con:
        rows = con.execute(
            "select count(*), count(cluster_id), count(cluster_name), count(model_version), "
            "count(rfm_segment), min(cluster_reason), max(cluster_reason) "
            "from marts.user_segments_daily where snapshot_date = ?",
            [DAY1],
        ).fetchone()
    users, ids, names, versions, rfm, low, high = rows
    assert users > 0 and (ids, names, versions) == (0, 0, 0) and rfm == users
    assert low == high == reason
