"""Loads side by side (PostgreSQL with its primary keys): the statements of a *claimed*
load, pure ``psycopg2.sql`` composition.

Who loads an object is decided by the ledger's unique key: each load claims its objects
with ``INSERT … ON CONFLICT (key) DO NOTHING`` inside its own transaction, so a crash
rolls the claim back with the load and exactly-once holds. A claim that meets another
load's uncommitted row would wait for it; an advisory try-lock per object first sets
aside the objects another load has in flight (they stay pending for the next round), so
loaders go past each other instead of queueing. The try-lock is a hint: the unique key
decides. Merges are ``INSERT … ON CONFLICT DO UPDATE`` on the targets' primary keys,
which PostgreSQL makes safe between concurrent transactions (a plain ``MERGE`` is not:
two may insert the same key), sources sorted by key so concurrent loads take row locks
in one order.

Redshift enforces no key and has none of this: there every load takes ``LOCK`` on the
small ``load_ledger`` table (``RedshiftDialect.lock``) and loads take turns.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from datetime import datetime

from psycopg2 import sql

from eventpipe.loader.dialects import Dialect
from eventpipe.loader.dialects.common import SRC, cols, ident, literals
from eventpipe.loader.dialects.links import LINK_ORDER, links_of
from eventpipe.loader.tables import EVENTS, FRESHNESS, IDENTITIES, LOAD_LEDGER, TARGETS, Table

EVENT_ORDER = ("received_at", "timestamp")  # the canonical copy of an event (contracts §2)


def keyed_tables(table: str) -> list[str]:
    """The tables whose primary keys a claimed load of ``table`` relies on."""
    extra = [IDENTITIES.name] if table == EVENTS.name else []
    return [LOAD_LEDGER.name, FRESHNESS.name, table, *extra]


def object_lock_ids(schema: str, key: str) -> tuple[int, int]:
    """The advisory lock of one object in flight: a namespace per schema, the key's crc."""
    return zlib.crc32(f"eventpipe.load:{schema}".encode()) - 2**31, zlib.crc32(key.encode()) - 2**31


def shared_write_lock(schema: str, table: str) -> sql.Composed:
    """What every writer takes anyway (ROW EXCLUSIVE: loads never wait for each other),
    taken first so the nightly's day replacement (SHARE ROW EXCLUSIVE) cannot slip in
    between a load's reading of the final days and its merge."""
    return sql.SQL("LOCK TABLE {} IN ROW EXCLUSIVE MODE").format(ident(schema, table))


def free_objects(schema: str, keys: Sequence[str]) -> sql.Composed:
    """Which of ``keys`` no other transaction has in flight (their try-locks are taken)."""
    rows = sql.SQL(", ").join(
        sql.SQL("({}, {}, {})").format(sql.Literal(k), *(sql.Literal(i) for i in object_lock_ids(schema, k)))
        for k in sorted(keys)
    )
    return sql.SQL(
        "SELECT v.k FROM (VALUES {}) AS v (k, ns, h) WHERE pg_try_advisory_xact_lock(v.ns, v.h)"
    ).format(rows)


def ledger_claim(schema: str, table: str, keys: Sequence[str], at: datetime) -> sql.Composed:
    """Insert-if-absent of the objects' ledger rows; returns the keys this load now owns
    (``rows`` is set once they are staged: ``ledger_rows``)."""
    rows = sql.SQL(", ").join(sql.SQL("({})").format(literals((k, table, 0, at))) for k in sorted(keys))
    return sql.SQL("INSERT INTO {} ({}) VALUES {} ON CONFLICT ({}) DO NOTHING RETURNING {}").format(
        ident(schema, LOAD_LEDGER.name), cols(LOAD_LEDGER.column_names), rows, ident("key"), ident("key")
    )


def ledger_rows(schema: str, counts: Sequence[tuple[str, int]]) -> sql.Composed:
    values = sql.SQL(", ").join(sql.SQL("({})").format(literals(c)) for c in counts)
    return sql.SQL("UPDATE {} AS l SET {r} = v.n FROM (VALUES {}) AS v (k, n) WHERE l.{k} = v.k").format(
        ident(schema, LOAD_LEDGER.name), values, r=ident("rows"), k=ident("key")
    )


