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
from tests.events import SAMPLE_DATA
from tests.factories import PlaceOrderRequestFactory, ProductFactory
from tests.helpers import drain

pytestmark = pytest.mark.django_db(transaction=True)


def deliveries() -> dict[str, list[dict]]:
    return {
        service: drain(queue.name)
        for service, queue in topology.SERVICE_QUEUES.items()
        if service in registry.services()
    }


def test_order_placed_reaches_exactly_its_subscribers_queues(provisioned, catalogue):
    order = order_services.place_order(request=PlaceOrderRequestFactory())
    drain_everything = deliveries()
    received = {
        service
        for service, envelopes in drain_everything.items()
        if any(
            e["detail-type"] == "Order Placed" and e["detail"]["data"]["orderId"] == str(order.id) for e in envelopes
        )
    }
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
