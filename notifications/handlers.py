from django.conf import settings

from eventbus import event_types
from eventbus.event_types import CancellationReason
from eventbus.events import ReceivedEvent
from eventbus.registry import handles

from . import services
from .models import Notification

Kind = Notification.Kind


def _to_customer(event: ReceivedEvent, kind: str, **context) -> None:
    services.queue_notification(
        event_id=event.event_id,
        kind=kind,
        recipient=event.data.get("email", ""),
        correlation_id=event.correlation_id,
        context={**event.data, **context},
    )


@handles(event_types.ORDER_CONFIRMED, name="notifications.order_confirmed", batchable=True)
def email_confirmation(event: ReceivedEvent) -> None:
    _to_customer(event, Kind.ORDER_CONFIRMED)


@handles(event_types.ORDER_CANCELLED, name="notifications.order_cancelled", batchable=True)
def email_cancellation(event: ReceivedEvent) -> str | None:
    reason = CancellationReason(event.data["reasonCode"])
    if reason == CancellationReason.PAYMENT_FAILED:
        return "the payment-failed email already told the customer"
    _to_customer(event, Kind.ORDER_CANCELLED, reasonText=services.CANCELLATION_REASONS[reason])
    return None


@handles(event_types.ORDER_SHIPPED, name="notifications.order_shipped", batchable=True)
def email_shipping_notice(event: ReceivedEvent) -> None:
    _to_customer(event, Kind.ORDER_SHIPPED)


@handles(event_types.PAYMENT_FAILED, name="notifications.payment_failed", batchable=True)
def email_payment_failure(event: ReceivedEvent) -> None:
    _to_customer(event, Kind.PAYMENT_FAILED)


@handles(event_types.PAYMENT_REFUNDED, name="notifications.refund_issued", batchable=True)
def email_refund_notice(event: ReceivedEvent) -> None:
    _to_customer(event, Kind.REFUND_ISSUED)


@handles(event_types.LOW_STOCK_ALERT, name="notifications.low_stock_alert", batchable=True)
def alert_staff_to_low_stock(event: ReceivedEvent) -> None:
    services.queue_notification(
        event_id=event.event_id,
        kind=Kind.LOW_STOCK_ALERT,
        recipient=settings.STAFF_ALERT_EMAIL,
        correlation_id=event.correlation_id,
        context=event.data,
    )
