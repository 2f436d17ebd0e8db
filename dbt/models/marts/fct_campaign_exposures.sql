-- One row per campaign and exposed user (grain: campaign_id, user_id), as of the latest
-- snapshot: the arm, channel and cost of the exposure, the user's spend before it (CUPED's
-- covariate) and the outcomes after it, on completed orders (net_amount): converted and revenue
-- in the campaign window (days 1 .. campaign_window_days after the exposure day), retained_30d /
-- _60d / _90d (a completed order in the 30 days ending 30, 60, 90 days after it). An outcome is
-- null until its period has ended by the snapshot date (no partial windows). Rebuilt in full on
-- each snapshot run (tag snapshot); marts.campaign_effects aggregates it per segment.
{{
    config(
        materialized='table',
        tags=['snapshot'],
    )
}}

{%- set window_days = var('campaign_window_days') %}
{%- set pre_days = var('campaign_pre_period_days') %}

with

exposures as (
    select * from {{ ref('stg_raw__campaign_exposures') }}
),

orders as (
    select * from {{ ref('fct_orders') }}
),

latest as (
    select max(snapshot_date) as latest_snapshot_date
    from {{ source('strata', 'user_segments_daily') }}
),

exposed as (
    select
        exposures.campaign_id,
        exposures.user_id,
        exposures.arm,
        exposures.channel,
        exposures.cost,
        exposures.exposed_at,
        cast(exposures.exposed_at as date) as exposure_date,
        latest.latest_snapshot_date
    from exposures
    cross join latest
    where cast(exposures.exposed_at as date) <= latest.latest_snapshot_date
),

user_orders as (
    -- the exposed users' orders from the pre-period to 90 days after, known by the snapshot
    select
        exposed.campaign_id,
        exposed.user_id,
        orders.is_completed,
        orders.net_amount,
        {{ dbt.datediff('exposed.exposure_date', 'orders.order_date', 'day') }} as day_offset
    from exposed
    inner join orders
        on
            exposed.user_id = orders.user_id
            and exposed.latest_snapshot_date >= orders.order_date
            and cast({{ dbt.dateadd('day', '-' ~ pre_days, 'exposed.exposure_date') }} as date)
            <= orders.order_date
            and cast({{ dbt.dateadd('day', 90, 'exposed.exposure_date') }} as date)
            >= orders.order_date
),

per_user as (
    select
        campaign_id,
        user_id,
        sum(case when day_offset < 0 then net_amount else 0 end) as pre_exposure_revenue,
        max(
            case when day_offset between 1 and {{ window_days }} and is_completed then 1 else 0 end
        ) as converted,
        sum(
            case when day_offset between 1 and {{ window_days }} then net_amount else 0 end
        ) as window_revenue,
        max(case when day_offset between 1 and 30 and is_completed then 1 else 0 end)
            as active_30d,
        max(case when day_offset between 31 and 60 and is_completed then 1 else 0 end)
            as active_60d,
        max(case when day_offset between 61 and 90 and is_completed then 1 else 0 end)
            as active_90d
    from user_orders
    group by campaign_id, user_id
),

periods as (
    select
        exposed.*,
        cast({{ dbt.dateadd('day', window_days, 'exposed.exposure_date') }} as date)
            as window_end_date,
        cast({{ dbt.dateadd('day', 30, 'exposed.exposure_date') }} as date) as day_30_date,
        cast({{ dbt.dateadd('day', 60, 'exposed.exposure_date') }} as date) as day_60_date,
        cast({{ dbt.dateadd('day', 90, 'exposed.exposure_date') }} as date) as day_90_date
    from exposed
),

final as (
    select
        periods.campaign_id,
        periods.user_id,
        cast(periods.arm as varchar) as arm,
        cast(periods.channel as varchar) as channel,
        cast(periods.cost as decimal(18, 2)) as cost,
        periods.exposed_at,
        periods.exposure_date,
        periods.window_end_date,
        periods.latest_snapshot_date,
        periods.window_end_date <= periods.latest_snapshot_date as is_window_complete,
        cast(coalesce(per_user.pre_exposure_revenue, 0) as decimal(18, 2))
            as pre_exposure_revenue,
        cast(
            case
                when periods.window_end_date <= periods.latest_snapshot_date
                    then coalesce(per_user.converted, 0)
            end as integer
        ) as converted,
        cast(
            case
                when periods.window_end_date <= periods.latest_snapshot_date
                    then coalesce(per_user.window_revenue, 0)
            end as decimal(18, 2)
        ) as revenue,
        cast(
            case
                when periods.day_30_date <= periods.latest_snapshot_date
                    then coalesce(per_user.active_30d, 0)
            end as integer
        ) as retained_30d,
        cast(
            case
                when periods.day_60_date <= periods.latest_snapshot_date
                    then coalesce(per_user.active_60d, 0)
            end as integer
        ) as retained_60d,
        cast(
            case
                when periods.day_90_date <= periods.latest_snapshot_date
                    then coalesce(per_user.active_90d, 0)
            end as integer
        ) as retained_90d
    from periods
    left join per_user
        on
            periods.campaign_id = per_user.campaign_id
            and periods.user_id = per_user.user_id
)

select * from final
