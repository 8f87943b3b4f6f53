from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.core import mail
from django.utils import timezone
from kombu.exceptions import OperationalError

from eventbus import event_types
from eventbus.consuming import handle_batch, handle_message
from eventbus.event_types import EventType
from eventbus.models import SweepFailure
from notifications import services
from notifications.models import Notification
from notifications.tasks import send_stuck_notifications
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


def test_the_plain_text_email_is_not_html_escaped_and_the_html_one_is(django_capture_on_commit_callbacks):
    note = "We're sorry: the \"Deluxe\" kit & its case can't ship <today>."
    with django_capture_on_commit_callbacks(execute=True):
        deliver(event_types.ORDER_CANCELLED, cancelled("STAFF", reason=note))

    [email] = mail.outbox
    assert f"Our note: {note}" in email.body
    [(html, _)] = email.alternatives
    assert "&lt;today&gt;" in html and "<today>" not in html


def confirmed(order_id: str = ORDER_ID, email: str = "c@example.com") -> dict:
    return {"orderId": order_id, "customerId": "c-1", "email": email, "totalAmount": "1.00", "currency": "USD"}


@pytest.fixture
def broker_refusing_sends():
    """The send task cannot be queued (the broker is down) until the fixture's `restore()`; the ids it
    was asked to queue are in `refused`."""
    real = services._send_later
    refused: list[int] = []

    def refuse(notification_id: int) -> None:
        refused.append(notification_id)
        raise OperationalError("[Errno 111] Connection refused")

    services.set_sender(refuse)
    yield SimpleNamespace(refused=refused, restore=lambda: services.set_sender(real))
    services.set_sender(real)


def test_a_notification_whose_send_could_not_be_queued_is_sent_by_the_sweep(
    django_capture_on_commit_callbacks, broker_refusing_sends
):
    with django_capture_on_commit_callbacks(execute=True):
        deliver(event_types.ORDER_CONFIRMED, confirmed())
    assert Notification.objects.get().status == "PENDING" and broker_refusing_sends.refused
    broker_refusing_sends.restore()

    with django_capture_on_commit_callbacks(execute=True):
        assert send_stuck_notifications() == 0  # a send of it may still be on its way
    Notification.objects.update(created_at=timezone.now() - services.stuck_after() - timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert send_stuck_notifications() == 1

    assert [email.to for email in mail.outbox] == [["c@example.com"]]
    assert Notification.objects.get().status == "SENT"
    with django_capture_on_commit_callbacks(execute=True):
        assert send_stuck_notifications() == 0


def test_the_sweep_waits_out_every_retry_of_a_send(settings):
    settings.NOTIFICATION_MAX_RETRIES = 5
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    assert services.stuck_after() > timedelta(seconds=5 + 10 + 20 + 40 + 80 + visibility)


@pytest.mark.django_db(transaction=True)
def test_a_send_that_cannot_be_queued_does_not_lose_the_others_of_its_batch():
    """Real commit hooks: the first send's task cannot be queued. The robust hook logs that and the
    next hooks of the batch's transaction still run."""
    queued: list[int] = []

    def first_refused(notification_id: int) -> None:
        if not hasattr(first_refused, "refused"):
            first_refused.refused = notification_id
            raise OperationalError("[Errno 111] Connection refused")
        queued.append(notification_id)

    real = services._send_later
    services.set_sender(first_refused)
    try:
        bodies = [
            envelope(event_types.ORDER_CONFIRMED, confirmed(str(uuid.uuid4()), f"c{n}@example.com")) for n in range(3)
        ]
        outcomes = handle_batch(service="notifications", bodies=bodies)
    finally:
        services.set_sender(real)

    assert all(outcome.acknowledged for outcome in outcomes)
    assert Notification.objects.count() == 3
    assert sorted(queued + [first_refused.refused]) == sorted(Notification.objects.values_list("pk", flat=True))


def test_a_send_the_sweep_queued_is_not_queued_again_while_it_may_still_be_on_its_way():
    queued: list[int] = []
    real = services._send_later
    services.set_sender(queued.append)
    try:
        deliver(event_types.ORDER_CONFIRMED, confirmed())
        queued.clear()  # the commit's send was refused, say
        Notification.objects.update(created_at=timezone.now() - services.stuck_after() - timedelta(seconds=1))

        assert services.requeue_stuck_notifications() == 1
        assert services.requeue_stuck_notifications() == 0  # the next run: that send has its retries ahead

        Notification.objects.update(requeued_at=timezone.now() - services.stuck_after() - timedelta(seconds=1))
        assert services.requeue_stuck_notifications() == 1
    finally:
        services.set_sender(real)
    assert len(queued) == 2
