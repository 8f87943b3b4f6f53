"""A web process's own publishing (eventbus.web): relay threads for what its requests commit, and the
metrics flusher for what they record of it."""

from __future__ import annotations

import atexit

import pytest

from eventbus import outbox
from eventbus.metrics import Metric
from eventbus.models import MetricCount, OutboxEvent
from eventbus.web import publish_own_commits
from orders import services as order_services
from tests.factories import PlaceOrderRequestFactory
from tests.helpers import drain, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_web_process_publishes_what_it_commits_and_at_exit_stops_and_flushes_the_metrics_of_it(
    provisioned, catalogue, service_queue, monkeypatch
):
    at_exit = []
    monkeypatch.setattr(atexit, "register", at_exit.append)
    publishing = publish_own_commits()
    wait_for(lambda: outbox._this_process_relay() is not None, timeout=5, what="the relay threads")
    order = order_services.place_order(request=PlaceOrderRequestFactory())
    placed = OutboxEvent.objects.get(detail_type="Order Placed")
    wait_for(lambda: OutboxEvent.objects.get(pk=placed.pk).status == OutboxEvent.Status.PUBLISHED, timeout=10)
    assert not MetricCount.objects.filter(event_type="Order Placed").exists()  # the flusher's interval is 10 s

    for stop in at_exit:
        stop()

    assert not any(thread.is_alive() for thread in [*publishing.relays.threads, publishing.flusher])
    assert outbox._this_process_relay() is None  # what commits now kicks a worker's relay
    published = MetricCount.objects.get(
        metric=Metric.PUBLISH_RESULT, event_type="Order Placed", result="published"
    ).count
    assert published == 1
    assert [envelope["detail"]["data"]["orderId"] for envelope in drain(service_queue("inventory"))] == [str(order.id)]
