"""Segments: rule schemes and KMeans clusters; one row per user per snapshot date."""

from typing import Any

import dagster as dg
import polars as pl

from dagster_project.defs.common import (
    DAILY_WAREHOUSE_ASSET,
    WarehouseResource,
    partition_days,
    preview,
)
from dagster_project.defs.features.assets import USER_FEATURES
from dagster_project.defs.models import VersionedModel, features_as_of
from dagster_project.lib import settings
from dagster_project.lib.registry import ModelStore, spec_hash
from dagster_project.lib.warehouse import replace_snapshot

USER_SEGMENTS = dg.AssetKey(["marts", "user_segments_daily"])
SEGMENTATION_SPEC = settings.MODEL_SPECS_DIR / "segmentation.yml"
CLUSTER_MODEL = VersionedModel("segment_clusters", SEGMENTATION_SPEC)


def fit_clusters(features: pl.DataFrame) -> tuple[Any, dict[str, Any]]:
    from dagster_project.lib.clustering import clusterer_from_spec
    from dagster_project.lib.segments import load_segmentation_spec

    model = clusterer_from_spec(load_segmentation_spec(SEGMENTATION_SPEC)).fit(features)
    profile = model.profile().select("cluster_id", "name", "size", "share")
    metrics = {
        "k": int(model.k_),
        "users": features.height,
        "candidates": model.candidate_scores_,
        "clusters": profile.to_dicts(),
    }
    return model, metrics


segment_clusters = CLUSTER_MODEL.build_asset(
    fit_clusters,
    group_name="segmentation",
    kinds={"scikitlearn", "polars"},
    description=(
        "KMeans segmentation model (spec models/segmentation.yml): log/scale transforms, k chosen "
        "by silhouette with Calinski-Harabasz and Davies-Bouldin stored per candidate. Config "
        "`refit: true` fits a new version."
    ),
)


@dg.asset(
    key=USER_SEGMENTS,
    deps=[USER_FEATURES, CLUSTER_MODEL.asset_key],
    group_name="segmentation",
    kinds={"polars", "duckdb"},
    description=(
        "One row per user per snapshot date: R/F/M scores, the R x F segment, the 8-type value "
        "tier, lifecycle stage and operating tier (bilingual), and the KMeans cluster with the "
        "model version that assigned it."
    ),
    **DAILY_WAREHOUSE_ASSET,
)
def user_segments_daily(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    from dagster_project.lib.segments import assign_rule_segments, load_segmentation_spec

    spec = load_segmentation_spec(SEGMENTATION_SPEC)
    store = ModelStore(warehouse.paths.model_store)
    rules_version = f"rules-{spec_hash(SEGMENTATION_SPEC)}"
    rows = 0
    with warehouse.connect() as con:
        for day in partition_days(context):
            features = features_as_of(con, day)
            version = CLUSTER_MODEL.version_for(store, day)
            model = store.load(version)
            names = model.profile().select(
                pl.col("cluster_id").cast(pl.Int32), pl.col("name").alias("cluster_name")
            )
            segments = (
                assign_rule_segments(features, spec)
                .with_columns(pl.Series("cluster_id", model.predict(features), dtype=pl.Int32))
                .join(names, on="cluster_id", how="left")
                .with_columns(
                    pl.lit(day, dtype=pl.Date).alias("snapshot_date"),
                    pl.lit(version.version).alias("model_version"),
                    pl.lit(rules_version).alias("rules_version"),
                    pl.lit(context.run.run_id).alias("run_id"),
                )
                .select("user_id", "snapshot_date", pl.exclude("user_id", "snapshot_date"))
            )
            rows += replace_snapshot(
                con, "marts.user_segments_daily", segments, "snapshot_date", day
            )
    sizes = segments.group_by("cluster_id", "cluster_name").len().sort("cluster_id")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "model_version": version.version,
            "cluster_sizes": preview(sizes, rows=20),
            "value_tiers": preview(segments.group_by("value_tier_label").len().sort("len")),
        }
    )
