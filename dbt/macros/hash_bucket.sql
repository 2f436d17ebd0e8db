{#
    A stable bucket 0 .. buckets-1 of an md5 hex digest (dbt.hash): its first 7 hex digits as a
    number (0 .. 16^7-1, uniform enough for 10,000 buckets) modulo `buckets`. Portable SQL
    (strpos, substr, mod), so the same user gets the same bucket on every run, backfill and
    engine; assignments built on it (user_holdout_groups) never move.
#}
{% macro hex_bucket(hex_digest, buckets) -%}
    mod(
    {%- for i in range(7) %}
        {% if not loop.first %}+ {% endif -%}
        (strpos('0123456789abcdef', substr({{ hex_digest }}, {{ i + 1 }}, 1)) - 1)
        * {{ 16 ** (6 - i) }}
    {%- endfor %},
        {{ buckets }}
    )
{%- endmacro %}


{#
    The global holdout's settings, from the environment (documented in .env.example):
    STRATA_HOLDOUT_SHARE (0 .. 0.5, default 0.10) and STRATA_HOLDOUT_SALT (default
    'strata-holdout-v1'; changing it reassigns every user, so keep it stable).
#}
{% macro holdout_share() -%}
    {%- set text = env_var('STRATA_HOLDOUT_SHARE', '0.10') | string -%}
    {%- if not modules.re.match('^(0(\\.[0-9]+)?|\\.[0-9]+)$', text) or (text | float) > 0.5 -%}
        {{ exceptions.raise_compiler_error(
            "env var STRATA_HOLDOUT_SHARE must be a share from 0 to 0.5, got '" ~ text ~ "'") }}
    {%- endif -%}
    {{ return(text | float) }}
{%- endmacro %}

{% macro holdout_salt() -%}
    {%- set salt = env_var('STRATA_HOLDOUT_SALT', 'strata-holdout-v1') | string -%}
    {%- if salt | length == 0 -%}
        {{ exceptions.raise_compiler_error("env var STRATA_HOLDOUT_SALT must not be empty") }}
    {%- endif -%}
    {{ return(salt) }}
{%- endmacro %}
