-- One row per snapshot_date, scheme and segment: the segment's KPIs over time (conversion,
-- repeat rate, 30-day churn, ARPU, revenue, the simple LTV), for every scheme of
-- segment_summary_daily. Orders count as of the snapshot (order_date <= snapshot_date); the
-- 30-day figures use the same periods and formulas as user_value_daily's simple_ltv
-- (dagster_project/lib/value/score.py). Incremental on snapshot_date (delete in pre_hook,
-- then append), also on the first build.
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='append_new_columns',
        tags=['snapshot'],
        pre_hook="{{ delete_window('snapshot_date') }}",
    )
}}

{%- set kpi_columns = [
    'is_customer', 'is_repeat_customer', 'is_active_30d', 'is_churn_base', 'is_churned',
    'revenue_30d', 'active_revenue_30d',
] %}

with

segments as (
    select * from {{ source('strata', 'user_segments_daily') }}
    where {{ window_predicate('snapshot_date') }}
),

user_values as (
    select * from {{ source('strata', 'user_value_daily') }}
    where {{ window_predicate('snapshot_date') }}
),

custom_segments as (
    select * from {{ source('strata', 'user_custom_segments_daily') }}
    where {{ window_predicate('snapshot_date') }}
),

orders as (
    select * from {{ ref('fct_orders') }}
),

numbered_purchases as (
    select
        user_id,
        order_date,
        row_number() over (
            partition by user_id
            order by order_date, order_id
        ) as purchase_number
    from orders
    where is_completed
),

purchase_dates as (
    -- a user is a customer from the first completed order on, a repeat customer from the second
    select
        user_id,
        min(order_date) as first_purchase_date,
        min(case when purchase_number = 2 then order_date end) as second_purchase_date
    from numbered_purchases
    group by user_id
),

members as (
    select
        segments.*,
        user_values.churn_risk_band,
        user_values.churn_risk_band_label
    from segments
    left join user_values
        on
            segments.user_id = user_values.user_id
            and segments.snapshot_date = user_values.snapshot_date
),

recent_orders as (
    -- completed orders in (D-30, D] and (D-60, D-30], net revenue in (D-30, D]
    select
        members.user_id,
        members.snapshot_date,
        sum(case
            when
                orders.is_completed
                and orders.order_date > {{ dbt.dateadd('day', -30, 'members.snapshot_date') }}
                then 1
            else 0
        end) as orders_30d,
        sum(case
            when
                orders.is_completed
                and orders.order_date <= {{ dbt.dateadd('day', -30, 'members.snapshot_date') }}
                then 1
            else 0
        end) as orders_prev_30d,
        sum(case
            when orders.order_date > {{ dbt.dateadd('day', -30, 'members.snapshot_date') }}
                then orders.net_amount
            else 0
        end) as revenue_30d
    from members
    inner join orders
        on
            members.user_id = orders.user_id
            and orders.order_date > {{ dbt.dateadd('day', -60, 'members.snapshot_date') }}
            and members.snapshot_date >= orders.order_date
    group by members.user_id, members.snapshot_date
),

user_kpis as (
    -- one row per member: 0/1 flags and the 30-day revenue, next to every scheme's segment
    select
        members.*,
        case
            when purchase_dates.first_purchase_date <= members.snapshot_date then 1 else 0
        end as is_customer,
        case
            when purchase_dates.second_purchase_date <= members.snapshot_date then 1 else 0
        end as is_repeat_customer,
        case when recent_orders.orders_30d > 0 then 1 else 0 end as is_active_30d,
        case when recent_orders.orders_prev_30d > 0 then 1 else 0 end as is_churn_base,
        case
            when recent_orders.orders_prev_30d > 0 and recent_orders.orders_30d = 0 then 1
            else 0
        end as is_churned,
        coalesce(recent_orders.revenue_30d, 0) as revenue_30d,
        case
            when recent_orders.orders_30d > 0 then recent_orders.revenue_30d else 0
        end as active_revenue_30d,
        1 as users
    from members
    left join purchase_dates
        on members.user_id = purchase_dates.user_id
    left join recent_orders
        on
            members.user_id = recent_orders.user_id
            and members.snapshot_date = recent_orders.snapshot_date
),

{{ segment_sums('summed', 'user_kpis', 'custom_segments', ['users'] + kpi_columns) }}

aggregated as (
    select
        snapshot_date,
        scheme,
        segment,
        segment_label,
        users,
        is_customer as customers,
        is_repeat_customer as repeat_customers,
        is_active_30d as active_customers_30d,
        is_churn_base as churn_base_customers,
        is_churned as churned_customers,
        revenue_30d,
        active_revenue_30d
    from summed
),

rates as (
    select
        *,
        cast(customers as double precision) / users as conversion_rate,
        cast(repeat_customers as double precision) / nullif(customers, 0) as repeat_rate,
        cast(churned_customers as double precision)
        / nullif(churn_base_customers, 0) as churn_rate_30d,
        cast(active_revenue_30d as double precision)
        / nullif(active_customers_30d, 0) as arpu_30d
    from aggregated
),

final as (
    select
        snapshot_date,
        cast(scheme as varchar) as scheme,
        cast(segment as varchar) as segment,
        cast(segment_label as varchar) as segment_label,
        cast(users as integer) as users,
        cast(customers as integer) as customers,
        cast(repeat_customers as integer) as repeat_customers,
        cast(active_customers_30d as integer) as active_customers_30d,
        cast(churn_base_customers as integer) as churn_base_customers,
        cast(churned_customers as integer) as churned_customers,
        cast(revenue_30d as decimal(18, 2)) as revenue_30d,
        conversion_rate,
        repeat_rate,
        churn_rate_30d,
        arpu_30d,
        cast(revenue_30d as double precision) / users as revenue_per_user_30d,
        -- ARPU / monthly churn, the churn floored as in models/value.yml (simple_ltv)
        arpu_30d
        / greatest(churn_rate_30d, {{ var('simple_ltv_churn_floor') }}) as simple_ltv
    from rates
)

select * from final
