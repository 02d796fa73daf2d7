# ruff: noqa: S608 -- identifiers come from model metadata, constants are checked tokens
"""Row counts kept by the database as rows change, so a scrape reads a few rows, not history.

`GET /metrics` reports how many processes are in each state. Counting them when asked reads
every row: 66 ms for 100,000 processes on PostgreSQL against 2 ms for kept counts, growing
with history (bench/metrics_scrape.py). Instead, each app declares a `RowCounter` (which
table, which columns form the key, which counts table holds the numbers) and triggers in the
database record every INSERT, UPDATE and DELETE of the counted table in the counts table,
whichever code path wrote the row: the ORM, a conditional `update()`, a sweep, COPY, the
admin or psql. No service has to remember to count.

The counts table is a ledger of deltas: a trigger only INSERTs rows (the statement's net
change per key), it never updates a shared count row. So a trigger takes no row lock that
another transaction could hold, and it cannot join a lock cycle with the locks the services
take (a request's row, the tenant's daily spend row: see "Lock order" in the README). The
count of a key is the SUM of its rows; `compact_row_counts()` folds each key's rows into one
(at every scrape and on the periodic schedule), so a scrape sums about one row per key plus
what was written since the last compaction.

- PostgreSQL: statement-level AFTER triggers with transition tables, one INSERT of the net
  change per key per statement; compaction is one `WITH gone AS (DELETE … RETURNING) INSERT
  … SELECT SUM` statement, so exactly the rows it removed are folded, whatever commits
  meanwhile.
- SQLite: row-level triggers keeping one row per key up to date (SQLite serialises writers,
  so a shared row cannot take part in a deadlock there).

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

__all__ = [
    "RowCounter",
    "compact_row_counts",
    "install_row_counters",
    "register_row_counter",
    "row_counters",
]

_NAME = re.compile(r"[a-z][a-z0-9_]{0,40}")
_CONSTANT = re.compile(r"[A-Za-z0-9_.:-]{1,100}")


@dataclass(frozen=True)
class RowCounter:
    """Counts of `source` rows per tenant and key, kept in `counts`.

    `key` maps a field of `counts` to the field of `source` it is copied from; `constants`
    maps a field of `counts` to a fixed value (when several tables share one counts table,
    e.g. process_type="trace"). `counts` has a `tenant` foreign key, those fields and an
    integer `count`; a key's count is the sum of its rows (no unique constraint: triggers
    append deltas).
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

    def insert(self, select: str) -> str:
        return f"INSERT INTO {self.counts} ({self.target}, {self.count}) {select}"

    @property
    def own_rows(self) -> str:
        """The counts rows of this counter (several counters may share a counts table)."""
        constants = " AND ".join(
            f"{c} = {v}" for c, v in zip(self.constant_columns, self.constant_values, strict=True)
        )
        return constants or "1 = 1"

    def compact_postgres(self) -> str:
        columns = ", ".join([self.tenant, *self.key_columns, *self.constant_columns])
        return (
            f"WITH gone AS (DELETE FROM {self.counts} WHERE {self.own_rows} "
            f"RETURNING {columns}, {self.count}) "
            f"INSERT INTO {self.counts} ({columns}, {self.count}) "
            f"SELECT {columns}, SUM({self.count}) FROM gone GROUP BY {columns}"
        )

    def grouped(self, rows: str, delta: str, having: str = "") -> str:
        positions = ", ".join(str(i) for i in range(1, 2 + len(self.key_sources)))
        return (f"SELECT {self.selected()}, {delta} FROM {rows} GROUP BY {positions} "
                f"{having} ORDER BY {positions}")

    def recount(self) -> list[str]:
        return [
            f"DELETE FROM {self.counts} WHERE {self.own_rows}",
            self.insert(self.grouped(self.source, "COUNT(*)")),
        ]


