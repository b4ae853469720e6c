{#
  Source freshness as of the end of the day under test (var `freshness_now`, set by `eventpipe
  checks run`), not the database's clock: checking a past day must judge what had arrived by
  then, and rows received after that instant must not make it look fresh. Overrides dbt's
  default__collect_freshness (dbt dispatches to the root project's macro first); without the
  var it is dbt's own behaviour.
#}
{% macro default__collect_freshness(source, loaded_at_field, filter) %}
  {% set now = freshness_now() %}
  {% call statement('collect_freshness', fetch_result=True, auto_begin=False) -%}
    select
      max({{ loaded_at_field }}) as max_loaded_at,
      {{ now }} as snapshotted_at
    from {{ source }}
    where {{ loaded_at_field }} <= {{ now }}
    {% if filter %}
      and ({{ filter }})
    {% endif %}
  {% endcall %}
  {{ return(load_result('collect_freshness')) }}
{% endmacro %}

{% macro freshness_now() -%}
  {%- if var('freshness_now', none) -%}
    cast('{{ var("freshness_now") }}' as timestamp with time zone)
  {%- else -%}
    {{ current_timestamp() }}
  {%- endif -%}
{%- endmacro %}
