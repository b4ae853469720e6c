"""SQL both dialects share (pure): ledger, quarantine, freshness, day status, deltas and
the count/assignment merges. Everything is ``psycopg2.sql`` composition; values are
``sql.Literal`` so a statement is complete on its own (and testable without a server).

Merges are written without table aliases on the target and as DELETE … USING / MERGE
forms that PostgreSQL 15 and Redshift both accept.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from psycopg2 import sql

from eventpipe.loader.dialects import Dialect
from eventpipe.loader.dialects.compose import cols, ident, keys_match, literals
from eventpipe.loader.tables import (
    DAY_STATUS,
    DAY_WATERMARK,
    DELTAS,
    FINAL_BATCHES,
    FRESHNESS,
    IDENTITIES,
    LOAD_LEDGER,
    QUARANTINE,
    TARGETS,
    Column,
    Table,
)

STAGE = "ep_stage"  # staged lines of the batches in this transaction
SRC = "ep_src"  # the merge source derived from them
COUNTS = ("event_count", "user_count")


def column_def(dialect: Dialect, c: Column) -> sql.Composed:
    parts = [ident(c.name), dialect.type_of(c.kind)]
    if c.default:
        parts.append(sql.SQL("DEFAULT {}").format(dialect.default_of(c.default)))
    if c.not_null:
        parts.append(sql.SQL("NOT NULL"))
    return sql.SQL(" ").join(parts)


def create_table(dialect: Dialect, schema: str, table: Table, with_pk: bool = True) -> sql.Composed:
    defs = [column_def(dialect, c) for c in table.columns]
    if with_pk and table.primary_key:
        defs.append(sql.SQL("PRIMARY KEY ({})").format(cols(table.primary_key)))
    return sql.SQL("CREATE TABLE IF NOT EXISTS {} ({}){}").format(
        ident(schema, table.name), sql.SQL(", ").join(defs), dialect.table_options(table)
    )


def keys_in(schema: str, table: Table, keys: Sequence[str]) -> sql.Composed:
    """Which of ``keys`` a key-valued table (ledger, quarantine) already holds."""
    return sql.SQL("SELECT {k} FROM {t} WHERE {k} IN ({v})").format(
        k=ident("key"), t=ident(schema, table.name), v=literals(keys)
    )


def ledger_insert(schema: str, entries: Sequence[tuple[str, str, int]], at: datetime) -> sql.Composed:
    rows = sql.SQL(", ").join(sql.SQL("({})").format(literals((*e, at))) for e in entries)
    return sql.SQL("INSERT INTO {} ({}) VALUES {}").format(
        ident(schema, LOAD_LEDGER.name), cols(LOAD_LEDGER.column_names), rows
    )


def quarantine_insert(schema: str, key: str, table: str, reason: str, detail: str, at: datetime) -> list:
    t = ident(schema, QUARANTINE.name)
    return [
        sql.SQL("DELETE FROM {} WHERE {} = {}").format(t, ident("key"), sql.Literal(key)),
        sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            t, cols(QUARANTINE.column_names), literals((key, table, reason, detail[:2000], at))
        ),
    ]


def freshness_update(schema: str, table: str, newest: sql.Composable, at: datetime) -> list[sql.Composed]:
    """Raise the table's watermark to ``newest`` (an expression; never lowered) and stamp
    the load time."""
    t, name, n = ident(schema, FRESHNESS.name), sql.Literal(table), ident("newest_received_at")
    return [
        sql.SQL("UPDATE {t} SET {n} = CASE WHEN {n} IS NULL OR {n} < {v} THEN {v} ELSE {n} END, {l} = {at} "
                "WHERE {tn} = {name}").format(
            t=t, n=n, v=newest, l=ident("loaded_at"), at=sql.Literal(at), tn=ident("table_name"), name=name
        ),
        sql.SQL("INSERT INTO {t} ({c}) SELECT {name}, {v}, {at} WHERE NOT EXISTS "
                "(SELECT 1 FROM {t} WHERE {tn} = {name})").format(
            t=t, c=cols(FRESHNESS.column_names), name=name, v=newest, at=sql.Literal(at),
            tn=ident("table_name"),
        ),
    ]  # fmt: skip


def freshness_of(schema: str, table: str) -> sql.Composed:
    return sql.SQL("SELECT {} FROM {} WHERE {} = {}").format(
        ident("newest_received_at"), ident(schema, FRESHNESS.name), ident("table_name"), sql.Literal(table)
    )


def newest_staged(dialect: Dialect, table: str) -> sql.Composable:
    """The newest ``received_at`` among the staged rows (events), else NULL."""
    if table != "events":
        return sql.SQL("CAST(NULL AS TIMESTAMPTZ)")
    return sql.SQL("(SELECT MAX(s.{r}) FROM ({src}) AS s)").format(
        r=ident("received_at"), src=dialect.typed_source(table)
    )


def deltas_insert(dialect: Dialect, schema: str, table: str, at: datetime) -> sql.Composed:
    """Every staged delta line, kept with its batch key (contracts §5)."""
    deltas = DELTAS[table]
    names = [c for c in deltas.column_names if c != "loaded_at"]
    return sql.SQL("INSERT INTO {} ({}, {}) SELECT {}, {} FROM ({}) AS s").format(
        ident(schema, deltas.name), cols(names), ident("loaded_at"),
        cols(names, "s"), sql.Literal(at), dialect.typed_source(table),
    )  # fmt: skip


def _grouped(select_from: sql.Composable, keys: Sequence[str], where: sql.Composable) -> sql.Composed:
    return sql.SQL("SELECT {k}, SUM(s.{e}) AS {e}, SUM(s.{u}) AS {u} FROM {f} WHERE {w} GROUP BY {k}").format(
        k=cols(keys, "s"), e=ident("event_count"), u=ident("user_count"), f=select_from, w=where
    )


def _with_final_state(source: sql.Composable, schema: str) -> sql.Composed:
    """``source AS s`` joined with its day's status (``ds``), watermark (``wm``) and, when the
    day is final, the recorded batch of the same key (``fb``)."""
    return sql.SQL(
        "{src} AS s LEFT JOIN {ds} AS ds ON ds.{d} = s.{d} LEFT JOIN {wm} AS wm ON wm.{d} = s.{d} "
        "LEFT JOIN {fb} AS fb ON fb.{d} = s.{d} AND fb.{k} = s.{k}"
    ).format(
        src=source, ds=ident(schema, DAY_STATUS.name), wm=ident(schema, DAY_WATERMARK.name),
        fb=ident(schema, FINAL_BATCHES.name), d=ident("day"), k=ident("batch_key"),
    )  # fmt: skip


# A delta is not inside its day's final rows: the day is not final; or it is final with a
# watermark and the delta's batch is not one the job listed; or (days made final before
# migration 3, no watermark) it was received after the cutoff day.
_NOT_INSIDE_FINAL = sql.SQL(
    "ds.{d} IS NULL OR NOT ds.{f} "
    "OR (wm.{d} IS NOT NULL AND fb.{k} IS NULL) "
    "OR (wm.{d} IS NULL AND (ds.{c} IS NULL OR s.{r} > ds.{c}))"
).format(d=ident("day"), f=ident("is_final"), k=ident("batch_key"), c=ident("cutoff_day"),
         r=ident("received_day"))  # fmt: skip


def counts_source(dialect: Dialect, schema: str, table: str) -> list[sql.Composed]:
    """Staged deltas summed per row, minus those already inside a final day (contracts §5)."""
    keys = TARGETS[table].primary_key
    source = _with_final_state(sql.SQL("({})").format(dialect.typed_source(table)), schema)
    return dialect.temp_table(SRC, sql.SQL("AS {}").format(_grouped(source, keys, _NOT_INSIDE_FINAL)))


def touch_final_days(dialect: Dialect, schema: str, table: str, at: datetime) -> sql.Composed:
    """Mark final days (with a watermark) that staged deltas reach from outside their final
    rows: their event counts are added now, their user counts need the next nightly."""
    wm = DAY_WATERMARK.name
    touched = sql.SQL(
        "SELECT s.{d}, MAX(s.{r}) AS {r} FROM {src} WHERE ds.{f} AND wm.{d} IS NOT NULL "
        "AND fb.{k} IS NULL GROUP BY s.{d}"
    ).format(
        d=ident("day"), r=ident("received_day"), f=ident("is_final"), k=ident("batch_key"),
        src=_with_final_state(sql.SQL("({})").format(dialect.typed_source(table)), schema),
    )  # fmt: skip
    return sql.SQL(
        "UPDATE {t} SET {ta} = COALESCE({ta}, {at}), {tr} = CASE WHEN {tr} IS NULL OR {tr} < x.{r} "
        "THEN x.{r} ELSE {tr} END FROM ({touched}) AS x WHERE {w}.{d} = x.{d}"
    ).format(
        t=ident(schema, wm), w=ident(wm), ta=ident("touched_at"), tr=ident("touched_received_day"),
        at=sql.Literal(at), r=ident("received_day"), d=ident("day"), touched=touched,
    )  # fmt: skip


def late_deltas_source(dialect: Dialect, schema: str, table: str, day: date) -> list[sql.Composed]:
    """Kept deltas of ``day`` whose batch the final rows do not contain (``final_batches``
    of the day must be recorded first, in the same transaction)."""
    keys = TARGETS[table].primary_key
    source = sql.SQL("{} AS s LEFT JOIN {} AS fb ON fb.{d} = s.{d} AND fb.{k} = s.{k}").format(
        ident(schema, DELTAS[table].name), ident(schema, FINAL_BATCHES.name), d=ident("day"),
        k=ident("batch_key"),
    )  # fmt: skip
    keep = sql.SQL("s.{} = {} AND fb.{} IS NULL").format(ident("day"), sql.Literal(day), ident("batch_key"))
    return dialect.temp_table(SRC, sql.SQL("AS {}").format(_grouped(source, keys, keep)))


def record_final_batches(schema: str, day: date, keys: Sequence[str], chunk: int = 1000) -> list:
    """The batches ``day``'s final rows contain, replacing any earlier record."""
    t = ident(schema, FINAL_BATCHES.name)
    unique = sorted(set(keys))
    out = [sql.SQL("DELETE FROM {} WHERE {} = {}").format(t, ident("day"), sql.Literal(day))]
    for at in range(0, len(unique), chunk):
        rows = sql.SQL(", ").join(sql.SQL("({})").format(literals((day, k))) for k in unique[at : at + chunk])
        out.append(sql.SQL("INSERT INTO {} ({}) VALUES {}").format(t, cols(FINAL_BATCHES.column_names), rows))
    return out


