"""Versioned model assets: one factory serves the segmentation and the value model.

A model asset is partitioned by the as-of date of its training data. It fits a new version
when none was trained on data up to that day (or when `refit` is set, as the weekly refit
schedule does) and otherwise reuses the newest one; scoring assets then load the newest
version trained up to their snapshot date, so a backfill never uses a model that saw later
data. Versions live under $STRATA_HOME/models and are listed in marts.model_versions.
"""

import json
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import polars as pl

from dagster_project.defs.common import (
    DAILY_WAREHOUSE_ASSET,
    WarehouseResource,
    partition_days,
)
from dagster_project.defs.features.assets import USER_FEATURES
from dagster_project.lib.core.warehouse import read_frame, replace_rows
from dagster_project.lib.model_store.quality import (
    failed_quality,
    quality_frame,
    quality_metadata,
    stored_quality,
)
from dagster_project.lib.model_store.store import ModelStore, ModelVersion, spec_hash

MODEL_VERSIONS_TABLE = "marts.model_versions"
MODEL_QUALITY_TABLE = "marts.model_quality"

# (features as of the day) -> (fitted model, metrics worth keeping with the version)
FitModel = Callable[[pl.DataFrame], tuple[Any, dict[str, Any]]]
# (days back) -> features as of the day minus that many days; for models that choose between
# candidates on an internal holdout. Never reads past the day (point-in-time).
FeatureHistory = Callable[[int], pl.DataFrame]
FitModelWithHistory = Callable[[pl.DataFrame, FeatureHistory], tuple[Any, dict[str, Any]]]


class ModelFitConfig(dg.Config):
    refit: bool = False
    """Fit a new version on this partition's data even if a version trained up to it exists
    (the weekly refit schedule sets this)."""


def features_as_of(con: duckdb.DuckDBPyConnection, day: date) -> pl.DataFrame:
    return read_frame(
        con,
        "select * from features.user_features where as_of_date = $day order by user_id",
        {"day": day},
    )


def feature_history(con: duckdb.DuckDBPyConnection, day: date) -> FeatureHistory:
    """Features as of earlier days, recomputed from the marts with data up to each of them."""
    from dagster_project.lib.features.user_features import compute_user_features

    def as_of(days_back: int) -> pl.DataFrame:
        if days_back < 0:
            raise ValueError("feature history cannot look past the as-of day")
        return compute_user_features(con, day - timedelta(days=days_back))

    return as_of


def record_model_version(con: duckdb.DuckDBPyConnection, version: ModelVersion) -> None:
    """Upsert the version into marts.model_versions (so BI can name the model behind a row) and
    its figures into marts.model_quality."""
    row = pl.DataFrame(
        {
            "model_name": [version.name],
            "model_version": [version.version],
            "trained_as_of": [version.as_of],
            "spec_hash": [version.spec_hash],
            "fitted_at": [version.fitted_at],
            "metrics_json": [json.dumps(version.metrics, sort_keys=True, default=str)],
            "promoted": [version.promoted],
        }
    )
    key = {"model_version": version.version}
    replace_rows(con, MODEL_VERSIONS_TABLE, row, key)
    quality = quality_frame(
        version.name, version.version, version.as_of, stored_quality(version.metrics)
    )
    replace_rows(con, MODEL_QUALITY_TABLE, quality, key)


def model_quality_metadata(version: ModelVersion) -> dict[str, Any]:
    """The version's quality figures as numeric asset metadata (Dagster plots them over
    materialisations) plus the failed ones in words."""
    quality = stored_quality(version.metrics)
    return {
        **quality_metadata(quality),
        "quality_failed": dg.MetadataValue.json(failed_quality(quality)),
    }


class VersionedModel:
    """A model's name, spec file and asset key, shared by its fitting and scoring assets."""

    def __init__(self, name: str, spec_path: Path) -> None:
        self.name = name
        self.spec_path = spec_path
        self.asset_key = dg.AssetKey(["models", name])

    def version_for(
        self, store: ModelStore, day: date, promoted_only: bool = False
    ) -> ModelVersion:
        """The version that scores `day`: the newest trained on data up to it.

        With `promoted_only` (models behind a promotion gate), refused candidates are skipped
        and, when no promoted version of the current spec exists yet, the newest promoted
        version of an earlier spec keeps scoring: a refused refit never stops daily scoring.
        """
        version = store.latest_as_of(
            self.name, day, spec_hash(self.spec_path), promoted_only=promoted_only
        )
        if version is None and promoted_only:
            version = store.latest_as_of(self.name, day, None, promoted_only=True)
        if version is None:
            what = "promoted " if promoted_only else ""
            raise dg.Failure(
                f"no {what}{self.name} model trained on data up to {day}: materialise "
                f"{self.asset_key.to_user_string()} for this partition first"
            )
        return version

    def build_asset(
        self,
        fit: FitModel | FitModelWithHistory,
        group_name: str,
        kinds: set[str],
        description: str,
        with_history: bool = False,
    ) -> dg.AssetsDefinition:
        """``with_history``: ``fit`` also gets a :data:`FeatureHistory` for its day."""

        @dg.asset(
            key=self.asset_key,
            deps=[USER_FEATURES],
            group_name=group_name,
            kinds=kinds,
            description=description,
            **DAILY_WAREHOUSE_ASSET,
        )
        def model_asset(
            context: dg.AssetExecutionContext, config: ModelFitConfig, warehouse: WarehouseResource
        ) -> dg.MaterializeResult:
            store = ModelStore(warehouse.paths.model_store)
            digest = spec_hash(self.spec_path)
            with warehouse.connect() as con:
                for day in partition_days(context):
                    features = features_as_of(con, day)

                    def fit_now(f: pl.DataFrame = features, d: date = day) -> Any:
                        if with_history:
                            return fit(f, feature_history(con, d))
                        return fit(f)

                    version, fitted_now = store.resolve(
                        self.name, day, digest, config.refit, fit_now
                    )
                    record_model_version(con, version)
            return dg.MaterializeResult(
                metadata={
                    "model_version": version.version,
                    "trained_as_of": version.as_of.isoformat(),
                    "fitted_in_this_run": fitted_now,
                    **model_quality_metadata(version),
                    "metrics": dg.MetadataValue.json(version.metrics),
                }
            )

        return model_asset
