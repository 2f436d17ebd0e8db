-- One row per user, category and day the user bought it (grain: user_id, category,
-- order_date): how many of the user's completed orders of that day had a line of the
-- category. The category marts (segment_category_affinity, user_next_best_categories) sum
-- these up to their snapshot instead of joining every order line of the history to
-- fct_orders on every snapshot run. Incremental on order_date like fct_orders (delete in
-- pre_hook, then append). Its first build reads every day fct_orders holds, not only the
-- window: a warehouse made before this model existed gets its history at once. Empty when
-- the source has no order_items.
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

completed_orders as (
    select
        order_id,
        user_id,
        order_date
    from {{ ref('fct_orders') }}
    where
        is_completed
        {%- if is_incremental() %}
            and {{ window_predicate('order_date') }}
        {%- endif %}
),

order_categories as (
    -- an order counts once per category, however many of its lines have it
    select distinct
        order_items.order_id,
        order_items.category
    from {{ ref('stg_raw__order_items') }} as order_items
    inner join completed_orders
        on order_items.order_id = completed_orders.order_id
    where order_items.category is not null and order_items.category <> ''
),

final as (
    select
        cast(completed_orders.user_id as varchar) as user_id,
        cast(order_categories.category as varchar) as category,
        completed_orders.order_date,
        cast(count(*) as integer) as orders
    from order_categories
    inner join completed_orders
        on order_categories.order_id = completed_orders.order_id
    group by completed_orders.user_id, order_categories.category, completed_orders.order_date
)

select * from final
