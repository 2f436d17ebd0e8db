"""Checks on marts.campaign_effects: its contract, and that each scheme splits each campaign's
users exactly as the pooled row counts them."""

import dagster as dg

from dagster_project.defs.common import WarehouseResource
from dagster_project.defs.evaluation.assets import CAMPAIGN_EFFECTS


@dg.asset_check(asset=CAMPAIGN_EFFECTS, blocking=True)
def campaign_effects_match_their_contract(
    warehouse: WarehouseResource,
) -> dg.AssetCheckResult:
    """The columns and types are the contract's (lib/evaluation/campaigns.py), in order."""
    from dagster_project.lib.evaluation.campaigns import contract_violations

    with warehouse.connect() as con:
        columns = con.execute(
            "select column_name, data_type from information_schema.columns "
            "where table_schema = 'marts' and table_name = 'campaign_effects' "
            "order by ordinal_position"
        ).fetchall()
    problems = contract_violations(columns)
    return dg.AssetCheckResult(
        passed=not problems, metadata={"problems": dg.MetadataValue.json(problems)}
    )


@dg.asset_check(asset=CAMPAIGN_EFFECTS, blocking=True)
def campaign_effects_segments_add_up_to_the_campaign(
    warehouse: WarehouseResource,
) -> dg.AssetCheckResult:
    """Per campaign, metric and scheme, the segments' users per arm sum to the pooled row's."""
    with warehouse.connect() as con:
        rows = con.execute(
            """
            with pooled as (
                select campaign_id, metric, treatment_users, control_users
                from marts.campaign_effects where scheme = 'all'
            ),
            per_scheme as (
                select campaign_id, metric, scheme,
                    sum(treatment_users) as treatment_users, sum(control_users) as control_users
                from marts.campaign_effects where scheme <> 'all'
                group by campaign_id, metric, scheme
            )
            select per_scheme.campaign_id, per_scheme.metric, per_scheme.scheme
            from per_scheme
            inner join pooled
                on per_scheme.campaign_id = pooled.campaign_id
                and per_scheme.metric = pooled.metric
            where per_scheme.treatment_users <> pooled.treatment_users
                or per_scheme.control_users <> pooled.control_users
            """
        ).fetchall()
    return dg.AssetCheckResult(
        passed=not rows,
        metadata={"mismatches": dg.MetadataValue.json([list(map(str, r)) for r in rows[:20]])},
    )
