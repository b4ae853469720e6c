"""The statements that set up the local stack's PostgreSQL cluster (``eventpipe.devstack``):
the role and database of DESIGN.md, created once by the superuser. PostgreSQL only: a
Redshift cluster is provisioned by ops, never by eventpipe."""

from __future__ import annotations

from psycopg2 import sql

# parameter: the role's name
ROLE_EXISTS = sql.SQL("SELECT 1 FROM pg_roles WHERE rolname = %s")
# parameter: the database's name
DATABASE_EXISTS = sql.SQL("SELECT 1 FROM pg_database WHERE datname = %s")


def create_role(role: str) -> sql.Composed:
    """A login role; parameter: its password."""
    return sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(role))


def create_database(database: str, owner: str) -> sql.Composed:
    """Outside a transaction (autocommit): PostgreSQL refuses it inside one."""
    return sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), sql.Identifier(owner))
