"""Routing through moto's EventBridge: each event reaches exactly the queues of its subscribers.

moto's test_event_pattern always answers {}, so patterns are checked by real delivery instead.
"""

from __future__ import annotations

import pytest
from django.db import transaction

from eventbus import event_types, outbox, registry, topology
from eventbus.models import OutboxEvent
from inventory.models import StockItem
from orders import services as order_services
from tests.factories import PlaceOrderRequestFactory, ProductFactory
from tests.helpers import drain

pytestmark = pytest.mark.django_db(transaction=True)

SAMPLE_DATA = {
    "Order Placed": {
        "orderId": "7ec30c52-e725-4413-a165-a2926038a6e5", "customerId": "c-1",
        "items": [{"productId": "prod-1", "name": "Laptop", "unitPrice": "999.99", "quantity": 1}],
        "totalAmount": "999.99", "currency": "USD",
        "shippingAddress": {"street": "1 Main St", "city": "Seattle", "state": "WA", "zipCode": "98101", "country": "US"},
    },
    "Order Confirmed": {"orderId": "7ec30c52-e725-4413-a165-a2926038a6e5", "customerId": "c-1", "totalAmount": "999.99"},
    "Order Cancelled": {
        "orderId": "7ec30c52-e725-4413-a165-a2926038a6e5", "customerId": "c-1", "reasonCode": "STAFF",
        "reason": "Duplicate", "previousStatus": "PLACED",
    },
    "Order Shipped": {"orderId": "7ec30c52-e725-4413-a165-a2926038a6e5", "customerId": "c-1", "carrier": "UPS", "trackingNumber": "1Z"},
    "Inventory Reserved": {"orderId": "7ec30c52-e725-4413-a165-a2926038a6e5", "items": [{"productId": "prod-1", "quantity": 1}]},
    "Reservation Failed": {
        "orderId": "7ec30c52-e725-4413-a165-a2926038a6e5", "reasonCode": "INSUFFICIENT_STOCK", "productId": "prod-3",
        "requested": 9, "available": 5,
    },
    "Inventory Released": {"orderId": "7ec30c52-e725-4413-a165-a2926038a6e5", "items": [{"productId": "prod-1", "quantity": 1}]},
    "Stock Updated": {"productId": "prod-1", "onHand": 5, "reserved": 0, "available": 5, "change": 5, "reasonCode": "RESTOCK"},
    "Low Stock Alert": {"productId": "prod-1", "productName": "Laptop", "available": 9, "threshold": 10},
    "Payment Processed": {
        "orderId": "7ec30c52-e725-4413-a165-a2926038a6e5", "paymentId": "6b1f6844-b06e-4f3d-9ab7-64de9a71e25e",
        "amount": "999.99", "currency": "USD",
    },
    "Payment Failed": {"orderId": "7ec30c52-e725-4413-a165-a2926038a6e5", "reasonCode": "DECLINED", "amount": "999.99"},
    "Payment Refunded": {
        "orderId": "7ec30c52-e725-4413-a165-a2926038a6e5", "paymentId": "6b1f6844-b06e-4f3d-9ab7-64de9a71e25e", "amount": "999.99",
    },
}  # fmt: skip


def deliveries() -> dict[str, list[dict]]:
    return {
        service: drain(queue.name)
        for service, queue in topology.SERVICE_QUEUES.items()
        if service in registry.services()
    }


def test_order_placed_reaches_exactly_its_subscribers_queues(provisioned, catalogue):
    order = order_services.place_order(request=PlaceOrderRequestFactory())
    drain_everything = deliveries()
    received = {service for service, envelopes in drain_everything.items() if any(
        e["detail-type"] == "Order Placed" and e["detail"]["data"]["orderId"] == str(order.id) for e in envelopes
    )}  # fmt: skip
    assert {"inventory", "analytics", "audit"} <= received
    assert "orders" not in received
    assert received == {
        s for s in registry.services() if registry.subscription_for(s, "ecommerce.orders", "Order Placed")
    }
    [envelope] = [e for e in drain_everything["inventory"] if e["detail-type"] == "Order Placed"]
    assert envelope["source"] == "ecommerce.orders"
    assert isinstance(envelope["detail"], dict)  # a JSON object, not a string to parse again


@pytest.mark.parametrize("event_type", event_types.ALL_EVENT_TYPES, ids=str)
def test_every_event_type_reaches_exactly_the_services_that_handle_it(provisioned, event_type):
    item = StockItem.objects.get(product=ProductFactory())
    with transaction.atomic():
        item.record_event(event_type, SAMPLE_DATA[event_type.detail_type], correlation_id="routing-test")
        item.save()
    outbox.relay_pending()
    assert OutboxEvent.objects.get(detail_type=event_type.detail_type).status == OutboxEvent.Status.PUBLISHED

    received = {service for service, envelopes in deliveries().items() if envelopes}

    expected = {
        s for s in registry.services() if registry.subscription_for(s, event_type.source, event_type.detail_type)
    }
    assert received == expected
    assert {"analytics", "audit"} <= received
