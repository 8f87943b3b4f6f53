from django.core.checks import Error, Tags, register
from django.db import connections

# INSERT … RETURNING, with which the consumer dedupes a set of events in one statement
# (eventbus/rows.py); Django itself accepts SQLite from 3.31.
SQLITE_RETURNING = (3, 35, 0)


@register(Tags.database)
def sqlite_returns_inserted_rows(databases=None, **kwargs) -> list[Error]:
    errors = []
    for alias in databases or []:
        connection = connections[alias]
        if connection.vendor != "sqlite":
            continue
        version = connection.Database.sqlite_version_info
        if version < SQLITE_RETURNING:
            errors.append(
                Error(
                    f"SQLite {'.'.join(map(str, version))} has no INSERT … RETURNING, which every audit, "
                    "analytics and notification delivery uses.",
                    hint="Use a Python built with SQLite 3.35 or later, or PostgreSQL (DATABASE_URL).",
                    id="eventbus.E001",
                )
            )
    return errors
