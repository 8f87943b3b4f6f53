"""INSERTs built by hand for the writes every delivery makes, where the ORM's per-statement cost
(compiling the query, preparing each field) outweighs the database's own work several times over
(docs/performance.md). Values still go through each field's `get_db_prep_save`, so UUIDs, datetimes
and JSON are stored exactly as the ORM stores them, on SQLite and PostgreSQL alike.

Only for models without post-save behaviour: these INSERTs send no signals, so never use them on an
EventedModel.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, models, transaction

from .models import EventedModel


def insert_rows(
    model: type[models.Model],
    rows: list[dict[str, Any]],
    *,
    conflict: list[str] | None = None,
    update: dict[str, str] | None = None,
    using: str = DEFAULT_DB_ALIAS,
) -> int:
    """INSERT `rows` and return how many rows were written. A field a row leaves out gets the model's
    default, as `Model.objects.create` would give it (the auto-increment id is the database's).

    With `conflict` (the columns of a unique constraint), a row that collides is skipped (ON CONFLICT
    DO NOTHING), or, with `update`, the existing row is updated: {"count": "{table}.{column} + 1"}
    sets count to an SQL expression in which {table} and {column} name the existing row's, and
    `excluded.{column}` names the new row's value. With `update`, no two rows may share a conflict key
    (the database refuses to update one row twice in a statement): merge them first.
    """
    connection = transaction.get_connection(using)
    written = 0
    with connection.cursor() as cursor:
        for batch in _batches(model, rows, connection):
            cursor.execute(*_insert(model, batch, conflict=conflict, update=update, connection=connection))
            written += cursor.rowcount
    return written


def insert_new_rows(
    model: type[models.Model], rows: list[dict[str, Any]], *, conflict: list[str], returning: str
) -> set[Any]:
    """INSERT `rows`, skipping those whose `conflict` key exists, and return the `returning` field of
    the rows written, as the database stores it: compare with `db_value()` of the candidates. One
    statement answers "which of these are new?" for a whole set (INSERT … ON CONFLICT DO NOTHING
    RETURNING; SQLite has RETURNING since 3.35)."""
    connection = transaction.get_connection()
    column = connection.ops.quote_name(model._meta.get_field(returning).column)
    written: set[Any] = set()
    with connection.cursor() as cursor:
        for batch in _batches(model, rows, connection):
            sql, params = _insert(model, batch, conflict=conflict, update=None, connection=connection)
            cursor.execute(f"{sql} RETURNING {column}", params)
            written.update(row[0] for row in cursor.fetchall())
    return written


def db_value(model: type[models.Model], field_name: str, value: Any) -> Any:
    """`value` as the database stores it in `field_name` (a UUID is a hex string on SQLite)."""
    return model._meta.get_field(field_name).get_db_prep_save(value, transaction.get_connection())


def _batches(model: type[models.Model], rows: list[dict[str, Any]], connection) -> list[list[dict[str, Any]]]:
    """`rows` in as few INSERTs as the database's limit on a statement's parameters allows, by Django's
    own measure of it (as bulk_create batches): a receive's rows fit in one, a metrics flush's in one or
    a few. Inside a transaction the statements commit together; outside one, each commits alone."""
    size = max(1, connection.ops.bulk_batch_size(_written_fields(model), rows))
    return [rows[start : start + size] for start in range(0, len(rows), size)]


def _insert(
    model: type[models.Model],
    rows: list[dict[str, Any]],
    *,
    conflict: list[str] | None,
    update: dict[str, str] | None,
    connection,
) -> tuple[str, list[Any]]:
    if issubclass(model, EventedModel):
        raise TypeError(f"{model.__name__} records events on save; insert_rows() would silently drop them")
    fields = _written_fields(model)
    unknown = {name for row in rows for name in row} - {field.name for field in fields}
    if unknown:
        raise ValueError(f"{model.__name__} has no field {', '.join(sorted(unknown))}")
    sql = _insert_sql(
        model,
        connection.alias,
        len(rows),
        tuple(conflict) if conflict else None,
        tuple(update.items()) if conflict and update else None,
    )
    params = [
        field.get_db_prep_save(row[field.name] if field.name in row else field.get_default(), connection)
        for row in rows
        for field in fields
    ]
    return sql, params


@lru_cache(maxsize=256)
def _insert_sql(
    model: type[models.Model],
    using: str,
    row_count: int,
    conflict: tuple[str, ...] | None,
    update: tuple[tuple[str, str], ...] | None,
) -> str:
    """The INSERT's text, kept per shape: a receive's sets repeat the same few, and building one quoted
    a name per column on every call."""
    quote = connections[using].ops.quote_name
    meta = model._meta
    table = quote(meta.db_table)
    fields = _written_fields(model)
    placeholders = "(" + ", ".join(["%s"] * len(fields)) + ")"
    sql = (
        f"INSERT INTO {table} ({', '.join(quote(field.column) for field in fields)}) "
        f"VALUES {', '.join([placeholders] * row_count)}"
    )
    if conflict:
        sql += f" ON CONFLICT ({', '.join(quote(meta.get_field(name).column) for name in conflict)})"
        if update:
            assignments = (
                f"{quote(meta.get_field(name).column)} = "
                + expression.format(table=table, column=quote(meta.get_field(name).column))
                for name, expression in update
            )
            sql += " DO UPDATE SET " + ", ".join(assignments)
        else:
            sql += " DO NOTHING"
    return sql


@lru_cache(maxsize=64)
def _written_fields(model: type[models.Model]) -> tuple[models.Field, ...]:
    """Every column an INSERT writes: all but the auto-increment id, which is the database's."""
    meta = model._meta
    return tuple(field for field in meta.concrete_fields if field is not meta.auto_field)
