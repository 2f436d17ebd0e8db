-- One row per order line (order_id, line_number). The source has no line id and an order may
-- list a product twice, so the unit of deduplication is the order: keep the lines of its
-- latest ingested file (_ingested_at, then _source_file), numbered in file order.
-- Incremental: a run decides again only the orders with lines on the days it ingested or whose
-- kept lines lay on such a day (_partition_date), over every day of raw (an order's lines may
-- be re-landed on any day); see macros/incremental_staging.sql. A table built before
-- _partition_date existed gets the column and every order decided again, once.
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='order_id',
        on_schema_change='append_new_columns',
        post_hook="{{ delete_tombstones() }}",
    )
}}

{%- set changed_days = changed_partition_days('order_items') if is_incremental() else [] %}
{%- set upgrading = is_incremental() and not relation_has_column(this, '_partition_date') %}

with

touched as (
    -- the orders to decide again (none on a full build)
    select order_id from {{ source('raw', 'order_items') }}
    where {{ 'true' if upgrading else in_days('_partition_date', changed_days) }}
    {%- if is_incremental() %}
        union
        select order_id from {{ this }}
        where {{ 'true' if upgrading else in_days('_partition_date', changed_days) }}
    {%- endif %}
),

source as (
    select * from {{ source('raw', 'order_items') }}
    {%- if is_incremental() %}
        where order_id in (select touched.order_id from touched)
    {%- endif %}
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
        _partition_date,
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
        _partition_date,
        cast(row_number() over (
            partition by order_id
            order by _source_line
        ) as integer) as line_number
    from versioned
    where version_rank = 1
),

kept as (
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
        _ingested_at,
        _partition_date
    from numbered
),

tombstones as (
    -- touched orders without lines left: delete+insert deletes their rows by the order_id
    select
        cast(null as varchar) as order_item_id,
        touched.order_id,
        cast(null as integer) as line_number,
        cast(null as varchar) as product_id,
        cast(null as varchar) as category,
        cast(null as integer) as quantity,
        cast(null as decimal(18, 2)) as unit_price,
        cast(null as timestamp) as _ingested_at,
        cast(null as date) as _partition_date
    from touched
    where touched.order_id not in (select kept.order_id from kept)
),

final as (
    select * from kept
    {%- if is_incremental() %}
        union all
        select * from tombstones
    {%- endif %}
)

select * from final
