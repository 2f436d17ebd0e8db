"""Versioned model assets: one factory serves the segmentation and the value model.

A model asset is partitioned by the as-of date of its training data. It fits a new version
when none was trained on data up to that day (or when `refit` is set, as the weekly refit
schedule does) and otherwise reuses the newest one; scoring assets then load the newest
version trained up to their snapshot date, so a backfill never uses a model that saw later
data. Versions live under $STRATA_HOME/models and are listed in marts.model_versions.
"""

import json
from collections.abc import Callable
from datetime import date
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
from dagster_project.lib.registry import ModelStore, ModelVersion, spec_hash
from dagster_project.lib.warehouse import read_frame

MODEL_VERSIONS_TABLE = "marts.model_versions"

# (features as of the day) -> (fitted model, metrics worth keeping with the version)
FitModel = Callable[[pl.DataFrame], tuple[Any, dict[str, Any]]]


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


def record_model_version(con: duckdb.DuckDBPyConnection, version: ModelVersion) -> None:
    """Upsert the version into marts.model_versions so BI can name the model behind a row."""
    row = pl.DataFrame(
        {
            "model_name": [version.name],
            "model_version": [version.version],
            "trained_as_of": [version.as_of],
            "spec_hash": [version.spec_hash],
            "fitted_at": [version.fitted_at],
            "metrics_json": [json.dumps(version.metrics, sort_keys=True, default=str)],
        }
    )
    con.execute("create schema if not exists marts")
    con.register("__version", row.to_arrow())
    try:
        con.execute(
            f"create table if not exists {MODEL_VERSIONS_TABLE} as select * from __version limit 0"
        )
        con.execute(
            f"delete from {MODEL_VERSIONS_TABLE} where model_version = ?", [version.version]
        )
        con.execute(f"insert into {MODEL_VERSIONS_TABLE} by name select * from __version")
    finally:
        con.unregister("__version")


class VersionedModel:
    """A model's name, spec file and asset key, shared by its fitting and scoring assets."""

    def __init__(self, name: str, spec_path: Path) -> None:
        self.name = name
        self.spec_path = spec_path
        self.asset_key = dg.AssetKey(["models", name])

    def version_for(self, store: ModelStore, day: date) -> ModelVersion:
        version = store.latest_as_of(self.name, day, spec_hash(self.spec_path))
        if version is None:
            raise dg.Failure(
                f"no {self.name} model trained on data up to {day}: materialise "
                f"{self.asset_key.to_user_string()} for this partition first"
            )
        return version

    def build_asset(
        self, fit: FitModel, group_name: str, kinds: set[str], description: str
    ) -> dg.AssetsDefinition:
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
                    version, fitted_now = store.resolve(
                        self.name, day, digest, config.refit, lambda f=features: fit(f)
                    )
                    record_model_version(con, version)
            return dg.MaterializeResult(
                metadata={
                    "model_version": version.version,
                    "trained_as_of": version.as_of.isoformat(),
                    "fitted_in_this_run": fitted_now,
                    "metrics": dg.MetadataValue.json(version.metrics),
                }
            )

        return model_asset
