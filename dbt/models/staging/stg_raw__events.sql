-- One row per event: latest ingested version of each event_id, event_type normalised.
-- Incremental: a run decides again only the event_ids of the days it ingested (see
-- macros/incremental_staging.sql); a first build or a full refresh ranks the whole history.
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='event_id',
        on_schema_change='fail',
        post_hook="{{ delete_tombstones() }}",
    )
}}

{%- set changed_days = changed_partition_days('events') if is_incremental() else [] %}

with

touched as (
    -- the ids to decide again (none on a full build)
    select event_id from {{ source('raw', 'events') }}
    where {{ in_days('_partition_date', changed_days) }}
    {%- if is_incremental() %}
        union
        select event_id from {{ this }}
        where {{ on_days('event_at', changed_days) }}
    {%- endif %}
),

source as (
    select * from {{ source('raw', 'events') }}
    {%- if is_incremental() %}
        where
            {{ on_or_after_first('_partition_date', changed_days) }}
            and event_id in (select touched.event_id from touched)
    {%- endif %}
),

ranked as (
    select
        cast(event_id as varchar) as event_id,
        cast(user_id as varchar) as user_id,
        cast(session_id as varchar) as session_id,
        cast(event_at as timestamp) as event_at,
        lower(trim(event_type)) as event_type,
        _ingested_at,
        row_number() over (
            partition by event_id
            order by _ingested_at desc, _source_line desc, _source_file desc
        ) as version_rank
    from source
),

kept as (
    select
        event_id,
        user_id,
        session_id,
        event_type,
        event_at,
        _ingested_at
    from ranked
    where version_rank = 1
),

tombstones as (
    -- touched ids without a version left: delete+insert deletes their rows by the id
    select
        touched.event_id,
        cast(null as varchar) as user_id,
        cast(null as varchar) as session_id,
        cast(null as varchar) as event_type,
        cast(null as timestamp) as event_at,
        cast(null as timestamp) as _ingested_at
    from touched
    where touched.event_id not in (select kept.event_id from kept)
),

final as (
    select * from kept
    {%- if is_incremental() %}
        union all
        select * from tombstones
    {%- endif %}
)

select * from final
