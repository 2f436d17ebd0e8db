"""Segments: the label catalog, the versioned cluster model and the daily user segments.

- `marts/segment_catalog`: every (scheme, key, label_zh) of the spec; its blocking check proves
  every map of the spec is an exact partition of its grid.
- `models/segment_clusters` (+ the per-version tables candidates, profiles, lineage): fits a new
  version when none was trained up to the partition (or `refit: true`), with stable ids matched to
  the previous promoted version, bootstrap stability and a surrogate tree. The promotion gate
  decides whether daily scoring may use it; a refused version stays a candidate.
- `marts/user_segments_daily` (+ `marts/user_custom_segments_daily` for user-added maps): one row
  per user per snapshot with every scheme, reasons, previous segment and since-date, scored by the
  newest promoted model version.
"""

from dataclasses import replace
from typing import Any

import dagster as dg
import duckdb
import polars as pl

from dagster_project.defs.common import (
    DAILY_WAREHOUSE_ASSET,
    WAREHOUSE_POOL,
    WarehouseResource,
    partition_days,
    preview,
)
from dagster_project.defs.features.assets import USER_FEATURES
from dagster_project.defs.models import (
    ModelFitConfig,
    VersionedModel,
    features_as_of,
    model_quality_metadata,
    record_model_version,
)
from dagster_project.lib.core import settings
from dagster_project.lib.core.warehouse import (
    replace_rows,
    replace_table,
    replacing,
)
from dagster_project.lib.model_store.store import ModelStore, ModelVersion, spec_hash

USER_SEGMENTS = dg.AssetKey(["marts", "user_segments_daily"])
USER_CUSTOM_SEGMENTS = dg.AssetKey(["marts", "user_custom_segments_daily"])
SEGMENT_CATALOG = dg.AssetKey(["marts", "segment_catalog"])
MODEL_CANDIDATES = dg.AssetKey(["marts", "segment_model_candidates"])
CLUSTER_PROFILES = dg.AssetKey(["marts", "segment_cluster_profiles"])
CLUSTER_LINEAGE = dg.AssetKey(["marts", "segment_cluster_lineage"])
SEGMENTATION_SPEC = settings.MODEL_SPECS_DIR / "segmentation.yml"
NAME_OVERRIDES = settings.MODEL_SPECS_DIR / "segment_name_overrides.csv"
CLUSTER_MODEL = VersionedModel("segment_clusters", SEGMENTATION_SPEC)


def _relation(key: dg.AssetKey) -> str:
    return ".".join(key.path)


@dg.asset(
    key=SEGMENT_CATALOG,
    group_name="segmentation",
    kinds={"polars", "duckdb"},
    pool=WAREHOUSE_POOL,
    description=(
        "One row per scheme and segment key of models/segmentation.yml (rule schemes and "
        "user-added maps): key, Chinese label, display order. Its blocking check proves every "
        "map is an exact partition of its score grid."
    ),
)
def segment_catalog(warehouse: WarehouseResource) -> dg.MaterializeResult:
    from dagster_project.lib.segmentation.maps import segment_catalog as build_catalog
    from dagster_project.lib.segmentation.spec_loader import load_segmentation_spec
    from dagster_project.lib.value.spec import load_value_spec

    # parse only: a map with a gap must still reach the check, which names the bad cells
    spec = load_segmentation_spec(SEGMENTATION_SPEC, validate=False)
    bands = load_value_spec().band_labels
    catalog = build_catalog(spec, bands).with_columns(
        pl.lit(spec_hash(SEGMENTATION_SPEC)).alias("spec_hash")
    )
    with warehouse.connect() as con:
        rows = replace_table(con, _relation(SEGMENT_CATALOG), catalog)
    return dg.MaterializeResult(
        metadata={"dagster/row_count": rows, "catalog": preview(catalog, rows=60)}
    )


def _load_segment_model(store: ModelStore, version: ModelVersion) -> Any:
    from dagster_project.lib.segmentation.model import SegmentModel

    model = store.load(version)
    if not isinstance(model, SegmentModel):
        raise dg.Failure(
            f"{version.version} predates the segmentation model format: refit "
            f"{CLUSTER_MODEL.asset_key.to_user_string()} with config refit: true"
        )
    return model


def serving_version(store: ModelStore, day: Any) -> ModelVersion | None:
    try:
        return CLUSTER_MODEL.version_for(store, day, promoted_only=True)
    except dg.Failure:
        return None


