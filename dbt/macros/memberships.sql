{#
    Every membership of the day's users: one row per user, snapshot and scheme (user_id,
    snapshot_date, scheme, segment, segment_label, then `columns`), for every built-in scheme
    (segment_memberships over `members`, which holds the segment and label columns of every
    scheme of var segment_schemes) and every user-added map (`custom`, rows of
    user_custom_segments_daily, joined to `members` for the `columns`).
#}
{% macro memberships_with_custom_maps(members, custom, columns=[]) -%}
    {{ segment_memberships(members, source=none, columns=columns) }}
    union all
    {{ custom_map_memberships(custom, members, columns=columns) }}
{%- endmacro %}


{#
    The memberships of user-added maps: the rows of `custom` (user_custom_segments_daily's),
    each joined to its user's row of `members` (same user_id and snapshot_date): `keys` of
    `custom`, then scheme, segment, segment_label, then `columns` of `members`.
#}
{% macro custom_map_memberships(custom, members, columns=[], keys=['user_id', 'snapshot_date']) -%}
    select
        {%- for key in keys %}
        {{ custom }}.{{ key }},
        {%- endfor %}
        {{ custom }}.scheme,
        {{ custom }}.segment,
        {{ custom }}.segment_label
        {%- for column in columns %},
        per_user.{{ column }}
        {%- endfor %}
    from {{ custom }}
    inner join {{ members }} as per_user
        on
            {{ custom }}.user_id = per_user.user_id
            and {{ custom }}.snapshot_date = per_user.snapshot_date
{%- endmacro %}


{#
    Each user's first completed purchase of each category (user_id, category,
    first_bought_date and, with count_orders, orders: completed orders with a line of it), up
    to `as_of`: int_user_categories_bought (kept day by day with fct_orders) summed per user
    and category. Shared by segment_category_affinity and user_next_best_categories. The
    count is asked for only where it is used, since DuckDB computes it even when nothing
    reads it.
#}
{% macro first_category_purchases(as_of=none, count_orders=true) -%}
    select
        user_id,
        category,
        min(order_date) as first_bought_date
        {%- if count_orders %},
        cast(sum(orders) as bigint) as orders
        {%- endif %}
    from {{ ref('int_user_categories_bought') }}
    {%- if as_of is not none %}
    where order_date <= {{ as_of }}
    {%- endif %}
    group by user_id, category
{%- endmacro %}


{#
    The import CTEs of a mart built as of the latest snapshot: `latest` (latest_snapshot_date,
    the newest snapshot of user_segments_daily), then that snapshot's `segments`, `user_values`
    and `custom_segments` (user-added maps), ready for memberships_with_custom_maps. Emitted
    with a trailing comma: the model's own CTEs follow.
#}
{% macro latest_snapshot_imports() -%}
latest as (
    select max(snapshot_date) as latest_snapshot_date
    from {{ source('strata', 'user_segments_daily') }}
),

segments as (
    select user_segments.*
    from {{ source('strata', 'user_segments_daily') }} as user_segments
    inner join latest
        on user_segments.snapshot_date = latest.latest_snapshot_date
),

user_values as (
    select user_values.*
    from {{ source('strata', 'user_value_daily') }} as user_values
    inner join latest
        on user_values.snapshot_date = latest.latest_snapshot_date
),

custom_segments as (
    select custom.*
    from {{ source('strata', 'user_custom_segments_daily') }} as custom
    inner join latest
        on custom.snapshot_date = latest.latest_snapshot_date
),
{%- endmacro %}


{#
    CTE `name`: per-user rows summed per segment of every scheme. `relation` holds one row per
    user (user_id, snapshot_date, the segment and label columns of every scheme, the `by`
    columns and the `measures` columns, e.g. 1 to count). Its rows are summed per combination
    of segments first, in CTE `name`_combinations (a few thousand rows at a million users), and
    those sums are expanded per scheme, instead of every user into a row per scheme. Rows of
    user-added maps (`custom`: user_custom_segments_daily rows) join `relation` per user.
    `everyone` (scheme, label): one more scheme whose one segment (named like the scheme) holds
    every row. One row per snapshot_date, scheme, segment and `by`, segment_label the max,
    without the users a scheme leaves out. Emitted with a trailing comma, like
    latest_snapshot_imports.
#}
{% macro segment_sums(name, relation, custom, measures, by=[], everyone=none) -%}
    {%- set grouped = ['snapshot_date'] + scheme_columns() + by -%}
{{ name }}_combinations as (
    select
        {{ grouped | join(', ') }},
        {%- for measure in measures %}
        sum({{ measure }}) as {{ measure }}{{ "," if not loop.last }}
        {%- endfor %}
    from {{ relation }}
    group by {{ grouped | join(', ') }}
),

{{ name }} as (
    select
        snapshot_date,
        scheme,
        segment,
        max(segment_label) as segment_label,
        {%- for column in by %}
        {{ column }},
        {%- endfor %}
        {%- for measure in measures %}
        sum({{ measure }}) as {{ measure }}{{ "," if not loop.last }}
        {%- endfor %}
    from (
        {{ segment_memberships(
            name ~ '_combinations', source=none, keys=['snapshot_date'], columns=by + measures
        ) }}
        union all
        {{ custom_map_memberships(custom, relation, columns=by + measures, keys=['snapshot_date']) }}
        {%- if everyone is not none %}
        union all
        select
            snapshot_date,
            '{{ everyone[0] }}' as scheme,
            '{{ everyone[0] }}' as segment,
            '{{ everyone[1] }}' as segment_label
            {%- for column in by + measures %},
            {{ column }}
            {%- endfor %}
        from {{ name }}_combinations
        {%- endif %}
    ) as memberships
    where segment is not null
    group by snapshot_date, scheme, segment{% for column in by %}, {{ column }}{% endfor %}
),
{%- endmacro %}


{#
    A double as an exact decimal (`precision` digits, `scale` of them after the point), for
    sums that must not depend on the order rows are added in (DuckDB's threads change it from
    run to run); NULL for a value that does not fit, or is not a finite number (NaN and the
    infinities compare above any bound). Up to 18 digits DuckDB adds them as 64-bit integers.
#}
{% macro exact(column, scale, precision=38) -%}
    {%- set bound = '1e' ~ (precision - scale - 1) -%}
    case
        when {{ column }} between -{{ bound }} and {{ bound }}
            then cast({{ column }} as decimal({{ precision }}, {{ scale }}))
    end
{%- endmacro %}
