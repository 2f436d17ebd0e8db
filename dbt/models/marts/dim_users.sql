-- One row per user: every profile in users plus users first seen in orders without a profile
-- (has_profile false). Rebuilt in full on each run (unpartitioned).
with

users as (
    select * from {{ ref('stg_raw__users') }}
),

orders as (
    select * from {{ ref('stg_raw__orders') }}
),

first_orders as (
    select
        user_id,
        min(ordered_at) as first_order_at
    from orders
    group by user_id
),

joined as (
    select
        coalesce(users.user_id, first_orders.user_id) as user_id,
        users.signup_at,
        first_orders.first_order_at,
        users.country,
        users.channel,
        users.birth_year,
        users.gender,
        users.email_hash,
        users.phone_hash,
        users.user_id is not null as has_profile
    from users
    full outer join first_orders
        on users.user_id = first_orders.user_id
),

final as (
    -- same column order as the yml contract, which the physical table follows
    select
        user_id,
        signup_at,
        case
            when first_order_at < signup_at then first_order_at
            else coalesce(signup_at, first_order_at)
        end as first_seen_at,
        country,
        channel,
        birth_year,
        gender,
        email_hash,
        phone_hash,
        first_order_at,
        has_profile
    from joined
)

select * from final
