-- One row per event: latest ingested version of each event_id, event_type normalised.
with

source as (
    select * from {{ source('raw', 'events') }}
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

final as (
    select
        event_id,
        user_id,
        session_id,
        event_type,
        event_at,
        _ingested_at
    from ranked
    where version_rank = 1
)

select * from final
