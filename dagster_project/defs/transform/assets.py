"""dbt models as Dagster assets, split by how they are partitioned.

- `dbt_unpartitioned`: staging tables and dimensions, rebuilt whole each run.
- `dbt_daily`: incremental facts (tag `daily`); the run's partition window reaches them as the
  environment variables STRATA_MIN_DATE / STRATA_MAX_DATE, and a backfill of any length is one
  dbt call (single-run backfill policy).
- `dbt_snapshot`: marts built on top of the Python segment/value tables (tag `snapshot`).
"""

import os
from collections.abc import Iterator
from typing import Any

import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets

from dagster_project.defs.common import WAREHOUSE_POOL, daily_partitions, partition_days, single_run
from dagster_project.defs.transform.project import (
    StrataDbtTranslator,
    drop_old_calls,
    manifest_path,
)

PARTITIONED_TAGS = "tag:daily tag:snapshot"


class DbtRunConfig(dg.Config):
    full_refresh: bool = False
    """Rebuild incremental models from scratch (only the selected window is reloaded)."""


def _set_window(context: dg.AssetExecutionContext) -> None:
    """The partition window for the dbt process this step starts (see partition_window.sql)."""
    days = partition_days(context)
    os.environ["STRATA_MIN_DATE"] = days[0].isoformat()
    os.environ["STRATA_MAX_DATE"] = days[-1].isoformat()


def _run_dbt(
    dbt: DbtCliResource, args: list[str], context: dg.AssetExecutionContext
) -> Iterator[Any]:
    invocation = dbt.cli(args, context=context)
    yield from invocation.stream()
    drop_old_calls(invocation.target_path)


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
    yield from _run_dbt(dbt, _build_args(config), context)


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
        _set_window(context)
        yield from _run_dbt(dbt, _build_args(config), context)

    return windowed


dbt_daily = _windowed_dbt_assets("daily")
dbt_snapshot = _windowed_dbt_assets("snapshot")
