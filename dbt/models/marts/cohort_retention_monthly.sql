-- One row per scheme, segment, cohort month and month since the cohort (grain: scheme,
-- segment, cohort_month, month_number) as of the latest snapshot: of the users who first
-- appeared (signed up, or first ordered without a profile) in cohort_month and are in the
-- segment at the latest snapshot, how many had a completed order in each later calendar
-- month, and the net revenue per cohort user so far. Scheme 'all' holds every user. Rebuilt
-- in full on every snapshot run (tag snapshot), like user_360.
{{
    config(
        materialized='table',
        tags=['snapshot'],
    )
}}

with

{{ latest_snapshot_imports() }}

users as (
    select * from {{ ref('dim_users') }}
),

orders as (
    select orders.*
    from {{ ref('fct_orders') }} as orders
    inner join latest
        on orders.order_date <= latest.latest_snapshot_date
),

members as (
    select
        segments.*,
        user_values.churn_risk_band,
        user_values.churn_risk_band_label,
        cast({{ dbt.date_trunc('month', 'users.first_seen_at') }} as date) as cohort_month,
        1 as users
    from segments
    inner join users
        on segments.user_id = users.user_id
    left join user_values
        on segments.user_id = user_values.user_id
),

user_months as (
    -- each user's calendar months with an order: active when one was completed
    select
        user_id,
        cast({{ dbt.date_trunc('month', 'order_date') }} as date) as activity_month,
        max(case when is_completed then 1 else 0 end) as is_active,
        sum(net_amount) as revenue
    from orders
    group by user_id, cast({{ dbt.date_trunc('month', 'order_date') }} as date)
),

member_months as (
    -- each member's months with an order, next to the member's segments and cohort
    select
        members.*,
        user_months.activity_month,
        user_months.is_active as active_users,
        user_months.revenue
    from members
    inner join user_months
        on members.user_id = user_months.user_id
),

{%- set everyone = ('all', 'All users 全部用户') %}

{{ segment_sums(
    'cohorts', 'members', 'custom_segments', ['users'], by=['cohort_month'], everyone=everyone
) }}

{{ segment_sums(
    'activity', 'member_months', 'custom_segments', ['active_users', 'revenue'],
    by=['cohort_month', 'activity_month'], everyone=everyone
) }}

calendar_months as (
    select distinct cohort_month as calendar_month from cohorts_combinations
    union
    select distinct activity_month as calendar_month from user_months
),

grid as (
    -- every month from the cohort's own up to the as-of month, active users or not
    select
        cohorts.scheme,
        cohorts.segment,
        cohorts.segment_label,
        cohorts.cohort_month,
        cohorts.users as cohort_users,
        calendar_months.calendar_month as activity_month
    from cohorts
    inner join calendar_months
        on cohorts.cohort_month <= calendar_months.calendar_month
),

monthly as (
    select
        grid.scheme,
        grid.segment,
        grid.segment_label,
        grid.cohort_month,
        grid.activity_month,
        grid.cohort_users,
        coalesce(activity.active_users, 0) as active_users,
        coalesce(activity.revenue, 0) as revenue
    from grid
    left join activity
        on
            grid.scheme = activity.scheme
            and grid.segment = activity.segment
            and grid.cohort_month = activity.cohort_month
            and grid.activity_month = activity.activity_month
),

final as (
    select
        latest.latest_snapshot_date,
        cast(monthly.scheme as varchar) as scheme,
        cast(monthly.segment as varchar) as segment,
        cast(monthly.segment_label as varchar) as segment_label,
        monthly.cohort_month,
        cast(
            {{ dbt.datediff('monthly.cohort_month', 'monthly.activity_month', 'month') }}
            as integer
        ) as month_number,
        monthly.activity_month,
        cast(monthly.cohort_users as integer) as cohort_users,
        cast(monthly.active_users as integer) as active_users,
        cast(monthly.active_users as double precision) / monthly.cohort_users as retention_rate,
        cast(monthly.revenue as decimal(18, 2)) as revenue,
        cast(sum(monthly.revenue) over (
            partition by monthly.scheme, monthly.segment, monthly.cohort_month
            order by monthly.activity_month
            rows between unbounded preceding and current row
        ) as double precision) / monthly.cohort_users as cumulative_revenue_per_user,
        -- the as-of month is still running: its retention is not final
        {{ dbt.dateadd('month', 1, 'monthly.activity_month') }}
        <= {{ dbt.dateadd('day', 1, 'latest.latest_snapshot_date') }} as is_complete_month
    from monthly
    cross join latest
    where monthly.activity_month <= latest.latest_snapshot_date
)

select * from final
