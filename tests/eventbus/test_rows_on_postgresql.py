"""eventbus.rows on PostgreSQL, once (not on each database: it is psycopg's alone)."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from psycopg import _queries

from eventbus.models import OutboxEvent
from eventbus.rows import insert_rows

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def outbox_row(n: int) -> dict:
    return {"id": uuid.uuid4(), "source": "ecommerce.test", "detail_type": "Thing Happened", "detail": {"n": n}}


def test_a_receives_set_of_rows_is_converted_once():
    if connection.vendor != "postgresql":
        pytest.skip("psycopg's conversion: `make test` runs this against a throwaway PostgreSQL")

    def conversions():
        caches = [_queries._query2pg.cache_info(), _queries._query2pg_client.cache_info()]
        return sum(cache.hits for cache in caches), sum(cache.misses for cache in caches)

    insert_rows(OutboxEvent, [outbox_row(n) for n in range(10)])  # 10 rows of 14 fields: past psycopg's 50
    hits, misses = conversions()
    insert_rows(OutboxEvent, [outbox_row(n) for n in range(10, 20)])

    assert conversions() == (hits + 1, misses)
