-- One row per order: latest ingested version of each order_id, enums normalised.
with

source as (
    select * from {{ source('raw', 'orders') }}
),

ranked as (
    select
        cast(order_id as varchar) as order_id,
        cast(user_id as varchar) as user_id,
        cast(ordered_at as timestamp) as ordered_at,
        cast(amount as decimal(18, 2)) as amount,
        upper(trim(currency)) as currency,
        lower(trim(status)) as status,
        nullif(trim(refers_to_order_id), '') as refers_to_order_id,
        _ingested_at,
        row_number() over (
            partition by order_id
            order by _ingested_at desc, _source_line desc, _source_file desc
        ) as version_rank
    from source
),

final as (
    select
        order_id,
        user_id,
        ordered_at,
        amount,
        currency,
        status,
        refers_to_order_id,
        _ingested_at
    from ranked
    where version_rank = 1
)

select * from final
