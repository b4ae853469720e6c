"""What ``eventpipe demo`` waits for and prints (pure ``psycopg2.sql``). PostgreSQL only:
the demo runs on the local stack (``= ANY(%s)`` takes a Python list as an array). Each
statement is a template of the schema: ``in_schema(LOADED, schema)``."""

from __future__ import annotations

from psycopg2 import sql

# how many of the sent messageIds (parameter: a list) are in ``events``
LOADED = "SELECT count(*) FROM {}.events WHERE message_id = ANY(%s)"
# how many of them are engagement events (what the streamed ``*`` rows count)
ENGAGED = "SELECT count(*) FROM {}.events WHERE type IN ('track','page','screen') AND message_id = ANY(%s)"
# the days (corrected timestamp) they fall on
DAYS = "SELECT array_agg(DISTINCT timestamp::date) FROM {}.events WHERE message_id = ANY(%s)"
# the engagement events the stream counted on those days (parameter: the days)
COUNTED = "SELECT coalesce(sum(event_count), 0) FROM {}.engagement_daily WHERE event = '*' AND day = ANY(%s)"
# ``engagement_daily`` of yesterday and today, DAU first
RECENT_ENGAGEMENT = (
    "SELECT day, event, event_count, user_count, is_final FROM {}.engagement_daily "
    "WHERE day >= current_date - 1 ORDER BY day, (event = '*') DESC, event_count DESC"
)


def in_schema(template: str, schema: str) -> sql.Composed:
    return sql.SQL(template).format(sql.Identifier(schema))
