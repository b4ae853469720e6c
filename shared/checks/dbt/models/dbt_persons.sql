-- One row per raw id of `events` (userId, else anonymousId) and its person: the raw id followed
-- along at most two winning links (as migration 7's `persons` view, which `eventpipe funnel` reads).
with raw_ids as (
    select distinct {{ raw_id('e') }} as raw_id
    from {{ source('warehouse', 'events') }} as e
)

select
    r.raw_id,
    coalesce(l2.user_id, l1.user_id, r.raw_id) as person
from raw_ids as r
left join {{ ref('winning_links') }} as l1 on l1.anonymous_id = r.raw_id
left join {{ ref('winning_links') }} as l2 on l2.anonymous_id = l1.user_id
