{#
    Use the custom schema name as-is (raw, staging, marts) instead of dbt's default
    "<target schema>_<custom schema>", so relations are the names BI users and the Dagster
    asset keys ([schema, table]) see. Models without a custom schema land in the target schema.
#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
