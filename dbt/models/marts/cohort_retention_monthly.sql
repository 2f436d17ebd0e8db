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
        cast({{ dbt.date_trunc('month', 'users.first_seen_at') }} as date) as cohort_month
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

{%- set grouped = scheme_columns() %}

member_combinations as (
    -- members per cohort month and combination of segments (a few thousand at a million
    -- users): the schemes expand these rows, not one per member
    select
        snapshot_date,
        {{ grouped | join(', ') }},
        cohort_month,
        count(*) as users
    from members
    group by snapshot_date, {{ grouped | join(', ') }}, cohort_month
),

activity_combinations as (
    -- the same per month with an order: active members and their revenue
    select
        members.snapshot_date,
        {%- for column in grouped %}
            members.{{ column }},
        {%- endfor %}
        members.cohort_month,
        user_months.activity_month,
        sum(user_months.is_active) as active_users,
        sum(user_months.revenue) as revenue
    from members
    inner join user_months
        on members.user_id = user_months.user_id
    group by
        members.snapshot_date,
        {%- for column in grouped %}
            members.{{ column }},
        {%- endfor %}
        members.cohort_month,
        user_months.activity_month
),

custom_members as (
    select
        custom_segments.user_id,
        custom_segments.snapshot_date,
        custom_segments.scheme,
        custom_segments.segment,
        custom_segments.segment_label,
        members.cohort_month
    from custom_segments
    inner join members
        on
            custom_segments.user_id = members.user_id
            and custom_segments.snapshot_date = members.snapshot_date
),

memberships as (
    -- members per scheme, segment and cohort month; scheme 'all' holds every member
    {{ segment_memberships(
        'member_combinations', source=none, keys=['snapshot_date'],
        columns=['cohort_month', 'users']
    ) }}
    union all
    select
        snapshot_date,
        scheme,
        segment,
        segment_label,
        cohort_month,
        1 as users
    from custom_members
    union all
    select
        snapshot_date,
        'all' as scheme,
        'all' as segment,
        'All users 全部用户' as segment_label,
        cohort_month,
        users
    from member_combinations
),

activity_memberships as (
    {{ segment_memberships(
        'activity_combinations', source=none, keys=['snapshot_date'],
        columns=['cohort_month', 'activity_month', 'active_users', 'revenue']
    ) }}
    union all
    select
        custom_members.snapshot_date,
        custom_members.scheme,
        custom_members.segment,
        custom_members.segment_label,
        custom_members.cohort_month,
        user_months.activity_month,
        user_months.is_active as active_users,
        user_months.revenue
    from custom_members
    inner join user_months
        on custom_members.user_id = user_months.user_id
    union all
    select
        snapshot_date,
        'all' as scheme,
        'all' as segment,
        'All users 全部用户' as segment_label,
        cohort_month,
        activity_month,
        active_users,
        revenue
    from activity_combinations
),

cohorts as (
    select
        scheme,
        segment,
        cohort_month,
        max(segment_label) as segment_label,
        sum(users) as cohort_users
    from memberships
    where segment is not null
    group by scheme, segment, cohort_month
),

calendar_months as (
    select distinct cohort_month as calendar_month from member_combinations
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
        cohorts.cohort_users,
        calendar_months.calendar_month as activity_month
    from cohorts
    inner join calendar_months
        on cohorts.cohort_month <= calendar_months.calendar_month
),

activity as (
    select
        scheme,
        segment,
        cohort_month,
        activity_month,
        sum(active_users) as active_users,
        sum(revenue) as revenue
    from activity_memberships
    where segment is not null
    group by scheme, segment, cohort_month, activity_month
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
