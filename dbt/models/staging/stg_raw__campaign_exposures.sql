-- One row per campaign and user: the user's first exposure to the campaign (its arm, time,
-- channel and cost per contact), latest ingested version; arm and channel normalised.
with

source as (
    select * from {{ source('raw', 'campaign_exposures') }}
),

ranked as (
    select
        cast(campaign_id as varchar) as campaign_id,
        cast(user_id as varchar) as user_id,
        lower(trim(arm)) as arm,
        cast(exposed_at as timestamp) as exposed_at,
        lower(trim(channel)) as channel,
        cast(cost as decimal(18, 2)) as cost,
        _ingested_at,
        row_number() over (
            partition by campaign_id, user_id
            order by exposed_at asc, _ingested_at desc, _source_line desc, _source_file desc
        ) as exposure_rank
    from source
),

final as (
    select
        campaign_id,
        user_id,
        arm,
        exposed_at,
        channel,
        cost,
        _ingested_at
    from ranked
    where exposure_rank = 1
)

select * from final
