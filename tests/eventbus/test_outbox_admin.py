"""The outbox's admin: failed events are sent again only by staff allowed to, and that is recorded in
each event's History."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import LogEntry

from eventbus.models import OutboxEvent
from tests.helpers import staff_client

pytestmark = pytest.mark.django_db


def failed_event() -> OutboxEvent:
    return OutboxEvent.objects.create(
        source="ecommerce.orders",
        detail_type="Order Confirmed",
        detail={"metadata": {"eventId": str(uuid.uuid4())}, "data": {}},
        correlation_id=str(uuid.uuid4()),
        status=OutboxEvent.Status.FAILED,
        last_error="ValidationException: too big",
    )


def send_again(client, event: OutboxEvent):
    return client.post(
        "/admin/eventbus/outboxevent/", {"action": "requeue", ACTION_CHECKBOX_NAME: [str(event.pk)], "index": 0}
    )


def test_view_only_staff_do_not_see_the_action_and_a_forged_post_is_403():
    event = failed_event()
    support = staff_client(groups=("Support",))

    assert b"Send failed events again" not in support.get("/admin/eventbus/outboxevent/").content
    assert send_again(support, event).status_code == 403
    event.refresh_from_db()
    assert event.status == OutboxEvent.Status.FAILED


def test_staff_allowed_to_redrive_send_a_failed_event_again_and_its_history_says_why(quiet_relay):
    event = failed_event()
    operator = staff_client(permissions=("redrive_dead_letters", "view_outboxevent"))

    assert b"Send failed events again" in operator.get("/admin/eventbus/outboxevent/").content
    assert send_again(operator, event).status_code == 302

    event.refresh_from_db()
    assert event.status == OutboxEvent.Status.PENDING
    entry = LogEntry.objects.get(object_id=str(event.pk))
    assert entry.user.username == "staff2-user"
    assert entry.get_change_message() == "Sent again after: ValidationException: too big"
