-- One row per order: latest ingested version of each order_id, enums normalised.
-- Incremental: a run decides again only the order_ids of the days it ingested (see
-- macros/incremental_staging.sql); a first build or a full refresh ranks the whole history.
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='order_id',
        on_schema_change='append_new_columns',
        post_hook="{{ delete_tombstones() }}",
    )
}}

{%- set changed_days = changed_partition_days('orders') if is_incremental() else [] %}

with

touched as (
    -- the ids to decide again (none on a full build)
    select order_id from {{ source('raw', 'orders') }}
    where {{ in_days('_partition_date', changed_days) }}
    {%- if is_incremental() %}
        union
        select order_id from {{ this }}
        where {{ on_days('ordered_at', changed_days) }}
    {%- endif %}
),

source as (
    select * from {{ source('raw', 'orders') }}
    {%- if is_incremental() %}
        where
            {{ on_or_after_first('_partition_date', changed_days) }}
            and order_id in (select touched.order_id from touched)
    {%- endif %}
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

kept as (
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
),

tombstones as (
    -- touched ids without a version left: delete+insert deletes their rows by the id
    select
        touched.order_id,
        cast(null as varchar) as user_id,
        cast(null as timestamp) as ordered_at,
        cast(null as decimal(18, 2)) as amount,
        cast(null as varchar) as currency,
        cast(null as varchar) as status,
        cast(null as varchar) as refers_to_order_id,
        cast(null as timestamp) as _ingested_at
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
