"""dbt models as Dagster assets, split by how they are partitioned.

- `dbt_unpartitioned`: staging views and dimensions, rebuilt whole each run.
- `dbt_daily`: incremental facts (tag `daily`); the run's partition window reaches them as
  `--vars`, and a backfill of any length is one dbt call (single-run backfill policy).
- `dbt_snapshot`: marts built on top of the Python segment/value tables (tag `snapshot`).
"""

import json

import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets

from dagster_project.defs.common import WAREHOUSE_POOL, daily_partitions, partition_days, single_run
from dagster_project.defs.transform.project import StrataDbtTranslator, manifest_path

PARTITIONED_TAGS = "tag:daily tag:snapshot"


class DbtRunConfig(dg.Config):
    full_refresh: bool = False
    """Rebuild incremental models from scratch (only the selected window is reloaded)."""


def _window_vars(context: dg.AssetExecutionContext) -> str:
    days = partition_days(context)
    return json.dumps({"min_date": days[0].isoformat(), "max_date": (days[-1]).isoformat()})


def _build_args(config: DbtRunConfig, *extra: str) -> list[str]:
    args = ["build", *extra]
    if config.full_refresh:
        args.append("--full-refresh")
    return args


@dbt_assets(
    manifest=manifest_path(),
    exclude=PARTITIONED_TAGS,
    name="dbt_unpartitioned",
    dagster_dbt_translator=StrataDbtTranslator(),
    pool=WAREHOUSE_POOL,
)
def dbt_unpartitioned(context: dg.AssetExecutionContext, dbt: DbtCliResource, config: DbtRunConfig):
    yield from dbt.cli(_build_args(config), context=context).stream()


def _windowed_dbt_assets(tag: str) -> dg.AssetsDefinition:
    @dbt_assets(
        manifest=manifest_path(),
        select=f"tag:{tag}",
        name=f"dbt_{tag}",
        partitions_def=daily_partitions,
        backfill_policy=single_run,
        dagster_dbt_translator=StrataDbtTranslator(),
        pool=WAREHOUSE_POOL,
    )
    def windowed(context: dg.AssetExecutionContext, dbt: DbtCliResource, config: DbtRunConfig):
        args = _build_args(config, "--vars", _window_vars(context))
        yield from dbt.cli(args, context=context).stream()

    return windowed


dbt_daily = _windowed_dbt_assets("daily")
dbt_snapshot = _windowed_dbt_assets("snapshot")
