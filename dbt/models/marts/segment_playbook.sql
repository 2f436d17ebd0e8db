-- One row per scheme and segment: what to do with the segment's users (goal, recommended
-- actions, channel, priority 1 = act first), from the committed seed seed_segment_playbook
-- (written from the segmentation literature). Covers every key of the rule schemes; cluster ids
-- are data-dependent and reach the playbook through their users' rule segments. Each row points
-- to what to offer: the segment's top categories by lift at the latest snapshot
-- (segment_category_affinity) and the per-user table; and to the measurement: the campaigns
-- whose exposed users held the segment at exposure (their rows in marts.campaign_effects, same
-- scheme and segment) and which of them is a running test (a control arm, and the snapshot date
-- within its exposures' days plus the campaign window). Rebuilt in full with the snapshot models
-- (tag snapshot), which read it.
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

affinity as (
    select * from {{ ref('segment_category_affinity') }}
),

latest_snapshot as (
    select max(snapshot_date) as snapshot_date
    from affinity
),

latest_affinity as (
    -- the segments' categories at the latest snapshot, bought by enough of their users
    select
        affinity.scheme,
        affinity.segment,
        affinity.category,
        row_number() over (
            partition by affinity.scheme, affinity.segment
            order by affinity.lift desc, affinity.category_buyers desc, affinity.category asc
        ) as lift_rank
    from affinity
    inner join latest_snapshot
        on affinity.snapshot_date = latest_snapshot.snapshot_date
    where affinity.category_buyers >= {{ var('offer_min_buyers') }}
),

offers as (
    select
        scheme,
        segment,
        {{ dbt.listagg('category', "', '", 'order by lift_rank') }} as offer_categories
    from latest_affinity
    where lift_rank <= 3
    group by scheme, segment
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
        cast(offers.offer_categories as varchar) as offer_categories,
        cast(case
            when offers.offer_categories is not null then 'marts.user_next_best_categories'
        end as varchar) as offers_per_user,
        coalesce(measurements.has_running_test, false) as has_running_test,
        cast(running_tests.running_tests as varchar) as running_tests,
        cast(measurements.measured_campaigns as varchar) as measured_campaigns
    from playbook
    left join offers
        on
            playbook.scheme = offers.scheme
            and playbook.segment = offers.segment
    left join measurements
        on playbook.scheme = measurements.scheme and playbook.segment = measurements.segment
    left join running_tests
        on playbook.scheme = running_tests.scheme and playbook.segment = running_tests.segment
)

select * from final
