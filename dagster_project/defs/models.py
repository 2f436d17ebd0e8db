"""Model versions as Dagster-visible facts: one helper both model assets use."""

import json

import dagster as dg
import duckdb
import polars as pl

from dagster_project.lib.registry import ModelVersion

MODEL_VERSIONS_TABLE = "marts.model_versions"


class ModelFitConfig(dg.Config):
    refit: bool = False
    """Fit a new version on this partition's data even if a version trained up to it exists
    (the weekly refit schedule sets this)."""


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


def version_metadata(version: ModelVersion, fitted_now: bool) -> dict:
    return {
        "model_version": version.version,
        "trained_as_of": version.as_of.isoformat(),
        "fitted_in_this_run": fitted_now,
        "metrics": dg.MetadataValue.json(version.metrics),
    }
