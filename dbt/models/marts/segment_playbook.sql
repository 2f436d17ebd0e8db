-- One row per scheme and segment: what to do with the segment's users (goal, recommended
-- actions, channel, priority 1 = act first), from the committed seed seed_segment_playbook
-- (written from the segmentation literature). Covers every key of the rule schemes; cluster ids
-- are data-dependent and reach the playbook through their users' rule segments. Rebuilt in full
-- with the snapshot models (tag snapshot), which read it. Measurement (issue 12): the campaigns
-- whose exposed users held the segment at exposure (their rows in marts.campaign_effects, same
-- scheme and segment) and which of them is a running test (a control arm, and the snapshot date
-- within its exposures' days plus the campaign window).
{{
    config(
        materialized='table',
        tags=['snapshot'],
    )
}}

with

playbook as (
    select * from {{ ref('seed_segment_playbook') }}
),

campaign_exposures as (
    select * from {{ ref('fct_campaign_exposures') }}
),

exposure_segments as (
    select * from {{ ref('campaign_exposure_segments') }}
),

campaigns as (
    -- running: has a control arm, and the snapshot date is within its exposure days plus window
    select
        campaign_id,
        max(case when arm = 'control' then 1 else 0 end) = 1
        and max(latest_snapshot_date) <= cast({{ dbt.dateadd(
            'day', var('campaign_window_days'), 'max(exposure_date)') }} as date)
        and max(latest_snapshot_date) >= min(exposure_date) as is_running
    from campaign_exposures
    group by campaign_id
),

segment_campaigns as (
    select distinct
        exposure_segments.scheme,
        exposure_segments.segment,
        exposure_segments.campaign_id,
        campaigns.is_running
    from exposure_segments
    inner join campaigns on exposure_segments.campaign_id = campaigns.campaign_id
),

measurements as (
    select
        scheme,
        segment,
        {{ dbt.listagg('campaign_id', "', '", 'order by campaign_id') }} as measured_campaigns,
        max(case when is_running then 1 else 0 end) = 1 as has_running_test
    from segment_campaigns
    group by scheme, segment
),

running_tests as (
    select
        scheme,
        segment,
        {{ dbt.listagg('campaign_id', "', '", 'order by campaign_id') }} as running_tests
    from segment_campaigns
    where is_running
    group by scheme, segment
),

final as (
    select
        cast(playbook.scheme as varchar) as scheme,
        cast(playbook.segment as varchar) as segment,
        cast(playbook.playbook as varchar) as playbook,
        cast(playbook.goal as varchar) as goal,
        cast(playbook.recommended_actions as varchar) as recommended_actions,
        cast(playbook.channel as varchar) as channel,
        cast(playbook.priority as integer) as priority,
        cast(playbook.based_on as varchar) as based_on,
        coalesce(measurements.has_running_test, false) as has_running_test,
        cast(running_tests.running_tests as varchar) as running_tests,
        cast(measurements.measured_campaigns as varchar) as measured_campaigns
    from playbook
    left join measurements
        on playbook.scheme = measurements.scheme and playbook.segment = measurements.segment
    left join running_tests
        on playbook.scheme = running_tests.scheme and playbook.segment = running_tests.segment
)

select * from final