def _earlier(order: Sequence[str], target: str) -> sql.Composed:
    """The incoming row is strictly earlier by ``order`` (the stored row wins ties)."""
    return sql.SQL("({}) < ({})").format(
        cols(order, "excluded"), sql.SQL(", ").join(ident(target, c) for c in order)
    )


def upsert_earliest(schema: str, target: Table, source: sql.Composable, order: Sequence[str]) -> sql.Composed:
    """Insert ``source`` (one row per key, sorted by key), or replace the stored row when
    the incoming one is earlier by ``order``."""
    names, keys = target.column_names, target.primary_key
    return sql.SQL(
        "INSERT INTO {t} AS {a} ({c}) SELECT {sc} FROM ({src}) AS s ORDER BY {sk} "
        "ON CONFLICT ({k}) DO UPDATE SET {set} WHERE {earlier}"
    ).format(
        t=ident(schema, target.name), a=ident(target.name), c=cols(names), sc=cols(names, "s"), src=source,
        sk=cols(keys, "s"), k=cols(keys), earlier=_earlier(order, target.name),
        set=sql.SQL(", ").join(
            sql.SQL("{c} = excluded.{c}").format(c=ident(n)) for n in names if n not in keys
        ),
    )  # fmt: skip


def _first_per_key(source: sql.Composable, keys: Sequence[str], order: Sequence[str]) -> sql.Composed:
    return sql.SQL("SELECT DISTINCT ON ({k}) s.* FROM ({src}) AS s ORDER BY {k}, {o}").format(
        k=cols(keys, "s"), src=source, o=cols(order, "s")
    )


def upsert_add(schema: str, table: str) -> sql.Composed:
    """Add ``ep_src``'s counts to the target rows; new rows are provisional (not final)."""
    target = TARGETS[table]
    keys, name = target.primary_key, target.name
    counts = ("event_count", "user_count")
    return sql.SQL(
        "INSERT INTO {t} AS {a} ({c}, {f}) SELECT {sc}, FALSE FROM {s} ORDER BY {sk} "
        "ON CONFLICT ({k}) DO UPDATE SET {set}"
    ).format(
        t=ident(schema, name), a=ident(name), c=cols([*keys, *counts]), f=ident("is_final"),
        sc=cols([*keys, *counts], SRC), s=ident(SRC), sk=cols(keys, SRC), k=cols(keys),
        set=sql.SQL(", ").join(sql.SQL("{c} = {a}.{c} + excluded.{c}").format(c=ident(c), a=ident(name))
                               for c in counts),
    )  # fmt: skip


def freshness_upsert(schema: str, table: str, newest: sql.Composable, at: datetime) -> sql.Composed:
    """Raise the table's watermark to ``newest`` (never lowered) and stamp the load time."""
    n = ident("newest_received_at")
    return sql.SQL(
        "INSERT INTO {t} AS f ({c}) VALUES ({name}, {v}, {at}) ON CONFLICT ({tn}) DO UPDATE SET "
        "{n} = GREATEST(f.{n}, excluded.{n}), {l} = excluded.{l}"
    ).format(
        t=ident(schema, FRESHNESS.name), c=cols(FRESHNESS.column_names), name=sql.Literal(table), v=newest,
        at=sql.Literal(at), tn=ident("table_name"), n=n, l=ident("loaded_at"),
    )  # fmt: skip


def upsert_events(dialect: Dialect, schema: str) -> list[sql.Composed]:
    """The staged events (one per id, the canonical copy) and their identity links, upserted."""
    staged = dialect.typed_source(EVENTS.name)
    links = _first_per_key(links_of(staged), IDENTITIES.primary_key, LINK_ORDER)
    return [
        upsert_earliest(schema, EVENTS, _first_per_key(staged, EVENTS.primary_key, EVENT_ORDER), EVENT_ORDER),
        upsert_earliest(schema, IDENTITIES, links, LINK_ORDER),
    ]


def upsert_first(dialect: Dialect, schema: str, table: str, order: Sequence[str]) -> sql.Composed:
    """The staged rows of ``table`` (assignments), the earliest by ``order`` per key, upserted."""
    target = TARGETS[table]
    return upsert_earliest(
        schema, target, _first_per_key(dialect.typed_source(table), target.primary_key, order), order
    )
