"""Identity links in the warehouse (docs/contracts.md section 7), as SQL both dialects share
(pure ``psycopg2.sql`` composition, like ``common``).

``identities`` holds one row per link event (its canonical copy), derived from the staged
rows of every ``events`` load inside that load's transaction: loaded exactly once, with its
event. Which link of an id wins (earliest ``linked_at``, then ``message_id``) is decided at
read time, so links that land late and out of order need no rewrite.
"""

from __future__ import annotations

from datetime import date

from psycopg2 import sql

from eventpipe.loader.dialects import Dialect
from eventpipe.loader.dialects.common import cols, earliest_wins, ident
from eventpipe.loader.tables import IDENTITIES


def links_of(events: sql.Composable) -> sql.Composed:
    """The identity links among ``events`` rows (``eventpipe.identity.link_of`` in SQL): an
    identify with both ids links its anonymousId, an alias its previousId, to the userId."""
    linked = sql.SQL("CASE WHEN e.{t} = 'alias' THEN e.{p} ELSE e.{a} END").format(
        t=ident("type"), p=ident("previous_id"), a=ident("anonymous_id")
    )
    return sql.SQL(
        "SELECT l.* FROM (SELECT e.{m}, {linked} AS {a}, e.{u}, e.{ts} AS {at}, e.{r} FROM ({events}) AS e "
        "WHERE e.{t} IN ('identify', 'alias') AND e.{u} IS NOT NULL AND e.{u} <> '') AS l "
        "WHERE l.{a} IS NOT NULL AND l.{a} <> '' AND l.{a} <> l.{u}"
    ).format(
        m=ident("message_id"), linked=linked, a=ident("anonymous_id"), u=ident("user_id"),
        ts=ident("timestamp"), at=ident("linked_at"), r=ident("received_at"), events=events, t=ident("type"),
    )  # fmt: skip


LINK_ORDER = ("received_at", "linked_at")  # the canonical copy of a link event, as for events


def merge_identities(dialect: Dialect, schema: str) -> list[sql.Composed]:
    """The links among the staged events into ``identities`` (same transaction as the events
    merge, so a link is loaded exactly once with its event)."""
    return earliest_wins(
        dialect, schema, IDENTITIES.name, LINK_ORDER, links_of(dialect.typed_source("events"))
    )


def backfill_identities(schema: str) -> sql.Composed:
    """The links of the events already loaded (migration 2); replays insert nothing twice."""
    t = ident(schema, IDENTITIES.name)
    return sql.SQL("INSERT INTO {t} ({c}) SELECT {lc} FROM ({links}) AS l WHERE NOT EXISTS "
                   "(SELECT 1 FROM {t} AS i WHERE i.{m} = l.{m})").format(
        t=t, c=cols(IDENTITIES.column_names), lc=cols(IDENTITIES.column_names, "l"),
        links=links_of(sql.SQL("SELECT * FROM {}").format(ident(schema, "events"))), m=ident("message_id"),
    )  # fmt: skip


def winning_links(schema: str) -> sql.Composed:
    """``anonymous_id, user_id`` of each linked id's earliest link (contracts §7)."""
    return sql.SQL(
        "SELECT w.{a}, w.{u} FROM (SELECT i.{a}, i.{u}, ROW_NUMBER() OVER (PARTITION BY i.{a} "
        "ORDER BY i.{at}, i.{m}) AS ep_rn FROM {t} AS i) AS w WHERE w.ep_rn = 1"
    ).format(
        a=ident("anonymous_id"), u=ident("user_id"), at=ident("linked_at"), m=ident("message_id"),
        t=ident(schema, IDENTITIES.name),
    )  # fmt: skip


def retire_linked_assignments(schema: str, before: date) -> sql.Composed:
    """Delete assignments exposed before ``before`` under an id that is linked to a person
    who has their own row for the experiment (the nightly just upserted it): the table stays
    keyed by person. Rows without such a person row stay, so nothing is lost to a link that
    landed after the job read the identities."""
    persons = sql.SQL(
        "SELECT l1.{a} AS ep_id, coalesce(l2.{u}, l1.{u}) AS ep_person FROM ({links}) AS l1 "
        "LEFT JOIN ({links}) AS l2 ON l2.{a} = l1.{u}"
    ).format(a=ident("anonymous_id"), u=ident("user_id"), links=winning_links(schema))
    t = ident(schema, "experiment_assignments")
    return sql.SQL(
        "DELETE FROM {t} USING ({persons}) AS r WHERE {t}.{k} = r.ep_id AND {t}.{f} < {before} "
        "AND EXISTS (SELECT 1 FROM {t} AS p WHERE p.{x} = {t}.{x} AND p.{k} = r.ep_person)"
    ).format(
        t=t, persons=persons, k=ident("user_key"), f=ident("first_exposed_at"), before=sql.Literal(before),
        x=ident("experiment_id"),
    )  # fmt: skip
