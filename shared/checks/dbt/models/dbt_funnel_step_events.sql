-- One row per engagement event (a track call by its name, page/screen calls as `page`/`screen`),
-- with its person, its corrected timestamp `at` and that instant's UTC day.
with named as (
    select
        e.message_id,
        {{ raw_id('e') }} as raw_id,
        case when e.type = 'track' then e.event else e.type end as event,
        e."timestamp" as at
    from {{ source('warehouse', 'events') }} as e
    where e.type in ('track', 'page', 'screen')
)

select
    n.message_id,
    p.person,
    n.event,
    n.at,
    {{ utc_date('n.at') }} as day
from named as n
left join {{ ref('dbt_persons') }} as p on p.raw_id = n.raw_id
where n.event is not null
