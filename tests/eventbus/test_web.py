"""A web process's own publishing (eventbus.web): relay threads for what its requests commit, and the
metrics flusher for what they record of it."""

from __future__ import annotations

import atexit
import contextlib
import time

import pytest

from eventbus import aws, metrics, outbox
from eventbus.metrics import NAMESPACE, Metric
from eventbus.models import MetricCount, OutboxEvent
from eventbus.web import publish_own_commits
from orders import services as order_services
from tests.factories import PlaceOrderRequestFactory
from tests.helpers import drain, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@contextlib.contextmanager
def web_process_publishing(monkeypatch):
    """A web process's publishing, and its exit (what atexit would run); the exit runs on leaving,
    at the latest, so that a failing test leaves no relay threads to the tests after it."""
    at_exit = []
    monkeypatch.setattr(atexit, "register", at_exit.append)
    publishing = publish_own_commits()

    def exit_process():
        while at_exit:
            at_exit.pop()()

    try:
        wait_for(lambda: outbox._this_process_relay() is not None, timeout=5, what="the relay threads")
        yield publishing, exit_process
    finally:
        exit_process()


def test_a_web_process_publishes_what_it_commits_and_at_exit_stops_and_flushes_the_metrics_of_it(
    provisioned, catalogue, service_queue, monkeypatch
):
    with web_process_publishing(monkeypatch) as (publishing, exit_process):
        order = order_services.place_order(request=PlaceOrderRequestFactory())
        placed = OutboxEvent.objects.get(detail_type="Order Placed")
        wait_for(lambda: OutboxEvent.objects.get(pk=placed.pk).status == OutboxEvent.Status.PUBLISHED, timeout=10)
        assert not MetricCount.objects.filter(event_type="Order Placed").exists()  # the flusher's interval is 10 s

        exit_process()

    assert not any(thread.is_alive() for thread in [*publishing.relays.threads, publishing.flusher])
    assert outbox._this_process_relay() is None  # what commits now kicks a worker's relay
    published = MetricCount.objects.get(
        metric=Metric.PUBLISH_RESULT, event_type="Order Placed", result="published"
    ).count
    assert published == 1
    assert [envelope["detail"]["data"]["orderId"] for envelope in drain(service_queue("inventory"))] == [str(order.id)]


def test_an_idle_web_process_adds_no_periodic_query_or_cloudwatch_call(provisioned, settings, monkeypatch):
    settings.METRICS_CLOUDWATCH = True
    settings.METRICS_FLUSH_SECONDS = 0.2
    backlog_samples = []
    backlog_datums = metrics._backlog_datums
    monkeypatch.setattr(metrics, "_backlog_datums", lambda: backlog_samples.append(1) or backlog_datums())

    with web_process_publishing(monkeypatch) as (publishing, exit_process):
        time.sleep(1.5)  # several flush intervals, with nothing committed
        exit_process()

    assert not publishing.flusher.is_alive()
    assert backlog_samples == []  # the workers' flushers sample the outbox's backlog
    assert aws.client("cloudwatch").list_metrics(Namespace=NAMESPACE)["Metrics"] == []