def _write_version_tables(
    con: duckdb.DuckDBPyConnection, version: ModelVersion, model: Any, overrides: pl.DataFrame
) -> dict[dg.AssetKey, int]:
    """The per-version rows of the candidates, profiles and lineage tables (idempotent)."""
    from dagster_project.lib.segmentation.model import cluster_names

    keys = pl.DataFrame(
        {
            "model_name": [version.name],
            "model_version": [version.version],
            "trained_as_of": [version.as_of],
        }
    )
    candidates = keys.join(model.candidates(), how="cross")
    lineage = keys.join(
        model.lineage.with_columns(
            pl.lit(model.previous_version, dtype=pl.Utf8).alias("previous_version")
        ),
        how="cross",
    )
    profiles = keys.join(
        model.profile()
        .join(cluster_names(model, overrides), on="cluster_id", how="left")
        .select(
            "cluster_id",
            "cluster_name",
            "cluster_name_en",
            "cluster_name_zh",
            "name_source",
            pl.exclude(
                "cluster_id", "cluster_name", "cluster_name_en", "cluster_name_zh", "name_source"
            ),
        ),
        how="cross",
    ).with_columns(pl.lit(version.promoted).alias("promoted"))
    written = {}
    for key, frame in (
        (MODEL_CANDIDATES, candidates),
        (CLUSTER_PROFILES, profiles),
        (CLUSTER_LINEAGE, lineage),
    ):
        written[key] = replace_rows(con, _relation(key), frame, {"model_version": version.version})
    return written


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            CLUSTER_MODEL.asset_key,
            deps=[USER_FEATURES, SEGMENT_CATALOG],
            kinds={"scikitlearn", "polars"},
            description=(
                "KMeans segmentation model (spec models/segmentation.yml): log transforms and "
                "scaling, k by the spec's rule (stability: the largest k whose clusters all come "
                "back on bootstrap refits; silhouette, Calinski-Harabasz and Davies-Bouldin "
                "kept), ids "
                "matched to the previous promoted version, bootstrap stability gate, surrogate "
                "decision tree. Config `refit: true` fits a new version."
            ),
        ),
        dg.AssetSpec(
            MODEL_CANDIDATES,
            deps=[CLUSTER_MODEL.asset_key],
            kinds={"duckdb"},
            description=(
                "One row per model version and candidate k: silhouette (on a sample above "
                "silhouette_sample users), Calinski-Harabasz, Davies-Bouldin, smallest cluster "
                "share, whether it qualified (min_share) and which k was chosen."
            ),
        ),
        dg.AssetSpec(
            CLUSTER_PROFILES,
            deps=[CLUSTER_MODEL.asset_key],
            kinds={"duckdb"},
            description=(
                "One row per model version and cluster id: display name (override or profile), "
                "auto name, size, share, bootstrap Jaccard, surrogate recall and rules, feature "
                "means (JSON), promoted flag. Names follow models/segment_name_overrides.csv."
            ),
        ),
        dg.AssetSpec(
            CLUSTER_LINEAGE,
            deps=[CLUSTER_MODEL.asset_key],
            kinds={"duckdb"},
            description=(
                "One row per model version and lineage event against the previous promoted "
                "version: kept (matched id), new, retired, split, merged, with centroid distance "
                "and the shares of users that moved."
            ),
        ),
    ],
    name="models__segment_clusters",
    group_name="segmentation",
    **DAILY_WAREHOUSE_ASSET,
)
def segment_clusters(
    context: dg.AssetExecutionContext, config: ModelFitConfig, warehouse: WarehouseResource
):
    from dagster_project.lib.segmentation.model import (
        cluster_skip_reason,
        load_name_overrides,
        train_segment_model,
    )
    from dagster_project.lib.segmentation.spec_loader import load_segmentation_spec

    spec = load_segmentation_spec(SEGMENTATION_SPEC)
    overrides = load_name_overrides(NAME_OVERRIDES)
    store = ModelStore(warehouse.paths.model_store)
    digest = spec_hash(SEGMENTATION_SPEC)
    written: dict[dg.AssetKey, int] = dict.fromkeys(
        (MODEL_CANDIDATES, CLUSTER_PROFILES, CLUSTER_LINEAGE), 0
    )
    skipped: dict[str, str] = {}
    version = None
    with warehouse.connect() as con:
        for day in partition_days(context):
            features = features_as_of(con, day)
            too_few = cluster_skip_reason(features, spec)
            if too_few is not None:  # no fit: user_segments_daily leaves the clusters NULL
                context.log.warning(f"{day}: clusters skipped: {too_few}")
                skipped[day.isoformat()] = too_few
                continue
            previous = store.latest_as_of(CLUSTER_MODEL.name, day, None, promoted_only=True)

            def fit(features: pl.DataFrame = features, previous: Any = previous) -> Any:
                prior = store.load(previous) if previous is not None else None
                model = train_segment_model(
                    features,
                    spec,
                    previous=prior,
                    previous_version=previous.version if previous is not None else None,
                )
                return model, model.metrics()

            version, fitted_now = store.resolve(
                CLUSTER_MODEL.name,
                day,
                digest,
                config.refit,
                fit,
                gate=lambda model, _metrics: model.gate.promote,
            )
            record_model_version(con, version)
            model = _load_segment_model(store, version)
            serving = serving_version(store, day)
            for key, rows in _write_version_tables(con, version, model, overrides).items():
                written[key] = written.get(key, 0) + rows
            if serving is not None and serving.version != version.version:
                _write_version_tables(con, serving, _load_segment_model(store, serving), overrides)
    if version is None:  # every day below the minimum: nothing fitted, nothing written
        for key in (CLUSTER_MODEL.asset_key, MODEL_CANDIDATES, CLUSTER_PROFILES, CLUSTER_LINEAGE):
            yield dg.MaterializeResult(
                asset_key=key,
                metadata={
                    "clusters_skipped": dg.MetadataValue.json(skipped),
                    **({} if key == CLUSTER_MODEL.asset_key else {"dagster/row_count": 0}),
                },
            )
        return
    from dagster_project.lib.reporting.charts import k_selection_chart, markdown_image

    metrics = version.metrics
    gate = metrics.get("gate", {})
    chart = markdown_image(
        k_selection_chart(metrics.get("candidates", [])),
        "k selection",
        f"Scores by k for {version.version}; the dashed line marks the chosen k.",
    )
    yield dg.MaterializeResult(
        asset_key=CLUSTER_MODEL.asset_key,
        metadata={
            "model_version": version.version,
            "clusters_skipped": dg.MetadataValue.json(skipped),
            "trained_as_of": version.as_of.isoformat(),
            "fitted_in_this_run": fitted_now,
            "promoted": version.promoted,
            "serving_version": serving.version if serving is not None else None,
            "k": metrics.get("k"),
            "bootstrap_mean_ari": metrics.get("stability", {}).get("mean_ari"),
            "gate_reasons": dg.MetadataValue.json(gate.get("reasons", [])),
            "surrogate_fidelity": metrics.get("surrogate", {}).get("fidelity"),
            "surrogate_rules": dg.MetadataValue.md(
                "```\n" + metrics.get("surrogate", {}).get("rules_text", "") + "\n```"
            ),
            "clusters": preview(model.profile().drop("feature_means_json"), rows=30),
            **model_quality_metadata(version),
            "k_selection_chart": dg.MetadataValue.md(chart),
            "metrics": dg.MetadataValue.json(metrics),
        },
    )
    yield dg.MaterializeResult(
        asset_key=MODEL_CANDIDATES,
        metadata={
            "dagster/row_count": written[MODEL_CANDIDATES],
            "candidates": preview(model.candidates(), rows=20),
        },
    )
    yield dg.MaterializeResult(
        asset_key=CLUSTER_PROFILES,
        metadata={"dagster/row_count": written[CLUSTER_PROFILES]},
    )
    yield dg.MaterializeResult(
        asset_key=CLUSTER_LINEAGE,
        metadata={
            "dagster/row_count": written[CLUSTER_LINEAGE],
            "lineage": preview(model.lineage, rows=30),
        },
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            USER_SEGMENTS,
            deps=[USER_FEATURES, CLUSTER_MODEL.asset_key, SEGMENT_CATALOG],
            kinds={"polars", "duckdb"},
            description=(
                "One row per user per snapshot date: R/F/M scores, the R x F segment, the 8-type "
                "value tier, lifecycle stage and operating tier (bilingual), the cluster with its "
                "name, a short reason per scheme, the previous segment and since-date per "
                "scheme, and the model version that assigned the cluster."
            ),
        ),
        dg.AssetSpec(
            USER_CUSTOM_SEGMENTS,
            deps=[USER_FEATURES, SEGMENT_CATALOG],
            kinds={"polars", "duckdb"},
            description=(
                "One row per user, snapshot date and user-added map (rules.maps in "
                "models/segmentation.yml): the segment key and label. Empty when the spec adds "
                "no map."
            ),
        ),
    ],
    name="marts__user_segments_daily",
    group_name="segmentation",
    **DAILY_WAREHOUSE_ASSET,
)
def user_segments_daily(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    from dagster_project.lib.segmentation.daily import SnapshotScorer
    from dagster_project.lib.segmentation.model import (
        cluster_names,
        cluster_skip_reason,
        load_name_overrides,
    )
    from dagster_project.lib.segmentation.rules.cuts import compute_cuts
    from dagster_project.lib.segmentation.spec_loader import load_segmentation_spec

    spec = load_segmentation_spec(SEGMENTATION_SPEC)
    overrides = load_name_overrides(NAME_OVERRIDES)
    store = ModelStore(warehouse.paths.model_store)
    rules_version = f"rules-{spec_hash(SEGMENTATION_SPEC)}"
    rows = custom_rows = 0
    with warehouse.connect() as con:
        for day in partition_days(context):
            features = features_as_of(con, day)
            too_few = cluster_skip_reason(features, spec)
            scorer = SnapshotScorer(
                spec,
                compute_cuts(features, spec),
                lineage=[
                    pl.lit(day, dtype=pl.Date).alias("snapshot_date"),
                    pl.lit(rules_version).alias("rules_version"),
                    pl.lit(context.run.run_id).alias("run_id"),
                ],
                skipped=too_few,
            )
            if too_few is not None:  # segment_clusters fitted nothing: NULL clusters, and why
                context.log.warning(f"{day}: clusters skipped: {too_few}")
                version = None
            else:
                version = CLUSTER_MODEL.version_for(store, day, promoted_only=True)
                model = _load_segment_model(store, version)
                scorer = replace(
                    scorer,
                    model=model,
                    names=cluster_names(model, overrides),
                    model_version=version.version,
                )
            # what the metadata summarises, gathered batch by batch
            counts: list[pl.DataFrame] = []
            rf_cells: list[pl.DataFrame] = []
            examples = None
            with replacing(con, {"snapshot_date": day}) as write:
                for segments, custom in scorer.batches(features):
                    rows += write(_relation(USER_SEGMENTS), segments)
                    custom_rows += write(_relation(USER_CUSTOM_SEGMENTS), custom)
                    counts.append(
                        segments.group_by("cluster_id", "cluster_name", "value_tier_label").len()
                    )
                    rf_cells.append(segments.select("user_id", "r_score", "f_score"))
                    if examples is None:
                        examples = segments.select(
                            "user_id", "rfm_segment", "rfm_reason", "cluster_reason"
                        )
    from dagster_project.lib.reporting.charts import markdown_image, rf_heatmap

    counted = pl.concat(counts)
    sizes = (
        counted.filter(pl.col("cluster_id").is_not_null())
        .group_by("cluster_id", "cluster_name")
        .agg(pl.col("len").sum())
        .sort("cluster_id")
    )
    heatmap = rf_heatmap(
        pl.concat(rf_cells).join(features.select("user_id", "monetary"), on="user_id", how="left")
    )
    yield dg.MaterializeResult(
        asset_key=USER_SEGMENTS,
        metadata={
            "dagster/row_count": rows,
            "model_version": version.version if version else None,
            "clusters_skipped": too_few,
            # plain numbers, so the UI plots each cluster's size over runs
            **{f"users/cluster_{cid}": n for cid, _, n in sizes.iter_rows()},
            "rf_heatmap": dg.MetadataValue.md(
                markdown_image(
                    heatmap, "R x F heat map", f"Users and revenue per R x F cell, {day}."
                )
            ),
            "cluster_sizes": preview(sizes, rows=20),
            "value_tiers": preview(
                counted.group_by("value_tier_label").agg(pl.col("len").sum()).sort("len")
            ),
            "example_reasons": preview(examples, rows=5),
        },
    )
    yield dg.MaterializeResult(
        asset_key=USER_CUSTOM_SEGMENTS,
        metadata={
            "dagster/row_count": custom_rows,
            "maps": dg.MetadataValue.json([m.name for m in spec.rules.custom_maps]),
        },
    )
