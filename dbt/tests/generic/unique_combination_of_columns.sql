{#
    Fails with one row per duplicated combination of the given columns (the grain of a model
    keyed on several columns). A small stand-in for dbt_utils' test: no dbt packages here.
#}
{% test unique_combination_of_columns(model, combination_of_columns) %}
    {%- set columns_csv = combination_of_columns | join(', ') %}

    select
        {{ columns_csv }},
        count(*) as n_rows
    from {{ model }}
    group by {{ columns_csv }}
    having count(*) > 1
{% endtest %}
