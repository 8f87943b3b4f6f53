from __future__ import annotations

import logging
import uuid

import pytest
from django.core import mail

from eventbus import event_types
from eventbus.consuming import handle_message
from eventbus.event_types import EventType
from eventbus.models import SweepFailure
from notifications.models import Notification
from tests.events import envelope
from tests.helpers import poison, skipped_items

pytestmark = pytest.mark.django_db

ORDER_ID = "7ec30c52-e725-4413-a165-a2926038a6e5"


def deliver(event_type: EventType, data: dict, *, event_id: str | None = None):
    outcome = handle_message(service="notifications", body=envelope(event_type, data, event_id=event_id))
    assert outcome.acknowledged, outcome.note
    return outcome


def cancelled(reason_code: str, previous: str = "PLACED", reason: str = "") -> dict:
    return {
        "orderId": ORDER_ID,
        "customerId": "c-1",
        "email": "c@example.com",
        "reasonCode": reason_code,
        "reason": reason,
        "previousStatus": previous,
    }


def test_a_confirmed_order_emails_the_customer_in_text_and_html(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        deliver(
            event_types.ORDER_CONFIRMED,
            {
                "orderId": ORDER_ID,
                "customerId": "c-1",
                "email": "c@example.com",
                "totalAmount": "1059.97",
                "currency": "USD",
            },
        )

    [email] = mail.outbox
    assert email.to == ["c@example.com"]
    assert email.subject == "Your order is confirmed"
    assert "1059.97 USD" in email.body
    [(html, mimetype)] = email.alternatives
    assert mimetype == "text/html" and "<strong>1059.97 USD</strong>" in html
    notification = Notification.objects.get()
    assert (notification.kind, notification.status, notification.attempts) == ("order_confirmed", "SENT", 1)


def test_a_duplicated_event_sends_one_email(django_capture_on_commit_callbacks):
    event_id = str(uuid.uuid4())
    data = {
        "orderId": ORDER_ID,
        "customerId": "c-1",
        "email": "c@example.com",
        "carrier": "UPS",
        "trackingNumber": "1Z999",
    }
    with django_capture_on_commit_callbacks(execute=True):
        deliver(event_types.ORDER_SHIPPED, data, event_id=event_id)
        assert deliver(event_types.ORDER_SHIPPED, data, event_id=event_id).result == "duplicate"
    assert len(mail.outbox) == 1
    assert "Tracking number: 1Z999" in mail.outbox[0].body


@pytest.mark.parametrize(
    ("reason_code", "words"),
    [
        ("CUSTOMER_REQUEST", "you asked us to cancel it"),
        ("OUT_OF_STOCK", "an item in it has sold out"),
        ("TIMEOUT", "we could not complete it in time"),
        ("STAFF", "our team had to cancel it"),
    ],
)
def test_a_cancellation_is_explained_in_words_a_customer_understands(
    django_capture_on_commit_callbacks, reason_code, words
):
    with django_capture_on_commit_callbacks(execute=True):
        deliver(event_types.ORDER_CANCELLED, cancelled(reason_code, reason="Duplicate order"))
    assert words in mail.outbox[0].body
    assert "OUT_OF_STOCK" not in mail.outbox[0].body
    assert "You have not been charged." in mail.outbox[0].body


def test_a_cancellation_after_payment_mentions_the_refund(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        deliver(event_types.ORDER_CANCELLED, cancelled("CUSTOMER_REQUEST", previous="CONFIRMED"))
    assert "a full refund is on its way" in mail.outbox[0].body


def test_a_payment_failure_is_told_once_not_twice(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        deliver(
            event_types.PAYMENT_FAILED,
            {
                "orderId": ORDER_ID,
                "email": "c@example.com",
                "reasonCode": "DECLINED",
                "reason": "Your card was declined.",
                "amount": "29.99",
                "currency": "USD",
            },
        )
        deliver(event_types.ORDER_CANCELLED, cancelled("PAYMENT_FAILED"))
    [email] = mail.outbox
    assert email.subject == "We could not take your payment"
    assert "Your card was declined." in email.body


def test_a_refund_is_confirmed_to_the_customer(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        deliver(
            event_types.PAYMENT_REFUNDED,
            {
                "orderId": ORDER_ID,
                "email": "c@example.com",
                "paymentId": str(uuid.uuid4()),
                "amount": "29.99",
                "currency": "USD",
            },
        )
    assert mail.outbox[0].subject == "Your refund is on its way"


def test_low_stock_alerts_go_to_staff(django_capture_on_commit_callbacks, settings):
    settings.STAFF_ALERT_EMAIL = "buyers@example.com"
    with django_capture_on_commit_callbacks(execute=True):
        deliver(
            event_types.LOW_STOCK_ALERT,
            {"productId": "prod-3", "productName": "Keyboard", "available": 4, "threshold": 10},
        )
    [email] = mail.outbox
    assert email.to == ["buyers@example.com"]
    assert email.subject == "Low stock: Keyboard (prod-3)"


@pytest.fixture
def eager_retries():
    """Eager Celery re-applies a retried task only when it does not propagate the Retry."""
    from shopbus_site.celery import app

    app.conf.task_eager_propagates = False
    yield
    app.conf.task_eager_propagates = True


def test_a_failed_send_is_retried_with_backoff_and_recorded(
    django_capture_on_commit_callbacks, settings, eager_retries
):
    settings.EMAIL_BACKEND = "tests.notifications.failing_backend.UnreachableSmtpBackend"
    settings.NOTIFICATION_MAX_RETRIES = 2
    with django_capture_on_commit_callbacks(execute=True):
        deliver(
            event_types.ORDER_CONFIRMED,
            {
                "orderId": ORDER_ID,
                "customerId": "c-1",
                "email": "c@example.com",
                "totalAmount": "1.00",
                "currency": "USD",
            },
        )
    notification = Notification.objects.get()
    assert notification.status == "FAILED"
    assert notification.attempts == 3  # the first try and two retries
    assert "SMTPServerDisconnected" in notification.last_error


def test_a_notification_that_cannot_be_read_is_recorded_once_and_the_others_are_sent(
    django_capture_on_commit_callbacks, caplog
):
    with django_capture_on_commit_callbacks() as sends:
        for n in range(2):
            data = {"orderId": str(uuid.uuid4()), "customerId": f"c-{n}", "email": f"c{n}@example.com"}
            deliver(event_types.ORDER_CONFIRMED, {**data, "totalAmount": "1.00", "currency": "USD"})
    poisoned, fine = Notification.objects.order_by("pk")
    poison(Notification, poisoned.pk, created_at="2020-13-45 00:00:00")  # month 13: ValueError when read

    with caplog.at_level(logging.ERROR, logger="eventbus.sweeps"):
        for send in sends:
            send()

    assert [email.to for email in mail.outbox] == [["c1@example.com"]]
    assert len([r for r in caplog.records if str(poisoned.pk) in r.getMessage()]) == 1
    assert SweepFailure.objects.get(sweep="send-notifications").item == str(poisoned.pk)
    assert skipped_items("send-notifications") == 1
