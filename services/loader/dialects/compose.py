"""The few building blocks every statement is composed of (pure ``psycopg2.sql``):
quoted identifiers, column lists, key equalities, literal lists."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from psycopg2 import sql


def ident(*parts: str) -> sql.Identifier:
    return sql.Identifier(*parts)


def cols(names: Iterable[str], prefix: str | None = None) -> sql.Composed:
    return sql.SQL(", ").join(ident(prefix, n) if prefix else ident(n) for n in names)


def keys_match(keys: Sequence[str], left: str, right: str) -> sql.Composed:
    return sql.SQL(" AND ").join(sql.SQL("{} = {}").format(ident(left, k), ident(right, k)) for k in keys)


def literals(values: Iterable[object]) -> sql.Composed:
    return sql.SQL(", ").join(sql.Literal(v) for v in values)
