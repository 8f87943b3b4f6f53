"""Notifications: one Notification row per (event, kind), sent by a Celery task through Django's email
framework and retried with backoff. A duplicated event finds its row and sends nothing more."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.db.models import Q
from django.template.loader import render_to_string
from django.utils import timezone

from eventbus import metrics
from eventbus.event_types import CancellationReason
from eventbus.rows import insert_new_rows
from eventbus.sweeps import OUTAGES, Sweep

from .models import Notification

logger = logging.getLogger(__name__)

NOTIFICATION_SWEEP = "send-notifications"

SUBJECTS = {
    Notification.Kind.ORDER_CONFIRMED: "Your order is confirmed",
    Notification.Kind.ORDER_CANCELLED: "Your order has been cancelled",
    Notification.Kind.ORDER_SHIPPED: "Your order is on its way",
    Notification.Kind.PAYMENT_FAILED: "We could not take your payment",
    Notification.Kind.REFUND_ISSUED: "Your refund is on its way",
    Notification.Kind.LOW_STOCK_ALERT: "Low stock: {productName} ({productId})",
}

# Why an order was cancelled, in words a customer understands.
CANCELLATION_REASONS = {
    CancellationReason.CUSTOMER_REQUEST: "you asked us to cancel it",
    CancellationReason.STAFF: "our team had to cancel it",
    CancellationReason.OUT_OF_STOCK: "an item in it has sold out",
    CancellationReason.PAYMENT_FAILED: "your payment did not go through",
    CancellationReason.TIMEOUT: "we could not complete it in time",
}

# How a committed notification is handed to a worker. notifications.tasks registers the Celery task
# here when the app starts, so this module never imports the task module that calls back into it.
_send_later: Callable[[int], None] | None = None


def set_sender(send_later: Callable[[int], None]) -> None:
    global _send_later
    _send_later = send_later


def queue_notification(
    *, event_id: uuid.UUID, kind: str, recipient: str, correlation_id: str, context: dict[str, Any]
) -> int | None:
    """Make the event's notification of `kind`, once, and send it after the commit; returns its id, or
    None if there is no one to send it to or it was already made. One INSERT … ON CONFLICT DO NOTHING
    rather than get_or_create's read, savepoint and insert (eventbus/rows.py)."""
    if not recipient:
        logger.warning("no address to send %s for %s; nothing sent", kind, correlation_id)
        return None
    if _send_later is None:
        raise ImproperlyConfigured("no notification sender is registered (notifications.tasks sets one)")
    row = {"event_id": event_id, "kind": kind, "recipient": recipient, "correlation_id": correlation_id}
    written = insert_new_rows(
        Notification, [{**row, "context": context}], conflict=["event_id", "kind"], returning="id"
    )
    if not written:
        return None
    (notification_id,) = written
    # A closure, not functools.partial: a robust hook that raises (the broker down) is logged by its
    # __qualname__, which a partial lacks, and that AttributeError would drop every later hook of the
    # transaction, the other notifications' sends among them.
    transaction.on_commit(lambda: _send_later(notification_id), robust=True)
    return notification_id


def retry_countdown(*, retries: int) -> int:
    """Seconds before the next try of a send that failed `retries` times already."""
    return min(600, 5 * 2**retries)


def stuck_after() -> timedelta:
    """How long a PENDING notification can wait while a send of it may still be on its way: every retry's
    countdown, a dead worker's task seen again after the broker's visibility timeout, and a margin."""
    retries = sum(retry_countdown(retries=number) for number in range(settings.NOTIFICATION_MAX_RETRIES))
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout", 3600)
    return timedelta(seconds=retries + visibility + 300)


def requeue_stuck_notifications(*, limit: int = 1000) -> int:
    """Queue again the send of each notification still PENDING `stuck_after()` after it was made, or last
    queued here: its task was never queued (the broker refused it at the commit, or refused a retry),
    and nothing else would send it. A send queued twice sends once (deliver_notification's row lock
    and status check)."""
    if _send_later is None:
        raise ImproperlyConfigured("no notification sender is registered (notifications.tasks sets one)")
    now = timezone.now()
    cutoff = now - stuck_after()
    stuck = list(
        Notification.objects.filter(status=Notification.Status.PENDING, created_at__lt=cutoff)
        .filter(Q(requeued_at__isnull=True) | Q(requeued_at__lt=cutoff))
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )
    for notification_id in stuck:
        _send_later(notification_id)
        # Not queued again by the next runs while this send may still be on its way (Notification is
        # not evented: a plain UPDATE).
        Notification.objects.filter(pk=notification_id).update(requeued_at=now)
    if stuck:
        logger.warning("queued the send of %d notification(s) left pending", len(stuck))
    return len(stuck)


def subject(notification: Notification) -> str:
    return SUBJECTS[notification.kind].format(**notification.context)


def render(notification: Notification) -> tuple[str, str, str]:
    context = {**notification.context, "shop_name": "shopbus"}
    text = render_to_string(f"notifications/email/{notification.kind}.txt", context)
    html = render_to_string(f"notifications/email/{notification.kind}.html", context)
    return subject(notification), text, html


@transaction.atomic
def deliver_notification(*, notification_id: int) -> Notification:
    """Send once: the row lock keeps two workers from sending the same message."""
    notification = Notification.objects.select_for_update().get(pk=notification_id)
    if notification.status == Notification.Status.SENT:
        return notification
    subject, text, html = render(notification)
    message = EmailMultiAlternatives(subject, text, settings.DEFAULT_FROM_EMAIL, [notification.recipient])
    message.attach_alternative(html, "text/html")
    message.send()
    notification.status = Notification.Status.SENT
    notification.attempts += 1
    notification.sent_at = timezone.now()
    notification.last_error = ""
    notification.save(update_fields=["status", "attempts", "sent_at", "last_error"])
    return notification


def record_delivery_failure(*, notification_id: int, error: str, final: bool) -> bool:
    """Note a failed send on the notification. Each notification is its own task with its own retries,
    so one that never goes holds up no other; one that fails for good, or whose row cannot even be
    read or written (so retrying cannot help), is counted as a skipped item of the notification sweep.
    Returns whether a retry is worth it."""
    sweep = Sweep(NOTIFICATION_SWEEP)
    try:
        notification = Notification.objects.get(pk=notification_id)
        notification.attempts += 1
        notification.last_error = error[:2000]
        if final:
            notification.status = Notification.Status.FAILED
        notification.save(update_fields=["attempts", "last_error", "status"])
    except OUTAGES:
        raise
    except Exception as exc:  # noqa: BLE001 - the row itself is bad: recorded, logged and counted once
        sweep.failed(notification_id, exc)
        return False
    if final:
        metrics.record_sweep_failure(sweep=NOTIFICATION_SWEEP)
        logger.error(
            "notification %s failed for good after %d attempts: %s", notification_id, notification.attempts, error
        )
    return not final
