# ruff: noqa: S608 -- identifiers come from model metadata, constants are checked tokens
"""Row counts kept by the database as rows change, so a scrape reads a few rows, not history.

`GET /metrics` reports how many processes are in each state. Counting them when asked reads
every row: 66 ms for 100,000 processes on PostgreSQL against 2 ms for kept counts, growing
with history (bench/metrics_scrape.py). Instead, each app declares a `RowCounter` (which
table, which columns form the key, which counts table holds the numbers) and triggers in the
database keep the counts table right on every INSERT, UPDATE and DELETE of the counted table,
whichever code path wrote the row: the ORM, a conditional `update()`, a hand-written
statement, a sweep, COPY, the admin or psql. No service has to remember to count.

- PostgreSQL: statement-level AFTER triggers with transition tables; each statement adds its
  net change per key in one upsert, keys in sorted order, so two statements never take the
  counts rows' locks in opposite orders.
- SQLite: row-level triggers (SQLite serialises writers anyway).

The triggers are (re)installed after every `migrate` (post_migrate; test databases built
without migrations get them too). The first install recounts the table under a lock that
holds writers back meanwhile; `manage.py recount_rows` recounts on demand.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from django.db import connections, models, transaction
from django.db.models.signals import post_migrate

__all__ = ["RowCounter", "install_row_counters", "register_row_counter", "row_counters"]

_NAME = re.compile(r"[a-z][a-z0-9_]{0,40}")
_CONSTANT = re.compile(r"[A-Za-z0-9_.:-]{1,100}")


@dataclass(frozen=True)
class RowCounter:
    """Counts of `source` rows per tenant and key, kept in `counts`.

    `key` maps a field of `counts` to the field of `source` it is copied from; `constants`
    maps a field of `counts` to a fixed value (when several tables share one counts table,
    e.g. process_type="trace"). `counts` has a `tenant` foreign key, those fields, an integer
    `count`, and a unique constraint on (tenant, *key, *constants).
    """

    name: str
    source: type[models.Model]
    counts: type[models.Model]
    key: Mapping[str, str]
    constants: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"RowCounter name {self.name!r}: lowercase letters, digits, _")
        for value in self.constants.values():
            if not _CONSTANT.fullmatch(value):
                raise ValueError(f"RowCounter constant {value!r} is not a plain token")


_counters: dict[str, RowCounter] = {}


def register_row_counter(counter: RowCounter) -> None:
    _counters[counter.name] = counter


def row_counters() -> list[RowCounter]:
    return list(_counters.values())


# --- SQL ------------------------------------------------------------------------------------


class _Sql:
    """The identifiers of one counter on one connection."""

    def __init__(self, counter: RowCounter, connection) -> None:
        quote = connection.ops.quote_name
        src, cnt = counter.source._meta, counter.counts._meta
        self.source = quote(src.db_table)
        self.counts = quote(cnt.db_table)
        self.tenant = quote(cnt.get_field("tenant").column)
        self.source_tenant = quote(src.get_field("tenant").column)
        self.count = quote(cnt.get_field("count").column)
        self.key_columns = [quote(cnt.get_field(name).column) for name in counter.key]
        self.key_sources = [quote(src.get_field(name).column) for name in counter.key.values()]
        self.constant_columns = [quote(cnt.get_field(name).column) for name in counter.constants]
        self.constant_values = [f"'{value}'" for value in counter.constants.values()]
        self.function = f"agent33_count_{counter.name}"
        self.triggers = {op: f"agent33_count_{counter.name}_{op}" for op in ("ins", "upd", "del")}

    @property
    def target(self) -> str:
        return ", ".join([self.tenant, *self.key_columns, *self.constant_columns])

    def selected(self, prefix: str = "") -> str:
        return ", ".join(
            [f"{prefix}{self.source_tenant}", *(f"{prefix}{c}" for c in self.key_sources),
             *self.constant_values]
        )

    def upsert(self, select: str) -> str:
        return (
            f"INSERT INTO {self.counts} ({self.target}, {self.count}) {select} "
            f"ON CONFLICT ({self.target}) DO UPDATE "
            f"SET {self.count} = {self.counts}.{self.count} + EXCLUDED.{self.count}"
        )

    def grouped(self, rows: str, delta: str, having: str = "") -> str:
        positions = ", ".join(str(i) for i in range(1, 2 + len(self.key_sources)))
        return (f"SELECT {self.selected()}, {delta} FROM {rows} GROUP BY {positions} "
                f"{having} ORDER BY {positions}")

    def recount(self) -> list[str]:
        constants = " AND ".join(
            f"{c} = {v}" for c, v in zip(self.constant_columns, self.constant_values, strict=True)
        )
        return [
            f"DELETE FROM {self.counts}" + (f" WHERE {constants}" if constants else ""),
            # WHERE true: SQLite's parser needs it before ON CONFLICT after a SELECT.
            self.upsert(self.grouped(f"{self.source} WHERE 1 = 1", "COUNT(*)")),
        ]


def _postgres_statements(sql: _Sql) -> list[str]:
    changed = (
        f"(SELECT {sql.selected()}, 1 AS delta FROM new_rows UNION ALL "
        f"SELECT {sql.selected()}, -1 FROM old_rows) AS changed"
    )
    # Kept by trigger rather than counted per scrape: bench/metrics_scrape.py.
    body = f"""
