"""Each order's story: the admin page and GET /api/orders/<orderId>/events."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from eventbus import registry
from orders import services
from orders.models import Order
from tests.factories import OrderItemFactory, PlaceOrderRequestFactory
from tests.flow import run_until_quiet

pytestmark = pytest.mark.django_db


def confirmed_order(*, placed_by=None) -> Order:
    order = services.place_order(
        request=PlaceOrderRequestFactory(items=[OrderItemFactory(product_id="prod-2")]), client=placed_by
    )
    run_until_quiet()
    order.refresh_from_db()
    assert order.status == Order.Status.CONFIRMED
    return order


def test_the_events_endpoint_lists_every_event_of_a_confirmed_order_with_its_handlers(client, api_key, catalogue):
    order = confirmed_order(placed_by=services.authenticate_api_key(presented=api_key).client)
    response = client.get(f"/api/orders/{order.pk}/events", HTTP_AUTHORIZATION=f"Bearer {api_key}")
    assert response.status_code == 200
    body = response.json()
    assert body["orderId"] == str(order.pk)
    events = body["events"]
    assert [event["detailType"] for event in events] == [
        "Order Placed",
        "Inventory Reserved",
        "Payment Processed",
        "Order Confirmed",
    ]
    assert [event["source"] for event in events] == [
        "ecommerce.orders",
        "ecommerce.inventory",
        "ecommerce.payments",
        "ecommerce.orders",
    ]
    placed, reserved = events[0], events[1]
    assert placed["causationId"] is None and reserved["causationId"] == placed["eventId"]
    for event in events:
        expected = {
            s for s in registry.services() if registry.subscription_for(s, event["source"], event["detailType"])
        }
        assert {handling["service"] for handling in event["handledBy"]} == expected
        for handling in event["handledBy"]:
            assert set(handling) == {"service", "handledAt", "latencyMs"}
            assert handling["latencyMs"] >= 0
        assert event["occurredAt"].endswith("Z")


def test_the_events_endpoint_answers_404_for_an_unknown_order(client, api_key):
    response = client.get(
        "/api/orders/7ec30c52-e725-4413-a165-a2926038a6e5/events", HTTP_AUTHORIZATION=f"Bearer {api_key}"
    )
    assert response.status_code == 404


@pytest.fixture
def staff_client(client):
    client.force_login(get_user_model().objects.create_superuser("staff", "staff@example.com", "pw"))
    return client


def order_page(client, order: Order) -> tuple[str, int]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"/admin/orders/order/{order.pk}/change/")
    assert response.status_code == 200
    return response.content.decode(), len(queries)


def test_the_order_page_tells_the_order_s_story(staff_client, catalogue):
    order = confirmed_order()
    page, _ = order_page(staff_client, order)
    assert page.count('class="timeline-event"') == 4
    for text in ("Order Placed", "Inventory Reserved", "Payment Processed", "Order Confirmed", "payments at"):
        assert text in page
    for link in (
        f"/admin/inventory/reservation/?q={order.pk}",
        f"/admin/payments/payment/?q={order.pk}",
        f"/admin/payments/refund/?q={order.pk}",
        f"/admin/notifications/notification/?q={order.pk}",
        f"/admin/audit/auditevent/?q={order.pk}",
    ):
        assert link in page
        assert staff_client.get(link).status_code == 200


def test_the_order_page_makes_as_many_queries_at_500_orders_as_at_1(staff_client, catalogue):
    first = confirmed_order()
    _, with_one = order_page(staff_client, first)
    for _ in range(499):
        services.place_order(request=PlaceOrderRequestFactory(items=[OrderItemFactory(product_id="prod-2")]))
    run_until_quiet()
    _, with_many = order_page(staff_client, first)
    assert with_many == with_one
