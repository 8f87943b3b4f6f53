"""Replay: from the audit store on the local endpoint, from the archive on AWS, and analytics rebuilt."""

from __future__ import annotations

import io
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError
from botocore.stub import ANY, Stubber
from django.core.management import call_command
from django.core.management.base import CommandError

from analytics.models import HourlyEventCount, OrderTimeline
from eventbus import aws, replay, topology
from eventbus.consuming import QueuePoller, handle_message
from eventbus.event_types import ORDER_CONFIRMED, ORDER_PLACED, STOCK_UPDATED
from eventbus.models import ProcessedEvent
from inventory.models import Reservation, StockItem
from tests.events import SAMPLE_DATA, envelope, order_placed_data
from tests.helpers import drain

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def archived(event_type, data, *, at: datetime, event_id: uuid.UUID | None = None) -> str:
    """Put an event in the audit store as the audit service would, and return its envelope."""
    body = envelope(
        event_type, data, occurred_at=at.isoformat().replace("+00:00", "Z"), event_id=event_id or uuid.uuid4()
    )
    outcome = handle_message(service="audit", body=body)
    assert outcome.acknowledged, outcome.note
    return body


@pytest.fixture
def local_endpoint(settings):
    """The local stack's endpoint, where replays come from the audit store (tests mock AWS in-process)."""
    settings.USES_LOCAL_AWS = True


@pytest.fixture
def history(catalogue):
    """Three orders placed at 08:10, 08:40 and 09:30, one confirmed, and a restock at 08:20."""
    orders = [uuid.uuid4() for _ in range(3)]
    for order_id, minutes in zip(orders, (10, 40, 90), strict=True):
        archived(ORDER_PLACED, order_placed_data(order_id, quantity=1), at=T0 + timedelta(minutes=minutes))
    archived(STOCK_UPDATED, SAMPLE_DATA["Stock Updated"], at=T0 + timedelta(minutes=20))
    confirmed = {**SAMPLE_DATA["Order Confirmed"], "orderId": str(orders[0])}
    archived(ORDER_CONFIRMED, confirmed, at=T0 + timedelta(minutes=45))
    return orders


def run_replay(*args: str) -> str:
    out = io.StringIO()
    call_command("replay", *args, stdout=out)
    return out.getvalue()


def test_a_dry_run_counts_per_service_and_detail_type_and_sends_nothing(provisioned, local_endpoint, history):
    out = run_replay(
        "--service",
        "inventory",
        "--service",
        "analytics",
        "--from",
        "2026-11-26T08:00",
        "--to",
        "2026-11-26T09:00",
        "--dry-run",
    )
    assert "path: audit store" in out and "Dry run" in out
    rows = {tuple(line.split()[:2]): line.split()[-1] for line in out.splitlines() if line.startswith("  ")}
    assert ("inventory", "Order") in rows  # "Order Placed" / "Order Confirmed" split into words
    counts = replay.plan(services=["inventory", "analytics"], window=replay.Window(T0, T0 + timedelta(hours=1)))
    assert counts == {
        ("inventory", "Order Placed"): 2,
        ("inventory", "Order Confirmed"): 1,
        ("analytics", "Order Placed"): 2,
        ("analytics", "Order Confirmed"): 1,
        ("analytics", "Stock Updated"): 1,
    }
    assert drain(topology.SERVICE_QUEUES["inventory"].name) == []


def test_a_local_replay_sends_only_the_window_and_only_what_each_rule_matches(provisioned, local_endpoint, history):
    out = run_replay(
        "--service",
        "inventory",
        "--from",
        "2026-11-26T08:00:00Z",
        "--to",
        "2026-11-26T09:00:00Z",
        "--replay-name",
        "recover-1",
    )
    assert "path: audit store" in out and "Sent 3 event(s)" in out
    delivered = drain(topology.SERVICE_QUEUES["inventory"].name)
    assert sorted(e["detail-type"] for e in delivered) == ["Order Confirmed", "Order Placed", "Order Placed"]
    assert {e["replay-name"] for e in delivered} == {"recover-1"}
    assert str(history[2]) not in {e["detail"]["data"]["orderId"] for e in delivered}  # 09:30 is outside
    assert drain(topology.SERVICE_QUEUES["payments"].name) == []  # not chosen


