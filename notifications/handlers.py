from django.conf import settings

from eventbus import catalogue
from eventbus.consumer import ReceivedEvent
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


@handles(catalogue.ORDER_CONFIRMED)
def order_confirmed(event: ReceivedEvent) -> None:
    _to_customer(event, Kind.ORDER_CONFIRMED)


@handles(catalogue.ORDER_CANCELLED)
def order_cancelled(event: ReceivedEvent) -> str | None:
    if event.data["reasonCode"] == "PAYMENT_FAILED":
        return "the payment-failed email already told the customer"
    _to_customer(event, Kind.ORDER_CANCELLED, reasonText=services.CANCELLATION_REASONS[event.data["reasonCode"]])
    return None


@handles(catalogue.ORDER_SHIPPED)
def order_shipped(event: ReceivedEvent) -> None:
    _to_customer(event, Kind.ORDER_SHIPPED)


@handles(catalogue.PAYMENT_FAILED)
def payment_failed(event: ReceivedEvent) -> None:
    _to_customer(event, Kind.PAYMENT_FAILED)


@handles(catalogue.PAYMENT_REFUNDED)
def refund_issued(event: ReceivedEvent) -> None:
    _to_customer(event, Kind.REFUND_ISSUED)


@handles(catalogue.LOW_STOCK_ALERT)
def low_stock_alert(event: ReceivedEvent) -> None:
    services.queue_notification(
        event_id=event.event_id,
        kind=Kind.LOW_STOCK_ALERT,
        recipient=settings.STAFF_ALERT_EMAIL,
        correlation_id=event.correlation_id,
        context=event.data,
    )
