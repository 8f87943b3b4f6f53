"""One alarm definition drives CloudWatch (through provision_aws) and the dashboard's own evaluation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from eventbus import aws, metrics, services, topology
from eventbus.provisioning import Provisioner
from observability import selectors
from observability.alarms import AlarmState, definitions

pytestmark = pytest.mark.django_db


def cloudwatch_alarms() -> dict[str, dict]:
    response = aws.client("cloudwatch").describe_alarms(AlarmNamePrefix="shopbus-")
    return {alarm["AlarmName"]: alarm for alarm in response["MetricAlarms"]}


def test_provisioning_creates_every_alarm_with_its_threshold_and_dimensions(settings, provisioned):
    alarms = cloudwatch_alarms()
    services_with_queues = [queue.service for queue in topology.consuming_queues()]
    assert len(alarms) == 3 * len(services_with_queues) + 3

    dlq = alarms["shopbus-inventory-dead-letters"]
    assert (dlq["Namespace"], dlq["MetricName"], dlq["Statistic"]) == (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        "Maximum",
    )
    assert dlq["Dimensions"] == [{"Name": "QueueName", "Value": "inventory-updates-queue-dlq"}]
    assert (dlq["Threshold"], dlq["ComparisonOperator"]) == (0, "GreaterThanThreshold")

    age = alarms["shopbus-orders-queue-age"]
    assert (age["MetricName"], age["Threshold"]) == ("ApproximateAgeOfOldestMessage", 300)
    assert age["Dimensions"] == [{"Name": "QueueName", "Value": "order-processing-queue"}]

    backlog = alarms["shopbus-outbox-backlog-age"]
    assert (backlog["Namespace"], backlog["MetricName"], backlog["Threshold"]) == (
        "ECommerce/EventDriven",
        "OutboxBacklogAge",
        120,
    )

    rate = alarms["shopbus-payments-failure-rate"]
    assert rate["Threshold"] == 0.05
    queries = {query["Id"]: query for query in rate["Metrics"]}
    assert "failure_rate" in queries and queries["failure_rate"]["ReturnData"]
    failed = queries["r_failed"]["MetricStat"]["Metric"]
    assert failed["MetricName"] == "EventProcessingResult"
    assert {d["Name"]: d["Value"] for d in failed["Dimensions"]} == {"ServiceName": "payments", "Result": "failed"}
    assert all(not alarm["AlarmActions"] for alarm in alarms.values())


def test_alarms_are_provisioned_idempotently_and_follow_the_settings(settings, provisioned):
    assert Provisioner().apply() == []

    settings.ALARM_QUEUE_AGE_SECONDS = 900
    settings.ALARM_SNS_TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:shop-oncall"
    changes = Provisioner().apply()
    assert {change.name for change in changes if change.kind == "alarm"} == {alarm.name for alarm in definitions()}
    alarms = cloudwatch_alarms()
    assert alarms["shopbus-audit-queue-age"]["Threshold"] == 900
    assert alarms["shopbus-audit-queue-age"]["AlarmActions"] == [settings.ALARM_SNS_TOPIC_ARN]
    assert Provisioner().apply() == []


def test_dry_run_plans_alarms_and_teardown_removes_them(provisioned):
    planned = Provisioner(dry_run=True).teardown()
    assert sum(change.kind == "alarm" for change in planned) == len(definitions())
    Provisioner().teardown()
    assert cloudwatch_alarms() == {}


def evaluate() -> dict[str, AlarmState]:
    queues = selectors.queue_health()
    readings = selectors.readings(queues=queues, backlog=selectors.outbox_backlog())
    return {status.definition.key: status.state for status in selectors.alarm_states(readings)}


def test_a_message_in_a_dlq_turns_its_alarm_on_and_a_redrive_turns_it_off(provisioned):
    assert set(evaluate().values()) == {AlarmState.OK}
    inventory = topology.SERVICE_QUEUES["inventory"]
    sqs = aws.client("sqs")
    sqs.send_message(QueueUrl=sqs.get_queue_url(QueueName=inventory.dlq_name)["QueueUrl"], MessageBody="poison")

    states = evaluate()
    assert states["inventory-dead-letters"] == AlarmState.ALARM
    assert [key for key, state in states.items() if state == AlarmState.ALARM] == ["inventory-dead-letters"]

    services.redrive_dead_letters(queue=inventory, max_messages=10)
    assert evaluate()["inventory-dead-letters"] == AlarmState.OK


def test_the_failure_rate_alarm_reads_the_same_metric(provisioned, settings):
    metrics.recorder.drain()
    for result in ["processed"] * 8 + ["failed"] * 2:
        metrics.record_delivery(
            service="orders", detail_type="Payment Processed", result=result, processing_ms=1, end_to_end_ms=None
        )
    metrics.flush()
    assert evaluate()["orders-failure-rate"] == AlarmState.ALARM  # 20% > 5%
    settings.ALARM_FAILURE_RATE = 0.25
    assert evaluate()["orders-failure-rate"] == AlarmState.OK


def test_an_unpublished_outbox_turns_the_backlog_alarm_on(provisioned, catalogue, settings):
    from eventbus.models import OutboxEvent

    OutboxEvent.objects.update(status=OutboxEvent.Status.PENDING, created_at=timezone.now() - timedelta(minutes=5))
    assert evaluate()["outbox-backlog-age"] == AlarmState.ALARM


def test_a_sweep_skipping_an_item_turns_its_alarm_on_until_the_item_succeeds(provisioned):
    from eventbus.models import SweepFailure

    skipped = cloudwatch_alarms()["shopbus-sweep-skipped-items"]
    assert (skipped["MetricName"], skipped["Statistic"], skipped["Threshold"]) == ("SweepItemFailed", "Sum", 0)
    assert skipped.get("Dimensions", []) == []  # the total over every sweep, which the flusher sends
    assert evaluate()["sweep-skipped-items"] == AlarmState.OK

    failure = SweepFailure.objects.create(sweep="cancel-stuck-orders", item="an order", error="InvalidOperation")
    assert evaluate()["sweep-skipped-items"] == AlarmState.ALARM
    failure.delete()
    assert evaluate()["sweep-skipped-items"] == AlarmState.OK


def test_a_delivery_waiting_too_long_turns_the_queue_age_alarm_on_until_it_is_handled(provisioned, catalogue):
    import threading

    from eventbus import outbox
    from eventbus.consuming import QueuePoller
    from eventbus.models import OutboxEvent
    from orders import services as order_services
    from tests.factories import PlaceOrderRequestFactory

    order_services.place_order(request=PlaceOrderRequestFactory())
    outbox.relay_pending()
    ten_minutes_ago = timezone.now() - timedelta(minutes=10)
    OutboxEvent.objects.filter(detail_type="Order Placed").update(
        created_at=ten_minutes_ago, published_at=ten_minutes_ago
    )
    assert evaluate()["inventory-queue-age"] == AlarmState.ALARM

    QueuePoller(topology.SERVICE_QUEUES["inventory"], threading.Event()).poll_once()
    assert evaluate()["inventory-queue-age"] == AlarmState.OK
