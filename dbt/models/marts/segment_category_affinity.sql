-- One row per snapshot_date, scheme, segment and category bought by the segment's users
-- (grain: snapshot_date, scheme, segment, category): how many of the segment's buyers had
-- bought the category by the snapshot (lines of completed orders with order_date <=
-- snapshot_date), its share among them, the share among all buyers, the lift and the support.
-- Empty when the source has no order_items. Incremental on snapshot_date (delete in pre_hook,
-- then append), also on the first build.
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='append_new_columns',
        tags=['snapshot'],
        pre_hook="{{ delete_window('snapshot_date') }}",
    )
}}

with

segments as (
    select * from {{ source('strata', 'user_segments_daily') }}
    where {{ window_predicate('snapshot_date') }}
),

user_values as (
    select * from {{ source('strata', 'user_value_daily') }}
    where {{ window_predicate('snapshot_date') }}
),

custom_segments as (
    select * from {{ source('strata', 'user_custom_segments_daily') }}
    where {{ window_predicate('snapshot_date') }}
),

members as (
    select
        segments.*,
        user_values.churn_risk_band,
        user_values.churn_risk_band_label
    from segments
    left join user_values
        on
            segments.user_id = user_values.user_id
            and segments.snapshot_date = user_values.snapshot_date
),

first_category_purchases as (
    {{ first_category_purchases(count_orders=false) }}
),

{%- set grouped = scheme_columns() %}

user_categories as (
    -- the categories each member had bought by the snapshot, next to the member's segments
    select
        members.user_id,
        members.snapshot_date,
        {%- for column in grouped %}
            members.{{ column }},
        {%- endfor %}
        first_category_purchases.category,
        1 as buyers
    from members
    inner join first_category_purchases
        on
            members.user_id = first_category_purchases.user_id
            and members.snapshot_date >= first_category_purchases.first_bought_date
),

buyers as (
    -- the members who had bought a category by the snapshot
    select
        members.*,
        1 as buyers
    from members
    where exists (
        select 1
        from first_category_purchases
        where
            first_category_purchases.user_id = members.user_id
            and first_category_purchases.first_bought_date <= members.snapshot_date
    )
),

{{ segment_sums(
    'segment_categories', 'user_categories', 'custom_segments', ['buyers'], by=['category']
) }}

{{ segment_sums('segment_buyers', 'buyers', 'custom_segments', ['buyers']) }}

all_buyers as (
    select
        snapshot_date,
        count(*) as total_buyers
    from buyers
    group by snapshot_date
),

all_categories as (
    select
        snapshot_date,
        category,
        count(*) as all_category_buyers
    from user_categories
    group by snapshot_date, category
),

final as (
    select
        segment_categories.snapshot_date,
        cast(segment_categories.scheme as varchar) as scheme,
        cast(segment_categories.segment as varchar) as segment,
        cast(segment_categories.segment_label as varchar) as segment_label,
        cast(segment_categories.category as varchar) as category,
        cast(segment_buyers.buyers as integer) as segment_buyers,
        cast(segment_categories.buyers as integer) as category_buyers,
        cast(segment_categories.buyers as double precision)
        / segment_buyers.buyers as share,
        cast(all_categories.all_category_buyers as double precision)
        / all_buyers.total_buyers as overall_share,
        (
            cast(segment_categories.buyers as double precision)
            / segment_buyers.buyers
        ) / (
            cast(all_categories.all_category_buyers as double precision)
            / all_buyers.total_buyers
        ) as lift,
        cast(segment_categories.buyers as double precision)
        / all_buyers.total_buyers as support
    from segment_categories
    inner join segment_buyers
        on
            segment_categories.snapshot_date = segment_buyers.snapshot_date
            and segment_categories.scheme = segment_buyers.scheme
            and segment_categories.segment = segment_buyers.segment
    inner join all_buyers
        on segment_categories.snapshot_date = all_buyers.snapshot_date
    inner join all_categories
        on
            segment_categories.snapshot_date = all_categories.snapshot_date
            and segment_categories.category = all_categories.category
)

select * from final
