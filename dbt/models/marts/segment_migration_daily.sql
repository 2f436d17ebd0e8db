-- One row per snapshot, scheme and (from, to) segment pair: how many users moved from each
-- segment of the previous snapshot to each segment of this one (from = to: they stayed). Users
-- new since the previous snapshot have a null from_segment. The first snapshot has no previous
-- one and no rows. Incremental on snapshot_date (tag snapshot): each run replaces the window and
-- the first snapshot after it (a backfilled day is the "from" side of the next snapshot); the
-- previous snapshot of the window's first day may lie before the window.
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='append_new_columns',
        tags=['snapshot'],
        pre_hook="{{ delete_migration_window() }}",
    )
}}

with

-- The sources are named where they are read, not through CTEs: DuckDB materializes a CTE that
-- is read twice, which here would copy every snapshot ever kept (19 s at 1M users and 60
-- snapshots, not 2 s).
snapshot_dates as (
    select distinct snapshot_date from {{ source('strata', 'user_segments_daily') }}
),

{%- set bounds = window_bounds() %}

rebuilt_dates as (
    -- the window's snapshots and the first one after it
    select snapshot_date from snapshot_dates
    where {{ window_predicate('snapshot_date') }}
    union all
    select min(snapshot_date) as snapshot_date from snapshot_dates
    where snapshot_date > cast('{{ bounds[1] }}' as date)
),

pairs as (
    -- each rebuilt snapshot with the snapshot just before it
    select
        rebuilt_dates.snapshot_date,
        max(earlier_dates.snapshot_date) as previous_snapshot_date
    from rebuilt_dates
    inner join snapshot_dates as earlier_dates
        on rebuilt_dates.snapshot_date > earlier_dates.snapshot_date
    group by rebuilt_dates.snapshot_date
),

needed_dates as (
    select snapshot_date from pairs
    union all
    select previous_snapshot_date as snapshot_date from pairs
),

needed_segments as (
    -- one IN list, not two joined by OR: 1.7 s against 2.2 s at 1M users and 60 snapshots
    select user_segments.*
    from {{ source('strata', 'user_segments_daily') }} as user_segments
    where user_segments.snapshot_date in (select needed_dates.snapshot_date from needed_dates)
),

memberships as (
    {{ segment_memberships('needed_segments') }}
    union all
    select
        user_id,
        snapshot_date,
        scheme,
        segment,
        segment_label
    from {{ source('strata', 'user_custom_segments_daily') }}
    where snapshot_date in (select needed_dates.snapshot_date from needed_dates)
),

transitions as (
    select
        pairs.snapshot_date,
        pairs.previous_snapshot_date,
        current_members.scheme,
        current_members.user_id,
        previous_members.segment as from_segment,
        previous_members.segment_label as from_segment_label,
        current_members.segment as to_segment,
        current_members.segment_label as to_segment_label
    from pairs
    inner join memberships as current_members
        on pairs.snapshot_date = current_members.snapshot_date
    left join memberships as previous_members
        on
            pairs.previous_snapshot_date = previous_members.snapshot_date
            and current_members.user_id = previous_members.user_id
            and current_members.scheme = previous_members.scheme
),

aggregated as (
    select
        snapshot_date,
        previous_snapshot_date,
        scheme,
        from_segment,
        to_segment,
        max(from_segment_label) as from_segment_label,
        max(to_segment_label) as to_segment_label,
        count(*) as users
    from transitions
    group by snapshot_date, previous_snapshot_date, scheme, from_segment, to_segment
),

final as (
    select
        snapshot_date,
        previous_snapshot_date,
        cast(scheme as varchar) as scheme,
        cast(from_segment as varchar) as from_segment,
        cast(from_segment_label as varchar) as from_segment_label,
        cast(to_segment as varchar) as to_segment,
        cast(to_segment_label as varchar) as to_segment_label,
        cast(users as integer) as users,
        cast(users as double precision) / sum(users) over (
            partition by snapshot_date, scheme, from_segment
        ) as share_of_from,
        coalesce(from_segment <> to_segment, true) as is_move
    from aggregated
)

select * from final
