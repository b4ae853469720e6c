{#
  Volume regression: the number of rows (or the sum of a column) on the day under test (var
  `date`) against the mean of the same weekday over the previous `weeks` weeks. Fails when it is
  below `lower` or above `upper` times that mean (default: under half or over twice as much).
  Minimum history: only the previous weekdays that have rows count, and with fewer than
  `min_history` of them there is nothing to compare yet and the test passes (pair it with
  `non_zero` for what must never be missing). Fails with one row: value, baseline, history.
#}
{% test volume_vs_previous_weekdays(model, column_name=none, date_column='day', weeks=4, min_history=2,
                                     lower=0.5, upper=2.0) %}
{% set day = modules.datetime.date.fromisoformat(var('date')) %}
{% set previous = [] %}
{% for week in range(1, weeks + 1) %}
  {% do previous.append((day - modules.datetime.timedelta(days=7 * week)).isoformat()) %}
{% endfor %}
with per_day as (
    select {{ date_column }} as on_day,
           {{ 'sum(' ~ column_name ~ ')' if column_name else 'count(*)' }} as value
    from {{ model }}
    where {{ date_column }} = {{ day_under_test() }}
       or {{ date_column }} in ({% for d in previous %}cast('{{ d }}' as date){{ ', ' if not loop.last }}{% endfor %})
    group by {{ date_column }}
),

compared as (
    select
        coalesce(sum(case when on_day = {{ day_under_test() }} then value end), 0) as value,
        avg(case when on_day <> {{ day_under_test() }} then cast(value as double precision) end) as baseline,
        sum(case when on_day <> {{ day_under_test() }} then 1 else 0 end) as history
    from per_day
)

select value, baseline, history
from compared
where history >= {{ min_history }}
  and (value < {{ lower }} * baseline or value > {{ upper }} * baseline)
{% endtest %}
