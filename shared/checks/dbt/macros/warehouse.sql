{# SQL that differs between the warehouses: PostgreSQL locally, Redshift in production. #}

{# The raw user key of an event row: userId if present, else anonymousId (DESIGN.md). #}
{% macro raw_id(alias) -%}
    coalesce(nullif({{ alias }}.user_id, ''), {{ alias }}.anonymous_id)
{%- endmacro %}

{# The UTC calendar date of a timestamptz, whatever the session's time zone. #}
{% macro utc_date(timestamp) -%}
    {{ return(adapter.dispatch('utc_date', 'eventpipe')(timestamp)) }}
{%- endmacro %}

{% macro default__utc_date(timestamp) -%}
    cast(({{ timestamp }} at time zone 'UTC') as date)
{%- endmacro %}

{% macro redshift__utc_date(timestamp) -%}
    cast(convert_timezone('UTC', {{ timestamp }}) as date)
{%- endmacro %}

{# The day under test (var `date`) as a SQL date literal. #}
{% macro day_under_test() -%}
    cast('{{ var("date") }}' as date)
{%- endmacro %}
