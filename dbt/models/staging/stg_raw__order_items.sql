-- One row per order line (order_id, line_number). The source has no line id and an order may
-- list a product twice, so the unit of deduplication is the order: keep the lines of its
-- latest ingested file (_ingested_at, then _source_file), numbered in file order.
with

source as (
    select * from {{ source('raw', 'order_items') }}
),

versioned as (
    select
        cast(order_id as varchar) as order_id,
        cast(product_id as varchar) as product_id,
        lower(trim(category)) as category,
        cast(quantity as integer) as quantity,
        cast(unit_price as decimal(18, 2)) as unit_price,
        _source_line,
        _ingested_at,
        dense_rank() over (
            partition by order_id
            order by _ingested_at desc, _source_file desc
        ) as version_rank
    from source
),

numbered as (
    select
        order_id,
        product_id,
        category,
        quantity,
        unit_price,
        _ingested_at,
        cast(row_number() over (
            partition by order_id
            order by _source_line
        ) as integer) as line_number
    from versioned
    where version_rank = 1
),

final as (
    select
        {{ dbt.hash(dbt.concat([
            'order_id',
            "'|'",
            dbt.safe_cast('line_number', dbt.type_string()),
        ])) }} as order_item_id,
        order_id,
        line_number,
        product_id,
        category,
        quantity,
        unit_price,
        _ingested_at
    from numbered
)

select * from final
