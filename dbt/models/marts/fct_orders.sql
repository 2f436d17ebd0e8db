-- One row per order (grain: order_id), incremental on order_date: each run replaces the window
-- [var min_date, var max_date] (delete in pre_hook, then append), also on the first build.
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='append_new_columns',
        tags=['daily'],
        pre_hook="{{ delete_window('order_date') }}",
    )
}}

with

orders as (
    select * from {{ ref('stg_raw__orders') }}
    where {{ window_predicate('cast(ordered_at as date)') }}
),

order_items as (
    select * from {{ ref('stg_raw__order_items') }}
),

order_lines as (
    select
        order_items.order_id,
        sum(order_items.quantity) as item_count,
        count(*) as line_count
    from order_items
    inner join orders
        on order_items.order_id = orders.order_id
    group by order_items.order_id
),

final as (
    -- same column order as the yml contract, which the physical table follows
    select
        orders.order_id,
        orders.user_id,
        cast(orders.ordered_at as date) as order_date,
        orders.ordered_at,
        cast(orders.amount as decimal(18, 2)) as amount,
        orders.currency,
        orders.status,
        coalesce(orders.status = 'completed', false) as is_completed,
        cast(coalesce(order_lines.item_count, 0) as integer) as item_count,
        cast(coalesce(order_lines.line_count, 0) as integer) as line_count,
        coalesce(orders.status = 'returned', false) as is_return,
        -- what the order adds to the user's revenue: a return's money given back is subtracted
        cast(case
            when orders.status = 'completed' then orders.amount
            when orders.status = 'returned' then -orders.amount
            else 0
        end as decimal(18, 2)) as net_amount,
        orders.refers_to_order_id
    from orders
    left join order_lines
        on orders.order_id = order_lines.order_id
)

select * from final
