-- The earliest link of each linked id (docs/contracts.md section 7: earliest linked_at, then
-- message_id). ROW_NUMBER rather than PostgreSQL's DISTINCT ON: Redshift has no DISTINCT ON.
{{ config(materialized='ephemeral') }}
select w.anonymous_id, w.user_id
from (
    select
        i.anonymous_id,
        i.user_id,
        row_number() over (partition by i.anonymous_id order by i.linked_at, i.message_id) as link_rank
    from {{ source('warehouse', 'identities') }} as i
) as w
where w.link_rank = 1
