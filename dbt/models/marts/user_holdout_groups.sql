-- One row per user (grain: user_id): the user's group in the global control group. A salted
-- hash of the user id puts every user in one of 10,000 buckets; buckets below the share
-- (STRATA_HOLDOUT_SHARE x 10,000) are the holdout, kept out of every playbook so that teams can
-- measure playbooks against it from day one. Depends on the user id and the salt only: stable
-- across runs, backfills and engines. Rebuilt in full with the snapshot models (tag snapshot),
-- so the catch-up ingestion's partial dbt selection stays the staging tables and dim_users.
{{
    config(
        materialized='table',
        tags=['snapshot'],
    )
}}
{%- set share = holdout_share() %}
{%- set salt_literal = "'" ~ (holdout_salt() | replace("'", "''")) ~ ":'" %}
{%- set holdout_buckets = (share * 10000) | round | int %}

with

users as (
    select * from {{ ref('dim_users') }}
),

hashed as (
    select
        user_id,
        {{ dbt.hash(dbt.concat([salt_literal, 'user_id'])) }} as digest
    from users
),

bucketed as (
    select
        user_id,
        {{ hex_bucket('digest', 10000) }} as holdout_bucket
    from hashed
),

final as (
    select
        cast(user_id as varchar) as user_id,
        cast(
            case when holdout_bucket < {{ holdout_buckets }} then 'holdout' else 'eligible' end
            as varchar
        ) as holdout_group,
        holdout_bucket < {{ holdout_buckets }} as is_holdout,
        cast(holdout_bucket as integer) as holdout_bucket,
        cast({{ share }} as double precision) as holdout_share
    from bucketed
)

select * from final
