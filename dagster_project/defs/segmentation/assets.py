"""Segments: rule schemes and KMeans clusters, versioned models, one row per user per day."""

from datetime import date

import dagster as dg
import polars as pl

from dagster_project.defs.common import (
    WAREHOUSE_POOL,
    WarehouseResource,
    daily_partitions,
    partition_days,
    preview,
    single_run,
)
from dagster_project.defs.features.assets import USER_FEATURES
from dagster_project.defs.models import ModelFitConfig, record_model_version, version_metadata
from dagster_project.lib import settings
from dagster_project.lib.registry import ModelStore, ModelVersion, spec_hash
from dagster_project.lib.warehouse import read_frame, replace_snapshot

SEGMENT_CLUSTERS = dg.AssetKey(["models", "segment_clusters"])
USER_SEGMENTS = dg.AssetKey(["marts", "user_segments_daily"])
SEGMENTATION_SPEC = settings.MODEL_SPECS_DIR / "segmentation.yml"
MODEL_NAME = "segment_clusters"


def features_as_of(con, day: date) -> pl.DataFrame:
    return read_frame(
        con,
        "select * from features.user_features where as_of_date = $day order by user_id",
        {"day": day},
    )


@dg.asset(
    key=SEGMENT_CLUSTERS,
    deps=[USER_FEATURES],
    partitions_def=daily_partitions,
    backfill_policy=single_run,
    group_name="segmentation",
    kinds={"scikitlearn", "polars"},
    pool=WAREHOUSE_POOL,
    description=(
        "KMeans segmentation model (spec models/segmentation.yml). Fits a new version when none "
        "was trained on data up to this day, or when `refit` is set (weekly schedule); "
        "versions live under $STRATA_HOME/models and in marts.model_versions."
    ),
)
def segment_clusters(
    context: dg.AssetExecutionContext, config: ModelFitConfig, warehouse: WarehouseResource
):
    from dagster_project.lib.clustering import clusterer_from_spec
    from dagster_project.lib.segments import load_segmentation_spec

    spec = load_segmentation_spec(SEGMENTATION_SPEC)
    store = ModelStore(warehouse.paths.model_store)
    digest = spec_hash(SEGMENTATION_SPEC)
    with warehouse.connect() as con:
        for day in partition_days(context):
            features = features_as_of(con, day)

            def fit(features: pl.DataFrame = features) -> tuple[object, dict]:
                model = clusterer_from_spec(spec).fit(features)
                metrics = {
                    "k": int(model.k_),
                    "users": features.height,
                    "candidates": model.candidate_scores_,
                    "clusters": model.profile()
                    .select("cluster_id", "name", "size", "share")
                    .to_dicts(),
                }
                return model, metrics

            version, fitted_now = store.resolve(MODEL_NAME, day, digest, config.refit, fit)
            record_model_version(con, version)
    candidates = pl.DataFrame(version.metrics.get("candidates", []))
    return dg.MaterializeResult(
        metadata={
            **version_metadata(version, fitted_now),
            "k": version.metrics.get("k"),
            "candidate_scores": preview(candidates, rows=20) if candidates.height else "",
        }
    )


def _current_version(store: ModelStore, day: date) -> ModelVersion:
    version = store.latest_as_of(MODEL_NAME, day, spec_hash(SEGMENTATION_SPEC))
    if version is None:
        raise dg.Failure(
            f"no {MODEL_NAME} model trained on data up to {day}: materialise "
            f"{SEGMENT_CLUSTERS.to_user_string()} for this partition first"
        )
    return version


@dg.asset(
    key=USER_SEGMENTS,
    deps=[USER_FEATURES, SEGMENT_CLUSTERS],
    partitions_def=daily_partitions,
    backfill_policy=single_run,
    group_name="segmentation",
    kinds={"polars", "duckdb"},
    pool=WAREHOUSE_POOL,
    description=(
        "One row per user per snapshot date: R/F/M scores, the R x F segment, the 8-type value "
        "tier, lifecycle stage and operating tier (bilingual), and the KMeans cluster with the "
        "model version that assigned it."
    ),
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
            version = _current_version(store, day)
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
            )
            segments = segments.select(
                "user_id", "snapshot_date", pl.exclude("user_id", "snapshot_date")
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
