-- One row per snapshot_date, scheme and segment: size, share and value of each segment of
-- every scheme (var segment_schemes and the user-added maps of user_custom_segments_daily),
-- from the Python-written user_segments_daily and user_value_daily. Incremental
-- on snapshot_date: each run replaces the window [var min_date, var max_date] (delete in
-- pre_hook, then append), also on the first build.
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='append_new_columns',
        tags=['snapshot'],
        pre_hook="{{ delete_window('snapshot_date') }}",
    )
}}

{%- set member_columns = ['is_customer', 'clv_12m', 'p_alive'] %}

with

segments as (
    select * from {{ source('strata', 'user_segments_daily') }}
    where {{ window_predicate('snapshot_date') }}
),

user_values as (
    select * from {{ source('strata', 'user_value_daily') }}
    where {{ window_predicate('snapshot_date') }}
),

orders as (
    select * from {{ ref('fct_orders') }}
),

first_purchases as (
    select
        user_id,
        min(order_date) as first_purchase_date
    from orders
    where is_completed
    group by user_id
),

custom_segments as (
    select * from {{ source('strata', 'user_custom_segments_daily') }}
    where {{ window_predicate('snapshot_date') }}
),

members as (
    -- segments define the day's population; value scores and purchases are looked up
    select
        segments.*,
        user_values.churn_risk_band,
        user_values.churn_risk_band_label,
        user_values.clv_12m,
        user_values.p_alive,
        case
            when first_purchases.first_purchase_date <= segments.snapshot_date then 1
            else 0
        end as is_customer
    from segments
    left join user_values
        on
            segments.user_id = user_values.user_id
            and segments.snapshot_date = user_values.snapshot_date
    left join first_purchases
        on segments.user_id = first_purchases.user_id
),

day_totals as (
    select
        snapshot_date,
        count(*) as day_users,
        sum(clv_12m) as day_clv_12m
    from members
    group by snapshot_date
),

memberships as (
    -- unpivot: one row per user and scheme, every built-in scheme and every user-added map
    {{ memberships_with_custom_maps('members', 'custom_segments', columns=member_columns) }}
),

aggregated as (
    select
        snapshot_date,
        scheme,
        segment,
        max(segment_label) as segment_label,
        count(*) as users,
        sum(is_customer) as customers,
        sum(clv_12m) as total_clv_12m,
        avg(clv_12m) as mean_clv_12m,
        avg(p_alive) as mean_p_alive
    from memberships
    -- users a scheme does not cover (no cluster, not scored) are left out of that scheme
    where segment is not null
    group by snapshot_date, scheme, segment
),

final as (
    select
        aggregated.snapshot_date,
        cast(aggregated.scheme as varchar) as scheme,
        cast(aggregated.segment as varchar) as segment,
        cast(aggregated.segment_label as varchar) as segment_label,
        cast(aggregated.users as integer) as users,
        cast(aggregated.users as double precision) / day_totals.day_users as share,
        cast(aggregated.customers as integer) as customers,
        cast(aggregated.total_clv_12m as double precision) as total_clv_12m,
        cast(aggregated.mean_clv_12m as double precision) as mean_clv_12m,
        cast(aggregated.mean_p_alive as double precision) as mean_p_alive,
        -- the segment's share of the day's total 12-month CLV (null when that total is 0)
        cast(aggregated.total_clv_12m as double precision)
        / nullif(day_totals.day_clv_12m, 0) as clv_12m_share
    from aggregated
    inner join day_totals
        on aggregated.snapshot_date = day_totals.snapshot_date
)

select * from final
