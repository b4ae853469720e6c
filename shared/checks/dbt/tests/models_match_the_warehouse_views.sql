-- The models and migration 7's views (eventpipe.loader.dialects.models, which `eventpipe funnel`
-- and `eventpipe retention` read) are two spellings of one definition: any row in one and not in
-- the other fails this test, so they cannot drift apart unseen.
{% set pairs = [
    ('persons', 'dbt_persons', 'raw_id, person'),
    ('funnel_step_events', 'dbt_funnel_step_events', 'message_id, person, event, at, day'),
    ('retention_cohorts', 'dbt_retention_cohorts', 'event, person, first_day, first_week'),
] %}
{% for view, model, columns in pairs %}
(select '{{ model }}' as model, 'only in the model' as side, count(*) as mismatches
 from (select {{ columns }} from {{ ref(model) }} except select {{ columns }} from {{ source('warehouse', view) }}) as d
 having count(*) > 0)
union all
(select '{{ model }}', 'only in the view', count(*)
 from (select {{ columns }} from {{ source('warehouse', view) }} except select {{ columns }} from {{ ref(model) }}) as d
 having count(*) > 0)
{{ 'union all' if not loop.last }}
{% endfor %}