def record_watermark(schema: str, day: date, objects: int, at: datetime) -> list[sql.Composed]:
    """``day`` final as of ``at``, untouched since."""
    t = ident(schema, DAY_WATERMARK.name)
    return [
        sql.SQL("DELETE FROM {} WHERE {} = {}").format(t, ident("day"), sql.Literal(day)),
        sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            t, cols(DAY_WATERMARK.column_names), literals((day, objects, at, None, None))
        ),
    ]


def merge_add(schema: str, table: str) -> sql.Composed:
    """Add ``ep_src``'s counts to the target rows; new rows are provisional (not final)."""
    target = TARGETS[table]
    keys, name = target.primary_key, target.name
    return sql.SQL(
        "MERGE INTO {t} USING {s} ON {on} WHEN MATCHED THEN UPDATE SET {set} "
        "WHEN NOT MATCHED THEN INSERT ({ins}, {f}) VALUES ({vals}, FALSE)"
    ).format(
        t=ident(schema, name), s=ident(SRC), on=keys_match(keys, name, SRC),
        set=sql.SQL(", ").join(
            sql.SQL("{c} = {t}.{c} + {s}.{c}").format(c=ident(c), t=ident(name), s=ident(SRC)) for c in COUNTS
        ),
        ins=cols([*keys, *COUNTS]), f=ident("is_final"), vals=cols([*keys, *COUNTS], SRC),
    )  # fmt: skip


