{# The built-in schemes (var segment_schemes in dbt_project.yml), optionally of one source. #}
{% macro segment_schemes(source=none) -%}
    {%- set schemes = [] -%}
    {%- for scheme in var('segment_schemes') -%}
        {%- if source is none or scheme['source'] == source -%}
            {%- do schemes.append(scheme) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(schemes) }}
{%- endmacro %}
