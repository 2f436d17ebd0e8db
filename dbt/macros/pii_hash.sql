{#
    Keyed pseudonym of a PII value: hash(salt || value) with dbt's cross-database macros, so
    the same person gets the same hash across runs (joins, dedup) while the raw value cannot be
    recovered by hashing a list of known addresses without the salt.

    The salt comes from the env var STRATA_PII_SALT (required, non-empty; never in files). It
    is only read when executing (not while parsing), so `dbt parse` works without it and the
    manifest never records it. It does appear in compiled SQL under target/ and in the debug
    log: both are git-ignored, but treat them as secret.
    Null or empty values stay null (no hash of the salt alone).
#}
{% macro pii_hash(expression) -%}
    {%- if execute -%}
        {%- set salt = env_var('STRATA_PII_SALT') -%}
        {%- if salt | length == 0 -%}
            {{ exceptions.raise_compiler_error("env var STRATA_PII_SALT must not be empty") }}
        {%- endif -%}
    {%- else -%}
        {%- set salt = 'parse-time-placeholder' -%}
    {%- endif -%}
    {%- set salt_literal = quoted_literal(salt) -%}
    case
        when {{ expression }} is null then null
        else {{ dbt.hash(dbt.concat([salt_literal, expression])) }}
    end
{%- endmacro %}
