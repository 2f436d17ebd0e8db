-- One row per user and recommendation rank (grain: user_id, recommendation_rank) as of the
-- latest snapshot: the top var recommendations.top_n categories the user had not bought by
-- then, scored from the user's segment (segment_category_affinity of scheme
-- var recommendations.scheme, shrunk towards all buyers) and, when the user has bought
-- before, from what buyers of the user's categories also bought (co-purchase). Only data up
-- to the snapshot is read. Empty when the source has no order_items. Rebuilt in full on every
-- snapshot run (tag snapshot), like user_360.
{{
    config(
        materialized='table',
        tags=['snapshot'],
    )
}}

{%- set settings = var('recommendations') %}

with

{{ latest_snapshot_imports() }}

affinity as (
    select affinity.*
    from {{ ref('segment_category_affinity') }} as affinity
    inner join latest
        on affinity.snapshot_date = latest.latest_snapshot_date
    where affinity.scheme = '{{ settings["scheme"] }}'
),

members as (
    select
        segments.*,
        user_values.churn_risk_band,
        user_values.churn_risk_band_label
    from segments
    left join user_values
        on segments.user_id = user_values.user_id
),

memberships as (
    {{ memberships_with_custom_maps('members', 'custom_segments') }}
),

user_segments as (
    -- every user of the snapshot with the segment of the chosen scheme (null: not covered)
    select
        members.user_id,
        memberships.segment
    from members
    left join memberships
        on
            members.user_id = memberships.user_id
            and memberships.scheme = '{{ settings["scheme"] }}'
),

category_purchases as (
    {{ first_category_purchases(as_of='(select latest_snapshot_date from latest)') }}
),

user_categories as (
    -- what each user had bought by the snapshot, weighted by ln(1 + orders with it)
    select
        user_id,
        category,
        ln(1 + orders) as weight
    from category_purchases
),

user_weights as (
    -- sums here and in history_scores are exact (decimals): in doubles they would depend on
    -- the order DuckDB's threads add the terms in, and a rerun must give the same bytes
    select
        user_id,
        sum({{ exact('weight', 12, 18) }}) as total_weight
    from user_categories
    group by user_id
),

popularity as (
    -- share of all buyers who bought each category: the fallback and the tie-break
    select
        user_categories.category,
        cast(count(*) as double precision)
        / (select count(*) from user_weights) as overall_share
    from user_categories
    group by user_categories.category
),

co_purchases as (
    -- P(bought candidate | bought category) over all buyers
    select
        bought.category,
        candidate.category as candidate_category,
        count(*) as both_buyers
    from user_categories as bought
    inner join user_categories as candidate
        on
            bought.user_id = candidate.user_id
            and bought.category <> candidate.category
    group by bought.category, candidate.category
),

category_buyers as (
    select
        category,
        count(*) as buyers
    from user_categories
    group by category
),

conditional as (
    select
        co_purchases.category,
        co_purchases.candidate_category,
        cast(co_purchases.both_buyers as double precision)
        / category_buyers.buyers as probability
    from co_purchases
    inner join category_buyers
        on co_purchases.category = category_buyers.category
),

history_scores as (
    -- the user's categories' co-purchase probabilities, averaged with the user's weights
    select
        user_categories.user_id,
        conditional.candidate_category as category,
        sum({{ exact('user_categories.weight * conditional.probability', 12, 18) }})
            as weighted_probability
    from user_categories
    inner join conditional
        on user_categories.category = conditional.category
    group by user_categories.user_id, conditional.candidate_category
),

candidates as (
    -- every user and every category the user had not bought
    select
        user_segments.user_id,
        user_segments.segment,
        popularity.category,
        popularity.overall_share
    from user_segments
    cross join popularity
    left join user_categories
        on
            user_segments.user_id = user_categories.user_id
            and popularity.category = user_categories.category
    where user_categories.user_id is null
),

segment_sizes as (
    select distinct
        segment,
        segment_buyers
    from affinity
),

scored as (
    select
        candidates.user_id,
        candidates.segment,
        candidates.category,
        candidates.overall_share,
        -- the segment's share, shrunk towards all buyers' with prior_buyers pseudo-buyers
        (
            coalesce(affinity.category_buyers, 0)
            + {{ settings["prior_buyers"] }} * candidates.overall_share
        ) / (
            coalesce(segment_sizes.segment_buyers, 0) + {{ settings["prior_buyers"] }}
        ) as segment_score,
        case
            when user_weights.user_id is not null
                then
                    cast(coalesce(history_scores.weighted_probability, 0) as double precision)
                    / cast(user_weights.total_weight as double precision)
        end as history_score
    from candidates
    left join affinity
        on
            candidates.segment = affinity.segment
            and candidates.category = affinity.category
    left join segment_sizes
        on candidates.segment = segment_sizes.segment
    left join user_weights
        on candidates.user_id = user_weights.user_id
    left join history_scores
        on
            candidates.user_id = history_scores.user_id
            and candidates.category = history_scores.category
),

blended as (
    select
        *,
        case
            when history_score is null then segment_score
            else
                {{ settings["history_weight"] }} * history_score
                + (1 - {{ settings["history_weight"] }}) * segment_score
        end as blended_score
    from scored
),

combined as (
    -- discounted by popularity: both parts favour what everyone buys, which a user who has
    -- not bought it yet is less likely to (popularity_discount 0: none, 1: the full lift)
    select
        *,
        blended_score
        / power(overall_share, {{ settings["popularity_discount"] }}) as score
    from blended
),

ranked as (
    select
        *,
        row_number() over (
            partition by user_id
            order by score desc, overall_share desc, category asc
        ) as recommendation_rank
    from combined
),

final as (
    select
        latest.latest_snapshot_date,
        cast(ranked.user_id as varchar) as user_id,
        cast(ranked.recommendation_rank as integer) as recommendation_rank,
        cast(ranked.category as varchar) as category,
        cast(ranked.score as double precision) as score,
        cast('{{ settings["scheme"] }}' as varchar) as segment_scheme,
        cast(ranked.segment as varchar) as segment,
        cast(ranked.segment_score as double precision) as segment_score,
        cast(ranked.history_score as double precision) as history_score,
        cast(ranked.overall_share as double precision) as overall_share,
        cast(case
            when ranked.history_score is null then 'segment'
            else 'segment_and_history'
        end as varchar) as basis
    from ranked
    cross join latest
    where ranked.recommendation_rank <= {{ settings["top_n"] }}
)

select * from final
