-- One row per user per active day (grain: user_id, activity_date; sparse: only days with an
-- order or an event). Incremental on activity_date: each run replaces the window
-- [var min_date, var max_date] (delete in pre_hook, then append), also on the first build.
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='append_new_columns',
        tags=['daily'],
        pre_hook="{{ delete_window('activity_date') }}",
    )
}}

with

orders as (
    select * from {{ ref('stg_raw__orders') }}
    where {{ window_predicate('cast(ordered_at as date)') }}
),

events as (
    select * from {{ ref('stg_raw__events') }}
    where {{ window_predicate('cast(event_at as date)') }}
),

order_activity as (
    select
        user_id,
        cast(ordered_at as date) as activity_date,
        count(*) as orders,
        sum(case when status = 'completed' then 1 else 0 end) as completed_orders,
        -- NULL when a completed order has no amount (a source without money), not 0
        case
            when count(case when status = 'completed' and amount is null then 1 end) > 0
                then null
            else sum(case when status = 'completed' then amount else 0 end)
        end as revenue,
        0 as sessions,
        0 as page_views,
        0 as searches,
        0 as add_to_carts,
        0 as reviews,
        0 as support_contacts,
        0 as other_events,
        0 as events_total
    from orders
    group by user_id, cast(ordered_at as date)
),

event_activity as (
    select
        user_id,
        cast(event_at as date) as activity_date,
        0 as orders,
        0 as completed_orders,
        0 as revenue,
        sum(case when event_type = 'session_start' then 1 else 0 end) as sessions,
        sum(case when event_type = 'page_view' then 1 else 0 end) as page_views,
        sum(case when event_type = 'search' then 1 else 0 end) as searches,
        sum(case when event_type = 'add_to_cart' then 1 else 0 end) as add_to_carts,
        sum(case when event_type = 'review' then 1 else 0 end) as reviews,
        sum(case when event_type = 'support_contact' then 1 else 0 end) as support_contacts,
        sum(
            case
                when event_type in (
                    'session_start', 'page_view', 'search',
                    'add_to_cart', 'review', 'support_contact'
                ) then 0
                else 1
            end
        ) as other_events,
        count(*) as events_total
    from events
    group by user_id, cast(event_at as date)
),

activity as (
    select
        user_id,
        activity_date,
        orders,
        completed_orders,
        revenue,
        sessions,
        page_views,
        searches,
        add_to_carts,
        reviews,
        support_contacts,
        other_events,
        events_total
    from order_activity
    union all
    select
        user_id,
        activity_date,
        orders,
        completed_orders,
        revenue,
        sessions,
        page_views,
        searches,
        add_to_carts,
        reviews,
        support_contacts,
        other_events,
        events_total
    from event_activity
),

final as (
    select
        user_id,
        activity_date,
        cast(sum(orders) as integer) as orders,
        cast(sum(completed_orders) as integer) as completed_orders,
        -- sum() would skip the NULL of an unpriced order day: keep it NULL
        cast(case
            when count(revenue) < count(*) then null
            else sum(revenue)
        end as decimal(18, 2)) as revenue,
        cast(sum(sessions) as integer) as sessions,
        cast(sum(page_views) as integer) as page_views,
        cast(sum(searches) as integer) as searches,
        cast(sum(add_to_carts) as integer) as add_to_carts,
        cast(sum(reviews) as integer) as reviews,
        cast(sum(support_contacts) as integer) as support_contacts,
        cast(sum(other_events) as integer) as other_events,
        cast(sum(events_total) as integer) as events_total
    from activity
    group by user_id, activity_date
)

select * from final
