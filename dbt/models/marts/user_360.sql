-- One row per user (grain: user_id) as of the latest snapshot: the segment of every scheme with
-- its label and reason, the previous segment and since-date from user_segment_history's current
-- spells (right after backfills too), the cluster, value and churn scores, and
-- the playbook's most urgent action among the user's segments (lowest priority number; ties go
-- to rfm_segment, value_tier, lifecycle_stage, ops_tier in that order). The table a BI tool or a
-- campaign export reads. Rebuilt in full on each snapshot run (tag snapshot), whatever the window:
-- it always reflects the latest snapshot.
{{
    config(
        materialized='table',
        tags=['snapshot'],
    )
}}

with

-- The source is named twice, not through one CTE: DuckDB materializes a CTE that is read twice,
-- which here would copy every snapshot ever kept (70 s at 1M users and 60 snapshots, not 3 s).
latest as (
    select max(snapshot_date) as snapshot_date
    from {{ source('strata', 'user_segments_daily') }}
),

segments as (
    select user_segments.*
    from {{ source('strata', 'user_segments_daily') }} as user_segments
    inner join latest on user_segments.snapshot_date = latest.snapshot_date
),

user_values as (
    select user_values.*
    from {{ source('strata', 'user_value_daily') }} as user_values
    inner join latest on user_values.snapshot_date = latest.snapshot_date
),

playbook as (
    select * from {{ ref('segment_playbook') }}
),

current_spells as (
    select * from {{ ref('user_segment_history') }}
    where is_current
),

spells as (
    -- one row per user: the previous segment and since-date of every scheme
    select
        user_id,
        max(case when scheme = 'rfm_segment' then previous_segment end) as previous_rfm_segment,
        max(case when scheme = 'rfm_segment' then valid_from end) as rfm_segment_since,
        max(case when scheme = 'value_tier' then previous_segment end) as previous_value_tier,
        max(case when scheme = 'value_tier' then valid_from end) as value_tier_since,
        max(case when scheme = 'lifecycle_stage' then previous_segment end)
            as previous_lifecycle_stage,
        max(case when scheme = 'lifecycle_stage' then valid_from end) as lifecycle_stage_since,
        max(case when scheme = 'ops_tier' then previous_segment end) as previous_ops_tier,
        max(case when scheme = 'ops_tier' then valid_from end) as ops_tier_since,
        max(case when scheme = 'cluster' then previous_segment end) as previous_cluster,
        max(case when scheme = 'cluster' then valid_from end) as cluster_since
    from current_spells
    group by user_id
),

{%- set scheme_columns = segment_schemes('segments') | map(attribute='segment_column') | list %}

combinations as (
    -- the action depends only on the user's segments: ranked once per distinct combination
    -- (a few thousand), on one user holding it, instead of once per user (labels: unused)
    select
        {%- for scheme in segment_schemes('segments') %}
            {{ scheme["segment_column"] }},
            min({{ scheme["label_column"] }}) as {{ scheme["label_column"] }},
        {%- endfor %}
        min(user_id) as user_id,
        snapshot_date
    from segments
    group by snapshot_date, {{ scheme_columns | join(', ') }}
),

memberships as (
    {{ segment_memberships('combinations') }}
),

ranked_actions as (
    select
        memberships.user_id,
        playbook.scheme,
        playbook.segment,
        playbook.playbook,
        playbook.goal,
        playbook.recommended_actions,
        playbook.channel,
        playbook.priority,
        row_number() over (
            partition by memberships.user_id
            order by
                playbook.priority,
                case playbook.scheme
                    when 'rfm_segment' then 1
                    when 'value_tier' then 2
                    when 'lifecycle_stage' then 3
                    else 4
                end
        ) as action_rank
    from memberships
    inner join playbook
        on
            memberships.scheme = playbook.scheme
            and memberships.segment = playbook.segment
),

combination_actions as (
    select * from ranked_actions
    where action_rank = 1
),

actions as (
    select
        segments.user_id,
        combination_actions.scheme,
        combination_actions.segment,
        combination_actions.playbook,
        combination_actions.goal,
        combination_actions.recommended_actions,
        combination_actions.channel,
        combination_actions.priority
    from segments
    inner join combinations
        on {{ null_safe_match('segments', 'combinations', scheme_columns) }}
    inner join combination_actions
        on combinations.user_id = combination_actions.user_id
),

final as (
    select
        segments.user_id,
        segments.snapshot_date as latest_snapshot_date,
        cast(segments.r_score as integer) as r_score,
        cast(segments.f_score as integer) as f_score,
        cast(segments.m_score as integer) as m_score,
        cast(segments.rfm_segment as varchar) as rfm_segment,
        cast(segments.rfm_segment_label as varchar) as rfm_segment_label,
        cast(segments.rfm_reason as varchar) as rfm_reason,
        cast(spells.previous_rfm_segment as varchar) as previous_rfm_segment,
        spells.rfm_segment_since,
        cast(segments.value_tier as varchar) as value_tier,
        cast(segments.value_tier_label as varchar) as value_tier_label,
        cast(segments.value_tier_reason as varchar) as value_tier_reason,
        cast(spells.previous_value_tier as varchar) as previous_value_tier,
        spells.value_tier_since,
        cast(segments.lifecycle_stage as varchar) as lifecycle_stage,
        cast(segments.lifecycle_label as varchar) as lifecycle_label,
        cast(segments.lifecycle_reason as varchar) as lifecycle_reason,
        cast(spells.previous_lifecycle_stage as varchar) as previous_lifecycle_stage,
        spells.lifecycle_stage_since,
        cast(segments.ops_tier as varchar) as ops_tier,
        cast(segments.ops_tier_label as varchar) as ops_tier_label,
        cast(segments.ops_tier_reason as varchar) as ops_tier_reason,
        cast(spells.previous_ops_tier as varchar) as previous_ops_tier,
        spells.ops_tier_since,
        cast(segments.cluster_id as integer) as cluster_id,
        cast(segments.cluster_name as varchar) as cluster_name,
        cast(segments.cluster_reason as varchar) as cluster_reason,
        cast(spells.previous_cluster as integer) as previous_cluster_id,
        spells.cluster_since as cluster_id_since,
        cast(user_values.p_alive as double precision) as p_alive,
        cast(user_values.expected_orders_90d as double precision) as expected_orders_90d,
        cast(user_values.expected_order_value as double precision) as expected_order_value,
        cast(user_values.clv_12m as double precision) as clv_12m,
        cast(user_values.churn_risk as double precision) as churn_risk,
        cast(user_values.churn_risk_band as varchar) as churn_risk_band,
        cast(user_values.churn_risk_band_label as varchar) as churn_risk_band_label,
        cast(user_values.simple_ltv as double precision) as simple_ltv,
        actions.playbook as next_playbook,
        actions.recommended_actions as next_actions,
        actions.goal as next_goal,
        actions.channel as next_channel,
        actions.priority as next_priority,
        actions.scheme as next_action_scheme,
        actions.segment as next_action_segment,
        cast(segments.model_version as varchar) as segment_model_version,
        cast(user_values.model_version as varchar) as value_model_version
    from segments
    left join user_values
        on segments.user_id = user_values.user_id
    left join actions
        on segments.user_id = actions.user_id
    left join spells
        on segments.user_id = spells.user_id
)

select * from final
