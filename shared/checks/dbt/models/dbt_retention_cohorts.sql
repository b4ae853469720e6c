-- Per engagement event and person: the UTC day and the ISO week (its Monday) of their first
-- such event, all time.
select
    s.event,
    s.person,
    min(s.day) as first_day,
    cast(date_trunc('week', min(s.day)) as date) as first_week
from {{ ref('dbt_funnel_step_events') }} as s
group by s.event, s.person
