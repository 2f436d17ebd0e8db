"""Blocking checks of the segmentation: exact maps, every user covered, the stability gate."""

import dagster as dg

from dagster_project.defs.common import WarehouseResource, covers_every_user_check, partition_days
from dagster_project.defs.segmentation.assets import (
    CLUSTER_MODEL,
    SEGMENT_CATALOG,
    SEGMENTATION_SPEC,
    USER_SEGMENTS,
    serving_version,
)
from dagster_project.lib.model_store.store import ModelStore, spec_hash

user_segments_cover_every_user = covers_every_user_check(
    USER_SEGMENTS, "user_segments_cover_every_user"
)


@dg.asset_check(asset=SEGMENT_CATALOG, blocking=True)
def segment_maps_are_exact_partitions() -> dg.AssetCheckResult:
    """Every map of models/segmentation.yml (the R x F map, the 8 value tiers and any map a user
    adds under rules.maps) matches each cell of its score grid exactly once. Fails with the
    unmatched and doubly matched cells, and blocks every segment asset downstream."""
    from dagster_project.lib.segmentation.maps import check_spec_maps
    from dagster_project.lib.segmentation.spec_loader import load_segmentation_spec

    problems = check_spec_maps(load_segmentation_spec(SEGMENTATION_SPEC, validate=False))
    bad = {name: cells for name, cells in problems.items() if cells}
    return dg.AssetCheckResult(
        passed=not bad,
        metadata={
            "maps_checked": dg.MetadataValue.json(sorted(problems)),
            "bad_cells": dg.MetadataValue.json(bad),
        },
    )


@dg.asset_check(asset=CLUSTER_MODEL.asset_key, blocking=True)
def segment_clusters_pass_stability_gate(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
) -> dg.AssetCheckResult:
    """The newest model version trained up to the partition passed the promotion gate (mean
    bootstrap ARI and per-cluster Jaccard at or above models/segmentation.yml's thresholds).

    A refused version is never used for scoring. The check then fails with WARN severity when a
    promoted version still scores the day (daily scoring goes on with it; the evidence shows why
    the refit was refused), or when the version is the model's first and was promoted below the
    thresholds by policy (stability.promote_first_version). It fails with ERROR, blocking the
    segment tables, only when no promoted version can score the day. A day with too few users to
    cluster (clustering.min_users) passes: nothing was fitted and its clusters are NULL."""
    from dagster_project.defs.models import features_as_of
    from dagster_project.lib.segmentation.model import cluster_skip_reason
    from dagster_project.lib.segmentation.spec_loader import load_segmentation_spec

    spec = load_segmentation_spec(SEGMENTATION_SPEC)
    store = ModelStore(warehouse.paths.model_store)
    digest = spec_hash(SEGMENTATION_SPEC)
    evidence: dict[str, dict] = {}
    passed, stranded = True, False
    for day in partition_days(context):
        with warehouse.connect() as con:
            too_few = cluster_skip_reason(features_as_of(con, day), spec)
        if too_few is not None:
            evidence[day.isoformat()] = {"clusters_skipped": too_few}
            continue
        candidate = store.latest_as_of(CLUSTER_MODEL.name, day, digest)
        serving = serving_version(store, day)
        stability = candidate.metrics.get("stability", {}) if candidate else {}
        # versions without a gate record (fitted before gates existed) count as passed
        gate = candidate.metrics.get("gate", {"passed": True}) if candidate else {}
        evidence[day.isoformat()] = {
            "candidate_version": candidate.version if candidate else None,
            "gate_passed": bool(gate.get("passed", False)),
            "promoted": candidate.promoted if candidate else False,
            "promoted_as_first_version": bool(
                candidate and candidate.promoted and not gate.get("passed", False)
            ),
            "mean_bootstrap_ari": stability.get("mean_ari"),
            "cluster_jaccard": stability.get("cluster_jaccard"),
            "min_mean_ari": gate.get("min_mean_ari"),
            "min_cluster_jaccard": gate.get("min_cluster_jaccard"),
            "reasons": gate.get("reasons", []),
            "scoring_version": serving.version if serving else None,
        }
        passed = passed and bool(gate.get("passed", False))
        stranded = stranded or serving is None
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR if stranded else dg.AssetCheckSeverity.WARN,
        metadata={"by_day": dg.MetadataValue.json(evidence)},
    )
