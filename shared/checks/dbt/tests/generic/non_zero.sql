{#
  A critical value is non-zero on the day under test (var `date`): the number of rows of the
  model whose `date_column` is that day, or, with a column, their sum. Narrow it with dbt's
  `config: {where: ...}` (e.g. one event). Fails with one row (the value) when it is 0.
#}
{% test non_zero(model, column_name=none, date_column='day') %}
select value
from (
    select coalesce({{ 'sum(' ~ column_name ~ ')' if column_name else 'count(*)' }}, 0) as value
    from {{ model }}
    where {{ date_column }} = {{ day_under_test() }}
) as on_day
where value = 0
{% endtest %}
