{#
    The schemes of user_segments_daily as rows: one row per user, snapshot and scheme
    (user_id, snapshot_date, scheme, segment, segment_label). `relation` is a CTE or relation with
    the columns of user_segments_daily. Scheme names are the catalog's (marts.segment_catalog)
    and the playbook's; the cluster id is the segment key of scheme `cluster`.
#}
{% macro segment_memberships(relation) -%}
    select
        user_id,
        snapshot_date,
        'rfm_segment' as scheme,
        rfm_segment as segment,
        rfm_segment_label as segment_label
    from {{ relation }}
    union all
    select
        user_id,
        snapshot_date,
        'value_tier' as scheme,
        value_tier as segment,
        value_tier_label as segment_label
    from {{ relation }}
    union all
    select
        user_id,
        snapshot_date,
        'lifecycle_stage' as scheme,
        lifecycle_stage as segment,
        lifecycle_label as segment_label
    from {{ relation }}
    union all
    select
        user_id,
        snapshot_date,
        'ops_tier' as scheme,
        ops_tier as segment,
        ops_tier_label as segment_label
    from {{ relation }}
    union all
    select
        user_id,
        snapshot_date,
        'cluster' as scheme,
        cast(cluster_id as varchar) as segment,
        cluster_name as segment_label
    from {{ relation }}
{%- endmacro %}


{#
    pre_hook of user_segment_history: on an incremental run, delete the spells that start on or
    after the window start; the model rebuilds them (and every later spell) from the snapshots.
    Spells open at the snapshot before the window are rewritten through the unique key.
#}
{% macro delete_spells_from_window_start() -%}
    {%- if is_incremental() -%}
        {%- set bounds = window_bounds() -%}
        delete from {{ this }} where valid_from >= cast('{{ bounds[0] }}' as date)
    {%- endif -%}
{%- endmacro %}


{#
    pre_hook of segment_migration_daily: on an incremental run, delete the window's rows and those
    of the first snapshot after it, whose previous snapshot may be the one being (re)built.
#}
{% macro delete_migration_window() -%}
    {%- if is_incremental() -%}
        {%- set bounds = window_bounds() -%}
        delete from {{ this }}
        where
            {{ window_predicate('snapshot_date') }}
            or snapshot_date = (
                select min(snapshot_date) from {{ source('strata', 'user_segments_daily') }}
                where snapshot_date > cast('{{ bounds[1] }}' as date)
            )
    {%- endif -%}
{%- endmacro %}
