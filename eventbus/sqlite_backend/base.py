"""Django's SQLite backend, with two per-statement costs of the handler path memoised
(docs/performance.md, "SQLite's per-statement conversions"). settings.py selects it wherever
DATABASE_URL names SQLite; it is Django's backend in every other respect (its vendor is "sqlite").

- Django rewrites each statement's %s placeholders as SQLite's ? with a regular expression on every
  execute: 40–50 µs for a receive's ten-row INSERT. The rewrite is a pure function of the text, and
  the handler path runs the same few texts every delivery, so it is kept per text.
- Each aware datetime stored is made naive in the connection's time zone and then turned to text: 9–14
  µs, five or six times a delivery. A datetime already in that zone (every `timezone.now()`) needs
  only its tzinfo dropped, which is what Django's conversion comes to for it.
"""

from __future__ import annotations

import datetime
from functools import lru_cache

from django.conf import settings
from django.db.backends.sqlite3 import base, operations


@lru_cache(maxsize=512)
def _format_to_qmark(query: str) -> str:
    # Django's own rewrite, kept per text: for the format style it reads nothing of the cursor.
    return base.SQLiteCursorWrapper.convert_query(None, query)


class SQLiteCursorWrapper(base.SQLiteCursorWrapper):
    def convert_query(self, query, *, param_names=None):
        if param_names is None:
            return _format_to_qmark(query)
        return super().convert_query(query, param_names=param_names)


class DatabaseOperations(operations.DatabaseOperations):
    def adapt_datetimefield_value(self, value):
        # astimezone() into the zone a datetime already has returns it unchanged (by identity of the
        # tzinfo), so Django's make_naive comes to dropping the tzinfo; anything else takes its path.
        # USE_TZ first, as Django reads it: a connection's zone is cached, and a change of the setting
        # clears it only on the changing thread's connections, so it may be stale (or would be cached
        # as None) while time zone support is off.
        if (
            type(value) is datetime.datetime
            and value.tzinfo is not None
            and settings.USE_TZ
            and value.tzinfo is self.connection.timezone
        ):
            return str(value.replace(tzinfo=None))
        return super().adapt_datetimefield_value(value)


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations

    def create_cursor(self, name=None):
        return self.connection.cursor(factory=SQLiteCursorWrapper)
