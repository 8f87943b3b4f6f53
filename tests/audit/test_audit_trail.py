"""The audit trail keeps every event's envelope exactly as it was delivered, once, and never changes it."""

from __future__ import annotations

import json
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.urls import reverse

from audit import services
from audit.models import AuditEvent
from eventbus import event_types
from eventbus.consuming import handle_message
from tests.events import detail, envelope, order_placed_data

pytestmark = pytest.mark.django_db

LOW_STOCK = {"productId": "prod-1", "productName": "Laptop", "available": 9, "threshold": 10}


def deliver(body: str) -> str:
    outcome = handle_message(service="audit", body=body)
    assert outcome.acknowledged, outcome.note
    return outcome.result


def test_the_envelope_is_stored_verbatim():
    order_id = uuid.uuid4()
    body = envelope(event_types.ORDER_PLACED, order_placed_data(order_id), **{"replay-name": "recovery-1"})
    deliver(body)

    record = AuditEvent.objects.get()
    assert record.envelope == json.loads(body)
    assert record.event_id == uuid.UUID(json.loads(body)["detail"]["metadata"]["eventId"])
    assert (record.source, record.detail_type, record.correlation_id) == (
        "ecommerce.orders",
        "Order Placed",
        str(order_id),
    )
    assert record.occurred_at.isoformat() == "2026-11-24T10:00:00+00:00"


def test_an_event_is_recorded_once_however_often_it_arrives():
    event_id = uuid.uuid4()
    data = order_placed_data(uuid.uuid4())
    first = envelope(event_types.ORDER_PLACED, data, event_id=event_id)
    assert deliver(first) == "processed"
    # A replay: the same event in a new envelope.
    assert deliver(envelope(event_types.ORDER_PLACED, data, event_id=event_id)) == "duplicate"
    assert [record.envelope for record in AuditEvent.objects.all()] == [json.loads(first)]


def audited(event_id: uuid.UUID, *, envelope: dict, detail_type: str = "Order Placed") -> services.Envelope:
    return services.Envelope(
        event_id=event_id,
        source="ecommerce.orders",
        detail_type=detail_type,
        correlation_id="o-1",
        occurred_at="2026-11-24T10:00:00Z",
        envelope=envelope,
    )


def test_the_service_never_overwrites_a_record():
    event_id = uuid.uuid4()
    original = {"id": "first", "detail": {}}
    services.record_envelopes(envelopes=[audited(event_id, envelope=original)])
    services.record_envelopes(envelopes=[audited(event_id, envelope={"id": "second"}, detail_type="Order Cancelled")])

    record = AuditEvent.objects.get(event_id=event_id)
    assert (record.detail_type, record.envelope) == ("Order Placed", original)


def test_within_one_set_the_first_copy_of_an_event_stands():
    event_id = uuid.uuid4()
    services.record_envelopes(
        envelopes=[audited(event_id, envelope={"id": "first"}), audited(event_id, envelope={"id": "second"})]
    )

    assert [record.envelope for record in AuditEvent.objects.all()] == [{"id": "first"}]


@pytest.fixture
def staff_client(client):
    user = get_user_model().objects.create_superuser("auditor", "auditor@example.com", "pw")
    client.force_login(user)
    return client


def test_the_admin_shows_a_record_but_cannot_add_change_or_delete_one(staff_client):
    deliver(envelope(event_types.ORDER_PLACED, order_placed_data(uuid.uuid4())))
    record = AuditEvent.objects.get()
    before = record.envelope
    change_url = reverse("admin:audit_auditevent_change", args=[record.pk])

    page = staff_client.get(change_url)
    assert page.status_code == 200
    assert b"Save" not in page.content

    assert staff_client.post(change_url, {"detail_type": "Tampered"}).status_code == 403
    assert staff_client.get(reverse("admin:audit_auditevent_add")).status_code == 403
    assert (
        staff_client.post(reverse("admin:audit_auditevent_delete", args=[record.pk]), {"post": "yes"}).status_code
        == 403
    )
    record.refresh_from_db()
    assert (record.detail_type, record.envelope) == ("Order Placed", before)


@pytest.mark.postgres
def test_the_longest_correlation_id_the_schema_allows_is_kept():
    # PostgreSQL enforces column lengths (SQLite does not): a column shorter than the schema's
    # maxLength would send a valid event to the DLQ.
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: `make test` runs it against a throwaway server")
    correlation_id = "c" * 200
    deliver(envelope(event_types.LOW_STOCK_ALERT, detail_value=detail(LOW_STOCK, correlation_id=correlation_id)))
    assert AuditEvent.objects.get().correlation_id == correlation_id
