"""Links that land after a day was made final re-attribute its persons (contracts §7), so
they touch the final days holding events of the linked id (pure SQL, both dialects).

A final day's user counts and variants were computed with the links the nightly saw; an
identify or alias loaded later moves the linked id's events to another person. Rather than
leaving that to someone who notices, the events load that brings the link marks those days
(``day_watermark.touched_at``, as a late delta does) and the scheduler recomputes them at
the next nightly hour; the job reads the link from the ``identities`` snapshot, so the
lateness need not grow (``touched_received_day`` is left as it is).

One hop: the days of the events whose own raw key is the linked id. An alias of a userId
whose anonymous ids were linked earlier also re-attributes those anonymous events; days
holding only such events are not marked (docs/reprocess.md).
"""

from __future__ import annotations

from datetime import datetime

from psycopg2 import sql

from eventpipe.loader.dialects import Dialect
from eventpipe.loader.dialects.common import ident
from eventpipe.loader.dialects.links import links_of
from eventpipe.loader.dialects.truth import RAW_KEY
from eventpipe.loader.tables import DAY_WATERMARK


def touch_linked_days(dialect: Dialect, schema: str, at: datetime) -> sql.Composed:
    """Mark the final days with events of an id that a staged link event links."""
    days = sql.SQL(
        "SELECT DISTINCT {day} AS {d} FROM {events} AS e JOIN ({links}) AS l ON {raw} = l.{a}"
    ).format(
        day=dialect.utc_date(sql.SQL("e.{}").format(ident("timestamp"))), d=ident("day"),
        events=ident(schema, "events"), links=links_of(dialect.typed_source("events")), raw=RAW_KEY,
        a=ident("anonymous_id"),
    )  # fmt: skip
    wm = DAY_WATERMARK.name
    return sql.SQL(
        "UPDATE {t} SET {ta} = COALESCE({ta}, {at}) FROM ({days}) AS x WHERE {w}.{d} = x.{d}"
    ).format(
        t=ident(schema, wm),
        ta=ident("touched_at"),
        at=sql.Literal(at),
        days=days,
        w=ident(wm),
        d=ident("day"),
    )