def test_a_replay_never_has_an_effect_twice(provisioned, local_endpoint, history, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    poller = QueuePoller(topology.SERVICE_QUEUES["inventory"], threading.Event())
    for _ in range(2):
        run_replay("--service", "inventory", "--from", "2026-11-26T08:00Z", "--to", "2026-11-26T10:00Z")
        while poller.poll_once():
            pass
    # Three orders reserved once each, and the confirmed one committed once: 3 units left prod-1's pool.
    assert Reservation.objects.filter(order_id__in=history).count() == 3
    stock = StockItem.objects.get(product__sku="prod-1")
    assert (stock.on_hand, stock.reserved) == (49, 2)
    assert (
        ProcessedEvent.objects.filter(handler="inventory.reserve_stock", replay_name__startswith="replay-").count() == 3
    )


def test_the_aws_path_starts_the_archive_replay_with_the_window_and_the_services_rules(provisioned, history, settings):
    settings.USES_LOCAL_AWS = False
    events = aws.client("events")
    archive = events.describe_archive(ArchiveName=topology.archive_name())["ArchiveArn"]
    bus = events.describe_event_bus(Name=topology.bus_name())["Arn"]
    rules = {
        s: events.describe_rule(Name=topology.SERVICE_QUEUES[s].rule_name, EventBusName=topology.bus_name())["Arn"]
        for s in ("inventory", "payments")
    }
    with Stubber(events) as stubber:
        stubber.add_response(
            "describe_event_bus", {"Arn": bus, "Name": topology.bus_name()}, {"Name": topology.bus_name()}
        )
        for service in ("inventory", "payments"):
            stubber.add_response(
                "describe_rule",
                {"Arn": rules[service]},
                {"Name": topology.SERVICE_QUEUES[service].rule_name, "EventBusName": topology.bus_name()},
            )
        stubber.add_response("describe_archive", {"ArchiveArn": archive}, {"ArchiveName": topology.archive_name()})
        stubber.add_response(
            "start_replay",
            {"ReplayArn": "arn:aws:events:us-east-1:123456789012:replay/recover-2", "State": "STARTING"},
            {
                "ReplayName": "recover-2",
                "Description": ANY,
                "EventSourceArn": archive,
                "EventStartTime": T0,
                "EventEndTime": T0 + timedelta(hours=1),
                "Destination": {"Arn": bus, "FilterArns": [rules["inventory"], rules["payments"]]},
            },
        )
        out = run_replay(
            "--service",
            "payments",
            "--service",
            "inventory",
            "--from",
            "2026-11-26T08:00Z",
            "--to",
            "2026-11-26T09:00Z",
            "--replay-name",
            "recover-2",
        )
        stubber.assert_no_pending_responses()
    assert "path: archive" in out and "replay/recover-2 (STARTING)" in out


def test_rebuilding_analytics_gives_the_same_aggregates(provisioned, local_endpoint, history, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    analytics = QueuePoller(topology.SERVICE_QUEUES["analytics"], threading.Event())
    # Analytics first learns the history the ordinary way.
    run_replay("--service", "analytics", "--from", "2026-11-26T08:00Z", "--to", "2026-11-26T10:00Z")
    while analytics.poll_once():
        pass

    def aggregates():
        counts = sorted(HourlyEventCount.objects.values_list("hour", "detail_type", "count"))
        timelines = sorted(OrderTimeline.objects.values_list("order_id", "placed_at", "confirmed_at", "total_amount"))
        return counts, timelines

    before = aggregates()
    assert before[0] and before[1]
    HourlyEventCount.objects.update(count=999)  # drifted, say by a bug since fixed

    out = run_replay("--service", "analytics", "--rebuild", "--from", "2026-11-26T08:05Z", "--to", "2026-11-26T09:50Z")
    assert "widened to whole hours" in out and "Cleared analytics's state" in out
    while analytics.poll_once():
        pass
    assert aggregates() == before


def test_a_rebuild_over_times_given_at_a_half_hour_offset_clears_what_it_replays(
    provisioned, local_endpoint, history, settings
):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    analytics = QueuePoller(topology.SERVICE_QUEUES["analytics"], threading.Event())
    run_replay("--service", "analytics", "--from", "2026-11-26T08:00Z", "--to", "2026-11-26T10:00Z")
    while analytics.poll_once():
        pass
    before = sorted(HourlyEventCount.objects.values_list("hour", "detail_type", "count"))

    # 14:00 at +05:30 is 08:30 UTC, half way through one of analytics' hours.
    run_replay(
        "--service", "analytics", "--rebuild", "--from", "2026-11-26T14:00+05:30", "--to", "2026-11-26T15:30+05:30"
    )
    while analytics.poll_once():
        pass

    assert sorted(HourlyEventCount.objects.values_list("hour", "detail_type", "count")) == before


def test_a_rebuild_ending_in_the_last_minutes_is_refused_and_clears_nothing(provisioned, local_endpoint, history):
    # Analytics has counted an event the audit store does not hold yet; a rebuild would drop its count.
    HourlyEventCount.objects.create(hour=T0, detail_type="Order Placed", count=7)
    now = datetime.now(UTC).isoformat()

    with pytest.raises(CommandError, match="must end at least 10 minutes ago"):
        run_replay("--service", "analytics", "--rebuild", "--from", "2026-11-26T08:00Z", "--to", now)

    assert HourlyEventCount.objects.get(hour=T0, detail_type="Order Placed").count == 7


def test_a_rebuild_is_refused_while_audit_has_dead_letters(provisioned, local_endpoint, history):
    sqs = aws.client("sqs")
    audit_dlq = topology.SERVICE_QUEUES["audit"].dlq_name
    sqs.send_message(QueueUrl=sqs.get_queue_url(QueueName=audit_dlq)["QueueUrl"], MessageBody="an event audit lacks")

    with pytest.raises(CommandError, match=f"{audit_dlq} holds 1 message.*dlq redrive audit"):
        run_replay("--service", "analytics", "--rebuild", "--from", "2026-11-26T08:00Z", "--to", "2026-11-26T09:00Z")


def test_a_rebuild_whose_replay_cannot_be_sent_says_the_state_was_cleared(
    provisioned, local_endpoint, history, monkeypatch
):
    def refused(**kwargs):
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "SendMessageBatch")

    monkeypatch.setattr(aws.client("sqs"), "send_message_batch", refused)

    with pytest.raises(CommandError, match="analytics's state for the window was cleared and not refilled"):
        run_replay("--service", "analytics", "--rebuild", "--from", "2026-11-26T08:00Z", "--to", "2026-11-26T09:00Z")


@pytest.mark.parametrize("service", ["inventory", "payments", "notifications", "audit"])
def test_services_with_side_effects_refuse_a_rebuild(provisioned, history, service):
    with pytest.raises(CommandError, match=f"{service} cannot be rebuilt"):
        run_replay("--service", service, "--rebuild", "--from", "2026-11-26T08:00Z", "--to", "2026-11-26T09:00Z")


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (("--from", "2026-11-26T08:00Z", "--to", "2026-11-26T09:00Z"), "choose the services"),
        (("--service", "inventory", "--from", "2026-11-26T09:00Z", "--to", "2026-11-26T08:00Z"), "the window is empty"),
        (("--service", "shipping", "--from", "2026-11-26T08:00Z", "--to", "2026-11-26T09:00Z"), "unknown service"),
        (("--service", "inventory", "--from", "yesterday", "--to", "2026-11-26T09:00Z"), "not an ISO-8601 time"),
        (("--service", "inventory", "--from", "2026-02-30T08:00Z", "--to", "2026-03-01T09:00Z"), "not an ISO-8601"),
    ],
)
def test_a_replay_asked_wrongly_is_refused_with_the_reason(provisioned, args, complaint):
    with pytest.raises(CommandError, match=complaint):
        run_replay(*args)


def test_replay_list_and_status(provisioned):
    assert "No replay of the archive" in run_replay("list")
    with pytest.raises(CommandError, match="needs the replay's name"):
        run_replay("status")