def earliest_wins(
    dialect: Dialect, schema: str, table: str, order: Sequence[str], source: sql.Composable | None = None
) -> list[sql.Composed]:
    """Upsert where the earliest copy by ``order`` wins (assignments, identities; events on
    Redshift), as dedup-then-delete/insert: no constraint needed, the caller holds the table
    lock. ``source`` (default: the staged rows of ``table``) yields the table's columns."""
    target = IDENTITIES if table == IDENTITIES.name else TARGETS[table]
    keys, names, name = target.primary_key, target.column_names, target.name
    ranked = sql.SQL(
        "SELECT {c}, ROW_NUMBER() OVER (PARTITION BY {k} ORDER BY {o}) AS ep_rn FROM ({src}) AS s"
    ).format(
        c=cols(names, "s"), k=cols(keys, "s"), o=cols(order, "s"),
        src=dialect.typed_source(table) if source is None else source,
    )  # fmt: skip
    first = sql.SQL("AS SELECT {} FROM ({}) AS r WHERE r.ep_rn = 1").format(cols(names, "r"), ranked)
    # the row already in the warehouse wins ties: replaying a copy never rewrites a row
    existing_wins = sql.SQL(" OR ").join(
        sql.SQL("({})").format(
            sql.SQL(" AND ").join(
                [sql.SQL("t.{c} = {s}.{c}").format(c=ident(c), s=ident(SRC)) for c in order[:i]]
                + [sql.SQL("t.{c} {op} {s}.{c}").format(
                    c=ident(order[i]), s=ident(SRC), op=sql.SQL("<=" if i == len(order) - 1 else "<"))]
            )
        )
        for i in range(len(order))
    )  # fmt: skip
    return [
        *dialect.temp_table(SRC, first),
        sql.SQL("DELETE FROM {s} USING {t} AS t WHERE {on} AND ({w})").format(
            s=ident(SRC), t=ident(schema, name), on=keys_match(keys, "t", SRC), w=existing_wins
        ),
        sql.SQL("DELETE FROM {t} USING {s} WHERE {on}").format(
            t=ident(schema, name), s=ident(SRC), on=keys_match(keys, name, SRC)
        ),
        sql.SQL("INSERT INTO {t} ({c}) SELECT {c} FROM {s}").format(
            t=ident(schema, name), c=cols(names), s=ident(SRC)
        ),
    ]


def delete_day(schema: str, table: str, day: date) -> sql.Composed:
    return sql.SQL("DELETE FROM {} WHERE {} = {}").format(
        ident(schema, table), ident("day"), sql.Literal(day)
    )


def insert_final(dialect: Dialect, schema: str, table: str) -> sql.Composed:
    """The nightly job's corrected rows (staged as ``<table>:final``), marked final."""
    names = [c for c in TARGETS[table].column_names if c != "is_final"]
    return sql.SQL("INSERT INTO {t} ({c}, {f}) SELECT {sc}, TRUE FROM ({src}) AS s").format(
        t=ident(schema, table), c=cols(names), f=ident("is_final"), sc=cols(names, "s"),
        src=dialect.typed_source(f"{table}:final"),
    )  # fmt: skip


def mark_day_final(schema: str, day: date, cutoff: date, at: datetime) -> list[sql.Composed]:
    t = ident(schema, DAY_STATUS.name)
    return [
        sql.SQL("DELETE FROM {} WHERE {} = {}").format(t, ident("day"), sql.Literal(day)),
        sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            t, cols(DAY_STATUS.column_names), literals((day, True, cutoff, at))
        ),
    ]
