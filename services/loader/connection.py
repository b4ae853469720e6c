"""Warehouse connections: the one place that opens them and knows the driver's errors.

Every session eventpipe opens on the warehouse -- the loader's and the nightly job's
(``warehouse.Warehouse``, with retries), the reports' and ``demo``'s read-only ones
(``session``), the data checks' and the dev stack's -- comes from here, so psycopg2's
connection and error types stay inside the warehouse adapter (this module, ``warehouse``
and the dialects, which compose statements with ``psycopg2.sql`` and classify errors).

- ``open_connection``: a connection in its service's query group (Redshift WLM); raises
  the driver's errors, for a caller that classifies them (``Warehouse.run`` retries);
- ``session``: a connection closed at the end of the block, whose failures (connecting
  and every statement) arrive as ``WarehouseError``;
- ``translated``: the driver's errors of a block as ``WarehouseError``;
- ``DriverError``: the base of what the driver raises, for the adapter's own ``except``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2
import psycopg2.extensions

from eventpipe.errors import WarehouseError

DriverError = psycopg2.Error
POSTGRES = "postgres"


class Connection(psycopg2.extensions.connection):  # type: ignore[misc]  # psycopg2 ships no types
    """A connection that knows its warehouse dialect (query builders branch on it)."""

    dialect = POSTGRES


def open_connection(
    dsn: str,
    application_name: str,
    *,
    dialect: str = POSTGRES,
    readonly: bool = False,
    autocommit: bool = False,
    **params: Any,
) -> Any:
    """A connection (not autocommit unless asked: every load is an explicit transaction),
    its session set up for the query group of ``application_name`` (``query_group_of``).
    ``params`` go to the driver as they are (a unix-socket ``host``, a ``user``)."""
    from eventpipe.loader.dialects import get_dialect, query_group_of

    options = {"connect_timeout": 5, "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
               "keepalives_count": 3, **params}  # fmt: skip
    conn = psycopg2.connect(dsn, application_name=application_name, connection_factory=Connection, **options)
    conn.dialect = dialect
    try:
        if readonly or autocommit:
            conn.set_session(readonly=readonly or None, autocommit=autocommit)
        setup = get_dialect(dialect).session_setup(query_group_of(application_name))
        if setup:  # a session setting: it outlives this transaction
            with conn.cursor() as cur:
                for statement in setup:
                    cur.execute(statement)
            if not conn.autocommit:
                conn.commit()
    except BaseException:
        conn.close()
        raise
    return conn


@contextmanager
def translated(what: str) -> Iterator[None]:
    """The driver's errors of the block as ``WarehouseError("<what>: <driver message>")``."""
    try:
        yield
    except DriverError as exc:
        raise WarehouseError(f"{what}: {exc}".strip()) from exc


@contextmanager
def session(dsn: str, application_name: str, **options: Any) -> Iterator[Any]:
    """A connection for the block (``options`` as ``open_connection``'s), closed after it;
    ``WarehouseError`` when it cannot be opened or a statement of the block fails."""
    with translated("cannot connect to the warehouse"):
        conn = open_connection(dsn, application_name, **options)
    try:
        with translated("warehouse query failed"):
            yield conn
    finally:
        conn.close()


def dsn_parts(dsn: str) -> dict[str, str]:
    """A DSN (URL or ``key=value``) as its parts: host, port, user, password, dbname."""
    try:
        return dict(psycopg2.extensions.parse_dsn(dsn))
    except psycopg2.ProgrammingError as exc:
        raise WarehouseError(f"invalid warehouse DSN: {exc}".strip()) from exc
