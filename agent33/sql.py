"""Hand-written SQL for the few hot paths where the ORM's per-query cost is the latency.

A control or an outcome event is a handful of tiny statements; on this project's target
hardware the ORM spends about a millisecond of CPU building and running each, several times
what PostgreSQL spends answering it. These helpers keep those paths to plain parameterised
statements (values always parameters, identifiers always quoted) while rows still come back
as model instances converted exactly as the ORM would.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper

__all__ = [
    "Statement",
    "converted_values",
    "execute_together",
    "insert_instance",
    "insert_statement",
    "instance_from_row",
    "select_columns",
    "select_instance",
    "update_statement",
]

Statement = tuple[str, Sequence[Any]]


def execute_together(
    connection: BaseDatabaseWrapper, writes: Iterable[Statement], read: Statement | None = None
) -> list[tuple]:
    """Run `writes` and return the rows of `read`, which sees the database as it was before
    the writes (so it never sees their rows).

    On PostgreSQL this is ONE statement: each write becomes a data-modifying CTE of the read
    (all of them run exactly once, whether the read refers to them or not), which saves a
    round trip per write. Elsewhere the read runs first, then each write. Either way, call it
    inside a transaction when the writes must stand or fall together.
    """
    writes = list(writes)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql" and writes:
            ctes = ", ".join(f"w{index} AS ({sql})" for index, (sql, _) in enumerate(writes))
            params = [value for _, write_params in writes for value in write_params]
            read_sql, read_params = read or ("SELECT 1 WHERE FALSE", ())
            cursor.execute(f"WITH {ctes} {read_sql}", [*params, *read_params])
            return cursor.fetchall()
        rows: list[tuple] = []
        if read is not None:
            cursor.execute(*read)
            rows = cursor.fetchall()
        for sql, params in writes:
            cursor.execute(sql, params)
        return rows


def insert_statement(
    objs: models.Model | Sequence[models.Model], connection: BaseDatabaseWrapper
) -> Statement:
    """INSERT of new instances of one model (one row each), every concrete field's value
    prepared by the field as `save()` would; an auto primary key left unset is left to the
    database."""
    rows = [objs] if isinstance(objs, models.Model) else list(objs)
    meta = rows[0]._meta
    quote = connection.ops.quote_name
    fields = [
        field for field in meta.concrete_fields
        if not (field.primary_key and field.db_returning and rows[0].pk is None)
    ]
    placeholders = f"({', '.join(['%s'] * len(fields))})"
    sql = (
        f"INSERT INTO {quote(meta.db_table)} "  # noqa: S608
        f"({', '.join(quote(field.column) for field in fields)}) "
        f"VALUES {', '.join([placeholders] * len(rows))}"
    )
    params = [
        field.get_db_prep_save(getattr(obj, field.attname), connection)
        for obj in rows
        for field in fields
    ]
    return sql, params


def insert_instance[M: models.Model](obj: M, connection: BaseDatabaseWrapper) -> M:
    """Store a new instance with `insert_statement` and mark it saved. Only for models
    whose primary key is set before saving (the prefixed ids): nothing is read back."""
    with connection.cursor() as cursor:
        cursor.execute(*insert_statement(obj, connection))
    obj._state.adding = False
    obj._state.db = connection.alias
    return obj


def update_statement(
    model: type[models.Model],
    values: Mapping[str, Any],
    connection: BaseDatabaseWrapper,
    where: str,
    where_params: Sequence[Any],
) -> Statement:
    """UPDATE setting `values` (field name -> value, each prepared by its field as `save()`
    would) on the rows matching the SQL condition `where`."""
    quote = connection.ops.quote_name
    fields = _fields(model, list(values))
    sql = (
        f"UPDATE {quote(model._meta.db_table)} SET "  # noqa: S608
        f"{', '.join(f'{quote(field.column)} = %s' for field in fields)} WHERE {where}"
    )
    params = [field.get_db_prep_save(values[field.name], connection) for field in fields]
    return sql, [*params, *where_params]


def select_columns(
    model: type[models.Model],
    connection: BaseDatabaseWrapper,
    field_names: Sequence[str] | None = None,
) -> str:
    """The quoted columns of `field_names` (default: every concrete field, in
    `_meta.concrete_fields` order, as `instance_from_row` expects)."""
    quote = connection.ops.quote_name
    return ", ".join(quote(field.column) for field in _fields(model, field_names))


def converted_values(
    model: type[models.Model],
    row: Sequence[Any],
    connection: BaseDatabaseWrapper,
    field_names: Sequence[str] | None = None,
) -> list[Any]:
    """A row of `select_columns(model, connection, field_names)` with each value passed
    through the backend and field converters the ORM applies (aware datetimes on SQLite,
    JSON decoding, ...)."""
    values = []
    for field, value in zip(_fields(model, field_names), row, strict=True):
        column = field.get_col(model._meta.db_table)
        for convert in connection.ops.get_db_converters(column) + column.get_db_converters(
            connection
        ):
            value = convert(value, column, connection)
        values.append(value)
    return values


def select_instance[M: models.Model](
    model: type[M],
    connection: BaseDatabaseWrapper,
    where: str,
    params: Sequence[Any],
    *,
    annotations: Mapping[str, str] | None = None,
    lock: bool = False,
) -> M | None:
    """The first row of `model`'s table matching the SQL condition `where` (its values in
    `params`), as an instance, or None. `annotations` maps attribute names to SQL
    expressions selected with it (set on the instance as they come, unconverted); `lock`
    reads it FOR NO KEY UPDATE where the database has row locks. No tenant scope is added:
    the caller's `where` must say which tenant's row it reads."""
    quote = connection.ops.quote_name
    extra = "".join(f", {expression}" for expression in (annotations or {}).values())
    row_lock = lock and connection.features.has_select_for_no_key_update
    suffix = " FOR NO KEY UPDATE" if row_lock else ""
    sql = (
        f"SELECT {select_columns(model, connection)}{extra} "  # noqa: S608
        f"FROM {quote(model._meta.db_table)} WHERE {where}{suffix}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    width = len(model._meta.concrete_fields)
    instance = instance_from_row(model, row[:width], connection)
    for name, value in zip(annotations or {}, row[width:], strict=True):
        setattr(instance, name, value)
    return instance


def instance_from_row[M: models.Model](
    model: type[M], row: Sequence[Any], connection: BaseDatabaseWrapper
) -> M:
    """A model instance from a row of `select_columns(model, connection)`."""
    fields = model._meta.concrete_fields
    return model.from_db(
        connection.alias,
        [field.attname for field in fields],
        converted_values(model, row, connection),
    )


def _fields(
    model: type[models.Model], field_names: Sequence[str] | None
) -> Sequence[models.Field]:
    if field_names is None:
        return model._meta.concrete_fields
    return [model._meta.get_field(name) for name in field_names]
