-- One row per user: latest ingested profile per user_id, email and phone pseudonymised.
-- Materialised as a table, not a view: a view would store the salt in its definition inside
-- the warehouse file, where any reader of the file could read it.
{{ config(materialized='table') }}

with

source as (
    select * from {{ source('raw', 'users') }}
),

ranked as (
    select
        cast(user_id as varchar) as user_id,
        cast(signup_at as timestamp) as signup_at,
        trim(country) as country,
        lower(trim(channel)) as channel,
        cast(birth_year as integer) as birth_year,
        lower(trim(gender)) as gender,
        nullif(lower(trim(email)), '') as email_normalised,
        nullif(regexp_replace(phone, '[^0-9+]', '', 'g'), '') as phone_normalised,
        _ingested_at,
        row_number() over (
            partition by user_id
            order by _ingested_at desc, _source_line desc, _source_file desc
        ) as version_rank
    from source
),

final as (
    select
        user_id,
        signup_at,
        country,
        channel,
        birth_year,
        gender,
        {{ pii_hash('email_normalised') }} as email_hash,
        {{ pii_hash('phone_normalised') }} as phone_hash,
        _ingested_at
    from ranked
    where version_rank = 1
)

select * from final