def _postgres_statements(sql: _Sql) -> list[str]:
    changed = (
        f"(SELECT {sql.selected()}, 1 AS delta FROM new_rows UNION ALL "
        f"SELECT {sql.selected()}, -1 FROM old_rows) AS changed"
    )
    # Kept by trigger rather than counted per scrape: bench/metrics_scrape.py. Insert-only,
    # so the trigger takes no lock on rows other transactions write.
    body = f"""
BEGIN
  IF TG_OP = 'INSERT' THEN
    {sql.insert(sql.grouped("new_rows", "COUNT(*)"))};
  ELSIF TG_OP = 'DELETE' THEN
    {sql.insert(sql.grouped("old_rows", "-COUNT(*)"))};
  ELSE
    {sql.insert(sql.grouped(changed, "SUM(delta)", "HAVING SUM(delta) <> 0"))};
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
    """Row triggers keeping one row per key: SQLite runs one writer at a time, so updating
    a shared count row cannot deadlock there. A delete only decrements (it never inserts a
    row for a tenant a flush or cascade may be removing in the same transaction)."""

    def add(alias: str, amount: int, *, insert_missing: bool) -> str:
        values = [f"{alias}.{sql.source_tenant}", *(f"{alias}.{c}" for c in sql.key_sources),
                  *sql.constant_values]
        match = " AND ".join(
            f"{column} = {value}" for column, value in
            zip([sql.tenant, *sql.key_columns, *sql.constant_columns], values, strict=True)
        )
        statement = (f"UPDATE {sql.counts} SET {sql.count} = {sql.count} + ({amount}) "
                     f"WHERE rowid = (SELECT rowid FROM {sql.counts} WHERE {match} LIMIT 1);")
        if insert_missing:
            statement += " " + sql.insert(
                f"SELECT {', '.join(values)}, {amount} "
                f"WHERE NOT EXISTS (SELECT 1 FROM {sql.counts} WHERE {match})") + ";"
        return statement

    key_changed = " OR ".join(
        f"OLD.{c} IS NOT NEW.{c}" for c in [sql.source_tenant, *sql.key_sources]
    )
    statements = []
    bodies = {
        "ins": ("INSERT", "", add("NEW", 1, insert_missing=True)),
        "upd": ("UPDATE", f"WHEN {key_changed}",
                add("OLD", -1, insert_missing=False) + " " + add("NEW", 1, insert_missing=True)),
        "del": ("DELETE", "", add("OLD", -1, insert_missing=False)),
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


def compact_row_counts(counters: list[RowCounter] | None = None, *,
                       using: str = "default") -> None:
    """Fold each key's delta rows into one, keeping every key's sum (and keys whose sum is
    0, so a series does not vanish). Runs at every /metrics scrape and on the periodic
    schedule; safe while writers append and while another compaction runs."""
    connection = connections[using]
    if connection.vendor not in ("postgresql", "sqlite"):
        return
    seen_tables: set[tuple[str, str]] = set()
    for counter in counters if counters is not None else row_counters():
        sql = _Sql(counter, connection)
        if (sql.counts, sql.own_rows) in seen_tables:
            continue
        seen_tables.add((sql.counts, sql.own_rows))
        with transaction.atomic(using=using), connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(sql.compact_postgres())
                continue
            # SQLite runs one writer at a time: read the sums, then replace the rows.
            columns = ", ".join([sql.tenant, *sql.key_columns, *sql.constant_columns])
            cursor.execute(f"SELECT {columns}, SUM({sql.count}) FROM {sql.counts} "
                           f"WHERE {sql.own_rows} GROUP BY {columns}")
            sums = cursor.fetchall()
            cursor.execute(f"DELETE FROM {sql.counts} WHERE {sql.own_rows}")
            if sums:
                marks = ", ".join(["%s"] * len(sums[0]))
                cursor.executemany(
                    f"INSERT INTO {sql.counts} ({columns}, {sql.count}) VALUES ({marks})", sums)


def _install_after_migrate(sender, using="default", **kwargs) -> None:
    mine = [c for c in row_counters() if c.source._meta.app_label == sender.label]
    if mine:
        install_row_counters(mine, using=using)


post_migrate.connect(_install_after_migrate, dispatch_uid="agent33_row_counters")
