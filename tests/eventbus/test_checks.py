import pytest
from django.core import checks
from django.db import connection

pytestmark = pytest.mark.skipif(connection.vendor != "sqlite", reason="a check of SQLite's version")


def database_errors() -> list[str]:
    return [message.id for message in checks.run_checks(tags=[checks.Tags.database], databases=["default"])]


def test_a_sqlite_without_returning_is_refused_at_start(monkeypatch):
    monkeypatch.setattr(connection.Database, "sqlite_version_info", (3, 34, 1))
    assert "eventbus.E001" in database_errors()


def test_this_machine_s_sqlite_returns_inserted_rows():
    assert "eventbus.E001" not in database_errors()
