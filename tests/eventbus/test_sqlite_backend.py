"""eventbus.sqlite_backend: Django's SQLite backend with its per-statement conversions kept. Whatever it
hands SQLite must be exactly what Django's own backend hands it."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from zoneinfo import ZoneInfo

import pytest
from django.db import connection, connections
from django.db.backends.sqlite3.base import DatabaseWrapper as DjangoWrapper
from django.db.backends.sqlite3.base import SQLiteCursorWrapper as DjangoCursor
from django.db.backends.sqlite3.operations import DatabaseOperations as DjangoOperations
from django.test import override_settings
from django.utils import timezone

from eventbus.sqlite_backend.base import DatabaseWrapper

pytestmark = pytest.mark.django_db


class Stamp(dt.datetime):
    """A datetime subclass, which only Django's own conversion may handle."""


PARIS = ZoneInfo("Europe/Paris")
DATETIMES = [
    None,
    timezone.now(),
    dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC),  # no microseconds: str() leaves them out
    dt.datetime(2026, 11, 27, 12, 0, 0, 1, tzinfo=PARIS),
    dt.datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=PARIS),  # the second 02:30 of the night clocks go back
    dt.datetime(2026, 3, 29, 2, 30, tzinfo=PARIS),  # an hour that does not exist in Paris
    dt.datetime(2026, 11, 27, 12, 0, tzinfo=ZoneInfo("UTC")),
    dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
    Stamp(2026, 11, 27, 12, 0, tzinfo=dt.UTC),
]


def test_the_local_database_runs_on_this_backend():
    assert isinstance(connections["default"], DatabaseWrapper)
    assert connection.vendor == "sqlite"


def test_the_local_database_writes_ahead_and_keeps_its_temporary_files_in_memory():
    with connection.cursor() as cursor:
        pragmas = {name: cursor.execute(f"PRAGMA {name}").fetchone()[0] for name in ("journal_mode", "temp_store")}
    assert pragmas == {"journal_mode": "wal", "temp_store": 2}  # 2 is MEMORY


@pytest.mark.parametrize("database_time_zone", [None, "Europe/Paris"])
@pytest.mark.parametrize("value", DATETIMES, ids=repr)
def test_datetimes_are_stored_as_djangos_backend_stores_them(database_time_zone, value):
    # A connection whose TIME_ZONE is Paris holds the very ZoneInfo object of PARIS (zoneinfo keeps one
    # per key), so Paris times take the short path there and UTC ones take it on the default connection.
    wrapper = DatabaseWrapper({**connection.settings_dict, "TIME_ZONE": database_time_zone}, alias="zoned")

    assert wrapper.ops.adapt_datetimefield_value(value) == DjangoOperations(wrapper).adapt_datetimefield_value(value)


def test_a_naive_datetime_is_stored_as_djangos_backend_stores_it():
    naive = dt.datetime(2026, 11, 27, 12, 0, 0, 250)

    assert connection.ops.adapt_datetimefield_value(naive) == "2026-11-27 12:00:00.000250"


def test_an_aware_datetime_without_time_zone_support_is_refused_as_django_refuses_it(settings):
    settings.USE_TZ = False

    with pytest.raises(ValueError, match="USE_TZ is False"):
        connection.ops.adapt_datetimefield_value(dt.datetime(2026, 11, 27, tzinfo=dt.UTC))


@pytest.mark.parametrize(
    "query",
    [
        "SELECT %s",
        "SELECT '100%%', %s",
        "SELECT '%%s', %s, '%%%%'",
        'INSERT INTO "t" ("a", "b") VALUES (%s, %s), (%s, %s) ON CONFLICT ("a") DO NOTHING',
    ],
)
def test_placeholders_are_rewritten_as_djangos_backend_rewrites_them(query):
    with connection.cursor() as cursor:
        sqlite_cursor = cursor.cursor
        for _ in range(2):  # the second from what was kept
            assert sqlite_cursor.convert_query(query) == DjangoCursor.convert_query(sqlite_cursor, query)


def test_statements_run_with_either_placeholder_style():
    with connection.cursor() as cursor:
        for _ in range(2):
            cursor.execute("SELECT '100%%', %s", ["a"])
            assert cursor.fetchone() == ("100%", "a")
            cursor.execute("SELECT %(first)s, %(second)s", {"second": 2, "first": 1})
            assert cursor.fetchone() == (1, 2)


# A change of USE_TZ or TIME_ZONE clears the cached zone only on the connections of the thread that
# makes it (django.test.signals); another thread's connection, a worker's, keeps the zone it cached.
AWARE_NOON_UTC = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)


def _adapt(wrapper, value):
    try:
        return wrapper.ops.adapt_datetimefield_value(value)
    except ValueError as exc:
        return f"ValueError: {exc}"


@pytest.fixture
def other_thread():
    """One long-lived thread, as a worker's: each submit runs in the same thread, with its own connections."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield lambda fn: pool.submit(fn).result(timeout=30)


def _both(state):
    """This thread's project connection and, for comparison, a stock Django SQLite wrapper on the same settings."""
    ours = connections["default"]
    state["ours"] = ours
    state["stock"] = DjangoWrapper(ours.settings_dict, alias="default")


def test_an_aware_datetime_is_refused_without_time_zone_support_on_another_threads_connection(other_thread):
    state = {}

    def before():
        _both(state)
        # Any earlier datetime write or read in this thread caches the connection's zone (UTC).
        assert state["ours"].timezone is dt.UTC
        assert state["stock"].timezone is dt.UTC

    other_thread(before)

    with override_settings(USE_TZ=False):
        stock = other_thread(lambda: _adapt(state["stock"], AWARE_NOON_UTC))
        ours = other_thread(lambda: _adapt(state["ours"], AWARE_NOON_UTC))

    assert stock.startswith("ValueError: SQLite backend does not support timezone-aware datetimes")
    assert ours == stock


def test_a_write_refused_without_time_zone_support_leaves_the_connections_zone_as_it_was(other_thread):
    state = {}
    other_thread(lambda: _both(state))

    with override_settings(TIME_ZONE="Europe/Paris"):
        with override_settings(USE_TZ=False):
            # Refused by both, and the zone they cache must not become None meanwhile.
            assert other_thread(lambda: _adapt(state["stock"], AWARE_NOON_UTC)).startswith("ValueError")
            assert other_thread(lambda: _adapt(state["ours"], AWARE_NOON_UTC)).startswith("ValueError")

        # USE_TZ is back on. The database's zone is UTC (no DATABASES TIME_ZONE): Django stores 12:00.
        stock = other_thread(lambda: _adapt(state["stock"], AWARE_NOON_UTC))
        ours = other_thread(lambda: _adapt(state["ours"], AWARE_NOON_UTC))

    assert stock == "2026-11-27 12:00:00"
    assert ours == stock
