-- One row per campaign, exposed user and scheme (grain: campaign_id, user_id, scheme): the
-- segment the user held on the exposure day (point in time: the user_segment_history spell
-- holding the exposure date, i.e. the latest snapshot on or before it), 'unknown' when no
-- snapshot of the user precedes the exposure, plus scheme 'all' (segment 'all') for every
-- exposed user. Every scheme is an exact partition of each campaign's exposed users. Rebuilt in
-- full on each snapshot run (tag snapshot).
{{
    config(
        materialized='table',
        tags=['snapshot'],
    )
}}

with

exposed as (
    select
        campaign_id,
        user_id,
        exposure_date
    from {{ ref('fct_campaign_exposures') }}
),

spells as (
    select * from {{ ref('user_segment_history') }}
),

schemes as (
    select distinct scheme from spells
),

at_exposure as (
    select
        exposed.campaign_id,
        exposed.user_id,
        spells.scheme,
        spells.segment,
        spells.segment_label
    from exposed
    inner join spells
        on
            exposed.user_id = spells.user_id
            and exposed.exposure_date >= spells.valid_from
            and (spells.valid_to is null or exposed.exposure_date < spells.valid_to)
),

per_scheme as (
    select
        exposed.campaign_id,
        exposed.user_id,
        schemes.scheme,
        coalesce(at_exposure.segment, 'unknown') as segment,
        coalesce(at_exposure.segment_label, 'no snapshot on or before the exposure day')
            as segment_label
    from exposed
    cross join schemes
    left join at_exposure
        on
            exposed.campaign_id = at_exposure.campaign_id
            and exposed.user_id = at_exposure.user_id
            and schemes.scheme = at_exposure.scheme
),

everyone as (
    select
        campaign_id,
        user_id,
        'all' as scheme,
        'all' as segment,
        'all exposed users' as segment_label
    from exposed
),

memberships as (
    select * from per_scheme
    union all
    select * from everyone
),

final as (
    select
        cast(campaign_id as varchar) as campaign_id,
        cast(user_id as varchar) as user_id,
        cast(scheme as varchar) as scheme,
        cast(segment as varchar) as segment,
        cast(segment_label as varchar) as segment_label
    from memberships
)

select * from final