BEGIN
  IF TG_OP = 'INSERT' THEN
    {sql.upsert(sql.grouped("new_rows", "COUNT(*)"))};
  ELSIF TG_OP = 'DELETE' THEN
    {sql.upsert(sql.grouped("old_rows", "-COUNT(*)"))};
  ELSE
    {sql.upsert(sql.grouped(changed, "SUM(delta)", "HAVING SUM(delta) <> 0"))};
  END IF;
  RETURN NULL;
END"""
    statements = [
        f"CREATE OR REPLACE FUNCTION {sql.function}() RETURNS trigger LANGUAGE plpgsql "
        f"AS $body${body}$body$"
    ]
    referencing = {
        "ins": ("INSERT", "NEW TABLE AS new_rows"),
        "upd": ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
        "del": ("DELETE", "OLD TABLE AS old_rows"),
    }
    for op, trigger in sql.triggers.items():
        event, tables = referencing[op]
        statements += [
            f"DROP TRIGGER IF EXISTS {trigger} ON {sql.source}",
            f"CREATE TRIGGER {trigger} AFTER {event} ON {sql.source} REFERENCING {tables} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {sql.function}()",
        ]
    return statements


def _sqlite_statements(sql: _Sql) -> list[str]:
    def row(alias: str) -> str:
        return ", ".join(
            [f"{alias}.{sql.source_tenant}", *(f"{alias}.{c}" for c in sql.key_sources),
             *sql.constant_values]
        )

    def decrement(alias: str) -> str:
        match = " AND ".join(
            f"{column} = {value}"
            for column, value in zip(
                [sql.tenant, *sql.key_columns, *sql.constant_columns],
                [f"{alias}.{sql.source_tenant}", *(f"{alias}.{c}" for c in sql.key_sources),
                 *sql.constant_values],
                strict=True,
            )
        )
        return f"UPDATE {sql.counts} SET {sql.count} = {sql.count} - 1 WHERE {match};"

    increment = sql.upsert(f"SELECT {row('NEW')}, 1 WHERE 1 = 1") + ";"
    key_changed = " OR ".join(
        f"OLD.{c} IS NOT NEW.{c}" for c in [sql.source_tenant, *sql.key_sources]
    )
    statements = []
    bodies = {
        "ins": ("INSERT", "", increment),
        "upd": ("UPDATE", f"WHEN {key_changed}", decrement("OLD") + " " + increment),
        "del": ("DELETE", "", decrement("OLD")),
    }
    for op, trigger in sql.triggers.items():
        event, when, body = bodies[op]
        statements += [
            f"DROP TRIGGER IF EXISTS {trigger}",
            f"CREATE TRIGGER {trigger} AFTER {event} ON {sql.source} {when} BEGIN {body} END",
        ]
    return statements


def _installed(sql: _Sql, connection) -> bool:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT COUNT(*) FROM pg_trigger WHERE tgname = ANY(%s) AND NOT tgisinternal",
                [list(sql.triggers.values())],
            )
        else:
            cursor.execute(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger' AND name IN "
                f"({', '.join(['%s'] * len(sql.triggers))})",
                list(sql.triggers.values()),
            )
        return cursor.fetchone()[0] == len(sql.triggers)


def install_row_counters(
    counters: list[RowCounter] | None = None, *, using: str = "default", recount: bool = False
) -> list[str]:
    """(Re)install the triggers of `counters` (default: all registered) whose tables exist;
    recount a table when its triggers were missing or `recount` is set. Returns the names of
    the counters recounted."""
    connection = connections[using]
    if connection.vendor not in ("postgresql", "sqlite"):
        return []
    tables = set(connection.introspection.table_names())
    recounted = []
    for counter in counters if counters is not None else row_counters():
        if not {counter.source._meta.db_table, counter.counts._meta.db_table} <= tables:
            continue
        sql = _Sql(counter, connection)
        with transaction.atomic(using=using), connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                # Writers wait while the triggers go in and the table is counted, so no row
                # is counted twice or missed.
                cursor.execute(f"LOCK TABLE {sql.source} IN SHARE ROW EXCLUSIVE MODE")
            fresh = recount or not _installed(sql, connection)
            statements = (_postgres_statements if connection.vendor == "postgresql"
                          else _sqlite_statements)(sql)
            for statement in statements:
                cursor.execute(statement)
            if fresh:
                for statement in sql.recount():
                    cursor.execute(statement)
                recounted.append(counter.name)
    return recounted


def _install_after_migrate(sender, using="default", **kwargs) -> None:
    mine = [c for c in row_counters() if c.source._meta.app_label == sender.label]
    if mine:
        install_row_counters(mine, using=using)


post_migrate.connect(_install_after_migrate, dispatch_uid="agent33_row_counters")
