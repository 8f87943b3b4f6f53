"""An order's status and API client are searched through the composite indexes they lead, which
replace an index of their own: a transition moves one status entry, not two."""

from __future__ import annotations

import pytest
from django.db import connection

from orders.models import Order

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("lookup", "index"),
    [
        pytest.param({"status": Order.Status.PLACED}, "order_status_age_idx", id="the admin's status filter"),
        pytest.param({"api_client_id": 1}, "order_client_recent_idx", id="a client's orders"),
    ],
)
def test_a_look_up_searches_the_composite_index_it_leads(lookup, index):
    query_plan = Order.objects.filter(**lookup).explain()
    assert f"SEARCH orders_order USING INDEX {index}" in query_plan, query_plan


def test_neither_column_keeps_an_index_of_its_own():
    with connection.cursor() as cursor:
        indexed = {
            column
            for facts in connection.introspection.get_constraints(cursor, Order._meta.db_table).values()
            if facts["index"] and len(facts["columns"]) == 1
            for column in facts["columns"]
        }
    assert not indexed & {"status", "api_client_id"}, indexed
