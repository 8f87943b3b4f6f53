"""Reconciling after the endpoint lost its queues: every published event a subscribing service has not
processed is delivered to that service again, and nothing else."""

from __future__ import annotations

import io
import json
import uuid
from collections import Counter
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from eventbus import outbox, registry, replay, topology
from eventbus.consuming import handle_message
from eventbus.event_types import STOCK_UPDATED
from eventbus.models import OutboxEvent
from tests.events import SAMPLE_DATA, envelope
from tests.helpers import drain, place_demo_order

pytestmark = pytest.mark.django_db


def drain_every_queue() -> dict[str, list[dict]]:
    return {service: drain(topology.SERVICE_QUEUES[service].name) for service in registry.services()}


@pytest.fixture
def quiet(provisioned, catalogue):
    """The demo catalogue loaded and its Stock Updated events published and handled by every service."""
    outbox.relay_pending()
    for service, envelopes in drain_every_queue().items():
        for delivered in envelopes:
            assert handle_message(service=service, body=json.dumps(delivered)).acknowledged
    assert replay.plan_reconciliation(replay.retention_window()) == Counter()


def order_rows() -> list[OutboxEvent]:
    return list(OutboxEvent.objects.filter(detail_type="Order Placed").order_by("created_at"))


def subscribers(detail_type: str, source: str) -> set[str]:
    return {service for service in registry.services() if registry.subscription_for(service, source, detail_type)}


def test_only_the_services_that_did_not_process_an_event_get_it_again(quiet):
    place_demo_order()
    assert outbox.relay_pending().published == 1
    [row] = order_rows()
    delivered = drain_every_queue()  # what the endpoint held; then it dies with them
    expected = subscribers(row.detail_type, row.source)
    assert {service for service, envelopes in delivered.items() if envelopes} == expected
    assert {"inventory", "payments", "audit"} <= expected
    # inventory and audit handled it before the endpoint went away; the others never saw it.
    for service in ("inventory", "audit"):
        assert handle_message(service=service, body=json.dumps(delivered[service][0])).acknowledged

    sent = replay.reconcile()

    assert sent == Counter({(service, row.detail_type): 1 for service in expected - {"inventory", "audit"}})
    again = drain_every_queue()
    for service in expected - {"inventory", "audit"}:
        [redelivered] = again[service]
        assert redelivered["detail"] == row.detail  # the producer's eventId is kept: duplicates are caught
        assert redelivered["replay-name"].startswith("reconcile-")
        assert handle_message(service=service, body=json.dumps(redelivered)).result == "processed"
    assert not any(again[service] for service in ("inventory", "audit"))
    assert replay.plan_reconciliation(replay.retention_window()) == Counter()


def test_an_event_only_audit_kept_is_reconciled_from_its_envelope(quiet):
    # Published by someone without our outbox (a state machine, another deploy); audit recorded it.
    body = envelope(
        STOCK_UPDATED, SAMPLE_DATA["Stock Updated"], occurred_at=timezone.now().isoformat().replace("+00:00", "Z")
    )
    assert handle_message(service="audit", body=body).acknowledged
    expected = subscribers("Stock Updated", STOCK_UPDATED.source) - {"audit"}
    assert expected

    assert set(replay.reconcile()) == {(service, "Stock Updated") for service in expected}
    again = drain_every_queue()
    for service in expected:
        [redelivered] = again[service]
        assert redelivered["detail"] == json.loads(body)["detail"]


def test_events_older_than_the_retention_window_and_unpublished_ones_are_left_alone(quiet, settings):
    settings.EVENT_ARCHIVE_RETENTION_DAYS = 2
    place_demo_order()
    place_demo_order()
    outbox.relay_pending()
    drain_every_queue()
    old, recent = order_rows()
    old.created_at = timezone.now() - timedelta(days=3)
    old.save(update_fields=["created_at"])
    place_demo_order()  # PENDING: the relay publishes it, reconciliation does not

    sent = replay.reconcile()

    redelivered = {
        envelope["detail"]["metadata"]["eventId"]
        for envelopes in drain_every_queue().values()
        for envelope in envelopes
    }
    assert redelivered == {str(recent.id)}
    assert sum(sent.values()) == len(subscribers(recent.detail_type, recent.source))


def test_the_command_s_dry_run_counts_and_sends_nothing(quiet):
    place_demo_order()
    outbox.relay_pending()
    drain_every_queue()
    out = io.StringIO()

    call_command("reconcile", "--dry-run", stdout=out)

    [row] = order_rows()
    assert f"would deliver {len(subscribers(row.detail_type, row.source))} unprocessed event(s)" in out.getvalue()
    assert not any(drain_every_queue().values())
    call_command("reconcile", stdout=out)
    assert any(drain_every_queue().values())


def test_a_reconciled_event_the_service_already_handled_meanwhile_is_a_duplicate(quiet):
    place_demo_order()
    outbox.relay_pending()
    delivered = drain_every_queue()
    replay.reconcile()
    # The original comes back after all (it was in flight, not lost): one of the two is a duplicate.
    original = json.dumps(delivered["inventory"][0])
    [copy] = drain("inventory-updates-queue")
    assert handle_message(service="inventory", body=original).result == "processed"
    assert handle_message(service="inventory", body=json.dumps(copy)).result == "duplicate"
    assert uuid.UUID(copy["detail"]["metadata"]["eventId"]) == order_rows()[0].id


def test_reconcile_with_the_archive_kept_for_ever_looks_at_every_event(settings):
    settings.EVENT_ARCHIVE_RETENTION_DAYS = 0  # EventBridge's "retain indefinitely"
    out = io.StringIO()
    call_command("reconcile", "--dry-run", stdout=out)
    assert "would deliver 0 unprocessed event(s)" in out.getvalue()
    assert replay.retention_window().start.year == 1970


def test_reconcile_with_a_negative_retention_is_refused_with_a_message(settings):
    settings.EVENT_ARCHIVE_RETENTION_DAYS = -1
    with pytest.raises(CommandError, match="EVENT_ARCHIVE_RETENTION_DAYS"):
        call_command("reconcile", "--dry-run", stdout=io.StringIO())
