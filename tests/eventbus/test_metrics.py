"""Metrics are recorded per delivery in memory and flushed in batches; an outage loses metrics only."""

from __future__ import annotations

import json
import logging
import threading
import uuid

import pytest
from botocore.exceptions import ClientError

from eventbus import aws, metrics, outbox, services, topology
from eventbus.consuming import QueuePoller
from eventbus.event_types import ORDER_PLACED
from eventbus.metrics import Metric
from eventbus.models import ConsumerHeartbeat, MetricBucket, MetricCount
from inventory.models import Reservation
from orders import services as order_services
from tests.events import envelope, order_placed_data
from tests.factories import PlaceOrderRequestFactory
from tests.helpers import queue_depth

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def cloudwatch_calls(settings, provisioned):
    """Every PutMetricData call made, with its request; metrics start empty."""
    settings.METRICS_CLOUDWATCH = True
    metrics.recorder.drain()
    calls: list[dict] = []
    aws.client("cloudwatch").meta.events.register(
        "provide-client-params.cloudwatch.PutMetricData", lambda params, **kwargs: calls.append(params)
    )
    return calls


def stored(**dimensions) -> int:
    """What the flushes stored, summed over minutes (a test may straddle a minute boundary)."""
    return sum(MetricCount.objects.filter(**dimensions).values_list("count", flat=True))


def feed_inventory(count: int) -> None:
    sqs = aws.client("sqs")
    url = sqs.get_queue_url(QueueName=topology.SERVICE_QUEUES["inventory"].name)["QueueUrl"]
    for _ in range(count):
        sqs.send_message(QueueUrl=url, MessageBody=envelope(ORDER_PLACED, order_placed_data(uuid.uuid4(), quantity=1)))


def drain_inventory() -> None:
    poller = QueuePoller(topology.SERVICE_QUEUES["inventory"], threading.Event())
    while poller.poll_once():
        pass


def test_deliveries_are_aggregated_and_sent_in_one_batch_not_per_message(catalogue, cloudwatch_calls):
    feed_inventory(30)
    drain_inventory()
    assert Reservation.objects.count() == 30
    assert cloudwatch_calls == []  # nothing on the delivery path

    metrics.flush()

    assert len(cloudwatch_calls) == 1
    [request] = cloudwatch_calls
    assert request["Namespace"] == "ECommerce/EventDriven"
    datums = {
        (datum["MetricName"], tuple((d["Name"], d["Value"]) for d in datum.get("Dimensions", []))): datum
        for datum in request["MetricData"]
    }
    processed = datums[
        (
            "EventProcessingResult",
            (("ServiceName", "inventory"), ("EventType", "Order Placed"), ("Result", "processed")),
        )
    ]
    assert processed["Value"] == 30
    # The per-service total the failure-rate alarm reads.
    assert datums[("EventProcessingResult", (("ServiceName", "inventory"), ("Result", "processed")))]["Value"] == 30
    timing = datums[("EventProcessingTime", (("ServiceName", "inventory"), ("EventType", "Order Placed")))]
    assert sum(timing["Counts"]) == 30 and len(timing["Values"]) == len(timing["Counts"]) <= 150
    assert {name for name, _ in datums} >= {"EndToEndLatency", "OutboxBacklog", "OutboxBacklogAge"}
    # The same figures reach the database for the dashboard.
    assert stored(metric=Metric.PROCESSING_RESULT, service="inventory", result="processed") == 30
    assert sum(MetricBucket.objects.filter(metric=Metric.PROCESSING_TIME).values_list("count", flat=True)) == 30


def test_flushes_from_several_processes_add_up(catalogue, cloudwatch_calls):
    for processing_ms in (7, 3):
        metrics.record_delivery(
            service="orders",
            detail_type="Payment Processed",
            result="processed",
            processing_ms=processing_ms,
            end_to_end_ms=90,
        )
        metrics.recorder.heartbeat(service="orders", received=1)
        metrics.flush()
    assert stored(metric=Metric.PROCESSING_RESULT, service="orders") == 2
    timing = MetricCount.objects.get(metric=Metric.PROCESSING_TIME, service="orders")
    assert (timing.count, timing.total, timing.maximum) == (2, 10, 7)
    buckets = MetricBucket.objects.filter(metric=Metric.END_TO_END_LATENCY)
    assert {row.bucket for row in buckets} == {metrics.bucket_of(90)}
    assert sum(row.count for row in buckets) == 2
    assert ConsumerHeartbeat.objects.filter(service="orders").count() == 1


