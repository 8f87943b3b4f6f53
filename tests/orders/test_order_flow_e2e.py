"""The exercise's "Complete Order Flow", end to end: moto's real server, real SQS queues and a real
Celery worker whose bootstep long-polls them. Nothing here calls a handler."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from eventbus.models import ProcessedEvent
from inventory.models import StockItem
from inventory.services import load_demo_catalogue
from orders.models import Order
from orders.services import create_api_client
from tests.helpers import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def status_of(order_id: str) -> str:
    return Order.objects.get(pk=order_id).status


def available(sku: str) -> int:
    return StockItem.objects.get(product__sku=sku).available


def test_complete_order_flow(live_stack):
    load_demo_catalogue()
    _, key = create_api_client(name="e2e")
    client = Client(headers={"Authorization": f"Bearer {key}"})

    # 1. Place the exercise's order through the API.
    response = client.post(
        "/api/orders",
        data=json.dumps(
            {
                "customerId": "test-customer-001",
                "email": "test-customer-001@example.com",
                "items": [{"productId": "prod-1", "quantity": 1}],
                "shippingAddress": {
                    "street": "456 Test Ave",
                    "city": "Portland",
                    "state": "OR",
                    "zipCode": "97201",
                    "country": "US",
                },
            }
        ),
        content_type="application/json",
    )
    assert response.status_code == 201
    order_id = response.json()["orderId"]

    # 2-3. The worker reserves the stock and the order follows.
    wait_for(lambda: status_of(order_id) != "PLACED", what="the order to leave PLACED")
    assert status_of(order_id) in ("RESERVED", "CONFIRMED")
    assert available("prod-1") == 49

    # 4. Cancel it.
    assert (
        client.post(
            f"/api/orders/{order_id}/cancel",
            data=json.dumps({"reason": "Customer requested cancellation"}),
            content_type="application/json",
        ).status_code
        == 200
    )

    # 5-6. Inventory releases the stock.
    wait_for(lambda: available("prod-1") == 50, what="the stock to come back")
    assert StockItem.objects.get(product__sku="prod-1").on_hand == 50
    expected = {
        ("inventory.reserve_stock", "Order Placed"),
        ("orders.stock_reserved", "Inventory Reserved"),
        ("inventory.release_stock", "Order Cancelled"),
        ("audit.record_envelope", "Order Cancelled"),
    }
    wait_for(
        lambda: expected <= set(ProcessedEvent.objects.values_list("handler", "detail_type")), what="every handler"
    )


def test_an_order_for_more_than_is_in_stock_is_cancelled_as_out_of_stock(live_stack):
    load_demo_catalogue()
    from orders.services import OrderItem, PlaceOrderRequest, place_order

    order = place_order(
        request=PlaceOrderRequest(
            customer_id="c-9",
            email="c9@example.com",
            items=[OrderItem(product_id="prod-3", quantity=6)],
            shipping_address={
                "street": "1 Main St",
                "city": "Seattle",
                "state": "WA",
                "zipCode": "98101",
                "country": "US",
            },
        )
    )
    wait_for(lambda: status_of(str(order.pk)) == "CANCELLED", what="the order to be cancelled")
    order.refresh_from_db()
    assert order.cancellation_reason_code == "OUT_OF_STOCK"
    assert "Only 5 of Keyboard" in order.cancellation_reason
    assert available("prod-3") == 5
