"""Landing files -> raw.<table> (typed) and quarantine.<table> (rejected rows with reasons)."""

import dagster as dg

from dagster_project.defs.common import (
    DAILY_WAREHOUSE_ASSET,
    PROGRESS_PREFIX,
    WarehouseResource,
    partition_days,
)
from dagster_project.lib.ingestion.contract import CONTRACT_TABLES, PARENTS, IngestError
from dagster_project.lib.ingestion.ingest import ingest_partitions
from dagster_project.lib.quality.run_log import record_ingestion

REQUIRED_SOURCES = ("orders",)


def _ingestion_asset(table: str) -> dg.AssetsDefinition:
    raw_key = dg.AssetKey(["raw", table])
    quarantine_key = dg.AssetKey(["quarantine", table])
    optional = table not in REQUIRED_SOURCES
    parent = PARENTS.get(table)
    # Orphans are judged against the parent rows already accepted: parents ingest first.
    deps = [dg.AssetKey(["raw", parent.parent])] if parent else []

    @dg.multi_asset(
        name=f"ingest_{table}",
        specs=[
            dg.AssetSpec(
                raw_key,
                deps=deps,
                description=f"Typed {table} rows from the landing files, one partition per day.",
                group_name="ingestion",
                kinds={"duckdb", "csv"},
            ),
            dg.AssetSpec(
                quarantine_key,
                deps=deps,
                description=(
                    f"Rejected {table} rows as they arrived, with reason, kind, source file "
                    "and line."
                ),
                group_name="ingestion",
                kinds={"duckdb"},
            ),
        ],
        **DAILY_WAREHOUSE_ASSET,
    )
    def ingest(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
        landing = warehouse.paths.landing
        days = partition_days(context)
        with warehouse.connect() as con:
            try:
                stats = ingest_partitions(
                    con,
                    landing,
                    table,
                    days,
                    context.run.run_id,
                    on_progress=lambda done, total: context.log.info(
                        f"{PROGRESS_PREFIX}{table} {done} of {total} days"
                    ),
                )
            except IngestError as exc:
                raise dg.Failure(description=str(exc)) from exc
            record_ingestion(con, context.run.run_id, stats)
        landed = sum(s.rows_landed for s in stats)
        if not optional and landed == 0 and not any(s.files for s in stats):
            context.log.warning(f"no {table} files landed for {days[0]}..{days[-1]}")
        kinds: dict[str, int] = {}
        reasons: dict[str, int] = {}
        for s in stats:
            for kind, count in s.kinds.items():
                kinds[kind] = kinds.get(kind, 0) + count
            for reason, count in s.reasons.items():
                reasons[reason] = reasons.get(reason, 0) + count
        worst = max(stats, key=lambda s: s.reject_share)
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
                "kinds": dg.MetadataValue.json(kinds),
                # orders and events without a user id: kept, but not counted as rejects
                "guest_rows": sum(s.guest_rows for s in stats),
                # the most frequent reasons only: unparseable values make many distinct ones
                "reasons": dg.MetadataValue.json(
                    dict(sorted(reasons.items(), key=lambda item: -item[1])[:20])
                ),
                "worst_day": f"{worst.partition_date} ({worst.reject_share:.1%} rejected)",
                # plain numbers, so the UI plots them over runs
                "reject_share_max": worst.reject_share,
                "guest_share": sum(s.guest_rows for s in stats) / landed if landed else 0.0,
            },
        )

    return ingest


ingestion_assets = [_ingestion_asset(table) for table in CONTRACT_TABLES]
