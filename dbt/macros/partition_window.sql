{#
    Partition window of the incremental models (inclusive, 'YYYY-MM-DD'): the vars min_date /
    max_date when given (`dbt build --vars ...` by hand), else the environment variables
    STRATA_MIN_DATE / STRATA_MAX_DATE (how Dagster passes a partition range: changed --vars make
    dbt parse the whole project again, a changed environment variable only the models using it),
    else every date.

    The models always select only the window, also on their first build or a full refresh, so
    a fresh build of one day holds exactly that day. The window is validated here because it is
    pasted into a DELETE statement.
#}
{% macro window_bounds() -%}
    {%- set min_date = var('min_date', env_var('STRATA_MIN_DATE', '1900-01-01')) | string -%}
    {%- set max_date = var('max_date', env_var('STRATA_MAX_DATE', '2999-12-31')) | string -%}
    {%- set pattern = '^[0-9]{4}-[0-9]{2}-[0-9]{2}$' -%}
    {%- if not (modules.re.match(pattern, min_date) and modules.re.match(pattern, max_date)) -%}
        {{ exceptions.raise_compiler_error(
            "vars min_date / max_date must be 'YYYY-MM-DD', got '"
            ~ min_date ~ "' / '" ~ max_date ~ "'") }}
    {%- endif -%}
    {%- if min_date > max_date -%}
        {{ exceptions.raise_compiler_error(
            "var min_date (" ~ min_date ~ ") is after max_date (" ~ max_date ~ ")") }}
    {%- endif -%}
    {{ return([min_date, max_date]) }}
{%- endmacro %}


{# `<column> between <min_date> and <max_date>` as DATE literals (portable SQL). #}
{% macro window_predicate(column) -%}
    {%- set bounds = window_bounds() -%}
    {{ column }} between cast('{{ bounds[0] }}' as date) and cast('{{ bounds[1] }}' as date)
{%- endmacro %}


{#
    pre_hook of the incremental models (strategy 'append'): on an incremental run, delete the
    window's rows first, so rerunning a window replaces it and gives identical rows. The hook runs
    inside the model's transaction, so readers never see the window half-written. Renders to
    nothing on the first build or a full refresh (the table is then created from the window).
#}
{% macro delete_window(column) -%}
    {%- if is_incremental() -%}
        delete from {{ this }} where {{ window_predicate(column) }}
    {%- endif -%}
{%- endmacro %}