def test_a_metrics_outage_loses_metrics_never_events_and_is_logged_once(catalogue, cloudwatch_calls, caplog):
    def refuse(**kwargs):
        raise ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "down"}}, "PutMetricData")

    aws.client("cloudwatch").meta.events.register("before-call.cloudwatch.PutMetricData", refuse)
    feed_inventory(5)
    with caplog.at_level(logging.WARNING, logger="eventbus.metrics"):
        drain_inventory()
        metrics.flush()
        feed_inventory(5)
        drain_inventory()
        metrics.flush()

    assert Reservation.objects.count() == 10
    assert queue_depth(topology.SERVICE_QUEUES["inventory"].name) == 0
    outage_lines = [r for r in caplog.records if "CloudWatch is unavailable" in r.getMessage()]
    assert len(outage_lines) == 1
    # The database copy is still written: the dashboard keeps working through a CloudWatch outage.
    assert stored(metric=Metric.PROCESSING_RESULT, service="inventory") == 10


def test_the_relay_records_publish_lag_batch_sizes_and_results(catalogue, cloudwatch_calls):
    metrics.recorder.drain()
    for _ in range(12):
        order_services.place_order(request=PlaceOrderRequestFactory())
    outbox.relay_pending()
    metrics.flush()
    assert stored(metric=Metric.PUBLISH_RESULT, event_type="Order Placed", result="published") == 12
    batches = MetricBucket.objects.filter(metric=Metric.PUBLISH_BATCH_SIZE).values_list("count", flat=True)
    assert sum(batches) >= 2  # 12 entries cannot fit one PutEvents call
    assert MetricBucket.objects.filter(metric=Metric.PUBLISH_LAG).exists()


@pytest.mark.parametrize(
    ("observations", "fraction", "low", "high"),
    [([10] * 100, 0.5, 7, 10), ([1] * 99 + [5000], 0.99, 0, 1), ([1] * 98 + [5000] * 2, 0.99, 3000, 5000)],
)
def test_percentiles_read_from_the_histogram_fall_in_the_right_bucket(observations, fraction, low, high):
    buckets: dict[int, int] = {}
    for value in observations:
        buckets[metrics.bucket_of(value)] = buckets.get(metrics.bucket_of(value), 0) + 1
    assert low <= metrics.percentile(buckets, fraction, maximum=max(observations)) <= high


def test_stored_minutes_are_pruned_after_the_retention(catalogue, cloudwatch_calls, settings):
    metrics.record_delivery(
        service="audit", detail_type="Order Placed", result="processed", processing_ms=1, end_to_end_ms=1
    )
    metrics.flush()
    assert services.prune_metrics() == 0
    settings.METRICS_RETENTION_DAYS = 0
    assert services.prune_metrics() > 0
    assert not MetricCount.objects.exists()


def test_the_relay_sends_one_x_ray_trace_per_order(catalogue, provisioned):
    entries: list[dict] = []
    aws.client("events").meta.events.register(
        "provide-client-params.events.PutEvents", lambda params, **kwargs: entries.extend(params["Entries"])
    )
    order = order_services.place_order(request=PlaceOrderRequestFactory())
    order_services.cancel_order(order_id=order.pk, reason_code="STAFF", reason="test")
    outbox.relay_pending()

    headers = [
        e["TraceHeader"] for e in entries if json.loads(e["Detail"])["metadata"]["correlationId"] == str(order.pk)
    ]
    assert len(headers) == 2
    roots = {dict(part.split("=") for part in header.split(";"))["Root"] for header in headers}
    assert len(roots) == 1
    [root] = roots
    assert root.startswith("1-") and len(root) == 35
    parents = {dict(part.split("=") for part in header.split(";"))["Parent"] for header in headers}
    assert len(parents) == 2


