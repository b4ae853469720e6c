"""The warehouse tables the loader owns, as data (pure).

Column kinds are dialect-neutral; each dialect maps them to its own types (``jsonb`` on
PostgreSQL, ``SUPER`` on Redshift). Contract tables keep DESIGN.md's names and meaning;
``events`` gains a few extra columns so a raw line is stored without loss.
"""

from __future__ import annotations

from dataclasses import dataclass

# dialect-neutral column kinds
ID, TEXT, TS, DATE, BIGINT, BOOL, JSON, INT = "id", "text", "ts", "date", "bigint", "bool", "json", "int"


@dataclass(frozen=True)
class Column:
    name: str
    kind: str
    not_null: bool = False
    json_key: str | None = None  # key in the S3 line; None: same as name
    default: str | None = None  # "false" or "now" (dialects render them)

    @property
    def key(self) -> str:
        return self.json_key or self.name


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


# a flagging tracking plan's errors (services/ingest/trackingplan.py); NULL when none.
# Added by migration 5: migration 1 creates ``events`` without it
TRACKING_PLAN_VIOLATIONS = Column("tracking_plan_violations", JSON, json_key="trackingPlanViolations")

EVENTS = Table(
    "events",
    (
        Column("message_id", ID, True, "messageId"),
        Column("type", ID, True),
        Column("event", TEXT),
        Column("user_id", ID, json_key="userId"),
        Column("anonymous_id", ID, json_key="anonymousId"),
        Column("source", ID, True),
        Column("timestamp", TS, True),
        Column("received_at", TS, True, "receivedAt"),
        Column("sent_at", TS, json_key="sentAt"),
        Column("original_timestamp", TS, json_key="originalTimestamp"),
        Column("properties", JSON),
        Column("traits", JSON),
        Column("context", JSON),
        # extra (not in the contract): page/screen name, group/alias ids, integrations
        Column("name", TEXT),
        Column("group_id", ID, json_key="groupId"),
        Column("previous_id", ID, json_key="previousId"),
        Column("integrations", JSON),
        TRACKING_PLAN_VIOLATIONS,
    ),
    ("message_id",),
)

_COUNTS = (Column("event_count", BIGINT, True), Column("user_count", BIGINT, True))
_FINAL = Column("is_final", BOOL, True, default="false")

ENGAGEMENT_DAILY = Table(
    "engagement_daily",
    (Column("day", DATE, True), Column("event", TEXT, True), *_COUNTS, _FINAL),
    ("day", "event"),
)
EXPERIMENT_DAILY = Table(
    "experiment_daily",
    (
        Column("day", DATE, True),
        Column("experiment_id", ID, True),
        Column("variant", ID, True),
        Column("event", TEXT, True),
        *_COUNTS,
        _FINAL,
    ),
    ("day", "experiment_id", "variant", "event"),
)
EXPERIMENT_ASSIGNMENTS = Table(
    "experiment_assignments",
    (
        Column("experiment_id", ID, True),
        Column("user_key", ID, True),
        Column("variant", ID, True),
        Column("first_exposed_at", TS, True),
    ),
    ("experiment_id", "user_key"),
)


def deltas_table(target: Table) -> Table:
    """``<table>_deltas``: every streamed delta line, with the batch it came from."""
    keys = [c for c in target.columns if c.name in target.primary_key]
    return Table(
        f"{target.name}_deltas",
        (
            Column("batch_key", TEXT, True),
            *keys,
            Column("received_day", DATE, True),
            *_COUNTS,
            Column("loaded_at", TS, True, default="now"),
        ),
    )


ENGAGEMENT_DELTAS = deltas_table(ENGAGEMENT_DAILY)
EXPERIMENT_DELTAS = deltas_table(EXPERIMENT_DAILY)

# identity links (docs/contracts.md section 7), derived from the identify/alias rows of every
# `events` load in the same transaction: one row per link event, its canonical copy
IDENTITIES = Table(
    "identities",
    (
        Column("message_id", ID, True),
        Column("anonymous_id", ID, True),  # the linked id: an anonymousId, or an alias's previousId
        Column("user_id", ID, True),
        Column("linked_at", TS, True),  # the link event's corrected timestamp
        Column("received_at", TS, True),
    ),
    ("message_id",),
)

LOAD_LEDGER = Table(
    "load_ledger",
    (
        Column("key", TEXT, True),
        Column("table_name", ID, True),
        Column("rows", BIGINT, True),
        Column("loaded_at", TS, True, default="now"),
    ),
    ("key",),
)
DAY_STATUS = Table(
    "day_status",
    (
        Column("day", DATE, True),
        Column("is_final", BOOL, True, default="false"),
        Column("cutoff_day", DATE),
        Column("finalized_at", TS),
    ),
    ("day",),
)
# What a final day's rows already contain (docs/contracts.md §6): the aggregate batches cut
# with the raw objects the nightly job listed. A delta of a final day whose batch is not
# here is added to the row and touches the day (``day_watermark.touched_at``).
FINAL_BATCHES = Table(
    "final_batches",
    (Column("day", DATE, True), Column("batch_key", TEXT, True)),
    ("day", "batch_key"),
)
DAY_WATERMARK = Table(  # one row per day made final since migration 3
    "day_watermark",
    (
        Column("day", DATE, True),
        Column("batches", BIGINT, True),  # raw objects listed (read or quarantined)
        Column("recorded_at", TS, True),
        Column("touched_at", TS),  # first delta added after the final rows, or NULL
        Column("touched_received_day", DATE),  # newest received day of those deltas
    ),
    ("day",),
)
FRESHNESS = Table(  # per loaded table: newest receivedAt loaded, and when
    "freshness",
    (Column("table_name", ID, True), Column("newest_received_at", TS), Column("loaded_at", TS, True)),
    ("table_name",),
)
LOADER_STATE = Table(  # small key/value store: the S3 discovery watermark
    "loader_state",
    (Column("name", ID, True), Column("value", TEXT, True), Column("updated_at", TS, True, default="now")),
    ("name",),
)
QUARANTINE = Table(
    "quarantine",
    (
        Column("key", TEXT, True),
        Column("table_name", ID, True),
        Column("reason", ID, True),
        Column("detail", TEXT),
        Column("quarantined_at", TS, True, default="now"),
    ),
    ("key",),
)
SCHEMA_MIGRATIONS = Table(
    "schema_migrations",
    (Column("version", INT, True), Column("name", TEXT, True), Column("applied_at", TS, True, default="now")),
    ("version",),
)

TARGETS = {t.name: t for t in (EVENTS, ENGAGEMENT_DAILY, EXPERIMENT_DAILY, EXPERIMENT_ASSIGNMENTS)}
DELTAS = {ENGAGEMENT_DAILY.name: ENGAGEMENT_DELTAS, EXPERIMENT_DAILY.name: EXPERIMENT_DELTAS}
AGGREGATES = tuple(DELTAS)


def delta_line_columns(target: Table) -> list[Column]:
    """Columns of an ``agg/<target>`` line (contracts §3), in the order staging holds them."""
    return [c for c in deltas_table(target).columns if c.name not in ("batch_key", "loaded_at")]


FINAL = ":final"  # shape suffix: nightly corrections (totals, no received_day)


def line_columns(shape: str) -> list[Column]:
    """What a line of an S3 object of ``shape`` carries: a table name (streamed batches)
    or ``<table>:final`` (the nightly job's corrections, contracts §3)."""
    table, _, final = shape.partition(":")
    target = TARGETS[table]
    if final:
        return [c for c in target.columns if c.name != "is_final"]
    if table in DELTAS:
        return delta_line_columns(target)
    return list(target.columns)
