"""The workers prepare their statements on PostgreSQL (DATABASE_PREPARED_STATEMENTS, README "Running in
production"). A deploy's migration that changes a column's type makes PostgreSQL refuse a prepared
statement that reads it; a delivery must then fail, go back to its queue, and succeed on its retry,
never be lost or acknowledged half done."""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection

from eventbus.consuming import DeliveryResult, handle_message
from eventbus.event_types import INVENTORY_RESERVED
from orders import services as order_services
from orders.models import Order
from tests.events import envelope
from tests.factories import PlaceOrderRequestFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def reserved(order: Order) -> str:
    return envelope(INVENTORY_RESERVED, {"orderId": str(order.pk), "items": [{"productId": "prod-1", "quantity": 1}]})


def alter_customer_id(length: int) -> None:
    """What `migrate` does from another process: a new max_length is a new column type."""
    settings = connection.settings_dict
    with psycopg.connect(
        host=settings["HOST"],
        port=settings["PORT"],
        user=settings["USER"],
        password=settings["PASSWORD"],
        dbname=settings["NAME"],
        autocommit=True,
    ) as other:
        other.execute(f"ALTER TABLE orders_order ALTER COLUMN customer_id TYPE varchar({length})")


@pytest.fixture
def widened_later():
    yield
    alter_customer_id(Order._meta.get_field("customer_id").max_length)


def test_a_delivery_refused_by_a_migrated_column_is_retried_and_then_handled(catalogue, widened_later):
    if connection.vendor != "postgresql" or connection.settings_dict["OPTIONS"].get("prepare_threshold") is None:
        pytest.skip("needs PostgreSQL with DATABASE_PREPARED_STATEMENTS=true, as `make test` runs it")
    orders = [order_services.place_order(request=PlaceOrderRequestFactory()) for _ in range(7)]
    for order in orders[:6]:  # past psycopg's threshold of 5: the order's SELECT is now prepared
        assert handle_message(service="orders", body=reserved(order)).result == DeliveryResult.PROCESSED

    alter_customer_id(300)
    body = reserved(orders[6])
    refused = handle_message(service="orders", body=body)
    retried = handle_message(service="orders", body=body)

    assert not refused.acknowledged
    assert "cached plan must not change result type" in refused.note
    assert (retried.acknowledged, retried.result) == (True, DeliveryResult.PROCESSED)
    assert Order.objects.get(pk=orders[6].pk).status == Order.Status.RESERVED