def test_the_consumer_logs_the_trace_id_it_receives(catalogue, provisioned, caplog):
    sqs = aws.client("sqs")
    url = sqs.get_queue_url(QueueName=topology.SERVICE_QUEUES["inventory"].name)["QueueUrl"]
    root = "1-5759e988-bd862e3fe1be46a994272793"
    sqs.send_message(
        QueueUrl=url,
        MessageBody=envelope(ORDER_PLACED, order_placed_data(uuid.uuid4(), quantity=1)),
        MessageSystemAttributes={
            "AWSTraceHeader": {"DataType": "String", "StringValue": f"Root={root};Parent=53995c3f42cd8ad8;Sampled=1"}
        },
    )
    with caplog.at_level(logging.INFO, logger="eventbus.consuming"):
        drain_inventory()
    [line] = [r for r in caplog.records if r.getMessage().startswith("event ")]
    assert line.fields["trace_id"] == root
    assert json.loads(line.getMessage().removeprefix("event "))["trace_id"] == root


def test_cloudwatch_still_gets_the_delivery_metrics_while_the_database_is_down(catalogue, cloudwatch_calls, caplog):
    from django.db import OperationalError, connection

    metrics.record_delivery(
        service="orders", detail_type="Order Placed", result="failed", processing_ms=2, end_to_end_ms=None
    )

    def refuse(execute, sql, params, many, context):
        raise OperationalError("the database is down")

    with caplog.at_level(logging.WARNING, logger="eventbus.metrics"), connection.execute_wrapper(refuse):
        metrics.flush()
    [request] = cloudwatch_calls
    assert "EventProcessingResult" in {datum["MetricName"] for datum in request["MetricData"]}
    assert "the metrics database is unavailable" in caplog.text
    assert "CloudWatch is unavailable" not in caplog.text


def test_a_forked_process_starts_with_empty_metrics_and_a_free_lock():
    metrics.record_delivery(
        service="audit", detail_type="Order Placed", result="processed", processing_ms=1, end_to_end_ms=1
    )
    metrics.recorder._lock.acquire()  # as if another thread held it at the fork
    metrics.recorder.reset()  # what os.register_at_fork runs in the child
    metrics.record_delivery(
        service="audit", detail_type="Order Placed", result="processed", processing_ms=1, end_to_end_ms=1
    )
    series, _ = metrics.recorder.drain()
    processed = [v for k, v in series.items() if k.metric == Metric.PROCESSING_RESULT]
    assert [v.count for v in processed] == [1]


def test_each_prefork_child_flushes_its_own_metrics(settings):
    from eventbus import worker

    settings.METRICS_FLUSH_SECONDS = 0.05
    worker._start_child_flusher()
    try:
        stop, flusher = worker._child_flusher
        assert flusher.is_alive()
        metrics.record_publish(detail_type="Order Placed", result="published", lag_ms=5)
        from tests.helpers import wait_for

        wait_for(lambda: stored(metric=Metric.PUBLISH_RESULT) == 1, timeout=5, what="the child's flush")
    finally:
        worker._stop_child_flusher()
    assert not flusher.is_alive()


def test_a_solo_pool_s_flusher_stops_with_the_worker():
    # The solo pool sends worker_process_init in the worker's own process, and no
    # worker_process_shutdown: a flusher left running would flush after the worker is gone.
    from celery.signals import worker_shutdown

    from eventbus import worker

    worker._start_child_flusher()
    _, flusher = worker._child_flusher
    worker_shutdown.send(sender=None)

    assert not flusher.is_alive()


def test_a_flusher_makes_its_cloudwatch_client_at_start_up_not_at_its_first_flush(settings):
    settings.METRICS_CLOUDWATCH = True
    aws.client.cache_clear()

    metrics.MetricsFlusher(threading.Event())

    assert aws.client.cache_info().currsize == 1
    assert aws.client("cloudwatch").meta.service_model.service_name == "cloudwatch"
    assert aws.client.cache_info().hits == 1
