"""Landing files -> raw.<table> (typed) and quarantine.<table> (rejected rows with reasons)."""

import dagster as dg

from dagster_project.defs.common import DAILY_WAREHOUSE_ASSET, WarehouseResource, partition_days
from dagster_project.lib.ingest import CONTRACT_TABLES, IngestError, ingest_partition

REQUIRED_SOURCES = ("orders",)


def _ingestion_asset(table: str) -> dg.AssetsDefinition:
    raw_key = dg.AssetKey(["raw", table])
    quarantine_key = dg.AssetKey(["quarantine", table])
    optional = table not in REQUIRED_SOURCES

    @dg.multi_asset(
        name=f"ingest_{table}",
        specs=[
            dg.AssetSpec(
                raw_key,
                description=f"Typed {table} rows from the landing files, one partition per day.",
                group_name="ingestion",
                kinds={"duckdb", "csv"},
            ),
            dg.AssetSpec(
                quarantine_key,
                description=f"Rejected {table} rows as they arrived, with reason, file and line.",
                group_name="ingestion",
                kinds={"duckdb"},
            ),
        ],
        **DAILY_WAREHOUSE_ASSET,
    )
    def ingest(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
        landing = warehouse.paths.landing
        days = partition_days(context)
        stats = []
        with warehouse.connect() as con:
            for day in days:
                try:
                    stats.append(ingest_partition(con, landing, table, day, context.run.run_id))
                except IngestError as exc:
                    raise dg.Failure(description=str(exc)) from exc
        landed = sum(s.rows_landed for s in stats)
        if not optional and landed == 0 and not any(s.files for s in stats):
            context.log.warning(f"no {table} files landed for {days[0]}..{days[-1]}")
        reasons: dict[str, int] = {}
        for s in stats:
            for reason, count in s.reasons.items():
                reasons[reason] = reasons.get(reason, 0) + count
        yield dg.MaterializeResult(
            asset_key=raw_key,
            metadata={
                "dagster/row_count": sum(s.rows_accepted for s in stats),
                "rows_landed": landed,
                "files": len([f for s in stats for f in s.files]),
                "days": len(days),
            },
        )
        yield dg.MaterializeResult(
            asset_key=quarantine_key,
            metadata={
                "dagster/row_count": sum(s.rows_quarantined for s in stats),
                "reasons": dg.MetadataValue.json(reasons),
            },
        )

    return ingest


ingestion_assets = [_ingestion_asset(table) for table in CONTRACT_TABLES]
