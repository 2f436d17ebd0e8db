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

summed as (
    -- what the segments add up, with the values as exact decimals: a sum of doubles depends on
    -- the order it is added in, which DuckDB's threads change from run to run, and a rerun
    -- must give the same bytes. A score that is not a finite number counts as not scored.
    select
        *,
        case when clv_12m_sum is not null then 1 else 0 end as clv_12m_users,
        case when p_alive_sum is not null then 1 else 0 end as p_alive_users
    from (
        select
            *,
            1 as users,
            {{ exact('clv_12m', 10) }} as clv_12m_sum,
            {{ exact('p_alive', 18) }} as p_alive_sum
        from members
    ) as exact_values
),

day_totals as (
    select
        snapshot_date,
        count(*) as day_users,
        sum(clv_12m_sum) as day_clv_12m
    from summed
    group by snapshot_date
),

{{ segment_sums(
    'aggregated', 'summed', 'custom_segments',
    ['users', 'is_customer', 'clv_12m_sum', 'clv_12m_users', 'p_alive_sum', 'p_alive_users']
) }}

final as (
    select
        aggregated.snapshot_date,
        cast(aggregated.scheme as varchar) as scheme,
        cast(aggregated.segment as varchar) as segment,
        cast(aggregated.segment_label as varchar) as segment_label,
        cast(aggregated.users as integer) as users,
        cast(aggregated.users as double precision) / day_totals.day_users as share,
        cast(aggregated.is_customer as integer) as customers,
        cast(aggregated.clv_12m_sum as double precision) as total_clv_12m,
        cast(aggregated.clv_12m_sum as double precision)
        / nullif(aggregated.clv_12m_users, 0) as mean_clv_12m,
        cast(aggregated.p_alive_sum as double precision)
        / nullif(aggregated.p_alive_users, 0) as mean_p_alive,
        -- the segment's share of the day's total 12-month CLV (null when that total is 0)
        cast(aggregated.clv_12m_sum as double precision)
        / nullif(cast(day_totals.day_clv_12m as double precision), 0) as clv_12m_share
    from aggregated
    inner join day_totals
        on aggregated.snapshot_date = day_totals.snapshot_date
)

select * from final
