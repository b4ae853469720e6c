"""Warehouse chores of the fault scenarios (test schema only)."""

from __future__ import annotations

import time
from typing import Any

import psycopg2
from psycopg2 import sql

from eventpipe.settings import Settings
from tests.support.warehouse import drop_unique_constraints


def query(settings: Settings, statement: sql.Composable, args: Any = None) -> list[tuple]:
    conn = psycopg2.connect(settings.warehouse_dsn, connect_timeout=5)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statement, args)
            return cur.fetchall()
    finally:
        conn.close()


def table(settings: Settings, name: str) -> sql.Composable:
    return sql.Identifier(settings.warehouse_schema, name)


CONTRACT_TABLES = ("events", "engagement_daily", "experiment_daily", "experiment_assignments", "load_ledger")


def wait_for_tables(settings: Settings, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        conn = psycopg2.connect(settings.warehouse_dsn)
        try:
            with conn, conn.cursor() as cur:
                cur.execute(
                    "SELECT count(*) FROM information_schema.tables"
                    " WHERE table_schema = %s AND table_name = ANY(%s)",
                    [settings.warehouse_schema, list(CONTRACT_TABLES)],
                )
                if cur.fetchone()[0] == len(CONTRACT_TABLES):
                    return
        finally:
            conn.close()
        if time.monotonic() > deadline:
            raise AssertionError("the loader did not create its tables")
        time.sleep(0.5)


def drop_primary_keys(settings: Settings) -> int:
    """As on Redshift (constraints informational only): nothing but the loader keeps rows unique."""
    wait_for_tables(settings)
    return drop_unique_constraints(settings.warehouse_dsn, settings.warehouse_schema)
